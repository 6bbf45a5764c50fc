"""Natural corruptions (noise, occlusion, room echo): plain functions and a registry.

Every corruption is a function ``fn(x, severity, generator, *, sample_rate=16000, **options)``
that returns a new tensor of ``x``'s shape and never changes ``x``:

- waveform corruptions take ``audio`` ``[B, T]`` in [-1, 1] at ``sample_rate`` Hz and return
  samples clamped to [-1, 1];
- feature corruptions take the model's normalised features ``[B, F, frames]``
  (``Classifier.features``; feed the result to ``Classifier.forward_features``) and are unbounded.

``generator`` (a CPU ``torch.Generator``) drives every random draw, so a seeded generator gives
the same output every time; ``None`` uses torch's global RNG. Deterministic corruptions
(occlusion) ignore it. A severity of "no corruption" is never in a registry entry's grid: clean
accuracy is measured once, separately.

SNRs follow :func:`robustaudio.attacks.threat.snr_db`: ``20 log10(||clean||_2 / ||added||_2)``
per clip, i.e. the ratio of RMS levels over the whole clip. The added noise is scaled to hit it
exactly (:func:`robustaudio.acoustics.mix_at_snr`); only clamping to [-1, 1] can lower the realised
noise (raise the SNR), and only where the mixture clips. A silent clip (norm 0) gets no noise (its
SNR is undefined).

The mixing, the bundled noise recordings and the room simulation live in :mod:`robustaudio.acoustics`
(shared with the jamming attack's scenes); this module wraps them as corruptions. Reverb puts each
clip in one of a fixed bank of 16 simulated rooms per RT60 (drawn from a fixed seed, each simulated
once per process, the first time a clip uses it) and convolves the whole batch in one FFT
convolution on the audio's device: the same rooms, picks and output as before the move (to float
tolerance), only faster.

``CORRUPTIONS`` maps a name to a :class:`Corruption` (function, domain, severity grid with its
unit, tag ``[paper]`` for the thesis's protocol (§4 of the methods spec) or ``[ours]``);
``CORRUPTIONS["typo"]`` raises :class:`UnknownCorruption` listing the valid names.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..acoustics import (
    ROOM_BANK,
    RT60_RANGE,
    AcousticsError,
    bank_responses,
    mix_at_snr,
    noise_segments,
    require_pyroomacoustics,
    reverberate,
    room_impulse_response,
)

POSITIONS = ("start", "middle", "end")
FILLS = ("min", "zero")
DOMAINS = ("waveform", "feature")


class CorruptionError(ValueError):
    """A corruption asked for with an impossible severity, option or input shape."""


class UnknownCorruption(CorruptionError, KeyError):
    """A corruption name that is not in the registry; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _check_waveform(audio: torch.Tensor, name: str) -> None:
    if audio.dim() != 2 or not audio.is_floating_point():
        raise CorruptionError(f"{name} takes float audio [B, T]; got {tuple(audio.shape)} "
                              f"{audio.dtype}. Add a batch axis with audio.unsqueeze(0).")


def _check_severity(value: float, name: str, low: float, high: float, unit: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and low <= value <= high):
        raise CorruptionError(f"{name}: severity {value} {unit} is outside [{low:g}, {high:g}].")
    return value


def _per_clip(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[B]`` -> ``[B, 1, ..., 1]`` broadcastable against ``like``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


# ---------------------------------------------------------------------------------------------
# Gaussian noise
# ---------------------------------------------------------------------------------------------


def gaussian_snr(audio: torch.Tensor, snr_db: float, generator: torch.Generator | None = None, *,
                 sample_rate: int = 16000) -> torch.Tensor:
    """White Gaussian noise at ``snr_db`` dB below each clip's own level.

    Args:
        audio: ``[B, T]`` in [-1, 1].
        snr_db: signal-to-noise ratio in dB, per clip (see the module docstring).
        generator: draws the noise.
        sample_rate: unused (white noise has no time scale); kept for the common signature.
    Returns: ``[B, T]`` in [-1, 1].
    """
    _check_waveform(audio, "gaussian_snr")
    snr_db = _check_severity(snr_db, "gaussian_snr", -30.0, 120.0, "dB")
    noise = torch.randn(audio.shape, generator=generator, dtype=torch.float32).to(audio.device)
    return mix_at_snr(audio, noise, snr_db)


def gaussian_feature(features: torch.Tensor, sigma: float, generator: torch.Generator | None = None, *,
                     sample_rate: int | None = None) -> torch.Tensor:
    """``features + sigma * N(0, 1)`` on the model's normalised features (e.g. log-mel).

    Args:
        features: ``[B, F, frames]`` from ``Classifier.features`` (normalised, so ``sigma`` is in
            units of the training set's feature standard deviation; the thesis used 0.1).
        sigma: noise standard deviation, >= 0.
        generator: draws the noise.
        sample_rate: unused; kept for the common signature.
    Returns: ``[B, F, frames]``, unbounded.
    """
    if features.dim() < 2 or not features.is_floating_point():
        raise CorruptionError(f"gaussian_feature takes float features [B, F, frames]; got "
                              f"{tuple(features.shape)} {features.dtype}.")
    sigma = _check_severity(sigma, "gaussian_feature", 0.0, 100.0, "(feature units)")
    noise = torch.randn(features.shape, generator=generator, dtype=features.dtype).to(features.device)
    return features + sigma * noise


# ---------------------------------------------------------------------------------------------
# Real background noise
# ---------------------------------------------------------------------------------------------


def background_noise(audio: torch.Tensor, snr_db: float, generator: torch.Generator | None = None, *,
                     sample_rate: int = 16000, noise: str | None = None) -> torch.Tensor:
    """A real recorded noise (rain, wind, babble, ...) mixed in at ``snr_db`` dB per clip.

    Each clip gets a segment of one bundled recording (``noise_names()``): the recording drawn
    uniformly unless ``noise`` names one, the segment start drawn uniformly; a recording shorter
    than the clip is repeated. The mixing is written here rather than taken from audiomentations /
    torch-audiomentations ``AddBackgroundNoise``: both read noise files from disk on every call
    and draw from Python's global ``random``, not from a ``torch.Generator``; the SNR convention
    (RMS over the whole clip, relative to the clip) is theirs.

    Args:
        audio: ``[B, T]`` in [-1, 1].
        snr_db: signal-to-noise ratio in dB, per clip.
        generator: draws the recording and the segment start.
        sample_rate: Hz of ``audio``; the 16 kHz noises are resampled to it.
        noise: one recording's name, or ``None`` for a random one per clip.
    Returns: ``[B, T]`` in [-1, 1].
    """
    _check_waveform(audio, "background_noise")
    snr_db = _check_severity(snr_db, "background_noise", -30.0, 120.0, "dB")
    try:
        segments = noise_segments(audio.shape[0], audio.shape[1], generator, sample_rate=sample_rate, noise=noise)
    except AcousticsError as error:
        raise CorruptionError(str(error)) from error
    return mix_at_snr(audio, segments.to(audio.device, audio.dtype), snr_db)


# ---------------------------------------------------------------------------------------------
# Occlusion (silence), along the last axis
# ---------------------------------------------------------------------------------------------


def _fill_value(x: torch.Tensor, fill: str) -> torch.Tensor:
    """Per-clip fill ``[B, 1, ..., 1]``: the clip's minimum over all its values, or 0."""
    if fill not in FILLS:
        raise CorruptionError(f"Unknown fill {fill!r}; use one of {', '.join(FILLS)}.")
    per_clip = x.reshape(x.shape[0], -1).amin(dim=1)
    return _per_clip(torch.zeros_like(per_clip) if fill == "zero" else per_clip, x)


def _check_time_axis(x: torch.Tensor, name: str) -> None:
    if x.dim() < 2 or x.shape[-1] < 2:
        raise CorruptionError(f"{name} takes [B, T] audio or [B, F, frames] features with at least "
                              f"2 steps on the last axis; got {tuple(x.shape)}.")


def contiguous_mask(length: int, fraction: float, position: str) -> torch.Tensor:
    """Bool ``[length]``, True on the ``round(fraction * length)`` occluded steps at ``position``."""
    if position not in POSITIONS:
        raise CorruptionError(f"Unknown position {position!r}; use one of {', '.join(POSITIONS)}.")
    n = round(fraction * length)
    start = {"start": 0, "middle": (length - n) // 2, "end": length - n}[position]
    mask = torch.zeros(length, dtype=torch.bool)
    mask[start:start + n] = True
    return mask


def periodic_mask(length: int, chunk_seconds: float, sample_rate: float) -> torch.Tensor:
    """Bool ``[length]``: alternating kept / occluded chunks (50% duty cycle), kept first.

    The chunk is ``round(chunk_seconds * sample_rate)`` steps, clipped to half the clip (one
    kept and one occluded chunk): a longer chunk could not occlude 50% of this clip. So on the
    bundled 1 s clips chunks of 2, 1 and 0.5 s all occlude the second half.
    """
    chunk = max(1, min(round(chunk_seconds * sample_rate), length // 2))
    return (torch.arange(length) // chunk) % 2 == 1


def occlusion_contiguous(x: torch.Tensor, fraction: float, generator: torch.Generator | None = None, *,
                         sample_rate: int = 16000, position: str = "middle", fill: str = "min"
                         ) -> torch.Tensor:
    """Silence one contiguous stretch of each clip: ``fraction`` of its length at ``position``.

    The thesis silenced 5 s of 10 s clips at the start, middle or end: ``fraction=0.5``, which
    scales to any clip length (0.5 s of the bundled 1 s clips).

    Args:
        x: ``[B, T]`` audio, or ``[B, F, frames]`` features (the last axis is time).
        fraction: occluded fraction of the clip, in (0, 1]; ``round(fraction * T)`` steps.
        generator: unused (deterministic).
        sample_rate: unused (the stretch is a fraction); kept for the common signature.
        position: ``"start"``, ``"middle"`` (centred, the extra step after) or ``"end"``.
        fill: ``"min"``: each clip's minimum value, as in the thesis (silence on a log-mel; on a
            waveform a constant at the most negative sample, i.e. a DC step); ``"zero"``: 0.
    Returns: same shape as ``x``, within ``x``'s range.
    """
    _check_time_axis(x, "occlusion_contiguous")
    fraction = _check_severity(fraction, "occlusion_contiguous", 1e-9, 1.0, "(fraction of the clip)")
    mask = contiguous_mask(x.shape[-1], fraction, position).to(x.device)
    return torch.where(mask, _fill_value(x, fill), x)


def occlusion_periodic(x: torch.Tensor, chunk_seconds: float, generator: torch.Generator | None = None, *,
                       sample_rate: float = 16000, fill: str = "min") -> torch.Tensor:
    """Silence every other chunk of ``chunk_seconds`` (50% duty cycle, starting with kept audio).

    Args:
        x: ``[B, T]`` audio, or ``[B, F, frames]`` features (the last axis is time).
        chunk_seconds: chunk length in s, > 0, clipped to half the clip (:func:`periodic_mask`).
        generator: unused (deterministic).
        sample_rate: steps per second on the last axis: Hz for audio, frames/s for features
            (e.g. 100 for a 10 ms hop).
        fill: ``"min"`` (the clip minimum, as in the thesis) or ``"zero"``; see
            :func:`occlusion_contiguous`.
    Returns: same shape as ``x``, within ``x``'s range.
    """
    _check_time_axis(x, "occlusion_periodic")
    chunk_seconds = _check_severity(chunk_seconds, "occlusion_periodic", 1e-9, math.inf, "s")
    mask = periodic_mask(x.shape[-1], chunk_seconds, sample_rate).to(x.device)
    return torch.where(mask, _fill_value(x, fill), x)


def occlusion_concat(x: torch.Tensor, chunk_seconds: float, generator: torch.Generator | None = None, *,
                     sample_rate: float = 16000, fill: str = "min") -> torch.Tensor:
    """The periodic occlusion with the gaps removed: the kept chunks, in order, then fill.

    Same chunks as :func:`occlusion_periodic`; the kept steps play back to back from the start
    and the tail (as long as the removed gaps) is filled: half the audio is still lost, but what
    is left is no longer interrupted by silence (only spliced at the chunk edges).

    Args and returns: as :func:`occlusion_periodic`.
    """
    _check_time_axis(x, "occlusion_concat")
    chunk_seconds = _check_severity(chunk_seconds, "occlusion_concat", 1e-9, math.inf, "s")
    mask = periodic_mask(x.shape[-1], chunk_seconds, sample_rate).to(x.device)
    kept = x[..., ~mask]
    tail = _fill_value(x, fill).expand(*x.shape[:-1], int(mask.sum()))
    return torch.cat([kept, tail], dim=-1)


# ---------------------------------------------------------------------------------------------
# Room reverberation
# ---------------------------------------------------------------------------------------------


def reverb(audio: torch.Tensor, rt60: float, generator: torch.Generator | None = None, *,
           sample_rate: int = 16000, rooms: int | None = ROOM_BANK) -> torch.Tensor:
    """Each clip played in a random shoebox room of reverberation time ``rt60`` s.

    The clip is convolved with the room's impulse response (one batched FFT convolution for the
    whole batch on ``audio``'s device, :func:`robustaudio.acoustics.reverberate`), aligned so that
    the direct sound (the response's largest tap) lines up with the input, cut to the input length
    (the reverberant tail past the end is dropped) and rescaled to the input's RMS, so the
    corruption changes the sound, not the level. Needs pyroomacoustics (``pip install
    'robustaudio[rooms]'``). The image-source simulation costs about 0.02 s (RT60 0.2 s) to 2 s (1 s)
    per room, so by default each clip gets one of a bank of ``rooms`` rooms (seed 0), each
    simulated once per process the first time a clip is put in it
    (:func:`robustaudio.acoustics.bank_responses`); ``rooms=None`` simulates a fresh room per clip.

    Args:
        audio: ``[B, T]`` in [-1, 1] at ``sample_rate`` Hz.
        rt60: reverberation time in s, within ``RT60_RANGE``.
        generator: draws each clip's room (from the bank: one draw for the batch, on the CPU; or a
            fresh room per clip).
        sample_rate: Hz of ``audio`` and of the simulated response.
        rooms: size of the shared bank, or None.
    Returns: ``[B, T]`` in [-1, 1].
    """
    _check_waveform(audio, "reverb")
    rt60 = _check_severity(rt60, "reverb", *RT60_RANGE, "s (RT60)")
    require_pyroomacoustics()
    if rooms:  # each clip in one of the bank's rooms, chosen by the generator
        picks = torch.randint(int(rooms), (audio.shape[0],), generator=generator)
        used, which = torch.unique(picks, return_inverse=True)
        rirs = bank_responses(rt60, used.tolist(), sample_rate=int(sample_rate), rooms=int(rooms))
    else:  # a fresh room per clip
        rirs = [room_impulse_response(rt60, generator, sample_rate=sample_rate) for _ in range(audio.shape[0])]
        which = None
    return reverberate(audio, rirs, which).clamp(-1.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corruption:
    """One registry entry: a corruption function with fixed options and its severity grid.

    ``corruption(x, severity, generator, sample_rate=...)`` calls
    ``function(x, severity, generator, sample_rate=..., **options)``.
    """

    name: str
    domain: str                      # "waveform" ([B, T] in [-1, 1]) or "feature" ([B, F, frames])
    severities: tuple[float, ...]    # mildest first
    unit: str                        # of the severity, e.g. "SNR dB"
    function: Callable[..., torch.Tensor]
    description: str
    tag: str                         # "[paper]" (the thesis's protocol) or "[ours]"
    options: dict[str, Any] = field(default_factory=dict)
    needs_rooms: bool = False        # simulates rooms: the ``rooms`` extra (checked before a run starts)

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise CorruptionError(f"{self.name}: unknown domain {self.domain!r}; use one of {', '.join(DOMAINS)}.")

    def __call__(self, x: torch.Tensor, severity: float, generator: torch.Generator | None = None, *,
                 sample_rate: int = 16000) -> torch.Tensor:
        return self.function(x, severity, generator, sample_rate=sample_rate, **self.options)


class _Registry(dict):
    """A dict whose missing keys raise :class:`UnknownCorruption` with the valid names."""

    def __missing__(self, name: str) -> Corruption:
        raise UnknownCorruption(f"Unknown corruption {name!r}; use one of {', '.join(self)}.")


def get_corruption(name: str) -> Corruption:
    """``CORRUPTIONS[name]``, raising :class:`UnknownCorruption` (listing the valid names) if absent."""
    return CORRUPTIONS[name]


_CHUNKS = (2.0, 1.0, 0.5, 0.25, 0.125)
_OCCLUSION_NOTE = "filled with the clip minimum"

CORRUPTIONS: dict[str, Corruption] = _Registry({c.name: c for c in [
    Corruption("gaussian_snr", "waveform", (40.0, 30.0, 20.0, 10.0, 5.0, 0.0), "SNR dB", gaussian_snr,
               "white Gaussian noise at a per-clip SNR", "[ours]"),
    Corruption("gaussian_feature", "feature", (0.05, 0.1, 0.2, 0.5, 1.0), "sigma (normalised feature units)",
               gaussian_feature, "Gaussian noise on the normalised features (thesis: sigma 0.1)", "[paper]"),
    *[Corruption(f"occlusion_{position}", "waveform", (0.25, 0.5, 0.75), "fraction of the clip",
                 occlusion_contiguous, f"one contiguous stretch at the {position} {_OCCLUSION_NOTE} "
                 f"(thesis: 0.5, i.e. 5 s of 10 s)", "[paper]", {"position": position})
      for position in POSITIONS],
    Corruption("occlusion_periodic", "waveform", _CHUNKS, "chunk s (50% duty, clipped to half the clip)",
               occlusion_periodic, f"every other chunk {_OCCLUSION_NOTE}", "[paper]"),
    Corruption("occlusion_concat", "waveform", _CHUNKS, "chunk s (50% duty, clipped to half the clip)",
               occlusion_concat, f"the periodic occlusion with the gaps removed, tail {_OCCLUSION_NOTE}",
               "[paper]"),
    Corruption("background_noise", "waveform", (30.0, 20.0, 10.0, 5.0, 0.0), "SNR dB", background_noise,
               "a real recorded noise (rain, wind, babble, cheering, traffic, engine, hum) at a per-clip SNR",
               "[ours]"),
    Corruption("reverb", "waveform", (0.2, 0.4, 0.6, 0.8, 1.0), "RT60 s", reverb,
               "a random shoebox room of the given reverberation time (pyroomacoustics)", "[ours]", needs_rooms=True),
]})

__all__ = ["CORRUPTIONS", "Corruption", "CorruptionError", "UnknownCorruption", "get_corruption",
           "gaussian_snr", "gaussian_feature", "background_noise", "occlusion_contiguous", "occlusion_periodic",
           "occlusion_concat", "contiguous_mask", "periodic_mask", "reverb"]
