"""Universal perturbation: one δ, learned over a dataset, added to every clip (thesis ch. 10-11).

The thesis protocol (specs §3): gradient ascent on the mean loss over the evaluation clips, BCE
for multi-label models, 20 epochs, step 0.1 (relative to ε here), L∞ or L2 budget; evaluated on
clips it was not learned on. The author's L2 projection rescales every time frame to norm ε
whenever the whole δ exceeds ε; it is kept as the named option ``projection="per-frame"``
(note that it lets ‖δ‖₂ reach ε·√frames), the default is the L2 ball.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from ..models.base import AttackTarget, frozen
from .criteria import attack_loss, is_fooled
from .threat import ThreatModel, ascent_direction, lp_norm

PROJECTIONS = ("ball", "per-frame")


@dataclass
class UniversalResult:
    """``delta``: one input's shape (``[T]`` waveform, ``[F, frames]`` features); ``history``: per
    epoch, the mean loss and the fooling rate on the training clips."""

    delta: torch.Tensor
    history: list[dict] = field(default_factory=list)


def project_universal(delta: torch.Tensor, threat: ThreatModel, eps: float, projection: str = "ball",
                      frame_length: int | None = None) -> torch.Tensor:
    """Project one perturbation ``delta`` (a single input's shape) onto the universal budget.

    ``ball``: :meth:`ThreatModel.project` without the box (mask, band, Lp ball); each clip's box
    is met when δ is added to it. ``per-frame`` (L2 only): the mask and band, then if ``‖δ‖₂ > ε``,
    every frame (feature column, or ``frame_length`` waveform samples) is rescaled to norm ε, as in
    the thesis author's code.
    """
    if projection not in PROJECTIONS:
        raise ValueError(f"Unknown projection {projection!r}; use one of {', '.join(PROJECTIONS)}.")
    if projection == "ball" or threat.norm != "l2":  # mask, band and ball, as for every attack
        return threat.project(delta[None], None, torch.tensor([eps], device=delta.device))[0]
    delta = threat.restrict(delta[None])[0]
    if float(lp_norm(delta[None], "l2")) <= eps:
        return delta
    if delta.dim() == 1:  # waveform: frames of frame_length samples
        if not frame_length:
            raise ValueError("per-frame projection of a waveform needs frame_length (samples).")
        pad = (-delta.numel()) % frame_length
        frames = torch.nn.functional.pad(delta, (0, pad)).view(-1, frame_length)
        frames = frames * (eps / frames.norm(dim=1, keepdim=True).clamp_min(1e-30))
        return frames.flatten()[: delta.numel()]
    columns = delta.norm(dim=0, keepdim=True).clamp_min(1e-30)  # [1, frames]
    return delta * (eps / columns)


def universal_perturbation(model: AttackTarget, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                           threat: ThreatModel, *,
                           epochs: int = 20, rel_step_size: float = 0.1, projection: str = "ball",
                           frame_length: int | None = None, targeted: bool = False,
                           device: str | torch.device = "cpu") -> UniversalResult:
    """Learn one perturbation for all clips.

    Args:
        batches: a re-iterable of ``(audio [B, T], labels)``; every epoch goes over all of it.
        threat: norm, absolute ``eps`` (domain units), domain, bounds, mask. Each clip is
            clamped to the bounds after adding δ, as the attacker cannot exceed full scale.
        rel_step_size: step as a fraction of ε (the thesis: 0.1 at ε = 0.1, i.e. 0.1·ε).
        projection: ``"ball"`` or ``"per-frame"`` (see :func:`project_universal`).
    """
    if threat.eps is None:
        raise ValueError("A universal perturbation needs an absolute budget (--eps): an SNR budget "
                         "depends on the clip, and the perturbation is shared by all clips.")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}.")
    delta: torch.Tensor | None = None
    history = []
    with frozen(model):
        for _ in range(epochs):
            total_loss, fooled, seen = 0.0, 0, 0
            for audio, labels in batches:
                audio, labels = audio.to(device), labels.to(device)
                clean, logits_fn = threat.view(model, audio)
                clean = clean.detach()
                if delta is None:
                    delta = torch.zeros_like(clean[0])
                d = delta.clone().requires_grad_(True)
                x = threat.apply(clean, d.expand_as(clean))
                with torch.enable_grad():
                    logits = logits_fn(x)
                    loss = attack_loss(model, logits, labels, targeted)
                    grad, = torch.autograd.grad(loss.sum(), d)
                total_loss += float(loss.detach().sum())
                fooled += int(is_fooled(model, logits.detach(), labels, targeted).sum())
                seen += len(audio)
                step = rel_step_size * threat.eps * ascent_direction(grad[None], threat.norm)[0]
                delta = project_universal(delta + step, threat, threat.eps, projection, frame_length)
            history.append({"loss": total_loss / max(seen, 1), "fooling_rate": fooled / max(seen, 1)})
    if delta is None:
        raise ValueError("No clips to learn a universal perturbation from.")
    return UniversalResult(delta=delta.detach(), history=history)
