"""A streaming DS-CNN wake-word detector that scores every step of the stream (one per ``step_frames`` frames).

The shape of keyword spotters that run on microcontrollers (Hello Edge's depthwise separable blocks,
made causal and dilated so that the stream can be scored step by step): microWakeWord's 40-channel
front end (:class:`~robustaudio.models.frontends.MicroFrontend`, the public TFLite-Micro one), a causal
convolution over ``first_kernel`` frames with stride ``step_frames`` (3 frames, 30 ms), then ``blocks``
causal depthwise convolutions (kernel 3, dilations 1, 2, 4, ...) each followed by a 1x1 convolution and
ReLU, and a 1x1 convolution to one logit per step. Its receptive field is
``first_kernel + step_frames * 2 * (2^blocks - 1)`` frames (1.9 s for the defaults).

Used as the substitute that :func:`robustaudio.attacks.substitute_jam.substitute_jam` fits to a black
box's per-step answers; its width, kernels, dilations and lack of an output window are its own, not
microWakeWord's (whose int8 network chains undilated depthwise kernels of 5 to 21 steps and flattens the
last 5 steps into a dense unit: :mod:`robustaudio.models.microwakeword_float`).

Input ``[B, T]`` at 16 kHz; :meth:`step_margins` ``[B, S]`` with ``S = frames(T) // step_frames``:
the detector fires at a step when its margin is above 0. Labels ``("other", word)``; :meth:`step_logits`
``[B, S, 2]`` = ``[-m/2, m/2]``, the convention of the microWakeWord wrappers, so a
:class:`~robustaudio.attacks.jamming.Detector` reads its margins step by step.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..base import ModelError, WholeModel
from ..frontends import MicroFrontend


class StreamDSCNN(WholeModel):
    """See the module docstring. ``feature_mean`` / ``feature_std`` standardise the front end's output."""

    stage_hint = "attack the waveform domain (the front end is part of the model)"

    def __init__(self, word: str = "wake_word", channels: int = 48, blocks: int = 5, first_kernel: int = 5,
                 step_frames: int = 3, feature_mean: float = 8.0, feature_std: float = 8.0, clip_seconds: float = 3.0):
        super().__init__()
        if first_kernel < step_frames or blocks < 1 or channels < 1:
            raise ModelError(f"StreamDSCNN needs first_kernel >= step_frames, blocks >= 1 and channels >= 1; got "
                             f"{first_kernel}, {step_frames}, {blocks}, {channels}.")
        self.labels = ("other", word)
        self.sample_rate = 16000
        self.multilabel = False
        self.clip_seconds = clip_seconds
        self.step_frames = step_frames
        self.first_kernel = first_kernel
        self.front_end = MicroFrontend(mean=feature_mean, std=feature_std)
        self.first = nn.Conv1d(40, channels, first_kernel, stride=step_frames)
        self.dilations = [2 ** i for i in range(blocks)]
        self.depthwise = nn.ModuleList(nn.Conv1d(channels, channels, 3, dilation=d, groups=channels)
                                       for d in self.dilations)
        self.pointwise = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in self.dilations)
        self.out = nn.Conv1d(channels, 1, 1)

    def frames_for_steps(self, steps: int) -> int:
        """Samples ``T`` whose front end gives exactly ``steps * step_frames`` frames (10 ms each, 30 ms window)."""
        return 480 + 160 * (steps * self.step_frames - 1)

    def step_margins(self, audio: torch.Tensor) -> torch.Tensor:
        """Per-step margins ``[B, S]`` for waveforms ``[B, T]`` (causal: step ``s`` hears nothing after it)."""
        if audio.dim() != 2:
            raise ModelError(f"StreamDSCNN takes audio [B, T], got shape {tuple(audio.shape)}.")
        return self.network(self.front_end(audio))

    def network(self, features: torch.Tensor) -> torch.Tensor:
        """Per-step margins ``[B, S]`` from standardised front-end features ``[B, 40, frames]``."""
        x = features
        steps = x.shape[-1] // self.step_frames
        x = x[..., : steps * self.step_frames]
        x = F.relu(self.first(F.pad(x, (self.first_kernel - self.step_frames, 0))))
        for d, depthwise, pointwise in zip(self.dilations, self.depthwise, self.pointwise):
            x = F.relu(pointwise(depthwise(F.pad(x, (2 * d, 0))))) + x          # residual keeps deep stacks trainable
        return self.out(x).squeeze(1)

    def step_logits(self, audio: torch.Tensor) -> torch.Tensor:
        m = self.step_margins(audio)
        return torch.stack([-m / 2, m / 2], dim=-1)

    def forward(self, audio: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        if video is not None:
            raise ModelError("StreamDSCNN takes audio only.")
        m = self.step_margins(audio).amax(dim=1)
        return torch.stack([-m / 2, m / 2], dim=-1)

    def forward_features(self, features: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward(features, video)


__all__ = ["StreamDSCNN"]
