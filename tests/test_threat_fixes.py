"""Bugs a user of the Python API hit in ThreatModel, universal perturbations and the noise runner
(each test failed before its fix)."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robustaudio.attacks import ThreatModel
from robustaudio.attacks.restrict import bandpass
from robustaudio.attacks.threat import lp_norm, project_l1_ball
from robustaudio.attacks.universal import project_universal
from robustaudio.runner.noise import hash_name


def test_feature_domain_threat_is_unbounded_by_default():
    # Normalised log-mels lie far outside [-1, 1]: the waveform box used to clamp them into it, so the
    # realised perturbation came out 15-75x eps.
    threat = ThreatModel("linf", eps=0.1, domain="feature")
    assert threat.bounds is None
    clean = torch.randn(3, 64, 100) * 5
    delta = threat.project(torch.randn_like(clean), clean, threat.budget(clean))
    realised = threat.apply(clean, delta) - clean
    assert float(lp_norm(realised, "linf").max()) <= 0.1 + 4e-6  # + the float32 rounding of clean + delta
    assert ThreatModel("linf", eps=0.1).bounds == (-1.0, 1.0)  # the waveform keeps its box
    assert ThreatModel("linf", eps=0.1, domain="feature", bounds=(-3, 3)).bounds == (-3.0, 3.0)


@settings(max_examples=40, deadline=None)
@given(scale=st.sampled_from([1e2, 1e4, 1e6]), mixed=st.booleans(), seed=st.integers(0, 10_000))
def test_l1_projection_stays_in_the_ball_far_outside_it(scale, mixed, seed):
    g = torch.Generator().manual_seed(seed)
    eps = torch.tensor([1e-3, 5.0, 0.2]) if mixed else torch.full((3,), 0.5)
    delta = torch.randn(3, 4000, generator=g) * scale * eps[:, None] / 4000
    projected = project_l1_ball(delta, eps)
    assert torch.all(lp_norm(projected, "l1") <= eps * (1 + 2e-6)), (lp_norm(projected, "l1") / eps).max()
    # and it is still the projection: the sign pattern is kept and the largest coordinates survive
    assert torch.all(projected * delta >= 0)


def test_universal_perturbation_keeps_to_its_band():
    freqs = torch.fft.rfftfreq(16000, 1 / 16000)

    def in_band(delta):
        spectrum = torch.fft.rfft(delta).abs() ** 2
        return float(spectrum[(freqs >= 1000) & (freqs <= 2000)].sum() / spectrum.sum())

    g = torch.Generator().manual_seed(0)
    l2 = ThreatModel("l2", eps=0.5, band_hz=(1000.0, 2000.0), sample_rate=16000)
    delta = project_universal(torch.randn(16000, generator=g), l2, 0.5)
    assert in_band(delta) > 0.999 and float(delta.norm()) <= 0.5 * (1 + 1e-6)  # exact for L2
    linf = ThreatModel("linf", eps=0.01, band_hz=(1000.0, 2000.0), sample_rate=16000)
    delta = project_universal(torch.randn(16000, generator=g) * 0.05, linf, 0.01)
    assert in_band(delta) > 0.8  # approximate for L∞ (the clipping spreads some energy); 16% before the fix
    assert float(delta.abs().max()) <= 0.01 * (1 + 1e-6)


def test_mask_stays_exact_with_a_band():
    mask = torch.zeros(8000)
    mask[2000:4000] = 1
    threat = ThreatModel("l2", eps=0.5, band_hz=(500.0, 3000.0), sample_rate=8000, mask=mask)
    clean = torch.rand(2, 8000) * 0.2
    delta = threat.project(torch.randn(2, 8000), clean, threat.budget(clean))
    assert torch.all(delta[:, mask == 0] == 0)
    assert torch.allclose(threat.restrict(delta), bandpass(delta, 8000, 500.0, 3000.0) * mask, atol=1e-6)


def test_noise_seeds_differ_for_names_with_a_common_prefix():
    names = ["gaussian_snr", "gaussian_feature", "occlusion_periodic", "occlusion_concat", "occlusion_random",
             "occlusion_start", "occlusion_end"]
    seeds = [hash_name(n) for n in names]
    assert len(set(seeds)) == len(names)
    assert hash_name("gaussian_snr") == hash_name("gaussian_snr")  # stable across calls and processes
    assert all(0 <= s < 1_000_000_007 and not math.isnan(s) for s in seeds)
