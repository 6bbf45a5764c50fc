"""Scoring a jamming loop: scenes with no music, random music and the adversarial music, by any detectors.

- :func:`clean_correct`: the clips a detector handles dry (attacks are evaluated on those).
- :func:`evaluate`: scenes drawn once per room set and utterance (seeded), rendered with each music
  condition (paired: the same rooms, offsets, noise for clean, random and adversarial music) and
  scored by every detector given (a mapping, so a black-box transfer target is one more entry);
  one row per detector × condition × scene. :func:`summarize` turns rows into TPR / FPR / F1 with
  95% intervals per detector × room set × condition (:func:`~robustaudio.stats.detection_metrics`).
- Over scene seeds (:func:`evaluate_seeds`, :func:`seed_summary`, :func:`voice_table`): new held-out
  rooms, scenes and random loops per seed, F1 pooled over seeds with intervals that resample voices
  (widened for few voices);
  :func:`sweep_levels` and :func:`choose_level` pick the music level from the mean over seeds.

The statistics themselves (F1 from counts, the voice-clustered bootstrap) live in :mod:`robustaudio.stats`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ..acoustics.scenes import (
    EOTConfig,
    JamError,
    RoomSet,
    Utterances,
    ensure_disjoint,
    make_rooms,
    music_part,
    sample_transforms,
    speech_parts,
)
from ..attacks.jamming import ScoringDetector
from ..attacks.music import KarplusStrong
from ..stats import clustered_bootstrap, detection_metrics, f1_from_counts, rate_of

CONDITIONS = ("clean", "random", "adversarial")


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


def _grouped(rows: list[dict], middle: Callable[[dict], Any]) -> list[tuple[tuple, list[dict]]]:
    """Rows grouped by (detector, ``middle(row)``, condition), sorted by detector, then the middle key, then
    condition in :data:`CONDITIONS` order (others after, by name)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["detector"], middle(row), row["condition"]), []).append(row)
    order = {c: i for i, c in enumerate(CONDITIONS)}
    return sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], order.get(kv[0][2], len(order)), kv[0][2]))


def summarize(rows: list[dict], seed: int = 0) -> list[dict]:
    """Per detector × room set × condition (in :data:`CONDITIONS` order): :func:`detection_metrics`
    plus the mean score of positives."""
    out = []
    for (name, rooms, condition), group in _grouped(rows, lambda row: row["rooms"]):
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


Music = torch.Tensor | Callable[[int], torch.Tensor] | None  # a condition's loop(s), none, or seed -> loops


def resolve_music(music: Music, seed: int) -> torch.Tensor | None:
    """A condition's music for a scene seed: a loop, loops, ``None`` or a callable ``seed -> loops``."""
    return music(seed) if callable(music) else music


def random_loops(loop_seconds: float, sample_rate: int, pieces: int = 4, base: int = 10_000, *,
                 notes_per_second: float = 4.0) -> Callable[[int], torch.Tensor]:
    """The random-music condition per scene seed ``s``: ``pieces`` loops of :class:`KarplusStrong`'s
    random start (``notes_per_second`` onsets per second), seeds ``base + pieces * s + k`` (new loops for every
    scene seed, none the attack's own starting point, which is seed ``0`` .. ``pieces - 1`` for the usual
    ``seed = 0``)."""
    def make(seed: int) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([KarplusStrong(loop_seconds, sample_rate, notes_per_second=notes_per_second,
                                              seed=base + pieces * seed + k)() for k in range(pieces)])
    return make


@torch.no_grad()
def seed_rooms(config: EOTConfig, held_out_rooms: int, seeds: Sequence[int]) -> dict[int, RoomSet]:
    """Scene seed -> its ``held_out_rooms`` held-out rooms (:func:`~.eot.make_rooms`, cached: asking again
    simulates nothing)."""
    return {int(s): make_rooms("held-out", held_out_rooms, int(s), tuple(config.rt60), config.sample_rate)
            for s in seeds}


def evaluate_seeds(detectors: Mapping[str, ScoringDetector], utterances: Utterances, config: EOTConfig,
                   musics: Mapping[str, Music], *, seeds: Sequence[int] = (1, 2, 3, 4, 5), held_out_rooms: int = 16,
                   draws: int = 4, avoid: RoomSet | None = None, batch_size: int = 32,
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
        rooms = seed_rooms(config, held_out_rooms, (s,))[int(s)]
        if avoid is not None:
            ensure_disjoint(rooms, avoid, fix="the music was optimised in them; use other scene seeds.")
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
    out = []
    for (name, group, condition), members in _grouped(rows, lambda row: by[row["clip_id"]] if by is not None
                                                      else "all"):
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
            "f1": clustered_bootstrap(pairs, voices, f1_from_counts, n_resamples, seed, bounds=(0, 1)),
            "tpr": clustered_bootstrap(fired[positive], voices[positive], rate_of, n_resamples, seed, bounds=(0, 1)),
            "fpr": clustered_bootstrap(fired[negative], voices[negative], rate_of, n_resamples, seed, bounds=(0, 1)),
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


def level_means(f1_by_level: Mapping[float, Mapping[int, float]]) -> dict[float, float]:
    """Level -> its random-music F1 averaged over scene seeds (NaN seeds ignored): what :func:`choose_level`
    compares with the floor."""
    return {float(level): float(np.nanmean(np.fromiter(per_seed.values(), dtype=float)))
            for level, per_seed in f1_by_level.items()}


def choose_level(f1_by_level: Mapping[float, Mapping[int, float]], floor: float = 0.70) -> float:
    """The loudest music level (dB re speech) whose random-music F1, averaged over scene seeds, is at
    least ``floor``; raises if none is. ``f1_by_level``: level -> {scene seed: F1}, as :func:`sweep_levels`
    returns it."""
    means = level_means(f1_by_level)
    allowed = [level for level, mean in means.items() if mean >= floor]
    if not allowed:
        shown = ", ".join(f"{level:g} dB: {mean:.3f}" for level, mean in sorted(means.items()))
        raise JamError(f"Random music keeps a mean F1 >= {floor} at none of the levels tried ({shown}): "
                       f"try quieter levels.")
    return max(allowed)


def choose_level_every(f1_by_group: Mapping[str, Mapping[float, Mapping[int, float]]],
                       floor: float = 0.70) -> float:
    """The loudest music level (dB re speech) at which random-music F1, averaged over scene seeds, is at
    least ``floor`` for **every** group at once (e.g. every engine or voice of the clips the level is chosen
    on); raises naming the group if one keeps the floor at no level, or if no level suits all groups.
    ``f1_by_group``: group -> {level -> {scene seed: F1}}, as :func:`sweep_levels_by` returns it.

    Why: a level chosen on the pooled mean lets a fragile population fall below the floor while a robust one
    carries the mean (measured: random-music F1 at one level moved by -0.19 and +0.12 between two
    populations of voices saying the same word)."""
    allowed: set[float] | None = None
    for group, sweep in f1_by_group.items():
        means = level_means(sweep)
        keeps = {level for level, mean in means.items() if mean >= floor}
        if not keeps:
            shown = ", ".join(f"{level:g} dB: {mean:.3f}" for level, mean in sorted(means.items()))
            raise JamError(f"Random music keeps a mean F1 >= {floor} for {group} at none of the levels tried "
                           f"({shown}): try quieter levels.")
        allowed = keeps if allowed is None else allowed & keeps
    if allowed is None:
        raise JamError("No group to choose the music level on.")
    if not allowed:
        raise JamError(f"No level keeps a mean random-music F1 >= {floor} for every group at once: try levels "
                       f"between the ones tried.")
    return max(allowed)


@torch.no_grad()
def sweep_levels_by(detector: ScoringDetector, utterances: Utterances, config: EOTConfig, levels: Sequence[float],
                    group_of: Mapping[str, str], *, seeds: Sequence[int] = (1, 2, 3, 4, 5), held_out_rooms: int = 16,
                    draws: int = 2, loop_seconds: float = 4.0, pieces: int = 4, notes_per_second: float = 4.0,
                    avoid: RoomSet | None = None,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, dict[float, dict[int, float]]]:
    """Random-music F1 per group, level and scene seed (held-out rooms; :func:`random_loops` music): the
    input of :func:`choose_level_every`. ``group_of``: clip id -> group (its engine, voice ...); a group is
    made of the positives it names, scored with **every** negative of ``utterances`` (false alarms come from
    the room's other sounds, not from who says the wake word); groups with no positive are left out. Key
    ``"all"``: every clip, as :func:`sweep_levels` gives it. Use clips and voices that are not the ones the
    headline is measured on. ``progress(levels_done, levels_total)`` after each level."""
    positive_groups = sorted({group_of[i] for i, y in zip(utterances.ids, utterances.labels.tolist())
                              if y == 1 and i in group_of})
    out: dict[str, dict[float, dict[int, float]]] = {"all": {}, **{g: {} for g in positive_groups}}
    music = random_loops(loop_seconds, config.sample_rate, pieces, notes_per_second=notes_per_second)
    for k, level in enumerate(levels):
        rows = evaluate_seeds({"target": detector}, utterances, replace(config, music_db=float(level)),
                              {"random": music}, seeds=seeds, held_out_rooms=held_out_rooms, draws=draws,
                              avoid=avoid)
        for group in out:
            def member(row: dict, g: str = group) -> bool:
                return g == "all" or row["label"] == 0 or group_of.get(row["clip_id"]) == g
            out[group][float(level)] = _f1_per_seed([r for r in rows if member(r)], seeds)
        if progress is not None:
            progress(k + 1, len(levels))
    return out


def _f1_per_seed(rows: list[dict], seeds: Iterable[int]) -> dict[int, float]:
    """F1 of ``rows`` (:func:`evaluate_seeds`'s) per scene seed."""
    return {int(s): f1_from_counts(np.array([[r["label"], r["fired"]] for r in rows if r["seed"] == s],
                                            dtype=bool).reshape(-1, 2)) for s in seeds}


def clean_f1_in_rooms(detector: ScoringDetector, utterances: Utterances, config: EOTConfig, *,
                      seeds: Sequence[int] = (1, 2, 3, 4, 5), held_out_rooms: int = 16, draws: int = 2,
                      avoid: RoomSet | None = None) -> dict[int, float]:
    """F1 per scene seed with no music, in the rooms :func:`sweep_levels` plays the same seeds in: the ceiling of
    every level's random-music F1 (a level sweep that keeps no floor may be a detector that does not hear these
    clips in a room at all, not a grid too loud)."""
    return _f1_per_seed(evaluate_seeds({"target": detector}, utterances, config, {"clean": None}, seeds=seeds,
                                       held_out_rooms=held_out_rooms, draws=draws, avoid=avoid), seeds)


def sweep_levels(detector: ScoringDetector, utterances: Utterances, config: EOTConfig, levels: Sequence[float], *,
                 seeds: Sequence[int] = (1, 2, 3, 4, 5), held_out_rooms: int = 16, draws: int = 2,
                 loop_seconds: float = 4.0, pieces: int = 4, notes_per_second: float = 4.0,
                 avoid: RoomSet | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict[float, dict[int, float]]:
    """Random-music F1 per level and scene seed over all of ``utterances`` (held-out rooms;
    :func:`random_loops` music): the input of :func:`choose_level`. Use clips and voices that are not the
    ones the headline is measured on. ``progress(levels_done, levels_total)`` after each level."""
    return sweep_levels_by(detector, utterances, config, levels, {}, seeds=seeds, held_out_rooms=held_out_rooms,
                           draws=draws, loop_seconds=loop_seconds, pieces=pieces,
                           notes_per_second=notes_per_second, avoid=avoid, progress=progress)["all"]


__all__ = ["CONDITIONS", "choose_level", "choose_level_every", "clean_correct", "clean_f1_in_rooms", "evaluate",
           "evaluate_seeds", "level_means", "random_loops", "resolve_music", "seed_rooms", "seed_summary",
           "summarize", "sweep_levels", "sweep_levels_by", "voice_table"]
