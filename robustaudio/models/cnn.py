"""A compact log-mel CNN (the bundled default), in the VGG-like style of the thesis's ch. 2 CNNs."""

from __future__ import annotations

import torch
from torch import nn

from .base import Classifier
from .frontends import LogMel


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class LogMelCNN(Classifier):
    """Log-mel (64 bins, 25 ms / 10 ms at 16 kHz) -> 3 double-conv blocks -> mean+max pooling -> linear.

    Input: waveform ``[B, T]`` (any ``T`` ≥ 400). Embedding: ``[B, 2 * channels[-1]]``.
    """

    def __init__(self, labels: list[str] | tuple[str, ...], sample_rate: int = 16000,
                 n_mels: int = 64, channels: tuple[int, ...] = (32, 64, 128), dropout: float = 0.3,
                 clip_seconds: float = 1.0, multilabel: bool = False,
                 feature_mean: float = 0.0, feature_std: float = 1.0):
        super().__init__()
        self.labels = tuple(labels)
        self.sample_rate = sample_rate
        self.clip_seconds = clip_seconds
        self.multilabel = multilabel
        self.front_end = LogMel(sample_rate=sample_rate, n_mels=n_mels, mean=feature_mean, std=feature_std)
        blocks, c_in = [], 1
        for c_out in channels:
            blocks.append(_conv_block(c_in, c_out))
            c_in = c_out
        self.conv = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * c_in, len(self.labels))

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        return self.front_end(audio)

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        h = self.conv(features.unsqueeze(1))           # [B, C, F', frames']
        h = h.mean(dim=2)                              # average over frequency
        h = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1)  # mean + max over time
        return {"audio": h}

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(self.dropout(embeddings["audio"]))
