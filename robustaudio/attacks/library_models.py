"""Foolbox and ART views of a robustaudio classifier: the models the two libraries attack.

:func:`to_foolbox` and :func:`to_art` wrap any :class:`~robustaudio.models.Classifier` in the waveform
or the feature domain; :class:`UnitBox` reparametrises a model onto [0, 1] for the attacks that assume
that box (see :mod:`robustaudio.attacks.backends`, which runs the attacks on these views).
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import nn

from ..models.base import AttackTarget, Classifier
from .criteria import attack_loss
from .threat import ThreatModelError


class FeatureForward(nn.Module):
    """``features [B, F, frames] -> logits``: a classifier's feature-domain entry point as a module."""

    def __init__(self, model: Classifier):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(features)


class UnitBox(nn.Module):
    """``u in [0, 1] -> model(lo + (hi - lo) u)``: for attacks that assume the [0, 1] box."""

    def __init__(self, model: nn.Module, bounds: tuple[float, float]):
        super().__init__()
        self.model = model
        self.low, self.span = float(bounds[0]), float(bounds[1] - bounds[0])

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.low) / self.span

    def from_unit(self, u: torch.Tensor) -> torch.Tensor:
        return self.low + self.span * u

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model(self.from_unit(u))


class Float32Input(nn.Module):
    """Casts inputs to float32: ART's HopSkipJump hands the model float64 arrays."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(torch.float32))


class ArtAttackLoss(nn.Module):
    """:func:`attack_loss` as an ART loss, for multi-label models.

    ART ascends the estimator's loss (untargeted) or descends it (targeted), and feeds it labels
    unchanged only for losses that are not its known CE/BCE classes (it would argmax multi-hot
    labels for ``BCEWithLogitsLoss``). ``reduction`` is set by ART's ``compute_loss``.
    """

    def __init__(self, model: Classifier, targeted: bool, reduction: str = "sum"):
        super().__init__()
        self.multilabel = model.multilabel
        self.targeted = targeted
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # cast: attack_loss reads only ``multilabel`` from its model, and this loss carries the model's flag
        loss = attack_loss(cast(AttackTarget, self), logits, labels, self.targeted)
        loss = -loss if self.targeted else loss  # attack_loss is ascended; ART descends targeted losses
        return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[self.reduction]


def _domain_module(model: Classifier, domain: str) -> nn.Module:
    if domain not in ("waveform", "feature"):
        raise ThreatModelError(f"Unknown domain {domain!r}; use waveform or feature.")
    return model if domain == "waveform" else FeatureForward(model)


def _feature_shape(model: Classifier) -> tuple[int, ...]:
    with torch.no_grad():
        probe = torch.zeros(1, model.clip_samples, device=next(model.parameters(), torch.zeros(0)).device)
        return tuple(model.features(probe).shape[1:])


# foolbox and ART are optional dependencies, imported lazily, with loosely typed models: their objects are Any here.
def _foolbox_model(module: nn.Module, bounds: tuple[float, float], device: torch.device) -> Any:
    import foolbox as fb

    return fb.PyTorchModel(module.eval(), bounds=bounds, device=device)


def to_foolbox(model: Classifier, domain: str = "waveform", bounds: tuple[float, float] | None = None) -> Any:
    """A ``foolbox.PyTorchModel`` for a robustaudio classifier.

    Waveform domain: inputs ``[B, T]``, bounds ``model.bounds`` (``(-1, 1)``) unless given. Feature
    domain: inputs ``model.features(audio)`` ``[B, F, frames]``, bounds as given (the threat model's
    feature bounds) or unbounded ``(-inf, inf)``. Do not run foolbox's HopSkipJump on it directly
    (it clips to [0, 1]); :func:`backend_attack` reparametrises for it (:class:`UnitBox`).
    """
    if bounds is None:  # tuple() of the (lo, hi) pair: mypy widens it to tuple[float, ...]
        bounds = cast(tuple[float, float], tuple(model.bounds)) if domain == "waveform" else (-math.inf, math.inf)
    device = next(model.parameters(), torch.zeros(0)).device
    return _foolbox_model(_domain_module(model, domain), bounds, device)


def _art_classifier(module: nn.Module, *, multilabel_model: Classifier | None, nb_classes: int,
                    input_shape: tuple[int, ...], clip_values: tuple[float, float] | None,
                    targeted: bool, device: torch.device) -> Any:
    from art.estimators.classification import PyTorchClassifier

    loss = (ArtAttackLoss(multilabel_model, targeted) if multilabel_model is not None
            else nn.CrossEntropyLoss(reduction="sum"))
    return PyTorchClassifier(Float32Input(module).eval(), loss=loss, input_shape=input_shape,
                             nb_classes=nb_classes, clip_values=clip_values,
                             device_type="gpu" if device.type == "cuda" else "cpu")


def to_art(model: Classifier, domain: str = "waveform", *, clip_values: tuple[float, float] | None = None,
           input_shape: tuple[int, ...] | None = None, targeted: bool = False) -> Any:
    """An ART ``PyTorchClassifier`` for a robustaudio classifier.

    Waveform domain: inputs ``[B, T]`` (``input_shape`` default ``(model.clip_samples,)``),
    ``clip_values`` = ``model.bounds`` unless given. Feature domain: inputs ``[B, F, frames]`` from
    ``model.features`` (shape probed on a silent clip unless given), ``clip_values`` as given
    (the threat model's feature bounds) or ``None``. Loss: cross-entropy for single-label models;
    for multi-label models :class:`ArtAttackLoss` (BCE-based, set ``targeted`` to match the attack).
    ART's DeepFool scales its steps by ``hi - lo`` (2x too large on [-1, 1]); :func:`backend_attack`
    reparametrises for it (:class:`UnitBox`).
    """
    if domain == "waveform":
        # tuple() of the (lo, hi) pair: mypy widens it to tuple[float, ...]
        clip_values = cast(tuple[float, float], tuple(model.bounds)) if clip_values is None else clip_values
        input_shape = input_shape or (model.clip_samples,)
    else:
        input_shape = input_shape or _feature_shape(model)
    device = next(model.parameters(), torch.zeros(0)).device
    return _art_classifier(_domain_module(model, domain), multilabel_model=model if model.multilabel else None,
                           nb_classes=model.num_classes, input_shape=tuple(input_shape), clip_values=clip_values,
                           targeted=targeted, device=device)
