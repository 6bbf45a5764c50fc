"""A small Audio Spectrogram Transformer (AST, Gong et al. 2021; thesis ch. 6) on Kaldi fbank patches.

Same structure as AST — 16x16 patches with stride 10 in both axes (overlapping), a [CLS] and a
distillation token, learned position embeddings, pre-norm Transformer encoder, head on the mean
of the two tokens — scaled down (64 mel bins, 1 s clips, width 96, depth 4) so it trains on the
bundled data on a CPU. The full-size AST (128x1024 fbank) belongs to the model zoo.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Classifier
from .frontends import KaldiFbank


class SmallAST(Classifier):
    """Kaldi fbank ``[B, n_mels, frames]`` -> patch tokens ``[B, N, dim]`` -> Transformer -> logits.

    For 1 s at 16 kHz (98 frames) and 64 mel bins: 5 x 9 = 45 patches. Embedding ``[B, dim]``.
    """

    def __init__(self, labels: list[str] | tuple[str, ...], sample_rate: int = 16000,
                 n_mels: int = 64, clip_seconds: float = 1.0, patch: int = 16, stride: int = 10,
                 dim: int = 96, depth: int = 4, heads: int = 4, dropout: float = 0.1,
                 multilabel: bool = False, feature_mean: float = 0.0, feature_std: float = 1.0):
        super().__init__()
        self.labels = tuple(labels)
        self.sample_rate = sample_rate
        self.clip_seconds = clip_seconds
        self.multilabel = multilabel
        self.front_end = KaldiFbank(sample_rate=sample_rate, n_mels=n_mels, mean=feature_mean, std=feature_std)
        frames = 1 + (int(round(clip_seconds * sample_rate)) - 400) // 160
        self.frames = frames
        self.patch_embed = nn.Conv2d(1, dim, kernel_size=patch, stride=stride)
        n_patches = ((n_mels - patch) // stride + 1) * ((frames - patch) // stride + 1)
        self.tokens = nn.Parameter(torch.zeros(1, 2, dim))  # [CLS] and distillation token
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 2, dim))
        nn.init.trunc_normal_(self.tokens, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, len(self.labels))

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        return self.front_end(audio)

    def _fit_frames(self, features: torch.Tensor) -> torch.Tensor:
        """Crop or zero-pad the time axis to the trained number of frames (as AST does)."""
        n = features.shape[-1]
        if n > self.frames:
            return features[..., : self.frames]
        if n < self.frames:
            return nn.functional.pad(features, (0, self.frames - n))
        return features

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x = self.patch_embed(self._fit_frames(features).unsqueeze(1))  # [B, dim, f, t]
        x = x.flatten(2).transpose(1, 2)                                # [B, N, dim]
        x = torch.cat([self.tokens.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.encoder(x))
        return {"audio": (x[:, 0] + x[:, 1]) / 2}

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(embeddings["audio"])
