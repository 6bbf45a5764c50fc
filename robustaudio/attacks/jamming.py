"""Jamming a detector with music: the objective, the optimisation over transforms, and the evaluation.

The attack (thesis ch. 8, "adversarial music"; our protocol in ``robustness_methods.md`` §2) looks
for one music loop that, played in the background at a fixed level relative to the speech, stops a
detector from firing on its target word, in rooms it was never optimised in.

- :class:`Detector`: a classifier seen as a detector of one target class, with differentiable
  per-window margins (``> 0`` = fires). For openWakeWord models the windows are the 80 ms streaming
  scores (the margin is the head's pre-sigmoid logit); any other classifier has one window and the
  margin of the target logit over the best other (single-label) or over the decision threshold
  (multi-label).
- :func:`jam_loss`: ``softplus(logsumexp_w margin_w + confidence)``, averaged over scenes: the
  thesis minimises E[log P(wake)]; ``softplus(z) = −log(1 − P(wake))`` (for one window) is the same
  goal without its unbounded tail, so scenes that no longer fire stop pulling on the music, and the
  log-sum-exp over windows is a smooth maximum that reaches every window that could fire.
- :func:`jam`: Adam on the synthesiser's parameters, each step on a fresh batch of
  utterances × transforms from the optimisation rooms only.

Evaluating a loop (scenes scored clean, with random and with adversarial music; over scene seeds with
voice-clustered intervals) lives in :mod:`robustaudio.metrics.jamming`, the whole protocol (learn, then
evaluate) in :mod:`robustaudio.runner.jam`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.nn import functional as F

from ..acoustics.augmentation import Augmentation, render_augmented
from ..acoustics.scenes import EOTConfig, JamError, RoomSet, Transforms, Utterances, sample_transforms
from ..data import AudioDataset
from ..data.audio import AudioError, load_audio
from ..data.speech import SpeechClip, SpeechSplitError
from ..models.base import Classifier, frozen
from .music import KarplusStrong


class ScoringDetector(Protocol):
    """Anything that scores scenes ``[B, T]`` -> ``[B]`` and fires at ``score >= threshold``."""

    threshold: float

    def scores(self, audio: torch.Tensor) -> torch.Tensor: ...


class Detector:
    """``model`` as a detector of the class ``target``; scores are in [0, 1], firing at 0.5.

    ``margins(audio)`` ``[B, W]`` (differentiable): openWakeWord models give one margin per scored
    80 ms window, the head's pre-sigmoid logit (the hey_jarvis verifier included); black-box streaming
    detectors with ``step_logits`` (microWakeWord) one per 30 ms step, without gradients; other classifiers
    give ``W = 1``: ``logit_target − max_other logit`` (single-label: fires iff the target is the
    top class) or ``logit_target − logit(threshold)`` (multi-label). ``scores(audio)`` ``[B]`` is
    ``sigmoid(max_w margin)``: for openWakeWord exactly its wake-word score.
    """

    model: Any  # the wrapped classifier

    threshold = 0.5

    def __init__(self, model: Classifier, target: str):
        if target not in model.labels:
            shown = ", ".join(model.labels[:20]) + (" ..." if len(model.labels) > 20 else "")
            raise JamError(f"The model has no class {target!r} to jam; its classes are: {shown}. "
                           f"Pass --target with one of them.")
        self.model = model
        self.target = target
        self.index = model.labels.index(target)
        self.windowed = hasattr(model, "window_logits")
        self.stepped = hasattr(model, "step_logits")

    @property
    def sample_rate(self) -> int:
        return int(self.model.sample_rate)

    def margins(self, audio: torch.Tensor) -> torch.Tensor:
        model = self.model
        if self.windowed:
            logits = model.window_logits(model.embeddings(model.features(audio)))   # [B, W, K]
        elif self.stepped:
            logits = model.step_logits(audio)                                         # [B, S, K], no gradient
        else:
            logits = model(audio).unsqueeze(1)                                        # [B, 1, K]
        target = logits[..., self.index]
        if model.multilabel:
            threshold = torch.tensor(float(model.threshold))
            return target - torch.log(threshold / (1 - threshold))
        others = torch.cat([logits[..., :self.index], logits[..., self.index + 1:]], dim=-1)
        return target - others.amax(dim=-1)

    @torch.no_grad()
    def scores(self, audio: torch.Tensor) -> torch.Tensor:
        return self.step_scores(audio).amax(dim=1)

    @torch.no_grad()
    def step_scores(self, audio: torch.Tensor) -> torch.Tensor:
        """``sigmoid(margins)`` ``[B, W]``: the score of every window or step (``W = 1`` for whole-clip models)."""
        with frozen(self.model):
            return torch.sigmoid(self.margins(audio))


def jam_loss(margins: torch.Tensor, confidence: float = 0.0) -> torch.Tensor:
    """``mean_b softplus(logsumexp_w margins[b, w] + confidence)`` for margins ``[B, W]`` (scalar)."""
    return F.softplus(torch.logsumexp(margins, dim=1) + confidence).mean()


# ---------------------------------------------------------------------------------------------
# Utterances from a dataset
# ---------------------------------------------------------------------------------------------


def load_utterances(root: str | Path | None, target: str, sample_rate: int, split: str | None = None
                    ) -> tuple[Utterances, list[str]]:
    """Clips of a dataset (``AudioDataset`` layouts) as utterances: label 1 where the clip's label is
    ``target``, 0 otherwise. Unusable clips are skipped; returns the utterances and one note per skip."""
    dataset = AudioDataset.from_path(root, split)
    ids, waves, labels, notes = [], [], [], []
    for clip in dataset.clips:
        try:
            audio, _ = load_audio(clip.path, sample_rate)
            ids.append(clip.id)
            waves.append(audio)
            labels.append(int(target in clip.labels))
        except (AudioError, JamError) as error:
            notes.append(f"skipped {clip.id}: {error}")
    if not any(labels):
        raise JamError(f"No clip labelled {target!r} under {dataset.root}{f' in split {split!r}' if split else ''}: "
                       f"the jammer needs utterances of the target word (a folder or metadata label named "
                       f"{target!r}).")
    return Utterances.from_waveforms(ids, waves, labels, sample_rate), notes


# ---------------------------------------------------------------------------------------------
# Optimisation
# ---------------------------------------------------------------------------------------------


@dataclass
class JamResult:
    """``music`` and ``initial`` ``[Tm]``: the loop after and before optimisation; ``history``: one
    dict per logged step (loss, fraction of the batch still firing); ``rooms_seen``: indices of the
    optimisation rooms drawn; ``seconds``: wall time."""

    music: torch.Tensor
    initial: torch.Tensor
    history: list[dict] = field(default_factory=list)
    rooms_seen: set[int] = field(default_factory=set)
    seconds: float = 0.0


def check_utterances(utterances: Utterances) -> None:
    """Raise :class:`JamError` when there is no utterance to put in the scenes (each scene is the word spoken)."""
    if len(utterances) == 0:
        raise JamError("There is no utterance of the target word to jam: give at least one recording of it (or "
                       "voices that say it).")


def jam(synth: KarplusStrong, detector: Detector, utterances: Utterances, rooms: RoomSet, config: EOTConfig, *,
        steps: int = 300, batch_size: int = 16, lr: float = 0.01, confidence: float = 0.0, seed: int = 0,
        log_every: int = 10, callback: Callable[[dict], None] | None = None,
        augmentation: Augmentation | None = None) -> JamResult:
    """Optimise ``synth``'s parameters in place so that ``detector`` stops firing on ``utterances``.

    Each step draws ``batch_size`` utterances (uniformly, with replacement) and transforms from
    ``rooms`` (:func:`~.eot.sample_transforms`, music level jittered by ``config.jitter_db``),
    renders the scenes with the current loop and takes one Adam step on :func:`jam_loss` (learning
    rate ``lr`` annealed to ``lr / 10`` on a cosine over the steps). The
    synthesiser normalises its loop and the scene sets its level, so the loudness constraint holds
    at every step whatever the parameters.

    Args:
        synth: the synthesiser (its ``sample_rate`` must be the detector's).
        detector: the detector to silence.
        utterances: the target word's utterances (labels are ignored: every scene is a positive).
        rooms: the optimisation rooms (the only rooms this function sees).
        config: the transform distribution.
        steps, batch_size, lr: Adam steps, scenes per step, learning rate.
        confidence: margin pushed below the threshold (logit units).
        seed: seeds the draws.
        log_every: a history entry every this many steps (and the last).
        callback: called with each history entry.
        augmentation: if given, each scene's utterance is changed by its own talker draw
            (:func:`~.eot.augment_utterances`: speed, pitch, formants, EQ), the loop goes through a
            random loudspeaker band and the scene through a random microphone band; drawn from a
            generator of its own (``seed`` + 1), so ``None`` leaves the other draws as they were.
    """
    if synth.sample_rate != detector.sample_rate or config.sample_rate != detector.sample_rate:
        raise JamError(f"The synthesiser ({synth.sample_rate} Hz), transforms ({config.sample_rate} Hz) and "
                       f"detector ({detector.sample_rate} Hz) must share one sample rate.")

    def batch_loss(speech: Utterances, music: torch.Tensor, transforms: Transforms,
                   augmenter: torch.Generator) -> tuple[torch.Tensor, dict]:
        scenes = render_augmented(speech, music, transforms, rooms, config, augmentation, augmenter)
        margins = detector.margins(scenes)
        return jam_loss(margins, confidence), {"firing": float((margins.detach().amax(dim=1) > 0).float().mean())}

    with frozen(detector.model):
        return optimise_loop(synth, utterances, rooms, config, batch_loss, steps=steps, batch_size=batch_size, lr=lr,
                             seed=seed, log_every=log_every, callback=callback)


def optimise_loop(synth: KarplusStrong, utterances: Utterances, rooms: RoomSet, config: EOTConfig,
                  batch_loss: Callable[[Utterances, torch.Tensor, Transforms, torch.Generator],
                                       tuple[torch.Tensor, dict]], *,
                  steps: int, batch_size: int, lr: float, seed: int, log_every: int = 10,
                  callback: Callable[[dict], None] | None = None) -> JamResult:
    """The expectation-over-transforms loop every gradient jam shares: Adam on ``synth``'s parameters (``lr``
    annealed to ``lr / 10`` on a cosine over ``steps``), each step on ``batch_size`` utterances drawn uniformly with
    replacement and transforms from ``rooms`` (:func:`~robustaudio.acoustics.scenes.sample_transforms`, from a
    generator seeded ``seed``). ``batch_loss(speech, loop [Tm], transforms, augmenter)`` renders the batch and returns
    ``(loss, fields)``; ``augmenter`` (seeded ``seed + 1``) is for any augmentation draws, so that without them the
    other draws stay as they are. A history entry every ``log_every`` steps (and the first and last): step, loss,
    ``fields``, seconds."""
    if steps < 1 or batch_size < 1:
        raise JamError(f"steps and batch_size must be >= 1; got {steps} and {batch_size}.")
    check_utterances(utterances)
    generator = torch.Generator().manual_seed(seed)
    augmenter = torch.Generator().manual_seed(seed + 1)
    started = time.perf_counter()
    with torch.no_grad():
        initial = synth().detach().clone()
    optimiser = torch.optim.Adam(synth.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps, eta_min=lr / 10)
    result = JamResult(music=initial, initial=initial)
    for step in range(1, steps + 1):
        pick = torch.randint(len(utterances), (batch_size,), generator=generator)
        transforms = sample_transforms(batch_size, rooms, config, generator, loop_samples=synth.length)
        result.rooms_seen.update(transforms.room.tolist())
        loss, fields = batch_loss(utterances.subset(pick), synth(), transforms, augmenter)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % log_every == 0 or step == steps or step == 1:
            entry = {"step": step, "loss": float(loss.detach()), **fields, "seconds": time.perf_counter() - started}
            result.history.append(entry)
            if callback is not None:
                callback(entry)
    with torch.no_grad():
        result.music = synth().detach().clone()
    result.seconds = time.perf_counter() - started
    return result


def load_speech(clips: Iterable[SpeechClip], target: str, sample_rate: int
                ) -> tuple[Utterances, dict[str, str], dict[str, str], list[str]]:
    """The clips as :class:`~robustaudio.acoustics.scenes.Utterances` (label 1 where the clip's label is
    ``target``) with ``{clip id: voice}`` and ``{clip id: engine}``; unreadable clips are skipped
    with a note. Returns ``(utterances, voices, engines, notes)``."""
    ids, waves, labels, notes = [], [], [], []
    voices, engines = {}, {}
    for clip in clips:
        try:
            audio, _ = load_audio(clip.path, sample_rate)
            wave = torch.as_tensor(audio).float().reshape(-1)
            Utterances.from_waveforms([clip.id], [wave], [0], sample_rate)  # raises on silence
        except (AudioError, JamError) as error:
            notes.append(f"skipped {clip.id}: {error}")
            continue
        ids.append(clip.id)
        waves.append(wave)
        labels.append(int(clip.label == target))
        voices[clip.id], engines[clip.id] = clip.voice, clip.engine
    if not ids:
        raise SpeechSplitError("No readable clip to load.")
    return Utterances.from_waveforms(ids, waves, labels, sample_rate), voices, engines, notes


__all__ = ["Detector", "JamResult", "ScoringDetector", "check_utterances", "jam", "jam_loss", "load_speech",
           "load_utterances", "optimise_loop"]
