"""The examples' audio: the :class:`Example` and :class:`Listen` records of the section, 16-bit PCM WAV
encoding (:func:`wav_bytes`), the amplification of δ to be heard (:func:`amplification`) and the cap on
the embedded audio (:data:`AUDIO_CAP_BYTES`, the WAV files under ``listen/``)."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AUDIO_CAP_BYTES = 2_000_000  # WAV bytes embedded in report.html, all examples together
LISTEN_DIR = "listen"
AMPLIFY_PEAK = 0.5  # δ is amplified (1-2-5 steps) until its peak reaches at most this much of full scale


@dataclass
class Example:
    clip_id: str
    label: str
    why: str              # why this clip was chosen
    recorded: str         # the record's outcome
    recomputed: str       # the recomputed outcome
    snr_db: float | None  # of the recomputed perturbation
    amplify: int
    wavs: dict[str, bytes]  # clean / adversarial / delta -> WAV bytes
    figure: bytes           # JPEG of the three spectrograms
    captions: dict[str, str] | None = None  # wav key -> player caption (default: the attack's three)


@dataclass
class Listen:
    """The section: ``intro`` (or the reason it is skipped), the examples, and what the cap left out."""

    intro: str
    examples: list[Example]
    left_out: int = 0


def _keep_audio(wavs: dict[str, bytes], folder: Path, number: int, used: int) -> bool:
    """Write example ``number``'s WAVs as ``folder/NN-<name>.wav`` unless they would take the embedded audio
    past :data:`AUDIO_CAP_BYTES` (``used`` so far); says whether they were kept."""
    if used + sum(len(w) for w in wavs.values()) > AUDIO_CAP_BYTES:
        return False
    for name, data in wavs.items():
        (folder / f"{number:02d}-{name}.wav").write_bytes(data)
    return True


def amplification(peak: float, target: float = AMPLIFY_PEAK) -> int:
    """The largest of 1, 2, 5, 10, 20, ... with ``N · peak <= target`` (1 for a silent δ)."""
    if peak <= 0 or not np.isfinite(peak):
        return 1
    best = 1
    for exponent in range(0, 9):
        for mantissa in (1, 2, 5):
            n = mantissa * 10 ** exponent
            if n * peak <= target:
                best = n
    return best


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """Mono 16-bit PCM WAV of ``samples`` in [-1, 1] (clipped)."""
    pcm = (np.clip(np.asarray(samples, dtype=np.float64), -1, 1) * 32767).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(int(rate))
        handle.writeframes(pcm.tobytes())
    return buffer.getvalue()
