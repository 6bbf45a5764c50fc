"""silero-vad: robustaudio's torch module against the package's own inference (TorchScript audio_forward, and
its ONNX file through onnxruntime), window decisions, logits convention, gradients, stages, loader names."""

import importlib.util
import math
import shutil
import subprocess
import warnings

import pytest
import soundfile
import torch
import torchaudio

from robustaudio.data import AudioDataset
from robustaudio.data.audio import load_audio
from robustaudio.models import ModelError, load_model

if importlib.util.find_spec("silero_vad") is None:
    pytest.skip("silero-vad's model ships in its wheel: pip install silero-vad==6.2.3", allow_module_level=True)

from robustaudio.models.silero_vad import SileroVAD, data_dir  # noqa: E402

# Measured on the bundled clips: 1.2e-5 against the TorchScript model run one clip at a time, 1.2e-7
# against it run as one batch, 3.8e-6 against onnxruntime (which itself differs from the TorchScript
# model by 1.0e-5): float32 LSTM and convolutions summed in other orders.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def vad():
    return load_model("silero-vad:max", clip_seconds=1.0)


@pytest.fixture(scope="module")
def clips():
    """Six bundled speech clips (real speakers and espeak-ng voices) and six of other classes, 1 s at 16 kHz,
    then white noise and digital silence."""
    dataset = AudioDataset.from_path().clips
    speech = [c for c in dataset if c.labels[0] == "speech"][:6]
    other = [c for c in dataset if c.labels[0] in ("kick", "engine", "water", "footsteps", "music", "cymbal")]
    other = [next(c for c in other if c.labels[0] == label)
             for label in ("kick", "engine", "water", "footsteps", "music", "cymbal")]
    audio = torch.stack([load_audio(c.path, 16000, 16000)[0] for c in speech + other])
    noise = 0.1 * torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    return torch.cat([audio, noise, torch.zeros(1, 16000)])


def package_probabilities(audio: torch.Tensor, onnx: bool = False) -> torch.Tensor:
    """silero's own streaming inference, ``model.audio_forward``, one clip at a time: ``[B, chunks]``."""
    import silero_vad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if onnx:
            from silero_vad.utils_vad import OnnxWrapper
            model = OnnxWrapper(str(data_dir() / "silero_vad.onnx"), force_onnx_cpu=True)
        else:
            model = silero_vad.load_silero_vad()  # the TorchScript model (runs the wheel's TorchScript code)
        return torch.cat([model.audio_forward(audio[i:i + 1], 16000) for i in range(len(audio))])


def test_chunk_probabilities_match_the_package(vad, clips):
    with torch.no_grad():
        ours = vad.chunk_probabilities(clips)
    theirs = package_probabilities(clips)
    assert ours.shape == theirs.shape == (len(clips), 32)
    assert float((ours - theirs).abs().max()) <= TOLERANCE


def test_chunk_probabilities_match_onnxruntime(vad, clips):
    pytest.importorskip("onnxruntime")
    with torch.no_grad():
        ours = vad.chunk_probabilities(clips)
    assert float((ours - package_probabilities(clips, onnx=True)).abs().max()) <= TOLERANCE


def test_a_clip_not_a_whole_number_of_chunks_is_zero_padded(clips):
    model = SileroVAD(clip_seconds=0.5)
    audio = clips[:2, :8000]  # 15.6 chunks
    with torch.no_grad():
        ours = model.chunk_probabilities(audio)
    assert ours.shape == (2, 16)
    assert float((ours - package_probabilities(audio)).abs().max()) <= TOLERANCE


def test_window_decisions(vad, clips):
    with torch.no_grad():
        logits = vad(clips)
        p = vad.speech_probability(clips)
    assert vad.predict(logits).tolist() == [1] * 6 + [0] * 8  # speech; drums, engine, water, ...; noise, silence
    # logits [-z/2, z/2], z = logit(p) - logit(0.5): the softmax's speech probability is p
    assert torch.allclose(torch.softmax(logits, dim=1)[:, 1], p, atol=1e-5)
    assert torch.allclose(p, vad.chunk_probabilities(clips).amax(dim=1))


def test_mean_pooling_and_threshold(clips):
    mean, strict = SileroVAD(pooling="mean", clip_seconds=1.0), SileroVAD(clip_seconds=1.0, threshold=0.9)
    with torch.no_grad():
        chunks = mean.chunk_probabilities(clips)
        logits = mean(clips)
        p = chunks.mean(dim=1)
        z = logits[:, 1] - logits[:, 0]
        strict_logits = strict(clips)
    assert torch.allclose(torch.sigmoid(z), p, atol=1e-6)  # z = logit(mean p), from the pre-sigmoid outputs
    peak = chunks.amax(dim=1)
    assert torch.equal(strict.predict(strict_logits), (peak > 0.9).long())
    z_strict = strict_logits[:, 1] - strict_logits[:, 0]  # logit(peak) - logit(0.9)
    assert torch.allclose(torch.sigmoid(z_strict + math.log(9)), peak, atol=1e-6)


def test_gradients_are_finite_and_non_zero(vad, clips):
    audio = clips.clone().requires_grad_(True)
    vad(audio)[:, 1].sum().backward()
    assert torch.isfinite(audio.grad).all()
    # speech and noise; not digital silence (the slope of |X| at 0 is taken as 0), nor a drum hit whose highest
    # chunk lies in its silent tail, where every ReLU before the output is off (a truly flat spot)
    assert (audio.grad[[0, 1, 2, 3, 4, 5, 12]] != 0).any(dim=1).all()


def test_stages(vad, clips):
    with torch.no_grad():
        features = vad.features(clips[:2])
        embeddings = vad.embeddings(features)
        assert torch.equal(vad.head(embeddings), vad(clips[:2]))
    assert features.shape == (2, 129, 32 * 4) and embeddings["audio"].shape == (2, 32 * 128)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")
def test_an_espeak_sentence_is_speech_and_noise_is_not(tmp_path):
    path = tmp_path / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "Hello, is anybody there?"], check=True)
    audio, rate = soundfile.read(str(path), dtype="float32")
    speech = torchaudio.functional.resample(torch.from_numpy(audio), rate, 16000)[:8000]
    model = load_model("silero-vad:max")  # 0.5 s windows
    noise = 0.05 * torch.randn(8000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert model.predict(model(torch.stack([speech, noise]))).tolist() == [1, 0]


def test_loader_names_and_errors():
    assert load_model("silero-vad:mean").pooling == "mean"
    with pytest.raises(ModelError, match="silero-vad:max"):
        load_model("silero-vad:median")
    with pytest.raises(ModelError, match="16 kHz"):
        load_model("silero-vad:max", sample_rate=8000)
