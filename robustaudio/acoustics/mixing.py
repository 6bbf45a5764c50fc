"""Mixing at a signal-to-noise ratio, and segments of the bundled background recordings.

SNRs follow :func:`snr_db`: ``20 log10(||clean||_2 / ||added||_2)`` per
clip, i.e. the ratio of RMS levels over the whole clip. :func:`mix_at_snr` scales the added noise to
hit it exactly; only clamping to [-1, 1] can lower the realised noise (raise the SNR), and only
where the mixture clips. A silent clip (norm 0) gets no noise (its SNR is undefined).

The bundled noises (``robustaudio/data/bundled/noises``, described in its ``ATTRIBUTION.md``) are
read once per sample rate and kept in memory. Every random draw comes from a ``torch.Generator``
(``None``: torch's global RNG), drawn for the whole batch at once.
"""

from __future__ import annotations

import csv
import functools
import math

import soundfile
import torch
import torchaudio

from ..data.datasets import BUNDLED_ROOT

NOISE_DIR = BUNDLED_ROOT / "noises"
NOISE_RATE = 16000                      # the bundled noises' sample rate


def snr_db(clean: torch.Tensor, perturbation: torch.Tensor) -> torch.Tensor:
    """Signal-to-perturbation ratio ``20 log10(||clean||_2 / ||perturbation||_2)`` in dB, ``[B]``, each
    ``[B, ...]`` flattened per item (the ratio of RMS levels over the whole clip).

    ``inf`` where the perturbation is zero.
    """
    signal = clean.reshape(clean.shape[0], -1).norm(dim=1).double()
    noise = perturbation.reshape(perturbation.shape[0], -1).norm(dim=1).double()
    return (20 * torch.log10(signal / noise)).float()


class AcousticsError(ValueError):
    """A room, mixture or noise asked for with impossible settings; the message names the fix."""


def mix_at_snr(audio: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``audio + g * noise`` with ``g`` per clip such that the SNR is exactly ``snr_db``, clamped to [-1, 1].

    ``audio``, ``noise``: ``[B, T]``. ``g = ||audio|| / ||noise|| * 10^(-snr_db / 20)`` (0 for a
    silent clip or an all-zero noise).
    """
    signal_norm = audio.double().norm(dim=-1)
    noise_norm = noise.double().norm(dim=-1)
    gain = torch.where(noise_norm > 0, signal_norm / noise_norm.clamp_min(1e-300), torch.zeros_like(noise_norm))
    gain = gain * 10 ** (-float(snr_db) / 20)
    gain = gain.reshape(-1, *([1] * (noise.dim() - 1)))
    return (audio + gain.to(audio.dtype) * noise).clamp(-1.0, 1.0)


@functools.lru_cache(maxsize=4)
def _noise_bank(sample_rate: int) -> dict[str, torch.Tensor]:
    metadata = NOISE_DIR / "metadata.csv"
    if not metadata.is_file():
        raise AcousticsError(f"The bundled noises are missing at {NOISE_DIR}; rebuild them with "
                             f"`python experiments/build_noises.py`.")
    bank = {}
    with open(metadata, newline="") as handle:
        for row in csv.DictReader(handle):
            data, rate = soundfile.read(str(NOISE_DIR / row["path"]), dtype="float32")
            noise = torch.from_numpy(data)
            if rate != sample_rate:
                noise = torchaudio.functional.resample(noise, rate, sample_rate)
            bank[row["name"]] = noise
    return bank


def noise_names() -> tuple[str, ...]:
    """Names of the bundled background noises (``noises/ATTRIBUTION.md`` describes each)."""
    return tuple(_noise_bank(NOISE_RATE))


def noise_segments(batch: int, length: int, generator: torch.Generator | None = None, *,
                   sample_rate: int = 16000, noise: str | None = None) -> torch.Tensor:
    """``[batch, length]`` segments of the bundled recordings, at their recorded level (not scaled).

    Per row: the recording drawn uniformly unless ``noise`` names one, then the segment start
    drawn uniformly; a recording shorter than ``length`` is repeated. Both are drawn for the whole
    batch in two calls on ``generator``. :func:`mix_at_snr` mixes these at an SNR.
    """
    bank = _noise_bank(int(sample_rate))
    if noise is not None and noise not in bank:
        raise AcousticsError(f"Unknown background noise {noise!r}; use one of {', '.join(bank)} "
                             f"or None for a random one per clip.")
    names = list(bank) if noise is None else [noise]
    choice = torch.randint(len(names), (batch,), generator=generator)
    start = torch.rand(batch, generator=generator, dtype=torch.float64)
    segments = []
    for index, u in zip(choice.tolist(), start.tolist(), strict=True):  # slicing only: the draws are above
        recording = bank[names[index]]
        if len(recording) < length:
            recording = recording.repeat(math.ceil(length / len(recording)))
        offset = int(u * (len(recording) - length + 1))
        segments.append(recording[offset:offset + length])
    return torch.stack(segments) if segments else torch.zeros(0, length)


__all__ = ["AcousticsError", "NOISE_DIR", "NOISE_RATE", "mix_at_snr", "noise_names", "noise_segments", "snr_db"]
