"""The comparison report across models, built from each model's run directories only.

Reads ``OUT/<model>/attack/card.json``, ``OUT/<model>/noise/card.json`` and
``OUT/<model>/metrics.json``; writes ``OUT/compare.json``, ``compare.md``, ``compare.html`` and
figures: per model, the natural-noise curves and the adversarial ε curve on one axis; across
models, robust accuracy against noise accuracy. Rank correlations (Spearman and Kendall, scipy)
across models relate noise robustness, the latent metrics and sharpness to adversarial robustness.
On audio-visual data (``OUT/fusion.json`` present) the fusion tables and the theorem check of
:mod:`robustaudio.report.fusion` are added. A model that does not use audio has no audio attack
run: its PGD column is empty and it is left out of the correlations with adversarial robustness.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from ..records import RunDirectoryError, check_own_folders, file_safe, write_json_atomic, write_text_atomic
from . import style
from .card import json_safe
from .document import FIGURES_DIR, document_html, document_markdown, fmt, save_figure
from .fusion import FUSION_FILE, figure_fusion, fusion_sections, summarize_fusion
from .headline import NORM_NAMES, Flag, Headline, accuracy, evaluation_text, trust


def _read(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: rerun the comparison (finished parts are kept).")
    try:
        document = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        document = None
    if not isinstance(document, dict):
        raise RunDirectoryError(f"{path} is unreadable (cut off, or not robustaudio's): rerun the comparison with "
                                f"--restart.")
    return document


def _noise_curves(noise_card: dict) -> dict[str, list[tuple[float, float]]]:
    """corruption -> [(severity, accuracy)] in the suite's severity order (mildest first)."""
    order = noise_card["settings"]["corruptions"]
    by_condition = {c["condition"]: c for c in noise_card["conditions"]}
    curves = {}
    for name, severities in order.items():
        curves[name] = [(s, by_condition[f"noise-{name}-{s:g}"]["robust_accuracy"]["value"])
                        for s in severities if f"noise-{name}-{s:g}" in by_condition]
    return curves


def _correlation(x: list[float], y: list[float]) -> dict:
    """Spearman and Kendall rank correlations; None where fewer than 3 models or a constant column.

    Spearman's p is a permutation test (exact up to 8 models), two-sided as the share of pairings with |ρ| at
    least the observed one: the t approximation scipy uses by default gives p = 0 for ρ = 1 on 4 models, where
    the exact p is 1/12, and doubling a one-sided p (scipy's two-sided) overstates it when ranks tie."""
    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None and np.isfinite(a) and np.isfinite(b)]
    if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return {"spearman": None, "spearman_p": None, "kendall": None, "kendall_p": None, "n": len(pairs)}
    a, b = zip(*pairs)
    rho = float(stats.spearmanr(a, b).statistic)
    spearman = stats.permutation_test((a,), lambda x: abs(stats.spearmanr(x, b).statistic),
                                      permutation_type="pairings", alternative="greater",
                                      n_resamples=np.inf if len(a) <= 8 else 9999, random_state=0)
    kendall = stats.kendalltau(a, b)
    return {"spearman": rho, "spearman_p": float(spearman.pvalue),
            "kendall": float(kendall.statistic), "kendall_p": float(kendall.pvalue), "n": len(pairs)}


def summarize_model(model_dir: Path, table_eps: float, table_level: int | None) -> dict:
    noise = _read(model_dir / "noise" / "card.json")
    attack = _read(model_dir / "attack" / "card.json") if (model_dir / "attack").exists() else None  # None: no audio
    metrics = _read(model_dir / "metrics.json")
    robust = {c["eps"]: c["robust_accuracy"]["value"] for c in attack["conditions"]} if attack else {}
    if attack and table_eps not in robust:
        raise ValueError(f"ε = {table_eps} was not attacked in {model_dir}; attacked: {sorted(robust)}.")
    curves = _noise_curves(noise)
    at_level = {}
    for name, curve in curves.items():
        level = len(curve) // 2 if table_level is None else min(table_level, len(curve) - 1)
        at_level[name] = {"severity": curve[level][0], "accuracy": curve[level][1]}
    latent = metrics["latent"]
    return {
        "parameters": metrics.get("parameters"),
        "clean_accuracy": (attack or noise)["clean_accuracy"]["value"],
        "robust_accuracy": robust.get(table_eps), "robust_curve": sorted(robust.items()),
        "noise_at_level": at_level,
        "noise_mean": float(np.mean([v["accuracy"] for v in at_level.values()])) if at_level else None,
        "noise_curves": curves,
        "density": {m: v["density"]["overall"] for m, v in latent.items()},
        "convexity": {m: v["convexity"]["overall"] for m, v in latent.items()},
        "sharpness": metrics["sharpness"]["sharpness"],
        "adaptive_sharpness": metrics["adaptive_sharpness"]["sharpness"],
        "flags": attack.get("flags", []) if attack else [],
    }


def figure_noise_vs_adversarial(name: str, summary: dict, norm_label: str) -> plt.Figure:
    """One model: accuracy at each severity level of each corruption, and along the ε curve, as a heatmap
    (rows: corruptions and the attack, each with its severities in its label; columns: levels, mildest first)."""
    rows = [(f"{corruption} ({', '.join(f'{s:g}' for s, _ in curve)})", [a for _, a in curve])
            for corruption, curve in summary["noise_curves"].items()]
    if summary["robust_curve"]:
        eps, accuracy = zip(*summary["robust_curve"])
        rows.append((f"PGD {norm_label} ε ({', '.join(f'{e:g}' for e in eps)})", list(accuracy)))
    width = max(len(values) for _, values in rows)
    values = np.full((len(rows), width), np.nan)
    for i, (_, row) in enumerate(rows):
        values[i, :len(row)] = row
    fig, axes = style.figure(1, 1, width=min(4.5 + 0.9 * width, 11), height=max(2.2, 0.9 + 0.34 * len(rows)))
    ax = axes[0][0]
    style.heatmap(ax, values, [label for label, _ in rows], [str(i + 1) for i in range(width)])
    ax.set_xlabel("severity level (mildest first; the values are in each row's label)")
    ax.set_title(f"{name}: clean accuracy {summary['clean_accuracy']:.2f}", loc="left")
    style.finish(fig)
    return fig


def figure_noise_against_adversarial(summaries: dict[str, dict], table_eps: float) -> plt.Figure:
    fig, axes = style.figure(1, 1, width=5.2, height=4)
    ax = axes[0][0]
    for name, s in summaries.items():
        if s["robust_accuracy"] is None:
            continue
        ax.scatter(s["noise_mean"], s["robust_accuracy"], color=style.ROBUST)
        ax.annotate(name, (s["noise_mean"], s["robust_accuracy"]), fontsize=8, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("mean accuracy under natural noise (table severities)")
    ax.set_ylabel(f"robust accuracy at ε = {table_eps:g}")
    style.finish(fig)
    return fig


def build_comparison(out: str | Path, names: list[str], *, table_eps: float, table_level: int | None = None) -> dict:
    """Write ``compare.json`` / ``.md`` / ``.html`` and figures in ``out``; return the comparison."""
    out = Path(out)
    check_own_folders(out)
    dirs = {name: out / file_safe(name) for name in names}
    summaries = {name: summarize_model(d, table_eps, table_level) for name, d in dirs.items()}
    with_attack = [d for d in dirs.values() if (d / "attack").exists()]
    if not with_attack:
        raise FileNotFoundError(f"No model in {out} has an audio attack run: compare at least one model that uses "
                                f"audio.")
    attack_settings = _read(with_attack[0] / "attack" / "run.json")["settings"]
    norm = attack_settings["threats"][0]["norm"]
    robust = [s["robust_accuracy"] for s in summaries.values()]
    corruptions = list(next(iter(summaries.values()))["noise_at_level"])
    correlations = {"noise (mean) vs adversarial": _correlation([s["noise_mean"] for s in summaries.values()], robust)}
    for corruption in corruptions:
        correlations[f"{corruption} vs adversarial"] = _correlation(
            [s["noise_at_level"][corruption]["accuracy"] for s in summaries.values()], robust)
    for metric in ("density", "convexity"):
        correlations[f"{metric} (audio) vs adversarial"] = _correlation(
            [s[metric].get("audio") for s in summaries.values()], robust)
    for metric in ("sharpness", "adaptive_sharpness"):
        correlations[f"{metric} vs adversarial"] = _correlation([s[metric] for s in summaries.values()], robust)
    comparison = {"models": summaries, "table_eps": table_eps, "norm": norm, "correlations": correlations,
                  "data": attack_settings["data"], "clips": attack_settings["clips"], "seed": attack_settings["seed"]}
    fusion = summarize_fusion(out, names) if (out / FUSION_FILE).exists() else None
    if fusion is not None:
        comparison["fusion"] = fusion
    write_json_atomic(out / "compare.json", json_safe(comparison))

    first = next(iter(summaries.values()))
    header = ["model", "params", "clean", *[f"{c} @ {first['noise_at_level'][c]['severity']:g}" for c in corruptions],
              "noise mean", f"PGD {norm} ε={table_eps:g}", "density", "convexity", "sharpness", "adaptive sharpness",
              "flags"]
    rows = [[name, fmt(s["parameters"]), fmt(s["clean_accuracy"]),
             *[fmt(s["noise_at_level"][c]["accuracy"]) for c in corruptions], fmt(s["noise_mean"]),
             fmt(s["robust_accuracy"]), fmt(s["density"].get("audio")), fmt(s["convexity"].get("audio")),
             fmt(s["sharpness"]), fmt(s["adaptive_sharpness"]), ", ".join(s["flags"]) or "–"]
            for name, s in summaries.items()]
    corr_rows = [[pair, fmt(c["spearman"]), fmt(c["spearman_p"]), fmt(c["kendall"]), fmt(c["kendall_p"]),
                  str(c["n"])] for pair, c in correlations.items()]
    sections = [
        ("Models side by side", header, rows,
         "Accuracies on the same clips. Noise columns at one severity per corruption (unit in the noise "
         "reports); density and convexity of the audio embedding are our re-implementation of the thesis's "
         "definitions; sharpness in nats of loss increase (m-sharpness ρ = 0.05, adaptive ρ = 0.5)."),
        ("Rank correlations across models", ["pair", "Spearman", "p", "Kendall", "p", "models"], corr_rows,
         "Positive: the models that are more robust to noise (or have the higher metric) are also more robust "
         "to the attack. With a handful of models these are descriptive; the p-values say how little they "
         "prove."),
    ]
    if fusion is not None:
        sections = fusion_sections(fusion) + sections
    (out / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    figures = []
    for fusion_norm in (fusion or {}).get("plan", {}).get("norms", []):
        file = f"fusion_{fusion_norm}.png"
        assert fusion is not None  # the loop runs only over fusion's norms
        figures.append((f"Audio-visual fusion under attack ({fusion_norm})", file,
                        save_figure(figure_fusion(fusion, fusion_norm), out / FIGURES_DIR / file)))
    for name, s in summaries.items():
        file = f"noise_vs_adversarial_{file_safe(name)}.png"
        figures.append((f"Noise and adversarial curves: {name}", file,
                        save_figure(figure_noise_vs_adversarial(name, s, norm), out / FIGURES_DIR / file)))
    figures.append(("Noise robustness against adversarial robustness", "noise_against_adversarial.png",
                    save_figure(figure_noise_against_adversarial(summaries, table_eps), out / FIGURES_DIR /
                          "noise_against_adversarial.png")))
    lines = [f"models: {', '.join(names)}", f"data: {comparison['data']} ({comparison['clips']} clips)",
             f"attack: PGD {norm}, ε curve {[e for e, _ in first['robust_curve']]}", f"seed: {comparison['seed']}",
             "per-model reports: <model>/attack/report.html and <model>/noise/report.html"]
    headline = compare_headline(comparison, dirs, attack_settings)
    write_text_atomic(out / "compare.md",
                      document_markdown("Model comparison", lines, sections, figures, [], headline))
    write_text_atomic(out / "compare.html", document_html("Model comparison", lines, sections, figures, [], headline))
    return comparison


def compare_headline(comparison: dict, dirs: dict[str, Path], attack_settings: dict) -> Headline:
    """Which model is the most and the least robust at the table's ε, against its clean accuracy, and
    whether noise robustness ranks the models alike; the flags of every model's attack run."""
    models = comparison["models"]
    norm = NORM_NAMES.get(comparison["norm"], comparison["norm"])
    attacked = {name: s for name, s in models.items() if s["robust_accuracy"] is not None}
    ranked = sorted(attacked, key=lambda name: -attacked[name]["robust_accuracy"])
    each = ", ".join(f"{name} {accuracy(attacked[name]['clean_accuracy'])} → "
                     f"{accuracy(attacked[name]['robust_accuracy'])}" for name in ranked)
    sentence = (f"Clean → robust accuracy at {norm} ε = {comparison['table_eps']:g} under "
                f"{evaluation_text(attack_settings, short=True)}, most robust first: {each}")
    c = comparison["correlations"]["noise (mean) vs adversarial"]
    if c["spearman"] is not None:
        sentence += (f"; noise robustness ranks them {'alike' if c['spearman'] > 0.5 else 'differently'} "
                     f"(Spearman {c['spearman']:.2f}, p {c['spearman_p']:.2f}, {c['n']} models)")
    sentence += f"; {comparison['clips']} clips."
    flags: list[Flag] = []
    checks = 0
    for name, folder in dirs.items():
        card_file = folder / "attack" / "card.json"
        if card_file.exists():
            found = json.loads(card_file.read_text()).get("checks", [])
            checks += len(found)
            flags += [Flag(f"{name}: {f.name}", f.where, f.seen, f.fix) for f in trust(found)[0]]
    passed = "" if flags else (f"All {checks} sanity checks of the models' attack runs passed." if checks else "")
    curve = sorted({e for s in attacked.values() for e, _ in s["robust_curve"]})
    settings = [f"attack: {evaluation_text(attack_settings)}", f"ε curve: {', '.join(f'{e:g}' for e in curve)}",
                f"data: {Path(comparison['data']).name}", f"clips: {comparison['clips']}",
                f"seed: {comparison['seed']}"]
    return Headline(sentence, flags, passed, settings)
