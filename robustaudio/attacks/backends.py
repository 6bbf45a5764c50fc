"""Foolbox and ART attacks on robustaudio models, with the house's projection, criteria and counts.

:func:`to_foolbox` and :func:`to_art` wrap any :class:`~robustaudio.models.Classifier` for the two
libraries, in the waveform or the feature domain. :func:`backend_attack` runs one of their attacks
and returns the same :class:`~robustaudio.attacks.AttackResult` as the native attacks: whatever the
library returns is projected with :meth:`ThreatModel.project` (the one place that owns projection)
and scored with :func:`~robustaudio.attacks.is_fooled` on our own forward pass, so a library's own
clipping and success bookkeeping are never trusted. :func:`foolbox_minimal_norms` gives the raw
per-clip minimal norms of FMN.

Bounds: audio lives in [-1, 1]. Both libraries take the model's box, but two attacks assume
[0, 1]: foolbox's HopSkipJump clips to [0, 1] whatever the model's bounds, and ART's DeepFool
multiplies its step by ``hi - lo`` (a 2x overshoot on [-1, 1]). These run on the affine
reparametrisation ``u -> model(lo + (hi - lo) u)`` in [0, 1] (:class:`UnitBox`), with ε scaled by
``1 / (hi - lo)`` (every Lp norm is homogeneous), and the result is mapped back. Nothing is ever
clamped to [0, 1].

Settings: without ``steps`` each library attack runs at its authors' recommended settings, the
library's own defaults (ART APGD 100 iterations x 5 random starts as in AutoAttack, ART PGD 100,
foolbox L∞ PGD 40 and L2 PGD 50, FMN 100, C&W and HopSkipJump as shipped); ART's absolute step
sizes become the same fraction of ε. Given ``steps``, that many iterations run (one random start).
:func:`library_settings` says exactly what runs, for reports.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ..models.base import AttackTarget, Classifier, frozen
from .counting import PassCounter
from .criteria import is_fooled
from .library_models import (  # noqa: F401  (to_art, to_foolbox: re-exported, the entry points of this module)
    UnitBox,
    _art_classifier,
    _domain_module,
    _feature_shape,
    _foolbox_model,
    to_art,
    to_foolbox,
)
from .result import AttackResult
from .threat import ThreatModel, lp_norm

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # foolbox imports GitPython

ALL_NORMS = ("linf", "l2", "l1")
# Attack name -> the threat norms it can serve. Minimal-norm attacks serve the norm they minimise.
FOOLBOX_ATTACKS: dict[str, tuple[str, ...]] = {
    "pgd": ALL_NORMS, "fmn": ALL_NORMS, "deepfool": ("linf", "l2"), "cw": ("l2",),
    "hsj": ("linf", "l2"), "boundary": ("l2",),
}
ART_ATTACKS: dict[str, tuple[str, ...]] = {
    "pgd": ALL_NORMS, "apgd": ALL_NORMS, "cw": ("linf", "l2"), "deepfool": ("l2",),
    "hsj": ("linf", "l2"),
}  # no "square": ART's SquareAttack cannot run on audio (see check_backend_attack)
BACKENDS: dict[str, dict[str, tuple[str, ...]]] = {"foolbox": FOOLBOX_ATTACKS, "art": ART_ATTACKS}
# Attacks that assume the [0, 1] box: foolbox's HopSkipJump clips to [0, 1]; ART's DeepFool scales
# its step by (hi - lo), i.e. doubles it on [-1, 1]. Both run on the UnitBox reparametrisation.
UNIT_BOX_ATTACKS = {("foolbox", "hsj"), ("art", "deepfool")}
NEEDS_BOX = {"cw", "hsj", "boundary"}  # attacks that need finite bounds to work at all
UNTARGETED_ONLY = {"deepfool"}
ART_NORM = {"linf": np.inf, "l2": 2, "l1": 1}

# Step sizes that scale with ε are given as a fraction of ε: foolbox's ``rel_stepsize`` is one already;
# ART's absolute ``eps_step`` is set to ``EPS_STEP_KEY`` x ε.
EPS_STEP_KEY = "eps_step/eps"
# Constructor arguments that are plumbing (the estimator, ε, norm, batching, logging), not settings.
_PLUMBING = {"self", "estimator", "classifier", "norm", "eps", "eps_step", "targeted", "batch_size", "verbose",
             "summary_writer", "tensorboard", "init_attack", "constraint", "abs_stepsize", "min_stepsize",
             "update_stats_every_k", "decay", "random_eps"}


# foolbox and ART are optional dependencies, imported lazily and loosely typed: their classes, models,
# criteria and attack instances are Any here.
def _library_class(backend: str, attack: str, norm: str) -> Any:
    """The library's attack class that :func:`backend_attack` builds for ``(backend, attack, norm)``."""
    if backend == "foolbox":
        import foolbox as fb

        fa = fb.attacks
        return {"pgd": {"linf": fa.LinfPGD, "l2": fa.L2PGD, "l1": fa.L1PGD}.get(norm),
                "fmn": {"linf": fa.LInfFMNAttack, "l2": fa.L2FMNAttack, "l1": fa.L1FMNAttack}.get(norm),
                "deepfool": {"linf": fa.LinfDeepFoolAttack, "l2": fa.L2DeepFoolAttack}.get(norm),
                "cw": fa.L2CarliniWagnerAttack, "hsj": fa.HopSkipJumpAttack, "boundary": fa.BoundaryAttack}[attack]
    from art.attacks import evasion

    return {"pgd": evasion.ProjectedGradientDescent, "apgd": evasion.AutoProjectedGradientDescent,
            "cw": evasion.CarliniL2Method if norm == "l2" else evasion.CarliniLInfMethod,
            "deepfool": evasion.DeepFool, "hsj": evasion.HopSkipJump}[attack]


def _our_settings(backend: str, attack: str, steps: int | None, num_classes: int) -> dict:
    """What :func:`backend_attack` passes beyond the library's own defaults.

    ``steps=None``: the authors' recommended settings, i.e. the library's defaults, except where a
    default is not scale-free (ART's absolute ``eps_step``: kept as the same fraction of ε) or is
    a known misfit noted here. Given ``steps``: that many iterations, with the step rules below.
    """
    candidates = {"candidates": min(10, num_classes)}
    if backend == "foolbox":
        if attack == "pgd":  # default: foolbox's (L∞ 40 steps of ε/30; L2 / L1 50 steps of ε/40), random start
            return {} if steps is None else dict(steps=steps, rel_stepsize=2.5 / max(steps, 1), random_start=True)
        if attack == "deepfool":  # foolbox's 50 steps, overshoot 0.02; at most K candidate classes
            return candidates | ({} if steps is None else dict(steps=steps))
        # fmn 100 steps; cw 9 binary-search steps x 10000 (early abort); hsj 64; boundary 25000
        return {} if steps is None else dict(steps=steps)
    if attack == "pgd":
        if steps is None:  # ART's defaults: 100 iterations, no random start, eps_step 0.1 at its eps 0.3
            return {"max_iter": 100, EPS_STEP_KEY: 0.1 / 0.3, "num_random_init": 0}
        return {"max_iter": steps, EPS_STEP_KEY: 2.5 / max(steps, 1), "num_random_init": 1}
    if attack == "apgd":  # APGD's schedule starts at a step of 2ε (Croce & Hein 2020); ART's default 5 restarts
        return {EPS_STEP_KEY: 2.0} | (dict(max_iter=100, nb_random_init=5) if steps is None
                                       else dict(max_iter=steps, nb_random_init=1))
    if attack == "deepfool":
        # Overshoot 0.02 as in the DeepFool paper and foolbox; ART's 1e-6 stops on the boundary itself.
        return dict(nb_grads=min(10, num_classes), epsilon=0.02) | ({} if steps is None else dict(max_iter=steps))
    # cw: ART's 10 binary-search steps (L2) x 10 iterations; hsj: 50 iterations
    return {} if steps is None else dict(max_iter=steps)


def library_settings(backend: str, attack: str, norm: str = "linf", steps: int | None = None, *,
                     num_classes: int = 10, **options: Any) -> dict:
    """The settings :func:`backend_attack` runs ``backend``'s ``attack`` with, for reports.

    The library's own constructor defaults (read from its signature; plumbing such as ε, the norm,
    batch size and logging left out), overridden by robustaudio's choices for ``steps`` (``None``:
    the authors' recommended settings) and by ``options``. A step that scales with ε is given as
    ``eps_step/eps`` (ART) or ``rel_stepsize`` (foolbox, already relative to ε).
    """
    check_backend_attack(backend, attack, norm)
    cls = _library_class(backend, attack, norm)
    defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                if name not in _PLUMBING and p.default is not inspect.Parameter.empty
                and isinstance(p.default, (bool, int, float, str))}
    return defaults | _our_settings(backend, attack, steps, num_classes) | options


class BackendError(ValueError):
    """A backend, attack or setting that cannot be used; the message lists what can."""


def _valid_names() -> str:
    return "; ".join(f"{backend}: {', '.join(attacks)}" for backend, attacks in BACKENDS.items())


def check_backend_attack(backend: str, attack: str, norm: str, *, multilabel: bool = False,
                         targeted: bool = False) -> None:
    """Raise a clear error unless ``backend`` can run ``attack`` for this norm and model kind."""
    if backend not in BACKENDS:
        raise BackendError(f"Unknown backend {backend!r}. Valid backends and attacks: {_valid_names()}.")
    attacks = BACKENDS[backend]
    if backend == "art" and attack == "square":
        raise BackendError("ART's SquareAttack only takes 4-D image batches and samples square windows from "
                           "the image height, so it fails on [B, T] audio (also as [B, 1, 1, T]). Use the "
                           "native robustaudio.attacks.square.square_attack instead.")
    if attack not in attacks:
        raise BackendError(f"Unknown attack {attack!r} for backend {backend!r}; valid: {', '.join(attacks)} "
                           f"(all backends: {_valid_names()}).")
    if norm not in attacks[attack]:
        raise BackendError(f"{backend} {attack} serves the norms {', '.join(attacks[attack])}, not {norm}.")
    if targeted and attack in UNTARGETED_ONLY:
        raise BackendError(f"{backend} {attack} is untargeted only; use pgd or cw for targeted attacks.")
    if multilabel and backend == "foolbox":
        raise NotImplementedError("foolbox's criteria assume single-label models (top-1 misclassification). "
                                  "For a multi-label model use the native pgd or square_attack, or "
                                  "backend='art' with attack='pgd' (BCE-based loss).")
    if multilabel and backend == "art" and attack != "pgd":
        raise NotImplementedError(f"ART's {attack} decides success by argmax, which is meaningless for a "
                                  f"multi-label model. Use backend='art' with attack='pgd', or the native "
                                  f"pgd or square_attack.")


# -- running a library attack ------------------------------------------------------------------

@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's and numpy's global generators (the libraries draw from them), restored on exit."""
    devices = [device] if device.type == "cuda" else []
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)


@contextmanager
def _uncounted(module: nn.Module) -> Iterator[None]:
    """Leave library set-up calls through ``module`` (a PassCounter, possibly wrapped) uncounted."""
    counters = [m for m in module.modules() if isinstance(m, PassCounter)]
    for counter in counters:
        counter.counting = False
    try:
        yield
    finally:
        for counter in counters:
            counter.counting = True


def _eps_groups(eps: torch.Tensor) -> list[tuple[float, torch.Tensor]]:
    """Clips sharing one ε value: the libraries take a scalar ε (one group per clip for SNR budgets)."""
    values, group = torch.unique(eps.cpu(), return_inverse=True)
    return [(float(value), torch.nonzero(group == k).flatten()) for k, value in enumerate(values)]


def _box(model: Classifier, threat: ThreatModel, attack: str) -> tuple[float, float]:
    """The box the library must respect: the threat's bounds, else the model's (waveform) or none."""
    # tuple() of the model's (lo, hi) pair: mypy widens it to tuple[float, ...]
    bounds = threat.bounds if threat.bounds is not None else (
        cast(tuple[float, float], tuple(model.bounds)) if threat.domain == "waveform" else (-math.inf, math.inf))
    if attack in NEEDS_BOX and not all(math.isfinite(b) for b in bounds):
        raise BackendError(f"{attack} needs a finite box; give the feature-domain threat model bounds "
                           f"(e.g. ThreatModel(..., domain='feature', bounds=(lo, hi))).")
    return bounds


def _foolbox_starting_points(fmodel: Any, x: torch.Tensor, criterion: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Adversarial starting points for decision-based attacks and a ``[n]`` mask of where one was found.

    foolbox's HopSkipJump and Boundary raise if their initialisation fails for any clip; running it
    here lets the clips that have a starting point go on and the others count as failures.
    """
    import foolbox as fb

    points = fb.attacks.LinearSearchBlendedUniformNoiseAttack(steps=50).run(fmodel, x, criterion)
    with torch.no_grad():
        found = criterion(points, fmodel(points)).bool()  # the attack's own check, which it asserts
    return points, found


def _run_foolbox(attack: str, module: nn.Module, clean: torch.Tensor, labels: torch.Tensor,
                 eps: torch.Tensor, norm: str, bounds: tuple[float, float], *, steps: int | None, targeted: bool,
                 nb_classes: int, options: dict) -> torch.Tensor:
    """Raw foolbox output ``[n, ...]`` for ``clean`` ``[n, ...]`` (model space, not yet projected)."""
    import foolbox as fb

    criterion_for = (fb.criteria.TargetedMisclassification if targeted else fb.criteria.Misclassification)
    fmodel = _foolbox_model(module, bounds, clean.device)
    cls = _library_class("foolbox", attack, norm)
    settings = _our_settings("foolbox", attack, steps, nb_classes) | options
    if attack == "hsj":
        return _run_foolbox_decision(cls(constraint=norm, **settings), fmodel, clean, labels, criterion_for)
    if attack == "boundary":
        return _run_foolbox_decision(cls(**settings), fmodel, clean, labels, criterion_for)
    if attack == "pgd":
        result = clean.clone()
        for value, index in _eps_groups(eps):
            result[index] = cls(**settings).run(fmodel, clean[index], criterion_for(labels[index]), epsilon=value)
        return result
    return cls(**settings).run(fmodel, clean, criterion_for(labels))  # fmn, deepfool, cw: minimal-norm


def _run_foolbox_decision(instance: Any, fmodel: Any, x: torch.Tensor, labels: torch.Tensor,
                          criterion_for: Any) -> torch.Tensor:
    """A decision-based foolbox attack on the clips for which a starting point exists; the rest stay clean."""
    points, found = _foolbox_starting_points(fmodel, x, criterion_for(labels))
    result = x.clone()
    if found.any():
        result[found] = instance.run(fmodel, x[found], criterion_for(labels[found]), starting_points=points[found])
    return result


def _run_art(attack: str, module: nn.Module, model: Classifier, clean: torch.Tensor, labels: torch.Tensor,
             eps: torch.Tensor, norm: str, bounds: tuple[float, float], *, steps: int | None, targeted: bool,
             options: dict) -> torch.Tensor:
    """Raw ART output ``[n, ...]`` for ``clean`` ``[n, ...]`` (model space, not yet projected)."""
    clip_values = bounds if all(math.isfinite(b) for b in bounds) else None
    classifier = _art_classifier(module, multilabel_model=model if model.multilabel else None,
                                 nb_classes=model.num_classes, input_shape=tuple(clean.shape[1:]),
                                 clip_values=clip_values, targeted=targeted, device=clean.device)
    x = clean.detach().cpu().numpy()
    y = labels.detach().cpu().numpy()
    cls = _library_class("art", attack, norm)
    settings = _our_settings("art", attack, steps, model.num_classes) | options
    step_per_eps = settings.pop(EPS_STEP_KEY, None)

    def generate(instance: Any, rows: slice | np.ndarray = slice(None)) -> torch.Tensor:
        return torch.from_numpy(instance.generate(x[rows], y[rows])).to(clean.device, torch.float32)

    if attack in ("pgd", "apgd"):
        result = clean.clone()
        for value, index in _eps_groups(eps):
            per_eps = dict(norm=ART_NORM[norm], eps=value, batch_size=len(index), targeted=targeted, verbose=False)
            if step_per_eps is not None:
                per_eps["eps_step"] = step_per_eps * value
            with _uncounted(module):  # APGD probes the model on a dummy input when built
                instance = cls(classifier, **(per_eps | settings))
            result[index] = generate(instance, index.numpy())
        return result
    batch = dict(batch_size=len(clean), verbose=False)
    if attack == "cw":
        instance = cls(classifier, targeted=targeted, **(batch | settings))
    elif attack == "deepfool":
        instance = cls(classifier, **(batch | settings))
    else:  # hsj
        instance = cls(classifier, norm=ART_NORM[norm], targeted=targeted, **(dict(verbose=False) | settings))
    return generate(instance)


def _library_run(model: Classifier, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, *, backend: str,
                 attack: str, steps: int | None, generator: torch.Generator | None, targeted: bool,
                 eps: torch.Tensor | None, options: dict
                 ) -> tuple[torch.Tensor, Callable[..., torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor,
                            torch.Tensor, torch.Tensor, PassCounter | None]:
    """Shared by :func:`backend_attack` and :func:`foolbox_minimal_norms`.

    Returns ``clean``, ``logits_fn``, ``eps``, clean ``logits``, clean ``success`` and, for the
    clips not fooled already (``active``), the raw library output and the passes they took (a
    :class:`PassCounter`; ``None`` when ``active`` is empty and no library ran).
    """
    check_backend_attack(backend, attack, threat.norm, multilabel=model.multilabel, targeted=targeted)
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1 (or None for the authors' settings), got {steps}.")
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    clean, logits_fn = threat.view(model, audio)
    clean = clean.detach()
    if clean.shape[0] == 0:  # an empty batch: no norm to measure, no pass to make
        eps = torch.zeros(0, device=clean.device)
        logits = torch.zeros(0, model.num_classes, device=clean.device)
        success = torch.zeros(0, dtype=torch.bool, device=clean.device)
    else:
        eps = threat.budget(clean) if eps is None else eps.to(clean.device).float()
        with torch.no_grad():
            logits = logits_fn(clean, None)
        success = is_fooled(model, logits, labels, targeted)
    active = torch.nonzero(~success & (eps > 0)).flatten()
    raw = clean[active].clone()
    counter = None  # nothing to attack (every clip fooled already, or an empty batch): no library call
    if active.numel() > 0:
        counter = PassCounter(_domain_module(model, threat.domain), reference=clean[active])
        bounds = _box(model, threat, attack)
        module: nn.Module
        module, x, eps_lib = counter, clean[active], eps[active]
        unit = None
        if (backend, attack) in UNIT_BOX_ATTACKS and all(math.isfinite(b) for b in bounds):
            unit = UnitBox(counter, bounds)
            module, x, eps_lib, bounds = unit, unit.to_unit(x), eps_lib / unit.span, (0.0, 1.0)
        with _seeded(seed, clean.device):
            if backend == "foolbox":
                raw = _run_foolbox(attack, module, x, labels[active], eps_lib, threat.norm, bounds,
                                   nb_classes=model.num_classes, steps=steps, targeted=targeted, options=options)
            else:
                raw = _run_art(attack, module, model, x, labels[active], eps_lib, threat.norm, bounds,
                               steps=steps, targeted=targeted, options=options)
        raw = raw.detach() if unit is None else unit.from_unit(raw.detach())
        raw = torch.where(torch.isfinite(raw), raw, clean[active])  # a library's NaN is a failure
    return clean, logits_fn, eps, logits, success, active, raw, counter


def backend_attack(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, *, backend: str,
                   attack: str, steps: int | None = None, generator: torch.Generator | None = None,
                   targeted: bool = False, eps: torch.Tensor | None = None, **options: Any) -> AttackResult:
    """Run a foolbox or ART attack on a batch; the result is projected and scored by robustaudio.

    Attacks (``check_backend_attack`` says which norms each serves):

    * foolbox: ``pgd`` (Linf/L2/L1 PGD), ``fmn`` (fast minimum-norm, L∞/L2/L1), ``deepfool``,
      ``cw`` (L2 Carlini-Wagner), ``hsj`` (HopSkipJump, run in [0, 1] through :class:`UnitBox`),
      ``boundary``. Single-label only.
    * art: ``pgd``, ``apgd`` (AutoPGD), ``cw`` (CarliniL2Method / CarliniLInfMethod), ``deepfool``
      (L2, overshoot 0.02, run in [0, 1] through :class:`UnitBox`), ``hsj`` (HopSkipJump).
      ``square`` raises: ART's SquareAttack takes images only; use
      :func:`~robustaudio.attacks.square.square_attack`. Multi-label: ``pgd`` only.

    Minimal-norm attacks (fmn, deepfool, cw, hsj, boundary) ignore ε while running; their output
    is then projected onto the threat's ε-ball, so ``success`` means success at ε. The threat's
    mask is applied by that projection only (the libraries do not know it).

    Args:
        model: a :class:`~robustaudio.models.Classifier`.
        audio: waveforms ``[B, T]`` in the model's bounds.
        labels: ``[B]`` class indices (``[B, K]`` 0/1 for multi-label); the targets if ``targeted``.
        threat: norm, ε (in that norm, in the threat's domain: sample units for waveforms),
            domain, bounds, mask.
        backend: ``"foolbox"`` or ``"art"``.
        attack: the attack's name, see above.
        steps: iterations, in the library's own sense (PGD/APGD/FMN/DeepFool steps; CW steps per
            binary-search step; HSJ/Boundary iterations, each of many queries). ``None``: the
            authors' recommended settings, i.e. the library's defaults (ART APGD 100 iterations x 5
            random starts, ART PGD 100, foolbox L∞ PGD 40, FMN 100, ...; see
            :func:`library_settings`, which says exactly what runs).
        generator: torch generator; one draw from it seeds the libraries' global torch and numpy
            generators for the call (restored after).
        eps: optional per-sample budget ``[B]`` overriding ``threat.budget``; the libraries take a
            scalar ε, so clips are attacked in groups of equal ε.
        options: passed to the library attack's constructor, overriding the defaults chosen here.

    Returns:
        :class:`AttackResult`. ``forwards``/``backwards`` ``[B]`` count the passes each clip took
        part in: one clean and one final scoring forward of ours, plus the library's calls through
        a :class:`PassCounter` (rows attributed to the nearest clean clip; see there). For the
        decision-based attacks (hsj, boundary) the forwards are queries, for the others gradient
        passes plus their forwards.
    """
    # cast: the adapters also read bounds and num_classes and wrap the model as an nn.Module, Classifier
    # members that AttackTarget (what the runner passes) does not declare.
    with frozen(model):
        clean, logits_fn, eps, logits, success, active, raw, counter = _library_run(
            cast(Classifier, model), audio, labels, threat, backend=backend, attack=attack, steps=steps,
            generator=generator, targeted=targeted, eps=eps, options=options)
        forwards = torch.ones(clean.shape[0], dtype=torch.long, device=clean.device)
        backwards = torch.zeros_like(forwards)
        adversarial = clean.clone()
        if active.numel() > 0:
            counter = cast(PassCounter, counter)  # _library_run makes one whenever active is non-empty
            x = threat.apply(clean[active], threat.project(raw - clean[active], clean[active], eps[active]))
            with torch.no_grad():
                out = logits_fn(x, active)
            adversarial[active] = x
            logits[active] = out
            success[active] = is_fooled(model, out, labels[active], targeted)
            forwards[active] += 1 + counter.forwards.to(forwards.device)
            backwards[active] += counter.backwards.to(forwards.device)
    return AttackResult(adversarial=adversarial, clean=clean, success=success, logits=logits, budget=eps,
                        forwards=forwards, backwards=backwards)


def foolbox_minimal_norms(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, *,
                          steps: int = 100, generator: torch.Generator | None = None, targeted: bool = False,
                          **options: Any) -> torch.Tensor:
    """Per-clip minimal adversarial norms ``[B]`` found by foolbox's FMN, unclipped.

    In ``threat.norm`` and ``threat.domain`` (sample units for waveforms); ``threat``'s ε and mask
    are not used, its bounds are. ``0`` for clips fooled already, ``inf`` where FMN found no
    adversarial input (checked with :func:`is_fooled` on our own forward pass).
    """
    with frozen(model):  # cast: as in backend_attack
        clean, logits_fn, _, _, success, active, raw, _ = _library_run(
            cast(Classifier, model), audio, labels, threat, backend="foolbox", attack="fmn", steps=steps,
            generator=generator, targeted=targeted, eps=None, options=options)
        norms = torch.zeros(clean.shape[0], device=clean.device)
        if active.numel() > 0:
            if threat.bounds is not None:  # rounding only: FMN clips to the bounds itself
                raw = raw.clamp(*threat.bounds)
            with torch.no_grad():
                fooled = is_fooled(model, logits_fn(raw, active), labels[active], targeted)
            norms[active] = torch.where(fooled, lp_norm(raw - clean[active], threat.norm),
                                        torch.full_like(norms[active], math.inf))
    return norms
