"""What counts as correct, fooled and the loss to ascend, for single- and multi-label models.

Labels: single-label ``[B]`` class indices; multi-label ``[B, K]`` 0/1 (targets likewise).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..models.base import AttackTarget


def is_correct(model: AttackTarget, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: top-1 equals the label (single-label) or the decided set equals the label set."""
    prediction = model.predict(logits)
    if model.multilabel:
        return (prediction == labels.long()).all(dim=-1)
    return prediction == labels


def decision_names(model: AttackTarget, decisions: torch.Tensor) -> list[str]:
    """Label names of decisions (``model.predict``): one name per clip, ``;``-joined for multi-label."""
    if model.multilabel:
        return [";".join(model.labels[k] for k in torch.nonzero(row).flatten().tolist()) for row in decisions]
    return [model.labels[k] for k in decisions.tolist()]


def is_fooled(model: AttackTarget, logits: torch.Tensor, labels: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """``[B]`` bool: the attack's goal is reached.

    Untargeted single-label: top-1 differs from the label. Untargeted multi-label ("deactivated"):
    no true label is detected any more. Targeted: the prediction equals the target (``labels`` then
    holds the targets).
    """
    prediction = model.predict(logits)
    if model.multilabel:
        if targeted:
            return (prediction == labels.long()).all(dim=-1)
        return ~((prediction == 1) & (labels > 0.5)).any(dim=-1)
    return prediction == labels if targeted else prediction != labels


def attack_loss(model: AttackTarget, logits: torch.Tensor, labels: torch.Tensor,
                targeted: bool = False) -> torch.Tensor:
    """Per-sample loss ``[B]`` that the attack ascends.

    Single-label: cross-entropy (negated when targeted). Multi-label, targeted: minus the mean BCE
    to the target set. Multi-label, untargeted ("deactivate"): minus the mean BCE of the true
    labels towards "absent". Its gradient, sigmoid(z), fades for labels already switched off, so
    the attack works on those still on; ascending BCE to the true labels instead keeps pushing
    switched-off labels further down and would as happily switch on absent labels, neither of
    which is the goal that :func:`is_fooled` checks.
    """
    if model.multilabel:
        if targeted:
            return -F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none").mean(dim=-1)
        positives = (labels > 0.5).float()
        on = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
        return -(on * positives).sum(dim=-1) / positives.sum(dim=-1).clamp_min(1)
    else:
        loss = F.cross_entropy(logits, labels, reduction="none")
    return -loss if targeted else loss


def margin_loss(model: AttackTarget, logits: torch.Tensor, labels: torch.Tensor,
                targeted: bool = False) -> torch.Tensor:
    """``[B]`` margin the attack minimises: > 0 while the goal is not reached, < 0 once it is.

    Single-label: ``z_label - max_{k≠label} z_k`` (untargeted) or ``max_{k≠target} z_k - z_target``.
    Multi-label, on logits shifted by the decision threshold's logit ``t``: untargeted
    ("deactivate"), the largest ``z_k - t`` over the true labels; targeted, the largest violation
    ``±(t - z_k)`` over all labels (on for targets, off for the rest).
    """
    if model.multilabel:
        shifted = logits - math.log(model.threshold / (1 - model.threshold))
        if targeted:
            sign = 2 * (labels > 0.5).to(logits.dtype) - 1
            return (-sign * shifted).amax(dim=-1)
        return shifted.masked_fill(labels <= 0.5, -torch.inf).amax(dim=-1)
    own = logits.gather(1, labels[:, None]).squeeze(1)
    best_other = logits.scatter(1, labels[:, None], -torch.inf).amax(dim=1)
    return best_other - own if targeted else own - best_other
