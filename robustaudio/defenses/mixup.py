"""Mixup (Zhang et al. 2018) on inputs or per-modality latents, optionally weighted by latent geometry.

Spec §3 and thesis ch. 11: Beta(α, α) mixup (α 0.2–0.4) is a cheap alternative to adversarial
training; the thesis guides it towards classes whose latent regions are sparse or non-convex.

One *plan* per batch: a single ``λ ~ Beta(α, α)`` and a partner ``j(i)`` for every row ``i``; the
inputs (or each modality's embedding) become ``λ·x_i + (1 − λ)·x_j(i)`` and the targets
``λ·y_i + (1 − λ)·y_j(i)`` (one-hot rows for single-label data, so each target row sums to one).
``λ`` is drawn by inverting scipy's Beta CDF at a uniform from the torch generator, so a training
run is reproducible from its seed.

Weighting **[ours, spec §3: "weighted towards low-density / low-convexity classes"]**: partners are
drawn with replacement with probability proportional to the weight of their class, instead of
by a uniform permutation, so clips of the weak classes take part in more mixtures. Class weights
come from :func:`robustaudio.metrics.latent.latent_metrics` of one modality:

- ``convexity``: need ``1 − C(c)`` (share of same-class interpolations the head does not keep in c);
- ``density``: need ``1 / D(c)`` (``D`` the same- vs other-class density ratio; small = interleaved);
- ``both``: the mean of the two needs, each first scaled to mean 1;

and ``weight = floor + need / mean(need)`` (``floor`` keeps every class in play; classes with no
measurement get the mean need).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import torch
from scipy import stats

WEIGHTINGS = ("none", "density", "convexity", "both")
SPACES = ("input", "latent")
Mixable = torch.Tensor | dict[str, torch.Tensor]


@dataclass
class MixPlan:
    """One batch's mixture: ``lam`` (float), ``partner`` ``[B]`` row indices, ``targets`` ``[B, K]`` soft labels."""

    lam: float
    partner: torch.Tensor
    targets: torch.Tensor

    @overload
    def apply(self, x: torch.Tensor) -> torch.Tensor: ...

    @overload
    def apply(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    @overload
    def apply(self, x: Mixable | None) -> Mixable | None: ...

    def apply(self, x: Mixable | None) -> Mixable | None:
        """``λ·x + (1 − λ)·x[partner]`` for a tensor ``[B, ...]`` or each entry of a dict of them."""
        if x is None:
            return None
        if isinstance(x, dict):
            return {name: self.apply(value) for name, value in x.items()}
        return self.lam * x + (1 - self.lam) * x[self.partner.to(x.device)]


def one_hot_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[B, K]`` float targets: one-hot rows from class indices ``[B]``; 0/1 rows ``[B, K]`` as floats."""
    if labels.dim() == 2:
        return labels.float()
    return torch.nn.functional.one_hot(labels.long(), num_classes).float()


def draw_plan(labels: torch.Tensor, num_classes: int, alpha: float, generator: torch.Generator,
              class_weights: torch.Tensor | None = None) -> MixPlan:
    """The mixture for one batch.

    Args:
        labels: ``[B]`` class indices or ``[B, K]`` 0/1.
        num_classes: ``K``.
        alpha: Beta(α, α) parameter (> 0).
        generator: the training run's torch generator (λ and partners come from it).
        class_weights: ``[K]`` non-negative weights; partners are then drawn ∝ the weight of their
            class (with replacement); ``None``: a uniform random permutation.
    """
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}; the spec's range is 0.2–0.4.")
    u = float(torch.rand(1, generator=generator))
    lam = float(stats.beta.ppf(u, alpha, alpha))
    batch = labels.shape[0]
    if class_weights is None:
        partner = torch.randperm(batch, generator=generator)
    else:
        targets = one_hot_targets(labels.cpu(), num_classes)
        row_weight = (targets * class_weights.float().cpu()).sum(1) / targets.sum(1).clamp_min(1)
        partner = torch.multinomial(row_weight.clamp_min(1e-12), batch, replacement=True, generator=generator)
    targets = one_hot_targets(labels, num_classes)
    return MixPlan(lam, partner, lam * targets + (1 - lam) * targets[partner.to(targets.device)])


def class_weights(metrics: dict, labels: Sequence[str], by: str = "convexity", floor: float = 0.1) -> torch.Tensor:
    """``[K]`` partner weights from one modality's latent metrics (module docstring).

    Args:
        metrics: ``{"density": ..., "convexity": ...}`` of one modality, as one entry of
            :func:`~robustaudio.metrics.latent.latent_metrics`'s result (``per_class`` keyed by name).
        labels: the model's class names, in logit order.
        by: ``"density"``, ``"convexity"`` or ``"both"``.
        floor: added to every weight (> 0 keeps every class as a possible partner).
    """
    if by not in WEIGHTINGS[1:]:
        raise ValueError(f"Unknown mixup weighting {by!r}; use one of {', '.join(WEIGHTINGS[1:])}.")

    def need(kind: str) -> torch.Tensor:
        per_class = metrics[kind]["per_class"]
        values = []
        for name in labels:
            value = per_class.get(name)
            ok = value is not None and value == value and (kind == "convexity" or value > 0)
            values.append((1 - value if kind == "convexity" else 1 / value) if ok else float("nan"))
        need = torch.tensor(values, dtype=torch.float64)
        known = need[~need.isnan()]
        fill = float(known.mean()) if len(known) else 1.0
        need = need.nan_to_num(fill).clamp_min(0)
        return need / need.mean().clamp_min(1e-12)

    total = need("convexity") if by == "convexity" else need("density") if by == "density" else (
        need("convexity") + need("density")) / 2
    return (floor + total).float()
