"""What every L_p attack returns: :class:`AttackResult`, per-sample facts about a batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttackResult:
    """Per-sample outcome of an attack on a batch of ``B`` clips.

    Attributes:
        adversarial: perturbed inputs ``[B, ...]`` in the attacked domain (waveform or features);
            for clips the attack did not fool, the highest-loss iterate found.
        clean: the clean inputs in the same domain.
        success: ``[B]`` bool, the goal reached (clips already fooled when clean count, with δ = 0).
        logits: ``[B, K]`` logits at ``adversarial``.
        budget: ``[B]`` the budget ε each clip had, in the threat's norm and domain units.
        forwards, backwards: ``[B]`` int, passes each clip took part in.
        carried: ``[B]`` bool, clips not attacked at this budget because the outcome follows from
            another budget of the same ε curve (see :func:`~robustaudio.attacks.curve.eps_curve`);
            records call it ``carried`` too.
        broken_by: per clip, the name of the ensemble member that fooled it (``None`` where no
            member did, or the attack is not an ensemble).
        seconds: wall time this result took for the whole batch, where the caller timed it (an ε
            curve times each budget, so a curve's budgets are not charged its average).
    """

    adversarial: torch.Tensor
    clean: torch.Tensor
    success: torch.Tensor
    logits: torch.Tensor
    budget: torch.Tensor
    forwards: torch.Tensor
    backwards: torch.Tensor
    carried: torch.Tensor | None = None
    broken_by: list[str | None] | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.carried is None:
            self.carried = torch.zeros_like(self.success)

    @property
    def perturbation(self) -> torch.Tensor:
        return self.adversarial - self.clean
