"""ThreatModel: budgets, projections and random starts never leave the threat model."""

import math

import hypothesis.strategies as st
import pytest
import torch
from conftest import LinearClassifier
from hypothesis import assume, given, settings

from robustaudio.attacks import ThreatModel, ThreatModelError, lp_norm, pgd, project_lp_ball, snr_db
from robustaudio.attacks.threat import project_l1_ball


def assert_inside(threat, clean, adversarial, eps):
    """The adversarial input is inside the box and the ball exactly: the perturbation the model sees, computed
    without rounding (float64), is within ε (before, float32 rounding took it up to 4e-9 past ε = 0.002)."""
    realised = adversarial - clean
    exact = adversarial.double() - clean.double()
    # ε as the user gave it (float64) may lie half an ulp below its float32 value: hold to that too
    assert torch.all(threat.norms(exact) <= torch.as_tensor(eps).double() * (1 - 2.0 ** -24))
    if threat.bounds is not None:
        assert adversarial.min() >= threat.bounds[0] and adversarial.max() <= threat.bounds[1]
    if threat.mask is not None:
        assert torch.all(realised[:, threat.mask == 0] == 0)


@settings(max_examples=60, deadline=None)
@given(norm=st.sampled_from(["linf", "l2", "l1"]), domain=st.sampled_from(["waveform", "feature"]),
       relative=st.booleans(), budget=st.floats(1e-4, 0.45), snr=st.floats(-10, 80),
       scale=st.floats(0.01, 5.0), masked=st.booleans(), seed=st.integers(0, 2**16))
def test_projection_and_random_start_stay_inside(norm, domain, relative, budget, snr, scale, masked, seed):
    g = torch.Generator().manual_seed(seed)
    bounds = (-1.0, 1.0) if domain == "waveform" else None
    shape = (3, 64) if domain == "waveform" else (3, 8, 8)
    clean = torch.rand(shape, generator=g) * 2 - 1
    if domain == "feature":
        clean = clean * 4
    mask = (torch.rand(shape[1:], generator=g) > 0.5).float() if masked else None
    threat = ThreatModel(norm, eps=None if relative else budget, snr_db=snr if relative else None,
                         domain=domain, bounds=bounds, mask=mask)
    try:
        eps = threat.budget(clean)
    except ThreatModelError as error:  # a relative budget past the box's diameter is refused, rightly
        assert "enough to turn" in str(error) and relative and bounds is not None and norm != "linf"
        assume(False)
    delta = torch.randn(shape, generator=g) * scale
    projected = threat.project(delta, clean, eps)
    assert_inside(threat, clean, threat.apply(clean, projected), eps)
    start = threat.random_start(clean, eps, g)
    assert_inside(threat, clean, threat.apply(clean, start), eps)
    if relative:  # the budget is the clip's own norm scaled by the SNR
        assert torch.allclose(eps, lp_norm(clean, norm) * 10 ** (-snr / 20))


@settings(max_examples=25, deadline=None)
@given(norm=st.sampled_from(["linf", "l2", "l1"]), budget=st.floats(1e-3, 0.3), seed=st.integers(0, 1000))
def test_pgd_output_stays_inside(norm, budget, seed):
    g = torch.Generator().manual_seed(seed)
    model = LinearClassifier(torch.randn(3, 32, generator=g), torch.zeros(3))
    audio = torch.rand(4, 32, generator=g) * 1.8 - 0.9
    labels = torch.randint(0, 3, (4,), generator=g)
    eps = budget * {"linf": 1, "l2": 5, "l1": 20}[norm]
    threat = ThreatModel(norm, eps=eps)
    result = pgd(model, audio, labels, threat, steps=5, generator=g)
    assert_inside(threat, audio, result.adversarial, result.budget)


def test_l1_projection_is_the_euclidean_projection():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(5, 50, generator=g)
    eps = torch.tensor([0.5, 1.0, 2.0, 100.0, 10.0])
    p = project_l1_ball(v, eps)
    norms = p.abs().sum(1)
    for i in range(5):
        if v[i].abs().sum() <= eps[i]:
            assert torch.equal(p[i], v[i])
        else:
            assert math.isclose(float(norms[i]), float(eps[i]), rel_tol=1e-5)
            # Optimality: no other point of the ball, on random probes, is closer to v.
            probes = project_lp_ball(p[i] + 0.05 * torch.randn(200, 50, generator=g), eps[i].repeat(200), "l1")
            assert float((v[i] - p[i]).norm()) <= float((v[i] - probes).norm(dim=1).min()) + 1e-5


def test_snr_of_a_used_up_l2_budget_is_the_requested_snr():
    clean = torch.randn(2, 1000) * 0.1
    threat = ThreatModel("l2", snr_db=30.0)
    eps = threat.budget(clean)
    delta = project_lp_ball(torch.randn(2, 1000), eps, "l2")
    assert torch.allclose(snr_db(clean, delta), torch.tensor([30.0, 30.0]), atol=1e-3)
    assert snr_db(clean, torch.zeros_like(clean))[0] == float("inf")


@pytest.mark.parametrize("kwargs, message", [
    (dict(norm="linf", eps=0.0), "eps must be a finite number > 0"),
    (dict(norm="linf", eps=-0.1), "eps must be a finite number > 0"),
    (dict(norm="linf", eps=float("nan")), "eps must be a finite number > 0"),
    (dict(norm="linf", eps=1.5), "at least half the input range"),
    (dict(norm="l2", snr_db=500.0), "outside"),
    (dict(norm="l2"), "exactly one budget"),
    (dict(norm="l2", eps=0.1, snr_db=20.0), "exactly one budget"),
    (dict(norm="l3", eps=0.1), "Unknown norm"),
    (dict(norm="l2", eps=0.1, domain="spectrum"), "Unknown domain"),
])
def test_impossible_threat_models_are_refused(kwargs, message):
    with pytest.raises(ThreatModelError, match=message):
        ThreatModel(**kwargs)


def test_an_l2_budget_larger_than_the_box_is_refused():
    with pytest.raises(ThreatModelError, match="any other"):
        ThreatModel("l2", eps=50.0).budget(torch.zeros(1, 100))


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_box_reach_is_the_norm_of_half_the_range_everywhere(norm):
    """The one place that says how far a budget can reach in the box (minimal ε's search ceiling and
    the refusal of budgets that contain the box both use it)."""
    threat = ThreatModel(norm, eps=1e-3, bounds=(-1.0, 1.0))
    half = torch.ones(1, 400)  # half the range (1.0) at every sample
    assert threat.box_reach(400) == pytest.approx(float(torch.linalg.vector_norm(
        half, ord={"linf": float("inf"), "l2": 2, "l1": 1}[norm])))
    assert ThreatModel(norm, eps=1e-3, bounds=None).box_reach(400) == float("inf")
    if norm != "linf":
        with pytest.raises(ThreatModelError, match="enough to turn"):
            ThreatModel(norm, eps=threat.box_reach(400), bounds=(-1.0, 1.0)).budget(torch.zeros(2, 400))
