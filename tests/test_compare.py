"""`robustaudio compare` end to end on two bundled models, and the rank correlations."""

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from robustaudio.cli import main
from robustaudio.report.compare import _correlation

BUNDLED = Path(__file__).parents[1] / "robustaudio" / "data" / "bundled" / "minievents"


def test_rank_correlations():
    assert _correlation([0.1, 0.2, 0.3, 0.4], [0.2, 0.4, 0.5, 0.9])["spearman"] == pytest.approx(1.0)
    assert _correlation([0.1, 0.2, 0.3, 0.4], [0.9, 0.5, 0.4, 0.2])["kendall"] == pytest.approx(-1.0)
    assert _correlation([0.1, 0.2], [0.3, 0.4])["spearman"] is None  # too few models
    assert _correlation([0.1, 0.1, 0.1], [0.3, 0.4, 0.5])["spearman"] is None  # constant column


def test_spearman_p_counts_pairings_at_least_as_extreme_in_absolute_value():
    """Two-sided p = share of the 4! pairings with |ρ| >= the observed one. ρ = 1 on 4 models: 2 of 24 (1/12). With
    tied ranks scipy's two-sided p (twice the one-sided) overstates it."""
    import itertools

    from scipy import stats

    assert _correlation([0.1, 0.2, 0.3, 0.4], [0.2, 0.4, 0.5, 0.9])["spearman_p"] == pytest.approx(1 / 12)
    x, y = [0.4, 0.4, 0.1, 0.3], [0.4, 0.4, 0.3, 0.4]  # ties: scipy's doubled one-sided p says 0.5, the share 0.25
    observed = abs(stats.spearmanr(x, y).statistic)
    pairings = [abs(stats.spearmanr(list(p), y).statistic) for p in itertools.permutations(x)]
    expected = sum(r >= observed - 1e-12 for r in pairings) / len(pairings)
    result = _correlation(x, y)
    assert result["spearman_p"] == pytest.approx(expected) == 0.25 and abs(result["spearman"]) == pytest.approx(observed)


def small_bundled_subset(root: Path, per_class: int = 3) -> Path:
    """A few test clips of three bundled classes (density needs other classes as neighbours)."""
    rows = list(csv.DictReader(open(BUNDLED / "metadata.csv")))
    chosen = []
    for label in ("speech", "kick", "engine"):
        chosen += [r for r in rows if r["label"] == label and r["split"] == "test"][:per_class]
    root.mkdir()
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for r in chosen:
            shutil.copy(BUNDLED / r["path"], root / Path(r["path"]).name)
            writer.writerow([Path(r["path"]).name, r["label"]])
    return root


def test_compare_writes_one_report_over_models(tmp_path):
    out = tmp_path / "cmp"
    data = small_bundled_subset(tmp_path / "data")
    args = ["compare", "--models", "cnn", "ast", "--eps", "0.001", "0.005", "--corruption", "gaussian_snr",
            "occlusion_periodic", "--data", str(data), "--steps", "2", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    comparison = json.loads((out / "compare.json").read_text())
    assert set(comparison["models"]) == {"cnn", "ast"} and comparison["table_eps"] == 0.005
    for summary in comparison["models"].values():
        assert set(summary["noise_at_level"]) == {"gaussian_snr", "occlusion_periodic"}
        assert 0 <= summary["robust_accuracy"] <= summary["clean_accuracy"] <= 1
        assert summary["density"]["audio"] > 0 and 0 <= summary["convexity"]["audio"] <= 1
        assert summary["sharpness"] is not None and summary["adaptive_sharpness"] is not None
    assert "noise (mean) vs adversarial" in comparison["correlations"]
    html = (out / "compare.html").read_text()
    assert html.count("data:image/png;base64,") == 3  # two models' curves and the scatter
    for model in ("cnn", "ast"):
        assert (out / model / "attack" / "report.html").is_file() and (out / model / "noise" / "records.jsonl").is_file()
    # rerunning reads the finished parts back
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and json.loads((out / "compare.json").read_text()) == comparison
