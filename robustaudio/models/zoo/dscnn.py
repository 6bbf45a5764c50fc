"""DS-CNN keyword spotter (Zhang et al. 2017 "Hello Edge"; thesis §6.9, Table 6.5 "DSCNN").

One standard convolution (10x4 over time x frequency, stride 2x2), then depthwise separable
blocks (3x3 depthwise convolution, batch norm, ReLU, 1x1 pointwise convolution, batch norm,
ReLU), global average pooling and a linear layer. Defaults are Hello Edge's DS-CNN-S widths
(64 channels, 4 separable blocks); DS-CNN-L is ``channels=276, blocks=5``.

Input spec: 16 kHz, 1 s (Speech Commands); 40 log-mel bins or 40 MFCCs from 40 ms frames with a
20 ms hop (Hello Edge's framing): ``[B, 40, 51]``; or (``feature_kind="pcan"``) microWakeWord's
40-channel PCAN features every 10 ms, ``[B, 40, 98]``. The thesis trains it as a wake-word detector
(wake word present or not), hence 2 classes by default; Hello Edge's 12-class task is
``labels=`` the 10 keywords + "silence" + "unknown".
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from ..base import Classifier
from ..frontends import LogMel, MicroFrontend

WAKE_WORD_LABELS: tuple[str, ...] = ("other", "wake_word")


def depthwise_separable(channels: int) -> nn.Sequential:
    """3x3 depthwise conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU; ``[B, C, H, W]`` -> same shape."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
        nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
    )


class DSCNN(Classifier):
    """DS-CNN (Hello Edge; thesis §6.9): features ``[B, n_mels, frames]`` -> embedding ``[B, channels]`` -> logits.

    ``feature_kind`` is ``"logmel"`` or ``"mfcc"`` (the orthonormal DCT-II of the same log-mel,
    keeping ``n_mels`` coefficients, so the mel front end is shared), or ``"pcan"``: microWakeWord's
    front end (:class:`~robustaudio.models.frontends.MicroFrontend`: 30 ms windows every 10 ms, 40
    channels, noise reduction, PCAN gain control, log), standardised with ``feature_mean`` /
    ``feature_std``, ``[B, 40, 1 + (T - 480) // 160]`` (98 frames for 1 s); it needs ``n_mels=40``.
    """

    def __init__(self, labels: list[str] | tuple[str, ...] = WAKE_WORD_LABELS, feature_kind: str = "mfcc",
                 n_mels: int = 40, channels: int = 64, blocks: int = 4,
                 first_kernel: tuple[int, int] = (10, 4), first_stride: tuple[int, int] = (2, 2),
                 clip_seconds: float = 1.0, feature_mean: float = 0.0, feature_std: float = 1.0):
        super().__init__()
        if feature_kind not in ("logmel", "mfcc", "pcan"):
            raise ValueError(f"feature_kind must be 'logmel', 'mfcc' or 'pcan', not {feature_kind!r}")
        if feature_kind == "pcan" and n_mels != 40:
            raise ValueError(f"feature_kind 'pcan' (microWakeWord's front end) has 40 channels: n_mels must be 40, "
                             f"not {n_mels}")
        self.labels = tuple(labels)
        self.sample_rate = 16000
        self.clip_seconds = clip_seconds
        self.multilabel = False
        self.feature_kind = feature_kind
        self.front_end: LogMel | MicroFrontend
        if feature_kind == "pcan":
            self.front_end = MicroFrontend(mean=feature_mean, std=feature_std)
        else:
            self.front_end = LogMel(sample_rate=16000, n_fft=1024, win_length=640, hop_length=320, n_mels=n_mels,
                                    f_min=20.0, f_max=8000.0, mean=feature_mean, std=feature_std)
        if feature_kind == "mfcc":
            # [n_mels, n_mels] DCT matrix; derived from the config, so not saved
            self.register_buffer("dct", torchaudio.functional.create_dct(n_mels, n_mels, norm="ortho"),
                                 persistent=False)
        time_pad, frequency_pad = first_kernel[0] // 2 - 1, first_kernel[1] // 2 - 1
        self.first = nn.Sequential(
            nn.Conv2d(1, channels, first_kernel, stride=first_stride, padding=(time_pad, frequency_pad), bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
        )
        self.separable = nn.Sequential(*[depthwise_separable(channels) for _ in range(blocks)])
        self.fc = nn.Linear(channels, len(self.labels))

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` -> log-mel or MFCC ``[B, n_mels, T // 320 + 1]`` (51 frames for 1 s), or the standardised
        microWakeWord features ``[B, 40, 1 + (T - 480) // 160]`` (98 frames for 1 s) for ``"pcan"``."""
        log_mel = self.front_end(audio)
        if self.feature_kind == "mfcc":
            return torch.einsum("bmt,mc->bct", log_mel, self.dct)
        return log_mel

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x = self.first(features.transpose(1, 2).unsqueeze(1))  # [B, C, frames/2, bins/2] in (time, frequency)
        return {"audio": self.separable(x).mean(dim=(2, 3))}

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(embeddings["audio"])
