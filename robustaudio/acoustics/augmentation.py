"""Talker and device augmentation of a jamming scene, drawn per utterance while learning only.

:class:`Augmentation` is the settings; :func:`augment_utterances` changes each dry utterance by its own draw
(speed, pitch, formants, EQ: the transforms of :mod:`.voice`), and :func:`device_bands` draws loudspeaker and
microphone band corners; :func:`render_augmented` renders scenes with all of it (the jam's scenes, and the
scenes a substitute search asks about). Evaluation scenes are never augmented: they are the rooms, placements and
noise of :mod:`.scenes` only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .scenes import EOTConfig, JamError, RoomSet, Transforms, Utterances, render, render_parts
from .voice import change_speed, device_filter, equalise, realised_speed, shift_pitch, warp_formants


@dataclass(frozen=True)
class Augmentation:
    """The talker and device part of the transform distribution, used when learning only.

    Per scene, the dry utterance is played ``speed`` times faster (uniform in the range), its pitch
    moved by ``pitch_semitones``, its formants warped by ``formant`` (:func:`warp_formants`), and
    ``eq_bands`` random bands (centres log-uniform in 150 Hz-6 kHz, gains uniform in ``±eq_db``,
    widths 0.3-1.5 octaves) applied; the music loop goes through a loudspeaker band (low corner
    log-uniform in ``loudspeaker_low_hz``, high in ``loudspeaker_high_hz``), and the whole scene
    through a microphone band (``microphone_low_hz``, ``microphone_high_hz``). Each of the four
    talker changes is applied with probability ``probability`` (else left out). A range ``(1, 1)``
    or ``eq_db = 0`` or ``None`` for a device turns that part off. ``device_probability``: the chance that
    each device band is applied to a scene (drawn per scene and device); below 1 a share of the scenes keeps
    full-band music and no microphone, as evaluation scenes have. At 1 it draws nothing, so the other draws
    stay as they were.
    """

    speed: tuple[float, float] = (0.85, 1.15)
    pitch_semitones: tuple[float, float] = (-3.0, 3.0)
    formant: tuple[float, float] = (0.88, 1.12)
    eq_db: float = 6.0
    eq_bands: int = 3
    microphone_low_hz: tuple[float, float] | None = (50.0, 300.0)
    microphone_high_hz: tuple[float, float] | None = (4000.0, 7900.0)
    loudspeaker_low_hz: tuple[float, float] | None = (80.0, 400.0)
    loudspeaker_high_hz: tuple[float, float] | None = (5000.0, 7900.0)
    probability: float = 0.8
    device_probability: float = 1.0

    def __post_init__(self) -> None:
        if not (0.5 <= self.speed[0] <= self.speed[1] <= 2):
            raise JamError(f"speed {self.speed} must be (low, high) within [0.5, 2].")
        if not (-12 <= self.pitch_semitones[0] <= self.pitch_semitones[1] <= 12):
            raise JamError(f"pitch_semitones {self.pitch_semitones} must be (low, high) within [-12, 12].")
        if not (0.5 <= self.formant[0] <= self.formant[1] <= 2):
            raise JamError(f"formant {self.formant} must be (low, high) within [0.5, 2].")
        if not (0 <= self.eq_db <= 24 and self.eq_bands >= 0 and 0 <= self.probability <= 1
                and 0 <= self.device_probability <= 1):
            raise JamError("eq_db must be in [0, 24], eq_bands >= 0, and probability and device_probability in "
                           "[0, 1].")

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _uniform(generator: torch.Generator, low: float, high: float, count: int = 1) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator, dtype=torch.float64)


def _log_uniform(generator: torch.Generator, low: float, high: float, count: int = 1) -> torch.Tensor:
    return torch.exp(_uniform(generator, math.log(low), math.log(high), count))


def augment_utterances(speech: Utterances, augmentation: Augmentation, generator: torch.Generator,
                       sample_rate: int = 16000) -> tuple[Utterances, list[dict]]:
    """Each utterance changed by its own draw of :class:`Augmentation`'s talker part; returns the
    new utterances (lengths change with the speed) and the draws (one dict per utterance)."""
    a = augmentation
    waves, draws = [], []
    for b in range(len(speech)):
        wave = speech.audio[b, :int(speech.lengths[b])]
        use = (torch.rand(4, generator=generator) < a.probability).tolist()
        speed = realised_speed(float(_uniform(generator, *a.speed))) if use[0] else 1.0
        pitch = float(_uniform(generator, *a.pitch_semitones)) if use[1] else 0.0
        formant = float(_uniform(generator, *a.formant)) if use[2] else 1.0
        bands = a.eq_bands if use[3] and a.eq_db > 0 else 0
        centres = _log_uniform(generator, 150.0, 6000.0, bands)
        gains = _uniform(generator, -a.eq_db, a.eq_db, bands)
        widths = _uniform(generator, 0.3, 1.5, bands)
        peak = wave.abs().max()
        if formant != 1:
            wave = warp_formants(wave, formant, sample_rate)
        if pitch != 0:
            wave = shift_pitch(wave, 2 ** (pitch / 12))
        if speed != 1:
            wave = change_speed(wave, speed)
        if bands:
            wave = equalise(wave, centres, gains, widths, sample_rate)
        wave = wave * (peak / wave.abs().max().clamp_min(1e-8))
        waves.append(wave)
        draws.append({"speed": speed, "pitch_semitones": pitch, "formant": formant, "eq_bands": bands})
    audio = torch.nn.utils.rnn.pad_sequence([w.float() for w in waves], batch_first=True)
    return Utterances(speech.ids, audio, torch.tensor([len(w) for w in waves]), speech.labels), draws


def device_bands(count: int, low: tuple[float, float] | None, high: tuple[float, float] | None,
                 generator: torch.Generator, sample_rate: int = 16000) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``count`` (low, high) corner frequencies drawn log-uniformly, or ``None`` if the device is off."""
    if low is None or high is None:
        return None
    high = (min(high[0], 0.495 * sample_rate), min(high[1], 0.495 * sample_rate))
    return _log_uniform(generator, *low, count).float(), _log_uniform(generator, *high, count).float()


def _rows_to_change(count: int, probability: float, generator: torch.Generator) -> torch.Tensor | None:
    """Which of ``count`` rows a device band goes on, each with ``probability`` (``[B]`` bool), or ``None`` at 1:
    every row, and nothing drawn."""
    return None if probability >= 1 else torch.rand(count, generator=generator) < probability


def _pick(use: torch.Tensor | None, plain: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
    """Rows ``[B, T]`` of ``changed`` where ``use`` (every row where it is ``None``), else of ``plain``."""
    return changed if use is None else torch.where(use[:, None], changed, plain)


def _some(plain: torch.Tensor, changed: torch.Tensor, probability: float,
          generator: torch.Generator) -> torch.Tensor:
    """Rows ``[B, T]`` of ``changed``, each kept with ``probability`` (else that row of ``plain``); at 1 draws
    nothing."""
    return _pick(_rows_to_change(len(changed), probability, generator), plain, changed)


def _talker_and_loudspeaker(speech: Utterances, music: torch.Tensor, augmentation: Augmentation,
                            generator: torch.Generator, sample_rate: int) -> tuple[Utterances, torch.Tensor]:
    """The utterances after their talker draws and the loop ``[Tm]`` (``[B, Tm]`` once banded) after its
    loudspeaker bands: the draws :func:`render_augmented` and :func:`render_parts_augmented` make first."""
    count = len(speech)
    speech, _ = augment_utterances(speech, augmentation, generator, sample_rate)
    speaker = device_bands(count, augmentation.loudspeaker_low_hz, augmentation.loudspeaker_high_hz, generator,
                           sample_rate)
    if speaker is not None:
        music = music.expand(count, -1)
        music = _some(music, device_filter(music, *speaker, sample_rate, circular=True),
                      augmentation.device_probability, generator)
    return speech, music


def render_augmented(speech: Utterances, music: torch.Tensor, transforms: Transforms, rooms: RoomSet,
                     config: EOTConfig, augmentation: Augmentation | None,
                     generator: torch.Generator) -> torch.Tensor:
    """Scenes ``[B, T]`` as :func:`~robustaudio.acoustics.scenes.render` makes them, with ``augmentation``'s
    draws from ``generator`` where it is given: each utterance changed by its own talker draw
    (:func:`augment_utterances`), the loop ``[Tm]`` or ``[B, Tm]`` played
    through a random loudspeaker band (wrapping around, as it loops) and the scene recorded through a random
    microphone band, each band applied with ``augmentation.device_probability`` (drawn per scene). ``None``
    renders the scenes as they are and draws nothing. Gradients flow to ``music``."""
    if augmentation is None:
        return render(speech, music, transforms, rooms, config)
    count = len(speech)
    speech, music = _talker_and_loudspeaker(speech, music, augmentation, generator, config.sample_rate)
    scenes = render(speech, music, transforms, rooms, config)
    microphone = device_bands(count, augmentation.microphone_low_hz, augmentation.microphone_high_hz, generator,
                              config.sample_rate)
    if microphone is not None:
        scenes = _some(scenes, device_filter(scenes, *microphone, config.sample_rate).clamp(-1.0, 1.0),
                       augmentation.device_probability, generator)
    return scenes


def render_parts_augmented(speech: Utterances, music: torch.Tensor, transforms: Transforms, rooms: RoomSet,
                           config: EOTConfig, augmentation: Augmentation | None,
                           generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The parts of :func:`~robustaudio.acoustics.scenes.render_parts` (``speech``, ``music``, ``noise``,
    ``span``, ``[B, T]`` each) with the draws of :func:`render_augmented` in the same order: the same
    ``generator`` state gives the same talkers and bands, and the parts sum to its scene wherever that scene is
    not clipped (the microphone band, a linear filter, is applied to each part). Gradients flow to ``music``."""
    if augmentation is None:
        return render_parts(speech, music, transforms, rooms, config)
    count = len(speech)
    speech, music = _talker_and_loudspeaker(speech, music, augmentation, generator, config.sample_rate)
    parts = render_parts(speech, music, transforms, rooms, config)
    microphone = device_bands(count, augmentation.microphone_low_hz, augmentation.microphone_high_hz, generator,
                              config.sample_rate)
    if microphone is not None:  # one draw of rows for the three parts: they stay one scene
        use = _rows_to_change(count, augmentation.device_probability, generator)
        for key in ("speech", "music", "noise"):
            parts[key] = _pick(use, parts[key], device_filter(parts[key], *microphone, config.sample_rate))
    return parts


__all__ = ["Augmentation", "augment_utterances", "device_bands", "render_augmented", "render_parts_augmented"]
