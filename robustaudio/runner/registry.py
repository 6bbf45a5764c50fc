"""Attacks by name: ``name -> builder(spec) -> attack at one budget``, all with one signature.

Every entry returns a :class:`~robustaudio.attacks.curve.BudgetAttack`: ``(model, audio, labels,
threat, *, eps, clean_logits, video, init_delta, generator) -> AttackResult``, so the runner runs any
of them over an ε curve (:func:`~robustaudio.attacks.curve.eps_curve`) and writes the same rows.
Adding an attack: its function in ``robustaudio/attacks/<name>.py``, one line in :data:`ATTACKS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ..attacks.apgd import apgd, apgd_targeted
from ..attacks.backends import backend_attack
from ..attacks.curve import BudgetArgs, BudgetAttack
from ..attacks.ensemble import ensemble
from ..attacks.pgd import pgd
from ..attacks.result import AttackResult
from ..attacks.square import square_attack
from ..attacks.threat import ThreatModel
from ..models.base import AttackTarget
from .spec import AttackSpec

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11


def _pgd(spec: AttackSpec) -> BudgetAttack:
    def attack(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel,
               **run: Unpack[BudgetArgs]) -> AttackResult:
        return pgd(model, audio, labels, threat, steps=spec.gradient_steps, restarts=spec.restarts, **run)
    return attack


def _square(spec: AttackSpec) -> BudgetAttack:
    def attack(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel,
               **run: Unpack[BudgetArgs]) -> AttackResult:
        return square_attack(model, audio, labels, threat, queries=spec.query_budget, eps=run["eps"],
                             generator=run["generator"], clean_logits=run["clean_logits"], video=run["video"])
    return attack


def _apgd_ce(spec: AttackSpec) -> BudgetAttack:
    def attack(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel,
               **run: Unpack[BudgetArgs]) -> AttackResult:
        return apgd(model, audio, labels, threat, steps=spec.gradient_steps, restarts=spec.restarts, loss="ce", **run)
    return attack


def _apgd_t(spec: AttackSpec) -> BudgetAttack:
    """APGD-T over ``spec.targets`` runner-up classes; on multi-label models (no class ranking) APGD with
    the threshold-margin loss instead. Single-label models need 3 classes or more (DLR's scale)."""
    def attack(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel,
               **run: Unpack[BudgetArgs]) -> AttackResult:
        if model.multilabel:
            return apgd(model, audio, labels, threat, steps=spec.gradient_steps, restarts=spec.restarts, loss="dlr",
                        **run)
        return apgd_targeted(model, audio, labels, threat, steps=spec.gradient_steps, target_classes=spec.targets,
                             restarts=spec.restarts, **run)
    return attack


def _reliable(spec: AttackSpec) -> BudgetAttack:
    """APGD-CE, then APGD-T (targeted DLR), then Square as the gradient-free check: a clip is robust only
    if all three fail. Square gets ``spec.queries`` queries. Left out where they do not apply: APGD-T on
    two-class single-label models, Square for L1."""
    members = [("apgd-ce", _apgd_ce(spec)), ("apgd-t", _apgd_t(spec)), ("square", _square(spec))]

    def attack(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel,
               **run: Unpack[BudgetArgs]) -> AttackResult:
        # APGD-T needs a runner-up ranking (3 classes or more, or tags); Square serves L∞ and L2 only.
        usable = [(name, member) for name, member in members
                  if (name != "apgd-t" or model.multilabel or len(model.labels) >= 3)
                  and (name != "square" or threat.norm in ("linf", "l2"))]
        return ensemble(usable, model, audio, labels, threat, **run)
    return attack


def _library(spec: AttackSpec) -> BudgetAttack:
    def attack(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel,
               **run: Unpack[BudgetArgs]) -> AttackResult:
        return backend_attack(model, audio, labels, threat, backend=spec.backend, attack=spec.name,
                              steps=spec.steps, generator=run["generator"])
    return attack


# name -> (builder, runs as one ε curve with carry-over). Library attacks run once per budget: their
# settings and starts are their authors', not ours to warm-start.
ATTACKS: dict[str, Callable[[AttackSpec], BudgetAttack]] = {
    "reliable": _reliable,
    "pgd": _pgd,
    "apgd-ce": _apgd_ce,
    "apgd-t": _apgd_t,
    "square": _square,
}
GRADIENT_FREE = ("square",)


def budget_attack(spec: AttackSpec) -> tuple[BudgetAttack, bool]:
    """The attack ``spec`` names, at one budget, and whether it runs as an ε curve."""
    if spec.backend != "native":
        return _library(spec), False
    if spec.name not in ATTACKS:
        raise KeyError(f"Unknown attack {spec.name!r}; native attacks: {', '.join(ATTACKS)} "
                       f"(or --backend art / foolbox for library attacks).")
    return ATTACKS[spec.name](spec), spec.name != "square"
