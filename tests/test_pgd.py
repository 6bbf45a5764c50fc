"""Native PGD: analytic optima on a linear model, early stop, counts, targeted and multi-label."""

import pytest
import torch
from conftest import LinearClassifier, binary_linear

from robustaudio.attacks import ThreatModel, pgd
from robustaudio.attacks.criteria import is_fooled


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_pgd_finds_the_analytic_minimal_perturbation(norm):
    model, audio, labels, minimal = binary_linear()
    steps = 20
    above = pgd(model, audio, labels, ThreatModel(norm, eps=0.1), eps=minimal[norm] * 1.05, steps=steps,
                random_start=False)
    assert above.success.all(), "PGD must reach the optimum 5% above the minimal budget"
    # The perturbation it found is no larger than the budget, hence within 5% of the optimum.
    found = ThreatModel(norm, eps=0.1).norms(above.perturbation)
    assert torch.all(found >= minimal[norm] * (1 - 1e-4))
    below = pgd(model, audio, labels, ThreatModel(norm, eps=0.1), eps=minimal[norm] * 0.95, steps=steps,
                restarts=3, generator=torch.Generator().manual_seed(0))
    assert not below.success.any(), "nothing can succeed below the minimal budget"


def test_fooled_clips_leave_the_batch_and_counts_add_up():
    model, audio, labels, minimal = binary_linear()
    eps = minimal["linf"].clone()
    eps[:8] *= 0.5   # cannot be fooled: attacked for every step
    eps[8:] *= 3.0   # fooled after one step
    result = pgd(model, audio, labels, ThreatModel("linf", eps=0.1), eps=eps, steps=10, random_start=False)
    assert not result.success[:8].any() and result.success[8:].all()
    assert torch.all(result.forwards[:8] == 1 + 11) and torch.all(result.backwards[:8] == 10)
    assert torch.all(result.backwards[8:] <= 2)


def test_clean_errors_count_as_fooled_without_work():
    model, audio, labels, _ = binary_linear()
    result = pgd(model, audio, 1 - labels, ThreatModel("linf", eps=0.001), steps=5)
    assert result.success.all()
    assert torch.all(result.backwards == 0) and torch.equal(result.adversarial, audio)


def test_targeted_attack_reaches_the_target():
    g = torch.Generator().manual_seed(1)
    model = LinearClassifier(torch.randn(4, 64, generator=g), torch.zeros(4))
    audio = torch.rand(8, 64, generator=g) * 0.2 - 0.1
    clean = model(audio).argmax(-1)
    target = (clean + 1) % 4
    result = pgd(model, audio, target, ThreatModel("l2", eps=2.0), steps=30, targeted=True, generator=g)
    assert result.success.all()
    assert torch.equal(model(result.adversarial).argmax(-1), target)


def test_multilabel_deactivation_uses_bce_and_switches_labels_off():
    g = torch.Generator().manual_seed(2)
    model = LinearClassifier(torch.randn(3, 64, generator=g), torch.full((3,), 2.0))
    model.multilabel = True
    audio = torch.rand(6, 64, generator=g) * 0.1 - 0.05
    labels = (torch.sigmoid(model(audio)) > 0.5).float()
    assert labels.sum() > 0
    result = pgd(model, audio, labels, ThreatModel("linf", eps=0.3), steps=20, generator=g)
    assert result.success.all()
    assert is_fooled(model, model(result.adversarial), labels).all()


def test_model_is_frozen_during_and_restored_after():
    model, audio, labels, _ = binary_linear()
    model.train()
    seen = []
    hook = model.linear.register_forward_hook(lambda m, i, o: seen.append((m.training, m.weight.requires_grad)))
    pgd(model, audio, labels, ThreatModel("linf", eps=0.01), steps=2)
    hook.remove()
    assert all(state == (False, False) for state in seen)
    assert model.training and model.linear.weight.requires_grad
    assert model.linear.weight.grad is None


def test_feature_domain_attack_perturbs_features_not_waveform():
    from robustaudio.models import LogMelCNN

    torch.manual_seed(0)
    model = LogMelCNN(labels=["a", "b", "c"]).eval()
    audio = torch.rand(3, 16000) * 0.2 - 0.1
    labels = model(audio).argmax(-1)
    threat = ThreatModel("l2", eps=5.0, domain="feature", bounds=None)
    result = pgd(model, audio, labels, threat, steps=5, generator=torch.Generator().manual_seed(0))
    assert result.adversarial.shape == model.features(audio).shape
    assert torch.allclose(model.forward_features(result.adversarial), result.logits, atol=1e-4)
