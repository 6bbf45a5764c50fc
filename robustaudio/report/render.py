"""The attack and noise report of a run (``robustaudio attack`` / ``noise``): its card, tables and figures, built
from the records only; written as Markdown and HTML by :mod:`.document`."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..records import check_own_folders, read_records, read_warnings, write_json_atomic, write_text_atomic
from . import style
from .card import CARD_FILE, build_card, condition_order, json_safe
from .document import FIGURES_DIR, document_html, document_markdown, estimate_text, fmt, save_figure
from .headline import Flag, median_eps, noise_curves, perturbation_snr, run_headline, severity_text
from .listen import clear, listen_html, listen_markdown, recompute, write_figures


def figure_accuracy_vs_budget(card: dict, records: pd.DataFrame | None = None) -> plt.Figure | None:
    """Robust accuracy (95% CI) against ε, one panel per norm/domain with at least two budgets; ε with its
    unit below, the median SNR of the perturbations above (relative budgets: SNR below, median ε above)."""
    groups: dict[tuple, list[dict]] = {}
    for c in card["conditions"]:
        if c.get("kind") != "noise":
            groups.setdefault((c["norm"], c["domain"], c["eps"] is None), []).append(c)
    groups = {k: v for k, v in groups.items() if len(v) >= 2}
    if not groups:
        return None
    fig, axes = style.figure(1, len(groups), width=min(style.WIDTH * len(groups), 11), height=3.4)
    for ax, ((norm, domain, relative), conditions) in zip(axes[0], groups.items()):
        y = [c["robust_accuracy"]["value"] for c in conditions]
        low = [c["robust_accuracy"]["value"] - c["robust_accuracy"]["ci95"][0] for c in conditions]
        high = [c["robust_accuracy"]["ci95"][1] - c["robust_accuracy"]["value"] for c in conditions]
        if relative:
            x = [c["snr_db"] for c in conditions]
            ax.errorbar(x, y, yerr=[low, high], marker="o", capsize=3, color=style.ROBUST)
            ax.set_xlabel(f"budget: SNR of the perturbation (dB; {norm}, {domain})")
            ax.invert_xaxis()
            ax.set_xticks(x)
            ax.set_xticklabels([f"{v:g}" for v in x])
            if records is not None:
                eps = [median_eps(records, c["condition"]) for c in conditions]
                top = ax.secondary_xaxis("top")
                top.set_xticks(x)
                top.set_xticklabels(["–" if e is None else f"{e:.2g}" for e in eps])
                top.set_xlabel("median ε per clip")
        else:
            x = [c["eps"] for c in conditions]
            ax.errorbar(x, y, yerr=[low, high], marker="o", capsize=3, color=style.ROBUST)
            snr = [perturbation_snr(records, c["condition"]) for c in conditions] if records is not None else None
            style.eps_axes(ax, x, norm, domain, snr)
        style.clean_line(ax, card["clean_accuracy"]["value"])
        style.accuracy_axis(ax, "robust accuracy (95% CI)")
    style.finish(fig)
    return fig


def figure_noise(card: dict) -> plt.Figure | None:
    """Accuracy under each natural corruption against its severity, one small panel per corruption (mildest
    severity on the left, in the corruption's own unit), the clean accuracy as a line in each."""
    curves = noise_curves(card)
    if not curves:
        return None
    cols = min(4, len(curves))
    rows = -(-len(curves) // cols)
    fig, axes = style.figure(rows, cols, width=min(max(2.75 * cols, 4.5), 11), height=2.3 * rows + 0.4, sharey=True)
    clean = card["clean_accuracy"]["value"]
    for ax, (name, conditions) in zip(axes.flat, curves.items()):
        levels = list(range(len(conditions)))
        ax.plot(levels, [c["robust_accuracy"]["value"] for c in conditions], marker="o", color=style.ROBUST)
        ax.axhline(clean, color=style.CLEAN, linestyle="--", linewidth=1.1)
        ax.set_xticks(levels)
        ax.set_xticklabels([f"{c['severity']:g}" for c in conditions], fontsize=7.5)
        ax.set_title(name, fontsize=9.5)
        ax.set_xlabel(conditions[0]["severity_unit"] or "severity", fontsize=8.5)
        ax.set_ylim(-0.02, 1.05)
    for ax in axes.flat[len(curves):]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("accuracy")
    fig.suptitle(f"milder → harsher, left to right; dashed: clean {clean:.2f}", fontsize=8.5, color=style.CLEAN,
                 x=0.01, ha="left")
    style.finish(fig)
    return fig


def figure_minimal_eps(card: dict) -> plt.Figure | None:
    """Robust accuracy implied by the per-clip minimal ε (a step curve), one panel per norm/domain."""
    searches = [m for m in card.get("minimal", []) if m["accuracy_curve"]]
    if not searches:
        return None
    fig, axes = style.figure(1, len(searches), width=min(style.WIDTH * len(searches), 11), height=3.4)
    for ax, m in zip(axes[0], searches):
        eps, accuracy = np.array(m["accuracy_curve"]).T
        ax.step(np.concatenate([[eps[0] / 2], eps]), np.concatenate([[m["clean_accuracy"]], accuracy]),
                where="post", color=style.ROBUST)
        if m["chance"] is not None:
            ax.axhline(m["chance"], color=style.CHANCE, linestyle=":")
            ax.annotate("chance", xy=(0, m["chance"]), xycoords=("axes fraction", "data"), xytext=(2, 2),
                        textcoords="offset points", fontsize=8, color=style.CLEAN)
        median = m["median_eps"]["value"]
        if median is not None and np.isfinite(median):
            ax.axvline(median, color=style.SERIES[1], linestyle="--", linewidth=1.2)
            ax.annotate(f"median {median:.2g}", xy=(median, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                        textcoords="offset points", fontsize=8, color=style.SERIES[1])
        ax.set_xscale("log")
        name = {"linf": "L∞", "l2": "L2", "l1": "L1"}.get(m["norm"], m["norm"])
        ax.set_xlabel(f"{name} budget ε ({m['domain']}; log scale)")
        ax.set_title(f"{m['found']} of {m['attacked']} clips broken")
        style.accuracy_axis(ax, "robust accuracy")
    style.finish(fig)
    return fig


def per_class_series(card: dict) -> dict[str, dict[str, float]]:
    """Clean and each condition's per-class accuracy; for natural noise only each corruption's
    middle severity, so that a suite of 40 conditions stays readable."""
    series = card.get("per_class_accuracy", {})
    noise: dict[str, list] = {}
    for c in card.get("conditions", []):
        if c.get("kind") == "noise":
            noise.setdefault(c["attack"], []).append(c["condition"])
    dropped = {name for conditions in noise.values() for i, name in enumerate(conditions)
               if i != len(conditions) // 2}
    return {name: values for name, values in series.items() if name not in dropped}


def _short(condition: str) -> str:
    """A column label: the budget or severity of a condition name (``pgd-linf-waveform-eps=0.001`` -> ``ε=0.001``)."""
    if condition.startswith("noise-"):
        return condition.removeprefix("noise-")
    budget = condition.split("-")[-1]
    return budget.replace("eps=", "ε=").replace("snr=", "SNR ") if "=" in budget else condition


def figure_per_class(card: dict) -> plt.Figure:
    """Accuracy per class (rows) and condition (columns: clean first) as a heatmap, values in the cells."""
    series = per_class_series(card)
    classes = list(series["clean"])
    names = list(series)
    values = np.array([[series[name].get(c, np.nan) for name in names] for c in classes], dtype=float)
    fig, axes = style.figure(1, 1, width=min(2.6 + 1.05 * len(names), 11), height=max(2.2, 1.0 + 0.3 * len(classes)))
    style.heatmap(axes[0][0], values, classes, [_short(n) for n in names])
    axes[0][0].set_xlabel("condition" + (" (middle severity of each corruption)" if any(
        c.get("kind") == "noise" for c in card.get("conditions", [])) else ""))
    style.finish(fig)
    return fig


def figure_snr_histogram(records: pd.DataFrame, conditions: list[str]) -> plt.Figure | None:
    """SNR (dB) of the perturbations that fooled the model: one small panel per condition, one x axis."""
    fooled = records[(records["success"] == True) & records["snr_db"].notna()]  # noqa: E712
    shown = [c for c in conditions if (fooled["condition"] == c).any()]
    if not shown:
        return None
    bins = np.histogram_bin_edges(fooled["snr_db"].astype(float), bins=min(30, max(8, len(fooled) // 2)))
    fig, axes = style.figure(len(shown), 1, height=0.5 + 1.25 * len(shown), sharex=True)
    for ax, condition in zip(axes[:, 0], shown):
        values = fooled[fooled["condition"] == condition]["snr_db"].astype(float)
        ax.hist(values, bins=bins, color=style.ROBUST, alpha=0.85)
        style.count_axis(ax, "clips")
        ax.set_title(f"{_short(condition)}: {len(values)} fooled, median {values.median():.0f} dB", fontsize=9,
                     loc="left")
    axes[-1, 0].set_xlabel("SNR of the perturbation that fooled the model (dB; higher = quieter)")
    style.finish(fig)
    return fig


NOTE_FIXED = ("Robust accuracy counts clean errors as errors; the success rate is over clean-correct "
              "clips; perturbation medians (and the SNR) are over successful attacks, so they differ from the "
              "headline's SNR, the median over every attacked clip. Intervals: 95% Wilson score "
              "interval over clips.")
NOTE_NOISE = ("Every clip is corrupted at each severity, mildest first; accuracy under noise counts clean errors as "
              "errors, and 'turned wrong' is the share of the clips right when clean that the noise makes wrong. "
              "Each clip's noise is seeded by the run seed, the clip's batch and the corruption. Intervals: 95% "
              "Wilson score interval over clips.")
NOTE_TRANSFER = ("The adversarial waveforms made against the attacked model, scored by a second model that the "
                 "attack never queried. Transfer rate: of the clips the attack fooled and the second model got "
                 "right when clean, the fraction it now gets wrong.")
NOTE_MINIMAL = ("Minimal ε: per clean-correct clip, the smallest budget at which PGD fooled it (bisection "
                "over warm-started PGD runs; an upper bound on the true minimum). '–' where none was "
                "found up to half the input range. ε at chance: the smallest budget at which robust "
                "accuracy is at or below chance (1 / number of classes).")


def _sections(card: dict) -> list[tuple[str, list[str], list[list[str]], str]]:
    """The report's tables as (title, header, rows, note), rendered alike in Markdown and HTML."""
    sections = []
    attacks = [c for c in card["conditions"] if c.get("kind") != "noise"]
    if attacks:
        l1 = any(c["norm"] == "l1" for c in attacks)  # an L1 budget is checked against the L1 size
        header = ["condition", "robust acc. [95% CI]", "success rate [95% CI]", "median L∞", "median L2",
                  *(["median L1"] if l1 else []), "median SNR dB (fooled)", "fwd", "bwd", "seconds"]
        rows = [[c["condition"], estimate_text(c["robust_accuracy"]), estimate_text(c["success_rate"])
                 if c["success_rate"]["n"] else "–", fmt(c["median_linf"]), fmt(c["median_l2"]),
                 *([fmt(c.get("median_l1"))] if l1 else []),
                 fmt(c["median_snr_db"]), str(c["forwards"]), str(c["backwards"]), f"{c['seconds']:.1f}"]
                for c in attacks]
        sections.append(("Attacks at fixed budgets", header, rows, NOTE_FIXED))
    curves = noise_curves(card)
    if curves:
        header = ["corruption", "severity", "accuracy under noise [95% CI]", "clean-correct clips turned wrong",
                  "seconds"]
        rows = [[name, severity_text(c["severity"], c["severity_unit"]), estimate_text(c["robust_accuracy"]),
                 _turned_wrong(c), f"{c['seconds']:.1f}"] for name, conditions in curves.items() for c in conditions]
        sections.append(("Accuracy under natural noise", header, rows, NOTE_NOISE))
    transfers = [c for c in card["conditions"] if c.get("transfer")]
    if transfers:
        target = transfers[0]["transfer"]["model"]
        header = ["condition", f"{target}: clean acc.", f"{target}: acc. on adversarial audio", "transfer rate"]
        rows = [[c["condition"], estimate_text(c["transfer"]["clean_accuracy"]),
                 estimate_text(c["transfer"]["robust_accuracy"]),
                 estimate_text(c["transfer"]["transfer_rate"]) if c["transfer"]["transfer_rate"]["n"] else "–"]
                for c in transfers]
        sections.append((f"Transfer to {target}", header, rows, NOTE_TRANSFER))
    if card.get("minimal"):
        header = ["search", "broken / attacked", "median minimal ε [95% CI]", "quartiles", "ε at chance",
                  "median SNR dB", "fwd", "bwd", "seconds"]
        rows = [[m["condition"], f"{m['found']} / {m['attacked']}",
                 f"{fmt(m['median_eps']['value'], 4)} [{fmt(m['median_eps']['ci95'][0], 4)}, "
                 f"{fmt(m['median_eps']['ci95'][1], 4)}]",
                 " / ".join(fmt(q, 3) for q in m["quartiles_eps"]), fmt(m["eps_at_chance"], 4),
                 fmt(m["median_snr_db"]), str(m["forwards"]), str(m["backwards"]), f"{m['seconds']:.1f}"]
                for m in card["minimal"]]
        sections.append(("How much does it take: minimal ε", header, rows, NOTE_MINIMAL))
    if card.get("checks"):
        header = ["check", "status", "seen", "why it matters, and the fix"]
        rows = [[c["name"] + (f" ({c['threat']})" if "threat" in c else ""), "FLAG" if c["flagged"] else "ok",
                 c["seen"], f"{c['reason']} Fix: {c['fix']}" if c["flagged"] else ""]
                for c in sorted(card["checks"], key=lambda c: not c["flagged"])]
        flagged = len(card["flags"])
        note = (f"{flagged} check(s) flagged: read the fixes before trusting the numbers above."
                if flagged else "No check flagged.")
        sections.append(("Sanity checks", header, rows, note))
    series = per_class_series(card)
    if series:  # the heatmap of the same numbers is shown in this section (see document_html)
        counts = card.get("clips_per_class", {})
        header = ["class (clips)", *series]
        rows = [[f"{label} ({counts[label]})" if label in counts else label,
                 *(fmt(values.get(label)) for values in series.values())] for label in series["clean"]]
        smallest = min(counts.values(), default=0)
        note = (f"Few clips per class (as few as {smallest}): one clip moves a class's accuracy by "
                f"{1 / smallest:.2g}, so read differences between classes with care." if 0 < smallest < 30 else "")
        sections.append(("Accuracy per class", header, rows, note))
    return sections


def _turned_wrong(condition: dict) -> str:
    rate = condition["success_rate"]
    if not rate["n"]:
        return "–"
    return f"{round(rate['value'] * rate['n'])} of {rate['n']} ({rate['value']:.0%})"


def build_report(run_dir: str | Path, *, listen_examples: bool = True, trust_checkpoint: bool = False) -> dict:
    """Write ``card.json``, ``report.md``, ``report.html`` and ``figures/*.png`` from the records.

    ``listen_examples``: in attack reports, recompute a few adversarial examples to listen to and look at
    (:mod:`robustaudio.report.listen`: loads the model and attacks at most six clips again).
    ``trust_checkpoint``: the model that ``run.json`` names may run code (``python:``) or hold pickles."""
    run_dir = Path(run_dir)
    check_own_folders(run_dir)
    card = build_card(run_dir)
    write_json_atomic(run_dir / CARD_FILE, json_safe(card), allow_nan=False)
    records = read_records(run_dir)
    warnings = read_warnings(run_dir)
    (run_dir / FIGURES_DIR).mkdir(exist_ok=True)
    figures: list[tuple[str, str, bytes]] = []  # (title, file, png)
    if len(records):
        conditions = condition_order(records)
        attacks = records[records["kind"] != "noise"]
        for title, name, fig in [
            # titled like their tables: shown right under them
            ("Attacks at fixed budgets", "accuracy_vs_budget.png", figure_accuracy_vs_budget(card, records)),
            ("How much does it take: minimal ε", "minimal_eps.png", figure_minimal_eps(card)),
            ("Accuracy under natural noise", "noise.png", figure_noise(card)),
            ("Accuracy per class", "per_class.png", figure_per_class(card)),
            ("How loud the fooling perturbations are", "snr_histogram.png",
             figure_snr_histogram(attacks, [c for c in conditions if c in set(attacks["condition"])])),
        ]:
            if fig is not None:
                figures.append((title, name, save_figure(fig, run_dir / FIGURES_DIR / name)))
    headline = run_headline(card, records) if len(records) else None
    if headline is not None and not card["complete"]:
        headline.flags.insert(0, Flag("incomplete", "", f"{card['clips']} of {card['settings'].get('clips')} clips "
                                      "have records", "rerun the same command to resume."))
    sections = _sections(card)
    if headline is not None and headline.table is not None:
        sections.insert(1, headline.table)
    noise_only = bool(card["conditions"]) and all(c.get("kind") == "noise" for c in card["conditions"])
    title = f"{'Natural-noise' if noise_only else 'Robustness'} report: {card['model']}"
    lines = _summary_lines(card, headline is not None)
    clear(run_dir, run_dir / FIGURES_DIR)
    listen = recompute(run_dir, card, records, trust_checkpoint) if listen_examples and _attacked(card) else None
    write_figures(listen, run_dir / FIGURES_DIR)
    write_text_atomic(run_dir / "report.md", document_markdown(title, lines, sections, figures, warnings, headline,
                                                               listen_markdown(listen)))
    write_text_atomic(run_dir / "report.html", document_html(title, lines, sections, figures, warnings, headline,
                                                             listen_html(listen)))
    return card


def _attacked(card: dict) -> bool:
    return any(c.get("kind") != "noise" for c in card.get("conditions", []))


def _summary_lines(card: dict, headline: bool = False) -> list[str]:
    """The run's details under the headline (which already gives the model, clips and seed)."""
    lines = [] if headline else [f"model: {card['model']}"]
    lines += [f"data: {card['data']}"]
    lines += [f"clips: {card['clips']} (skipped {card['skipped_clips']})", f"seed: {card['seed']}"] if not headline \
        else ([f"skipped clips: {card['skipped_clips']} (see Warnings)"] if card["skipped_clips"] else [])
    lines.append(f"versions: {', '.join(f'{k} {v}' for k, v in card['versions'].items())}")
    if "clean_accuracy" in card:
        lines.insert(1, f"clean accuracy: {estimate_text(card['clean_accuracy'])}")
        noise = all(c.get("kind") == "noise" for c in card["conditions"]) and card["conditions"]
        lines.append(f"{'wall time' if noise else 'attack wall time'}: {card['wall_seconds']:.1f} s")
    if not card["complete"] and not headline:
        lines.append("INCOMPLETE: the run has not finished; rerun the same command to resume.")
    return lines
