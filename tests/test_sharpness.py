"""Sharpness: the one-step ascent against a second-order Taylor expansion, (non-)invariance under
rescaling, exact restoration of weights and BatchNorm buffers, also after an error."""

import pytest
import torch
import torch.nn.functional as F
from conftest import LinearClassifier
from torch import nn

from robustaudio.metrics.sharpness import rebatch, sharpness
from robustaudio.models import Classifier


class TwoLayer(Classifier):
    """x -> Linear -> (BatchNorm) -> ReLU -> Linear: the embedding is the hidden layer."""

    def __init__(self, dim: int = 12, hidden: int = 16, classes: int = 3, batchnorm: bool = False, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.labels = tuple(f"c{k}" for k in range(classes))
        self.l1, self.l2 = nn.Linear(dim, hidden), nn.Linear(hidden, classes)
        self.norm = nn.BatchNorm1d(hidden) if batchnorm else nn.Identity()

    def features(self, audio):
        return audio

    def embeddings(self, features, video=None):
        return {"audio": torch.relu(self.norm(self.l1(features)))}

    def head(self, embeddings):
        return self.l2(embeddings["audio"])


class FailsWhenPerturbed(TwoLayer):
    """Raises on its second forward pass, i.e. with the weights perturbed."""

    calls = 0

    def forward(self, audio, video=None):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("injected failure")
        return super().forward(audio, video)


def data(n: int = 32, dim: int = 12, classes: int = 3, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=dtype), torch.randint(classes, (n,), generator=g)


def snapshot(model):
    return {name: t.detach().clone() for name, t in [*model.named_parameters(), *model.named_buffers()]}


def assert_bitwise_equal(model, saved):
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        assert torch.equal(t, saved[name]), name


@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize("adaptive", [False, True])
def test_one_step_matches_second_order_taylor(adaptive, multilabel):
    """Linear model: L(θ) = loss(X Wᵀ + b); with ε = ρ T²g / ‖Tg‖ (T = I or |θ| + η),
    L(θ + ε) − L(θ) = gᵀε + ½ εᵀHε + O(ρ³) = ρ‖Tg‖ + ½ εᵀHε + O(ρ³)."""
    torch.manual_seed(0)
    audio, y = data(dim=5, dtype=torch.float64)
    labels = F.one_hot(y, 3).double() if multilabel else y
    model = LinearClassifier(torch.randn(3, 5), torch.randn(3)).double()
    model.multilabel = multilabel

    def loss(theta):
        logits = audio @ theta[:15].reshape(3, 5).T + theta[15:]
        if multilabel:
            return F.binary_cross_entropy_with_logits(logits, labels)
        return F.cross_entropy(logits, labels)

    theta = torch.cat([model.linear.weight.detach().flatten(), model.linear.bias.detach()])
    g = torch.autograd.functional.jacobian(loss, theta)
    hessian = torch.autograd.functional.hessian(loss, theta)
    eta = 0.01
    scale = theta.abs() + eta if adaptive else torch.ones_like(theta)
    for rho in (1e-2, 3e-2):
        eps = rho * scale ** 2 * g / (scale * g).norm()
        first = rho * (scale * g).norm()
        second = first + 0.5 * eps @ hessian @ eps
        result = sharpness(model, [(audio, labels)], rho=rho, adaptive=adaptive, eta=eta)
        assert result["loss"] == pytest.approx(float(loss(theta)), rel=1e-12)
        assert abs(result["sharpness"] - second) < 0.02 * abs(result["sharpness"] - first)  # O(ρ³) vs O(ρ²)
        assert result["sharpness"] == pytest.approx(float(loss(theta + eps) - loss(theta)), rel=1e-9)


def test_rescaling_sharpens_m_sharpness_but_not_adaptive_sharpness():
    """α·(W₁, b₁) and W₂/α compute the same function; the Hessian in W₂ grows by α², so plain
    sharpness grows, while adaptive sharpness with η = 0 is invariant (ASAM's point)."""
    audio, labels = data()
    model, scaled = TwoLayer(), TwoLayer()
    scaled.load_state_dict(model.state_dict())
    with torch.no_grad():
        scaled.l1.weight.mul_(4), scaled.l1.bias.mul_(4), scaled.l2.weight.div_(4)
    torch.testing.assert_close(scaled(audio), model(audio))
    batches = [(audio, labels)]
    plain = [sharpness(m, batches, rho=0.05)["sharpness"] for m in (model, scaled)]
    adaptive = [sharpness(m, batches, rho=0.2, adaptive=True, eta=0.0)["sharpness"] for m in (model, scaled)]
    assert plain[1] > 2 * plain[0] > 0
    assert adaptive[1] == pytest.approx(adaptive[0], rel=1e-4)


def test_weights_and_batchnorm_buffers_restored_bitwise():
    audio, labels = data(64)
    model = TwoLayer(batchnorm=True).train()
    for _ in range(3):  # non-trivial running statistics
        model(audio)
    model.l2.bias.requires_grad_(False)
    saved = snapshot(model)
    with torch.no_grad():
        eval_loss = F.cross_entropy(model.eval()(audio), labels).item()
    model.train()
    result = sharpness(model, [(audio[:32], labels[:32]), (audio[32:], labels[32:])], adaptive=True, steps=3)
    assert_bitwise_equal(model, saved)
    assert model.training and not model.l2.bias.requires_grad and model.l1.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert result["loss"] == pytest.approx(eval_loss, rel=1e-5)  # eval-mode BatchNorm, not batch statistics
    assert result["batches"] == 2 and result["n"] == 64 and result["sharpness"] > 0


def test_restored_when_the_loss_raises_mid_way():
    audio, labels = data()
    model = FailsWhenPerturbed(batchnorm=True).train()
    model(audio)
    model.calls = 0
    saved = snapshot(model)
    with pytest.raises(RuntimeError, match="injected"):
        sharpness(model, [(audio, labels)], rho=0.5)
    assert_bitwise_equal(model, saved)
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_more_ascent_steps_never_lower_the_estimate():
    audio, labels = data()
    model = TwoLayer()
    one = sharpness(model, [(audio, labels)], rho=0.5)["sharpness"]
    three = sharpness(model, [(audio, labels)], rho=0.5, steps=3)["sharpness"]
    assert three >= one - 1e-6


def test_m_rebatches_across_incoming_batches():
    audio, labels = data(10)
    chunks = list(rebatch([(audio[:7], labels[:7]), (audio[:0], labels[:0]), (audio[7:], labels[7:])], 4))
    assert [len(a) for a, _, _ in chunks] == [4, 4, 2]
    assert torch.equal(torch.cat([a for a, _, _ in chunks]), audio)
    model = TwoLayer()
    by_m = sharpness(model, [(audio[:7], labels[:7]), (audio[7:], labels[7:])], m=4)
    as_given = sharpness(model, [(audio[s:s + 4], labels[s:s + 4]) for s in (0, 4, 8)])
    assert by_m["per_batch"] == pytest.approx(as_given["per_batch"]) and by_m["m"] == 4
    weighted = (4 * by_m["per_batch"][0] + 4 * by_m["per_batch"][1] + 2 * by_m["per_batch"][2]) / 10
    assert by_m["sharpness"] == pytest.approx(weighted)


class BiasFreeLinear(Classifier):
    """logits = s · W x: the loss's gradient in W scales with s and its curvature with s²."""

    labels = ("a", "b", "c")

    def __init__(self, scale: float, dim: int = 12):
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(torch.randn(3, dim, generator=torch.Generator().manual_seed(0)))

    def features(self, audio):
        return audio

    def embeddings(self, features, video=None):
        return {"audio": features}

    def head(self, embeddings):
        return self.scale * embeddings["audio"] @ self.weight.T


def test_sharpness_is_near_zero_when_flat_and_grows_with_curvature():
    audio, labels = data()
    values = [sharpness(BiasFreeLinear(scale), [(audio, labels)], rho=0.05)["sharpness"]
              for scale in (1e-4, 0.5, 1.0, 2.0)]
    assert abs(values[0]) < 1e-4
    assert values[0] < values[1] < values[2] < values[3]
