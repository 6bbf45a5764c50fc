"""Square Attack (Andriushchenko et al. 2020), score-based, for L∞ and L2, adapted to 1-D signals:
contiguous windows of samples replace the paper's squares of pixels. Only logits are used, so the
model may be a :class:`~robustaudio.attacks.counting.QueryCounter` or an ONNX model.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

import torch

from ..models.base import AttackTarget, frozen
from .counting import Passes
from .criteria import is_fooled, margin_loss
from .result import AttackResult
from .threat import ThreatModel, ThreatModelError, lp_norm

# Iteration (out of 10,000, rescaled to the budget) after which the window fraction halves again.
_HALVING_ITERATIONS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
L2_INIT_TILES = 25  # the paper's initial 5x5 grid of squares: 25 windows along the signal


def _window_fraction(p_init: float, iteration: int, iterations: int) -> float:
    """The paper's schedule: ``p_init`` halved at fixed fractions of the query budget."""
    rescaled = int(iteration / max(iterations, 1) * 10_000)
    return p_init / 2 ** bisect.bisect_left(_HALVING_ITERATIONS, rescaled)


def _windows(rows: int, length: int, size: int, generator: torch.Generator | None,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A random window of ``size`` samples per row: mask ``[rows, length]`` bool and offsets ``[rows, length]``
    (position within the row's window, valid where the mask is set)."""
    start = torch.randint(0, length - size + 1, (rows, 1), generator=generator).to(device)
    offset = torch.arange(length, device=device)[None, :] - start
    return (offset >= 0) & (offset < size), offset.clamp(0, size - 1)


def _two_bump_profile(size: int, device: torch.device) -> torch.Tensor:
    """``[size]``, unit L2 norm: two peaked bumps of opposite sign (the 1-D pseudo-Gaussian of the paper).

    Each half weights a sample at distance ``d`` from its centre by ``sum_{k>=d} 1/(k+1)^2``:
    nested centred windows, each adding ``1/(k+1)^2``.
    """
    def bump(width: int) -> torch.Tensor:
        radius = width // 2
        tail = (1.0 / torch.arange(1, radius + 2, dtype=torch.float32) ** 2).flip(0).cumsum(0).flip(0)
        distance = (torch.arange(width) - (width - 1) / 2).abs().floor().long().clamp(max=radius)
        return tail[distance]

    half = size // 2
    profile = torch.cat([bump(half), -bump(size - half)])
    return (profile / profile.norm()).to(device)


def _unit_l2(x: torch.Tensor) -> torch.Tensor:
    return x / lp_norm(x, "l2").clamp_min(1e-12)[:, None]


def _linf_proposal(delta: torch.Tensor, eps: torch.Tensor, p: float, project: Callable[..., torch.Tensor],
                   generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Set a random window of ``delta`` ``[n, N]`` to ``±ε`` (one sign per window), projected.

    Where that leaves the window as it was, the opposite sign is used, so that no query is spent
    on an unchanged input.
    """
    n, length = delta.shape
    size = min(max(int(round(p * length)), 1), length - 1) if length > 1 else 1
    window, _ = _windows(n, length, size, generator, device)
    sign = torch.randint(0, 2, (n, 1), generator=generator).to(device) * 2 - 1
    proposal = project(torch.where(window, sign * eps[:, None], delta))
    unchanged = ((proposal - delta).abs() <= 1e-7).all(dim=1)
    if unchanged.any():
        flipped = project(torch.where(window, -sign * eps[:, None], delta))
        proposal = torch.where(unchanged[:, None], flipped, proposal)
    return proposal


def _l2_proposal(delta: torch.Tensor, eps: torch.Tensor, p: float, project: Callable[..., torch.Tensor],
                 generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Move L2 mass into a random window of ``delta`` ``[n, N]`` (the paper's L2 update, in 1-D).

    Window 1 gets a two-bump profile of random sign plus its own current direction; window 2 is
    emptied; window 1's new norm takes window 2's mass and the unused budget, and the whole
    perturbation is rescaled to ``ε`` before projection.
    """
    n, length = delta.shape
    size = min(max(int(round(p * length)), 3), length)
    if size % 2 == 0 and size < length:  # odd, as in the paper: the two halves differ by one sample
        size += 1
    window1, offset1 = _windows(n, length, size, generator, device)
    window2, _ = _windows(n, length, size, generator, device)
    sign = torch.randint(0, 2, (n, 1), generator=generator).to(device) * 2 - 1
    in_window1 = delta * window1
    new_window = (sign * _two_bump_profile(size, device)[offset1] + _unit_l2(in_window1)) * window1
    budget = (eps**2 - lp_norm(delta, "l2") ** 2).clamp_min(0) + lp_norm(delta * (window1 | window2), "l2") ** 2
    new_window = _unit_l2(new_window) * budget.sqrt()[:, None]
    proposal = delta * ~(window1 | window2) + new_window
    return project(_unit_l2(proposal) * eps[:, None])


def _initial_perturbation(clean: torch.Tensor, eps: torch.Tensor, norm: str, generator: torch.Generator | None,
                          device: torch.device) -> torch.Tensor:
    """L∞: ``±ε`` with a random sign per sample (the paper's vertical stripes, one sample wide in 1-D).
    L2: 25 consecutive windows, each a two-bump profile of random sign, scaled to norm ``ε``."""
    n, length = clean.shape
    signs = torch.randint(0, 2, (n, length), generator=generator).to(device) * 2.0 - 1
    if norm == "linf":
        return signs * eps[:, None]
    tile = max(length // L2_INIT_TILES, 2)
    tiles = -(-length // tile)
    profile = _two_bump_profile(tile, device).repeat(tiles)[:length]
    tile_sign = signs[:, ::tile][:, :tiles].repeat_interleave(tile, dim=1)[:, :length]
    return _unit_l2(profile * tile_sign) * eps[:, None]


def square_attack(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, *,
                  queries: int, p_init: float = 0.05, generator: torch.Generator | None = None,
                  targeted: bool = False, eps: torch.Tensor | None = None, video: torch.Tensor | None = None,
                  clean_logits: torch.Tensor | None = None) -> AttackResult:
    """Square Attack (Andriushchenko et al. 2020), score-based, for L∞ and L2, on 1-D signals.

    Random search over the vertices of the ε-ball: each iteration changes one contiguous window
    of samples (L∞: sets it to ``±ε``; L2: moves mass into it from a second window) and keeps the
    change if the margin (:func:`margin_loss` on logits) drops. The window covers a fraction
    ``p`` of the signal, ``p_init`` halved at the paper's fractions of the budget (L∞: at least 1
    sample; L2: at least 3, odd). Clips leave the batch as soon as :func:`is_fooled` holds. Only
    logits are used, so the model may be a :class:`QueryCounter` or an :class:`OnnxClassifier`. In
    the feature domain the windows run along the flattened features.

    Args:
        model: a :class:`~robustaudio.models.Classifier` (gradients are not needed).
        audio: waveforms ``[B, T]`` in the model's bounds.
        labels: ``[B]`` class indices, or ``[B, K]`` 0/1 for multi-label; the targets if ``targeted``.
        threat: norm ``"linf"`` or ``"l2"``; ε in that norm, in the threat's domain (sample units
            for waveforms); its projection (ball, bounds, mask) is applied to every proposal.
        queries: most model queries per clip, the clean query (unless ``clean_logits`` is given)
            and the initial perturbation's included.
        p_init: initial fraction of the samples a window covers.
        generator: torch random generator (reproducibility).
        eps: optional per-sample budget ``[B]`` overriding ``threat.budget``.
        clean_logits: ``[B, K]`` logits of the clean clips, if the caller has them (saves a query).

    Returns:
        :class:`AttackResult`; ``forwards`` ``[B]`` are the queries per clip, ``backwards`` zero.
    """
    if threat.norm not in ("linf", "l2"):
        raise ThreatModelError(f"square_attack supports linf and l2, not {threat.norm}: use pgd for l1.")
    if queries < 1 or not 0 < p_init <= 1:
        raise ValueError(f"queries must be >= 1 and 0 < p_init <= 1, got queries={queries}, p_init={p_init}.")
    with frozen(model), torch.no_grad():
        clean, logits_fn = threat.view(model, audio, video)
        clean = clean.detach()
        shape, device = clean.shape, clean.device
        batch = shape[0]
        eps = threat.budget(clean) if eps is None else eps.to(device).float()
        passes = Passes(logits_fn, batch, device)
        forwards = passes.forwards
        if clean_logits is None:
            logits = passes.logits(clean)
        else:
            logits = clean_logits.detach().clone()
        success = is_fooled(model, logits, labels, targeted)
        best = clean.clone()
        active = torch.nonzero(~success & (eps > 0)).flatten()
        iterations = queries - int(forwards.max()) - 1  # after the initial perturbation's query
        if active.numel() == 0 or iterations < 0:
            return AttackResult(best, clean, success, logits, budget=eps, forwards=forwards,
                                backwards=torch.zeros_like(forwards))

        flat_clean = clean.reshape(batch, -1)

        def project(delta: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return threat.project(delta.reshape(-1, *shape[1:]), clean[rows], eps[rows]).reshape(delta.shape)

        def query(delta: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = threat.apply(clean[rows], delta.reshape(-1, *shape[1:]))
            return x, passes.logits(x, rows)

        delta = project(_initial_perturbation(flat_clean[active], eps[active], threat.norm, generator, device),
                        active)
        x, out = query(delta, active)
        best[active], logits[active] = x, out
        best_margin = margin_loss(model, out, labels[active], targeted)
        fooled = is_fooled(model, out, labels[active], targeted)
        propose = _linf_proposal if threat.norm == "linf" else _l2_proposal
        for iteration in range(iterations):
            success[active[fooled]] = True
            keep = ~fooled
            if not keep.any():
                break
            active, delta, best_margin = active[keep], delta[keep], best_margin[keep]
            p = _window_fraction(p_init, iteration, iterations)
            candidate = propose(delta, eps[active], p, lambda d, rows=active: project(d, rows), generator, device)
            x, out = query(candidate, active)
            margin = margin_loss(model, out, labels[active], targeted)
            fooled = is_fooled(model, out, labels[active], targeted)
            improved = fooled | (margin < best_margin)
            rows = active[improved]
            best[rows], logits[rows] = x[improved], out[improved]
            delta = torch.where(improved[:, None], candidate, delta)
            best_margin = torch.where(improved, margin, best_margin)
        success[active[fooled]] = True
    return AttackResult(adversarial=best, clean=clean, success=success, logits=logits, budget=eps,
                        forwards=forwards, backwards=torch.zeros_like(forwards))
