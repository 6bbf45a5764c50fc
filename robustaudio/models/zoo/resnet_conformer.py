"""ResNet-50 and Conformer taggers with attention pooling (thesis §6.3, Table 6.2, Figure 6.1 D and E).

Both read the thesis's 64 x 400 log-mel (:func:`~robustaudio.models.zoo.crnn.talnet_logmel`, the
A3/A4 feature of Table 6.1), turn it into a sequence of frame embeddings, and finish with the
decision-level attention pooling of ch. 4 (:class:`~robustaudio.models.zoo.pooling.MILHead`).

torchvision is not a dependency, so ResNet-50 is built here with torchvision's module names
(``conv1``, ``bn1``, ``layer1``..``layer4``, ``Bottleneck.conv1..3 / bn1..3 / downsample``), which
lets ImageNet weights be mapped in (summing ``conv1`` over its three input channels, as AST does).
"""

from __future__ import annotations

import torch
from torch import nn
from torchaudio.models import Conformer as TorchaudioConformer

from .crnn import AUDIOSET_PLACEHOLDER_LABELS, FrameMILClassifier


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1x1 reduce, 3x3 (carries the stride), 1x1 expand by 4, plus a shortcut."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (None if stride == 1 and c_in == c_out else
                           nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + shortcut)


class ResNet50Attention(FrameMILClassifier):
    """ResNet-50 with attention pooling (thesis §6.3 "ResNet", after Ford et al. 2019; Table 6.2: 25.6M).

    The log-mel is a one-channel image ``[B, 1, n_mels, frames]``; the standard ResNet-50 trunk
    (stages of 3, 4, 6, 3 bottlenecks, overall stride 32) gives ``[B, 2048, n_mels/32, frames/32]``;
    averaging over frequency leaves frame embeddings ``[B, 13, 2048]`` for 10 s, and the final
    fully connected layer is replaced by the attention-pooling MIL head over 527 classes.

    Input: 16 kHz, 10 s waveform -> 64 x 401 log-mel (:func:`talnet_logmel`).
    """

    def __init__(self, labels: list[str] | tuple[str, ...] = AUDIOSET_PLACEHOLDER_LABELS,
                 pooling: str = "attention", n_mels: int = 64, blocks: tuple[int, ...] = (3, 4, 6, 3),
                 base_width: int = 64, clip_seconds: float = 10.0,
                 feature_mean: float = 0.0, feature_std: float = 1.0):
        super().__init__(labels, n_mels, clip_seconds, feature_mean, feature_std)
        self.conv1 = nn.Conv2d(1, base_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        c_in = base_width
        for index, repeats in enumerate(blocks):
            width = base_width * 2 ** index
            stage = []
            for block in range(repeats):
                stage.append(Bottleneck(c_in, width, stride=2 if block == 0 and index > 0 else 1))
                c_in = width * Bottleneck.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
        self.stages = len(blocks)
        self.attach_head(c_in, pooling)

    def frame_embeddings(self, features: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(features.unsqueeze(1)))))
        for index in range(1, self.stages + 1):
            x = getattr(self, f"layer{index}")(x)
        return x.mean(dim=2).transpose(1, 2)  # average over frequency -> [B, frames', 2048]


class ConvSubsampling(nn.Module):
    """Two 3x3 stride-2 convolutions with ReLU (4x fewer frames), then a linear map to ``model_dim``.

    ``[B, n_mels, frames]`` -> ``[B, ceil(frames / 4), model_dim]``, the usual Conformer input stage.
    """

    def __init__(self, n_mels: int, model_dim: int, channels: int = 32):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(inplace=True),
        )
        reduced_bins = (n_mels + 3) // 4
        self.linear = nn.Linear(channels * reduced_bins, model_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.conv(features.transpose(1, 2).unsqueeze(1))  # [B, C, frames/4, n_mels/4]
        return self.linear(x.transpose(1, 2).flatten(2))


class ConformerAttention(FrameMILClassifier):
    """Conformer with attention pooling (thesis §6.3 "Conformer", after Srivastava et al. 2021; Table 6.2: 88.1M).

    Convolutional 4x subsampling to 768-d frames, 12 Conformer blocks (torchaudio
    ``models.Conformer``: 12 heads, feed-forward width 1024, depthwise kernel 31), then the
    attention-pooling MIL head. Frame embeddings ``[B, 101, 768]`` for 10 s.

    Input: 16 kHz, 10 s waveform -> 64 x 401 log-mel (:func:`talnet_logmel`).
    """

    def __init__(self, labels: list[str] | tuple[str, ...] = AUDIOSET_PLACEHOLDER_LABELS,
                 pooling: str = "attention", n_mels: int = 64, model_dim: int = 768, layers: int = 12,
                 heads: int = 12, ffn_dim: int = 1024, kernel_size: int = 31, dropout: float = 0.1,
                 subsampling_channels: int = 32, clip_seconds: float = 10.0,
                 feature_mean: float = 0.0, feature_std: float = 1.0):
        super().__init__(labels, n_mels, clip_seconds, feature_mean, feature_std)
        self.subsampling = ConvSubsampling(n_mels, model_dim, subsampling_channels)
        self.conformer = TorchaudioConformer(model_dim, heads, ffn_dim, layers, kernel_size, dropout=dropout)
        self.attach_head(model_dim, pooling)

    def frame_embeddings(self, features: torch.Tensor) -> torch.Tensor:
        x = self.subsampling(features)
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        return self.conformer(x, lengths)[0]
