"""Query counting, the ONNX classifier and the native Square Attack."""

import pytest
import torch
from conftest import LinearClassifier
from test_threat import assert_inside
from torch import nn

from robustaudio.attacks import ThreatModel, ThreatModelError, is_fooled, pgd
from robustaudio.attacks.counting import QueryCounter
from robustaudio.attacks.criteria import margin_loss
from robustaudio.attacks.square import square_attack
from robustaudio.models import ModelError
from robustaudio.models.base import GradientUnavailableError
from robustaudio.models.onnx import OnnxClassifier


def linear_problem(seed: int = 0, clips: int = 8, samples: int = 400):
    g = torch.Generator().manual_seed(seed)
    model = LinearClassifier(torch.randn(3, samples, generator=g) * 0.05, torch.zeros(3)).eval()
    audio = torch.rand(clips, samples, generator=g) * 2 - 1
    return model, audio, model(audio).argmax(1).detach(), g


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 2.0)])
def test_square_attack_fools_the_linear_model_and_counts_its_queries(norm, eps):
    model, audio, labels, g = linear_problem()
    labels[0] = (labels[0] + 1) % 3  # wrong already: costs the clean query only
    counter = QueryCounter(model, reference=audio)
    threat = ThreatModel(norm, eps=eps)
    result = square_attack(counter, audio, labels, threat, queries=300, generator=g)
    assert result.success.float().mean() >= 0.75
    assert_inside(threat, audio, result.adversarial, result.budget)
    assert torch.equal(result.forwards, counter.counts)
    assert counter.total == int(result.forwards.sum())
    assert result.forwards[0] == 1 and result.forwards.max() <= 300
    assert torch.all(result.backwards == 0)
    assert torch.equal(result.success, model(result.adversarial).argmax(1) != labels)
    # Fooled clips stopped early: the successes used fewer queries than the budget.
    assert int(result.forwards[result.success].max()) < 300


def test_square_attack_is_reproducible_and_respects_masks():
    model, audio, labels, _ = linear_problem()
    mask = torch.zeros(400)
    mask[100:300] = 1
    threat = ThreatModel("linf", eps=0.1, mask=mask)
    a, b = (square_attack(model, audio, labels, threat, queries=50, generator=torch.Generator().manual_seed(3))
            for _ in range(2))
    assert torch.equal(a.adversarial, b.adversarial)
    assert_inside(threat, audio, a.adversarial, a.budget)


def test_targeted_square_attack_reaches_its_targets():
    model, audio, labels, g = linear_problem()
    targets = (labels + 1) % 3
    result = square_attack(model, audio, targets, ThreatModel("linf", eps=0.1), queries=300, targeted=True,
                           generator=g)
    assert (model(result.adversarial).argmax(1) == targets)[result.success].all()
    assert result.success.float().mean() >= 0.75


def test_square_attack_deactivates_multilabel_tags():
    model, audio, _, g = linear_problem()
    model.multilabel = True
    tags = (model(audio) > 0).float().detach()
    result = square_attack(model, audio, tags, ThreatModel("linf", eps=0.1), queries=300, generator=g)
    assert torch.equal(result.success, is_fooled(model, model(result.adversarial), tags))
    assert result.success.float().mean() >= 0.6
    assert result.forwards[tags.sum(1) == 0].eq(1).all()  # no tag on: fooled already, the clean query only


def test_square_attack_refuses_l1():
    model, audio, labels, g = linear_problem()
    with pytest.raises(ThreatModelError, match="linf and l2"):
        square_attack(model, audio, labels, ThreatModel("l1", eps=1.0), queries=10, generator=g)


def test_margin_is_negative_exactly_when_fooled():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    single = LinearClassifier(torch.zeros(3, 4), torch.zeros(3))
    assert margin_loss(single, logits, torch.tensor([0, 0])).tolist() == [1.0, -3.0]
    assert margin_loss(single, logits, torch.tensor([1, 1]), targeted=True).tolist() == [1.0, -2.0]
    multi = LinearClassifier(torch.zeros(3, 4), torch.zeros(3))
    multi.multilabel = True
    tags = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert margin_loss(multi, logits, tags).tolist() == [2.0, -float("inf")]  # no true tag: nothing to do


def test_gradients_through_a_query_counter_are_refused():
    model, audio, labels, _ = linear_problem()
    counter = QueryCounter(model, reference=audio)
    with pytest.raises(GradientUnavailableError, match="no gradients: use a black-box attack, e.g. --attack square"):
        pgd(counter, audio, labels, ThreatModel("linf", eps=0.01), steps=2)
    with pytest.raises(GradientUnavailableError, match="LinearClassifier"):
        counter(audio.clone().requires_grad_())
    assert counter(audio).shape == (8, 3) and counter.total > 0  # plain queries still work


class TinyConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Unflatten(1, (1, -1)), nn.Conv1d(1, 4, 9, stride=4), nn.ReLU(),
                                 nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, audio):
        return self.net(audio)


@pytest.fixture
def onnx_file(tmp_path):
    """A tiny conv net exported with a dynamic batch and labels in its metadata."""
    import onnx

    torch_model = TinyConvNet().eval()
    path = tmp_path / "tiny.onnx"
    with pytest.warns(DeprecationWarning):  # the legacy exporter: the default one needs onnxscript
        torch.onnx.export(torch_model, (torch.zeros(2, 400),), str(path), input_names=["audio"],
                          output_names=["logits"], dynamic_axes={"audio": {0: "batch"}, "logits": {0: "batch"}},
                          dynamo=False)
    proto = onnx.load(str(path))
    for key, value in {"labels": '["bird", "dog", "siren"]', "sample_rate": "8000"}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return torch_model, path


def test_onnx_classifier_matches_torch_and_reads_its_metadata(onnx_file):
    torch_model, path = onnx_file
    model = OnnxClassifier(path, clip_seconds=0.05)
    audio = torch.rand(5, 400, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.allclose(model(audio), torch_model(audio).detach(), atol=1e-5)
    assert model.labels == ("bird", "dog", "siren") and model.sample_rate == 8000 and not model.multilabel
    assert model.clip_samples == 400
    assert torch.equal(model.features(audio), audio)
    with pytest.raises(NotImplementedError, match="only forward"):
        model.embeddings(audio)
    with pytest.raises(GradientUnavailableError, match="--attack square"):
        model(audio.clone().requires_grad_())


def test_square_attack_runs_on_an_onnx_model(onnx_file):
    _, path = onnx_file
    model = OnnxClassifier(path)
    audio = torch.rand(4, 400, generator=torch.Generator().manual_seed(0)) * 2 - 1
    labels = model(audio).argmax(1)
    counter = QueryCounter(model, reference=audio)
    threat = ThreatModel("linf", eps=0.05)
    result = square_attack(counter, audio, labels, threat, queries=40, generator=torch.Generator().manual_seed(0))
    assert_inside(threat, audio, result.adversarial, result.budget)
    assert torch.equal(result.forwards, counter.counts)
    assert torch.equal(result.success, model(result.adversarial).argmax(1) != labels)


def test_onnx_missing_or_corrupt_files_are_named(tmp_path):
    missing = tmp_path / "nowhere.onnx"
    with pytest.raises(ModelError, match="nowhere.onnx does not exist"):
        OnnxClassifier(missing)
    corrupt = tmp_path / "garbage.onnx"
    corrupt.write_bytes(b"\x00\xffnot a protobuf" * 50)
    with pytest.raises(ModelError, match="garbage.onnx could not be loaded.*torch.onnx.export"):
        OnnxClassifier(corrupt)
