"""``robustaudio jam``: adversarial music that stops a detector from firing, evaluated in held-out rooms."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from . import choices
from .common import (
    FINITE,
    SEED,
    FiniteFloat,
    PhaseProgress,
    default_out,
    flag,
    given,
    model_options,
    refuse_unused,
    user_errors,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..acoustics.scenes import Utterances
    from ..attacks.jamming import Detector
    from ..attacks.query_jam import QuerySettings
    from ..attacks.substitute_jam import SubstituteSettings
    from ..data.speech import SpeechClip

STREAMING_SCENE_SECONDS = 3.0   # a streaming detector's ~2 s context plus the utterance's end and a tail


def _load_detector(model_name: str, weights: str | None, trust_checkpoint: bool, target: str | None) -> Detector:
    """The model (openWakeWord without its silence padding: scenes are continuous audio) and its detector."""
    from ..acoustics.scenes import JamError
    from ..attacks.jamming import Detector
    from ..models import load_model
    streaming = model_name.startswith("openwakeword:")
    options: dict[str, Any] = {"pad_before": 0.0, "pad_after": 0.0} if streaming else {}
    model = load_model(model_name, weights, trust_checkpoint=trust_checkpoint, **options)
    if target is None:
        if len(model.labels) == 2 and model.labels[0] == f"not-{model.labels[1]}":
            target = model.labels[1]
        else:
            raise JamError(f"{model_name} has {len(model.labels)} classes: pass --target with the one to jam "
                           f"({', '.join(model.labels[:20])}{' ...' if len(model.labels) > 20 else ''}).")
    return Detector(model, target)


def _query_settings(model_name: str, detector: Detector, queries: int | None, feedback: str, method: str,
                    jam: tuple[int, int, float], augment: bool = False, scene_seconds: float = 0.1
                    ) -> QuerySettings | SubstituteSettings | None:
    """The settings for ``--queries`` (None without it): NES, or a substitute (``method``); refuses, before any
    work, a detector that gives no gradients when ``--queries`` is missing, and a budget too small to use.
    ``jam``: steps, scenes per step and learning rate of each substitute round's jam; ``augment``: its jams are
    augmented, and the scenes it asks are drawn with the same augmentation. ``scene_seconds``: the length of the
    scenes the jam scores, and so of the gradient probe (a streaming detector refuses audio shorter than its
    context)."""
    import torch

    from ..acoustics.scenes import JamError
    from ..attacks.query_jam import QuerySettings
    from ..attacks.substitute_jam import SubstituteSettings
    from ..models.base import GradientUnavailableError
    if queries is None:
        try:  # a probe with an input gradient: a black box refuses it before scoring anything
            detector.margins(torch.zeros(1, round(scene_seconds * detector.sample_rate), requires_grad=True))
        except GradientUnavailableError as error:
            raise JamError(f"{model_name} gives no gradients (a black box): jam it by its scores instead, e.g. "
                           f"--queries 20000 (NES over the music; every scored scene counts as a query).") from error
        return None
    if feedback == "steps" and not (detector.windowed or detector.stepped):
        feedback = "clip"  # one score per clip: the steps are the clip
    if method == "substitute":
        return SubstituteSettings.for_budget(queries, feedback=feedback, jam_steps=jam[0], jam_batch=jam[1],
                                             jam_lr=jam[2], augment_asks=augment)
    return QuerySettings(queries=queries, feedback=feedback,  # refuses a budget short of one NES step
                         snapshots=tuple(sorted({queries // 10, queries // 4, queries // 2} - {0})))


def _echo_progress(entry: dict, steps: int) -> None:
    """One line per substitute round, or every 50 gradient or NES steps (and the last)."""
    if "round" in entry:
        judged = f", the detector fired on {entry['box_firing']:.0%} of its scenes" if "box_firing" in entry else ""
        click.echo(f"round {entry['round']}: fitted on {entry['queries']:,} answers (fit loss "
                   f"{entry['fit_loss']:.3f}), jam loss {entry['jam_loss']:.3f}{judged}")
    elif entry["step"] % 50 == 0 or entry["step"] == steps:
        if "visibility" in entry:  # the masking objective: no detector is read while learning
            click.echo(f"step {entry['step']}: speech visibility {entry['visibility']:.3f}")
        else:
            click.echo(f"step {entry['step']}: loss {entry['loss']:.3f}, firing {entry['firing']:.2f}")


def _speech_set(root: Path | None) -> list[SpeechClip] | None:
    """The clips of ``root/metadata.csv`` with their engines and voices, or None where the data has no such
    table (folders per label, or a metadata.csv without engine and voice columns)."""
    from ..data.speech import SpeechSplitError, read_speech_set
    try:
        return read_speech_set(root) if root is not None else None
    except (SpeechSplitError, OSError):
        return None


def _utterances(root: Path | None, clips: list[SpeechClip] | None, target: str, sample_rate: int, learn_split: str,
                split: str, evaluate_engines: tuple[str, ...], level_split: str | None = None
                ) -> tuple[Utterances, Utterances, dict[str, str] | None, dict[str, str] | None, list[str]]:
    """(learn, test, voices, engines, notes). With ``clips`` (:func:`_speech_set`'s: ``engine`` and ``voice``
    columns in metadata.csv), the voices (the unit the intervals resample) and engines come from them, and
    ``evaluate_engines`` puts whole engines on the evaluation side (learning from every other engine), except
    their clips of ``level_split``, which only choose the music level; else each clip is its own voice and the
    splits are the data's."""
    from ..acoustics.scenes import JamError
    from ..attacks.jamming import load_speech, load_utterances
    from ..data.speech import engine_split
    if clips is None:
        if evaluate_engines:
            raise JamError(f"--evaluate-engine needs engine and voice columns in the data's metadata.csv ({root}).")
        learn, notes = load_utterances(root, target, sample_rate, learn_split)
        test, more = load_utterances(root, target, sample_rate, split)
        return learn, test, None, None, notes + more
    if evaluate_engines:
        unknown = sorted(set(evaluate_engines) - {c.engine for c in clips})
        if unknown:
            assert root is not None  # clips come from _speech_set(root), None without a root
            raise JamError(f"No clip of engine(s) {', '.join(unknown)} in {root / 'metadata.csv'}; its engines: "
                           f"{', '.join(sorted({c.engine for c in clips}))}.")
        learn_clips, test_clips = engine_split(clips, evaluate_engines)
        test_clips = [c for c in test_clips if level_split is None or c.split != level_split]
    else:
        learn_clips = [c for c in clips if c.split == learn_split]
        test_clips = [c for c in clips if c.split == split]
    for name, chosen in (("optimise", learn_clips), ("evaluate", test_clips)):
        if not any(c.label == target for c in chosen):
            if evaluate_engines:
                held = ", ".join(evaluate_engines)
                where = f"the engines other than {held}" if name == "optimise" else f"engine(s) {held}"
            else:
                where = f"--learn-split {learn_split!r}" if name == "optimise" else f"--split {split!r}"
            splits = sorted({c.split for c in clips if c.label == target})
            target_engines = sorted({c.engine for c in clips if c.label == target})
            raise JamError(f"No {target!r} clip to {name} on in {root}: {where} has none (its {target!r} clips are "
                           f"in split(s) {', '.join(splits) or 'none'} of engine(s) "
                           f"{', '.join(target_engines) or 'none'}). "
                           f"Name splits of its metadata.csv with --learn-split and --split, or hold out whole "
                           f"engines with --evaluate-engine.")
    learn, voices, engines, notes = load_speech(learn_clips, target, sample_rate)
    test, more_voices, more_engines, more = load_speech(test_clips, target, sample_rate)
    return learn, test, {**voices, **more_voices}, {**engines, **more_engines}, notes + more


def _level_utterances(root: Path | None, clips: list[SpeechClip] | None, target: str, sample_rate: int,
                      level_split: str, test: Utterances, voices: Mapping[str, str] | None,
                      level_by: str | None = None
                      ) -> tuple[Utterances, list[str] | None, tuple[str, dict[str, str]] | None]:
    """The clips of ``level_split`` to choose the music level on (``clips``: :func:`_speech_set`'s), their engines
    (None without ``clips``) and, with ``level_by`` (``engine`` or ``voice``), ``(level_by, clip id -> its engine
    or voice)``; refuses any clip or voice that is also evaluated on. Clips of an evaluated engine may choose the
    level (other voices of it: only random music is played to them); the level at which random music leaves a
    detector working differed by more than 20 dB between speech engines (experiments/jam_pico.md)."""
    from ..acoustics.scenes import JamError
    from ..attacks.jamming import load_speech, load_utterances
    groups, engines = None, None
    if clips is None:
        if level_by is not None:
            raise JamError(f"--level-by {level_by} needs a metadata.csv with engine and voice columns in {root}: "
                           f"drop --level-by or describe the clips.")
        chosen, _ = load_utterances(root, target, sample_rate, level_split)
        shared = set(chosen.ids) & set(test.ids)
    else:
        picked = [c for c in clips if c.split == level_split]
        if not picked:
            raise JamError(f"No clip of split {level_split!r} to choose the music level on in {root}.")
        chosen, level_voices, level_engines, _ = load_speech(picked, target, sample_rate)
        engines = sorted(set(level_engines.values()))
        if level_by is not None:
            groups = (level_by, {"voice": level_voices, "engine": level_engines}[level_by])
        shared = {level_voices[i] for i in chosen.ids} & {voices[i] for i in test.ids} if voices else set()
        shared |= set(chosen.ids) & set(test.ids)
    if not len(chosen):
        raise JamError(f"No usable clip of split {level_split!r} to choose the music level on.")
    if shared:
        raise JamError(f"--level-split {level_split}: {len(shared)} clip(s) or voice(s) are also evaluated on "
                       f"({', '.join(sorted(shared)[:3])}): choose the level on other clips.")
    return chosen, engines, groups


@click.command()
@model_options
@click.option("--target", help="Class to stop detecting (default: the wake word of a wake-word model).")
@click.option("--data", type=click.Path(exists=True, file_okay=False),
              help="Clips (metadata.csv or one folder per label); the target's label marks positives. "
                   "Default: the bundled wake-word set for openwakeword:, else the bundled minievents.")
@click.option("--learn-split", default="train", show_default=True, help="Split of the clips to optimise on.")
@click.option("--split", default="test", show_default=True, help="Split of the clips to evaluate on.")
@click.option("--music-db", type=FINITE, help="Music level relative to the speech at the microphone (dB): the "
              f"loudness constraint (default {choices.JAM_MUSIC_DB:g}, or chosen with --level-split).")
@click.option("--level-split", help="Choose the music level on the clips of this split (never the evaluation "
              "clips, e.g. a validation split): the loudest of --levels at which random music keeps a mean F1 >= "
              "--level-floor over the scene seeds. Only random music is played to choose. With --evaluate-engine, "
              "that engine's clips of this split choose the level and are not evaluated (give them other voices).")
@click.option("--levels", type=FINITE, multiple=True, default=(-14.0, -12.0, -10.0, -8.0), show_default=True,
              help="Music levels (dB re speech) --level-split tries.")
@click.option("--level-floor", type=FiniteFloat(0, 1), default=0.70, show_default=True,
              help="The random-music F1 the chosen level must keep on the --level-split clips.")
@click.option("--level-by", type=click.Choice(["engine", "voice"]),
              help="With --level-split: the floor must hold for the positives of every engine (or voice) of those "
                   "clips at once, not only on their pooled mean (a fragile population is not carried by a robust "
                   "one). Needs a metadata.csv with engine and voice columns.")
@click.option("--jitter-db", type=FINITE, default=choices.JAM_JITTER_DB, show_default=True,
              help="Optimisation plays the music at --music-db ± this (evaluation at exactly --music-db).")
@click.option("--noise-snr-db", type=FINITE, nargs=2, default=choices.JAM_NOISE_SNR_DB, show_default=True,
              help="Background noise SNR range (dB re speech).")
@click.option("--rt60", type=FINITE, nargs=2, default=choices.JAM_RT60, show_default=True,
              help="Design reverberation time range of the simulated rooms (s).")
@click.option("--scene-seconds", type=FiniteFloat(min=0.1), help="Scene length (default: 3 s for "
              "streaming detectors, the model's clip length otherwise).")
@click.option("--loop-seconds", type=FiniteFloat(min=0.5, max=60), default=4.0, show_default=True)
@click.option("--notes-per-second", type=FiniteFloat(min=0.5, max=32), default=4.0, show_default=True,
              help="The loop's rhythm grid (onsets per second), for the learned loop and the random-music baseline "
                   "alike. Measured on microWakeWord alexa with --objective masking: 8 gave loops 0.015 F1 lower "
                   "than 4 on held-out voices (within noise) while random loops on that grid mask less (F1 0.81 "
                   "against 0.73), so a denser grid widens the gap to its own baseline more than it lowers F1.")
@click.option("--steps", type=click.IntRange(min=1),
              help="Optimisation steps (default: the measured setting: 300; 2000 for --objective masking; 200 per "
                   "round for --query-method substitute).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=0.05, show_default=True)
@click.option("--rooms", "optimisation_rooms", type=click.IntRange(min=1),
              help="Simulated rooms to optimise in (and, for --query-method substitute, to ask the detector about). "
                   "Default: 64 for --query-method substitute, 16 otherwise.")
@click.option("--held-out-rooms", type=click.IntRange(min=1), default=16, show_default=True,
              help="Simulated rooms only the evaluation sees.")
@click.option("--draws", type=click.IntRange(min=1), default=4, show_default=True,
              help="Scenes per clip and room set in the evaluation.")
@click.option("--random-pieces", type=click.IntRange(min=1), default=4, show_default=True,
              help="Random loops of the synthesiser for the random-music condition.")
@click.option("--scene-seeds", type=SEED, multiple=True, default=(1, 2, 3, 4, 5), show_default=True,
              help="Also evaluate in new held-out rooms and scenes per seed, with voice-clustered intervals "
                   "(--scene-seeds 1 2 3 4 5; one value, e.g. 1, for a quick run).")
@click.option("--evaluate-engine", "evaluate_engines", multiple=True, metavar="ENGINE",
              help="Evaluate on the voices of this TTS engine (metadata.csv engine column) and learn from the "
                   "other engines: the headline is then on speech the music never heard. Repeat for several.")
@click.option("--augment/--no-augment", default=None,
              help="Talker and device augmentation while learning (speed, pitch, formants, EQ, loudspeaker and "
                   "microphone bands). Default: on for --query-method substitute (its jams, and the scenes it asks "
                   "the detector about, as measured in experiments/jam_query.md; device bands on half of its "
                   "scenes, which held on engines the loops never heard) and for --objective masking, off "
                   "otherwise.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--transfer-to", "transfer_to", metavar="MODEL",
              help="Also score every scene with this detector (black-box transfer, e.g. microwakeword:alexa): "
                   "the music is optimised on --model only.")
@click.option("--queries", type=click.IntRange(min=1),
              help="Query-based jamming (black box): search the synthesiser with NES on the detector's scores alone, "
                   "this many scored scenes in all, instead of gradient steps (--steps, --batch-size, --lr and "
                   "--augment are then refused, except with --query-method substitute, whose every round "
                   "they set). The way to jam a detector that gives no gradients, e.g. "
                   "microwakeword:alexa; the report draws F1 against queries.")
@click.option("--query-feedback", type=click.Choice(["steps", "clip"]), default="steps", show_default=True,
              help="With --queries: what each query answers: the score of every step of the detector's stream "
                   "(where it streams) or the clip's score alone.")
@click.option("--query-method", type=click.Choice(["nes", "substitute"]), default="nes", show_default=True,
              help="With --queries: nes searches the synthesiser's parameters on the scores; substitute fits a "
                   "streaming DS-CNN to the detector's answers and jams it with gradients, round after round "
                   "(16 kHz detectors; --augment applies to its jams).")
@click.option("--objective", type=click.Choice(["detector", "masking"]), default="detector", show_default=True,
              help="What the loop is learned against: the detector's gradients, or masking: no detector at all "
                   "(the word's visibility in microWakeWord's public TFLite-Micro front end, 16 kHz), so that the "
                   "music never depends on the model it is played to; it needs no gradients and no queries. "
                   "Measured in experiments/jam_surrogates.md.")
@click.option("--restarts", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --objective masking: learn this many loops (seeds --seed, --seed + 1, ...) and keep the one "
                   "that hides the word best in rooms of its own, still reading no detector (a weak selector: the "
                   "best of its kind against microWakeWord in seven of ten readings, the worse of two in the other "
                   "three; each loop costs --steps).")
@click.option("--out", type=click.Path(file_okay=False), help="Output directory (default: robustaudio-runs/jam-*).")
def jam(model_name: str, weights: str | None, trust_checkpoint: bool, target: str | None, data: str | None,
        learn_split: str, split: str, music_db: float | None, level_split: str | None, levels: tuple[float, ...],
        level_floor: float, level_by: str | None, jitter_db: float, noise_snr_db: tuple[float, float],
        rt60: tuple[float, float], scene_seconds: float | None, loop_seconds: float, notes_per_second: float,
        steps: int | None, batch_size: int, lr: float, optimisation_rooms: int | None, held_out_rooms: int, draws: int,
        random_pieces: int, scene_seeds: tuple[int, ...], evaluate_engines: tuple[str, ...], augment: bool | None,
        seed: int, transfer_to: str | None, queries: int | None, query_feedback: str,
        query_method: str, objective: str, restarts: int, out: str | None) -> None:
    """Adversarial music: a Karplus-Strong loop optimised over simulated rooms so that the detector stops
    firing on its target, then F1 / TPR / FPR clean, with random music and with the adversarial music,
    in the optimisation rooms and in held-out rooms. With --queries the loop is searched on the detector's
    scores alone (a black box), every scored scene counted."""
    import torch

    from ..acoustics.scenes import EOTConfig, JamError
    from ..attacks.jamming import Detector
    from ..attacks.music import MusicError
    from ..models import load_model
    from ..report.jam import headline, jam_headline, write_jam_report
    from ..runner.jam import (
        LEVEL_DRAWS,
        ClipOrigins,
        LearnSettings,
        SceneProtocol,
        choose_music_level,
        jam_and_evaluate,
        measured_recipe,
    )
    if level_split is not None and music_db is not None:
        raise click.UsageError("--music-db sets the level and --level-split chooses it: pass one of them.")
    if level_by is not None and level_split is None:
        raise click.UsageError("--level-by says how --level-split chooses the level: pass --level-split too.")
    if objective == "masking" and queries is not None:
        raise click.UsageError("--objective masking reads no detector, so it spends no queries: drop --queries.")
    nes = queries is not None and query_method == "nes"
    refuse_unused({option: why for option, why, unused in (
        *((flag(name), f"{what}: add --level-split", given(name) and level_split is None)
          for name, what in (("levels", "are the levels --level-split tries"),
                             ("level_floor", "is the F1 --level-split keeps"))),
        *((flag(name), "belongs to --queries (query-based jamming)", given(name) and queries is None)
          for name in ("query_method", "query_feedback")),
        *((flag(name), "sets gradient optimisation, which --queries (NES) does not run: add "
           "--query-method substitute, or drop it", given(name) and nes)
          for name in ("steps", "batch_size", "lr", "augment")),
    ) if unused})
    if restarts > 1 and objective != "masking":
        raise click.UsageError("--restarts picks among masking loops by how well they hide the word: add "
                               "--objective masking (or drop --restarts).")
    kind = "masking" if objective == "masking" else "detector" if queries is None else query_method
    recipe = measured_recipe(kind, steps=steps, augment=augment, rooms=optimisation_rooms)  # given values win
    steps, augment, optimisation_rooms = recipe.steps, recipe.augment, recipe.optimisation_rooms
    if level_split is not None and level_split == split and not evaluate_engines:
        raise click.UsageError(f"--level-split {level_split} is the evaluation split: choose the level on other clips.")
    torch.manual_seed(seed)
    from ..acoustics import require_pyroomacoustics
    from ..records import make_folder
    try:
        require_pyroomacoustics()  # the scenes are simulated rooms: fail before loading anything
        detector = _load_detector(model_name, weights, trust_checkpoint, target)
        protocol = SceneProtocol(optimisation_rooms=optimisation_rooms, held_out_rooms=held_out_rooms, draws=draws,
                                 random_pieces=random_pieces, loop_seconds=loop_seconds,
                                 notes_per_second=notes_per_second, scene_seeds=tuple(scene_seeds))
        if scene_seconds is None:
            streaming = detector.windowed or detector.stepped
            scene_seconds = STREAMING_SCENE_SECONDS if streaming else float(detector.model.clip_seconds)
        query_settings = (None if objective == "masking" else  # reads no detector: no gradient probe
                          _query_settings(model_name, detector, queries, query_feedback, query_method,
                                          (steps, batch_size, lr), augment, scene_seconds))
        config = EOTConfig(music_db=choices.JAM_MUSIC_DB if music_db is None else music_db, jitter_db=jitter_db,
                           noise_snr_db=cast("tuple[float, float]", tuple(noise_snr_db)),
                           rt60=cast("tuple[float, float]", tuple(rt60)), scene_seconds=scene_seconds,
                           sample_rate=detector.sample_rate)
        from ..data.datasets import BUNDLED_ROOT

        wake_word = model_name.startswith(("openwakeword:", "microwakeword:", "microwakeword-float:"))
        bundled = BUNDLED_ROOT / choices.WAKEWORD_DATA if wake_word else None
        root = Path(data) if data else bundled
        clips = _speech_set(root)
        learn, test, voices, engines, notes = _utterances(root, clips, detector.target, detector.sample_rate,
                                                          learn_split, split, tuple(evaluate_engines), level_split)
        if learn.ids == test.ids:
            notes.append(f"the data has no {learn_split!r}/{split!r} split: the same clips are optimised on and "
                         f"evaluated (the rooms are still held out).")
        level_choice = None
        if level_split is not None:
            level_clips, level_engines, groups = _level_utterances(
                root, clips, detector.target, detector.sample_rate, level_split, test, voices, level_by)
            click.echo(f"choosing the music level on split {level_split!r} ({len(level_clips)} clips): "
                       f"{', '.join(f'{v:g}' for v in levels)} dB")
            level_progress = PhaseProgress("level", {"choosing the level": "levels"})
            level, level_choice = choose_music_level(
                detector, level_clips, config, levels,
                replace(protocol, draws=LEVEL_DRAWS, scene_seeds=protocol.scene_seeds or (1,)), floor=level_floor,
                seed=seed, groups=groups,
                progress=lambda done, total: level_progress("choosing the level", done, total))
            level_progress.close()
            level_choice["split"] = level_split
            if level_engines is not None:
                level_choice["engines"] = level_engines
                level_choice["evaluated_engines"] = sorted(set(level_engines) & set(evaluate_engines))
            for value, entry in level_choice["random_f1"].items():
                click.echo(f"  {value} dB: random-music F1 mean {entry['mean']:.3f} over scene seeds")
            for group, means in level_choice.get("groups", {}).items():
                click.echo(f"  {level_by} {group}: " + ", ".join(f"{v} dB {m:.3f}" for v, m in means.items()))
            config = replace(config, music_db=level)
        extra = {} if not transfer_to else {
            transfer_to: Detector(load_model(transfer_to, trust_checkpoint=trust_checkpoint), detector.target)}
        out_dir = Path(out) if out else default_out("jam", [model_name, detector.target, config.music_db,
                                                            level_split, level_by, steps, seed, transfer_to,
                                                            scene_seeds, evaluate_engines, augment, queries,
                                                            query_feedback, query_method,
                                                            *([objective] if objective != "detector" else []),
                                                            *([restarts] if restarts > 1 else [])])
        make_folder(out_dir)  # before the hours of optimisation whose results would have nowhere to go
        click.echo(f"jamming {model_name} ({detector.target!r}) at {config.music_db:g} dB re speech; writing {out_dir}")
        progress = PhaseProgress("jam", {"optimising": "steps", "evaluating": "scenes", "scene seeds": "scenes"})
        learning = LearnSettings(steps=steps, batch_size=batch_size, lr=lr, objective=objective, restarts=restarts,
                                 augmentation=recipe.augmentation, queries=query_settings)
        run = jam_and_evaluate(
            detector, learn, test, config, learning, protocol, seed=seed, extra_detectors=extra,
            origins=ClipOrigins(voices, engines, tuple(evaluate_engines)), level_choice=level_choice,
            callback=lambda entry: _echo_progress(entry, steps), progress=progress)
        progress.close()
    except user_errors(JamError, MusicError) as error:
        raise click.ClickException(str(error)) from error
    if not bool(torch.isfinite(run.result.music).all()):
        raise click.ClickException("The optimisation diverged: the learned music holds NaN/Inf samples. Lower --lr "
                                   "(or --steps) and rerun; nothing was written.")
    card = write_jam_report(out_dir, run, model_name, notes)
    for rooms, values in headline(run.summary).items():
        click.echo(f"F1 in {rooms} rooms: " + ", ".join(f"{c} {v:.3f}" for c, v in values.items()))
    for row in run.seed_summary:
        if row["detector"] == "target":
            click.echo(f"held-out rooms, scene seeds {' '.join(map(str, scene_seeds))} ({row['voices']} voices): "
                       f"{row['condition']} F1 {row['f1']['value']:.3f} [{row['f1']['ci95'][0]:.3f}, "
                       f"{row['f1']['ci95'][1]:.3f}] (voice-clustered)")
    if transfer_to:
        for rooms, values in headline(run.summary, transfer_to).items():
            click.echo(f"{transfer_to}, F1 in {rooms} rooms: " + ", ".join(f"{c} {v:.3f}" for c, v in values.items()))
    flagged = [flag.name for flag in jam_headline(card).flags]
    if flagged:  # the report opens with them and their fixes; say so here too, where the run is watched
        click.echo(f"flags: {', '.join(flagged)} (the report's first lines give each one's fix)", err=True)
    click.echo(f"report: {out_dir / 'report.html'}")
