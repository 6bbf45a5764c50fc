"""The audio-visual part of a comparison: the fusion table and the check of the thesis theorem.

Built from run directories only (``OUT/<model>/attack`` and ``OUT/<model>/fusion/<kind>-<modality>-<norm>``,
written by :func:`robustaudio.studies.compare.run_fusion_attacks`) and the plan in ``OUT/fusion.json``.

**Fusion table** (thesis ch. 10-11 shape): per norm and model, clean accuracy and robust accuracy
with the audio attacked, the video attacked, and both (each within its own budget), at the plan's
table budgets; the median minimal ε per modality; the sanity flags of every run. An input the model
does not use cannot be attacked: its column holds the clean accuracy, marked "(unused)".

**Theorem check** [paper: with a linear fusion head an attack on one modality inside that
modality's own robustness radius can flip the fused prediction; ours: how it is measured]: on the
clips that both the audio-only model and a fused model classify correctly, compare the minimal
audio perturbation (same norm, PGD bisection) that flips the fused model, ε_fused, with the one that
flips the audio-only model, ε_audio. A clip with ε_fused < ε_audio is a case: the fused model falls
to an audio-only attack smaller than what the audio model itself withstands. ε_audio is itself an
upper bound (PGD may miss smaller perturbations), so each case is evidence, not proof;
``experiments/fusion_attacks.py`` re-attacks the audio-only model at ε_fused with a much stronger
PGD for the reported examples, and ``tests/test_fusion.py`` checks the statement exactly on a linear
model whose radii are known in closed form.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..records import file_safe, read_records
from . import style
from .document import fmt

FUSION_FILE = "fusion.json"
ATTACKED = ("audio", "video", "both")
EXPECTED_FLAG = "attack cannot reach the model"  # metrics.sanity's name for that probe


def fusion_run(model_dir: Path, kind: str, modality: str, norm: str, main_norm: str | None = None) -> Path:
    """Run directory of one modality-wise run; the audio PGD curve of ``main_norm`` is the model's
    ``attack`` run (the comparison's own ε curve)."""
    if kind == "pgd" and modality == "audio" and norm == main_norm:
        return model_dir / "attack"
    return model_dir / "fusion" / f"{kind}-{modality}-{norm}"


def _card(run_dir: Path) -> dict | None:
    path = run_dir / "card.json"
    return json.loads(path.read_text()) if path.exists() else None


def _at(card: dict | None, eps: float) -> float | None:
    """Robust accuracy of the condition with budget ``eps`` (the joint run has one condition)."""
    if card is None:
        return None
    for c in card["conditions"]:
        if c["eps"] is not None and np.isclose(c["eps"], eps):
            return c["robust_accuracy"]["value"]
    raise ValueError(f"ε = {eps} was not attacked in {card['model']} ({[c['condition'] for c in card['conditions']]}).")


def summarize_fusion(out: Path, names: list[str]) -> dict:
    """Per norm and model: clean, robust (audio / video / both), minimal ε per modality, flags; the theorem check."""
    plan = json.loads((out / FUSION_FILE).read_text())
    main = plan["main_norm"]
    models: dict[str, dict] = {}
    for name in names:
        model_dir = out / file_safe(name)
        per_norm = {}
        for norm in plan["norms"]:
            budgets = plan["table_eps"][norm]
            cards = {m: _card(fusion_run(model_dir, "pgd", m, norm, main)) for m in ATTACKED}
            minimal = {m: _card(fusion_run(model_dir, "minimal", m, norm, main)) for m in ("audio", "video")}
            present = [c for c in [*cards.values(), *minimal.values(), _card(model_dir / "noise")] if c]
            clean = present[0]["clean_accuracy"]["value"] if present else None
            used = [m for m in ("audio", "video") if cards[m] is not None]
            row = {"clean": clean, "modalities": used, "flags": sorted({_flag(flag, m, used) for m,
                                                                        c in cards.items() if c
                                                                          for flag in c.get("flags", [])})}
            row["audio"] = _at(cards["audio"], budgets["audio"])
            row["video"] = _at(cards["video"], budgets["video"])
            row["both"] = _at(cards["both"],
                              budgets["audio"]) if cards["both"] else row["audio"] if cards["audio"] else row["video"]
            for m, card in minimal.items():
                entry = (card or {}).get("minimal") or [None]
                row[f"minimal_{m}"] = None if entry[0] is None else {
                    "median": entry[0]["median_eps"]["value"], "ci95": entry[0]["median_eps"]["ci95"],
                    "found": entry[0]["found"], "attacked": entry[0]["attacked"]}
            per_norm[norm] = row
        models[name] = per_norm
    theorem = {norm: theorem_check(out, names, norm, main) for norm in plan["minimal_norms"]}
    return {"plan": plan, "models": models, "theorem": theorem}


def _flag(flag: str, attacked: str, used: list[str]) -> str:
    """A run's flag, named by the attacked input. One input of a fused model is not expected to break
    it at any budget (the other may decide alone): that flag says so."""
    if flag == EXPECTED_FLAG and len(used) == 2 and attacked in used:
        return f"{flag} ({attacked}; expected: the other input can decide alone)"
    return f"{flag} ({attacked})"


def _minimal_records(out: Path, name: str, norm: str, main: str) -> pd.DataFrame | None:
    run = fusion_run(out / file_safe(name), "minimal", "audio", norm, main)
    if not (run / "records.jsonl").exists():
        return None
    rows = read_records(run)
    eps = pd.to_numeric(rows["eps"], errors="coerce").where(rows["success"] == True, np.inf)  # noqa: E712
    return pd.DataFrame({"clip_id": rows["clip_id"], "correct": rows["clean_correct"].astype(bool), "eps": eps})


def theorem_check(out: Path, names: list[str], norm: str, main: str) -> dict:
    """Clips flipped by an audio-only attack on a fused model below the audio-only model's minimal ε."""
    audio_models = [n for n in names if _modalities(out, n) == ["audio"]]
    fused = [n for n in names if _modalities(out, n) == ["audio", "video"]]
    if not audio_models or not fused:
        return {"reference": None, "models": {},
                "note": "needs an audio-only model and a fused model among --models (e.g. audio-only av-late)"}
    reference = audio_models[0]
    audio = _minimal_records(out, reference, norm, main)
    results = {}
    for name in fused:
        fused_rows = _minimal_records(out, name, norm, main)
        if audio is None or fused_rows is None:
            continue
        both = audio.merge(fused_rows, on="clip_id", suffixes=("_audio", "_fused"))
        both = both[both["correct_audio"] & both["correct_fused"]]
        cases = both[np.isfinite(both["eps_fused"]) & (both["eps_fused"] < both["eps_audio"])]
        ratio = (cases["eps_audio"] / cases["eps_fused"]).replace(np.inf, np.nan)
        example = None
        if len(cases):
            best = cases.loc[(cases["eps_audio"] / cases["eps_fused"]).idxmax()]
            example = {"clip_id": best["clip_id"], "eps_fused": float(best["eps_fused"]),
                       "eps_audio": float(best["eps_audio"])}
        results[name] = {"clips_correct_for_both": int(len(both)), "cases": int(len(cases)),
                         "share": float(len(cases) / len(both)) if len(both) else None,
                         "median_ratio": float(np.nanmedian(ratio)) if ratio.notna().any() else None,
                         "example": example}
    return {"reference": reference, "norm": norm, "models": results}


def _modalities(out: Path, name: str) -> list[str]:
    model_dir = out / file_safe(name)
    plan = json.loads((out / FUSION_FILE).read_text())
    norm = plan["norms"][0]
    return [m for m in ("audio", "video") if (fusion_run(model_dir, "pgd", m, norm,
                                                         plan["main_norm"]) / "card.json").exists()]


def _cell(row: dict, key: str) -> str:
    if row[key] is None and key in ("audio", "video"):
        return f"{fmt(row['clean'])} (unused)"
    return fmt(row[key])


def fusion_sections(summary: dict) -> list[tuple[str, list[str], list[list[str]], str]]:
    """The fusion tables (one per norm) and the theorem check, as report sections."""
    plan, sections = summary["plan"], []
    for norm in plan["norms"]:
        budgets = plan["table_eps"][norm]
        header = ["model", "clean", f"audio attacked (ε={budgets['audio']:.4g})",
                  f"video attacked (ε={budgets['video']:.4g})",
                  "both attacked"]
        minimal = norm in plan["minimal_norms"]
        if minimal:
            header += ["median minimal ε audio", "median minimal ε video"]
        header.append("flags")
        rows = []
        for name, per_norm in summary["models"].items():
            row = per_norm[norm]
            cells = [name, fmt(row["clean"]), _cell(row, "audio"), _cell(row, "video"), fmt(row["both"])]
            if minimal:
                cells += [_minimal_cell(row["minimal_audio"]), _minimal_cell(row["minimal_video"])]
            rows.append(cells + [", ".join(row["flags"]) or "–"])
        sections.append((f"Audio-visual fusion under attack ({norm})", header, rows,
                         f"Robust accuracy under per-clip PGD ({norm}; audio ε in waveform samples, full scale 1; "
                         f"video ε in pixels, range [0, 1]); 'both' attacks audio and video at once, each within its "
                         f"own budget. Minimal ε: median over clean-correct clips of the smallest budget at which PGD "
                         f"flips the clip (found / attacked in compare.json). An input a model does not use holds "
                         f"its clean accuracy."))
    for norm, check in summary["theorem"].items():
        if not check["models"]:
            continue
        header = ["fused model", "clips correct for both", "flipped below the audio model's minimal ε", "share",
                  "median ε_audio / ε_fused", "example (clip: ε_fused vs ε_audio)"]
        rows = [[name, str(r["clips_correct_for_both"]), str(r["cases"]), fmt(r["share"]), fmt(r["median_ratio"]),
                 "–" if r["example"] is None else f"{r['example']['clip_id']}: {r['example']['eps_fused']:.3g} vs "
                 f"{r['example']['eps_audio']:.3g}"] for name, r in check["models"].items()]
        sections.append((f"Theorem check: audio-only attacks on fused models ({norm})", header, rows,
                         f"Reference audio model: {check['reference']}. A case is a clip that the audio model and the "
                         f"fused model both classify correctly, where the smallest audio-only perturbation that flips "
                         f"the fused model is smaller than the smallest one that flips the audio model: the fused "
                         f"model falls inside the audio model's own robustness radius (thesis ch. 11 theorem; both ε "
                         f"are PGD upper bounds, see robustaudio/report/fusion.py)."))
    return sections


def _minimal_cell(entry: dict | None) -> str:
    if entry is None:
        return "–"
    return f"{fmt(entry['median'], 4)} ({entry['found']}/{entry['attacked']})"


def figure_fusion(summary: dict, norm: str) -> plt.Figure:
    """Grouped bars per model: clean, audio attacked, video attacked, both attacked."""
    names = list(summary["models"])
    keys = ("clean", "audio", "video", "both")
    colours = (style.CLEAN, *style.SERIES[:3])
    fig, axes = style.figure(1, 1, width=min(style.WIDTH, 1.4 * len(names) + 3), height=3.6)
    ax = axes[0, 0]
    width = 0.8 / len(keys)
    for k, (key, colour) in enumerate(zip(keys, colours, strict=True)):
        values = [summary["models"][n][norm][key] for n in names]
        values = [summary["models"][n][norm]["clean"] if v is None else v for n, v in zip(names, values)]
        ax.bar(np.arange(len(names)) + (k - 1.5) * width, values, width, color=colour,
               label=key if key == "clean" else f"{key} attacked")
    budgets = summary["plan"]["table_eps"][norm]
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, rotation=20)
    style.accuracy_axis(ax)
    ax.set_title(f"{norm}: audio ε = {budgets['audio']:.4g}, video ε = {budgets['video']:.4g}")
    style.legend_outside(ax)
    style.finish(fig)
    return fig
