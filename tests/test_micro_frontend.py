"""MicroFrontend: the differentiable float model of microWakeWord's TFLite Micro front end (noise reduction, PCAN, log)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from robustaudio.models.frontends import MicroFrontend
from robustaudio.models.zoo import DSCNN

WAKEWORD = Path(__file__).parent / "data" / "wakeword"  # espeak-ng clips, see its README.md
RATE = 16000


def espeak_clips(seconds: float = 1.5) -> torch.Tensor:
    """The three bundled espeak clips, zero-padded (or cut) to ``seconds``: ``[3, T]``."""
    out = []
    for path in sorted(WAKEWORD.glob("*.flac")):
        clip, rate = soundfile.read(path, dtype="float32")
        assert rate == RATE
        clip = torch.from_numpy(clip)[:int(seconds * RATE)]
        out.append(torch.nn.functional.pad(clip, (0, int(seconds * RATE) - len(clip))))
    return torch.stack(out)


def device_features(clip: np.ndarray) -> np.ndarray:
    """pymicro-features' output ``[40, frames]`` for one clip, streamed as MicroWakeWord.step_probabilities does."""
    from pymicro_wakeword import MicroWakeWordFeatures

    pcm = np.clip(np.round(clip.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)
    return np.stack([frame.reshape(-1) for frame in MicroWakeWordFeatures().process_streaming(pcm.tobytes())], axis=1)


def test_matches_pymicro_features_on_espeak_clips():
    pytest.importorskip("pymicro_wakeword", reason="needs pip install pymicro-wakeword")
    audio = espeak_clips()
    front_end = MicroFrontend()
    with torch.no_grad():
        ours = front_end.raw(audio).numpy()
    device = np.stack([device_features(clip) for clip in audio.numpy()])
    assert ours.shape == device.shape == (3, 40, front_end.frames(audio)) == (3, 40, 1 + (len(audio[0]) - 480) // 160)
    r = np.corrcoef(ours.ravel(), device.ravel())[0, 1]
    assert r >= 0.995  # measured 0.998 (0.994 with noise, tones and quiet speech added)
    assert np.abs(ours - device).mean() <= 0.1  # measured 0.04, on a 0-26 scale
    # frames are aligned: shifting by one frame is much worse
    assert np.corrcoef(ours[..., 1:].ravel(), device[..., :-1].ravel())[0, 1] < r - 0.05


def test_gradients_are_finite_and_non_zero():
    audio = torch.cat([espeak_clips(1.0)[:1], torch.zeros(1, RATE)]).requires_grad_()  # speech, digital silence
    features = MicroFrontend()(audio)
    assert features.shape == (2, 40, 98) and torch.isfinite(features).all()
    features[0].sum().backward()
    assert torch.isfinite(audio.grad).all()
    assert audio.grad[0].abs().sum() > 0 and (audio.grad[0] != 0).float().mean() > 0.5
    assert (audio.grad[1] == 0).all()  # clips do not mix


def test_noise_reduction_removes_a_stationary_tone_over_time():
    """A steady 1 kHz tone under speech: its channel starts high (the noise estimate starts at 0), then the
    running estimate absorbs it and the channel falls, while the speech channels keep their level."""
    front_end = MicroFrontend()
    seconds = 3.0
    speech = espeak_clips(seconds)[1]
    t = torch.arange(len(speech)) / RATE
    audio = (speech + 0.05 * torch.sin(2 * torch.pi * 1000.0 * t)).unsqueeze(0)
    with torch.no_grad():
        features = front_end.raw(audio)[0]
        tone_only = front_end.raw(0.05 * torch.sin(2 * torch.pi * 1000.0 * t).unsqueeze(0))[0]
    channel = int((front_end.centre_frequencies() - 1000.0).abs().argmin())
    assert tone_only[channel, :3].mean() > 15.0  # the tone at first passes as signal
    assert tone_only[channel, -50:].max() < 1.0  # then is removed (the device outputs 0 there)
    assert (tone_only[channel, 1:40] < tone_only[channel, :39]).all()  # decaying frame by frame
    assert features[channel, -50:].mean() < features[channel, :3].mean() - 15.0
    if importlib.util.find_spec("pymicro_wakeword") is not None:
        device = device_features(audio[0].numpy())
        assert device[channel, -50:].mean() < device[channel, :3].mean() - 15.0  # the device does the same
        assert np.corrcoef(features[channel].numpy(), device[channel])[0, 1] > 0.95


def test_dscnn_pcan_forward_backward():
    model = DSCNN(feature_kind="pcan", feature_mean=10.0, feature_std=8.0)
    audio = (0.1 * torch.randn(2, 48000, generator=torch.Generator().manual_seed(0))).requires_grad_()
    features = model.features(audio)
    assert features.shape == (2, 40, 298)
    assert torch.allclose(features, (model.front_end.raw(audio) - 10.0) / 8.0)
    logits = model(audio)
    assert logits.shape == (2, 2)
    logits[:, 1].sum().backward()
    assert torch.isfinite(audio.grad).all() and audio.grad.abs().sum() > 0
    # the state_dict holds the normalisation only (the filters are derived from the config) and reloads
    assert {key for key in model.state_dict() if key.startswith("front_end.")} == {"front_end.mean", "front_end.std"}
    copy = DSCNN(feature_kind="pcan")
    copy.load_state_dict(model.state_dict())
    assert copy.front_end.mean == 10.0
    with pytest.raises(ValueError, match="n_mels must be 40"):
        DSCNN(feature_kind="pcan", n_mels=64)


def test_dscnn_old_kinds_keep_their_state_dict_keys():
    for kind in ("mfcc", "logmel"):
        keys = set(DSCNN(feature_kind=kind).state_dict())
        assert {"front_end.mean", "front_end.std", "front_end.mel.spectrogram.window", "front_end.mel.mel_scale.fb"} <= keys
