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
- :func:`evaluate`: scenes drawn once per room set and utterance (seeded), rendered with each music
  condition (paired: the same rooms, offsets, noise for clean, random and adversarial music) and
  scored by every detector given (a mapping, so a black-box transfer target is one more entry);
  one row per detector × condition × scene. :func:`summarize` turns rows into TPR / FPR / F1 with
  95% bootstrap intervals per detector × room set × condition.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.nn import functional as F

from ..data import AudioDataset
from ..data.audio import AudioError, load_audio
from ..data.speech import SpeechClip, SpeechSplitError
from ..models.base import Classifier, frozen
from ..stats import mean_with_ci
from .eot import (
    Augmentation,
    EOTConfig,
    JamError,
    RoomSet,
    Utterances,
    augment_utterances,
    device_bands,
    device_filter,
    make_rooms,
    music_part,
    render,
    room_split,
    sample_transforms,
    speech_parts,
)
from .music import KarplusStrong

CONDITIONS = ("clean", "random", "adversarial")


class ScoringDetector(Protocol):
    """Anything that scores scenes ``[B, T]`` -> ``[B]`` and fires at ``score >= threshold``."""

    threshold: float

    def scores(self, audio: torch.Tensor) -> torch.Tensor: ...


class Detector:
    """``model`` as a detector of the class ``target``; scores are in [0, 1], firing at 0.5.

    ``margins(audio)`` ``[B, W]`` (differentiable): openWakeWord models give one margin per scored
    80 ms window, the head's pre-sigmoid logit (the hey_jarvis verifier included); other classifiers
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

    @property
    def sample_rate(self) -> int:
        return int(self.model.sample_rate)

    def margins(self, audio: torch.Tensor) -> torch.Tensor:
        model = self.model
        if self.windowed:
            logits = model.window_logits(model.embeddings(model.features(audio)))   # [B, W, K]
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
        with frozen(self.model):
            return torch.sigmoid(self.margins(audio).amax(dim=1))


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
    if steps < 1 or batch_size < 1:
        raise JamError(f"steps and batch_size must be >= 1; got {steps} and {batch_size}.")
    generator = torch.Generator().manual_seed(seed)
    augmenter = torch.Generator().manual_seed(seed + 1)
    started = time.perf_counter()
    with torch.no_grad():
        initial = synth().detach().clone()
    optimiser = torch.optim.Adam(synth.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps, eta_min=lr / 10)
    result = JamResult(music=initial, initial=initial)
    with frozen(detector.model):
        for step in range(1, steps + 1):
            pick = torch.randint(len(utterances), (batch_size,), generator=generator)
            transforms = sample_transforms(batch_size, rooms, config, generator, loop_samples=synth.length)
            result.rooms_seen.update(transforms.room.tolist())
            speech, music = utterances.subset(pick), synth()
            if augmentation is not None:
                speech, _ = augment_utterances(speech, augmentation, augmenter, config.sample_rate)
                speaker = device_bands(batch_size, augmentation.loudspeaker_low_hz, augmentation.loudspeaker_high_hz,
                                       augmenter, config.sample_rate)
                if speaker is not None:  # a loop: the filter wraps around it
                    music = device_filter(music.expand(batch_size, -1), *speaker, config.sample_rate, circular=True)
            scenes = render(speech, music, transforms, rooms, config)
            if augmentation is not None:
                microphone = device_bands(batch_size, augmentation.microphone_low_hz,
                                          augmentation.microphone_high_hz, augmenter, config.sample_rate)
                if microphone is not None:
                    scenes = device_filter(scenes, *microphone, config.sample_rate).clamp(-1.0, 1.0)
            margins = detector.margins(scenes)
            loss = jam_loss(margins, confidence)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            if step % log_every == 0 or step == steps or step == 1:
                entry = {"step": step, "loss": float(loss.detach()),
                         "firing": float((margins.detach().amax(dim=1) > 0).float().mean()),
                         "seconds": time.perf_counter() - started}
                result.history.append(entry)
                if callback is not None:
                    callback(entry)
    with torch.no_grad():
        result.music = synth().detach().clone()
    result.seconds = time.perf_counter() - started
    return result


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def clean_correct(detector: ScoringDetector, utterances: Utterances, config: EOTConfig,
                  batch_size: int = 32) -> torch.Tensor:
    """Bool ``[N]``: the clips the detector gets right dry (no room, music or noise; the utterance
    ending in the middle of ``config.speech_end``): positives it fires on, negatives it does not.
    Attacks are evaluated on the clips the detector handles when clean."""
    length = config.scene_samples
    end = int(round(sum(config.speech_end) / 2 * length))
    fired = []
    for start in range(0, len(utterances), batch_size):
        chunk = utterances.subset(torch.arange(start, min(start + batch_size, len(utterances))))
        scenes = torch.zeros(len(chunk), length)
        for b in range(len(chunk)):
            size = min(int(chunk.lengths[b]), end)
            scenes[b, end - size:end] = chunk.audio[b, int(chunk.lengths[b]) - size:int(chunk.lengths[b])]
        fired.append(detector.scores(scenes) >= detector.threshold)
    return torch.cat(fired) == (utterances.labels == 1)


@torch.no_grad()
def evaluate(detectors: Mapping[str, ScoringDetector], utterances: Utterances, room_sets: Mapping[str, RoomSet],
             config: EOTConfig, musics: Mapping[str, torch.Tensor | None], *, draws: int = 4, seed: int = 0,
             batch_size: int = 32, progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Score every utterance × ``draws`` transforms per room set under each music condition.

    Args:
        detectors: name -> detector (``scores`` and ``threshold``); each scores the same audio.
        utterances: positives (label 1) and negatives (label 0).
        room_sets: name (e.g. ``"optimisation"``, ``"held-out"``) -> rooms.
        config: the transform distribution; evaluation plays music at exactly ``config.music_db``.
        musics: condition -> loop ``[Tm]``, several loops ``[P, Tm]`` (scene ``k`` of a clip plays
            loop ``k mod P``), or ``None`` for no music. All loops share one length.
        draws: transforms per utterance and room set.
        seed: the scenes of room set ``r`` come from ``seed`` and ``r``'s name only, so every
            condition and detector sees the same scenes.
        progress: ``progress(scenes_done, scenes_total)`` after each batch of scenes.
    Returns: one dict per detector × room set × condition × scene, with the keys ``detector``,
        ``rooms``, ``condition``, ``clip_id``, ``label``, ``draw``, ``score``, ``fired`` and the
        transform's draws (``room``, ``music_db``, ...).
    """
    config = config.fixed_level()
    lengths = {m.shape[-1] for m in musics.values() if m is not None}
    if len(lengths) > 1:
        raise JamError(f"The music conditions have loops of different lengths ({sorted(lengths)} samples).")
    loop = lengths.pop() if lengths else config.scene_samples
    rows: list[dict] = []
    total, done = len(room_sets) * len(musics) * len(utterances) * draws, 0
    for rooms_name, rooms in room_sets.items():
        generator = torch.Generator().manual_seed(seed * 7919 + sum(map(ord, rooms_name)))
        clip = torch.arange(len(utterances)).repeat_interleave(draws)
        draw = torch.arange(draws).repeat(len(utterances))
        transforms = sample_transforms(len(clip), rooms, config, generator, loop_samples=loop)
        described = transforms.rows()
        by_condition: dict[str, list[dict]] = {condition: [] for condition in musics}
        for start in range(0, len(clip), batch_size):
            index = torch.arange(start, min(start + batch_size, len(clip)))
            taken = transforms.take(index)
            parts = speech_parts(utterances.subset(clip[index]), taken, rooms, config)  # shared by the conditions
            for condition, music in musics.items():
                scenes = parts["speech"] + parts["noise"]
                if music is not None:
                    piece = music if music.dim() == 1 else music[draw[index] % music.shape[0]]
                    scenes = scenes + music_part(piece, taken, rooms, parts)
                scenes = scenes.clamp(-1.0, 1.0)
                for name, detector in detectors.items():
                    scores = detector.scores(scenes)
                    for i, score in zip(index.tolist(), scores.tolist()):
                        c = int(clip[i])
                        by_condition[condition].append({
                            "detector": name, "rooms": rooms_name, "condition": condition,
                            "clip_id": utterances.ids[c], "label": int(utterances.labels[c]), "draw": int(draw[i]),
                            "score": float(score), "fired": bool(score >= detector.threshold), **described[i]})
                done += len(index)
                if progress is not None:
                    progress(done, total)
        rows.extend(row for condition in musics for row in by_condition[condition])
    return rows


def _f1(labels: np.ndarray, fired: np.ndarray) -> np.ndarray:
    """F1 = 2TP / (2TP + FP + FN) along the last axis (NaN where there is no positive and no detection)."""
    tp = np.sum(fired & labels, axis=-1)
    denominator = 2 * tp + np.sum(fired != labels, axis=-1)
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), np.nan)


def detection_metrics(labels, fired, seed: int = 0, n_resamples: int = 2000) -> dict:
    """TPR, FPR, precision and F1 of binary decisions, with 95% percentile-bootstrap intervals.

    Args:
        labels, fired: ``[N]`` 0/1 truth and decisions (scenes).
    Returns: ``{"tpr", "fpr", "f1": {"value", "ci95", "n"}, "precision", "tp", "fp", "fn", "tn"}``;
        the F1 interval resamples scenes (pairs of label and decision), ignoring resamples where F1
        is undefined.
    """
    labels = np.asarray(labels, dtype=bool)
    fired = np.asarray(fired, dtype=bool)

    def estimate(values) -> dict:
        mean, low, high = mean_with_ci(np.asarray(values, dtype=float), seed=seed, n_resamples=n_resamples)
        return {"value": mean, "ci95": [low, high], "n": int(len(values))}

    f1 = float(_f1(labels, fired)) if len(labels) else float("nan")
    low = high = f1
    if len(labels) > 1 and np.isfinite(f1):
        index = np.random.default_rng(seed).integers(0, len(labels), (n_resamples, len(labels)))
        low, high = (float(v) for v in np.nanpercentile(_f1(labels[index], fired[index]), [2.5, 97.5]))
    tp, fp = int(np.sum(fired & labels)), int(np.sum(fired & ~labels))
    return {"tpr": estimate(fired[labels]), "fpr": estimate(fired[~labels]),
            "f1": {"value": f1, "ci95": [low, high], "n": int(len(labels))},
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "tp": tp, "fp": fp, "fn": int(np.sum(~fired & labels)), "tn": int(np.sum(~fired & ~labels))}


def summarize(rows: list[dict], seed: int = 0) -> list[dict]:
    """Per detector × room set × condition (in :data:`CONDITIONS` order): :func:`detection_metrics`
    plus the mean score of positives."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["detector"], row["rooms"], row["condition"]), []).append(row)
    order = {c: i for i, c in enumerate(CONDITIONS)}
    out = []
    for (name, rooms, condition), group in sorted(groups.items(), key=lambda kv: (
            kv[0][0], kv[0][1], order.get(kv[0][2], len(order)), kv[0][2])):
        labels = np.array([r["label"] for r in group], dtype=bool)
        fired = np.array([r["fired"] for r in group], dtype=bool)
        positive_scores = [r["score"] for r in group if r["label"]]
        out.append({"detector": name, "rooms": rooms, "condition": condition, "scenes": len(group),
                    **detection_metrics(labels, fired, seed),
                    "mean_positive_score": float(np.mean(positive_scores)) if positive_scores else None})
    return out


# ---------------------------------------------------------------------------------------------
# Over scene seeds, with intervals that resample voices
# ---------------------------------------------------------------------------------------------
#
# One draw of rooms and scenes is not a measurement: the scene seed alone moved random-music F1
# between 0.65 and 0.82 on the same clips. And the scenes of one voice are not independent draws:
# a voice the detector (or the music) gets wrong is wrong in every scene, so an interval that
# resamples scenes is far too narrow for "new speakers". :func:`evaluate_seeds` scores the same
# clips over several scene seeds (new held-out rooms, placements, noise and random loops per
# seed), and :func:`clustered_bootstrap` resamples whole voices.


def f1_from_counts(values: np.ndarray) -> float:
    """F1 = 2TP / (2TP + FP + FN) pooled over rows ``[N, 2]`` of (label, fired); NaN with no
    positive and no detection. The statistic for :func:`clustered_bootstrap` on detection rows."""
    values = np.asarray(values, dtype=bool).reshape(-1, 2)
    return float(_f1(values[:, 0], values[:, 1]))


def rate_of(values: np.ndarray) -> float:
    """Mean of 0/1 ``values`` ``[N]`` (a TPR or FPR), NaN if empty."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()) if values.size else float("nan")


def clustered_bootstrap(values, clusters, statistic: Callable[[np.ndarray], float], n_resamples: int = 2000,
                        seed: int = 0, level: float = 0.95) -> dict:
    """A percentile-bootstrap interval that resamples clusters (voices), not rows (scenes).

    Each resample draws as many clusters as there are, uniformly with replacement, stacks the rows
    of the clusters drawn (a cluster drawn twice counts twice) and evaluates ``statistic`` on them;
    the interval is the ``(1 ± level) / 2`` percentiles of the finite resampled values. For F1 use
    :func:`f1_from_counts` on (label, fired) rows: the counts are pooled within each resample, F1 is
    not averaged over clusters.

    Args:
        values: ``[N, ...]`` rows (any array with a first axis).
        clusters: ``[N]`` the cluster of each row (any hashable labels).
        statistic: rows ``[n, ...]`` -> float.
        n_resamples, seed, level: resamples, the generator's seed, the coverage.
    Returns: a dict with ``value`` (``statistic(values)``), ``ci95`` (``[low, high]``, the ``level``
    interval whatever ``level``), ``clusters`` (k), ``n`` (N) and ``resamples`` (the finite ones).
    """
    values = np.asarray(values)
    labels = np.asarray(clusters)
    if len(values) != len(labels):
        raise JamError(f"{len(values)} values for {len(labels)} cluster labels: give one label per row.")
    if len(values) == 0:
        return {"value": float("nan"), "ci95": [float("nan"), float("nan")], "clusters": 0, "n": 0, "resamples": 0}
    names, index = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(index == k) for k in range(len(names))]
    value = float(statistic(values))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(members), (n_resamples, len(members)))
    resampled = np.array([statistic(values[np.concatenate([members[k] for k in row])]) for row in draws],
                         dtype=float)
    finite = resampled[np.isfinite(resampled)]
    tail = (1 - level) / 2 * 100
    low, high = (float(v) for v in np.percentile(finite, [tail, 100 - tail])) if finite.size else (value, value)
    return {"value": value, "ci95": [low, high], "clusters": int(len(members)), "n": int(len(values)),
            "resamples": int(finite.size)}


def resolve_music(music, seed: int) -> torch.Tensor | None:
    """A condition's music for a scene seed: a loop, loops, ``None`` or a callable ``seed -> loops``."""
    return music(seed) if callable(music) else music


def random_loops(loop_seconds: float, sample_rate: int, pieces: int = 4, base: int = 10_000
                 ) -> Callable[[int], torch.Tensor]:
    """The random-music condition per scene seed ``s``: ``pieces`` loops of :class:`KarplusStrong`'s
    random start, seeds ``base + pieces * s + k`` (new loops for every scene seed, none the
    attack's own starting point, which is seed ``0`` .. ``pieces - 1`` for the usual ``seed = 0``)."""
    def make(seed: int) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([KarplusStrong(loop_seconds, sample_rate, seed=base + pieces * seed + k)()
                                for k in range(pieces)])
    return make


@torch.no_grad()
def evaluate_seeds(detectors: Mapping[str, ScoringDetector], utterances: Utterances, config: EOTConfig,
                   musics: Mapping[str, Any], *, seeds=(1, 2, 3, 4, 5), held_out_rooms: int = 16, draws: int = 4,
                   avoid: RoomSet | None = None, batch_size: int = 32,
                   callback: Callable[[int, float], None] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """:func:`evaluate` once per scene seed, in that seed's own held-out rooms.

    For every ``s`` in ``seeds``: ``held_out_rooms`` rooms of the held-out stream with seed ``s``
    (:func:`~.eot.make_rooms`; it raises if one is also in ``avoid``, e.g. the optimisation rooms
    the music was learned in), fresh transforms and the musics resolved for ``s``
    (:func:`resolve_music`: a callable condition such as :func:`random_loops` gives new loops per
    seed). Rows are :func:`evaluate`'s with ``seed`` added; ``rooms`` is ``"held-out"``.
    ``callback(seed, seconds)`` after each seed; ``progress(scenes_done, scenes_total)`` over all seeds.
    """
    rows = []
    per_seed = len(musics) * len(utterances) * draws
    for k, s in enumerate(seeds):
        started = time.perf_counter()
        rooms = make_rooms("held-out", held_out_rooms, int(s), tuple(config.rt60), config.sample_rate)
        if avoid is not None and set(rooms.rooms) & set(avoid.rooms):
            raise JamError(f"Scene seed {s}: a held-out room is also one the music was optimised in; use other seeds.")
        resolved = {name: resolve_music(music, int(s)) for name, music in musics.items()}
        step = None if progress is None else (lambda d, t, k=k: progress(k * per_seed + d, len(seeds) * per_seed))
        for row in evaluate(detectors, utterances, {"held-out": rooms}, config, resolved, draws=draws, seed=int(s),
                            batch_size=batch_size, progress=step):
            row["seed"] = int(s)
            rows.append(row)
        if callback is not None:
            callback(int(s), time.perf_counter() - started)
    return rows


def seed_summary(rows: list[dict], clusters: Mapping[str, str], *, by: Mapping[str, str] | None = None,
                 n_resamples: int = 2000, seed: int = 0) -> list[dict]:
    """Per detector × condition (× group): F1, TPR and FPR pooled over scene seeds and draws, with
    voice-clustered bootstrap intervals (:func:`clustered_bootstrap`, ``clusters``: clip id -> voice),
    and the F1 of each scene seed (``per_seed``; its mean, min and max).

    ``by``: clip id -> group (e.g. the engine): one entry per group, clusters resampled within it.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        group = by[row["clip_id"]] if by is not None else "all"
        groups.setdefault((row["detector"], group, row["condition"]), []).append(row)
    order = {c: i for i, c in enumerate(CONDITIONS)}
    out = []
    for (name, group, condition), members in sorted(groups.items(), key=lambda kv: (
            kv[0][0], kv[0][1], order.get(kv[0][2], len(order)), kv[0][2])):
        labels = np.array([r["label"] for r in members], dtype=bool)
        fired = np.array([r["fired"] for r in members], dtype=bool)
        voices = np.array([clusters[r["clip_id"]] for r in members])
        seeds = np.array([r.get("seed", 0) for r in members])
        pairs = np.stack([labels, fired], axis=1)
        per_seed = {int(s): f1_from_counts(pairs[seeds == s]) for s in np.unique(seeds)}
        f1s = np.array(list(per_seed.values()), dtype=float)
        positive, negative = labels, ~labels
        out.append({
            "detector": name, "group": group, "condition": condition, "scenes": int(len(members)),
            "voices": int(len(np.unique(voices))), "positive_voices": int(len(np.unique(voices[positive]))),
            "f1": clustered_bootstrap(pairs, voices, f1_from_counts, n_resamples, seed),
            "tpr": clustered_bootstrap(fired[positive], voices[positive], rate_of, n_resamples, seed),
            "fpr": clustered_bootstrap(fired[negative], voices[negative], rate_of, n_resamples, seed),
            "per_seed": per_seed, "seed_mean": float(np.nanmean(f1s)) if f1s.size else float("nan"),
            "seed_range": [float(np.nanmin(f1s)), float(np.nanmax(f1s))] if f1s.size else [float("nan")] * 2})
    return out


def voice_table(rows: list[dict], clusters: Mapping[str, str], engines: Mapping[str, str] | None = None
                ) -> list[dict]:
    """Per detector × voice × condition: the TPR over that voice's positive scenes (all seeds and
    draws) and its positive clips and scenes; ``engine`` from ``engines`` (clip id -> engine)."""
    table: dict[tuple, list[bool]] = {}
    clips: dict[tuple, set] = {}
    for row in rows:
        if not row["label"]:
            continue
        key = (row["detector"], clusters[row["clip_id"]], row["condition"])
        table.setdefault(key, []).append(bool(row["fired"]))
        clips.setdefault(key, set()).add(row["clip_id"])
    out = []
    for (name, voice, condition), fired in sorted(table.items()):
        clip = next(iter(clips[(name, voice, condition)]))
        out.append({"detector": name, "voice": voice, "condition": condition, "tpr": float(np.mean(fired)),
                    "clips": len(clips[(name, voice, condition)]), "scenes": len(fired),
                    "engine": engines[clip] if engines is not None else None})
    return out


def choose_level(f1_by_level: Mapping[float, Mapping[int, float]], floor: float = 0.70) -> float:
    """The loudest music level (dB re speech) whose random-music F1, averaged over scene seeds, is at
    least ``floor``; raises if none is. ``f1_by_level``: level -> {scene seed: F1}, as :func:`sweep_levels`
    returns it."""
    means = {float(level): float(np.nanmean(np.fromiter(per_seed.values(), dtype=float)))
             for level, per_seed in f1_by_level.items()}
    allowed = [level for level, mean in means.items() if mean >= floor]
    if not allowed:
        shown = ", ".join(f"{level:g} dB: {mean:.3f}" for level, mean in sorted(means.items()))
        raise JamError(f"Random music keeps a mean F1 >= {floor} at none of the levels tried ({shown}): "
                       f"try quieter levels.")
    return max(allowed)


@torch.no_grad()
def sweep_levels(detector: ScoringDetector, utterances: Utterances, config: EOTConfig, levels, *,
                 seeds=(1, 2, 3, 4, 5), held_out_rooms: int = 16, draws: int = 2, loop_seconds: float = 4.0,
                 pieces: int = 4, avoid: RoomSet | None = None) -> dict[float, dict[int, float]]:
    """Random-music F1 per level and scene seed (held-out rooms; :func:`random_loops` music): the
    input of :func:`choose_level`. Use clips and voices that are not the ones the headline is measured on."""
    out: dict[float, dict[int, float]] = {}
    music = random_loops(loop_seconds, config.sample_rate, pieces)
    for level in levels:
        rows = evaluate_seeds({"target": detector}, utterances, replace(config, music_db=float(level)),
                              {"random": music}, seeds=seeds, held_out_rooms=held_out_rooms, draws=draws,
                              avoid=avoid)
        out[float(level)] = {int(s): f1_from_counts(np.array([[r["label"], r["fired"]] for r in rows
                                                             if r["seed"] == s], dtype=bool))
                             for s in seeds}
    return out


# ---------------------------------------------------------------------------------------------
# The whole protocol
# ---------------------------------------------------------------------------------------------


@dataclass
class JamRun:
    """Everything a report needs: the attack, the random baseline, the scenes' rows and their summary."""

    result: JamResult
    random_music: torch.Tensor        # [P, Tm] random loops from the same synthesiser, same loudness
    rows: list[dict]
    summary: list[dict]
    rooms: dict[str, RoomSet]
    selected: dict[str, int]          # clips used: positives found clean / given, negatives
    synth: dict                       # the synthesiser's settings
    settings: dict
    seed_rows: list[dict] = field(default_factory=list)     # evaluate_seeds rows (scene_seeds given)
    seed_summary: list[dict] = field(default_factory=list)  # seed_summary of them, voice-clustered
    voice_table: list[dict] = field(default_factory=list)   # TPR per voice over the scene seeds
    engine_summary: list[dict] = field(default_factory=list)  # seed_summary per engine (engines given)


def jam_and_evaluate(detector: Detector, learn: Utterances, test: Utterances, config: EOTConfig, *,
                     steps: int = 300, batch_size: int = 16, lr: float = 0.01, confidence: float = 0.0,
                     loop_seconds: float = 4.0, optimisation_rooms: int = 16, held_out_rooms: int = 16,
                     draws: int = 4, random_pieces: int = 4, seed: int = 0,
                     extra_detectors: Mapping[str, ScoringDetector] | None = None,
                     callback: Callable[[dict], None] | None = None,
                     augmentation: Augmentation | None = None, scene_seeds: Sequence[int] | None = None,
                     voices: Mapping[str, str] | None = None, engines: Mapping[str, str] | None = None,
                     n_resamples: int = 2000, progress: Callable[[str, int, int], None] | None = None) -> JamRun:
    """The issue's protocol: rooms split by seed; the jam on ``learn``'s positives that the detector
    finds clean (:func:`clean_correct`) in the optimisation rooms; then :func:`evaluate` on ``test``'s
    clips it handles correctly clean (positives it fires on, negatives it does not), in both room
    sets, clean / random music / adversarial music, by ``detector`` and any ``extra_detectors``
    (e.g. a black-box transfer target, scored on the same audio).

    ``random_pieces`` loops from the synthesiser's random start (seeds ``seed .. seed + P − 1``; the
    first is where the attack started) at the same level are the random-music condition.
    ``augmentation``: talker and device augmentation while learning (see :func:`jam`).

    ``progress(phase, done, total)``: ``"optimising"`` (steps), ``"evaluating"`` and ``"scene seeds"``
    (scenes), for elapsed time and time left in every phase.

    ``scene_seeds`` (e.g. ``(1, 2, 3, 4, 5)``): the held-out rooms are those of :func:`evaluate_seeds`
    on the same test clips, one set of new held-out rooms, scenes and random loops (:func:`random_loops`)
    per seed (``rows`` and ``summary`` then pool the seeds for the held-out rooms, and ``rooms`` lists each
    seed's), into ``seed_rows``, with ``seed_summary`` (:func:`seed_summary`, intervals resampling ``voices``:
    clip id -> voice; each clip its own voice if not given) and ``voice_table``; with ``engines``
    (clip id -> TTS engine or recording set) also ``engine_summary``, one row per engine.
    """
    started = time.perf_counter()
    optimisation, held_out = room_split(config, optimisation_rooms, held_out_rooms, seed)
    learn_found = clean_correct(detector, learn.positives(), config)
    test_found = clean_correct(detector, test, config)
    if not bool(learn_found.any()):
        raise JamError(f"The detector fires on none of the {len(learn.positives())} clean '{detector.target}' "
                       f"clips to optimise on: check the data (or the target class).")
    if not bool((test_found & (test.labels == 1)).any()):
        raise JamError(f"The detector fires on none of the {int(test.labels.sum())} clean '{detector.target}' "
                       f"test clips: nothing to jam.")
    positives, evaluated = learn.positives().subset(learn_found), test.subset(test_found)
    sample_rate = detector.sample_rate
    synth = KarplusStrong(loop_seconds, sample_rate, seed=seed)
    def on_step(entry: dict) -> None:
        if callback is not None:
            callback(entry)
        if progress is not None:
            progress("optimising", int(entry["step"]), steps)

    def phase(name: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda done, total: progress(name, done, total))

    result = jam(synth, detector, positives, optimisation, config, steps=steps, batch_size=batch_size, lr=lr,
                 confidence=confidence, seed=seed, callback=on_step, augmentation=augmentation)
    with torch.no_grad():
        random_music = torch.stack([KarplusStrong(loop_seconds, sample_rate, seed=seed + k)()
                                    for k in range(random_pieces)])
    detectors = {"target": detector, **(extra_detectors or {})}
    # With scene seeds the held-out rows are the seeds' (each its own rooms and random loops): one more
    # single-draw pass over the seed-`seed` held-out rooms would only repeat a subset of them.
    rooms = {"optimisation": optimisation} if scene_seeds else {"optimisation": optimisation, "held-out": held_out}
    rows = evaluate(detectors, evaluated, rooms, config,
                    {"clean": None, "random": random_music, "adversarial": result.music}, draws=draws, seed=seed,
                    progress=phase("evaluating"))
    settings = {"target": detector.target, "eot": config.as_dict(), "steps": steps, "batch_size": batch_size,
                "lr": lr, "confidence": confidence, "loop_seconds": loop_seconds,
                "optimisation_rooms": optimisation_rooms, "held_out_rooms": held_out_rooms, "draws": draws,
                "random_pieces": random_pieces, "seed": seed, "seconds": time.perf_counter() - started,
                "augmentation": augmentation.as_dict() if augmentation is not None else None}
    selected = {"learn_positives": int(len(positives)), "learn_positives_given": int(len(learn.positives())),
                "test_positives": int((evaluated.labels == 1).sum()),
                "test_positives_given": int((test.labels == 1).sum()),
                "test_negatives": int((evaluated.labels == 0).sum()),
                "test_negatives_given": int((test.labels == 0).sum())}
    run = JamRun(result, random_music, rows, [], rooms, selected, synth.describe(), settings)
    if scene_seeds:
        clusters = dict(voices) if voices is not None else {i: i for i in evaluated.ids}
        run.seed_rows = evaluate_seeds(detectors, evaluated, config,
                                       {"clean": None, "random": random_loops(loop_seconds, sample_rate, random_pieces),
                                        "adversarial": result.music},
                                       seeds=tuple(scene_seeds), held_out_rooms=held_out_rooms, draws=draws,
                                       avoid=optimisation, progress=phase("scene seeds"))
        run.rows = rows + run.seed_rows
        for s in scene_seeds:
            rooms[f"held-out, seed {int(s)}"] = make_rooms("held-out", held_out_rooms, int(s), tuple(config.rt60),
                                                           config.sample_rate)  # cached: already drawn
        run.seed_summary = seed_summary(run.seed_rows, clusters, n_resamples=n_resamples, seed=seed)
        run.voice_table = voice_table(run.seed_rows, clusters, engines)
        if engines is not None:
            run.engine_summary = seed_summary(run.seed_rows, clusters, by=engines, n_resamples=n_resamples, seed=seed)
        settings["scene_seeds"] = [int(s) for s in scene_seeds]
        settings["seconds"] = time.perf_counter() - started
    run.summary = summarize(run.rows, seed)
    return run


__all__ = ["CONDITIONS", "Detector", "JamResult", "JamRun", "ScoringDetector", "choose_level", "clean_correct",
           "clustered_bootstrap", "detection_metrics", "evaluate", "evaluate_seeds", "f1_from_counts", "jam",
           "jam_and_evaluate", "jam_loss", "load_utterances", "random_loops", "rate_of", "resolve_music",
           "seed_summary", "summarize", "sweep_levels", "voice_table"]


def load_speech(clips: Iterable[SpeechClip], target: str, sample_rate: int):
    """The clips as :class:`~robustaudio.attacks.eot.Utterances` (label 1 where the clip's label is
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
