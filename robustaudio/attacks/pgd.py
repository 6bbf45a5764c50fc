"""Projected gradient descent (Madry et al. 2018) for L∞, L2 and L1, in the waveform or feature domain.

One function over tensors. Per step, one forward pass gives both the fooled check and the loss,
and one backward pass the input gradient; samples that are fooled leave the batch at once, so
the work shrinks as the attack succeeds. The model's parameters are frozen during the attack.
"""

from __future__ import annotations

import torch

from ..models.base import AttackTarget, frozen
from .counting import Passes
from .criteria import attack_loss, is_fooled
from .result import AttackResult
from .threat import ThreatModel, ascent_direction


def pgd(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, *,
        steps: int = 10, restarts: int = 1, rel_step_size: float | None = None,
        targeted: bool = False, random_start: bool = True, eps: torch.Tensor | None = None,
        video: torch.Tensor | None = None, generator: torch.Generator | None = None,
        early_stop: bool = True, clean_logits: torch.Tensor | None = None,
        init_delta: torch.Tensor | None = None) -> AttackResult:
    """Run PGD on a batch.

    Args:
        model: a :class:`~robustaudio.models.Classifier` (any module with ``predict`` / ``multilabel``
            and, for the feature domain, ``features`` / ``forward_features``).
        audio: waveforms ``[B, T]`` in the model's bounds.
        labels: ``[B]`` class indices, or ``[B, K]`` 0/1 for multi-label; the targets if ``targeted``.
        threat: the threat model (norm, budget, domain, bounds, mask).
        steps: gradient steps per restart.
        restarts: independent random starts; a clip fooled by one restart is not attacked again.
        rel_step_size: step size as a fraction of ε (default ``2.5 / steps``, Madry et al.).
        eps: optional per-sample budget ``[B]`` overriding ``threat.budget``.
        generator: torch random generator for the random starts (reproducibility).
        early_stop: drop fooled clips from the batch (set False only to time a fixed amount of work).
        clean_logits: ``[B, K]`` logits of the clean clips if the caller has them already (they
            are the same in either domain); saves one forward pass.
        init_delta: optional warm start ``[B, ...]`` for the first restart (projected onto this
            threat model first), e.g. the adversarial perturbation found at a larger budget;
            later restarts start at random.
    """
    if steps < 0 or restarts < 1:
        raise ValueError(f"steps must be >= 0 and restarts >= 1, got steps={steps}, restarts={restarts}.")
    alpha_rel = rel_step_size if rel_step_size is not None else 2.5 / max(steps, 1)
    with frozen(model):
        clean, logits_fn = threat.view(model, audio, video)
        clean = clean.detach().float()  # features computed under bf16 autocast come out bf16
        eps = threat.budget(clean) if eps is None else eps.to(clean.device).float()
        batch = clean.shape[0]
        device = clean.device
        passes = Passes(logits_fn, batch, device)

        if clean_logits is None:
            with torch.no_grad():
                logits = passes.logits(clean).detach()
        else:
            logits = clean_logits.detach().clone()
        success = is_fooled(model, logits, labels, targeted)
        best = clean.clone()
        best_loss = torch.full((batch,), -float("inf"), device=device)

        for restart in range(restarts):
            active = torch.nonzero(~success & (eps > 0)).flatten()
            if active.numel() == 0:
                break
            x0 = clean[active]
            if restart == 0 and init_delta is not None:
                delta = threat.project(init_delta[active].to(x0), x0, eps[active])
            elif random_start:
                delta = threat.random_start(x0, eps[active], generator)
            else:
                delta = torch.zeros_like(x0)
            for step in range(steps + 1):
                x = threat.apply(x0, delta).requires_grad_(step < steps)
                with torch.enable_grad():
                    out = passes.logits(x, active)
                    loss = attack_loss(model, out, labels[active], targeted)
                fooled = is_fooled(model, out.detach(), labels[active], targeted)
                improved = fooled | (loss.detach() > best_loss[active])
                if improved.all():  # the usual case: whole-row copies, no boolean gathers
                    best.index_copy_(0, active, x.detach())
                    logits.index_copy_(0, active, out.detach().to(logits.dtype))  # autocast: bf16
                    best_loss.index_copy_(0, active, torch.where(fooled, torch.inf, loss.detach()))
                elif improved.any():
                    rows = active[improved]
                    best[rows] = x.detach()[improved]
                    logits[rows] = out.detach()[improved].to(logits.dtype)
                    best_loss[rows] = torch.where(fooled[improved], torch.inf, loss.detach()[improved])
                success[active[fooled]] = True
                if step == steps:
                    break
                keep = ~fooled if early_stop else torch.ones_like(fooled)
                if not keep.any():
                    break
                grad = passes.gradient(loss[keep].sum() if early_stop else loss.sum(), x, active[keep])
                if not keep.all():  # fooled clips leave the batch
                    active, x0, delta, grad = active[keep], x0[keep], delta[keep], grad[keep]
                step_size = (alpha_rel * eps[active]).reshape(-1, *([1] * (x0.dim() - 1)))
                delta = delta.detach() + step_size * ascent_direction(grad, threat.norm)
                delta = threat.project(delta, x0, eps[active])
    return AttackResult(adversarial=best, clean=clean, success=success, logits=logits, budget=eps,
                        forwards=passes.forwards, backwards=passes.backwards)
