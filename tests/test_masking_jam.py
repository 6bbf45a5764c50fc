"""The masking jam: a loop learned against no detector, hiding the word in a front end's features."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from robustaudio.acoustics.augmentation import Augmentation, render_augmented, render_parts_augmented
from robustaudio.acoustics.scenes import EOTConfig, JamError, Utterances, render_parts, room_split, sample_transforms
from robustaudio.attacks.masking_jam import masking_jam, speech_visibility
from robustaudio.attacks.music import KarplusStrong
from robustaudio.models.frontends import MicroFrontend

pytest.importorskip("pyroomacoustics")

FAST = EOTConfig(music_db=-10.0, jitter_db=0.0, scene_seconds=1.0, rt60=(0.15, 0.2), noise_snr_db=(30.0, 35.0))


def vowels(count: int = 4, seconds: float = 0.5, rate: int = 16000) -> Utterances:
    """Harmonic "vowels" (f0 120-180 Hz, 12 harmonics) under a Hann envelope: speech-like energy in 0.1-2 kHz."""
    t = torch.arange(int(seconds * rate)) / rate
    waves = []
    for k in range(count):
        f0 = 120.0 + 20.0 * k
        wave = sum(torch.sin(2 * math.pi * f0 * h * t) / h for h in range(1, 13))
        waves.append(0.3 * wave * torch.hann_window(len(t)))
    return Utterances.from_waveforms([f"v{k}" for k in range(count)], waves, [1] * count, rate)


def scene_batch(config: EOTConfig, count: int = 4, seed: int = 0):
    rooms, _ = room_split(config, 2, 2, 0)
    transforms = sample_transforms(count, rooms, config, torch.Generator().manual_seed(seed), loop_samples=16000)
    return rooms, transforms


def test_visibility_is_one_without_music_and_falls_as_a_noise_masker_grows():
    """No music hides nothing (exactly 1); white noise hides more of the word the louder it plays."""
    frontend, speech = MicroFrontend(), vowels()
    rooms, transforms = scene_batch(FAST)
    silent = speech_visibility(frontend, render_parts(speech, None, transforms, rooms, FAST))
    assert torch.allclose(silent, torch.ones(len(speech)), atol=1e-5)
    noise = torch.randn(16000, generator=torch.Generator().manual_seed(1))
    means = []
    for level in (-30.0, -10.0, 10.0):
        shifted = replace(transforms, music_db=torch.full((len(speech),), level))
        means.append(float(speech_visibility(frontend, render_parts(speech, noise, shifted, rooms, FAST)).mean()))
    assert means[0] > means[1] > means[2]
    assert means[0] > 0.8 and means[2] < 0.3, means


def test_augmented_parts_are_the_augmented_scene_in_pieces():
    """Same generator state, same draws: the parts sum to render_augmented's scene where it is not clipped."""
    speech, music = vowels(), torch.randn(16000, generator=torch.Generator().manual_seed(2)) * 0.1
    rooms, transforms = scene_batch(FAST)
    augmentation = Augmentation()
    scene = render_augmented(speech, music, transforms, rooms, FAST, augmentation, torch.Generator().manual_seed(5))
    parts = render_parts_augmented(speech, music, transforms, rooms, FAST, augmentation,
                                   torch.Generator().manual_seed(5))
    summed = parts["speech"] + parts["music"] + parts["noise"]
    inside = scene.abs() < 0.99
    assert bool(inside.float().mean() > 0.99)
    assert torch.allclose(summed[inside], scene[inside], atol=1e-5)
    plain = render_parts_augmented(speech, music, transforms, rooms, FAST, None, torch.Generator())
    assert torch.equal(plain["speech"], render_parts(speech, music, transforms, rooms, FAST)["speech"])


def test_masking_jam_hides_more_of_the_word_than_its_starting_loop():
    """A short jam lowers the visibility on scenes it never drew (other transforms), reading no detector."""
    speech, frontend = vowels(), MicroFrontend()
    rooms, _ = room_split(FAST, 2, 2, 0)
    synth = KarplusStrong(1.0, 16000, seed=0)
    result = masking_jam(synth, speech, rooms, FAST, steps=25, batch_size=4, lr=0.1, seed=0, log_every=5)
    generator = torch.Generator().manual_seed(99)
    transforms = sample_transforms(16, rooms, FAST, generator, loop_samples=synth.length)
    picked = speech.subset(torch.arange(16) % len(speech))

    def visibility(loop: torch.Tensor) -> float:
        return float(speech_visibility(frontend, render_parts(picked, loop, transforms, rooms, FAST)).mean())

    assert visibility(result.music) < visibility(result.initial) - 0.02
    assert [h["step"] for h in result.history] == [1, 5, 10, 15, 20, 25]
    assert all(0 <= h["visibility_range"][0] <= h["visibility"] <= h["visibility_range"][1] for h in result.history)
    assert result.music.abs().max() <= 1.0 and result.rooms_seen <= set(range(len(rooms)))


def test_masking_jam_refuses_other_sample_rates_and_empty_sets():
    rooms, _ = room_split(FAST, 2, 2, 0)
    slow = replace(FAST, sample_rate=8000)
    with pytest.raises(JamError, match="16 kHz"):
        masking_jam(KarplusStrong(1.0, 8000, seed=0), vowels(rate=8000), room_split(slow, 2, 2, 0)[0], slow, steps=1)
    empty = vowels().subset(torch.zeros(4, dtype=torch.bool))
    with pytest.raises(JamError, match="no utterance"):
        masking_jam(KarplusStrong(1.0, 16000, seed=0), empty, rooms, FAST, steps=1)


@pytest.mark.parametrize("tail, reads", [(1.0, "mean"), (0.25, "top"), (1 / 8, "max")])
def test_tail_averages_the_scenes_where_the_word_shows_most(tail, reads, monkeypatch):
    """The loss is the mean visibility over the batch (tail 1), over its most visible quarter, or its maximum (one
    scene of eight); the logged visibility is the whole batch's in every case."""
    import robustaudio.attacks.masking_jam as module

    seen: list[torch.Tensor] = []

    def spy(frontend, parts):
        values = speech_visibility(frontend, parts)
        seen.append(values.detach())
        return values

    monkeypatch.setattr(module, "speech_visibility", spy)
    rooms, _ = room_split(FAST, 2, 2, 0)
    result = masking_jam(KarplusStrong(1.0, 16000, seed=0), vowels(), rooms, FAST, steps=1, batch_size=8, tail=tail)
    batch, entry = seen[0], result.history[0]
    expected = {"mean": batch.mean(), "top": batch.topk(2).values.mean(), "max": batch.max()}[reads]
    assert entry["loss"] == pytest.approx(float(expected), rel=1e-6)
    assert entry["visibility"] == pytest.approx(float(batch.mean()), rel=1e-6)
    assert float(batch.std()) > 0.01  # the batch's scenes differ, so the three readings differ


@pytest.mark.parametrize("tail", [0.0, -0.5, 1.5])
def test_tail_outside_zero_one_is_refused(tail):
    rooms, _ = room_split(FAST, 2, 2, 0)
    with pytest.raises(JamError, match="tail"):
        masking_jam(KarplusStrong(1.0, 16000, seed=0), vowels(), rooms, FAST, steps=1, tail=tail)
