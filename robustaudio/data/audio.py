"""Reading one audio file into the waveform a model expects, with every bad case named.

Returns float32 mono ``[T]`` in [-1, 1] at the model's sample rate, ``T = clip_samples``
(cropped from the start, or zero-padded at the end).

Every change made while reading (downmix, resampling, peak scaling, padding, cropping) comes back
as a note, one per clip, in the fixed wording of :data:`NOTE_FORMATS`; :func:`summarize_notes` turns
a run's notes into one line of counts for the terminal ("resampled 12 clips from 44100 Hz to
16000 Hz; padded 3 clips shorter than 1 s"). :func:`fit_clip_to_data` sets the clip length of a
model that reads clips of any length (``clip_seconds_from_data``, e.g. ``hf:``) from the data.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, cast

import numpy as np
import soundfile
import torch
import torchaudio

from ..records import write_bytes_atomic


class LoadsClips(Protocol):
    """What the data layer reads of a model to load clips for it (a ``Classifier`` has it; data sits below
    models, so it names only these members): ``sample_rate`` (Hz), ``labels``, ``multilabel``, ``clip_samples``
    (samples)."""

    sample_rate: int
    labels: tuple[str, ...]
    multilabel: bool

    @property
    def clip_samples(self) -> int: ...


class FitsClips(Protocol):
    """A model whose clip length the data may set (``hf:`` models loaded without one): ``sample_rate`` (Hz),
    ``clip_seconds`` (s)."""

    sample_rate: int
    clip_seconds: float


SILENCE_RMS = 1e-5  # -100 dBFS: below this a clip carries no event and no SNR is defined


class AudioError(ValueError):
    """A clip that cannot be used; the message names the file, the problem and the fix."""


def check_waveform(audio: np.ndarray | torch.Tensor, name: str = "waveform") -> None:
    """Raise :class:`AudioError` for non-finite samples or a silent clip."""
    x = torch.as_tensor(audio)
    if x.numel() == 0:
        raise AudioError(f"{name}: contains no samples. Remove the file or re-export it.")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise AudioError(f"{name}: {bad} NaN/Inf samples. Repair the file (e.g. numpy.nan_to_num "
                         f"before saving) or remove it from the dataset.")
    rms = float(x.double().pow(2).mean().sqrt())
    if rms < SILENCE_RMS:
        raise AudioError(f"{name}: silent (RMS {rms:.2e}, below -100 dBFS): there is nothing to "
                         f"classify or attack. Remove the clip or check its gain.")


def fit_length(audio: torch.Tensor, samples: int) -> torch.Tensor:
    """Crop ``[..., T]`` from the start or zero-pad at the end to ``samples``."""
    length = audio.shape[-1]
    if length >= samples:
        return audio[..., :samples]
    return torch.nn.functional.pad(audio, (0, samples - length))


# What load_audio notes, one per change: "{path}: " + the text (parsed back by summarize_notes).
NOTE_FORMATS = {
    "downmixed": "downmixed {channels} channels to mono",
    "resampled": "resampled from {source} Hz to the model's {target} Hz",
    "scaled": "peak {peak:.3f} exceeds full scale; scaled to peak 1.0",
    "padded": "padded from {source:.3f} s to {target:.3f} s with zeros at the end",
    "cropped": "cropped from {source:.3f} s to the first {target:.3f} s",
}
_NOTE_PATTERNS = {kind: re.compile(": " + re.sub(r"\\{(\w+)(:[^}]*)?\\}", r"(?P<\1>[0-9.]+)", re.escape(text)) + "$")
                  for kind, text in NOTE_FORMATS.items()}


def _note(path: Path, kind: str, **values: float) -> str:
    return f"{path}: " + NOTE_FORMATS[kind].format(**values)


def load_audio(path: str | Path, sample_rate: int, clip_samples: int | None = None
               ) -> tuple[torch.Tensor, list[str]]:
    """Decode, downmix, resample, check and fit one file.

    Returns the waveform ``[T]`` and notes on what was changed (downmix, resampling, rescaling,
    padding or cropping to ``clip_samples``; wording in :data:`NOTE_FORMATS`), which callers record
    as warnings.
    """
    path = Path(path)
    notes: list[str] = []
    if not path.is_file():
        raise AudioError(f"{path}: no such file. Check the path or the dataset's metadata.csv.")
    try:
        data, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile raises LibsndfileError / RuntimeError on bad data
        raise AudioError(f"{path}: cannot be decoded ({error}). Is it a complete WAV/FLAC/OGG "
                         f"file? Re-export it or remove it from the dataset.") from error
    check_waveform(data, str(path))
    if data.shape[1] > 1:
        notes.append(_note(path, "downmixed", channels=data.shape[1]))
    audio = torch.from_numpy(data.mean(axis=1))
    if file_rate != sample_rate:
        audio = torchaudio.functional.resample(audio, file_rate, sample_rate)
        notes.append(_note(path, "resampled", source=file_rate, target=sample_rate))
    peak = float(audio.abs().max())
    if peak > 1.0:
        audio = audio / peak
        notes.append(_note(path, "scaled", peak=peak))
    if clip_samples is not None:
        if audio.shape[-1] != clip_samples:
            kind = "padded" if audio.shape[-1] < clip_samples else "cropped"
            notes.append(_note(path, kind, source=audio.shape[-1] / sample_rate, target=clip_samples / sample_rate))
        audio = fit_length(audio, clip_samples)
        check_waveform(audio, f"{path} (first {clip_samples} samples)")
    return audio.float().contiguous(), notes


def write_audio(path: str | Path, audio: torch.Tensor, sample_rate: int) -> None:
    """Write a mono waveform ``[T]`` in [-1, 1] as 16-bit PCM (WAV/FLAC by the file suffix), whole or not at all
    (a full disk raises the one-line :class:`~robustaudio.records.RunDirectoryError`)."""
    if not torch.isfinite(audio).all():
        raise AudioError(f"{path}: refusing to write NaN/Inf samples.")
    encoded = io.BytesIO()
    soundfile.write(encoded, audio.detach().cpu().clamp(-1, 1).numpy(), sample_rate, subtype="PCM_16",
                    format=Path(path).suffix.lstrip(".").upper() or "WAV")
    write_bytes_atomic(path, encoded.getvalue())


def _clips(count: int) -> str:
    return f"{count} clip{'' if count == 1 else 's'}"


def _seconds(value: str) -> str:
    return f"{float(value):g} s"


def summarize_notes(messages: Iterable[str]) -> str:
    """One line of counts for the notes :func:`load_audio` made over a run ("" if none), e.g.
    ``"resampled 12 clips from 44100 Hz to 16000 Hz; padded 3 clips shorter than 1 s"``.

    ``messages``: the notes, or the ``message`` of a run's ``warnings.jsonl`` entries of kind
    ``"note"``; other messages are ignored.
    """
    counts: Counter = Counter()
    for message in messages:
        for kind, pattern in _NOTE_PATTERNS.items():
            found = pattern.search(message)
            if found:
                values = found.groupdict()
                counts[(kind, values.get("source", "") if kind == "resampled" else "", values.get("target", ""))] += 1
                break
    parts = []
    for key, count in sorted(counts.items(), key=lambda item: (list(NOTE_FORMATS).index(item[0][0]), -item[1])):
        kind = key[0]
        if kind == "resampled":
            parts.append(f"resampled {_clips(count)} from {key[1]} Hz to {key[2]} Hz")
        elif kind == "padded":
            parts.append(f"padded {_clips(count)} shorter than {_seconds(key[2])} with zeros at the end")
        elif kind == "cropped":
            parts.append(f"cropped {_clips(count)} longer than {_seconds(key[2])} (the start kept)")
        elif kind == "downmixed":
            parts.append(f"downmixed {_clips(count)} to mono")
        else:
            parts.append(f"scaled {_clips(count)} down to peak 1.0")
    return "; ".join(parts)


def clip_samples_of(path: str | Path, sample_rate: int) -> int | None:
    """The length in samples of ``path`` once resampled to ``sample_rate`` (from its header; None if unreadable)."""
    try:
        info = soundfile.info(str(path))
    except Exception:  # unreadable: load_audio reports it when the clip is read
        return None
    if info.samplerate == sample_rate:
        return int(info.frames)
    return -(-int(info.frames) * sample_rate // int(info.samplerate))  # torchaudio's resample: ceil(T * new / old)


def fit_clip_to_data(model: LoadsClips, paths: Iterable[str | Path]) -> float | None:
    """Set ``model.clip_seconds`` to the longest clip among ``paths`` if the model asks for it.

    Only for models that read clips of any length and set ``clip_seconds_from_data`` (``hf:`` models
    loaded without ``clip_seconds``), so that a clip is not zero-padded or cropped into something its
    deployed pipeline never sees; the length is capped at ``model.max_clip_seconds`` when set (what the
    model reads at most). Call it with every clip of the dataset (not a ``--limit`` sample), before the
    first batch, so that a resumed run gets the same length. Returns the new ``clip_seconds``, or None
    (nothing to do, or no readable clip). Idempotent.
    """
    if not getattr(model, "clip_seconds_from_data", False):
        return None
    fitted = cast(FitsClips, model)  # a model that asks for it (hf:) has a settable clip_seconds
    lengths = [n for n in (clip_samples_of(p, fitted.sample_rate) for p in paths) if n]
    if not lengths:
        return None
    samples = max(lengths)
    longest = getattr(fitted, "max_clip_seconds", None)
    if longest is not None:
        samples = min(samples, int(round(longest * fitted.sample_rate)))
    fitted.clip_seconds = samples / fitted.sample_rate
    return fitted.clip_seconds
