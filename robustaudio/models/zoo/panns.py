"""PANNs CNN14 (Kong et al. 2020; thesis Table 6.1 "PANNs CNN14") in the published checkpoint's layout.

The module and state-dict names are those of ``Cnn14`` in qiuqiangkong/audioset_tagging_cnn
(``pytorch/models.py``), so the released ``Cnn14_mAP=0.431.pth`` weights (``checkpoint["model"]``)
load with ``load_state_dict(..., strict=True)``:

- ``spectrogram_extractor.stft.conv_real.weight`` / ``conv_imag.weight`` ``[513, 1, 1024]``:
  torchlibrosa's STFT as two convolutions whose kernels are the Hann-windowed DFT rows
  (``cos`` and ``-sin``). Kept here as buffers for the layout only: the torchaudio STFT inside
  the front end computes the same transform.
- ``logmel_extractor.melW`` ``[513, 64]``: the Slaney-normalised mel filter bank (librosa's
  default, 50 Hz - 14 kHz). The front end uses it: after every ``load_state_dict`` it is copied
  into the torchaudio mel transform.
- ``bn0`` (per-mel batch norm, the model's input normalisation), ``conv_block1..6`` (each
  ``conv1``/``bn1``/``conv2``/``bn2``), ``fc1``, ``fc_audioset``.

Input spec: 32 kHz mono, 10 s (320000 samples); 1024-sample Hann frames, hop 320 (10 ms),
reflect-padded centred STFT, 64 mel bins 50-14000 Hz, ``10 log10(max(mel power, 1e-10))``
(power_to_db with ref 1, no top_db): 1001 frames. AudioSet: 527 classes, multi-label.
"""

from __future__ import annotations

import math

import torch
import torchaudio
from torch import nn
from torch.nn import functional as F

from ..base import Classifier
from ..frontends import LogMel
from .crnn import AUDIOSET_PLACEHOLDER_LABELS

POWER_FLOOR = 1e-10  # torchlibrosa power_to_db amin
DB_PER_NEPER = 10.0 / math.log(10.0)


def exclude_from_state_dict(module: nn.Module) -> None:
    """Make every buffer under ``module`` non-persistent (left out of ``state_dict``).

    For front-end buffers that are recomputed from the constructor's config, so that a model's
    state dict holds exactly the published checkpoint's keys.
    """
    for submodule in module.modules():
        for name, buffer in list(submodule.named_buffers(recurse=False)):
            submodule.register_buffer(name, buffer, persistent=False)


class PannsLogMel(LogMel):
    """torchlibrosa's log-mel via torchaudio: Slaney mel filters and ``10 log10(max(power, 1e-10))`` in dB.

    Output ``[B, n_mels, T // hop + 1]`` in dB (no mean/std normalisation: CNN14's ``bn0`` does it).
    """

    def __init__(self, sample_rate: int = 32000, n_fft: int = 1024, hop_length: int = 320, n_mels: int = 64,
                 f_min: float = 50.0, f_max: float = 14000.0):
        super().__init__(sample_rate=sample_rate, n_fft=n_fft, win_length=n_fft, hop_length=hop_length,
                         n_mels=n_mels, f_min=f_min, f_max=f_max)
        # librosa.filters.mel defaults (Slaney scale and area normalisation), which torchlibrosa uses
        self.mel.mel_scale.fb.copy_(torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate, norm="slaney", mel_scale="slaney"))

    def raw(self, audio: torch.Tensor) -> torch.Tensor:
        return DB_PER_NEPER * torch.log(self.mel(audio).clamp_min(POWER_FLOOR))


def hann_dft_kernels(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torchlibrosa's STFT kernels ``[n_fft//2 + 1, 1, n_fft]``: periodic Hann window x ``cos`` / ``-sin`` rows."""
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    phase = 2 * math.pi * torch.outer(torch.arange(n_fft // 2 + 1, dtype=torch.float64),
                                      torch.arange(n_fft, dtype=torch.float64)) / n_fft
    real = (torch.cos(phase) * window).unsqueeze(1).float()
    imaginary = (-torch.sin(phase) * window).unsqueeze(1).float()
    return real, imaginary


class BufferHolder(nn.Module):
    """A module holding named buffers, to reproduce a published state-dict path such as ``stft.conv_real.weight``."""

    def __init__(self, **buffers: torch.Tensor):
        super().__init__()
        for name, tensor in buffers.items():
            self.register_buffer(name, tensor)


class TorchlibrosaSpectrogram(nn.Module):
    """The state-dict layout of torchlibrosa ``Spectrogram``: ``stft.conv_real.weight``, ``stft.conv_imag.weight``."""

    def __init__(self, n_fft: int):
        super().__init__()
        real, imaginary = hann_dft_kernels(n_fft)
        self.stft = nn.Module()
        self.stft.conv_real = BufferHolder(weight=real)
        self.stft.conv_imag = BufferHolder(weight=imaginary)


class ConvBlock(nn.Module):
    """PANNs ConvBlock: two (3x3 conv, batch norm, ReLU) then average pooling ``pool`` (time, frequency)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, pool: tuple[int, int] = (2, 2)) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool)


class Cnn14(Classifier):
    """PANNs CNN14 (thesis Table 6.1; Kong et al. 2020), published module layout; see the module docstring.

    ``features``: dB log-mel ``[B, 64, frames]`` (1001 frames for 10 s at 32 kHz). ``embeddings``:
    per-mel ``bn0``, six conv blocks (64 ... 2048 channels, 2x2 average pools except the last),
    mean over frequency, max + mean over time, ``relu(fc1)`` -> ``[B, 2048]``. ``head``:
    ``fc_audioset`` logits (the published model applies a sigmoid to them). SpecAugment and mixup
    are training-time only and not part of the module.
    """

    channels: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)

    def __init__(self, labels: list[str] | tuple[str, ...] = AUDIOSET_PLACEHOLDER_LABELS,
                 sample_rate: int = 32000, window_size: int = 1024, hop_size: int = 320, mel_bins: int = 64,
                 fmin: float = 50.0, fmax: float = 14000.0, clip_seconds: float = 10.0):
        super().__init__()
        self.labels = tuple(labels)
        self.sample_rate = sample_rate
        self.clip_seconds = clip_seconds
        self.multilabel = True
        self.front_end = PannsLogMel(sample_rate, window_size, hop_size, mel_bins, fmin, fmax)
        exclude_from_state_dict(self.front_end)  # rebuilt from config; the published melW below is authoritative
        self.spectrogram_extractor = TorchlibrosaSpectrogram(window_size)
        self.logmel_extractor = BufferHolder(melW=self.front_end.mel.mel_scale.fb.clone())
        self.register_load_state_dict_post_hook(_use_loaded_filter_bank)
        self.bn0 = nn.BatchNorm2d(mel_bins)
        c_in = 1
        for index, c_out in enumerate(self.channels, start=1):
            self.add_module(f"conv_block{index}", ConvBlock(c_in, c_out))
            c_in = c_out
        self.fc1 = nn.Linear(c_in, c_in)
        self.fc_audioset = nn.Linear(c_in, len(self.labels))
        self.dropout = nn.Dropout(0.5)
        self.block_dropout = nn.Dropout(0.2)

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        return self.front_end(audio)

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x = self.bn0(features.unsqueeze(-1))   # [B, mel, frames, 1]: batch norm per mel bin, as published
        x = x.permute(0, 3, 2, 1)              # [B, 1, frames, mel]: the published (time, frequency) layout
        blocks = len(self.channels)
        for index in range(1, blocks + 1):
            pool = (2, 2) if index < blocks else (1, 1)
            x = self.block_dropout(getattr(self, f"conv_block{index}")(x, pool))
        x = x.mean(dim=3)                      # over frequency
        x = x.amax(dim=2) + x.mean(dim=2)      # max + mean over time
        return {"audio": F.relu(self.fc1(self.dropout(x)))}

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc_audioset(embeddings["audio"])  # published: no dropout between fc1 and fc_audioset


def _use_loaded_filter_bank(model: Cnn14, incompatible_keys: object) -> None:
    """After a state-dict load, make the front end use the (possibly published) ``logmel_extractor.melW``."""
    with torch.no_grad():
        model.front_end.mel.mel_scale.fb.copy_(model.logmel_extractor.melW)
