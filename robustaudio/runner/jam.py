"""The jamming protocol end to end: learn a loop in optimisation rooms, then score it in held-out rooms
(and over scene seeds, with voice-clustered intervals) against random music at the same level."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch

from ..acoustics.augmentation import Augmentation
from ..acoustics.scenes import EOTConfig, JamError, RoomSet, Utterances, ensure_disjoint, make_rooms, room_split
from ..attacks.jamming import Detector, JamResult, ScoringDetector, jam
from ..attacks.masking_jam import masking_jam, mean_visibility
from ..attacks.music import KarplusStrong
from ..attacks.query_jam import QuerySettings, query_jam
from ..attacks.substitute_jam import SubstituteSettings, substitute_jam
from ..metrics.jamming import (
    choose_level,
    choose_level_every,
    clean_correct,
    clean_f1_in_rooms,
    evaluate,
    evaluate_seeds,
    level_means,
    random_loops,
    seed_rooms,
    seed_summary,
    summarize,
    sweep_levels_by,
    voice_table,
)
from ..stats import f1_from_counts, rate_of

LEVEL_SEED_OFFSET = 1000  # the level sweep's scene seeds: 1000 + s, rooms no evaluation seed draws
OPTIMISATION_ROOMS = 16  # rooms a jam learns in, unless told (the substitute search's measured setting is 64)
LEVEL_DRAWS = 2  # scenes per clip and scene seed when the level is chosen (random music only)
JAM_KINDS = ("detector", "masking", "nes", "substitute")
DETECTOR_STEPS = 300  # gradient jams (and the NES jam's recorded step count)
SUBSTITUTE_JAM_STEPS = SubstituteSettings.jam_steps  # each substitute round's jam (experiments/jam_query.md: 200)
MASKING_STEPS = 2000  # the masking objective: the visibility was still falling at 600 steps (jam_surrogates.md)
SUBSTITUTE_ROOMS = 64  # the substitute search's optimisation rooms: validation F1 0.099 / 0.136 against
# 0.171 / 0.171 with 16 rooms (start seeds 0, 1; experiments/jam_query.md, "more rooms to ask in")
SUBSTITUTE_DEVICE_PROBABILITY = 0.5  # the substitute search: loudspeaker and microphone bands on half the scenes.
# On engines the loops never heard, lower on every start: flite + Festival 0.133 against 0.189 (four starts,
# experiments/jam_query.md) and SAM 0.217 against 0.287 (paired -0.070 [-0.086, -0.052], experiments/jam_sam.md);
# on new voices of the learning engine no difference (-0.002). Chosen on those held-out engines, said there.


@dataclass(frozen=True)
class JamRecipe:
    """The measured setting of one kind of jam (:func:`measured_recipe`): Adam ``steps``, talker and device
    ``augmentation`` while learning (``None``: off), and the ``optimisation_rooms``."""

    steps: int
    augmentation: Augmentation | None
    optimisation_rooms: int

    @property
    def augment(self) -> bool:
        """Whether the loop is learned with talker and device augmentation."""
        return self.augmentation is not None


def measured_recipe(kind: str, *, steps: int | None = None, augment: bool | None = None,
                    rooms: int | None = None) -> JamRecipe:
    """The setting each kind of jam was measured with, where the caller leaves a value ``None``; given values win.

    ``kind`` (:data:`JAM_KINDS`): ``"detector"`` (a gradient jam: plain, :data:`DETECTOR_STEPS` steps, in
    :data:`OPTIMISATION_ROOMS` rooms), ``"nes"`` (the same; NES reads no steps), ``"masking"`` (augmented,
    :data:`MASKING_STEPS` steps) or ``"substitute"`` (augmented with device bands on half the scenes,
    :data:`SUBSTITUTE_DEVICE_PROBABILITY`, in :data:`SUBSTITUTE_ROOMS` rooms, :data:`SUBSTITUTE_JAM_STEPS` steps per
    round's jam). ``robustaudio jam`` uses this, so a library caller gets the same defaults by asking for them.
    """
    if kind not in JAM_KINDS:
        raise JamError(f"Unknown kind of jam {kind!r}: use one of {', '.join(JAM_KINDS)}.")
    augment = kind in ("masking", "substitute") if augment is None else augment
    augmentation = None
    if augment:
        augmentation = (Augmentation(device_probability=SUBSTITUTE_DEVICE_PROBABILITY) if kind == "substitute"
                        else Augmentation())
    measured_steps = {"masking": MASKING_STEPS, "substitute": SUBSTITUTE_JAM_STEPS}.get(kind, DETECTOR_STEPS)
    return JamRecipe(steps=measured_steps if steps is None else steps,
                     augmentation=augmentation,
                     optimisation_rooms=(SUBSTITUTE_ROOMS if kind == "substitute" else OPTIMISATION_ROOMS)
                     if rooms is None else rooms)


@dataclass(frozen=True)
class LearnSettings:
    """How the loop is learned (:func:`jam_and_evaluate`).

    ``steps`` Adam steps of ``batch_size`` scenes at ``lr`` (a gradient or masking jam), ``confidence`` (the
    detector jam's margin); ``objective``: ``"detector"`` (the detector's gradients) or ``"masking"`` (no detector:
    the word's visibility in microWakeWord's public front end); ``restarts`` (masking only): loops learned, the
    least visible kept; ``augmentation``: talker and device augmentation while learning; ``queries``: a
    query-based jam instead (NES, or a substitute with :class:`SubstituteSettings`).
    """

    steps: int = 300
    batch_size: int = 16
    lr: float = 0.01
    confidence: float = 0.0
    objective: str = "detector"
    restarts: int = 1
    augmentation: Augmentation | None = None
    queries: QuerySettings | SubstituteSettings | None = None

    def __post_init__(self) -> None:
        if self.objective not in ("detector", "masking"):
            raise JamError(f"Unknown jam objective {self.objective!r}: use 'detector' or 'masking'.")
        if self.objective == "masking" and self.queries is not None:
            raise JamError("The masking objective reads no detector, so it takes no query budget: pass "
                           "LearnSettings(queries=None).")
        if self.restarts < 1 or (self.restarts > 1 and self.objective != "masking"):
            raise JamError(f"restarts picks among masking loops by their visibility (objective='masking'), at least "
                           f"one; got {self.restarts} with objective {self.objective!r}.")


@dataclass(frozen=True)
class SceneProtocol:
    """Where loops are learned and scored, and against what (:func:`jam_and_evaluate`, :func:`choose_music_level`).

    ``optimisation_rooms`` rooms to learn in; ``held_out_rooms`` rooms per scene seed to score in (none of them an
    optimisation room); ``draws`` scenes per clip and room set (or scene seed); ``random_pieces`` random loops of
    ``loop_seconds`` s from the same synthesiser at the same level (the baseline); ``notes_per_second``: the
    synthesiser's rhythm grid (onsets per second), for the learned loop and the random baseline alike, so the
    attack is always compared with random music of its own kind (random loops on a denser grid mask less:
    ``experiments/jam_surrogates.md``); ``scene_seeds`` (e.g.
    ``(1, 2, 3, 4, 5)``): score over each seed's own held-out rooms, with voice-clustered intervals of
    ``n_resamples`` resamples (empty: one pass over the seed-``seed`` held-out rooms).
    """

    optimisation_rooms: int = OPTIMISATION_ROOMS
    held_out_rooms: int = 16
    draws: int = 4
    random_pieces: int = 4
    loop_seconds: float = 4.0
    notes_per_second: float = 4.0
    scene_seeds: tuple[int, ...] = ()
    n_resamples: int = 2000


@dataclass(frozen=True)
class ClipOrigins:
    """Who said the test clips and how (:func:`jam_and_evaluate`): ``voices`` (clip id -> voice, the unit the
    intervals resample; each clip its own voice where ``None``), ``engines`` (clip id -> TTS engine or recording
    set, for one row per engine) and ``held_out_engines`` (the engines never learned from, recorded)."""

    voices: Mapping[str, str] | None = None
    engines: Mapping[str, str] | None = None
    held_out_engines: tuple[str, ...] = ()


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
    query_curve: list[dict] = field(default_factory=list)     # query-based jams: F1 of the loop against queries


def _keep_least_visible(learned: list[tuple[KarplusStrong, JamResult]], positives: Utterances, config: EOTConfig,
                        rooms: int, seed: int, avoid: tuple[RoomSet, ...]) -> tuple[KarplusStrong, JamResult, dict]:
    """Of masking loops learned with seeds ``seed, seed + 1, ...``: the one with the lowest
    :func:`~..attacks.masking_jam.mean_visibility` of ``positives`` in ``rooms`` rooms of the ``"pick"`` stream
    (none of them in ``avoid``), its result (``seconds``: all the loops'), and the record of every reading."""
    pick_rooms = make_rooms("pick", rooms, seed, tuple(config.rt60), config.sample_rate)
    ensure_disjoint(pick_rooms, *avoid, fix="the loops are picked in rooms of their own; use another seed.")
    visibility = [mean_visibility(result.music, positives, pick_rooms, config, seed=seed) for _, result in learned]
    kept = min(range(len(learned)), key=visibility.__getitem__)
    synth, result = learned[kept]
    result.seconds = sum(r.seconds for _, r in learned)
    return synth, result, {"seeds": [seed + k for k in range(len(learned))], "visibility": visibility,
                           "kept": kept, "rooms": rooms}


def jam_and_evaluate(detector: Detector, learn: Utterances, test: Utterances, config: EOTConfig,
                     learning: LearnSettings = LearnSettings(), protocol: SceneProtocol = SceneProtocol(), *,
                     seed: int = 0, extra_detectors: Mapping[str, ScoringDetector] | None = None,
                     origins: ClipOrigins = ClipOrigins(), level_choice: Mapping | None = None,
                     callback: Callable[[dict], None] | None = None,
                     progress: Callable[[str, int, int], None] | None = None) -> JamRun:
    """The issue's protocol: rooms split by seed; the jam on ``learn``'s positives that the detector
    finds clean (:func:`clean_correct`) in the optimisation rooms; then :func:`evaluate` on ``test``'s
    clips it handles correctly clean (positives it fires on, negatives it does not), in both room
    sets, clean / random music / adversarial music, by ``detector`` and any ``extra_detectors``
    (e.g. a black-box transfer target, scored on the same audio).

    ``learning`` (:class:`LearnSettings`) says how the loop is learned, ``protocol`` (:class:`SceneProtocol`)
    where it is learned and scored. ``protocol.random_pieces`` loops from the synthesiser's random start (seeds
    ``seed .. seed + P − 1``; the first is where the attack started) at the same level are the random-music
    condition. ``learning.augmentation``: talker and device augmentation while learning (see :func:`jam`).

    ``progress(phase, done, total)``: ``"optimising"`` (steps), ``"evaluating"`` and ``"scene seeds"``
    (scenes), for elapsed time and time left in every phase.

    ``protocol.scene_seeds`` (e.g. ``(1, 2, 3, 4, 5)``): the held-out rooms are those of :func:`evaluate_seeds`
    on the same test clips, one set of new held-out rooms, scenes and random loops (:func:`random_loops`)
    per seed (``rows`` and ``summary`` then pool the seeds for the held-out rooms, and ``rooms`` lists each
    seed's), into ``seed_rows``, with ``seed_summary`` (:func:`seed_summary`, intervals resampling
    ``origins.voices``) and ``voice_table``; with ``origins.engines`` also ``engine_summary``, one row per engine.
    ``origins.held_out_engines`` and ``level_choice`` (how ``config.music_db`` was chosen:
    :func:`choose_music_level`'s record) are recorded in ``settings``.

    ``learning.objective``: ``"detector"`` (the default) learns against ``detector``'s gradients;
    ``"masking"`` against no detector (:func:`~..attacks.masking_jam.masking_jam`: the word's visibility in
    microWakeWord's public front end, 16 kHz), learning from every positive of ``learn`` (the detector is not asked
    which it handles), so the loop never depends on the detector it is scored on. ``learning.restarts`` (masking
    only): learn that many loops (synthesiser and draw seeds ``seed .. seed + restarts - 1``) and keep the one with
    the lowest :func:`~..attacks.masking_jam.mean_visibility` on the learning positives in rooms of their own (the
    ``"pick"`` stream: no optimisation or evaluation room), still without reading the detector;
    ``settings["restarts"]`` records each loop's visibility and the one kept.

    ``learning.queries``: a **query-based** jam instead (black box: :func:`~..attacks.query_jam.query_jam`, NES on the
    detector's scores alone, every scored scene counted; ``steps``, ``batch_size``, ``lr`` and ``augmentation``
    are then unused), or with :class:`~..attacks.substitute_jam.SubstituteSettings` a substitute fitted to its
    answers and jammed with gradients, round after round (:func:`~..attacks.substitute_jam.substitute_jam`;
    ``augmentation`` is used by its jams). ``query_curve`` then holds the F1 of the loop at each of
    ``queries.snapshots`` (NES) or after each round (substitute), and at 0, scored on the test clips in the
    held-out rooms of the first scene seed (one scene per clip).
    """
    started = time.perf_counter()
    optimisation, held_out = room_split(config, protocol.optimisation_rooms, protocol.held_out_rooms, seed)
    learn_found = (torch.ones(len(learn.positives()), dtype=torch.bool) if learning.objective == "masking" else
                   clean_correct(detector, learn.positives(), config))
    test_found = clean_correct(detector, test, config)
    if not bool(learn_found.any()):
        raise JamError(f"The detector fires on none of the {len(learn.positives())} clean '{detector.target}' "
                       f"clips to optimise on: check the data (or the target class).")
    if not bool((test_found & (test.labels == 1)).any()):
        raise JamError(f"The detector fires on none of the {int(test.labels.sum())} clean '{detector.target}' "
                       f"test clips: nothing to jam.")
    positives, evaluated = learn.positives().subset(learn_found), test.subset(test_found)
    sample_rate = detector.sample_rate
    def synthesiser(synth_seed: int) -> KarplusStrong:
        return KarplusStrong(protocol.loop_seconds, sample_rate, notes_per_second=protocol.notes_per_second,
                             seed=synth_seed)

    synth = synthesiser(seed)
    total_steps = learning.steps * learning.restarts if learning.queries is None else learning.queries.planned_steps

    def on_step(entry: dict, done_before: int = 0) -> None:
        """``done_before``: the steps of the restarts already learned, for the progress over all of them."""
        if callback is not None:
            callback(entry)
        if progress is not None:
            progress("optimising", done_before + int(entry.get("step", entry.get("round", 0))), total_steps)

    def phase(name: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda done, total: progress(name, done, total))

    snapshots: dict[int, torch.Tensor] = {}
    queries_used = 0
    restart_record = None
    if learning.objective == "masking":
        learned = []
        for k in range(learning.restarts):
            trial = synth if k == 0 else synthesiser(seed + k)
            learned.append((trial, masking_jam(trial, positives, optimisation, config, steps=learning.steps,
                                               batch_size=learning.batch_size, lr=learning.lr, seed=seed + k,
                                               augmentation=learning.augmentation,
                                               callback=partial(on_step, done_before=k * learning.steps))))
        synth, result = learned[0]
        if learning.restarts > 1:
            synth, result, restart_record = _keep_least_visible(learned, positives, config, protocol.held_out_rooms,
                                                                seed, avoid=(optimisation, held_out))
    elif learning.queries is None:
        result = jam(synth, detector, positives, optimisation, config, steps=learning.steps,
                     batch_size=learning.batch_size, lr=learning.lr, confidence=learning.confidence, seed=seed,
                     callback=on_step, augmentation=learning.augmentation)
    else:
        if isinstance(learning.queries, SubstituteSettings):
            found = substitute_jam(synth, detector, positives, optimisation, config, learning.queries, seed=seed,
                                   augmentation=learning.augmentation, callback=on_step)
        else:
            found = query_jam(synth, detector, positives, optimisation, config, learning.queries, seed=seed,
                              callback=on_step)
        result = JamResult(found.music, found.initial, found.history, seconds=found.seconds)
        snapshots = {0: found.initial, **found.snapshots}
        queries_used = found.queries
    with torch.no_grad():
        random_music = torch.stack([synthesiser(seed + k)() for k in range(protocol.random_pieces)])
    detectors = {"target": detector, **(extra_detectors or {})}
    # With scene seeds the held-out rows are the seeds' (each its own rooms and random loops): one more
    # single-draw pass over the seed-`seed` held-out rooms would only repeat a subset of them.
    rooms = ({"optimisation": optimisation} if protocol.scene_seeds else
             {"optimisation": optimisation, "held-out": held_out})
    rows = evaluate(detectors, evaluated, rooms, config,
                    {"clean": None, "random": random_music, "adversarial": result.music}, draws=protocol.draws,
                    seed=seed, progress=phase("evaluating"))
    settings = {"target": detector.target, "eot": config.as_dict(), "steps": learning.steps,
                "batch_size": learning.batch_size, "lr": learning.lr, "confidence": learning.confidence,
                "loop_seconds": protocol.loop_seconds, "notes_per_second": protocol.notes_per_second,
                "optimisation_rooms": protocol.optimisation_rooms,
                "held_out_rooms": protocol.held_out_rooms, "draws": protocol.draws,
                "random_pieces": protocol.random_pieces, "seed": seed, "seconds": time.perf_counter() - started,
                "augmentation": learning.augmentation.as_dict() if learning.augmentation is not None else None,
                "evaluate_engines": list(origins.held_out_engines), "objective": learning.objective,
                "restarts": restart_record,
                "level_choice": dict(level_choice) if level_choice is not None else None}
    if learning.queries is not None:
        # the dry check that picks the clips to learn from asks the box once per clip, outside the budget: recorded
        settings["query"] = {**learning.queries.record(queries_used), "selection_queries": len(learn.positives())}
        settings["steps"], settings["batch_size"] = len(result.history), None
        if isinstance(learning.queries, QuerySettings):  # NES renders no augmented scenes; the substitute's jams do
            settings["augmentation"] = None
    selected = {"learn_positives": int(len(positives)), "learn_positives_given": int(len(learn.positives())),
                "test_positives": int((evaluated.labels == 1).sum()),
                "test_positives_given": int((test.labels == 1).sum()),
                "test_negatives": int((evaluated.labels == 0).sum()),
                "test_negatives_given": int((test.labels == 0).sum())}
    run = JamRun(result, random_music, rows, [], rooms, selected, synth.describe(), settings)
    if protocol.scene_seeds:
        clusters = dict(origins.voices) if origins.voices is not None else {i: i for i in evaluated.ids}
        random = random_loops(protocol.loop_seconds, sample_rate, protocol.random_pieces,
                              notes_per_second=protocol.notes_per_second)
        run.seed_rows = evaluate_seeds(detectors, evaluated, config,
                                       {"clean": None, "random": random, "adversarial": result.music},
                                       seeds=protocol.scene_seeds, held_out_rooms=protocol.held_out_rooms,
                                       draws=protocol.draws, avoid=optimisation, progress=phase("scene seeds"))
        run.rows = rows + run.seed_rows
        rooms.update({f"held-out, seed {s}": room_set
                      for s, room_set in seed_rooms(config, protocol.held_out_rooms, protocol.scene_seeds).items()})
        run.seed_summary = seed_summary(run.seed_rows, clusters, n_resamples=protocol.n_resamples, seed=seed)
        run.voice_table = voice_table(run.seed_rows, clusters, origins.engines)
        if origins.engines is not None:
            run.engine_summary = seed_summary(run.seed_rows, clusters, by=origins.engines,
                                              n_resamples=protocol.n_resamples, seed=seed)
        settings["scene_seeds"] = [int(s) for s in protocol.scene_seeds]
        settings["seconds"] = time.perf_counter() - started
    if snapshots:
        # every snapshot in one pass: the same scenes, and the rooms' speech rendered once for all of them
        curve_seed = (protocol.scene_seeds or (seed + 1,))[:1]
        curve_rows = evaluate_seeds({"target": detector}, evaluated, config,
                                    {str(count): loop for count, loop in sorted(snapshots.items())},
                                    seeds=curve_seed, held_out_rooms=protocol.held_out_rooms, draws=1,
                                    avoid=optimisation)
        run.query_curve = [{"queries": count, "scene_seed": int(curve_seed[0]),
                            **detection_counts([r for r in curve_rows if r["condition"] == str(count)])}
                           for count in sorted(snapshots)]
        settings["seconds"] = time.perf_counter() - started
    run.summary = summarize(run.rows, seed)
    return run


def detection_counts(rows: Sequence[Mapping]) -> dict:
    """F1, TPR and FPR (point values, :func:`~..stats.f1_from_counts`) and the number of scenes of ``rows``."""
    values = np.array([[bool(r["label"]), bool(r["fired"])] for r in rows], dtype=bool).reshape(-1, 2)
    return {"f1": f1_from_counts(values), "tpr": rate_of(values[values[:, 0], 1]),
            "fpr": rate_of(values[~values[:, 0], 1]), "scenes": len(rows)}


def choose_music_level(detector: Detector, utterances: Utterances, config: EOTConfig, levels: Sequence[float],
                       protocol: SceneProtocol = SceneProtocol(draws=LEVEL_DRAWS, scene_seeds=(1, 2, 3, 4, 5)), *,
                       floor: float = 0.70, seed: int = 0, groups: tuple[str, Mapping[str, str]] | None = None,
                       progress: Callable[[int, int], None] | None = None) -> tuple[float, dict]:
    """The music level (dB re speech) for a jam: the loudest of ``levels`` at which random music keeps a
    mean F1 >= ``floor`` over ``protocol``'s scene seeds (:func:`~..metrics.jamming.sweep_levels`,
    :func:`~..metrics.jamming.choose_level`) on ``utterances``, clips set aside for this (never the ones the
    headline is measured on), kept where the detector handles them dry. With ``groups = (name, clip id ->
    group)`` (e.g. ``("engine", ...)``), the floor must hold for every group's positives at once
    (:func:`~..metrics.jamming.choose_level_every`), not only on the pooled mean.

    The sweep plays each level in ``protocol.held_out_rooms`` held-out rooms of scene seeds ``1000 + s`` (none an
    optimisation room of the jam's :func:`room_split` with the same ``seed``, none an evaluation seed's),
    ``protocol.draws`` scenes per clip, with ``protocol.random_pieces`` :func:`random_loops`. Only random music is
    played: the choice never sees the adversarial music. Returns ``(level, record)``: the record has every
    level's F1 per seed and its mean (and per group), the floor, the clips used and the level chosen.
    ``progress(levels_done, levels_total)``. Where no level keeps the floor, the refusal says whether the clips
    keep it with no music at all (:func:`~..metrics.jamming.clean_f1_in_rooms`): if not, no level can (SVOX Pico's
    "alexa" in rooms: F1 0.55 clean, ``experiments/jam_pico.md``), and quieter levels are not the fix.
    """
    kept = utterances.subset(clean_correct(detector, utterances, config))
    positives, negatives = int((kept.labels == 1).sum()), int((kept.labels == 0).sum())
    if positives == 0:
        raise JamError(f"None of the {int((utterances.labels == 1).sum())} '{detector.target}' clips set aside to "
                       f"choose the music level is detected clean: the level cannot be chosen on them.")
    optimisation, _ = room_split(config, protocol.optimisation_rooms, protocol.held_out_rooms, seed)
    sweep_seeds = tuple(LEVEL_SEED_OFFSET + int(s) for s in protocol.scene_seeds)
    by_group = sweep_levels_by(detector, kept, config, levels, groups[1] if groups else {}, seeds=sweep_seeds,
                               held_out_rooms=protocol.held_out_rooms, draws=protocol.draws,
                               loop_seconds=protocol.loop_seconds, pieces=protocol.random_pieces,
                               notes_per_second=protocol.notes_per_second, avoid=optimisation, progress=progress)
    sweep = by_group["all"]
    try:
        level = choose_level_every(by_group, floor) if groups else choose_level(sweep, floor)
    except JamError as error:  # a grid too loud, or clips the detector does not handle in a room at all?
        clean = clean_f1_in_rooms(detector, kept, config, seeds=sweep_seeds, held_out_rooms=protocol.held_out_rooms,
                                  draws=protocol.draws, avoid=optimisation)
        ceiling = float(np.mean(list(clean.values())))
        if ceiling < floor:
            raise JamError(f"Even with no music the detector's F1 on the {positives} positives and {negatives} "
                           f"negatives set aside for the level is {ceiling:.3f} in the sweep's rooms, below the "
                           f"floor {floor:g}: no music level can keep it. Choose level clips the detector handles "
                           f"in a room, or a lower --level-floor.") from error
        raise
    means = level_means(sweep)
    record = {"chosen_db": level, "floor": floor, "scene_seeds": list(sweep_seeds), "draws": protocol.draws,
              "positives": positives, "negatives": negatives,
              "random_f1": {f"{lvl:g}": {"per_seed": per_seed, "mean": means[lvl]}
                            for lvl, per_seed in sorted(sweep.items())}}
    if groups:
        record["by"] = groups[0]
        record["groups"] = {group: {f"{lvl:g}": mean for lvl, mean in sorted(level_means(per_level).items())}
                            for group, per_level in by_group.items() if group != "all"}
    return level, record


__all__ = ["ClipOrigins", "JamRecipe", "JamRun", "LearnSettings", "SceneProtocol", "choose_music_level",
           "jam_and_evaluate", "measured_recipe"]
