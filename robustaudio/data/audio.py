"""Reading one audio file into the waveform a model expects, with every bad case named.

Returns float32 mono ``[T]`` in [-1, 1] at the model's sample rate, ``T = clip_samples``
(cropped from the start, or zero-padded at the end).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio

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


def load_audio(path: str | Path, sample_rate: int, clip_samples: int | None = None
               ) -> tuple[torch.Tensor, list[str]]:
    """Decode, downmix, resample, check and fit one file.

    Returns the waveform ``[T]`` and notes on what was changed (resampling, downmix, rescaling),
    which callers record as warnings.
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
        notes.append(f"{path}: downmixed {data.shape[1]} channels to mono")
    audio = torch.from_numpy(data.mean(axis=1))
    if file_rate != sample_rate:
        audio = torchaudio.functional.resample(audio, file_rate, sample_rate)
        notes.append(f"{path}: resampled from {file_rate} Hz to the model's {sample_rate} Hz")
    peak = float(audio.abs().max())
    if peak > 1.0:
        audio = audio / peak
        notes.append(f"{path}: peak {peak:.3f} exceeds full scale; scaled to peak 1.0")
    if clip_samples is not None:
        audio = fit_length(audio, clip_samples)
        check_waveform(audio, f"{path} (first {clip_samples} samples)")
    return audio.float().contiguous(), notes


def write_audio(path: str | Path, audio: torch.Tensor, sample_rate: int) -> None:
    """Write a mono waveform ``[T]`` in [-1, 1] as 16-bit PCM (WAV/FLAC by the file suffix)."""
    if not torch.isfinite(audio).all():
        raise AudioError(f"{path}: refusing to write NaN/Inf samples.")
    soundfile.write(str(path), audio.detach().cpu().clamp(-1, 1).numpy(), sample_rate, subtype="PCM_16")
