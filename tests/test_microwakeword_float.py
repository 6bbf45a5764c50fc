"""microWakeWord's float twin: the same decisions as the device, gradients, and what it refuses."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from robustaudio.attacks.jamming import Detector, jam_loss
from robustaudio.models import ModelError, load_model

pytest.importorskip("pymicro_wakeword", reason="microWakeWord needs pip install pymicro-wakeword==2.5.0")
pytest.importorskip("tflite", reason="the twin reads the TFLite graph with pip install tflite")

WAKEWORD = Path(__file__).parent / "data" / "wakeword"  # espeak-ng clips, see its README.md


def scenes() -> torch.Tensor:
    """Each test clip in 0.5 s of silence each side, alone and under three levels of noise: ``[12, T]``."""
    generator = torch.Generator().manual_seed(0)
    out = []
    for name in ("alexa-en_m8", "hello_there-en", "hey_jarvis-en_gb_rp"):
        clip, rate = soundfile.read(WAKEWORD / f"{name}.flac", dtype="float32")
        clip = torch.nn.functional.pad(torch.from_numpy(clip), (8000, 32000 - len(clip) - 8000))
        for level in (0.0, 0.003, 0.01, 0.03):
            out.append(clip + level * torch.randn(clip.shape, generator=generator))
    return torch.stack(out)


@pytest.fixture(scope="module")
def pair():
    return load_model("microwakeword:alexa"), load_model("microwakeword-float:alexa")


def test_step_probabilities_follow_the_device(pair):
    device, twin = pair
    audio = scenes()
    with torch.no_grad():
        ours = twin.step_probabilities(audio)
    theirs = np.stack([device.step_probabilities(clip) for clip in audio.numpy()])
    assert ours.shape == theirs.shape
    # the device rounds every activation to int8; the twin rounds only the input
    assert np.corrcoef(ours.numpy().ravel(), theirs.ravel())[0, 1] > 0.99
    assert np.abs(ours.numpy() - theirs).mean() < 0.02
    fired_device = theirs.max(axis=1) > device.cutoff
    fired_twin = ours.amax(dim=1).numpy() > twin.cutoff
    assert fired_device[0] and not fired_device[4:].any()   # the test is not vacuous: alexa fires, others do not
    assert (fired_device == fired_twin).all()
    assert (twin(audio).argmax(dim=1).numpy() == 1).tolist() == fired_twin.tolist()


def test_gradients_reach_the_waveform(pair):
    _, twin = pair
    audio = scenes()[:2].clone().requires_grad_(True)
    loss = jam_loss(Detector(twin, "alexa").margins(audio))
    loss.backward()
    assert torch.isfinite(audio.grad).all() and audio.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in twin.parameters())


def test_graphs_it_cannot_rebuild_are_refused_in_one_line():
    with pytest.raises(ModelError, match="SPLIT_V"):
        load_model("microwakeword-float:okay_nabu")
    with pytest.raises(ModelError, match="No microWakeWord model"):
        load_model("microwakeword-float:no_such_word")
    with pytest.raises(ModelError, match="16000"):
        load_model("microwakeword-float:alexa", sample_rate=8000)
