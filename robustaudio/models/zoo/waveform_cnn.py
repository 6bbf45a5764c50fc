"""Very deep fully convolutional networks on raw waveforms: M3, M5, M11, M18, M34-res (thesis ch. 3, Table 3.1).

Dai et al. 2017 as described in thesis §3.2: a wide first convolution (receptive field 80 samples
= 10 ms at 8 kHz, stride 4) acts as a learned band-pass filter bank, then 3-sample convolutions;
every convolution is followed by batch norm and ReLU; 4x max pooling after the first layer and
after each of the next three stages (32000 -> 8000 -> 2000 -> 500 -> 125 -> 32 samples); global
average pooling and a single linear (softmax) layer, no other fully connected layers or dropout.
M34-res uses residual blocks of two convolutions (Figure 3.1b).

Input spec (§3.3, UrbanSound8K): 8 kHz mono, 4 s = 32000 samples, each clip standardised to zero
mean and unit variance; 10 classes.
"""

from __future__ import annotations

import torch
from torch import nn

from ..base import Classifier

URBANSOUND8K_LABELS: tuple[str, ...] = (
    "air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling",
    "engine_idling", "gun_shot", "jackhammer", "siren", "street_music",
)
STANDARDISE_EPS = 1e-5  # keeps per-clip standardisation finite on digital silence


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """1-D convolution ('same' padding, no bias: batch norm follows), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=(kernel - stride + 1) // 2, bias=False),
        nn.BatchNorm1d(c_out), nn.ReLU(inplace=True),
    )


class ResidualBlock1d(nn.Module):
    """Two 3-sample convolutions with a skip connection (thesis Figure 3.1b, M34-res).

    ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``; the shortcut is a 1x1 convolution + batch
    norm when the channel count changes (first block of a stage), the identity otherwise.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(c_in, c_out),
            nn.Conv1d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm1d(c_out),
        )
        self.shortcut = (nn.Identity() if c_in == c_out else
                         nn.Sequential(nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class WaveformCNN(Classifier):
    """Table 3.1 network; subclasses fix the layer plan in ``first_channels`` and ``stages``.

    ``stages`` lists the rows of Table 3.1 after the first layer as ``(channels, repeats)``: plain
    convolutions, or residual blocks of two convolutions when ``residual``. A 4x max pool follows
    the first layer and each of the first three stages (the table's 2000 / 500 / 125 / 32 rows).

    ``features(audio)`` is the waveform itself viewed as ``[B, 1, T]`` (one channel, ``T`` samples),
    standardised per clip: these models have no fixed front end, their first convolution is the
    (learned) filter bank. Embedding: ``[B, channels of the last stage]`` after global average pooling.
    """

    first_channels: int = 0
    stages: tuple[tuple[int, int], ...] = ()
    residual: bool = False
    first_kernel: int = 80   # 10 ms at 8 kHz
    first_stride: int = 4
    pool: int = 4
    pooled_stages: int = 3   # stages followed by max pooling; the fourth goes straight to global pooling

    def __init__(self, labels: list[str] | tuple[str, ...] = URBANSOUND8K_LABELS, sample_rate: int = 8000,
                 clip_seconds: float = 4.0, standardise: bool = True):
        super().__init__()
        self.labels = tuple(labels)
        self.sample_rate = sample_rate
        self.clip_seconds = clip_seconds
        self.multilabel = False
        self.standardise = standardise
        layers: list[nn.Module] = [conv_bn_relu(1, self.first_channels, self.first_kernel, self.first_stride),
                                   nn.MaxPool1d(self.pool, ceil_mode=True)]  # ceil: 125 -> 32 as in the table
        c_in = self.first_channels
        for index, (channels, repeats) in enumerate(self.stages):
            for _ in range(repeats):
                layers.append(ResidualBlock1d(c_in, channels) if self.residual else conv_bn_relu(c_in, channels))
                c_in = channels
            if index < self.pooled_stages:
                layers.append(nn.MaxPool1d(self.pool, ceil_mode=True))
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, len(self.labels))

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` waveform -> ``[B, 1, T]``, zero mean and unit variance per clip when ``standardise``."""
        x = audio.unsqueeze(1)
        if self.standardise:
            x = (x - x.mean(dim=-1, keepdim=True)) / (x.std(dim=-1, keepdim=True) + STANDARDISE_EPS)
        return x

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"audio": self.body(features).mean(dim=-1)}  # global average pooling over time

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(embeddings["audio"])


class M3(WaveformCNN):
    """Table 3.1 M3 (0.2M): [80/4, 256], pool, [3, 256], pool, global average pooling, linear.

    Input: 8 kHz waveform, 4 s (32000 samples); 10 UrbanSound8K classes.
    """

    first_channels = 256
    stages = ((256, 1),)


class M5(WaveformCNN):
    """Table 3.1 M5 (0.5M): [80/4, 128], then [3, 128], [3, 256], [3, 512], each followed by a 4x pool.

    Input: 8 kHz waveform, 4 s (32000 samples); 10 UrbanSound8K classes.
    """

    first_channels = 128
    stages = ((128, 1), (256, 1), (512, 1))


class M11(WaveformCNN):
    """Table 3.1 M11 (1.8M): [80/4, 64], [3, 64]x2, [3, 128]x2, [3, 256]x3, [3, 512]x2.

    Input: 8 kHz waveform, 4 s (32000 samples); 10 UrbanSound8K classes.
    """

    first_channels = 64
    stages = ((64, 2), (128, 2), (256, 3), (512, 2))


class M18(WaveformCNN):
    """Table 3.1 M18 (3.7M): [80/4, 64], [3, 64]x4, [3, 128]x4, [3, 256]x4, [3, 512]x4.

    Input: 8 kHz waveform, 4 s (32000 samples); 10 UrbanSound8K classes.
    """

    first_channels = 64
    stages = ((64, 4), (128, 4), (256, 4), (512, 4))


class M34Res(WaveformCNN):
    """Table 3.1 M34-res (4M): [80/4, 48], then residual blocks [3, 48]x3, [3, 96]x4, [3, 192]x6, [3, 384]x3.

    Input: 8 kHz waveform, 4 s (32000 samples); 10 UrbanSound8K classes.
    """

    first_channels = 48
    stages = ((48, 3), (96, 4), (192, 6), (384, 3))
    residual = True
