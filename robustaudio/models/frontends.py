"""Differentiable front ends: waveform ``[B, T]`` in [-1, 1] -> normalised features ``[B, F, frames]``.

Both run inside the model's graph, so waveform attacks get exact gradients through them.
Normalisation statistics (mean, std of the log features over a training set) are buffers
stored with the checkpoint, as in AST.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

LOG_OFFSET = 1e-6  # keeps log finite on digital silence; far below any audible level


class LogMel(nn.Module):
    """Log-mel spectrogram (torchaudio ``MelSpectrogram``, HTK mels) then ``(log(mel + log_offset) - mean) / std``.

    Defaults: power 2 (``power=1`` gives magnitudes, as YAMNet), ``log_offset`` 1e-6, centred STFT:
    output ``[B, n_mels, frames]`` with ``frames = T // hop_length + 1``; with ``center=False``,
    ``frames = 1 + (T - n_fft) // hop_length``, frame ``i`` spanning samples ``i * hop_length`` to
    ``i * hop_length + n_fft`` with the window in its middle.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 512, win_length: int = 400,
                 hop_length: int = 160, n_mels: int = 64, f_min: float = 50.0,
                 f_max: float | None = None, mean: float = 0.0, std: float = 1.0, *,
                 power: float = 2.0, center: bool = True, log_offset: float = LOG_OFFSET):
        super().__init__()
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.hop_length = hop_length
        self.log_offset = log_offset
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length,
            n_mels=n_mels, f_min=f_min, f_max=f_max, power=power, center=center)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def centre_frequencies(self) -> torch.Tensor:
        """``[n_mels]`` Hz at which each mel filter peaks (for frequency-band threat models)."""
        filters = self.mel.mel_scale.fb  # [n_fft // 2 + 1, n_mels]
        n_fft = 2 * (filters.shape[0] - 1)
        return filters.argmax(dim=0).float() * self.sample_rate / n_fft

    def raw(self, audio: torch.Tensor) -> torch.Tensor:
        """Un-normalised log-mel ``[B, n_mels, frames]`` (used to fit ``mean`` / ``std``)."""
        return torch.log(self.mel(audio) + self.log_offset)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return (self.raw(audio) - self.mean) / self.std


class KaldiFbank(nn.Module):
    """Kaldi-compatible log filterbank (torchaudio ``compliance.kaldi.fbank``) as used by AST.

    Settings follow the AST recipe (Hanning window, 25 ms frames, 10 ms shift, HTK-compatible,
    no dither so the front end is deterministic). ``kaldi.fbank`` takes one clip at a time, so
    the batch is processed clip by clip; output ``[B, n_mels, frames]``,
    ``frames = 1 + (T - 400) // 160`` at 16 kHz.
    """

    def __init__(self, sample_rate: int = 16000, n_mels: int = 128, frame_shift_ms: float = 10.0,
                 frame_length_ms: float = 25.0, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.frame_shift_ms = frame_shift_ms
        self.frame_length_ms = frame_length_ms
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def centre_frequencies(self) -> torch.Tensor:
        """``[n_mels]`` Hz at the centre of each Kaldi mel bin (20 Hz to Nyquist, as ``fbank``)."""
        window = int(self.sample_rate * self.frame_length_ms / 1000)
        padded = 1 << (window - 1).bit_length()
        _, centres = torchaudio.compliance.kaldi.get_mel_banks(self.n_mels, padded, float(self.sample_rate),
                                                               20.0, 0.0, 100.0, -500.0, 1.0)
        return centres.flatten()

    def raw(self, audio: torch.Tensor) -> torch.Tensor:
        frames = [
            torchaudio.compliance.kaldi.fbank(
                clip.unsqueeze(0), htk_compat=True, sample_frequency=self.sample_rate,
                use_energy=False, window_type="hanning", num_mel_bins=self.n_mels, dither=0.0,
                frame_shift=self.frame_shift_ms, frame_length=self.frame_length_ms)
            for clip in audio
        ]
        return torch.stack(frames).transpose(1, 2)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return (self.raw(audio) - self.mean) / self.std


FRONT_ENDS = {"logmel": LogMel, "fbank": KaldiFbank}
