"""The defenses report: the table (clean / robust accuracy, attack, training cost), certified-accuracy
curves, and a closing note, as ``defenses.json``, ``defenses.md`` and ``defenses.html``.

Built from the summary of :func:`robustaudio.studies.defenses.run_defenses` (and, for
``robustaudio certify`` alone, from certification curves only).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..defenses.smoothing import certified_accuracy, snr_of_radius
from ..records import check_own_folders, write_json_atomic, write_text_atomic
from . import style
from .card import json_safe
from .document import FIGURES_DIR, document_html, document_markdown, estimate_text, fmt, save_figure
from .headline import Headline, accuracy
from .listen import Listen, listen_html, listen_markdown, write_figures

RADII_IN_SIGMAS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)  # the table's radii, in units of the largest σ
COMPARABLE = 0.05  # mixup "comparable" to adversarial training: robust accuracy at most this much lower


def radii_for(curves: list[dict]) -> list[float]:
    """The certified table's radii: multiples of the largest σ among ``curves`` (units of the smoothed space)."""
    sigma = max(c["sigma"] for c in curves)
    return [float(f"{f * sigma:.4g}") for f in RADII_IN_SIGMAS]


def curve_summary(curve: dict, radii: list[float]) -> dict:
    """Certified accuracy at ``radii``, abstentions and the radii as SNR (median over clips) for one curve."""
    rows = curve["rows"]
    norms = np.array([r["norm"] for r in rows]) if rows else np.array([])
    return {"name": curve["name"], "description": curve["description"], "sigma": curve["sigma"],
            "domain": curve["domain"], "denoiser": curve["denoiser"], "clips": len(rows), "n0": curve["n0"],
            "n": curve["n"], "alpha": curve["alpha"], "radii": list(radii),
            "certified_accuracy": certified_accuracy(rows, radii),
            "abstain_rate": float(np.mean([r["prediction"] is None for r in rows])) if rows else None,
            "median_radius_correct": float(np.median([r["radius"] for r in rows if r["correct"]]))
            if any(r["correct"] for r in rows) else None,
            "median_snr_db_at_radius": [None if r == 0 or not len(norms) else float(np.median(
                [snr_of_radius(x, r) for x in norms])) for r in radii],
            "seconds": curve["seconds"]}


def figure_certified(curves: list[dict]) -> plt.Figure:
    """Certified accuracy against the L2 radius: one colour per σ, solid with the denoiser, dashed without."""
    fig, axes = style.figure(1, 1, width=style.WIDTH + 1.5, height=3.6)
    ax = axes[0][0]
    sigmas = sorted({c["sigma"] for c in curves})
    for curve in curves:
        rows = curve["rows"]
        top = max([r["radius"] for r in rows] + [curve["sigma"]]) * 1.05
        grid = np.linspace(0, top, 200)
        color = style.SERIES[sigmas.index(curve["sigma"]) % len(style.SERIES)]
        label = f"σ={curve['sigma']:g}, " + ("denoised" if curve["denoiser"] else "no denoiser")
        ax.plot(grid, certified_accuracy(rows, grid), color=color, linestyle="-" if curve["denoiser"] else "--",
                label=label)
    domain = curves[0]["domain"] if curves else "feature"
    ax.set_xlabel(f"L2 radius ({'normalised log-mel' if domain == 'feature' else 'waveform samples'})")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Randomized smoothing: certified accuracy")
    style.legend_outside(ax)
    style.finish(fig)
    return fig


def certification_section(summaries: list[dict]) -> tuple[str, list[str], list[list[str]], str]:
    """One row per curve: certified accuracy at each radius (the header also states each radius as SNR)."""
    first = summaries[0]
    snrs = first["median_snr_db_at_radius"]
    header = ["smoothing", "clips", *[f"r={r:g}" + (f" ({snr:.0f} dB)" if snr is not None else "")
                                      for r, snr in zip(first["radii"], snrs)], "abstain"]
    rows = [[s["description"], str(s["clips"]), *[fmt(a) for a in s["certified_accuracy"]], fmt(s["abstain_rate"])]
            for s in summaries]
    unit = "normalised log-mel units" if first["domain"] == "feature" else "waveform sample units (full scale 1)"
    note = (f"Certified accuracy: fraction of clips that CERTIFY (Cohen et al. 2019; n0 = {first['n0']}, "
            f"n = {first['n']}, α = {first['alpha']:g}, one-sided Clopper–Pearson) labels correctly with an L2 radius "
            f"≥ r, r in {unit}; in brackets, r as an SNR, 20·log10(‖x‖₂ / r) dB, median over the clips. With "
            f"n = {first['n']} the largest certifiable radius is σ·Φ⁻¹(α^(1/n)) = "
            f"{_max_radius_factor(first['n'], first['alpha']):.2f}σ. 'denoised': one-shot diffusion denoising at the "
            f"step matched to σ before the classifier (Carlini et al. 2023). 'abstain': CERTIFY's lower bound on the "
            f"top class stayed below 1/2.")
    return "Certified accuracy (randomized smoothing)", header, rows, note


def _max_radius_factor(n: int, alpha: float) -> float:
    from scipy import stats
    return float(stats.norm.ppf(alpha ** (1 / n)))


def _cost(mix: dict, adv: dict) -> tuple[float, float, str] | None:
    """The two rows' training costs in one measure: CPU seconds per epoch when both have it, else wall seconds."""
    for key, unit in (("cpu_per_epoch", "CPU s per epoch"), ("training_seconds", "s of training (wall)")):
        if mix.get(key) and adv.get(key):
            return mix[key], adv[key], unit
    return None


def closing_note(rows: list[dict]) -> str:
    """Whether mixup gave protection comparable to adversarial training at lower cost, from the table."""
    by: dict[str, dict] = {}  # per defense, the row of its strongest attack (lowest robust accuracy)
    for r in rows:
        if r["defense"] not in by or r["robust_accuracy"]["value"] < by[r["defense"]]["robust_accuracy"]["value"]:
            by[r["defense"]] = r
    if "adversarial" not in by or not any(k.startswith("mixup") for k in by):
        return ""
    adv = by["adversarial"]
    parts = []
    for name in [k for k in by if k.startswith("mixup")]:
        mix = by[name]
        comparable = adv["robust_accuracy"]["value"] - mix["robust_accuracy"]["value"] <= COMPARABLE
        cost = _cost(mix, adv)
        cheaper = cost is not None and cost[0] < cost[1]
        cost_text = (f"{cost[0]:.3g} vs {cost[1]:.3g} {cost[2]} ({cost[1] / cost[0]:.1f}× cheaper)" if cost
                     else "training cost unknown")
        verdict = ("comparable protection at lower cost" if comparable and cheaper else
                   "comparable protection, but not cheaper" if comparable else "not comparable protection here")
        parts.append(f"{name}: robust accuracy {mix['robust_accuracy']['value']:.3f} ({mix['attack']}) vs "
                     f"{adv['robust_accuracy']['value']:.3f} for adversarial training ({adv['attack']}), {cost_text}: "
                     f"{verdict}.")
    if "none" in by:
        parts.append(f"Undefended: {by['none']['robust_accuracy']['value']:.3f} ({by['none']['attack']}).")
    return (f"Does mixup protect like adversarial training at lower cost? (each defense at its strongest attack in "
            f"the table; comparable = robust accuracy at most {COMPARABLE:g} below adversarial training's) "
            + " ".join(parts))


def table_section(summary: dict) -> tuple[str, list[str], list[list[str]], str]:
    cpu = any(r.get("cpu_per_epoch") for r in summary["rows"])
    header = ["defense", "what", "clean acc. [95% CI]", "robust acc. [95% CI]", "attack", "training s (wall)",
              *(["training CPU s / epoch"] if cpu else []), "attack s"]
    rows = [[r["defense"], r["description"], estimate_text(r["clean_accuracy"]), estimate_text(r["robust_accuracy"]),
             r["attack"],
             fmt(r["training_seconds"], 4) + (f" ({r['training_note']})" if r.get("training_note") else ""),
             *([fmt(r.get("cpu_per_epoch"), 3)] if cpu else []), f"{r['attack_seconds']:.0f}"]
            for r in summary["rows"]]
    note = (f"{summary['model']} on {summary['data']} ({summary['split']} split, {summary['rows'][0]['clips']} clips), "
            f"threat model {summary['threat_name']}. Robust accuracy counts clean errors as errors; intervals are 95% "
            f"Wilson score intervals over clips. Training s (wall): wall time of the training loop from each "
            "checkpoint's card"
            + ("; CPU s / epoch: measured back to back on one thread (wall times on a loaded machine mostly "
               "measure the load)" if cpu else "")
            + ". Each row's records and full report are in its run directory (attacks/<attack>/<defense>/).")
    return "Defenses at a fixed budget", header, rows, note


def build_defenses_report(out: str | Path, summary: dict, listen: Listen | None = None) -> dict:
    """Write ``defenses.json`` / ``.md`` / ``.html`` and ``figures/certified.png`` into ``out``; returns the
    JSON document (table rows, certification summaries, closing note). ``listen``: examples to hear
    (:func:`~robustaudio.report.listen.smoothing_examples`), embedded after the figures."""
    out = Path(out)
    check_own_folders(out)
    (out / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    curves = summary.get("certification", [])
    certification = [curve_summary(c, radii_for(curves)) for c in curves]
    document = {**{k: v for k, v in summary.items() if k != "certification"}, "certification": certification,
                "closing_note": closing_note(summary.get("rows", []))}
    write_json_atomic(out / "defenses.json", json_safe(document))
    sections, figures = [], []
    if summary.get("rows"):
        sections.append(table_section(summary))
    if certification:
        sections.append(certification_section(certification))
        figures.append(("Certified accuracy against the radius", "certified.png",
                        save_figure(figure_certified(curves), out / FIGURES_DIR / "certified.png")))
    lines = [f"model: {summary['model']}", f"data: {summary['data']} ({summary.get('split', 'test')})",
             f"seed: {summary.get('seed', 0)}"]
    lines += summary.get("notes", [])
    if document["closing_note"]:
        lines.append(document["closing_note"])
    title = f"Defenses: {summary['model']}"
    headline = defenses_headline(summary, certification)
    write_figures(listen, out / FIGURES_DIR)
    write_text_atomic(out / "defenses.md", document_markdown(title, lines, sections, figures, [], headline,
                                                             listen_markdown(listen)))
    write_text_atomic(out / "defenses.html", document_html(title, lines, sections, figures, [], headline,
                                                           listen_html(listen)))
    return document


def defenses_headline(summary: dict, certification: list[dict]) -> Headline:
    """Each defense's clean → robust accuracy at its strongest attack; the best certified accuracy at the
    first non-zero radius."""
    by: dict[str, dict] = {}
    for r in summary.get("rows", []):
        if r["defense"] not in by or r["robust_accuracy"]["value"] < by[r["defense"]]["robust_accuracy"]["value"]:
            by[r["defense"]] = r
    parts = []
    if by:
        each = ", ".join(f"{name} {accuracy(r['clean_accuracy']['value'])} → {accuracy(r['robust_accuracy']['value'])}"
                         for name, r in by.items())
        parts.append(f"Clean → robust accuracy under {summary.get('threat_name', 'the threat model')}, each defense at "
                     f"its strongest attack: {each}")
    if certification:
        radius = certification[0]["radii"][1] if len(certification[0]["radii"]) > 1 else certification[0]["radii"][0]
        best = max(certification, key=lambda c: c["certified_accuracy"][1] if len(c["certified_accuracy"]) > 1 else 0)
        value = best["certified_accuracy"][1] if len(best["certified_accuracy"]) > 1 else best["certified_accuracy"][0]
        parts.append(f"certified accuracy at L2 radius {radius:g}: up to {accuracy(value)} ({best['name']})")
    sentence = "; ".join(parts) + "." if parts else "No defense was evaluated."
    settings = [f"model: {summary['model']}", f"split: {summary.get('split', 'test')}",
                f"seed: {summary.get('seed', 0)}"]
    if summary.get("rows"):
        settings.insert(1, f"clips: {summary['rows'][0]['clips']}")
    passed = ("Adaptive attacks (EOT through randomness, through the purifier) are the ones to trust here: a "
              "defense scored only by a non-adaptive attack is not measured.")
    return Headline(sentence, [], passed, settings)
