"""The JSON card: a run's headline numbers, computed from its records only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..metrics import accuracy_from_minimal_eps, eps_at_chance, mean_with_ci, median_with_ci, per_class_mean
from ..metrics.sanity import record_checks
from ..records import SANITY_FILE, check_fields, read_records, read_run_json, read_warnings

CARD_FILE = "card.json"


def json_safe(value: Any) -> Any:
    """The card as strict JSON: non-finite floats (a minimal ε never found) become None."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _setting(value: object) -> float | None:
    """A budget setting of the records: ``None`` where the condition has none (pandas reads it back as NaN
    when other conditions of the run do have one)."""
    return None if value is None or pd.isna(value) else float(value)  # type: ignore[arg-type]


def _median(series: pd.Series) -> float | None:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.median()) if len(values) else None


def _estimate(values: pd.Series, seed: int) -> dict:
    mean, low, high = mean_with_ci(np.asarray(values, dtype=float), seed=seed)
    return {"value": mean, "ci95": [low, high], "n": int(len(values))}


def condition_order(records: pd.DataFrame) -> list[str]:
    """Conditions grouped by norm and domain, each group from the smallest budget up."""
    table = records.drop_duplicates("condition").copy()
    eps = pd.to_numeric(table["eps_setting"], errors="coerce")
    table["budget"] = eps.fillna(-pd.to_numeric(table["snr_db_setting"], errors="coerce"))
    return table.sort_values(["norm", "domain", "budget"])["condition"].tolist()


def summarize_condition(rows: pd.DataFrame, seed: int) -> dict:
    """One attack or noise condition. The success rate is over clean-correct clips."""
    attacked = rows[rows["clean_correct"] == True]  # noqa: E712
    fooled = attacked[attacked["success"] == True]  # noqa: E712
    first = rows.iloc[0]
    severity = first.get("severity")
    return {
        "kind": first["kind"],
        "severity": None if severity is None or pd.isna(severity) else float(severity),
        "severity_unit": first.get("severity_unit") if severity is not None and not pd.isna(severity) else None,
        "condition": first["condition"], "attack": first["attack"], "backend": first.get("backend", "native"),
        "norm": first["norm"],
        "domain": first["domain"], "eps": _setting(first["eps_setting"]), "snr_db": _setting(first["snr_db_setting"]),
        "steps": None if pd.isna(first["steps"]) else int(first["steps"]),  # None: a library's own settings
        "restarts": int(first["restarts"]),
        "robust_accuracy": _estimate(rows["adv_correct"].astype(float), seed),
        "success_rate": _estimate(attacked["success"].astype(float), seed),
        "median_linf": _median(fooled["linf"]), "median_l2": _median(fooled["l2"]),
        "median_l1": _median(fooled["l1"]) if "l1" in fooled else None,  # records before 2026-12 lack it
        "median_snr_db": _median(fooled["snr_db"]),
        "forwards": int(rows["forwards"].sum()), "backwards": int(rows["backwards"].sum()),
        "carried": int(rows["carried"].sum()), "seconds": float(rows["seconds"].sum()),
        **summarize_transfer(rows, seed),
    }


def summarize_transfer(rows: pd.DataFrame, seed: int) -> dict:
    """``{"transfer": ...}`` when a second model scored the adversarial waveforms (else ``{}``):
    its clean accuracy, its accuracy on the adversarial audio, and the transfer rate: of the clips
    the attack fooled and the target got right when clean, the fraction the target now gets wrong."""
    if "transfer_adv_correct" not in rows or rows["transfer_adv_correct"].isna().all():
        return {}
    fooled = rows[(rows["success"] == True) & (rows["transfer_clean_correct"] == True)]  # noqa: E712
    return {"transfer": {
        "model": rows["transfer_model"].iloc[0],
        "clean_accuracy": _estimate(rows["transfer_clean_correct"].astype(float), seed),
        "robust_accuracy": _estimate(rows["transfer_adv_correct"].astype(float), seed),
        "transfer_rate": _estimate(1.0 - fooled["transfer_adv_correct"].astype(float), seed),
    }}


def summarize_minimal(rows: pd.DataFrame, seed: int, chance: float | None) -> dict:
    """Minimal-ε search rows: distribution of the minimal ε and the accuracy curve it implies."""
    attacked = rows[rows["attacked"] == True]  # noqa: E712
    minimal = pd.to_numeric(attacked["eps"], errors="coerce").to_numpy(dtype=float, copy=True)
    minimal[~attacked["success"].astype(bool).to_numpy()] = np.inf  # not found up to the cap
    median, low, high = median_with_ci(minimal, seed=seed)
    eps, accuracy = accuracy_from_minimal_eps(minimal, len(rows))
    first = rows.iloc[0]
    finite = minimal[np.isfinite(minimal)]
    return {
        "condition": first["condition"], "attack": "minimal", "norm": first["norm"],
        "domain": first["domain"], "steps": int(first["steps"]), "clips": int(len(rows)),
        "attacked": int(len(attacked)), "found": int(len(finite)),
        "median_eps": {"value": median, "ci95": [low, high], "n": int(len(minimal))},
        "quartiles_eps": [float(np.quantile(minimal, q)) if len(minimal) else None for q in (0.25, 0.5, 0.75)],
        "chance": chance,
        "eps_at_chance": None if chance is None else eps_at_chance(minimal, len(rows), chance),
        "accuracy_curve": [[float(e), float(a)] for e, a in zip(eps, accuracy)],
        "clean_accuracy": len(attacked) / max(len(rows), 1),
        "median_snr_db": _median(attacked[attacked["success"] == True]["snr_db"]),  # noqa: E712
        "forwards": int(rows["forwards"].sum()), "backwards": int(rows["backwards"].sum()),
        "seconds": float(rows["seconds"].sum()),
    }


def build_card(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    meta = read_run_json(run_dir)
    settings = meta["settings"]
    records = read_records(run_dir)
    check_fields(records, run_dir)
    warnings = read_warnings(run_dir)
    seed = int(settings.get("seed", 0))
    card = {
        "model": settings["model"], "data": settings["data"], "seed": seed,
        "settings": settings, "versions": meta["versions"],
        "clips": int(records["clip_id"].nunique()) if len(records) else 0,
        "skipped_clips": sum(w["kind"] == "skipped" for w in warnings),
        "notes": sum(w["kind"] == "note" for w in warnings),
        "complete": bool(len(records)) and records["clip_id"].nunique() + sum(
            w["kind"] == "skipped" for w in warnings) >= settings.get("clips", 0),
    }
    if not len(records):
        card["conditions"] = []
        return card
    clean = records.drop_duplicates("clip_id")
    card["clean_accuracy"] = _estimate(clean["clean_correct"].astype(float), seed)
    searched = set(records.loc[records["kind"] == "minimal", "condition"])
    fixed = [c for c in condition_order(records) if c not in searched]
    searches = [c for c in condition_order(records) if c in searched]
    card["conditions"] = [summarize_condition(records[records["condition"] == c], seed) for c in fixed]
    labels = settings.get("labels")
    chance = None if settings.get("multilabel") or not labels else 1.0 / len(labels)
    card["minimal"] = [summarize_minimal(records[records["condition"] == c], seed, chance) for c in searches]
    card["per_class_accuracy"] = {"clean": per_class_mean(clean["clean_correct"].astype(float), clean["label"])}
    card["clips_per_class"] = {str(k): int(v) for k, v in clean["label"].value_counts().sort_index().items()}
    for c in fixed:
        rows = records[records["condition"] == c]
        card["per_class_accuracy"][c] = per_class_mean(rows["adv_correct"].astype(float), rows["label"])
    card["wall_seconds"] = float(records["seconds"].sum())
    probes = json.loads((run_dir / SANITY_FILE).read_text()) if (run_dir / SANITY_FILE).exists() else []
    attacks = [c for c in card["conditions"] if c.get("kind") != "noise"]
    # The record checks compare attacks (ε curves, white- against black-box): none applies to natural noise.
    card["checks"] = probes + ([c.as_dict() for c in record_checks(card)] if attacks or card["minimal"] else [])
    card["flags"] = [c["name"] for c in card["checks"] if c["flagged"]]
    return card
