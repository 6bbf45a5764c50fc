"""Each sanity check fires on a model built to trigger it and stays silent on a well-behaved one."""

import pytest
import torch
from conftest import LinearClassifier, binary_linear

import robustaudio.metrics.sanity as sanity
from robustaudio.attacks import ThreatModel
from robustaudio.metrics import probe_model, record_checks

THREAT = ThreatModel("linf", eps=0.02)


def flagged(model, audio, labels, threat=THREAT, steps=10):
    checks = probe_model(model, audio, labels, threat, steps=steps, restarts=1,
                         generator=torch.Generator().manual_seed(0))
    return {c.name for c in checks if c.flagged}


@pytest.fixture
def linear():
    model, audio, labels, _ = binary_linear()
    return model, audio, labels


def test_a_well_behaved_model_raises_no_flag(linear):
    assert flagged(*linear) == set()


class NaNGradient(LinearClassifier):
    def head(self, embeddings):  # sqrt at 0: infinite derivative, times 0 -> NaN gradient
        x = embeddings["audio"]
        return self.linear(x) + 0 * torch.sqrt((x - x).abs()).sum(-1, keepdim=True)


class Rounding(LinearClassifier):
    def features(self, audio):  # a quantising front end: zero gradient almost everywhere
        return torch.round(audio * 100) / 100


class Random(LinearClassifier):
    def head(self, embeddings):
        return self.linear(embeddings["audio"]) + torch.randn(embeddings["audio"].shape[0], 2)


class Softmax(LinearClassifier):
    def head(self, embeddings):
        return torch.softmax(self.linear(embeddings["audio"]), dim=-1)


class Unbreakable(LinearClassifier):
    def head(self, embeddings):  # class 0 whatever the input: tiny, non-zero gradients
        return torch.tensor([10.0, 0.0]) + 1e-6 * self.linear(embeddings["audio"])


def clone(cls, model):
    return cls(model.linear.weight.detach(), model.linear.bias.detach())


@pytest.mark.parametrize("cls,expected", [
    (NaNGradient, "gradients not finite"),
    (Rounding, "gradients masked"),
    (Random, "randomness in the model"),
    (Softmax, "probabilities, not logits"),
    (Unbreakable, "attack cannot reach the model"),
])
def test_each_probe_fires_on_its_model(linear, cls, expected):
    model, audio, labels = linear
    model = clone(cls, model)
    if cls is Unbreakable:
        labels = torch.zeros_like(labels)
    assert expected in flagged(model, audio, labels)


class Hardening(LinearClassifier):
    """Behaves linearly until ``hardened``; then predicts class 0 whatever the input."""

    hardened = False

    def head(self, embeddings):
        if self.hardened:
            return torch.tensor([10.0, 0.0]) + 0 * self.linear(embeddings["audio"])
        return self.linear(embeddings["audio"])


def test_stronger_attack_raising_accuracy_is_flagged(linear, monkeypatch):
    model, audio, labels = linear
    model = clone(Hardening, model)
    labels = torch.zeros_like(labels)
    with torch.no_grad():  # make class 0 the clean prediction everywhere, but breakable
        model.linear.bias.copy_(torch.tensor([0.3, 0.0]))
    real_pgd = sanity.pgd

    def pgd(model_, *args, steps, **kwargs):  # harden the model when the stronger PGD starts
        model_.hardened = steps == 40
        return real_pgd(model_, *args, steps=steps, **kwargs)

    monkeypatch.setattr(sanity, "pgd", pgd)
    assert "erratic attack" in flagged(model, audio, labels)


def test_unconverged_attack_is_flagged(linear):
    model, audio, labels, minimal = binary_linear()
    threat = ThreatModel("l2", eps=float(minimal["l2"].median()) * 2)
    # steps of 2% of ε: 10 of them cover a fifth of the ball, 40 of them most of it
    checks = probe_model(model, audio, labels, threat, steps=10, restarts=1, rel_step_size=0.02,
                         generator=torch.Generator().manual_seed(0))
    assert "not converged" in {c.name for c in checks if c.flagged}
    assert "not converged" not in flagged(model, audio, labels, threat, steps=10)


def test_noise_beating_pgd_is_flagged(linear):
    model, audio, labels = linear
    model = clone(LinearClassifier, model)

    class Misleading(LinearClassifier):
        def head(self, embeddings):  # gradients point away from the decision boundary
            x = embeddings["audio"]
            logits = self.linear(x)
            return logits + 50 * (logits - logits.detach()) * -1.0 * 1.02

    misleading = clone(Misleading, model)
    assert "noise beats the attack" in flagged(misleading, audio, labels, ThreatModel("linf", eps=0.05))


def card(conditions):
    return {"conditions": [{"condition": f"{a}-{e}", "attack": a, "norm": "linf", "domain": "waveform",
                            "eps": e, "snr_db": None, "robust_accuracy": {"value": v, "n": 20}}
                           for a, e, v in conditions]}


def test_record_checks():
    names = lambda c: {x.name for x in record_checks(c) if x.flagged}  # noqa: E731
    assert names(card([("pgd", 0.001, 0.6), ("pgd", 0.002, 0.3)])) == set()
    assert names(card([("pgd", 0.001, 0.3), ("pgd", 0.002, 0.6)])) == {"accuracy rises with ε"}
    assert names(card([("pgd", 0.002, 0.6), ("square", 0.002, 0.3)])) == {"black-box beats white-box"}


def test_one_clip_of_difference_is_not_a_convergence_flag():
    """13 clips, 1 robust to the run's attack and 0 to the stronger one: within the attack's noise. In float32
    accuracies (1/13 > 1/13 in float64) this was flagged as 'not converged'."""
    from robustaudio.attacks.result import AttackResult

    model, audio, labels, _ = binary_linear()
    audio, labels = audio[:13], labels[:13]

    def fixed(robust: int):
        def attack(model_, audio_, labels_, threat, *, eps, clean_logits, video, init_delta, generator):
            logits = torch.nn.functional.one_hot(1 - labels_, 2).float() * 5  # every clip fooled ...
            logits[:robust] = torch.nn.functional.one_hot(labels_[:robust], 2).float() * 5  # ... but these
            zeros = torch.zeros(len(audio_), dtype=torch.long)
            return AttackResult(audio_, audio_, torch.arange(len(audio_)) >= robust, logits, eps, zeros, zeros)
        return attack

    threat = ThreatModel("linf", eps=0.01)
    checks = {c.name: c for c in probe_model(model, audio, labels, threat, attack=fixed(1), stronger=fixed(0),
                                             model_checks=False)}
    assert not checks["not converged"].flagged and not checks["erratic attack"].flagged
    checks = {c.name: c for c in probe_model(model, audio, labels, threat, attack=fixed(3), stronger=fixed(0),
                                             model_checks=False)}
    assert checks["not converged"].flagged and "3 of 13" in checks["not converged"].seen
