"""Audio-visual fusion at four depths (thesis ch. 5, 10, 11; specs §3) and the single-modality baselines.

Every model here is one audio branch and/or one video branch (the same two classes for all of them)
plus a fusion stage, behind the :class:`~robustaudio.models.Classifier` contract::

    features(audio)            log-mel [B, n_mels, frames] (normalised, in the graph)
    embeddings(features, video) {"audio": [B, Da], "video": [B, Dv]}: each modality at the point
                                where it is fused (flattened; ``head`` restores the shapes)
    head(embeddings)           logits [B, K]

Inputs: ``audio`` ``[B, T]`` in [-1, 1] at 16 kHz; ``video`` ``[B, F, 3, H, W]`` raw frames in [0, 1]
(``video_input="frames"``, through a small image CNN) or precomputed frame embeddings ``[B, F, E]``
(``video_input="embeddings"``, e.g. the thesis's 2048-d frame features, through a linear layer).

===============  ==========================================================================================
``early``        video frame embeddings projected to ``video_rows`` rows, held over their frame's time span
                 and stacked under the log-mel rows; one conv stack sees both [paper: fused before the
                 conv stack]
``mid``          per-segment audio conv features (one segment per video frame) concatenated with the frame
                 embeddings, a shared layer, mean+max over segments [paper: per-second conv features ⊕
                 frame embedding]
``late``         frame-wise logits ``z_t = W_a a_t + W_v v_t + b``, attention pooling over frames with
                 weights from the same linear fusion [paper: linear fusion then frame-wise scores with
                 attention pooling; ours: softmax logits, as the bundled task is single-label]
``superlate``    ``p = 0.6 p_A + 0.4 p_V`` of an audio-only and a video-only model; logits ``log p``
                 [paper]
``audio``        audio-only baseline: mean+max pooled conv features, linear
``video``        video-only baseline: mean frame embedding, linear
===============  ==========================================================================================
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.av import VIDEO_BOUNDS, check_video
from .base import Classifier
from .cnn import _conv_block
from .frontends import LogMel

FUSIONS = ("early", "mid", "late", "superlate", "audio", "video")
VIDEO_INPUTS = ("frames", "embeddings")


def mean_max(sequence: torch.Tensor) -> torch.Tensor:
    """``[B, C, T]`` -> ``[B, 2C]``: mean and max over time, concatenated."""
    return torch.cat([sequence.mean(dim=-1), sequence.amax(dim=-1)], dim=-1)


def segments(sequence: torch.Tensor, count: int) -> torch.Tensor:
    """``[B, C, T]`` -> ``[B, count, C]``: averages over ``count`` equal spans of time (one per video frame)."""
    return F.adaptive_avg_pool1d(sequence, count).transpose(1, 2)


class AudioBranch(nn.Module):
    """Conv stack over a ``[B, rows, frames]`` time-frequency image -> ``[B, C, frames / 2^n]``.

    Double 3×3 conv blocks with 2×2 max pooling (as the bundled log-mel CNN), then the mean over
    the (pooled) rows. Row-count agnostic, so early fusion feeds it log-mel rows plus video rows.
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        blocks, c_in = [], 1
        for c_out in channels:
            blocks.append(_conv_block(c_in, c_out))
            c_in = c_out
        self.conv = nn.Sequential(*blocks)
        self.out_dim = c_in

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(image.unsqueeze(1)).mean(dim=2)


class VideoBranch(nn.Module):
    """Video -> frame embeddings ``[B, F, dim]``.

    ``frames``: raw frames ``[B, F, 3, H, W]`` in [0, 1], each through a small CNN (3×3 conv, batch
    norm, ReLU, 2×2 max pool per stage; global average; linear; ReLU). ``embeddings``: precomputed
    ``[B, F, embedding_dim]`` through linear + ReLU.
    """

    def __init__(self, dim: int = 64, video_input: str = "frames", channels: tuple[int, ...] = (16, 32, 64),
                 embedding_dim: int | None = None):
        super().__init__()
        if video_input not in VIDEO_INPUTS:
            raise ValueError(f"video_input must be one of {', '.join(VIDEO_INPUTS)}, got {video_input!r}.")
        if video_input == "embeddings" and not embedding_dim:
            raise ValueError("video_input='embeddings' needs embedding_dim (the size of one frame embedding).")
        self.video_input = video_input
        self.dim = dim
        if video_input == "frames":
            stages, c_in = [], 3
            for c_out in channels:
                stages += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                           nn.ReLU(inplace=True), nn.MaxPool2d(2)]
                c_in = c_out
            self.encoder = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, dim),
                                         nn.ReLU())
        else:
            assert embedding_dim is not None  # checked above for video_input="embeddings"
            self.encoder = nn.Sequential(nn.Linear(embedding_dim, dim), nn.ReLU())

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        batch, frames = video.shape[:2]
        flat = video.reshape(batch * frames, *video.shape[2:])
        if self.video_input == "frames":
            flat = (flat - 0.5) / 0.25  # [0, 1] pixels to roughly unit scale
        return self.encoder(flat).reshape(batch, frames, self.dim)


class AudioVisualClassifier(Classifier):
    """Shared plumbing: the log-mel front end, the branches the fusion uses, input checks.

    Args:
        labels: class names. frames: video frames per clip (segments for mid/late fusion).
        frame_size: frame height = width in pixels (``video_input="frames"``).
        video_embedding_dim: size of a precomputed frame embedding (``video_input="embeddings"``).
        audio_channels / video_channels: conv widths of the branches; video_dim: frame embedding size.
        feature_mean / feature_std: log-mel normalisation (fitted on the training clips).
    """

    fusion = ""
    modalities: tuple[str, ...] = ("audio", "video")
    video_bounds = VIDEO_BOUNDS

    def __init__(self, labels: list[str] | tuple[str, ...], *, sample_rate: int = 16000, clip_seconds: float = 1.0,
                 n_mels: int = 64, frames: int = 4, frame_size: int = 32, video_input: str = "frames",
                 video_embedding_dim: int | None = None, audio_channels: tuple[int, ...] = (16, 32, 64),
                 video_channels: tuple[int, ...] = (16, 32, 64), video_dim: int = 64, dropout: float = 0.2,
                 feature_mean: float = 0.0, feature_std: float = 1.0):
        super().__init__()
        self.labels = tuple(labels)
        self.sample_rate, self.clip_seconds = sample_rate, clip_seconds
        self.n_mels, self.frames, self.frame_size = n_mels, frames, frame_size
        self.video_input, self.video_embedding_dim = video_input, video_embedding_dim
        self.front_end = LogMel(sample_rate=sample_rate, n_mels=n_mels, mean=feature_mean, std=feature_std)
        self.dropout = nn.Dropout(dropout)
        if "audio" in self.modalities:
            self.audio_branch = AudioBranch(tuple(audio_channels))
        if "video" in self.modalities:
            self.video_branch = VideoBranch(video_dim, video_input, tuple(video_channels), video_embedding_dim)

    def describe(self) -> str:
        return f"{type(self).__name__} ({self.fusion} fusion)" if self.fusion in FUSIONS[:4] else type(self).__name__

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        return self.front_end(audio)

    def frame_embeddings(self, video: torch.Tensor | None) -> torch.Tensor:
        """``[B, F, video_dim]`` after checking that ``video`` has the shape this model takes."""
        if video is None:
            raise ValueError(f"{self.describe()} uses video: call model(audio, video) with video "
                             f"[B, {self.frames}, 3, {self.frame_size}, {self.frame_size}] in [0, 1] (e.g. batches "
                             f"of the bundled avmini data).")
        if self.video_input == "frames":
            check_video(video, self.frames, self.frame_size, self.describe())
        elif video.dim() != 3 or list(video.shape[1:]) != [self.frames, self.video_embedding_dim]:
            raise ValueError(f"{self.describe()} takes frame embeddings [B, {self.frames}, "
                             f"{self.video_embedding_dim}], got {list(video.shape)}.")
        return self.video_branch(video)

    def _unflatten(self, flat: torch.Tensor, width: int) -> torch.Tensor:
        return flat.reshape(flat.shape[0], -1, width)


class AudioOnly(AudioVisualClassifier):
    """Audio baseline: embedding ``mean_max(conv)`` ``[B, 2C]``; logits ``W_a h_A + b``. Ignores video."""

    fusion = "audio"
    modalities = ("audio",)

    def __init__(self, labels: list[str] | tuple[str, ...], **config: Any) -> None:
        super().__init__(labels, **config)
        self.audio_fc = nn.Linear(2 * self.audio_branch.out_dim, len(self.labels))

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"audio": mean_max(self.audio_branch(features))}

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.audio_fc(self.dropout(embeddings["audio"]))


class VideoOnly(AudioVisualClassifier):
    """Video baseline: embedding = mean frame embedding ``[B, D]``; logits ``W_v h_V + b``. Ignores audio."""

    fusion = "video"
    modalities = ("video",)

    def __init__(self, labels: list[str] | tuple[str, ...], **config: Any) -> None:
        super().__init__(labels, **config)
        self.video_fc = nn.Linear(self.video_branch.dim, len(self.labels))

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"video": self.frame_embeddings(video).mean(dim=1)}

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.video_fc(self.dropout(embeddings["video"]))


class EarlyFusion(AudioVisualClassifier):
    """Video rows stacked under the log-mel before the conv stack.

    Embeddings: ``audio`` = the log-mel ``[B, n_mels·frames]``, ``video`` = frame embeddings
    ``[B, F·D]``. Head: each frame embedding -> ``video_rows`` values, held constant over its
    ``1/F`` of the clip, stacked under the mel rows -> ``[B, n_mels + video_rows, frames]`` -> conv
    stack -> mean+max -> linear.
    """

    fusion = "early"

    def __init__(self, labels: list[str] | tuple[str, ...], video_rows: int = 16, **config: Any) -> None:
        super().__init__(labels, **config)
        self.video_rows = nn.Linear(self.video_branch.dim, video_rows)
        self.fc = nn.Linear(2 * self.audio_branch.out_dim, len(self.labels))

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"audio": features.flatten(1), "video": self.frame_embeddings(video).flatten(1)}

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        mel = embeddings["audio"].reshape(embeddings["audio"].shape[0], self.n_mels, -1)   # [B, M, T]
        rows = self.video_rows(self._unflatten(embeddings["video"], self.video_branch.dim))  # [B, F, P]
        rows = F.interpolate(rows.transpose(1, 2), size=mel.shape[-1], mode="nearest")       # [B, P, T]
        return self.fc(self.dropout(mean_max(self.audio_branch(torch.cat([mel, rows], dim=1)))))


class MidFusion(AudioVisualClassifier):
    """Per-segment audio conv features ⊕ frame embeddings -> shared layer -> mean+max over segments.

    Embeddings: ``audio`` ``[B, F·C]`` (conv features averaged over each frame's span), ``video``
    ``[B, F·D]``.
    """

    fusion = "mid"

    def __init__(self, labels: list[str] | tuple[str, ...], hidden: int = 128, **config: Any) -> None:
        super().__init__(labels, **config)
        self.joint = nn.Sequential(nn.Linear(self.audio_branch.out_dim + self.video_branch.dim, hidden), nn.ReLU())
        self.fc = nn.Linear(2 * hidden, len(self.labels))

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"audio": segments(self.audio_branch(features), self.frames).flatten(1),
                "video": self.frame_embeddings(video).flatten(1)}

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        audio = self._unflatten(embeddings["audio"], self.audio_branch.out_dim)
        video = self._unflatten(embeddings["video"], self.video_branch.dim)
        joint = self.joint(torch.cat([audio, video], dim=-1))                     # [B, F, H]
        return self.fc(self.dropout(mean_max(joint.transpose(1, 2))))


class LateFusion(AudioVisualClassifier):
    """Linear fusion of per-segment embeddings, attention pooling over segments.

    ``z_t = W_a a_t + W_v v_t + b`` (``[B, F, K]``), ``w_t = softmax_t(U_a a_t + U_v v_t + c)``,
    logits ``Σ_t w_t ⊙ z_t``. Embeddings as in :class:`MidFusion`.
    """

    fusion = "late"

    def __init__(self, labels: list[str] | tuple[str, ...], **config: Any) -> None:
        super().__init__(labels, **config)
        k = len(self.labels)
        self.audio_scores = nn.Linear(self.audio_branch.out_dim, k)
        self.video_scores = nn.Linear(self.video_branch.dim, k, bias=False)
        self.audio_attention = nn.Linear(self.audio_branch.out_dim, k)
        self.video_attention = nn.Linear(self.video_branch.dim, k, bias=False)

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"audio": segments(self.audio_branch(features), self.frames).flatten(1),
                "video": self.frame_embeddings(video).flatten(1)}

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        audio = self.dropout(self._unflatten(embeddings["audio"], self.audio_branch.out_dim))
        video = self.dropout(self._unflatten(embeddings["video"], self.video_branch.dim))
        scores = self.audio_scores(audio) + self.video_scores(video)                  # [B, F, K]
        weights = torch.softmax(self.audio_attention(audio) + self.video_attention(video), dim=1)
        return (weights * scores).sum(dim=1)


class SuperLateFusion(AudioVisualClassifier):
    """``p = w_a·softmax(z_A) + w_v·softmax(z_V)`` of an audio-only and a video-only model (same
    parameter names, so their state dicts load into it: :meth:`from_baselines`). Logits are
    ``log p`` (softmax of them gives ``p`` back). Embeddings: each baseline's."""

    fusion = "superlate"

    def __init__(self, labels: list[str] | tuple[str, ...], weights: tuple[float, float] = (0.6, 0.4),
                 **config: Any) -> None:
        super().__init__(labels, **config)
        if len(weights) != 2 or min(weights) <= 0 or not math.isclose(sum(weights), 1.0):
            raise ValueError(f"weights must be two positive numbers summing to 1, got {weights}.")
        self.weights = tuple(float(w) for w in weights)
        self.audio_fc = nn.Linear(2 * self.audio_branch.out_dim, len(self.labels))
        self.video_fc = nn.Linear(self.video_branch.dim, len(self.labels))

    @classmethod
    def from_baselines(cls, audio_model: AudioOnly, video_model: VideoOnly, config: dict,
                       weights: tuple[float, float] = (0.6, 0.4)) -> SuperLateFusion:
        """The super-late fusion of two trained baselines (``config``: the audio model's)."""
        model = cls(weights=weights, **config)
        state = {**video_model.state_dict(), **audio_model.state_dict()}  # the audio model's front end wins
        model.load_state_dict(state)
        return model

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"audio": mean_max(self.audio_branch(features)),
                "video": self.frame_embeddings(video).mean(dim=1)}

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        w_a, w_v = self.weights
        audio = math.log(w_a) + torch.log_softmax(self.audio_fc(self.dropout(embeddings["audio"])), dim=-1)
        video = math.log(w_v) + torch.log_softmax(self.video_fc(self.dropout(embeddings["video"])), dim=-1)
        return torch.logaddexp(audio, video)


FUSION_MODELS: dict[str, type[AudioVisualClassifier]] = {
    "fusion-early": EarlyFusion, "fusion-mid": MidFusion, "fusion-late": LateFusion,
    "fusion-superlate": SuperLateFusion, "fusion-audio": AudioOnly, "fusion-video": VideoOnly,
}
