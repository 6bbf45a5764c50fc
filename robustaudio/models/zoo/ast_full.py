"""Full-size Audio Spectrogram Transformer (Gong et al. 2021; thesis §6.3 "AST/ViT", Tables 6.1-6.3, Figure 6.1 C).

Module and state-dict names follow ``ASTModel`` in YuanGongND/ast (``src/models/ast_models.py``),
whose backbone ``v`` is timm 0.4.5's distilled DeiT-base-384 (``VisionTransformer`` with
``distilled=True``): ``v.cls_token``, ``v.dist_token``, ``v.pos_embed``, ``v.patch_embed.proj``,
``v.blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``v.norm``, the unused
ImageNet heads ``v.head`` and ``v.head_dist`` (1000 classes; kept so released checkpoints load
with no unexpected keys, stored as buffers so they are not trainable parameters), and
``mlp_head.0`` (LayerNorm) / ``mlp_head.1`` (Linear). Released checkpoints were saved from
``nn.DataParallel`` and carry a ``module.`` prefix: :func:`load_published_ast` takes either form.
The transformer is written in plain torch (timm is not a dependency) with timm's parameter names.

Two input specs:

- :class:`AudioSpectrogramTransformer` (procedure A1, 128 x 1024): 16 kHz, 10 s, Kaldi fbank with
  128 bins, 25 ms frames, 10 ms shift (998 frames, zero-padded to 1024 as AST does), normalised
  ``(x - (-4.2677393)) / (2 * 4.5689974)``; 16x16 patches with stride 10: 12 x 101 = 1212 patches.
- :class:`AST64x400` (procedures A3/A4, 64 x 400): the thesis's TALNet log-mel
  (:func:`~robustaudio.models.zoo.crnn.talnet_logmel`), 400 frames; stride 10: 5 x 39 = 195 patches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..base import Classifier
from ..frontends import KaldiFbank
from .crnn import AUDIOSET_PLACEHOLDER_LABELS, talnet_logmel
from .panns import BufferHolder, exclude_from_state_dict

AUDIOSET_FBANK_MEAN = -4.2677393  # AST's AudioSet fbank statistics (src/run.py)
AUDIOSET_FBANK_STD = 4.5689974
VIT_LAYER_NORM_EPS = 1e-6  # timm ViT's LayerNorm
IMAGENET_CLASSES = 1000


class Attention(nn.Module):
    """timm ViT multi-head self-attention: one ``qkv`` projection (output ordered q|k|v, then heads), ``proj``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, dim]`` -> ``[B, N, dim]``."""
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head_dim)) v
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """timm ViT feed-forward: ``fc2(gelu(fc1(x)))``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm ViT block (timm ``Block``): ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=VIT_LAYER_NORM_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=VIT_LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """AST's patch embedding: one-channel ``[B, 1, F, T]`` -> tokens ``[B, f * t, dim]`` (frequency-major)."""

    def __init__(self, dim: int, patch: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=patch, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DistilledViT(nn.Module):
    """ASTModel's ``v``: distilled DeiT, [CLS] + distillation tokens; ``[B, 1, F, T]`` -> ``[B, N + 2, dim]``."""

    def __init__(self, patches: int, dim: int, depth: int, heads: int, patch: int, stride: int,
                 imagenet_classes: int = IMAGENET_CLASSES):
        super().__init__()
        self.patch_embed = PatchEmbed(dim, patch, stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + 2, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=VIT_LAYER_NORM_EPS)
        # DeiT's ImageNet classifier heads: never used by AST, present in its released checkpoints
        self.head = BufferHolder(weight=torch.zeros(imagenet_classes, dim), bias=torch.zeros(imagenet_classes))
        self.head_dist = BufferHolder(weight=torch.zeros(imagenet_classes, dim), bias=torch.zeros(imagenet_classes))
        for parameter in (self.cls_token, self.dist_token, self.pos_embed):
            nn.init.trunc_normal_(parameter, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        tokens = torch.cat([self.cls_token, self.dist_token], dim=1).expand(x.shape[0], -1, -1)
        x = torch.cat([tokens, x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x))


class AudioSpectrogramTransformer(Classifier):
    """AST-base on 128 x 1024 Kaldi fbank (thesis Table 6.1 "AST" and procedure A1; Table 6.3 stride 10: 1212 patches).

    ``features``: normalised fbank ``[B, n_mels, frames]`` (998 frames for 10 s). ``embeddings``:
    the time axis cropped or padded to ``target_frames`` (padding with the normalised value of a
    raw 0, as AST pads before normalising), patches, 12 pre-norm blocks (768-d, 12 heads), the
    mean of the [CLS] and distillation tokens -> ``[B, 768]``. ``head``: ``mlp_head`` (LayerNorm,
    Linear) -> logits. ``feature_kind`` is ``"fbank"`` (Kaldi) or ``"logmel"`` (the thesis's TALNet log-mel).
    """

    def __init__(self, labels: list[str] | tuple[str, ...] = AUDIOSET_PLACEHOLDER_LABELS,
                 feature_kind: str = "fbank", n_mels: int = 128, target_frames: int = 1024,
                 patch: int = 16, stride: int = 10, dim: int = 768, depth: int = 12, heads: int = 12,
                 clip_seconds: float = 10.0, feature_mean: float = AUDIOSET_FBANK_MEAN,
                 feature_std: float = AUDIOSET_FBANK_STD, imagenet_classes: int = IMAGENET_CLASSES):
        super().__init__()
        self.labels = tuple(labels)
        self.sample_rate = 16000
        self.clip_seconds = clip_seconds
        self.multilabel = True
        self.target_frames = target_frames
        scale = 2 * feature_std  # AST normalises by twice the dataset std
        if feature_kind == "fbank":
            self.front_end: nn.Module = KaldiFbank(sample_rate=16000, n_mels=n_mels, mean=feature_mean, std=scale)
        elif feature_kind == "logmel":
            self.front_end = talnet_logmel(n_mels, feature_mean, scale)
        else:
            raise ValueError(f"feature_kind must be 'fbank' or 'logmel', not {feature_kind!r}")
        exclude_from_state_dict(self.front_end)  # statistics come from the config: keeps the published keys
        self.padding_value = -feature_mean / scale
        patches = ((n_mels - patch) // stride + 1) * ((target_frames - patch) // stride + 1)
        self.v = DistilledViT(patches, dim, depth, heads, patch, stride, imagenet_classes)
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, len(self.labels)))

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        return self.front_end(audio)

    def fit_frames(self, features: torch.Tensor) -> torch.Tensor:
        """Crop or pad ``[B, F, frames]`` to ``target_frames``; the pad is a raw log-energy of 0, normalised."""
        missing = self.target_frames - features.shape[-1]
        if missing < 0:
            return features[..., : self.target_frames]
        return F.pad(features, (0, missing), value=self.padding_value)

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x = self.v(self.fit_frames(features).unsqueeze(1))
        return {"audio": (x[:, 0] + x[:, 1]) / 2}

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.mlp_head(embeddings["audio"])


class AST64x400(AudioSpectrogramTransformer):
    """AST on the thesis's 64 x 400 log-mel (§6.4, procedures A3/A4 of Tables 6.1-6.3; stride 10: 195 patches).

    Input: 16 kHz, 10 s -> TALNet log-mel 64 x 401 (:func:`talnet_logmel`), cropped to 400 frames.
    ``feature_mean`` / ``feature_std`` default to 0 / 1 (AST's fbank statistics do not apply to this
    feature; fit them with ``front_end.raw``). Same backbone and key names as the 128 x 1024 model.
    """

    def __init__(self, labels: list[str] | tuple[str, ...] = AUDIOSET_PLACEHOLDER_LABELS,
                 feature_kind: str = "logmel", n_mels: int = 64, target_frames: int = 400,
                 feature_mean: float = 0.0, feature_std: float = 1.0, **config: Any) -> None:
        super().__init__(labels, feature_kind=feature_kind, n_mels=n_mels, target_frames=target_frames,
                         feature_mean=feature_mean, feature_std=feature_std, **config)


def load_published_ast(model: AudioSpectrogramTransformer, state_dict: dict[str, torch.Tensor]) -> None:
    """Load an AST checkpoint in the published ``ASTModel`` layout, with or without the ``module.`` prefix.

    Strict: raises ``RuntimeError`` naming any missing or unexpected key, or any shape mismatch
    (e.g. a positional embedding for another patch grid, or another class count).
    """
    prefix = "module."
    if all(key.startswith(prefix) for key in state_dict):
        state_dict = {key[len(prefix):]: value for key, value in state_dict.items()}
    model.load_state_dict(state_dict, strict=True)
