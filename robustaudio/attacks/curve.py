"""An ε curve in one run: one attack at several budgets of one threat model, largest budget first.

Running the attack once per budget repeats most of the work. Going down from the largest budget:

- a clip that resists budget ε_k is not attacked at any smaller budget: it is recorded as not
  fooled there (``carried``, with δ = 0 and its clean logits), which makes the curve
  non-increasing by construction;
- a clip fooled at ε_k is attacked at the next smaller budget starting from its adversarial
  perturbation projected into the smaller ball (a warm start), which often fools it again in a
  step or two, so early stop removes it from the batch at once.

So each clip runs the attack to the end without success at most once (at the largest budget it
resists); every other attack it takes part in ends early. The price is one assumption, that
the attack failing at a budget would also fail at a smaller one; ``tests/test_curve.py`` checks that
the curve matches separate per-budget runs.
"""

from __future__ import annotations

import time
from typing import Any, Protocol, TypedDict

import torch

from ..models.base import AttackTarget
from .pgd import pgd
from .result import AttackResult
from .threat import ThreatModel


class BudgetArgs(TypedDict):
    """The keyword arguments :func:`eps_curve` passes to every :class:`BudgetAttack`, for attacks that hand them on
    (``**run: Unpack[BudgetArgs]``) instead of restating the protocol's signature."""

    eps: torch.Tensor
    clean_logits: torch.Tensor
    video: torch.Tensor | None
    init_delta: torch.Tensor | None
    generator: torch.Generator | None


class BudgetAttack(Protocol):
    """An attack at one budget: what :func:`eps_curve` runs at each budget of the curve."""

    def __call__(self, model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, *,
                 eps: torch.Tensor, clean_logits: torch.Tensor, video: torch.Tensor | None,
                 init_delta: torch.Tensor | None, generator: torch.Generator | None) -> AttackResult: ...


def budget_order(threat: ThreatModel) -> float:
    """Sort key, larger = bigger perturbation: ε, or minus the SNR in dB."""
    return threat.eps if threat.eps is not None else -float(threat.snr_db)  # type: ignore[arg-type]


def curve_key(threat: ThreatModel) -> tuple:
    """What threat models of one ε curve share: everything but the budget's value."""
    mask = None if threat.mask is None else hash(threat.mask.detach().cpu().numpy().tobytes())
    return (threat.norm, threat.domain, threat.eps is None, threat.bounds, mask, threat.band_hz, threat.modality)


def same_curve(threats: list[ThreatModel]) -> bool:
    """Whether the threat models differ in their budget only (norm, domain, budget kind, mask)."""
    return len({curve_key(t) for t in threats}) == 1


def eps_curve(attack: BudgetAttack, model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor,
              threats: list[ThreatModel], *, generator: torch.Generator | None = None,
              clean_logits: torch.Tensor | None = None, video: torch.Tensor | None = None) -> list[AttackResult]:
    """``attack``'s results ``[AttackResult]`` for each threat model in ``threats`` (same order).

    Args:
        attack: the attack at one budget (see :class:`BudgetAttack`); warm-started at smaller
            budgets through ``init_delta``.
        audio: waveforms ``[B, T]``; labels ``[B]`` or ``[B, K]``; as for :func:`~robustaudio.attacks.pgd`.
        threats: threat models that differ in their budget only (``same_curve``).
        clean_logits: ``[B, K]`` clean logits if known (saves a forward pass).
    """
    if not threats:
        return []
    if not same_curve(threats):
        raise ValueError("eps_curve needs threat models that differ in their budget only; "
                         "group them by norm, domain, budget kind and mask first.")
    clean, logits_fn = threats[0].view(model, audio, video)
    clean = clean.detach()
    if clean_logits is None:
        with torch.no_grad():
            clean_logits = logits_fn(clean)
    results: list[AttackResult | None] = [None] * len(threats)
    larger: AttackResult | None = None
    for index in sorted(range(len(threats)), key=lambda i: budget_order(threats[i]), reverse=True):
        started = time.perf_counter()
        threat = threats[index]
        eps = threat.budget(clean)
        if larger is None:
            result = attack(model, audio, labels, threat, eps=eps, clean_logits=clean_logits, video=video,
                            init_delta=None, generator=generator)
        else:
            zeros = torch.zeros(len(audio), dtype=torch.long, device=clean.device)
            result = AttackResult(adversarial=clean.clone(), clean=clean, success=torch.zeros_like(larger.success),
                                  logits=clean_logits.detach().clone(), budget=eps, forwards=zeros.clone(),
                                  backwards=zeros.clone(), carried=~larger.success,
                                  broken_by=None if larger.broken_by is None else [None] * len(audio))
            todo = torch.nonzero(larger.success).flatten()
            if todo.numel():
                sub = attack(model, audio[todo], labels[todo], threat, eps=eps[todo], clean_logits=clean_logits[todo],
                             video=None if video is None else video[todo], init_delta=larger.perturbation[todo],
                             generator=generator)
                result.adversarial[todo] = sub.adversarial
                result.success[todo] = sub.success
                result.logits[todo] = sub.logits.to(result.logits.dtype)
                result.forwards[todo] = sub.forwards
                result.backwards[todo] = sub.backwards
                if result.broken_by is not None and sub.broken_by is not None:
                    for position, name in zip(todo.tolist(), sub.broken_by):
                        result.broken_by[position] = name
        result.seconds = time.perf_counter() - started
        results[index] = result
        larger = result
    return [r for r in results if r is not None]


def pgd_curve(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threats: list[ThreatModel], *,
              steps: int = 10, restarts: int = 1, generator: torch.Generator | None = None,
              clean_logits: torch.Tensor | None = None, video: torch.Tensor | None = None,
              **pgd_options: Any) -> list[AttackResult]:
    """:func:`eps_curve` of :func:`~robustaudio.attacks.pgd` (``steps``, ``restarts``, ``pgd_options``
    such as ``targeted`` or ``rel_step_size``)."""
    def at_budget(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, *,
                  eps: torch.Tensor, clean_logits: torch.Tensor, video: torch.Tensor | None,
                  init_delta: torch.Tensor | None, generator: torch.Generator | None) -> AttackResult:
        return pgd(model, audio, labels, threat, steps=steps, restarts=restarts, eps=eps, generator=generator,
                   clean_logits=clean_logits, video=video, init_delta=init_delta, **pgd_options)

    return eps_curve(at_budget, model, audio, labels, threats, generator=generator, clean_logits=clean_logits,
                     video=video)
