"""What the jamming studies share (``jam_heldout.py``, ``jam_query.py``, ``jam_surrogates.py``): the engine
split of their speech and the way they print an estimate.

- **learn**: the bundled set's eSpeak NG ``train`` clips and every eSpeak NG clip of ``--voices`` saying
  the wake word, minus any voice of the validation set;
- **validate**: the bundled set's eSpeak NG ``test`` clips (positives and negatives), for choosing settings;
- **evaluate**: the ``--voices`` clips of flite and Festival (never learned from).

:func:`robustaudio.data.speech.engine_split` raises if an engine, voice or speaker were on both sides.
"""

from __future__ import annotations

import time
from pathlib import Path

from robustaudio.acoustics.scenes import EOTConfig, Utterances
from robustaudio.attacks.jamming import Detector, load_speech
from robustaudio.data.datasets import BUNDLED_ROOT
from robustaudio.data.speech import SpeechClip, engine_split, read_speech_set, voice_split
from robustaudio.metrics.jamming import choose_level, clean_correct, sweep_levels

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


def fresh_set(folder: Path, detector: Detector, config: EOTConfig, only_voices: list[str] | None = None) -> dict:
    """The fresh clips the detector handles dry (of ``only_voices`` where given), with their voices and the
    counts given and kept."""
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
    kept = utterances.subset(clean_correct(detector, utterances, config))
    counts = kept_counts(kept, voice_of, engine_of)
    log(f"fresh ({detector.target}): kept {counts} of {len(utterances.ids)} clips")
    return {"utterances": kept, "voices": voice_of, "engines": engine_of, "notes": notes, "kept": counts}


def fmt(estimate: dict, digits: int = 3) -> str:
    """``value [low, high]`` of a bootstrap estimate."""
    low, high = estimate["ci95"]
    return f"{estimate['value']:.3f} [{low:.{digits}f}, {high:.{digits}f}]"


def validation_level(detector: Detector, data: dict, base: EOTConfig, levels, seeds, optimisation,
                     given: float | None = None) -> tuple[dict, float]:
    """``given``, or the loudest of ``levels`` at which random music keeps the mean F1 over ``seeds`` >= 0.70 on
    ``data``'s validation clips (held-out rooms, never ``optimisation``): the level sweep and the level."""
    if given is not None:
        return {}, given
    sweep = sweep_levels(detector, data["validate"]["utterances"], base, levels, seeds=tuple(seeds), avoid=optimisation)
    level = choose_level(sweep)
    log(f"level sweep (random-music F1 per seed): {sweep}; chosen {level:g} dB")
    return sweep, level


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
