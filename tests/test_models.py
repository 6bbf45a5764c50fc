"""The Classifier contract, for every architecture and the bundled checkpoints."""

import json

import pytest
import torch

from robustaudio.data import AudioDataset
from robustaudio.models import ARCHITECTURES, MODELS, load_model
from robustaudio.models.registry import BUNDLED_DIR
from robustaudio.models.zoo import ZOO

AUDIO_ONLY = sorted(name for name, build in ARCHITECTURES.items()
                    if name not in ZOO and build(labels=["a"]).modalities == ("audio",))


# The zoo is tested in test_zoo.py, the audio-visual models (which need video) in test_fusion.py.
@pytest.mark.parametrize("arch", AUDIO_ONLY)
def test_contract(arch):
    torch.manual_seed(0)
    model = ARCHITECTURES[arch](labels=["a", "b", "c"]).eval()
    audio = (torch.rand(2, model.clip_samples) * 0.2 - 0.1).requires_grad_(True)
    features = model.features(audio)
    assert features.dim() == 3 and features.shape[0] == 2
    embeddings = model.embeddings(features)
    assert set(embeddings) == set(model.modalities)
    logits = model(audio)
    assert logits.shape == (2, 3)
    assert torch.allclose(logits, model.head(embeddings), atol=1e-5)
    assert torch.allclose(logits, model.forward_features(features), atol=1e-5)
    grad, = torch.autograd.grad(logits[:, 0].sum(), audio)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0, "the front end must be in the graph"
    assert model.bounds == (-1.0, 1.0) and model.sample_rate == 16000 and not model.multilabel


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bundled_checkpoint_reproduces_its_card(name):
    """The committed weights load weights-only and score the card's clean test accuracy."""
    model = load_model(name)
    card = json.loads((BUNDLED_DIR / MODELS[name].checkpoint).with_suffix(".json").read_text())
    assert model.labels == tuple(card["labels"])
    correct = []
    with torch.no_grad():
        for batch in AudioDataset.from_path(MODELS[name].data, split="test").batches(model, 64):
            correct.append(model(batch.audio, batch.video).argmax(-1) == batch.labels)
    accuracy = float(torch.cat(correct).float().mean())
    assert accuracy == pytest.approx(card["test_accuracy"], abs=1e-6)
    assert accuracy > 2.0 / len(model.labels), "the bundled model must be far above chance"
