"""Randomized smoothing: CERTIFY / PREDICT against a linear classifier whose smoothed output is known.

For f(x) = argmax(W x + b) with two classes and margin m(x) = (w_0 − w_1)·x + (b_0 − b_1),
P(f(x + ε) = 0) = Φ(m / (σ‖w_0 − w_1‖)) for ε ~ N(0, σ²I), so g = f and the exact certified
radius is σ·Φ⁻¹(p_A) = m / ‖w_0 − w_1‖, the distance to the decision boundary.
"""

import json
import math

import pytest
import torch
from conftest import LinearClassifier
from scipy import stats

from robustaudio.defenses.smoothing import (
    ABSTAIN,
    Smooth,
    SmoothingError,
    certified_accuracy,
    certify_clips,
    lower_confidence_bound,
)

DIM = 64




def linear_pair(margin_in_sigmas: float, sigma: float):
    """A two-class linear model and a clip at ``margin_in_sigmas`` σ from the boundary (class 0 side)."""
    w = torch.zeros(2, DIM)
    w[0, 0] = 3.0  # w_0 − w_1 = 3 e_0, so the distance to the boundary is x_0 (for b = 0)
    model = LinearClassifier(w, torch.zeros(2))
    x = torch.zeros(DIM)
    x[0] = margin_in_sigmas * sigma
    return model, x


def test_certify_matches_the_analytic_radius_of_a_linear_classifier():
    sigma, n = 0.5, 20000
    model, x = linear_pair(0.6, sigma)
    smooth = Smooth(model, sigma, domain="waveform")
    certificate = smooth.certify(x, n0=100, n=n, alpha=0.001, batch_size=5000,
                                 generator=torch.Generator().manual_seed(0))
    p_a = stats.norm.cdf(0.6)
    true_radius = sigma * stats.norm.ppf(p_a)  # = 0.6 σ, the distance to the boundary
    assert certificate.prediction == 0
    # The bound sits about 3 standard errors below p_A; the radius then within ~0.05 σ below the truth.
    assert true_radius - 0.06 * sigma < certificate.radius < true_radius
    assert certificate.radius == pytest.approx(sigma * stats.norm.ppf(certificate.p_lower))
    assert abs(certificate.count / n - p_a) < 4 * math.sqrt(p_a * (1 - p_a) / n)
    assert smooth.predict(x, n=2000, alpha=0.001, generator=torch.Generator().manual_seed(1)) == 0


def test_certify_and_predict_abstain_when_the_classes_tie():
    sigma = 0.25
    model, x = linear_pair(0.0, sigma)  # on the boundary: p_A = 1/2
    smooth = Smooth(model, sigma, domain="waveform")
    generator = torch.Generator().manual_seed(0)
    certificate = smooth.certify(x, n0=100, n=2000, alpha=0.001, generator=generator)
    assert certificate.prediction == ABSTAIN and certificate.radius == 0.0 and certificate.p_lower < 0.5
    assert smooth.predict(x, n=2000, alpha=0.001, generator=generator) == ABSTAIN


def test_clopper_pearson_lower_bound_matches_scipy_beta_quantile():
    for count, n, alpha in [(990, 1000, 0.001), (50, 100, 0.05), (100, 100, 0.001), (0, 10, 0.01), (7, 9, 0.2)]:
        expected = stats.beta.ppf(alpha, count, n - count + 1) if count > 0 else 0.0
        assert lower_confidence_bound(count, n, alpha) == pytest.approx(expected, abs=1e-10)
    # all n draws agree: the bound is alpha ** (1 / n)
    assert lower_confidence_bound(1000, 1000, 0.001) == pytest.approx(0.001 ** (1 / 1000))


def test_certify_clips_rows_resume_and_certified_accuracy(tmp_path):
    sigma = 0.5
    model, x = linear_pair(1.0, sigma)
    far = x.clone()
    far[0] = 3 * sigma
    wrong = -far
    clips = [("near", x, 0), ("far", far, 0), ("wrong", wrong, 0)]
    smooth = Smooth(model, sigma, domain="waveform")
    rows_file = tmp_path / "rows.jsonl"
    rows = certify_clips(smooth, clips, n0=50, n=2000, alpha=0.001, batch_size=1000, rows_file=rows_file)
    assert [r["clip_id"] for r in rows] == ["near", "far", "wrong"]
    assert rows[0]["correct"] and rows[1]["correct"] and not rows[2]["correct"]
    assert rows[2]["prediction"] == "c1"
    assert rows[0]["radius"] < rows[1]["radius"] < 3 * sigma
    assert rows[1]["snr_db"] == pytest.approx(20 * math.log10(float(far.norm()) / rows[1]["radius"]))
    assert certified_accuracy(rows, [0.0, rows[0]["radius"], rows[1]["radius"] + 1e-9]) == pytest.approx(
        [2 / 3, 2 / 3, 0.0])
    again = certify_clips(smooth, clips, n0=50, n=2000, alpha=0.001, batch_size=1000, rows_file=rows_file)
    assert again == rows and len(rows_file.read_text().splitlines()) == 3
    with pytest.raises(SmoothingError, match="sigma 0.5, not 0.25"):
        certify_clips(Smooth(model, 0.25, domain="waveform"), clips, n0=50, n=2000, alpha=0.001, rows_file=rows_file)
    with pytest.raises(SmoothingError, match="another run .*seed 0, not 3"):
        certify_clips(smooth, clips, n0=50, n=2000, alpha=0.001, seed=3, rows_file=rows_file)
    # certificates of another model or dataset are refused, not reused (before, only n/n0/α/σ were compared)
    with pytest.raises(SmoothingError, match="model None, not 'other'"):
        certify_clips(smooth, clips, n0=50, n=2000, alpha=0.001, rows_file=rows_file, source={"model": "other"})


def test_certify_clips_resumes_after_a_crash_mid_row(tmp_path):
    """A kill during a row's write leaves a partial last line: the resume redoes that clip, keeps the
    finished one, and leaves a file of whole rows (before, the partial line stopped the resume)."""
    sigma = 0.5
    model, x = linear_pair(1.0, sigma)
    clips = [("near", x, 0), ("far", 2 * x, 0)]
    smooth = Smooth(model, sigma, domain="waveform")
    rows_file = tmp_path / "rows.jsonl"
    rows = certify_clips(smooth, clips, n0=50, n=2000, alpha=0.001, batch_size=1000, rows_file=rows_file)
    first, second = rows_file.read_text().splitlines()
    rows_file.write_text(first + "\n" + second[: len(second) // 2])  # the second row cut off mid-write
    seen = []
    again = certify_clips(smooth, clips, n0=50, n=2000, alpha=0.001, batch_size=1000, rows_file=rows_file,
                          on_clip=lambda row, kept: None if kept else seen.append(row))
    assert [r["clip_id"] for r in seen] == ["far"]  # only the unfinished clip is redone
    assert [r["clip_id"] for r in again] == ["near", "far"] and again[0] == rows[0]
    assert {k: v for k, v in again[1].items() if k != "seconds"} == {
        k: v for k, v in rows[1].items() if k != "seconds"}
    lines = rows_file.read_text().splitlines()
    assert len(lines) == 2 and [json.loads(line)["clip_id"] for line in lines] == ["near", "far"]


@pytest.mark.parametrize("kwargs, message", [
    ({"sigma": 0.0}, "sigma must be"),
    ({"sigma": -1.0}, "sigma must be"),
    ({"n0": 200, "n": 100}, "n0=200 selection samples exceed n=100"),
    ({"alpha": 1.5}, "alpha must be in"),
])
def test_bad_smoothing_settings_name_the_problem(kwargs, message):
    model, x = linear_pair(1.0, 0.5)
    sigma = kwargs.pop("sigma", 0.5)
    with pytest.raises(SmoothingError, match=message):
        Smooth(model, sigma, domain="waveform").certify(x, **{"n0": 10, "n": 100, "alpha": 0.001, **kwargs})


def test_multilabel_and_unknown_domain_are_refused():
    model, _ = linear_pair(1.0, 0.5)
    with pytest.raises(SmoothingError, match="Unknown smoothing domain"):
        Smooth(model, 0.5, domain="spectrum")
    model.multilabel = True
    with pytest.raises(SmoothingError, match="multi-label"):
        Smooth(model, 0.5)
