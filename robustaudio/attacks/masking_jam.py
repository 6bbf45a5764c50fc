"""Masking jam: a music loop learned against no detector, to hide the word in a front end's features.

Every other jam learns against some network's decision (a white box, surrogates, or a box's answers), and the
music finds what fools that network. This one reads no network at all: it minimises the word's
:func:`speech_visibility` in a public feature front end, by default the TFLite-Micro one that microcontroller
keyword spotters compute (:class:`~robustaudio.models.frontends.MicroFrontend`: filterbank, noise reduction,
PCAN gain control, log), so it needs no gradients and no queries from the detector it is played to. It rewards
energetic masking of the word where the features are, for whatever network reads them; measured in
``experiments/jam_surrogates.md``: microWakeWord alexa's F1 0.28-0.30 below random music at the same level on
held-out flite and Festival voices, 0.15-0.26 below on accented voices no choice had seen and 0.20-0.24 below on
141 eSpeak NG language voices (not under 0.50 on either blind set); learning from more TTS engines, at the
level the loop is played at, with twice the scenes per step or on a denser rhythm grid did not change that
measurably; openWakeWord, on another front end, barely moved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from ..acoustics.augmentation import Augmentation, render_parts_augmented
from ..acoustics.scenes import EOTConfig, JamError, RoomSet, Transforms, Utterances, render_parts, sample_transforms
from .jamming import JamResult, optimise_loop
from .music import KarplusStrong

HOP_SAMPLES = 160      # MicroFrontend: one frame every 10 ms at 16 kHz ...
WINDOW_SAMPLES = 480   # ... each over a 30 ms window


class FeatureFrontend(Protocol):
    """A feature front end: ``raw(audio [B, T] in [-1, 1]) -> [B, C, frames]`` (10 ms hop, 30 ms window)."""

    def raw(self, audio: torch.Tensor) -> torch.Tensor: ...


def speech_visibility(frontend: FeatureFrontend, parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """How much of the utterance still shows in ``frontend``'s features with the music playing, per scene ``[B]``.

    ``sum (F(s + m + n) - F(m + n))^2 / sum (F(s + n) - F(n))^2`` over the channels of the frames whose centre
    falls in the utterance, with ``F = frontend.raw`` (``[B, T]`` in [-1, 1] -> ``[B, C, frames]``, 10 ms hop,
    30 ms window: :class:`~robustaudio.models.frontends.MicroFrontend`'s) and ``s, m, n`` the speech, music and
    noise parts of a scene (:func:`~robustaudio.acoustics.scenes.render_parts`, ``[B, T]`` each, with the 0/1
    ``span`` of the utterance). 1: the music hides nothing of the word (no music gives exactly 1); 0: the word's
    features are those of the music and noise alone. The denominator is a constant (no gradient).
    """
    speech, music, noise, span = parts["speech"], parts["music"], parts["noise"], parts["span"]

    def features(audio: torch.Tensor) -> torch.Tensor:
        return frontend.raw(audio.clamp(-1.0, 1.0))

    heard, masker = features(speech + music + noise), features(music + noise)
    centres = (HOP_SAMPLES * torch.arange(heard.shape[-1]) + WINDOW_SAMPLES // 2).clamp(max=span.shape[1] - 1)
    weight = span[:, centres].unsqueeze(1)  # [B, 1, frames]: the frames of the word
    with torch.no_grad():
        alone = ((features(speech + noise) - features(noise)) ** 2 * weight).sum(dim=(1, 2)).clamp_min(1e-6)
    return ((heard - masker) ** 2 * weight).sum(dim=(1, 2)) / alone


def _frontend_for(frontend: FeatureFrontend | None, sample_rate: int) -> FeatureFrontend:
    """``frontend``, or microWakeWord's :class:`~robustaudio.models.frontends.MicroFrontend` where it is None
    (16 kHz scenes only: refused otherwise)."""
    if frontend is not None:
        return frontend
    if sample_rate != 16000:
        raise JamError(f"The masking jam's front end is microWakeWord's, at 16 kHz; these scenes are at "
                       f"{sample_rate} Hz: use --objective detector for this model (or, from Python, give "
                       f"masking_jam a front end at that rate).")
    from ..models.frontends import MicroFrontend
    return MicroFrontend()


def mean_visibility(music: torch.Tensor, utterances: Utterances, rooms: RoomSet, config: EOTConfig, *,
                    draws: int = 2, seed: int = 0, batch_size: int = 32,
                    frontend: FeatureFrontend | None = None) -> float:
    """The mean :func:`speech_visibility` of every utterance under the loop ``music`` ``[Tm]``, over ``draws``
    scenes each in ``rooms`` (transforms from a generator seeded ``seed``, no augmentation, no gradient): how much
    of the word a loop leaves to be seen, read without any detector. A weak way to pick among masking loops: the
    one that read lowest on held-out rooms was the best of its kind against microWakeWord in seven of ten readings
    and the worse of two in the other three (``experiments/jam_surrogates.md``); it ranks loops of one
    kind, not kinds of masker (white noise reads lower than the loops and hides nothing from microWakeWord)."""
    model = _frontend_for(frontend, config.sample_rate)
    generator, values = torch.Generator().manual_seed(seed), []
    with torch.no_grad():
        for _ in range(draws):
            for start in range(0, len(utterances), batch_size):
                batch = utterances.subset(torch.arange(start, min(start + batch_size, len(utterances))))
                transforms = sample_transforms(len(batch), rooms, config, generator, loop_samples=music.shape[-1])
                values.append(speech_visibility(model, render_parts(batch, music, transforms, rooms, config)))
    return float(torch.cat(values).mean())


def masking_jam(synth: KarplusStrong, utterances: Utterances, rooms: RoomSet, config: EOTConfig, *,
                steps: int = 2000, batch_size: int = 16, lr: float = 0.05, seed: int = 0, tail: float = 1.0,
                frontend: FeatureFrontend | None = None, augmentation: Augmentation | None = None,
                log_every: int = 10, callback: Callable[[dict], None] | None = None) -> JamResult:
    """Optimise ``synth``'s parameters in place to minimise the mean :func:`speech_visibility` of the word over the
    ``tail`` share of each batch where it shows most (1: every scene; 0.5: the worse half, so that scenes the music
    already hides stop pulling the loop their way).

    Scenes are drawn as :func:`~robustaudio.attacks.jamming.jam` draws them (``batch_size`` utterances with
    replacement, transforms from the optimisation ``rooms``, the music level jittered by ``config.jitter_db``,
    Adam at ``lr`` annealed to ``lr / 10`` on a cosine), with ``augmentation``'s talker and device draws
    (:func:`~robustaudio.acoustics.augmentation.render_parts_augmented`, from a generator seeded ``seed + 1``).
    The synthesiser normalises its loop and the scene sets its level, so the loudness constraint holds at every
    step. No detector is read: the loop never depends on the model it will be played to.

    Args:
        tail: the share of the batch, in (0, 1], whose visibility is averaged (at least one scene). Measured
            against: 0.5 left microWakeWord 0.11-0.21 F1 *higher* than 1 on every voice set
            (``experiments/jam_surrogates.md``); the loop spends itself on scenes it cannot hide at that level.
        frontend: a module with ``raw(audio [B, T]) -> [B, C, frames]`` at the scenes' rate (10 ms hop, 30 ms
            window); default: :class:`~robustaudio.models.frontends.MicroFrontend` (16 kHz only).
    Returns: a :class:`~robustaudio.attacks.jamming.JamResult`; each history entry has the batch's mean
    ``visibility`` (also as ``loss``) and its range.
    """
    model = _frontend_for(frontend, config.sample_rate)
    if not 0.0 < tail <= 1.0:
        raise JamError(f"tail is the share of each batch the loss averages, in (0, 1]; got {tail}.")
    if synth.sample_rate != config.sample_rate:
        raise JamError(f"The synthesiser ({synth.sample_rate} Hz) and the scenes ({config.sample_rate} Hz) must "
                       f"share one sample rate.")

    def batch_loss(speech: Utterances, music: torch.Tensor, transforms: Transforms,
                   augmenter: torch.Generator) -> tuple[torch.Tensor, dict]:
        parts = render_parts_augmented(speech, music, transforms, rooms, config, augmentation, augmenter)
        visibility = speech_visibility(model, parts)
        seen = visibility.detach()
        worst = visibility if tail == 1.0 else visibility.topk(max(1, round(tail * len(visibility)))).values
        return worst.mean(), {"visibility": float(seen.mean()),
                                   "visibility_range": [float(seen.min()), float(seen.max())]}

    return optimise_loop(synth, utterances, rooms, config, batch_loss, steps=steps, batch_size=batch_size, lr=lr,
                         seed=seed, log_every=log_every, callback=callback)


__all__ = ["FeatureFrontend", "masking_jam", "mean_visibility", "speech_visibility"]
