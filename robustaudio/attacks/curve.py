"""An ε curve in one run: PGD at several budgets of one threat model, largest budget first.

Running PGD once per budget repeats most of the work. Going down from the largest budget:

- a clip that resists budget ε_k is not attacked at any smaller budget: it is recorded as not
  fooled there (``carried``, with δ = 0 and its clean logits), which makes the curve
  non-increasing by construction;
- a clip fooled at ε_k is attacked at the next smaller budget starting from its adversarial
  perturbation projected into the smaller ball (a warm start), which often fools it again in a
  step or two, so early stop removes it from the batch at once.

So each clip runs PGD to the end without success at most once (at the largest budget it
resists); every other attack it takes part in ends early. The price is one assumption, that
PGD failing at a budget would also fail at a smaller one; ``tests/test_curve.py`` checks that
the curve matches separate per-budget runs.
"""

from __future__ import annotations

import torch

from .pgd import AttackResult, pgd
from .threat import ThreatModel


def budget_order(threat: ThreatModel) -> float:
    """Sort key, larger = bigger perturbation: ε, or minus the SNR in dB."""
    return threat.eps if threat.eps is not None else -threat.snr_db


def curve_key(threat: ThreatModel) -> tuple:
    """What threat models of one ε curve share: everything but the budget's value."""
    mask = None if threat.mask is None else hash(threat.mask.detach().cpu().numpy().tobytes())
    return (threat.norm, threat.domain, threat.eps is None, threat.bounds, mask, threat.band_hz, threat.modality)


def same_curve(threats: list[ThreatModel]) -> bool:
    """Whether the threat models differ in their budget only (norm, domain, budget kind, mask)."""
    return len({curve_key(t) for t in threats}) == 1


def pgd_curve(model, audio: torch.Tensor, labels: torch.Tensor, threats: list[ThreatModel], *,
              steps: int = 10, restarts: int = 1, generator: torch.Generator | None = None,
              clean_logits: torch.Tensor | None = None, video: torch.Tensor | None = None,
              **pgd_options) -> list[AttackResult]:
    """PGD results ``[AttackResult]`` for each threat model in ``threats`` (same order).

    Args:
        audio: waveforms ``[B, T]``; labels ``[B]`` or ``[B, K]``; as for :func:`pgd`.
        threats: threat models that differ in their budget only (``same_curve``).
        clean_logits: ``[B, K]`` clean logits if known (saves a forward pass).
        pgd_options: passed on to :func:`pgd` (``targeted``, ``rel_step_size`` ...).
    """
    if not threats:
        return []
    if not same_curve(threats):
        raise ValueError("pgd_curve needs threat models that differ in their budget only; "
                         "group them by norm, domain, budget kind and mask first.")
    clean, logits_fn = threats[0].view(model, audio, video)
    if clean_logits is None:
        with torch.no_grad():
            clean_logits = logits_fn(clean.detach())
    results: list[AttackResult | None] = [None] * len(threats)
    larger: AttackResult | None = None
    for index in sorted(range(len(threats)), key=lambda i: budget_order(threats[i]), reverse=True):
        threat = threats[index]
        eps = threat.budget(clean.detach())
        if larger is None:
            result = pgd(model, audio, labels, threat, steps=steps, restarts=restarts, eps=eps,
                         generator=generator, clean_logits=clean_logits, video=video, **pgd_options)
        else:
            zeros = torch.zeros(len(audio), dtype=torch.long, device=clean.device)
            result = AttackResult(adversarial=clean.detach().clone(), clean=clean.detach(),
                                  success=torch.zeros_like(larger.success),
                                  logits=clean_logits.detach().clone(), eps=eps,
                                  forwards=zeros.clone(), backwards=zeros.clone(),
                                  carried=~larger.success)
            todo = torch.nonzero(larger.success).flatten()
            if todo.numel():
                sub = pgd(model, audio[todo], labels[todo], threat, steps=steps, restarts=restarts,
                          eps=eps[todo], generator=generator, clean_logits=clean_logits[todo],
                          video=None if video is None else video[todo],
                          init_delta=larger.perturbation[todo], **pgd_options)
                result.adversarial[todo] = sub.adversarial
                result.success[todo] = sub.success
                result.logits[todo] = sub.logits
                result.forwards[todo] = sub.forwards
                result.backwards[todo] = sub.backwards
        results[index] = result
        larger = result
    return results
