"""Evaluation sanity checks: signs that a robustness number cannot be trusted.

Adversarial evaluations fail quietly (Carlini et al. 2019, "On evaluating adversarial
robustness"; Athalye et al. 2018, "Obfuscated gradients"). Each check here is a measurement, a
rule that flags it, the reason the flag matters and the fix. Two kinds:

- :func:`probe_model` runs small experiments on a few clean-correct clips (gradients, repeated
  forwards, output ranges, PGD at a very large budget, PGD with more steps and restarts, random
  noise at the same budget);
- :func:`record_checks` reads a run's card (robust accuracy must not grow with ε; a black-box
  attack must not beat a white-box one at the same budget).

Every attack report lists all checks, flagged or not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..attacks.criteria import attack_loss, is_correct
from ..attacks.curve import BudgetAttack
from ..attacks.minimal import default_eps_max
from ..attacks.pgd import pgd
from ..attacks.result import AttackResult
from ..attacks.threat import ThreatModel, lp_norm
from ..models.base import AttackTarget, frozen


@dataclass
class Check:
    """One sanity check's outcome. ``seen`` says what was measured; ``reason`` and ``fix`` are shown
    with a flag."""

    name: str
    flagged: bool
    seen: str
    reason: str
    fix: str

    def as_dict(self) -> dict:
        return asdict(self)


def _accuracy(model: AttackTarget, logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float(is_correct(model, logits, labels).float().mean())


def _pgd_attack(steps: int, restarts: int, **pgd_options: Any) -> BudgetAttack:
    def attack(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, *,
               eps: torch.Tensor, clean_logits: torch.Tensor, video: torch.Tensor | None,
               init_delta: torch.Tensor | None, generator: torch.Generator | None) -> AttackResult:
        return pgd(model, audio, labels, threat, steps=steps, restarts=restarts, eps=eps, generator=generator,
                   clean_logits=clean_logits, video=video, init_delta=init_delta, **pgd_options)
    return attack


def probe_model(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, *,
                attack: BudgetAttack | None = None, stronger: BudgetAttack | None = None,
                attack_name: str = "PGD", steps: int = 10, restarts: int = 1,
                generator: torch.Generator | None = None, noise_draws: int = 8, video: torch.Tensor | None = None,
                model_checks: bool = True, **pgd_options: Any) -> list[Check]:
    """Probe ``model`` on clean-correct clips ``audio`` ``[N, T]`` under ``threat`` (one budget).

    ``attack``: the run's attack at one budget (default: PGD with ``steps``, ``restarts`` and
    ``pgd_options``); ``stronger``: the same attack with about 4x the work (default: PGD with 4x the
    steps and one more restart). ``video`` ``[N, ...]``: the clips' video for audio-visual models.
    ``model_checks``: also check the model itself (gradients, randomness, logits, a huge budget);
    a curve needs them once, the attack checks (convergence, random noise) at every budget.

    Each check is named for the problem it finds, so that a flag reads as one: "not converged",
    "gradients masked", "randomness in the model", ...
    """
    attack = attack or _pgd_attack(steps, restarts, **pgd_options)
    stronger = stronger or _pgd_attack(4 * steps, restarts + 1, **pgd_options)
    checks: list[Check] = []
    with frozen(model):
        clean, logits_fn = threat.view(model, audio, video)
        clean = clean.detach()
        eps = threat.budget(clean)
        n = len(audio)
        with torch.no_grad():
            first = logits_fn(clean)
        budget = f"{threat.norm} ε = {float(eps.max()):.3g}" if threat.eps is not None else threat.describe()

        def run(which: BudgetAttack, at: torch.Tensor) -> AttackResult:
            return which(model, audio, labels, threat, eps=at, clean_logits=first, video=video, init_delta=None,
                         generator=generator)

        if model_checks:
            checks += _model_checks(model, audio, labels, threat, clean, logits_fn, first, eps,
                                    lambda at: run(attack, at))
        weak, strong = run(attack, eps), run(stronger, eps)
        # Compared in clips, not in float accuracies: one clip's difference is within the noise of the
        # attack's random start; float32 means made a one-clip difference look like more.
        weak_robust = int(is_correct(model, weak.logits, labels).sum())
        strong_robust = int(is_correct(model, strong.logits, labels).sum())
        tolerance = max(1, math.ceil(0.05 * n))
        checks.append(Check(
            "erratic attack", strong_robust > weak_robust + tolerance,
            f"at {budget}: {weak_robust} of {n} clean-correct clips robust to the run's {attack_name}, "
            f"{strong_robust} to about 4× the work",
            "A stronger attack can only find more adversarial inputs; higher accuracy with more work "
            "means the model or the attack is erratic (randomness, a loss the attack should not follow).",
            "Check the randomness check; use EOT for random models; report the strongest attack."))
        checks.append(Check(
            "not converged", strong_robust < weak_robust - tolerance,
            f"at {budget}: {weak_robust} of {n} clean-correct clips robust to the run's {attack_name}, "
            f"{strong_robust} to about 4× the work (flagged beyond {tolerance} clip(s))",
            "If more work still lowers accuracy, the reported numbers are upper bounds far from the truth.",
            "Rerun with more --steps and --restarts" + ("." if attack_name.startswith("reliable") else
                                                         ", or the default --attack reliable.")))

        noise_fooled = torch.zeros(n, dtype=torch.bool)
        for _ in range(noise_draws):
            delta = threat.random_start(clean, eps, generator, on_sphere=True)  # the strongest random draw
            with torch.no_grad():
                noise_fooled |= ~is_correct(model, logits_fn(threat.apply(clean, delta)), labels).cpu()
        beaten = noise_fooled.to(weak.success.device) & ~weak.success
        checks.append(Check(
            "noise beats the attack", bool(beaten.any()),
            f"at {budget}: {int(beaten.sum())} clip(s) fooled by random noise ({noise_draws} draws) but not by "
            f"the {attack_name}",
            "Gradient attacks must beat random search at the same budget; if noise finds adversarial "
            "inputs the attack misses, the gradients are misleading (masking, saturation).",
            "Check the gradient checks; raise --steps/--restarts; use --attack reliable (its Square "
            "member needs no gradients)."))
    return checks


def _model_checks(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel,
                  clean: torch.Tensor, logits_fn: Callable[..., torch.Tensor], first: torch.Tensor, eps: torch.Tensor,
                  attack_at: Callable[[torch.Tensor], AttackResult]) -> list[Check]:
    """Checks of the model itself: its gradients, randomness, outputs, and a budget that breaks anything."""
    checks = []
    n = len(audio)
    x = clean.clone().requires_grad_(True)
    with torch.enable_grad():
        loss = attack_loss(model, logits_fn(x), labels)
        grad, = torch.autograd.grad(loss.sum(), x, allow_unused=True)
    grad = torch.zeros_like(x) if grad is None else grad
    bad = ~torch.isfinite(grad).flatten(1).all(dim=1)
    checks.append(Check(
        "gradients not finite", bool(bad.any()), f"{int(bad.sum())} of {n} clips have NaN/Inf input gradients",
        "NaN or Inf gradients make gradient attacks step nowhere: robust accuracy is overestimated.",
        "Find the op with an unbounded derivative (sqrt or log at 0, division by a norm) and add an "
        "epsilon; add tiny dither to digital silence."))
    zero = (lp_norm(torch.nan_to_num(grad), "linf") == 0)
    checks.append(Check(
        "gradients masked", bool(zero.any()), f"{int(zero.sum())} of {n} clips have all-zero input gradients",
        "Zero gradients (quantisation, rounding, argmax or a detached front end) hide the model from "
        "gradient attacks: a high robust accuracy then means nothing.",
        "Keep the front end differentiable; for non-differentiable steps attack with BPDA or a "
        "black-box attack (--attack square, or --backend art --attack hsj)."))
    with torch.no_grad():
        second = logits_fn(clean)
    spread = float((first - second).abs().max())
    scale = float(first.abs().max()) + 1e-12
    checks.append(Check(
        "randomness in the model", spread > 1e-5 * scale, f"max Δlogit between two forwards: {spread:.3g}",
        "A model with randomness (dropout in eval mode, random crops, stochastic defenses) gives "
        "gradients of one draw: the attack underestimates what an adaptive attacker can do.",
        "Put the model in eval mode, or attack with expectation over transformation (average the "
        "gradient over several draws per step)."))
    looks_like_probabilities = bool(((first >= 0) & (first <= 1)).all()) and (
        model.multilabel or bool(torch.allclose(first.sum(-1), torch.ones(n, device=first.device), atol=1e-3)))
    row_sums = first.sum(-1)
    checks.append(Check(
        "probabilities, not logits", looks_like_probabilities,
        f"outputs in [{float(first.min()):.3g}, {float(first.max()):.3g}], row sums in "
        f"[{float(row_sums.min()):.3g}, {float(row_sums.max()):.3g}]",
        "Cross-entropy on softmax outputs applies softmax twice: its gradients nearly vanish and "
        "attacks stall, which looks like robustness.",
        "Return pre-softmax (pre-sigmoid) logits from forward(); the Classifier applies "
        "softmax/sigmoid itself in scores()."))
    large = min(default_eps_max(threat, clean) * 0.5, float(eps.max()) * 100)
    large_accuracy = _accuracy(model, attack_at(torch.full_like(eps, large)).logits, labels)
    checks.append(Check(
        "attack cannot reach the model", large_accuracy > 0.1,
        f"accuracy {large_accuracy:.2f} on {n} clean-correct clips at {threat.norm} ε = {large:.3g}",
        "At a budget that can turn a clip into noise every model should fail; if it does not, the "
        "attack is not reaching the model (masked gradients, wrong loss, wrong bounds).",
        "Check the gradient checks above, the loss (logits, labels), and the input bounds; try a "
        "black-box attack."))
    return checks


BLACK_BOX_ATTACKS = ("square", "hsj", "boundary")


def record_checks(card: dict) -> list[Check]:
    """Checks on a run's results (its card): monotone ε curves, white-box at least as strong as black-box."""
    checks = []
    groups: dict[tuple, list[dict]] = {}
    for c in card.get("conditions", []):
        if c.get("kind") != "noise":
            groups.setdefault((c["norm"], c["domain"], c["eps"] is None, c["attack"]), []).append(c)
    rising = []
    for (_norm, _domain, relative, _attack), conditions in groups.items():
        ordered = sorted(conditions, key=lambda c: -c["snr_db"] if relative else c["eps"])
        n = max(c["robust_accuracy"]["n"] for c in ordered)
        for small, large in zip(ordered, ordered[1:]):
            if large["robust_accuracy"]["value"] > small["robust_accuracy"]["value"] + 1.0 / max(n, 1):
                rising.append(f"{small['condition']} → {large['condition']}")
    checks.append(Check(
        "accuracy rises with ε", bool(rising),
        "robust accuracy rises between " + "; ".join(rising) if rising else "every ε curve is non-increasing",
        "A larger budget contains every perturbation of a smaller one: accuracy must not rise. If it "
        "does, the attack at the larger budget is weaker than it should be.",
        "Run the budgets as one ε curve (one command with several --eps), raise --steps/--restarts."))
    white = {(c["norm"], c["domain"], c["eps"], c["snr_db"]): c for c in card.get("conditions", [])
             if c["attack"] not in BLACK_BOX_ATTACKS}
    beaten = [c["condition"] for c in card.get("conditions", [])
              if c["attack"] in BLACK_BOX_ATTACKS and (key := (c["norm"], c["domain"], c["eps"], c["snr_db"])) in white
              and c["robust_accuracy"]["value"]
              < white[key]["robust_accuracy"]["value"] - 1.0 / max(c["robust_accuracy"]["n"], 1)]
    checks.append(Check(
        "black-box beats white-box", bool(beaten),
        "black-box lower than PGD: " + ", ".join(beaten) if beaten else "no black-box attack did better than PGD",
        "With gradients an attacker is stronger than without; a black-box attack winning means the "
        "gradients mislead.",
        "Check the gradient checks; report the strongest attack."))
    return checks
