"""Restricted threat models: perturb only a time window, a frequency band, or one modality.

Time windows and, in the feature domain, frequency bands are 0/1 masks on the perturbation
(``ThreatModel.mask``). A frequency band in the waveform domain is a band-pass projection of the
perturbation (``ThreatModel.band_hz``: zero the FFT bins outside the band). Modalities are
chosen with ``ThreatModel.modality``.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from ..models.base import Classifier


def front_end_of(model: nn.Module) -> Any:
    """The model's mel front end (the first submodule with ``centre_frequencies``)."""
    for module in model.modules():
        if hasattr(module, "centre_frequencies"):
            return module
    raise ValueError(f"{type(model).__name__} has no mel front end with known centre frequencies, so a "
                     f"feature-domain band cannot be mapped to bins; use the waveform domain.")


def feature_shape(model: Classifier, clip_samples: int | None = None) -> tuple[int, int]:
    """``(F, frames)`` of ``model.features`` for one clip of the model's length."""
    samples = clip_samples or model.clip_samples
    with torch.no_grad():
        features = model.features(torch.zeros(1, samples, device=next(model.parameters()).device))
    return cast(tuple[int, int], tuple(features.shape[1:]))


def time_mask(model: Classifier, domain: str, start_s: float, end_s: float) -> torch.Tensor:
    """1 inside ``[start_s, end_s)`` seconds of the clip: ``[T]`` (waveform) or ``[1, frames]`` (feature)."""
    if not 0 <= start_s < end_s:
        raise ValueError(f"time window [{start_s}, {end_s}) s is empty or negative: give START < END, in seconds.")
    if start_s >= model.clip_seconds:
        raise ValueError(f"time window starts at {start_s} s, after the {model.clip_seconds} s clip ends.")
    if domain == "waveform":
        times = torch.arange(model.clip_samples) / model.sample_rate
    else:
        frames = feature_shape(model)[-1]
        times = torch.arange(frames) * (model.clip_seconds / frames)
        times = times.unsqueeze(0)
    return ((times >= start_s) & (times < end_s)).float()


def band_mask(model: Classifier, low_hz: float, high_hz: float) -> torch.Tensor:
    """Feature domain: 1 on the mel bins whose centre lies in ``[low_hz, high_hz]``; ``[F, 1]``."""
    check_band(low_hz, high_hz, model.sample_rate)
    centres = front_end_of(model).centre_frequencies().cpu()
    mask = ((centres >= low_hz) & (centres <= high_hz)).float()
    if not mask.any():
        raise ValueError(f"no mel bin has its centre in [{low_hz}, {high_hz}] Hz; widen the band.")
    return mask.unsqueeze(1)


def check_band(low_hz: float, high_hz: float, sample_rate: int) -> None:
    if not 0 <= low_hz < high_hz <= sample_rate / 2:
        raise ValueError(f"frequency band [{low_hz}, {high_hz}] Hz must satisfy 0 <= LOW < HIGH <= "
                         f"{sample_rate / 2:g} Hz (Nyquist at {sample_rate} Hz).")


def bandpass(delta: torch.Tensor, sample_rate: int, low_hz: float, high_hz: float) -> torch.Tensor:
    """Orthogonal projection of waveforms ``[..., T]`` onto the band: FFT bins outside it set to 0."""
    spectrum = torch.fft.rfft(delta, dim=-1)
    freqs = torch.fft.rfftfreq(delta.shape[-1], d=1.0 / sample_rate).to(delta.device)
    keep = (freqs >= low_hz) & (freqs <= high_hz)
    return torch.fft.irfft(spectrum * keep, n=delta.shape[-1], dim=-1)
