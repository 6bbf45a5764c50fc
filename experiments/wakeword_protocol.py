"""What the jamming studies share (``jam_heldout.py``, ``jam_query.py``, ``jam_surrogates.py``): the engine
split of their speech and the way they print an estimate.

- **learn**: the bundled set's eSpeak NG ``train`` clips and every eSpeak NG clip of ``--voices`` saying
  the wake word, minus any voice of the validation set;
- **validate**: the bundled set's eSpeak NG ``test`` clips (positives and negatives), for choosing settings;
- **evaluate**: the ``--voices`` clips of flite and Festival (never learned from).

:func:`robustaudio.data.speech.engine_split` raises if an engine, voice or speaker were on both sides.

Leave one engine out (``--test-engine`` of ``jam_heldout.py`` and ``jam_query.py``): :func:`leave_one_engine_out`
moves some voices of the other evaluation engine to learn and validate and keeps the test engine alone in
evaluate; :func:`learn_from_folders` adds ``--accented`` folders to learn; :func:`engine_level` then chooses the
level for every validation engine at once.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Container
from pathlib import Path

import torch

from robustaudio.acoustics.scenes import EOTConfig, Utterances
from robustaudio.attacks.jamming import Detector, load_speech
from robustaudio.data.datasets import BUNDLED_ROOT
from robustaudio.data.speech import SpeechClip, engine_split, read_speech_set, voice_split
from robustaudio.metrics.jamming import choose_level, choose_level_every, clean_correct, sweep_levels_by

LEARN_ENGINES = ("espeak-ng",)
EVALUATE_ENGINES = ("flite", "festival")


def speech_split(voices_dir: Path, *, word: str = "alexa", bundled_only: bool = False, quick: bool = False
                 ) -> dict[str, list[SpeechClip]]:
    """``{"learn", "validate", "evaluate"}`` clips (see the module) for the wake word ``word`` (a label:
    ``alexa``, ``hey_jarvis``); ``bundled_only``: learn from the bundled eSpeak NG train voices alone; ``quick``:
    a third of validate / evaluate and a sixth of learn. Validation negatives include the bundled clips of the
    other wake word."""
    bundled = read_speech_set(BUNDLED_ROOT / "wakeword", "bundled")
    voices = read_speech_set(voices_dir, "voices")
    validate = [c for c in bundled if c.split == "test" and c.engine in LEARN_ENGINES]
    learn, evaluate = engine_split([c for c in bundled if c.split == "train"] + voices, EVALUATE_ENGINES,
                                   LEARN_ENGINES)
    learn, _ = voice_split(learn, {c.voice for c in validate})
    learn = [c for c in learn if c.label == word]
    evaluate = [c for c in evaluate if c.id.startswith("voices/")]
    if bundled_only:
        learn = [c for c in learn if c.id.startswith("bundled/")]
    engine_split(learn + validate + evaluate, EVALUATE_ENGINES, LEARN_ENGINES)  # raises on any leak
    if quick:
        learn, validate, evaluate = learn[::6], validate[::3], evaluate[::3]
    return {"learn": learn, "validate": validate, "evaluate": evaluate}


def detectable_sets(voices_dir: Path, detector: Detector, config: EOTConfig, *, bundled_only: bool = False,
                    quick: bool = False) -> dict[str, dict]:
    """learn / validate / evaluate (:func:`speech_split` for ``detector.target``) as utterances with their voices
    and engines, kept where the detector handles them dry (learn: its positives only), with the counts given
    and kept."""
    sets = speech_split(voices_dir, word=detector.target, bundled_only=bundled_only, quick=quick)
    out = {}
    for name, clips in sets.items():
        utterances, voice_of, engine_of, notes = load_speech(clips, detector.target, detector.sample_rate)
        keep = clean_correct(detector, utterances, config)
        if name == "learn":
            keep &= utterances.labels == 1
        kept = utterances.subset(keep)
        out[name] = {"utterances": kept, "voices": voice_of, "engines": engine_of, "notes": notes,
                     "given": {"positives": int(utterances.labels.sum()),
                               "negatives": int((utterances.labels == 0).sum())},
                     "kept": kept_counts(kept, voice_of, engine_of)}
        log(f"{name}: kept {out[name]['kept']} of {out[name]['given']}")
    return out


def kept_counts(kept: Utterances, voice_of: dict[str, str], engine_of: dict[str, str]) -> dict:
    """Positives, negatives, voices, voices with a positive, and engines of the clips ``kept``."""
    return {"positives": int(kept.labels.sum()), "negatives": int((kept.labels == 0).sum()),
            "voices": len({voice_of[i] for i in kept.ids}),
            "positive_voices": len({voice_of[i] for i, y in zip(kept.ids, kept.labels.tolist()) if y}),
            "engines": sorted({engine_of[i] for i in kept.ids})}


CLUSTER_CHOICES = ("voice", "speaker")


def cluster_of(clips: list[SpeechClip], by: str = "voice", loaded: Container[str] | None = None) -> dict[str, str]:
    """clip id -> the unit an interval resamples: the clip's ``voice``, or with ``by="speaker"`` its ``speaker``
    (the recorded person behind a voice where several voices share one, e.g. Open JTalk's speaking styles);
    only the ids in ``loaded`` (e.g. the voices :func:`load_speech` returns: the clips that decoded) where given."""
    if by not in CLUSTER_CHOICES:
        raise SystemExit(f"cluster by {by!r}: choose one of {', '.join(CLUSTER_CHOICES)}.")
    return {c.id: c.voice if by == "voice" else c.speaker for c in clips if loaded is None or c.id in loaded}


def fresh_set(folder: Path, detector: Detector, config: EOTConfig, only_voices: list[str] | None = None,
              cluster_by: str = "voice") -> dict:
    """The fresh clips the detector handles dry (of ``only_voices`` where given; ``only_voices`` names values of
    the ``voice`` column either way), with the unit their intervals resample (:func:`cluster_of` ``cluster_by``)
    as ``voices``, the counts kept (``voices`` counted in that unit), and ``checked``: how many clips the detector
    was asked about dry."""
    clips = [c for c in read_speech_set(folder, "fresh") if c.split == "fresh"]
    if only_voices:
        unknown = set(only_voices) - {c.voice for c in clips}
        if unknown:
            raise SystemExit(f"--only-voices {sorted(unknown)} are not voices of {folder}.")
        clips = [c for c in clips if c.voice in only_voices]
    if not clips:
        raise SystemExit(f"{folder} has no clips of split 'fresh': make it with "
                         f"`python experiments/make_wakeword_clips.py {folder} --accented --word ...`.")
    utterances, voice_of, engine_of, notes = load_speech(clips, detector.target, detector.sample_rate)
    voice_of = cluster_of(clips, cluster_by, loaded=voice_of)
    kept = utterances.subset(clean_correct(detector, utterances, config))
    counts = kept_counts(kept, voice_of, engine_of)
    log(f"fresh ({detector.target}): kept {counts} of {len(utterances.ids)} clips (clusters: {cluster_by})")
    return {"utterances": kept, "voices": voice_of, "engines": engine_of, "notes": notes, "kept": counts,
            "checked": len(utterances.ids)}


def fmt(estimate: dict, digits: int = 3) -> str:
    """``value [low, high]`` of a bootstrap estimate."""
    low, high = estimate["ci95"]
    return f"{estimate['value']:.3f} [{low:.{digits}f}, {high:.{digits}f}]"


def validation_level(detector: Detector, data: dict, base: EOTConfig, levels, seeds, optimisation,
                     given: float | None = None, *, by_engine: bool = False) -> tuple[dict, float]:
    """``given``, or :func:`engine_level` on ``data``'s validation clips: the level sweep and the level."""
    if given is not None:
        return {}, given
    return engine_level(detector, data["validate"], base, levels, seeds, optimisation, by_engine=by_engine)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def joined(first: Utterances, second: Utterances) -> Utterances:
    """The clips of both sets, zero-padded to the longer one's width."""
    width = max(first.audio.shape[1], second.audio.shape[1])
    audio = torch.cat([torch.nn.functional.pad(u.audio, (0, width - u.audio.shape[1])) for u in (first, second)])
    return Utterances(first.ids + second.ids, audio, torch.cat([first.lengths, second.lengths]),
                      torch.cat([first.labels, second.labels]))


def add_positives(learn: dict, part: dict, chosen, name: str, repeat: int = 1) -> None:
    """Add ``part``'s positives whose id ``chosen`` accepts to the learning set ``learn`` (in place),
    ``repeat`` times each (so that a small population is drawn into batches as often as ``repeat`` clips)."""
    keep = torch.tensor([bool(chosen(i)) and y == 1
                         for i, y in zip(part["utterances"].ids, part["utterances"].labels.tolist())])
    added = part["utterances"].subset(keep)
    for _ in range(repeat):
        learn["utterances"] = joined(learn["utterances"], added)
    learn["voices"] = {**learn["voices"], **{i: part["voices"][i] for i in added.ids}}
    learn["engines"] = {**learn["engines"], **{i: part["engines"][i] for i in added.ids}}
    learn["kept"] = kept_counts(learn["utterances"], learn["voices"], learn["engines"])  # counted, not tallied
    learn.setdefault("added", []).append({"from": name, "positives": len(added.ids), "repeat": repeat,
                                          "voices": sorted({part["voices"][i] for i in added.ids}),
                                          "checked_dry": part.get("checked")})
    log(f"learn: + {len(added.ids)} positives of {name} ({len({part['voices'][i] for i in added.ids})} voices)")


def leave_one_engine_out(sets: dict, args: argparse.Namespace) -> None:
    """``--test-engine``: keep only that engine's clips in ``evaluate``; learn also from the other held-out engine's
    ``--learn-voices`` (positives) and add its ``--validate-voices`` (every clip) to ``validate``. Raises on a voice
    named twice, a voice of the test engine on the learning or validation side, or an unknown voice."""
    evaluate = sets["evaluate"]
    engine_of, voice_of = evaluate["engines"], evaluate["voices"]
    other = {voice_of[i] for i in evaluate["utterances"].ids if engine_of[i] != args.test_engine}
    named = set(args.learn_voices) | set(args.validate_voices)
    if set(args.learn_voices) & set(args.validate_voices) or not named <= other:
        raise SystemExit(f"--learn-voices and --validate-voices must be distinct voices of the engine that is not "
                         f"--test-engine {args.test_engine}: {sorted(other)}.")
    add_positives(sets["learn"], evaluate, lambda i: voice_of[i] in args.learn_voices,
                  f"{'+'.join(sorted(args.learn_voices))} (leave {args.test_engine} out)", args.learn_repeat)
    ids = evaluate["utterances"].ids
    validate = sets["validate"]
    extra = evaluate["utterances"].subset(torch.tensor([voice_of[i] in args.validate_voices for i in ids]))
    validate["utterances"] = joined(validate["utterances"], extra)
    validate["voices"] = {**validate["voices"], **{i: voice_of[i] for i in extra.ids}}
    validate["engines"] = {**validate["engines"], **{i: engine_of[i] for i in extra.ids}}
    validate["kept"] = {**kept_counts(validate["utterances"], validate["voices"], validate["engines"]),
                        "added": {"voices": sorted(args.validate_voices), "clips": len(extra.ids)}}
    evaluate["utterances"] = evaluate["utterances"].subset(torch.tensor([engine_of[i] == args.test_engine
                                                                          for i in ids]))
    kept = evaluate["utterances"]
    evaluate["kept"] = kept_counts(kept, voice_of, engine_of)
    seen = {voice_of.get(i) for i in sets["learn"]["utterances"].ids} | {validate["voices"].get(i)
                                                                       for i in validate["utterances"].ids}
    leaked = seen & {voice_of[i] for i in kept.ids}
    if leaked:
        raise SystemExit(f"Voices of the test engine on the learning or validation side: {sorted(leaked)}.")
    log(f"leave {args.test_engine} out: validate + {len(extra.ids)} clips of {sorted(args.validate_voices)}; "
        f"evaluate {evaluate['kept']}")


def learn_from_folders(sets: dict, folders, detector: Detector, config: EOTConfig, repeat: int = 1,
                       hold_out=()) -> None:
    """Add the positives of ``--accented`` folders (split ``fresh``) that ``detector`` handles dry to
    ``sets["learn"]`` (in place), ``repeat`` times each, except the voices of ``hold_out`` (full voice names)."""
    for folder in folders:
        fresh = fresh_set(folder, detector, config)
        unknown = set(hold_out) - set(fresh["voices"].values())
        if unknown:
            raise SystemExit(f"--hold-out-voices {sorted(unknown)} are not voices of {folder}: "
                             f"its voices are {sorted(set(fresh['voices'].values()))}.")
        add_positives(sets["learn"], fresh, lambda i, f=fresh: f["voices"][i] not in hold_out,
                      f"{folder} (held out: {', '.join(hold_out) or 'none'})", repeat)


def engine_level(detector: Detector, validate: dict, base: EOTConfig, levels, seeds, optimisation, *,
                 by_engine: bool, draws: int = 2) -> tuple[dict, float]:
    """The sweep and the level from ``validate``'s clips: with ``by_engine`` (validation voices of several
    engines, as in a leave-one-engine-out fold) the loudest of ``levels`` keeping random-music F1 >= 0.70 for
    every engine at once (``validate["sweep_by_engine"]`` is set); otherwise for the pooled mean. Never in
    ``optimisation``'s rooms."""
    # {} pools the clips, as sweep_levels does
    sweeps = sweep_levels_by(detector, validate["utterances"], base, levels, validate["engines"] if by_engine else {},
                             seeds=tuple(seeds), draws=draws, avoid=optimisation)
    for group, group_sweep in sweeps.items():
        for level, per_seed in group_sweep.items():
            log(f"level {level:g} dB, {group}: random-music F1 per seed {[round(v, 3) for v in per_seed.values()]}")
    engines = {g: v for g, v in sweeps.items() if g != "all"}
    if engines:
        validate["sweep_by_engine"] = sweeps
    level = choose_level_every(engines) if engines else choose_level(sweeps["all"])
    log(f"level chosen on the validation clips{' (every engine at once)' if engines else ''}: {level:g} dB")
    return sweeps["all"], level
