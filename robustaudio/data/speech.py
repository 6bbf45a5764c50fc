"""Speech clips with their voice and engine, and splits that keep voices and engines apart.

A jammer learned on some voices is only shown to hold for new speakers if it is measured on voices
it never heard, and for synthetic speech on a *synthesiser* it never heard: two voices of one TTS
engine share its vocoder and prosody model. The sets read here (``metadata.csv`` with ``path``,
``label`` and ``engine`` and ``voice`` columns, optionally ``speaker`` and ``split``; e.g.
``robustaudio/data/bundled/wakeword`` or the set of ``experiments/make_wakeword_clips.py --voices``)
give each clip a **voice** ``"<engine>:<voice>"`` (the unit the evaluation's intervals resample)
and a **speaker** (the recorded person behind the voice where engines share one, else the voice).

:func:`engine_split` puts whole engines on the learning or the evaluation side and raises if an
engine, voice or speaker would be on both; :func:`voice_split` does the same by voice within
engines.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


class SpeechSplitError(ValueError):
    """A split that would let an engine, voice or speaker be both learned from and evaluated on."""


@dataclass(frozen=True)
class SpeechClip:
    """One clip: ``id`` (``<set name>/<path>``), its file, label, engine, voice (``engine:voice``),
    speaker, the set's own split column (or ``""``) and the text said."""

    id: str
    path: Path
    label: str
    engine: str
    voice: str
    speaker: str
    split: str = ""
    text: str = ""


def read_speech_set(root: str | Path, name: str | None = None) -> list[SpeechClip]:
    """The clips of ``root/metadata.csv`` (``engine`` and ``voice`` columns required)."""
    root = Path(root)
    name = name or root.name
    with open(root / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"path", "label", "engine", "voice"} <= set(rows[0]):
        raise SpeechSplitError(f"{root / 'metadata.csv'} needs path, label, engine and voice columns.")
    clips = []
    for row in rows:
        voice = f"{row['engine']}:{row['voice']}"
        speaker = f"speaker:{row['speaker']}" if row.get("speaker") else voice
        clips.append(SpeechClip(f"{name}/{row['path']}", root / row["path"], row["label"], row["engine"], voice,
                                speaker, row.get("split", ""), row.get("text", "")))
    return clips


def _check_apart(learn: list[SpeechClip], evaluate: list[SpeechClip], field: str) -> None:
    shared = {getattr(c, field) for c in learn} & {getattr(c, field) for c in evaluate}
    if shared:
        raise SpeechSplitError(f"{len(shared)} {field}(s) on both sides of the split: {', '.join(sorted(shared)[:5])}.")


def engine_split(clips: Iterable[SpeechClip], evaluate_engines: Iterable[str],
                 learn_engines: Iterable[str] | None = None) -> tuple[list[SpeechClip], list[SpeechClip]]:
    """(learn, evaluate): the clips of ``evaluate_engines`` are evaluated on, those of
    ``learn_engines`` (default: every other engine) learned from; the rest are dropped. Raises if an
    engine is named on both sides, or if a voice or a named speaker ends up on both."""
    clips = list(clips)
    evaluate_engines = set(evaluate_engines)
    learn_engines = ({c.engine for c in clips} - evaluate_engines) if learn_engines is None else set(learn_engines)
    if evaluate_engines & learn_engines:
        raise SpeechSplitError(f"Engine(s) {', '.join(sorted(evaluate_engines & learn_engines))} named for both "
                               f"learning and evaluation.")
    learn = [c for c in clips if c.engine in learn_engines]
    evaluate = [c for c in clips if c.engine in evaluate_engines]
    for field in ("engine", "voice", "speaker"):
        _check_apart(learn, evaluate, field)
    return learn, evaluate


def voice_split(clips: Iterable[SpeechClip], evaluate_voices: Iterable[str]
                ) -> tuple[list[SpeechClip], list[SpeechClip]]:
    """(learn, evaluate) by voice (``engine:voice`` names); raises if a speaker is on both sides."""
    clips = list(clips)
    chosen = set(evaluate_voices)
    learn = [c for c in clips if c.voice not in chosen]
    evaluate = [c for c in clips if c.voice in chosen]
    _check_apart(learn, evaluate, "speaker")
    return learn, evaluate


__all__ = ["SpeechClip", "SpeechSplitError", "engine_split", "read_speech_set", "voice_split"]
