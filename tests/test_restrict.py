"""Restricted threat models: time windows, frequency bands, one modality."""

import pytest
import torch
from conftest import AudioVisualLinear

from robustaudio.attacks import ThreatModel, ThreatModelError, lp_norm, pgd
from robustaudio.attacks.restrict import band_mask, bandpass, time_mask
from robustaudio.models import load_model


@pytest.fixture(scope="module")
def cnn_batch():
    model = load_model("cnn")
    audio = torch.randn(4, model.clip_samples, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        labels = model(audio).argmax(-1)
    return model, audio, labels


def test_time_window_in_the_waveform_leaves_the_rest_untouched(cnn_batch):
    model, audio, labels = cnn_batch
    threat = ThreatModel("linf", eps=0.01, mask=time_mask(model, "waveform", 0.25, 0.5), restriction="t")
    delta = pgd(model, audio, labels, threat, steps=3, generator=torch.Generator().manual_seed(0)).perturbation
    inside = slice(int(0.25 * model.sample_rate), int(0.5 * model.sample_rate))
    outside = torch.ones(model.clip_samples, dtype=torch.bool)
    outside[inside] = False
    assert torch.all(delta[:, outside] == 0) and torch.all(delta[:, inside].abs().amax(1) > 0)


def test_time_and_band_masks_in_the_feature_domain(cnn_batch):
    model, audio, labels = cnn_batch
    mask = time_mask(model, "feature", 0.0, 0.5) * band_mask(model, 0, 2000)
    assert mask.shape == (64, 101) and 0 < mask.sum() < mask.numel()
    threat = ThreatModel("l2", eps=2.0, domain="feature", bounds=None, mask=mask)
    delta = pgd(model, audio, labels, threat, steps=3, generator=torch.Generator().manual_seed(0)).perturbation
    assert torch.all(delta[:, mask == 0] == 0) and torch.all(delta.flatten(1).abs().amax(1) > 0)
    centres = model.front_end.centre_frequencies()
    assert torch.all(centres[mask[:, 0] > 0] <= 2000) and torch.all(centres[mask[:, 0] == 0] > 2000)


@pytest.mark.parametrize("norm,max_out_of_band", [("l2", 1e-10), ("linf", 0.05)])
def test_band_in_the_waveform(cnn_batch, norm, max_out_of_band):
    """L2: the band holds exactly; L∞: the ball and box hold exactly, the band up to a small leak."""
    model, audio, labels = cnn_batch
    eps = {"l2": 0.5, "linf": 0.005}[norm]
    threat = ThreatModel(norm, eps=eps, band_hz=(500.0, 2000.0), sample_rate=model.sample_rate)
    delta = pgd(model, audio, labels, threat, steps=5, generator=torch.Generator().manual_seed(0)).perturbation
    assert torch.all(lp_norm(delta, norm) <= eps * (1 + 1e-5) + 1e-7)
    leaked = (delta - bandpass(delta, model.sample_rate, 500.0, 2000.0)).pow(2).sum(1) / delta.pow(2).sum(1)
    assert torch.all(leaked <= max_out_of_band), leaked


def test_bad_restrictions_are_refused(cnn_batch):
    model, _, _ = cnn_batch
    with pytest.raises(ValueError, match="START < END"):
        time_mask(model, "waveform", 0.5, 0.2)
    with pytest.raises(ValueError, match="after the"):
        time_mask(model, "waveform", 3.0, 4.0)
    with pytest.raises(ValueError, match="Nyquist"):
        band_mask(model, 100, 9000)
    with pytest.raises(ThreatModelError, match="feature domain"):
        ThreatModel("l2", eps=1.0, domain="feature", band_hz=(0, 100), sample_rate=16000)


def tiny_audio_visual(samples: int = 200, video_dim: int = 16) -> AudioVisualLinear:
    g = torch.Generator().manual_seed(0)
    return AudioVisualLinear(torch.randn(2, samples, generator=g), torch.randn(2, video_dim, generator=g))


@pytest.mark.parametrize("modality", ["audio", "video"])
def test_one_modality_is_attacked_and_the_other_held(modality):
    model = tiny_audio_visual()
    g = torch.Generator().manual_seed(1)
    audio, video = torch.rand(8, 200, generator=g) * 0.2 - 0.1, torch.rand(8, 16, generator=g)
    with torch.no_grad():
        labels = model(audio, video).argmax(-1)
    threat = ThreatModel("l2", eps=1.5 if modality == "video" else 5.0, modality=modality,
                         bounds=(0.0, 1.0) if modality == "video" else (-1.0, 1.0))
    result = pgd(model, audio, labels, threat, video=video, steps=10, generator=torch.Generator().manual_seed(0))
    assert result.success.float().mean() > 0.5
    attacked = video if modality == "video" else audio
    assert result.adversarial.shape == attacked.shape and not torch.equal(result.adversarial, attacked)
    other_audio = audio if modality == "video" else result.adversarial
    other_video = result.adversarial if modality == "video" else video
    with torch.no_grad():
        assert torch.allclose(model(other_audio, other_video), result.logits, atol=1e-5)
    assert "video" in threat.describe() if modality == "video" else "waveform" in threat.describe()


def test_both_modalities_with_separate_budgets_beat_either_alone():
    from robustaudio.attacks.joint import pgd_joint

    model = tiny_audio_visual()
    g = torch.Generator().manual_seed(1)
    audio, video = torch.rand(32, 200, generator=g) * 0.2 - 0.1, torch.rand(32, 16, generator=g)
    with torch.no_grad():
        labels = model(audio, video).argmax(-1)
    with torch.no_grad():  # linear model: audio alone flips clips with margin <= ε_a·|a|, jointly ε_a·|a| + ε_v·|v|
        logits = model(audio, video)
        margin = (logits.max(-1).values - logits.min(-1).values).median()
        a = (model.A.weight[0] - model.A.weight[1]).norm()
        v = (model.V.weight[0] - model.V.weight[1]).norm()
    eps_a, eps_v = float(0.6 * margin / a), float(0.6 * margin / v)
    audio_threat = ThreatModel("l2", eps=eps_a)
    video_threat = ThreatModel("l2", eps=eps_v, modality="video", bounds=(0.0, 1.0))
    seed = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    alone_a = pgd(model, audio, labels, audio_threat, video=video, steps=20, generator=seed()).success
    alone_v = pgd(model, audio, labels, video_threat, video=video, steps=20, generator=seed()).success
    both = pgd_joint(model, audio, video, labels, audio_threat, video_threat, steps=20, generator=seed())
    assert int(both.success.sum()) > int((alone_a | alone_v).sum())
    assert torch.all((both.audio - audio).norm(dim=1) <= eps_a * (1 + 1e-5))
    assert torch.all((both.video - video).norm(dim=1) <= eps_v * (1 + 1e-5) + 1e-6)
    assert both.video.min() >= 0 and both.video.max() <= 1
    with torch.no_grad():
        assert torch.allclose(model(both.audio, both.video), both.logits, atol=1e-5)
