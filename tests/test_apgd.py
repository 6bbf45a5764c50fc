"""Native APGD: analytic optima, step-size adaptation, DLR scale invariance, counts, feasibility, APGD-T."""

import pytest
import torch
from conftest import LinearClassifier, binary_linear
from hypothesis import given, settings
from hypothesis import strategies as st

from robustaudio.attacks import ThreatModel, pgd
from robustaudio.attacks.apgd import apgd, apgd_targeted, dlr_loss
from robustaudio.attacks.criteria import attack_loss, is_fooled
from robustaudio.models import Classifier


class Bowl(Classifier):
    """Two classes, ``z_1 - z_0 = -a ||x - c||^2 - 1``: never flipped; the loss (label 0) peaks at ``x = c``."""

    labels = ("a", "b")

    def __init__(self, centre: torch.Tensor, a: float = 100.0):
        super().__init__()
        self.register_buffer("centre", centre)
        self.a = a

    def features(self, audio):
        return audio

    def embeddings(self, features, video=None):
        return {"audio": features}

    def head(self, embeddings):
        gap = -self.a * ((embeddings["audio"] - self.centre) ** 2).sum(-1) - 1
        return torch.stack([torch.zeros_like(gap), gap], dim=-1)


def multiclass_linear(classes=10, dim=64, clips=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    model = LinearClassifier(torch.randn(classes, dim, generator=g), torch.zeros(classes))
    audio = torch.rand(clips, dim, generator=g) * 0.2 - 0.1
    return model, audio, model(audio).argmax(-1).detach()


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_reaches_the_analytic_optimum_on_a_linear_model(norm):
    model, audio, labels, minimal = binary_linear()
    eps = minimal[norm] * 0.5  # half the flipping budget: never fooled, so all 100 steps run
    w = model.linear.weight[0] - model.linear.weight[1]
    result = apgd(model, audio, labels, ThreatModel(norm, eps=0.1), eps=eps, steps=100,
                  generator=torch.Generator().manual_seed(0))
    assert not result.success.any()
    towards = torch.where(labels == 0, -1.0, 1.0)  # the loss rises as the true class's margin falls
    achieved = result.perturbation @ w * towards
    dual = {"linf": w.abs().sum(), "l2": w.norm(), "l1": w.abs().max()}[norm]  # max of w·δ over the ball
    assert torch.allclose(achieved, eps * dual, rtol=1e-4)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_adaptive_step_beats_fixed_step_pgd_at_equal_passes(norm):
    # The optimum lies inside the ball, so PGD's fixed step (2.5ε/steps) oscillates around it
    # while APGD halves its step and settles.
    g = torch.Generator().manual_seed(0)
    dim, steps = 32, 40
    eps = torch.full((4,), 0.05 if norm == "linf" else 0.2)
    audio = torch.rand(4, dim, generator=g) * 0.2 - 0.1
    offset = torch.rand(dim, generator=g) * 2 - 1
    offset = offset * (0.6 * eps[0] / offset.abs().max() if norm == "linf" else 0.6 * eps[0] / offset.norm())
    model = Bowl(audio[0] + offset)
    audio = audio[0].expand(4, dim).clone()
    labels = torch.zeros(4, dtype=torch.long)
    threat = ThreatModel(norm, eps=0.1)
    fixed = pgd(model, audio, labels, threat, eps=eps, steps=steps, random_start=False)
    adaptive = apgd(model, audio, labels, threat, eps=eps, steps=steps, init_delta=torch.zeros_like(audio))
    assert torch.equal(fixed.forwards, adaptive.forwards) and torch.equal(fixed.backwards, adaptive.backwards)
    miss_fixed = (fixed.adversarial - model.centre).norm(dim=1)
    miss_adaptive = (adaptive.adversarial - model.centre).norm(dim=1)
    assert torch.all(miss_adaptive < miss_fixed / 2)  # 2.9x closer for L∞, 40x for L2
    assert torch.all(attack_loss(model, adaptive.logits, labels) > attack_loss(model, fixed.logits, labels))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_dlr_path_is_invariant_to_scaling_the_logits(norm):
    model, audio, labels = multiclass_linear()
    scaled = LinearClassifier(model.linear.weight * 8, model.linear.bias * 8)  # power of 2: exact in floats
    threat = ThreatModel(norm, eps=0.004 if norm == "linf" else 0.02)
    runs = [apgd(m, audio, labels, threat, steps=30, loss=loss, generator=torch.Generator().manual_seed(3))
            for loss in ("dlr", "ce") for m in (model, scaled)]
    dlr, dlr_scaled, ce, ce_scaled = runs
    assert 0 < dlr.success.sum() < len(labels)
    assert torch.equal(dlr.adversarial, dlr_scaled.adversarial) and torch.equal(dlr.forwards, dlr_scaled.forwards)
    assert torch.equal(dlr.logits * 8, dlr_scaled.logits)
    assert not torch.equal(ce.adversarial, ce_scaled.adversarial)  # the check can tell paths apart


def test_dlr_is_positive_exactly_when_fooled_and_needs_three_classes():
    logits = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 5, (64,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(dlr_loss(logits, labels) > 0, logits.argmax(-1) != labels)
    model, audio, labels, _ = binary_linear()
    with pytest.raises(ValueError, match="at least 3 classes"):
        apgd(model, audio, labels, ThreatModel("linf", eps=0.01), loss="dlr", steps=2)


def test_fooled_clips_stop_and_counts_are_exact():
    model, audio, labels, minimal = binary_linear()
    eps = minimal["linf"].clone()
    eps[:8] *= 0.5  # cannot be fooled: attacked for every step of both restarts
    eps[8:] *= 3.0  # from the clean point, the first step (2ε, projected: ε·sign) fools
    rows = []
    hook = model.linear.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    result = apgd(model, audio, labels, ThreatModel("linf", eps=0.1), eps=eps, steps=10, restarts=2,
                  init_delta=torch.zeros_like(audio), generator=torch.Generator().manual_seed(0))
    hook.remove()
    assert not result.success[:8].any() and result.success[8:].all()
    assert torch.all(result.forwards[:8] == 1 + 2 * 11) and torch.all(result.backwards[:8] == 2 * 10)
    assert torch.all(result.forwards[8:] == 1 + 2) and torch.all(result.backwards[8:] == 1)
    assert sum(rows) == int(result.forwards.sum())  # every row through the model is counted, once
    assert is_fooled(model, model(result.adversarial[8:]), labels[8:]).all()


def test_clean_errors_count_as_fooled_without_work():
    model, audio, labels, _ = binary_linear()
    result = apgd(model, audio, 1 - labels, ThreatModel("linf", eps=0.001), steps=5)
    assert result.success.all() and torch.all(result.backwards == 0) and torch.equal(result.adversarial, audio)


@settings(max_examples=30, deadline=None)
@given(norm=st.sampled_from(["linf", "l2", "l1"]), masked=st.booleans(), band=st.booleans(),
       loss=st.sampled_from(["ce", "dlr"]), seed=st.integers(0, 2**16))
def test_budget_box_and_mask_always_hold(norm, masked, band, loss, seed):
    g = torch.Generator().manual_seed(seed)
    dim, clips = 160, 4
    model = LinearClassifier(torch.randn(4, dim, generator=g), torch.zeros(4))
    audio = (torch.rand(clips, dim, generator=g) * 2 - 1) * 0.99  # near the box edges, so the box binds
    labels = model(audio).argmax(-1).detach()
    mask = (torch.rand(dim, generator=g) > 0.5).float() if masked else None
    threat = ThreatModel(norm, eps=0.1, mask=mask, band_hz=(1000.0, 4000.0) if band else None,
                         sample_rate=16000 if band else None)
    scale = {"linf": 0.3, "l2": 2.0, "l1": 10.0}[norm]
    eps = scale * (0.1 + torch.rand(clips, generator=g))  # per-sample budgets
    far = 100 * torch.randn(clips, dim, generator=g)  # a warm start far outside the ball
    result = apgd(model, audio, labels, threat, eps=eps, steps=6, restarts=2, loss=loss, init_delta=far,
                  generator=g, early_stop=False)
    delta = result.adversarial - audio
    assert torch.all(threat.norms(delta) <= eps * (1 + 1e-5))
    assert result.adversarial.min() >= -1 and result.adversarial.max() <= 1
    if masked and not band:  # threat.project band-passes after masking, which leaks into masked samples
        assert torch.all(delta[:, mask == 0] == 0)


def test_apgd_t_fools_at_least_as_many_as_apgd_ce_and_is_seeded():
    model, audio, labels = multiclass_linear()
    threat = ThreatModel("linf", eps=0.002)
    ce = apgd(model, audio, labels, threat, steps=30, generator=torch.Generator().manual_seed(0))
    t1, t2 = (apgd(model, audio, labels, threat, steps=30, loss="dlr", targeted=True, target_classes=9,
                   generator=torch.Generator().manual_seed(0)) for _ in range(2))
    assert 0 < ce.success.sum() < len(labels) and t1.success.sum() >= ce.success.sum()
    assert torch.equal(t1.adversarial, t2.adversarial) and torch.equal(t1.forwards, t2.forwards)
    assert torch.equal(t1.success, is_fooled(model, model(t1.adversarial), labels))  # untargeted success
    # A clip still standing after all runs took 9 runs of 30 steps.
    standing = ~t1.success
    assert torch.all(t1.backwards[standing] == 9 * 30)


def test_apgd_t_with_few_classes_runs_k_minus_1_targets():
    model, audio, labels = multiclass_linear(classes=3, clips=6)
    result = apgd_targeted(model, audio, labels, ThreatModel("linf", eps=1e-4), steps=4, target_classes=9,
                           generator=torch.Generator().manual_seed(0))
    assert torch.all(result.backwards[~result.success] == 2 * 4)


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_multilabel_deactivates_true_tags(loss):
    g = torch.Generator().manual_seed(2)
    model = LinearClassifier(torch.randn(3, 64, generator=g), torch.full((3,), 2.0))
    model.multilabel, model.threshold = True, 0.8
    audio = torch.rand(6, 64, generator=g) * 0.1 - 0.05
    labels = model.predict(model(audio)).float()
    assert labels.sum() > 0
    result = apgd(model, audio, labels, ThreatModel("linf", eps=0.3), steps=20, loss=loss, generator=g)
    assert result.success.all()
    assert not (model.predict(model(result.adversarial)).bool() & labels.bool()).any()
    with pytest.raises(ValueError, match="single-label"):
        apgd_targeted(model, audio, labels, ThreatModel("linf", eps=0.3), steps=2)


def test_feature_domain_and_frozen_weights():
    from robustaudio.models import LogMelCNN

    torch.manual_seed(0)
    model = LogMelCNN(labels=["a", "b", "c"]).train()
    audio = torch.rand(3, 16000) * 0.2 - 0.1
    labels = model.eval()(audio).argmax(-1)
    model.train()
    threat = ThreatModel("l2", eps=5.0, domain="feature", bounds=None)
    result = apgd(model, audio, labels, threat, steps=5, loss="dlr", generator=torch.Generator().manual_seed(0))
    assert result.adversarial.shape == model.features(audio).shape
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())
    assert torch.allclose(model.eval().forward_features(result.adversarial), result.logits, atol=1e-4)
