"""A worst-case ensemble (Croce & Hein 2020's AutoAttack protocol): members run in order, each on the
clips that every earlier member failed to fool, so a clip counts as robust only if every member fails.

The members are attacks at one budget (:class:`~robustaudio.attacks.curve.BudgetAttack`), named, so
the result says which member broke each clip (``broken_by``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..models.base import AttackTarget
from .curve import BudgetAttack
from .result import AttackResult
from .threat import ThreatModel

Member = tuple[str, BudgetAttack]


def ensemble(members: Sequence[Member], model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor,
             threat: ThreatModel, *,
             eps: torch.Tensor, clean_logits: torch.Tensor, video: torch.Tensor | None = None,
             init_delta: torch.Tensor | None = None, generator: torch.Generator | None = None) -> AttackResult:
    """Run ``members`` in order on ``audio`` ``[B, T]``; each sees only the clips still standing.

    ``eps`` ``[B]``: the budget per clip; ``init_delta`` warm-starts the first member only (the
    others start as their authors do). The result holds, per clip, the first fooling point found
    (else the last member's best point), the union of successes, the passes of all members added
    up, and in ``broken_by`` the name of the member that fooled the clip (``"clean"`` for clips
    already misclassified).
    """
    if not members:
        raise ValueError("An ensemble needs at least one member.")
    device = audio.device
    n = len(audio)
    result: AttackResult | None = None
    broken_by: list[str | None] = [None] * n
    todo = torch.arange(n, device=device)
    for position, (name, attack) in enumerate(members):
        sub = attack(model, audio[todo], labels[todo], threat, eps=eps[todo], clean_logits=clean_logits[todo],
                     video=None if video is None else video[todo],
                     init_delta=init_delta if position == 0 else None, generator=generator)
        if result is None:
            result = sub
            result.forwards, result.backwards = sub.forwards.clone(), sub.backwards.clone()
            fresh = sub.success
        else:
            fresh = sub.success
            # Fooled clips take the fooling point; the last member also leaves its best point on the rest.
            take = torch.ones_like(fresh) if position == len(members) - 1 else fresh
            result.adversarial[todo[take]] = sub.adversarial[take]
            result.logits[todo[take]] = sub.logits[take].to(result.logits.dtype)
            result.success[todo[fresh]] = True
            result.forwards[todo] += sub.forwards
            result.backwards[todo] += sub.backwards
        for index in todo[fresh].tolist():
            broken_by[index] = name
        todo = todo[~fresh]
        if todo.numel() == 0:
            break
    assert result is not None
    result.budget = eps
    result.broken_by = broken_by
    return result

