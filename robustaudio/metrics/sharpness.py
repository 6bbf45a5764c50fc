"""Sharpness of the training loss in weight space: m-sharpness (SAM) and adaptive sharpness (ASAM).

Thesis ch. 12 compares noise and adversarial robustness with the flatness of the minimum; the
spec (``robustness_methods.md`` §4) marks this measurement as our re-implementation **[ours]**
of two published definitions:

m-sharpness **[paper: Foret et al. 2021, SAM]**: the data are split into batches ``B`` of ``m``
clips, and for each ``S_B = max_{‖ε‖₂ ≤ ρ} L_B(w + ε) − L_B(w)``, solved to first order by one
ascent step ``ε* = ρ · g / ‖g‖₂`` with ``g = ∇_w L_B(w)``; m-sharpness is the mean of ``S_B``
over the batches. To first order ``S_B ≈ ρ ‖g‖₂``. ``ε`` spans all floating-point parameters
concatenated **[ours]**; ``ρ`` is in weight-space L2 units (the units of the weights).

Adaptive sharpness **[paper: Kwon et al. 2021, ASAM]**: the ball is rescaled elementwise by the
weights, ``max_{‖T_w⁻¹ ε‖₂ ≤ ρ}`` with ``T_w = diag(|w| + η)``, whose first-order solution is
``ε* = ρ · T_w² g / ‖T_w g‖₂`` (``S_B ≈ ρ ‖T_w g‖₂``). ``ρ`` is then relative: the root-sum-square
of the per-weight relative changes ``ε_i / (|w_i| + η)``. With ``η = 0`` the value does not change
under rescalings that leave the network function unchanged (e.g. ``α·W₁``, ``W₂/α`` around a
ReLU), unlike m-sharpness; ``η > 0`` keeps zero weights (fresh biases) perturbable **[ours:
default η = 0.01]**.

**[ours]** ``steps > 1`` takes further normalised ascent steps of length ``ρ`` in the scaled
coordinates ``u = T_w⁻¹ ε`` (``T_w`` fixed at the clean weights), each projected back onto the
ball ``‖u‖₂ ≤ ρ``, and keeps the largest loss seen; ``steps = 1`` is exactly the one-step
estimate above. The batch values are averaged weighted by batch size (equal weights unless the
last batch is short). The loss is the training loss, mean cross-entropy (single-label) or mean
binary cross-entropy over clips and classes (multi-label), in nats; the model is evaluated in eval
mode (no dropout, BatchNorm running statistics used and not updated), and its weights and
buffers are copied back bit for bit afterwards, also when an error interrupts the measurement.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import cast

import torch
import torch.nn.functional as F

from ..models.base import Classifier
from .latent import model_device, unpack_batch

DEFAULT_RHO = {False: 0.05, True: 0.5}  # [ours] SAM-like absolute radius; ASAM-like relative radius


def training_loss(model: Classifier, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Scalar mean training loss in nats: CE over labels ``[B]`` or BCE over 0/1 labels ``[B, K]``."""
    if model.multilabel:
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    return F.cross_entropy(logits, labels.long())


@contextmanager
def perturbable(model: torch.nn.Module) -> Iterator[list[torch.nn.Parameter]]:
    """Yield the model's floating-point parameters with gradients on, the model in eval mode.

    On exit, however it happens, every parameter and buffer is copied back from a snapshot taken
    on entry (bitwise: no ``w + ε − ε`` rounding), and the mode and ``requires_grad`` flags are
    restored. Gradients are taken with ``torch.autograd.grad``, so ``.grad`` is never touched.
    """
    tensors = [*model.parameters(), *model.buffers()]
    snapshot = [t.detach().clone() for t in tensors]
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    try:
        model.eval()
        params = [p for p in model.parameters() if p.is_floating_point()]
        for p in params:
            p.requires_grad_(True)
        yield params
    finally:
        with torch.no_grad():
            for tensor, saved in zip(tensors, snapshot):
                tensor.copy_(saved)
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(was_training)


def rebatch(batches: Iterable, m: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """``(audio, labels, video)`` chunks of exactly ``m`` clips (the last may be short) across the
    incoming batches; ``m = None`` keeps the incoming batches. Empty batches are skipped."""
    pending: list[tuple] = []
    for batch in batches:
        audio, labels, video = unpack_batch(batch)
        if len(audio) == 0:
            continue
        if m is None:
            yield audio, labels, video
            continue
        pending.append((audio, labels, video))
        while sum(len(part[0]) for part in pending) >= m:
            joined = _join(pending)
            yield cast(tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
                       tuple(None if x is None else x[:m] for x in joined))
            rest: tuple = tuple(None if x is None else x[m:] for x in joined)
            pending = [rest] if len(rest[0]) else []
    if pending:
        yield _join(pending)


def _join(parts: list[tuple]) -> tuple:
    """Concatenate ``(audio, labels, video)`` parts component-wise (video None if any part lacks it)."""
    return tuple(None if any(part[n] is None for part in parts) else torch.cat([part[n] for part in parts])
                 for n in range(3))


def _ascend(u: list[torch.Tensor], grads: list[torch.Tensor], scale: list[torch.Tensor] | None,
            rho: float) -> list[torch.Tensor]:
    """One normalised step of length ρ along ``T g`` in ``u = T⁻¹ ε`` coordinates, projected on ``‖u‖₂ ≤ ρ``."""
    direction = grads if scale is None else [t * g for t, g in zip(scale, grads)]
    norm = torch.sqrt(cast(torch.Tensor, sum((d.double() ** 2).sum() for d in direction))).clamp_min(1e-30)
    u = [x + rho * d / norm.to(d.dtype) for x, d in zip(u, direction)]
    length = torch.sqrt(cast(torch.Tensor, sum((x.double() ** 2).sum() for x in u)))
    shrink = min(1.0, rho / float(length)) if length > 0 else 1.0
    return [x * shrink for x in u]


def batch_sharpness(model: Classifier, params: list[torch.nn.Parameter], audio: torch.Tensor, labels: torch.Tensor,
                    video: torch.Tensor | None, rho: float, adaptive: bool, eta: float,
                    steps: int) -> tuple[float, float]:
    """``(L_B(w), max L_B(w + ε))`` for one batch, in nats; the parameters are left as found (bitwise)."""
    origin = [p.detach().clone() for p in params]
    scale = [w.abs() + eta for w in origin] if adaptive else None
    u = [torch.zeros_like(w) for w in origin]
    clean, worst = float("nan"), -float("inf")
    try:
        for step in range(steps):
            loss = training_loss(model, model(audio, video), labels)
            if step == 0:
                clean = float(loss.detach())
            else:
                worst = max(worst, float(loss.detach()))
            raw_grads = torch.autograd.grad(loss, params, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, raw_grads)]  # unused branch
            u = _ascend(u, grads, scale, rho)
            with torch.no_grad():
                for p, w, x, t in zip(params, origin, u,
                                      cast(list[torch.Tensor | None], scale) or [None] * len(params)):
                    p.copy_(w + (x if t is None else t * x))
        with torch.no_grad():
            worst = max(worst, float(training_loss(model, model(audio, video), labels)))
    finally:
        with torch.no_grad():
            for p, w in zip(params, origin):
                p.copy_(w)
    return clean, worst


def sharpness(model: Classifier, batches: Iterable, *, rho: float | None = None, m: int | None = None,
              adaptive: bool = False, eta: float = 0.01, steps: int = 1,
              device: str | torch.device | None = None) -> dict:
    """m-sharpness (``adaptive=False``) or adaptive sharpness (``adaptive=True``) over a dataset.

    Args:
        model: a Classifier; its weights, buffers, mode and flags are restored exactly afterwards.
        batches: data ``Batch`` objects or tuples ``(audio [B, T], labels[, video])``.
        rho: ball radius; weight-space L2 units (m-sharpness) or relative (adaptive). ``None``:
            0.05 or 0.5 respectively **[ours]**.
        m: clips per ascent batch (the incoming batches are re-split); ``None``: as they come.
        adaptive: scale the ball elementwise by ``|w| + eta`` (ASAM).
        eta: ASAM's offset for zero weights; steps: ascent steps per batch (1 = SAM's estimate).
        device: where the batches are moved (``None``: where the model is; the model is not moved).
    Returns:
        A dict: ``sharpness`` (mean S_B, nats), ``loss`` (mean L_B(w)), ``perturbed_loss`` (mean
        L_B(w + ε)), ``per_batch`` ([S_B]), the settings ``rho``, ``m``, ``adaptive``, ``eta``,
        ``steps``, ``batches``, and ``n`` (clips).
    """
    rho = DEFAULT_RHO[adaptive] if rho is None else rho
    if rho < 0 or steps < 1:
        raise ValueError(f"Need rho >= 0 and steps >= 1 (got rho={rho}, steps={steps}).")
    device = torch.device(device) if device is not None else model_device(model)
    sizes, clean, perturbed = [], [], []
    with perturbable(model) as params:
        for audio, labels, video in rebatch(batches, m):
            loss, worst = batch_sharpness(model, params, audio.to(device), labels.to(device),
                                          None if video is None else video.to(device), rho, adaptive, eta, steps)
            sizes.append(len(audio))
            clean.append(loss)
            perturbed.append(worst)
    if not sizes:
        raise ValueError("No clips to measure sharpness on: every batch was empty.")
    weights = torch.tensor(sizes, dtype=torch.float64) / sum(sizes)
    clean_t, perturbed_t = torch.tensor(clean, dtype=torch.float64), torch.tensor(perturbed, dtype=torch.float64)
    return {"sharpness": float((weights * (perturbed_t - clean_t)).sum()), "loss": float((weights * clean_t).sum()),
            "perturbed_loss": float((weights * perturbed_t).sum()), "per_batch": (perturbed_t - clean_t).tolist(),
            "rho": rho, "m": m, "adaptive": adaptive, "eta": eta if adaptive else None, "steps": steps,
            "batches": len(sizes), "n": sum(sizes)}
