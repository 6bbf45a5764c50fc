"""Figures that read at a glance: one style (robustaudio.report.style), small multiples and heatmaps instead of
long legends, whole-number counts, ε axes with their unit and an SNR axis, no legend over data, no heading twice."""

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from robustaudio.report import style
from robustaudio.report.render import figure_accuracy_vs_budget, figure_noise, figure_per_class, figure_snr_histogram


def estimate(value):
    return {"value": value, "ci95": [max(0.0, value - 0.1), min(1.0, value + 0.1)], "n": 10}


def attack_card():
    conditions = [{"condition": f"pgd-linf-waveform-eps={e:g}", "kind": "attack", "attack": "pgd", "norm": "linf",
                   "domain": "waveform", "eps": e, "snr_db": None, "robust_accuracy": estimate(a)}
                  for e, a in ((0.001, 0.5), (0.01, 0.2), (0.1, 0.0))]
    labels = [f"class{i}" for i in range(7)]
    per_class = {"clean": {c: 0.9 for c in labels}, **{c["condition"]: {k: 0.3 for k in labels} for c in conditions}}
    return {"conditions": conditions, "clean_accuracy": estimate(0.9), "per_class_accuracy": per_class,
            "settings": {}}


def noise_card(corruptions=7):
    conditions = []
    for k in range(corruptions):
        for s, a in ((30, 0.8), (10, 0.5), (0, 0.1)):
            conditions.append({"condition": f"noise-c{k}-{s}", "kind": "noise", "attack": f"noise:c{k}", "severity": s,
                               "severity_unit": "SNR dB", "robust_accuracy": estimate(a), "norm": "linf",
                               "domain": "waveform", "eps": None, "snr_db": None})
    return {"conditions": conditions, "clean_accuracy": estimate(0.9),
            "settings": {"corruptions": {f"c{k}": [30, 10, 0] for k in range(corruptions)}},
            "per_class_accuracy": {"clean": {"a": 0.9, "b": 0.8},
                                   **{c["condition"]: {"a": 0.5, "b": 0.4} for c in conditions}}}


def no_legend_over_data(fig):
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            anchor = legend.get_bbox_to_anchor().transformed(ax.transAxes.inverted())
            assert anchor.x0 >= 1.0, "a legend inside the axes"


def test_eps_axis_has_its_unit_and_a_secondary_snr_axis():
    records = pd.DataFrame({"condition": [c["condition"] for c in attack_card()["conditions"] for _ in range(3)],
                            "attacked": True, "carried": False, "snr_db": [40.0, 41, 42, 20, 21, 22, 0, 1, 2]})
    fig = figure_accuracy_vs_budget(attack_card(), records)
    ax = fig.axes[0]
    assert "ε" in ax.get_xlabel() and "full scale = 1" in ax.get_xlabel() and ax.get_xscale() == "log"
    assert any(child.__class__.__name__ == "SecondaryAxis" for child in ax.get_children())
    top = next(child for child in ax.get_children() if child.__class__.__name__ == "SecondaryAxis")
    assert [t.get_text() for t in top.get_xticklabels()] == ["41", "21", "1"] and "SNR" in top.get_xlabel()
    assert ax.get_legend() is None  # the clean line is labelled on the line
    plt.close(fig)


def test_noise_is_small_multiples_with_severity_units():
    fig = figure_noise(noise_card(7))
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 7 and all(ax.get_legend() is None for ax in visible)
    assert visible[0].get_xlabel() == "SNR dB" and [t.get_text() for t in visible[0].get_xticklabels()] == ["30", "10",
                                                                                                            "0"]
    plt.close(fig)


def test_per_class_is_a_heatmap_with_values_in_its_cells():
    fig = figure_per_class(attack_card())
    ax = fig.axes[0]
    assert ax.images and ax.get_legend() is None
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"class{i}" for i in range(7)]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["clean", "ε=0.001", "ε=0.01", "ε=0.1"]
    assert sum(1 for t in ax.texts if re.fullmatch(r"\d\.\d\d", t.get_text())) == 7 * 4
    plt.close(fig)


def test_histogram_counts_are_whole_numbers_one_panel_per_condition():
    records = pd.DataFrame({"condition": ["a"] * 3 + ["b"] * 2, "success": True,
                            "snr_db": [30.0, 31.0, 31.5, 20.0, 22.0]})
    fig = figure_snr_histogram(records, ["a", "b"])
    assert len(fig.axes) == 2
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = ax.get_yticks()
        assert np.allclose(ticks, np.round(ticks)) and ax.get_legend() is None
    plt.close(fig)


def test_style_helpers():
    fig, axes = style.figure(1, 1)
    ax = axes[0][0]
    ax.plot([0, 1], [0, 1], label="a")
    style.legend_outside(ax)
    no_legend_over_data(fig)
    assert not ax.spines["top"].get_visible()
    plt.close(fig)
    assert style.power_db(np.zeros(16000), 16000).shape[0] == 257
    assert len(style.png(plt.figure())) > 0 and style.jpeg(plt.figure())[:2] == b"\xff\xd8"
