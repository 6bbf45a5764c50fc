"""CRNN / TALNet and CNN+Transformer (TAL-trans) taggers (thesis ch. 4 and §6.3, Figure 6.1 A and B).

TALNet (Wang, Li and Metze 2019) as used in the thesis: 10 convolution layers (3x3, batch norm,
ReLU) with a 2x max pool after every second one; the first two pools halve time and frequency,
the last three frequency only, so a 64-bin x 400-frame log-mel (40 frames/s) becomes 512 channels
x 2 bins x 100 frames (10 frames/s), i.e. a 1024-dimensional embedding per frame. Channel widths
follow TALNet's rule ``channels = embedding_size / frequency_bins`` (32, 32, 64, 64, ..., 512, 512).
A bidirectional GRU (512 per direction) or, in TAL-trans, a Transformer encoder models time; a
linear layer and a sigmoid give frame probabilities, and a MIL pooling (ch. 4) the clip probability.

Input spec (TALNet, thesis §6.4 footnote 6 — the "64 x 400" feature): 16 kHz, 10 s; frames of
1024 samples (64 ms), hop 400 (25 ms), Hann window zero-padded to a 4096-point FFT, 64 mel
filters from 0 to 8 kHz, natural log. AudioSet: 527 classes, multi-label.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..base import Classifier
from ..frontends import LogMel
from .pooling import MILHead

AUDIOSET_CLASSES = 527


def placeholder_labels(count: int, prefix: str = "class") -> tuple[str, ...]:
    """``("class_000", ...)``: default label names when only the class count is known (e.g. AudioSet's 527)."""
    width = len(str(count - 1))
    return tuple(f"{prefix}_{k:0{width}d}" for k in range(count))


AUDIOSET_PLACEHOLDER_LABELS = placeholder_labels(AUDIOSET_CLASSES)


def talnet_logmel(n_mels: int = 64, feature_mean: float = 0.0, feature_std: float = 1.0) -> LogMel:
    """The thesis's 64 x 400 log-mel (TALNet): 16 kHz, 64 ms Hann frames, 25 ms hop, 4096-point FFT, 0-8 kHz.

    Output ``[B, n_mels, T // 400 + 1]``: 401 frames for 10 s.
    """
    return LogMel(sample_rate=16000, n_fft=4096, win_length=1024, hop_length=400, n_mels=n_mels,
                  f_min=0.0, f_max=8000.0, mean=feature_mean, std=feature_std)


class TALNetConvBlock(nn.Sequential):
    """3x3 convolution, batch norm, ReLU, then an optional max pool of ``pool = (time, frequency)``."""

    def __init__(self, c_in: int, c_out: int, pool: tuple[int, int] | None):
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                                   nn.ReLU(inplace=True)]
        if pool is not None:
            layers.append(nn.MaxPool2d(pool))
        super().__init__(*layers)


class TALNetCNN(nn.Module):
    """TALNet's convolution stack: log-mel ``[B, n_mels, frames]`` -> frame embeddings ``[B, frames', embedding_size]``.

    ``conv_layers`` convolutions, a pool after every ``conv_layers / pool_layers``-th; the first
    ``time_pools`` pools are 2x2 (time and frequency), the rest 1x2 (frequency only), so
    ``frames' = frames // 2**time_pools`` and the output has ``n_mels / 2**pool_layers`` bins.
    """

    def __init__(self, n_mels: int = 64, embedding_size: int = 1024, conv_layers: int = 10,
                 pool_layers: int = 5, time_pools: int = 2, dropout: float = 0.0):
        super().__init__()
        if conv_layers % pool_layers or n_mels % 2 ** pool_layers:
            raise ValueError("conv_layers must be a multiple of pool_layers, n_mels of 2**pool_layers")
        interval = conv_layers // pool_layers
        blocks, c_in, bins, pools_done = [], 1, n_mels, 0
        for layer in range(1, conv_layers + 1):
            if layer % interval == 0:  # this layer pools: its width is set by the halved bin count
                bins //= 2
                pool = (2, 2) if pools_done < time_pools else (1, 2)
                pools_done += 1
                c_out = embedding_size // bins
            else:
                pool, c_out = None, 2 * embedding_size // bins
            blocks.append(TALNetConvBlock(c_in, c_out, pool))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(dropout)
        self.embedding_size = c_in * bins

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features.transpose(1, 2).unsqueeze(1)  # [B, 1, frames, n_mels]: TALNet's (time, frequency) layout
        for block in self.blocks:
            x = block(self.dropout(x))
        return x.permute(0, 2, 1, 3).flatten(2)   # [B, frames', channels * bins]


class FrameMILClassifier(Classifier):
    """Shared Classifier plumbing for taggers that pool frame probabilities (MIL, thesis ch. 4).

    Subclasses set ``front_end`` (waveform -> ``[B, F, frames]``), ``frame_embed_dim`` and
    ``mil_head``, and implement :meth:`frame_embeddings`. The Classifier embedding is the whole
    frame sequence flattened, ``[B, frames' * frame_embed_dim]``, because the MIL head (frame
    classifier, attention weights, pooling) works on every frame; ``head`` unflattens it.
    """

    front_end: nn.Module
    mil_head: MILHead
    frame_embed_dim: int
    sample_rate = 16000
    multilabel = True

    def __init__(self, labels: list[str] | tuple[str, ...], n_mels: int, clip_seconds: float, feature_mean: float,
                 feature_std: float, multilabel: bool = True) -> None:
        """The plumbing every thesis tagger shares: 16 kHz, TALNet log-mel, multi-label by default.

        ``multilabel=False`` treats the clip logits ``logit(p_k)`` as single-label logits (softmax
        and CE; the decision is the class with the highest pooled probability), for training and
        attacking a MIL tagger on a single-label set such as the bundled one.
        """
        super().__init__()
        self.labels = tuple(labels)
        self.multilabel = multilabel
        self.clip_seconds = clip_seconds
        self.front_end = talnet_logmel(n_mels, feature_mean, feature_std)

    def attach_head(self, frame_embed_dim: int, pooling: str) -> None:
        self.frame_embed_dim = frame_embed_dim
        self.mil_head = MILHead(frame_embed_dim, len(self.labels), pooling)

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        return self.front_end(audio)

    def frame_embeddings(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, F, frames]`` -> ``[B, frames', frame_embed_dim]``."""
        raise NotImplementedError

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"audio": self.frame_embeddings(features).flatten(1)}

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        frames = embeddings["audio"].unflatten(1, (-1, self.frame_embed_dim))
        return self.mil_head(frames)

    def frame_probabilities(self, audio: torch.Tensor) -> torch.Tensor:
        """Per-frame class probabilities ``[B, frames', K]`` (for localisation)."""
        return self.mil_head.frame_probabilities(self.frame_embeddings(self.features(audio)))


class CRNN(FrameMILClassifier):
    """CRNN / TALNet (thesis ch. 4, Table 4.2; §6.3 "CRNN", Table 6.2, Figure 6.1 B): CNN -> biGRU -> MIL.

    Input: 16 kHz, 10 s waveform -> 64 x 401 log-mel (:func:`talnet_logmel`). Frame embeddings
    ``[B, 100, 1024]`` (bidirectional GRU, 512 per direction), frame probabilities ``[B, 100, K]``,
    clip logits ``[B, K]`` from the MIL pooling named by ``pooling`` (see ``pooling.MIL_POOLINGS``).
    With attention pooling and 527 classes it has 10.5M parameters, as in Table 6.2.
    """

    def __init__(self, labels: list[str] | tuple[str, ...] = AUDIOSET_PLACEHOLDER_LABELS,
                 pooling: str = "attention", n_mels: int = 64, embedding_size: int = 1024,
                 conv_layers: int = 10, pool_layers: int = 5, dropout: float = 0.0,
                 clip_seconds: float = 10.0, feature_mean: float = 0.0, feature_std: float = 1.0,
                 multilabel: bool = True):
        super().__init__(labels, n_mels, clip_seconds, feature_mean, feature_std, multilabel)
        self.cnn = TALNetCNN(n_mels, embedding_size, conv_layers, pool_layers, dropout=dropout)
        self.gru = nn.GRU(self.cnn.embedding_size, embedding_size // 2, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.attach_head(embedding_size, pooling)

    def frame_embeddings(self, features: torch.Tensor) -> torch.Tensor:
        x, _ = self.gru(self.dropout(self.cnn(features)))
        return self.dropout(x)


def sinusoidal_positions(frames: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Vaswani et al. positional encoding ``[frames, dim]``: sin on even, cos on odd dimensions (thesis §6.3)."""
    position = torch.arange(frames, dtype=torch.float32, device=device).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    encoding = torch.zeros(frames, dim, device=device)
    encoding[:, 0::2] = torch.sin(position * frequency)
    encoding[:, 1::2] = torch.cos(position * frequency)
    return encoding


class TALTrans(FrameMILClassifier):
    """CNN+Transformer, "TAL-trans" (thesis §6.3 "CNN+Transformer", Table 6.2, Figure 6.1 A).

    TALNet's CNN, a linear projection of its 1024-d frame embeddings to ``model_dim``, the
    embeddings scaled by ``round(sqrt(model_dim))`` plus sinusoidal positions, ``layers`` Transformer
    encoder layers, then the MIL head (attention pooling in the thesis). The thesis reports 2
    layers with 8 heads as best; with ``model_dim`` 512 and a 2048 feed-forward width the model
    has 12.1M parameters at 527 classes, matching Table 6.2.

    Input: 16 kHz, 10 s waveform -> 64 x 401 log-mel (:func:`talnet_logmel`); frames ``[B, 100, model_dim]``.
    """

    def __init__(self, labels: list[str] | tuple[str, ...] = AUDIOSET_PLACEHOLDER_LABELS,
                 pooling: str = "attention", n_mels: int = 64, embedding_size: int = 1024,
                 model_dim: int = 512, layers: int = 2, heads: int = 8, ffn_dim: int = 2048,
                 dropout: float = 0.1, clip_seconds: float = 10.0,
                 feature_mean: float = 0.0, feature_std: float = 1.0, multilabel: bool = True):
        super().__init__(labels, n_mels, clip_seconds, feature_mean, feature_std, multilabel)
        self.cnn = TALNetCNN(n_mels, embedding_size)
        self.projection = nn.Linear(self.cnn.embedding_size, model_dim)
        layer = nn.TransformerEncoderLayer(model_dim, heads, dim_feedforward=ffn_dim, dropout=dropout,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.attach_head(model_dim, pooling)

    def frame_embeddings(self, features: torch.Tensor) -> torch.Tensor:
        x = self.projection(self.cnn(features))
        x = x * round(math.sqrt(self.frame_embed_dim)) + sinusoidal_positions(x.shape[1], x.shape[2], x.device)
        return self.encoder(x)
