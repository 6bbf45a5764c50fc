"""The one interface every model is wrapped behind.

A :class:`Classifier` is an ``nn.Module`` that maps ``audio`` (float32 ``[B, T]``, samples in
``bounds`` = [-1, 1] at ``sample_rate`` Hz) and optionally ``video`` to logits ``[B, K]``.
The forward pass is split in three public stages so that feature-domain attacks and latent
metrics need no model-specific code::

    features(audio)                 -> [B, F, frames]   front end, inside the graph
    embeddings(features, video)     -> {"audio": [B, D], ...}   one entry per modality
    head(embeddings)                -> [B, K]           logits

``forward(audio, video) == head(embeddings(features(audio), video))``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn, Protocol

import torch
from torch import nn


class ModelError(ValueError):
    """A model that cannot be loaded or used as asked; the message says what to change."""


NO_GRADIENTS = "this model gives no gradients: use a black-box attack, e.g. --attack square"


class GradientUnavailableError(RuntimeError):
    """A gradient was asked of a model that only answers queries."""


def refuse_gradients(x: torch.Tensor, model_name: str) -> None:
    """Raise :class:`GradientUnavailableError` if an input gradient is being asked for."""
    if torch.is_grad_enabled() and x.requires_grad:
        raise GradientUnavailableError(f"{model_name}: {NO_GRADIENTS}.")


class AttackTarget(Protocol):
    """What attacks, metrics and the runner need from a model: a :class:`Classifier` has it, and so
    does anything else with these members (a wrapper, a test model).

    ``model(audio [B, T], video=None) -> logits [B, K]``; ``features(audio)`` the front end;
    ``forward_features(features, video=None)`` logits from features; ``predict`` / ``scores``
    decisions and probabilities from logits; ``labels``, ``multilabel``, ``threshold``, ``sample_rate``,
    ``clip_samples`` as on :class:`Classifier`; ``modules`` / ``parameters`` / ``eval`` / ``to`` as on ``nn.Module``.
    """

    labels: tuple[str, ...]
    multilabel: bool
    threshold: float
    sample_rate: int

    @property
    def clip_samples(self) -> int: ...  # the clip length the data layer loads for it

    def __call__(self, audio: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor: ...

    def features(self, audio: torch.Tensor) -> torch.Tensor: ...

    def forward_features(self, features: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor: ...

    def predict(self, logits: torch.Tensor) -> torch.Tensor: ...

    def scores(self, logits: torch.Tensor) -> torch.Tensor: ...

    def modules(self) -> Iterator[nn.Module]: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def eval(self) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...


class Classifier(nn.Module):
    """Base class: subclasses set the attributes and implement the three stages.

    Attributes:
        sample_rate: Hz of the waveform the model expects.
        labels: class names, index ``k`` names logit ``k``.
        multilabel: True for taggers (sigmoid per class, BCE), False for single-label (softmax, CE).
        bounds: valid waveform sample range, ``(-1.0, 1.0)``.
        modalities: the inputs the model uses, e.g. ``("audio",)`` or ``("audio", "video")``.
        clip_seconds: the clip length the model was trained on (inputs are cropped/padded to it).
    """

    sample_rate: int = 16000
    labels: tuple[str, ...] = ()
    multilabel: bool = False
    bounds: tuple[float, float] = (-1.0, 1.0)
    modalities: tuple[str, ...] = ("audio",)
    clip_seconds: float = 1.0
    threshold: float = 0.5  # decision threshold on sigmoid scores when multilabel

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward_features(self, features: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from already computed features (the feature-domain attack's entry point)."""
        return self.head(self.embeddings(features, video))

    def forward(self, audio: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_features(self.features(audio), video)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities ``[B, K]``: sigmoid for multi-label models, softmax otherwise."""
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """Decisions: class index ``[B]`` (single-label) or a 0/1 matrix ``[B, K]`` (multi-label)."""
        if self.multilabel:
            return (torch.sigmoid(logits) > self.threshold).long()
        return logits.argmax(dim=-1)


class WholeModel(Classifier):
    """A model that is run whole (ONNX, TorchScript, a plain module): waveform in, logits out.

    Its internal stages are not reachable: ``features`` is the identity (``[B, T]``),
    ``forward_features`` runs the whole model, ``embeddings`` / ``head`` raise with ``stage_hint``
    as the fix. Subclasses implement :meth:`forward_features`.
    """

    stage_hint = "attack the waveform domain"

    def describe_source(self) -> str:
        return type(self).__name__

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        return audio

    def _no_stages(self, stage: str) -> NoReturn:
        raise NotImplementedError(f"{self.describe_source()} is run whole, so it has no {stage}(): "
                                  f"{self.stage_hint}.")

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self._no_stages("embeddings")

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        self._no_stages("head")


class frozen:
    """Context manager: the model in eval mode with parameter gradients off, restored on exit.

    Attacks differentiate with respect to inputs only; leaving ``requires_grad`` on for the
    weights costs about 1.3x in time for nothing. Each submodule gets back its own mode on exit
    (not the root's), so a wrapper built in training mode around an eval-mode model leaves it in
    eval mode.
    """

    def __init__(self, model: nn.Module | AttackTarget):
        self.model = model

    def __enter__(self) -> nn.Module | AttackTarget:
        self.modes = [(module, module.training) for module in self.model.modules()]
        self.grad_flags = [p.requires_grad for p in self.model.parameters()]
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        return self.model

    def __exit__(self, *exc: object) -> None:
        for p, flag in zip(self.model.parameters(), self.grad_flags):
            p.requires_grad_(flag)
        for module, training in self.modes:
            module.training = training
