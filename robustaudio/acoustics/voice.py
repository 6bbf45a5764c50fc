"""Talker and device transforms on waveforms ``[..., T]``: speed, time stretch, pitch, formants (vocal-tract
length), EQ, and loudspeaker / microphone bands.

Voices a detector (or a jammer) never heard differ from the ones it learned on in speaking rate, pitch, vocal
tract length and timbre, and a scene is heard through some microphone after some loudspeaker played the music.
Each function changes one of these; :class:`.augmentation.Augmentation` draws them per scene while a
jamming loop is learned (never at evaluation). All are differentiable in the audio. Factors outside the ranges
a function supports raise :class:`~robustaudio.acoustics.mixing.AcousticsError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import torch
import torchaudio

from .mixing import AcousticsError


def _ratio(value: float, max_denominator: int = 200) -> Fraction:
    return Fraction(value).limit_denominator(max_denominator)


def realised_speed(factor: float) -> float:
    """The speed factor :func:`change_speed` applies for ``factor``: resampling needs a ratio of integers, so
    the factor is rounded to the nearest fraction with a denominator of at most 200."""
    return float(_ratio(factor))


def change_speed(audio: torch.Tensor, factor: float) -> torch.Tensor:
    """Play ``audio`` ``[..., T]`` ``factor`` times faster (tape speed): the duration is divided by
    ``factor`` and every frequency multiplied by it. Band-limited resampling (torchaudio's windowed
    sinc) by ``factor`` as a fraction with denominator <= 200 (within about 0.003%)."""
    if not (math.isfinite(factor) and 0.25 <= factor <= 4):
        raise AcousticsError(f"Speed factor {factor} is outside [0.25, 4].")
    ratio = _ratio(factor)
    if ratio == 1:
        return audio
    return torchaudio.functional.resample(audio, ratio.numerator, ratio.denominator)


def _stft(audio: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    return torch.stft(audio, n_fft, hop, window=torch.hann_window(n_fft, device=audio.device), return_complex=True)


def _istft(spectrum: torch.Tensor, n_fft: int, hop: int, length: int) -> torch.Tensor:
    return torch.istft(spectrum, n_fft, hop, window=torch.hann_window(n_fft, device=spectrum.device), length=length)


def time_stretch(audio: torch.Tensor, factor: float, n_fft: int = 512, hop: int = 128) -> torch.Tensor:
    """Make ``audio`` ``[..., T]`` last ``factor`` times longer at the same pitch (phase vocoder)."""
    if not (math.isfinite(factor) and 0.25 <= factor <= 4):
        raise AcousticsError(f"Stretch factor {factor} is outside [0.25, 4].")
    if factor == 1:
        return audio
    length = audio.shape[-1]
    spectrum = _stft(audio, n_fft, hop)
    advance = torch.linspace(0, math.pi * hop, spectrum.shape[-2], device=audio.device)[..., None]
    stretched = torchaudio.functional.phase_vocoder(spectrum, 1 / factor, advance)
    return _istft(stretched, n_fft, hop, int(round(length * factor)))


def shift_pitch(audio: torch.Tensor, ratio: float, n_fft: int = 512, hop: int = 128) -> torch.Tensor:
    """Multiply every frequency of ``audio`` ``[..., T]`` by ``ratio`` keeping its duration: stretch by
    ``ratio`` (phase vocoder), then play ``ratio`` times faster. Formants move with the pitch."""
    if ratio == 1:
        return audio
    length = audio.shape[-1]
    moved = change_speed(time_stretch(audio, float(_ratio(ratio)), n_fft, hop), ratio)
    return torch.nn.functional.pad(moved, (0, max(0, length - moved.shape[-1])))[..., :length]


def spectral_envelope(magnitude: torch.Tensor, lifter: int) -> torch.Tensor:
    """Log spectral envelope of STFT magnitudes ``[..., F, frames]``: the real cepstrum cut to its
    first ``lifter`` quefrencies (the vocal tract; the pitch harmonics are at higher quefrencies)."""
    log = magnitude.clamp_min(1e-8).log()
    bins = magnitude.shape[-2]
    cepstrum = torch.fft.irfft(log, n=2 * (bins - 1), dim=-2)
    keep = torch.zeros(cepstrum.shape[-2], 1, device=magnitude.device)
    keep[:lifter] = 1.0
    keep[-lifter + 1:] = 1.0
    return torch.fft.rfft(cepstrum * keep, dim=-2).real


def warp_formants(audio: torch.Tensor, alpha: float, sample_rate: int = 16000, n_fft: int = 1024,
                  lifter_seconds: float = 0.0025) -> torch.Tensor:
    """Vocal-tract-length warping of ``audio`` ``[..., T]``: the spectral envelope (formants) moves
    from frequency ``f`` to ``alpha f`` while the pitch harmonics stay where they are.

    Per STFT frame, the log magnitude is split into the cepstral envelope
    (:func:`spectral_envelope`, quefrencies below ``lifter_seconds``) and the fine structure (the
    rest); the envelope is resampled at ``f / alpha`` and the two are put back with the original
    phases. ``alpha > 1``: a shorter tract (child-, female-like), ``< 1``: longer.
    """
    if not (math.isfinite(alpha) and 0.5 <= alpha <= 2):
        raise AcousticsError(f"Formant warp {alpha} is outside [0.5, 2].")
    if alpha == 1:
        return audio
    hop = n_fft // 4
    spectrum = _stft(audio, n_fft, hop)
    magnitude = spectrum.abs()
    envelope = spectral_envelope(magnitude, max(2, int(round(lifter_seconds * sample_rate))))
    bins = spectrum.shape[-2]
    source = torch.arange(bins, device=audio.device, dtype=magnitude.dtype) / alpha
    low = source.floor().long().clamp(0, bins - 1)
    high = (low + 1).clamp(max=bins - 1)
    weight = (source - low).clamp(0, 1)[:, None]
    warped = envelope[..., low, :] * (1 - weight) + envelope[..., high, :] * weight
    outside = (source > bins - 1)[:, None]
    warped = torch.where(outside, envelope[..., -1:, :], warped)
    gain = torch.exp(warped - envelope)
    return _istft(spectrum * gain, n_fft, hop, audio.shape[-1])


def eq_gain(frequencies: torch.Tensor, centres_hz: torch.Tensor, gains_db: torch.Tensor,
            widths_octaves: torch.Tensor) -> torch.Tensor:
    """Linear gain ``[..., F]`` at ``frequencies`` ``[F]`` (Hz) of bell-shaped bands on a log-frequency
    axis: ``sum_k gains_db[..., k] exp(-½ (log2(f / centres_hz[..., k]) / widths_octaves[..., k])²)`` dB."""
    octaves = torch.log2(frequencies.clamp_min(1.0)[..., None, :] / centres_hz[..., :, None])
    decibels = (gains_db[..., :, None] * torch.exp(-0.5 * (octaves / widths_octaves[..., :, None]) ** 2)).sum(-2)
    return 10 ** (decibels / 20)


def band_limit_gain(frequencies: torch.Tensor, low_hz: torch.Tensor, high_hz: torch.Tensor,
                    order: int = 2) -> torch.Tensor:
    """Linear gain ``[..., F]`` of a device's pass band: Butterworth-shaped magnitudes of order
    ``order``, a high-pass at ``low_hz`` times a low-pass at ``high_hz`` (each ``[...]``; -3 dB there)."""
    f = frequencies.clamp_min(1e-3)
    high_pass = 1 / torch.sqrt(1 + (low_hz[..., None] / f) ** (2 * order))
    low_pass = 1 / torch.sqrt(1 + (f / high_hz[..., None]) ** (2 * order))
    return high_pass * low_pass


def filter_gain(audio: torch.Tensor, response: Callable[[torch.Tensor], torch.Tensor], sample_rate: int,
                circular: bool = False, pad: int = 2048) -> torch.Tensor:
    """Filter ``audio`` ``[..., T]`` with a zero-phase magnitude response: ``response(hz)`` ``[F]`` ->
    linear gains broadcastable to ``[..., F]``. Zero-padded by ``pad`` samples on each side unless
    ``circular`` (a loop: the filter wraps around, which is exact for a periodic signal)."""
    length = audio.shape[-1]
    padded = audio if circular else torch.nn.functional.pad(audio, (pad, pad))
    size = padded.shape[-1]
    hz = torch.fft.rfftfreq(size, 1 / sample_rate).to(audio.device, audio.dtype)
    out = torch.fft.irfft(torch.fft.rfft(padded) * response(hz), n=size)
    return out if circular else out[..., pad:pad + length]


def equalise(audio: torch.Tensor, centres_hz: torch.Tensor | Sequence[float] | Sequence[Sequence[float]],
             gains_db: torch.Tensor | Sequence[float] | Sequence[Sequence[float]],
             widths_octaves: torch.Tensor | Sequence[float] | Sequence[Sequence[float]], sample_rate: int = 16000,
             circular: bool = False) -> torch.Tensor:
    """A random-EQ filter: :func:`eq_gain` bands applied with :func:`filter_gain` (one set of bands
    ``[K]`` for every row, or ``[B, K]`` one per row of ``audio`` ``[B, T]``)."""
    as_tensor = lambda v: torch.as_tensor(v, dtype=audio.dtype, device=audio.device)  # noqa: E731
    centres, gains, widths = as_tensor(centres_hz), as_tensor(gains_db), as_tensor(widths_octaves)
    return filter_gain(audio, lambda hz: eq_gain(hz, centres, gains, widths), sample_rate, circular)


def device_filter(audio: torch.Tensor, low_hz: float | torch.Tensor, high_hz: float | torch.Tensor,
                  sample_rate: int = 16000, order: int = 2, circular: bool = False) -> torch.Tensor:
    """A microphone's or loudspeaker's band: :func:`band_limit_gain` applied with :func:`filter_gain`
    (scalars, or ``[B]`` one per row of ``audio`` ``[B, T]``)."""
    low = torch.as_tensor(low_hz, dtype=audio.dtype, device=audio.device)
    high = torch.as_tensor(high_hz, dtype=audio.dtype, device=audio.device)
    return filter_gain(audio, lambda hz: band_limit_gain(hz, low, high, order), sample_rate, circular)
