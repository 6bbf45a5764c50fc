"""What a reader sees first: one sentence with the key figure, a trust line from the sanity checks, and
the settings, for every kind of report.

A :class:`Headline` is plain data; :func:`robustaudio.report.document.document_markdown` and
:func:`~robustaudio.report.document.document_html` render it above everything else (the HTML with the
flags in a coloured box, each with its fix). :func:`run_headline` builds one for an attack, minimal-ε
or natural-noise run from its card and records; the study reports (comparison, jamming, defenses,
sticker) build theirs from their own summaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

NORM_NAMES = {"linf": "L∞", "l2": "L2", "l1": "L1"}
# The members of the "reliable" ensemble in the order they run (robustaudio.runner.registry._reliable);
# APGD-T runs only on models with a runner-up ranking, Square only for L∞ and L2.
ENSEMBLE = ("apgd-ce", "apgd-t", "square")
MEMBER_NAMES = {"apgd-ce": "APGD-CE", "apgd-t": "APGD-T", "square": "Square"}
ATTACK_NAMES = {"pgd": "PGD", "apgd-ce": "APGD-CE", "apgd-t": "APGD-T", "square": "Square (black-box)",
                "reliable": "reliable"}


@dataclass
class Flag:
    """One flagged check: its name, where it was seen, what was seen, and the fix."""

    name: str
    where: str
    seen: str
    fix: str


@dataclass
class Headline:
    """``sentence``: the key figure; ``flags`` (each with its fix) or ``passed`` (e.g. "all 15 sanity
    checks passed"); ``settings``: short "name: value" items; ``table``: an optional section rendered
    right under it (the ensemble's per-member table)."""

    sentence: str
    flags: list[Flag] = field(default_factory=list)
    passed: str = ""
    settings: list[str] = field(default_factory=list)
    table: tuple | None = None  # a render.Section


def fmt(value: object, digits: int = 2) -> str:
    """A number for prose: ``digits`` significant figures, '–' for None or non-finite."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def accuracy(value: float | None) -> str:
    """An accuracy for prose: two decimals."""
    return "–" if value is None or not np.isfinite(value) else f"{value:.2f}"


def interval(estimate: dict) -> str:
    low, high = estimate["ci95"]
    return f"{accuracy(estimate['value'])} [{accuracy(low)}, {accuracy(high)}]"


# ---- the attack ------------------------------------------------------------------------------------

def members_for(settings: dict, norm: str) -> list[str]:
    """The ensemble members a "reliable" run used for ``norm`` (see :data:`ENSEMBLE`)."""
    labels = settings.get("labels") or []
    ranked = bool(settings.get("multilabel")) or len(labels) >= 3
    return [m for m in ENSEMBLE if (m != "apgd-t" or ranked) and (m != "square" or norm in ("linf", "l2"))]


def evaluation_text(settings: dict, norm: str | None = None, short: bool = False) -> str:
    """The attack as a reader needs it: "reliable (APGD-CE → APGD-T → Square; 25 steps × 1 restart per
    APGD member, 300 Square queries)", "PGD, 10 steps × 1 restart", ...; ``short``: the ensemble's
    members and steps only."""
    name, backend = settings.get("attack", "?"), settings.get("backend", "native")
    steps, restarts = settings.get("steps"), settings.get("restarts", 1)
    runs = f"{steps} steps × {restarts} restart{'s' if restarts != 1 else ''}"
    if backend != "native":
        return (f"{backend} {name}, " + ("its authors' default settings" if steps is None else
                                         f"{steps} steps (the library's other settings)"))
    if name == "reliable":
        members = members_for(settings, norm or _norm(settings))
        if short:
            return f"reliable ({' → '.join(MEMBER_NAMES[m] for m in members)}, {steps} steps)"
        parts = [f"{runs} per APGD member"]
        if "apgd-t" in members:
            targets = settings.get("targets", 3)
            parts.append(f"APGD-T on {targets} runner-up class{'es' if targets != 1 else ''}")
        if "square" in members:
            parts.append(f"Square {settings.get('queries')} queries")
        return f"reliable ({' → '.join(MEMBER_NAMES[m] for m in members)}; {', '.join(parts)})"
    if name == "square":
        return f"Square (black-box), {settings.get('queries')} queries"
    if name == "apgd-t":
        targets = settings.get("targets", 3)
        return f"APGD-T, {runs}, {targets} runner-up class{'es' if targets != 1 else ''}"
    if name == "minimal":
        return f"minimal-ε search (bisection over PGD runs of {steps} steps)"
    if name == "universal":
        return (f"one universal perturbation learned on {settings.get('universal_from', '?')} "
                f"({settings.get('universal_clips', '?')} clips), added to every clip")
    return f"{ATTACK_NAMES.get(name, name)}, {runs}"


def _norm(settings: dict) -> str:
    threats = settings.get("threats") or [{}]
    return threats[0].get("norm", "linf")


def budget_text(condition: dict) -> str:
    """"ε = 0.002 (L∞, waveform)" or "SNR 30 dB (L2, waveform)"."""
    where = f"{NORM_NAMES.get(condition['norm'], condition['norm'])}, {condition['domain']}"
    if condition.get("eps") is not None:
        return f"ε = {condition['eps']:g} ({where})"
    return f"an SNR budget of {condition['snr_db']:g} dB ({where})"


def perturbation_snr(records: pd.DataFrame, condition: str) -> float | None:
    """Median SNR (dB) of the perturbations of a condition's attacked clips (carried clips excluded: the
    attack did not run on them at this budget), broken or not: the budget in dB for these clips."""
    rows = records[(records["condition"] == condition) & (records["attacked"] == True)  # noqa: E712
                   & (records["carried"] != True)]  # noqa: E712
    values = pd.to_numeric(rows["snr_db"], errors="coerce").dropna()
    return float(values.median()) if len(values) else None


def median_eps(records: pd.DataFrame, condition: str) -> float | None:
    rows = records[(records["condition"] == condition) & (records["attacked"] == True)]  # noqa: E712
    values = pd.to_numeric(rows["eps"], errors="coerce").dropna()
    return float(values.median()) if len(values) else None


def _spread(items: list) -> list:
    """At most four items of an ordered list: all of them, or the first, two in the middle, the last."""
    if len(items) <= 4:
        return items
    return [items[0], items[len(items) // 3], items[2 * len(items) // 3], items[-1]]


def attack_sentence(card: dict, records: pd.DataFrame) -> str:
    """Clean → robust accuracy along each ε curve, each budget in ε and in dB SNR, under the evaluation."""
    groups: dict[tuple, list[dict]] = {}
    for c in card["conditions"]:
        groups.setdefault((c["norm"], c["domain"], c["eps"] is None), []).append(c)
    parts = []
    for (norm, domain, relative), conditions in groups.items():
        steps = []
        for i, c in enumerate(_spread(conditions)):
            if relative:
                eps = median_eps(records, c["condition"])
                budget = f"{c['snr_db']:g} dB SNR" + (f" (median ε {fmt(eps)})" if eps is not None else "")
            else:
                snr = perturbation_snr(records, c["condition"])
                budget = (f"ε = {c['eps']:g}" if i else f"{NORM_NAMES.get(norm, norm)} ε = {c['eps']:g}") + (
                    f" ({'perturbations at a median ' if not i else ''}{snr:.0f} dB SNR)" if snr is not None else "")
            steps.append(f"{interval(c['robust_accuracy'])} at {budget}")
        parts.append(" → ".join(steps) + ("" if domain == "waveform" else f" in the {domain} domain"))
    clean = card["clean_accuracy"]["value"]
    sentence = (f"Accuracy {accuracy(clean)} clean → robust accuracy {'; '.join(parts)}, under "
                f"{evaluation_text(card['settings'], short=True)}, on {card['clips']} clips.")
    transfers = [c for c in card["conditions"] if c.get("transfer")]
    if transfers:
        t = transfers[-1]["transfer"]
        sentence += (f" The adversarial audio at {budget_text(transfers[-1])} transfers to {t['model']} at a rate of "
                     f"{accuracy(t['transfer_rate']['value'])} (its accuracy {accuracy(t['clean_accuracy']['value'])} "
                     f"clean → {accuracy(t['robust_accuracy']['value'])}).")
    return sentence


def minimal_sentence(card: dict) -> str:
    parts = []
    for m in card["minimal"]:
        median = m["median_eps"]
        where = f"{NORM_NAMES.get(m['norm'], m['norm'])} {m['domain']}"
        chance = (f"; accuracy reaches chance at ε = {fmt(m['eps_at_chance'], 3)}" if m.get("eps_at_chance") is not None
                  else "")
        snr = f" (median SNR {m['median_snr_db']:.0f} dB)" if m.get("median_snr_db") is not None else ""
        parts.append(f"median minimal ε {fmt(median['value'], 3)} [{fmt(median['ci95'][0], 3)}, "
                     f"{fmt(median['ci95'][1], 3)}] ({where}){snr}: {m['found']} of {m['attacked']} clean-correct "
                     f"clips broken{chance}")
    return (f"Accuracy {accuracy(card['clean_accuracy']['value'])} clean; {'; '.join(parts)}, on {card['clips']} "
            f"clips, by {evaluation_text(card['settings'])}.")


def ensemble_table(card: dict, records: pd.DataFrame) -> tuple | None:
    """The AutoAttack table: robust accuracy after each member of a "reliable" run, per condition."""
    conditions = [c for c in card["conditions"] if c["attack"] == "reliable"]
    if not conditions or "broken_by" not in records:
        return None
    members = list(dict.fromkeys(m for c in conditions for m in members_for(card["settings"], c["norm"])))
    header = ["condition", "clean", *[f"after {MEMBER_NAMES[m]}" for m in members]]
    rows = []
    for c in conditions:
        block = records[records["condition"] == c["condition"]]
        n = max(len(block), 1)
        standing = float(block["clean_correct"].astype(bool).sum())
        row = [c["condition"], accuracy(standing / n)]
        for m in members:
            if m not in members_for(card["settings"], c["norm"]):
                row.append("not run")
                continue
            standing -= float((block["broken_by"] == m).sum())
            row.append(accuracy(standing / n))
        rows.append(row)
    note = ("Robust accuracy after each member in turn; each attacks only the clips every earlier member failed to "
            "fool (AutoAttack's protocol), so the last column is the run's robust accuracy. A drop after the first "
            "member is what a single attack would have missed.")
    return ("Robust accuracy after each attack of the ensemble", header, rows, note)


# ---- natural noise ---------------------------------------------------------------------------------

def severity_text(value: float, unit: str | None) -> str:
    """"SNR 10 dB", "RT60 1.2 s" from a severity and its unit ("SNR dB", "RT60 s")."""
    words = (unit or "").split()
    if len(words) == 2:
        return f"{words[0]} {value:g} {words[1]}"
    return f"{value:g} {unit or ''}".strip()


def noise_curves(card: dict) -> dict[str, list[dict]]:
    """corruption -> its conditions, mildest severity first (the suite's order)."""
    curves: dict[str, list[dict]] = {}
    for c in card["conditions"]:
        if c.get("kind") == "noise":
            curves.setdefault(c["attack"].removeprefix("noise:"), []).append(c)
    for name, conditions in curves.items():
        order = card["settings"].get("corruptions", {}).get(name)
        if order:
            conditions.sort(key=lambda c: order.index(c["severity"]) if c["severity"] in order else len(order))
    return curves


def noise_sentence(card: dict) -> str:
    """Clean accuracy, then accuracy under each corruption along its severities (at most two corruptions),
    or at each corruption's middle severity: the mean, the lowest and the highest."""
    clean = accuracy(card["clean_accuracy"]["value"])
    curves = noise_curves(card)
    if len(curves) <= 2:
        parts = [f"under {name}: " + " → ".join(f"{interval(c['robust_accuracy'])} at "
                                                 f"{severity_text(c['severity'], c['severity_unit'])}"
                                                 for c in _spread(conditions))
                 for name, conditions in curves.items()]
        return f"Accuracy {clean} clean → accuracy {'; '.join(parts)}, on {card['clips']} clips."
    middle = {name: conditions[len(conditions) // 2] for name, conditions in curves.items()}
    values = {name: c["robust_accuracy"]["value"] for name, c in middle.items()}
    low, high = min(values, key=values.__getitem__), max(values, key=values.__getitem__)
    at = lambda name: (f"{accuracy(values[name])} at "  # noqa: E731
                       f"{severity_text(middle[name]['severity'], middle[name]['severity_unit'])}")
    return (f"Accuracy {clean} clean → {accuracy(float(np.mean(list(values.values()))))} on average under "
            f"{len(curves)} kinds of natural noise at their middle severity; lowest under {low} ({at(low)}), highest "
            f"under {high} ({at(high)}); on {card['clips']} clips.")


# ---- trust -----------------------------------------------------------------------------------------

def trust(checks: list[dict]) -> tuple[list[Flag], str]:
    """Flags grouped by check (one entry per check name, the budgets where it fired listed), or the
    passed line."""
    flagged: dict[str, list[dict]] = {}
    for c in checks:
        if c["flagged"]:
            flagged.setdefault(c["name"], []).append(c)
    flags = [Flag(name, ", ".join(c["threat"] for c in found if c.get("threat")), found[0]["seen"]
                  + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""), found[0]["fix"])
             for name, found in flagged.items()]
    passed = "" if flags else (f"All {len(checks)} sanity checks passed." if checks else "")
    return flags, passed


# ---- the clips -------------------------------------------------------------------------------------

def clips_text(card: dict, records: pd.DataFrame) -> str:
    """How many clips, of how many, and how they were chosen (``--limit``: a seeded sample stratified over
    labels; runs made before it took the first N)."""
    from ..data.datasets import LIMIT_SEED, AudioDataset, limited

    settings = card["settings"]
    n = card["clips"]
    per_label = records.drop_duplicates("clip_id")["label"].value_counts() if len(records) else pd.Series(dtype=int)
    labels = f"{len(per_label)} label{'s' if len(per_label) != 1 else ''}"
    if len(per_label):
        low, high = int(per_label.min()), int(per_label.max())
        labels += f", {low} per label" if low == high else f", {low}–{high} per label"
    ids = set(records["clip_id"]) if len(records) else set()
    try:
        dataset = AudioDataset.from_path(settings["data"], split=settings.get("split"))
        split = settings.get("split")
        if split is None:  # noise runs do not record it: the one split that holds every clip, if there is one
            splits = {c.split for c in dataset.clips if c.id in ids}
            if len(splits) == 1 and None not in splits:
                split = splits.pop()
                dataset = AudioDataset.from_path(settings["data"], split=split)
    except Exception:  # data moved or unreadable: say what the records say
        return f"{n} clips ({labels})"
    split = f" {split}" if split else ""
    total = len(dataset)
    if settings.get("clips", total) >= total:
        return f"all {total}{split} clips of {Path(settings['data']).name} ({labels})"
    limit = settings["clips"]
    if ids <= {c.id for c in limited(dataset.clips, limit)}:
        how = f"a sample stratified over labels (fixed seed {LIMIT_SEED}, the same for every run)"
    elif ids <= {c.id for c in dataset.clips[:limit]}:
        how = "the first in dataset order"
    else:
        how = "chosen by --limit"
    return f"{n} of {total}{split} clips of {Path(settings['data']).name}, {how} ({labels})"


# ---- one run ---------------------------------------------------------------------------------------

def run_headline(card: dict, records: pd.DataFrame) -> Headline | None:
    """The headline of an attack, minimal-ε or noise run; None for a run without records."""
    if "clean_accuracy" not in card:
        return None
    settings = card["settings"]
    noise = bool(card["conditions"]) and all(c.get("kind") == "noise" for c in card["conditions"])
    if noise:
        sentence = noise_sentence(card)
    elif card["conditions"]:
        sentence = attack_sentence(card, records)
    elif card.get("minimal"):
        sentence = minimal_sentence(card)
    else:
        return None
    flags, passed = trust(card.get("checks", []))
    if noise:
        passed = passed or ("No sanity check applies to natural noise: each accuracy is measured directly, with "
                            "noise seeded per clip and corruption; there is no optimiser that could fall short.")
    elif not card.get("checks"):
        passed = "No sanity check ran (--no-sanity, or an attack the probes do not cover): nothing vouches for "\
                 "the attack's strength."
    items = []
    if not noise:
        items.append(f"attack: {evaluation_text(settings)}")
        if settings.get("precision"):
            items.append(f"precision: {settings['precision']}")
    else:
        items.append("corruptions: " + ", ".join(f"{name} ({len(levels)} severities)"
                                                  for name, levels in settings.get("corruptions", {}).items()))
    items += [f"model: {card['model']}", f"clips: {clips_text(card, records)}", f"seed: {card['seed']}"]
    return Headline(sentence, flags, passed, items, None if noise else ensemble_table(card, records))
