"""Natural corruptions: exact SNRs, exact occlusion ranges, realistic rooms, determinism, bounds."""

import math
import sys

import numpy as np
import pytest
import torch

from robustaudio.acoustics import decay_time, mix_at_snr, noise_names, room_impulse_response
from robustaudio.acoustics.mixing import snr_db
from robustaudio.metrics.corruptions import (
    CORRUPTIONS,
    CorruptionError,
    UnknownCorruption,
    background_noise,
    contiguous_mask,
    gaussian_feature,
    gaussian_snr,
    get_corruption,
    occlusion_concat,
    occlusion_contiguous,
    occlusion_periodic,
    periodic_mask,
    reverb,
)

RATE = 16000
SNR_TOL_DB = 0.1  # the issue asks for the requested SNR within 0.1 dB
# Reverb at RT60 > 0.4 s costs 0.6-2.5 s per clip (image sources); the reverb tests cover those.
CHEAP_RT60 = 0.4


def clips(batch=4, samples=RATE, level=0.05, seed=0):
    """Noise-like clips at ``level`` RMS (-26 dBFS) with a slow envelope: mixtures rarely clip."""
    g = torch.Generator().manual_seed(seed)
    envelope = 0.5 + torch.rand(batch, 1, generator=g) * torch.linspace(0, 1, samples)
    x = torch.randn(batch, samples, generator=g) * envelope
    return x * (level / x.pow(2).mean(-1, keepdim=True).sqrt())


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


# -- SNR ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gaussian_snr", "background_noise"])
def test_realised_snr_is_the_asked_snr(name):
    corruption = CORRUPTIONS[name]
    x = clips(batch=8)
    for severity in corruption.severities:
        y = corruption(x, severity, seeded(1))
        assert torch.allclose(snr_db(x, y - x), torch.full((8,), float(severity)), atol=SNR_TOL_DB)


@pytest.mark.parametrize("noise", noise_names())
def test_each_bundled_noise_mixes_at_the_asked_snr_even_when_shorter_than_the_clip(noise):
    x = clips(batch=2, samples=6 * RATE)  # longer than every bundled noise (<= 5 s): tiled
    y = background_noise(x, 10.0, seeded(2), noise=noise)
    assert torch.allclose(snr_db(x, y - x), torch.full((2,), 10.0), atol=SNR_TOL_DB)


def test_background_noise_resamples_to_the_model_rate():
    x = clips(batch=2, samples=8000)
    y = background_noise(x, 5.0, seeded(0), sample_rate=8000)
    assert torch.allclose(snr_db(x, y - x), torch.full((2,), 5.0), atol=SNR_TOL_DB)


def test_mixing_follows_audiomentations_convention():
    """The gain of audiomentations' AddBackgroundNoise.apply (RMS over the clip, relative), without
    its file loading (librosa's first load costs ~20 s of JIT compilation)."""
    utils = pytest.importorskip("audiomentations.core.utils")
    x, noise = clips(batch=1), clips(batch=1, level=0.2, seed=5)
    clean, added = x[0].numpy(), noise[0].numpy()
    gain = utils.calculate_desired_noise_rms(utils.calculate_rms(clean), 7.0) / utils.calculate_rms(added)
    assert np.allclose(mix_at_snr(x, noise, 7.0)[0].numpy(), clean + gain * added, atol=1e-7)


def test_silent_clip_gets_no_noise():
    x = torch.zeros(2, RATE)
    assert torch.equal(gaussian_snr(x, 0.0, seeded()), x)
    assert torch.equal(background_noise(x, 0.0, seeded()), x)


def test_gaussian_feature_adds_sigma():
    features = torch.randn(4, 64, 101, generator=seeded(3))
    noisy = gaussian_feature(features, 0.2, seeded(4))
    assert abs(float((noisy - features).std()) - 0.2) < 0.005


# -- occlusion -----------------------------------------------------------------------------------


@pytest.mark.parametrize("position, expected", [("start", (0, 500)), ("middle", (250, 750)), ("end", (501, 1001))])
def test_contiguous_occlusion_fills_exact_range_with_clip_minimum(position, expected):
    x = clips(batch=3, samples=1001)
    y = occlusion_contiguous(x, 0.5, sample_rate=RATE, position=position)  # round(500.5) = 500 samples
    start, stop = expected
    minimum = x.amin(dim=1, keepdim=True)
    assert torch.equal(y[:, start:stop], minimum.expand(-1, stop - start))
    assert torch.equal(y[:, :start], x[:, :start]) and torch.equal(y[:, stop:], x[:, stop:])


def test_periodic_chunks_alternate_kept_first_with_exact_lengths():
    for chunk_seconds, chunk in [(0.125, 2000), (0.25, 4000), (0.5, 8000), (1.0, 8000), (2.0, 8000)]:
        mask = periodic_mask(RATE, chunk_seconds, RATE)   # chunks longer than half the clip: clipped
        edges = torch.nonzero(mask[1:] != mask[:-1]).flatten() + 1
        runs = torch.diff(torch.cat([torch.tensor([0]), edges, torch.tensor([RATE])]))
        assert not mask[0] and torch.all(runs == chunk) and int(mask.sum()) == RATE // 2
    x = clips(batch=2)
    y = occlusion_periodic(x, 0.125, sample_rate=RATE)
    mask = periodic_mask(RATE, 0.125, RATE)
    assert torch.equal(y[:, ~mask], x[:, ~mask])
    assert torch.all(y[:, mask] == x.amin(dim=1, keepdim=True))


def test_concat_keeps_the_kept_samples_in_order_and_pads_the_tail():
    x = clips(batch=2, samples=10000)
    y = occlusion_concat(x, 0.03, sample_rate=RATE)   # 480-sample chunks; 10000 is not a multiple
    mask = periodic_mask(10000, 0.03, RATE)
    kept = int((~mask).sum())
    assert kept == 10 * 480 + 400                   # 10 full kept chunks and the cut last one
    assert torch.equal(y[:, :kept], x[:, ~mask])
    assert torch.all(y[:, kept:] == x.amin(dim=1, keepdim=True))


def test_occlusion_works_on_features_along_time():
    features = torch.randn(2, 64, 101, generator=seeded(5))
    y = occlusion_periodic(features, 0.1, sample_rate=100, fill="min")   # 10 frames per chunk
    mask = periodic_mask(101, 0.1, 100)
    assert torch.all(y[..., mask] == features.amin(dim=(1, 2)).reshape(2, 1, 1))
    assert torch.equal(y[..., ~mask], features[..., ~mask])
    zero = occlusion_contiguous(features, 0.5, position="end", fill="zero")
    assert torch.all(zero[..., contiguous_mask(101, 0.5, "end")] == 0)


# -- reverb --------------------------------------------------------------------------------------


def test_decay_time_measures_a_known_exponential_decay():
    rt60 = 0.5
    t = torch.arange(RATE) / RATE
    rir = torch.randn(RATE, generator=seeded(6)) * 10 ** (-3 * t / rt60)   # -60 dB after rt60 s
    assert decay_time(rir, RATE, 20) == pytest.approx(rt60, rel=0.05)
    assert decay_time(rir, RATE, 30) == pytest.approx(rt60, rel=0.05)


@pytest.mark.parametrize("rt60", [0.2, 0.6, 1.0])
def test_room_decays_near_the_asked_rt60(rt60):
    """T20 within 40%, not tighter: the severity is the design RT60, and Sabine's formula (which
    sets the walls' absorption) is only approximate for a shoebox. Over 10-20 rooms per RT60 the
    realised T20 was 0.70-1.02x at 0.2 s and 1.01-1.34x at 0.8-1 s."""
    pytest.importorskip("pyroomacoustics")
    g = seeded(7)
    for _ in range(2):
        rir = room_impulse_response(rt60, g, sample_rate=RATE)
        assert decay_time(rir, RATE, 20) == pytest.approx(rt60, rel=0.4)


def test_a_longer_rt60_gives_a_longer_decay_in_the_same_room():
    """The same seed draws the same room and positions; only the absorption follows the RT60."""
    pytest.importorskip("pyroomacoustics")
    for seed in (0, 1):
        measured = [decay_time(room_impulse_response(rt60, seeded(seed)), RATE, 20) for rt60 in (0.2, 0.3, 0.45)]
        assert measured[0] < measured[1] < measured[2]


def test_reverb_keeps_length_rms_and_aligns_the_direct_sound():
    pytest.importorskip("pyroomacoustics")
    x = clips(batch=2)
    y = reverb(x, CHEAP_RT60, seeded(8))
    assert y.shape == x.shape
    assert torch.allclose(y.pow(2).mean(-1).sqrt(), x.pow(2).mean(-1).sqrt(), rtol=1e-4)
    impulse = torch.zeros(1, RATE)
    impulse[0, 3000] = 0.5
    echoed = reverb(impulse, CHEAP_RT60, seeded(9), rooms=None)  # a fresh room from the seeded draw
    assert int(echoed.abs().argmax()) == 3000 and echoed[0, :2900].abs().max() < 0.01 * echoed.abs().max()
    assert echoed[0, 3100:].abs().max() > 0    # and the room is heard after it


def test_reverb_rooms_come_from_one_shared_bank():
    pytest.importorskip("pyroomacoustics")
    from robustaudio.acoustics import room_bank

    x = clips(batch=6)
    assert torch.equal(reverb(x, CHEAP_RT60, seeded(3)), reverb(x, CHEAP_RT60, seeded(3)))
    bank = room_bank(CHEAP_RT60, RATE, 4)
    assert room_bank(CHEAP_RT60, RATE, 4) is bank and len(bank) == 4  # simulated once per process
    same = x[:1].repeat(2, 1)
    one_room = reverb(same, CHEAP_RT60, seeded(5), rooms=1)
    assert torch.equal(one_room[0], one_room[1])  # a bank of one: both clips in the same room
    fresh = reverb(same, CHEAP_RT60, seeded(5), rooms=None)
    assert not torch.equal(fresh[0], fresh[1])  # a fresh room per clip


def test_reverb_without_pyroomacoustics_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyroomacoustics", None)   # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'robustaudio\[rooms\]'"):
        reverb(clips(batch=1), 0.3, seeded())


# -- every registry entry ------------------------------------------------------------------------


def registry_cases():
    for name, corruption in CORRUPTIONS.items():
        for severity in corruption.severities:
            if name != "reverb" or severity <= CHEAP_RT60:
                yield pytest.param(name, severity, id=f"{name}-{severity:g}")


@pytest.mark.parametrize("name, severity", list(registry_cases()))
def test_every_corruption_is_deterministic_bounded_and_keeps_shape(name, severity):
    corruption = CORRUPTIONS[name]
    if name == "reverb":
        pytest.importorskip("pyroomacoustics")
    if corruption.domain == "feature":
        x = torch.randn(2, 64, 101, generator=seeded(10)) * 3
    else:
        x = clips(batch=2, level=0.3).clamp(-1, 1)     # loud, touching full scale: the clamp must hold
    before = x.clone()
    y = corruption(x, severity, seeded(11))
    assert torch.equal(x, before), "the input was modified"
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    if corruption.domain == "waveform":
        assert y.abs().max() <= 1.0
    assert not torch.equal(y, x)
    assert torch.equal(corruption(x, severity, seeded(11)), y)
    if name in ("gaussian_snr", "gaussian_feature", "background_noise", "reverb"):
        assert not torch.equal(corruption(x, severity, seeded(12)), y)


def test_registry_entries_are_described():
    for name, corruption in CORRUPTIONS.items():
        assert corruption.name == name and corruption.tag in ("[paper]", "[ours]")
        assert corruption.unit and corruption.description and len(corruption.severities) >= 3
        assert corruption.domain in ("waveform", "feature")


# -- errors --------------------------------------------------------------------------------------


def test_unknown_corruption_lists_the_valid_names():
    with pytest.raises(UnknownCorruption) as error:
        CORRUPTIONS["gausian_snr"]
    message = str(error.value)
    assert "'gausian_snr'" in message and all(name in message for name in CORRUPTIONS)
    assert isinstance(error.value, KeyError) and isinstance(error.value, ValueError)
    with pytest.raises(UnknownCorruption):
        get_corruption("echo")


@pytest.mark.parametrize("call, match", [
    (lambda x: background_noise(x, 10.0, seeded(), noise="thunder"), "rain"),
    (lambda x: occlusion_contiguous(x, 0.5, position="centre"), "middle"),
    (lambda x: occlusion_periodic(x, 0.1, fill="mean"), "zero"),
    (lambda x: occlusion_contiguous(x, 1.5), "outside"),
    (lambda x: gaussian_snr(x, math.nan, seeded()), "outside"),
    (lambda x: reverb(x, 0.05, seeded()), "outside"),
    (lambda x: gaussian_snr(x[0], 10.0, seeded()), "unsqueeze"),
])
def test_bad_arguments_say_what_to_use(call, match):
    with pytest.raises(CorruptionError, match=match):
        call(clips(batch=1))
