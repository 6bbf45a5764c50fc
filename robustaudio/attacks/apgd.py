"""Auto-PGD (Croce & Hein 2020) for L∞ and L2, and its L1 variant (Croce & Hein 2021), over tensors.

APGD is PGD without a step size to tune: each clip starts with a large step (2ε; ε for L1), adds
momentum, and at checkpoints halves its own step when progress stalled, restarting from its best
point. The DLR loss is invariant to shifting and scaling the logits, so it does not fade where
cross-entropy saturates. Fooled clips leave the batch at once; the model's parameters are frozen.

L1 (after Croce & Hein 2021, simplified; η₀ = ε, halved by the same rule): a step spends η on the
``k`` coordinates of largest ``|gradient|`` among those that can still move (not at the box edge in the
ascent direction, not masked out), in proportion to the gradient there. Not its sign: equal gains
on ``k`` coordinates are exactly undone by the uniform soft threshold of the L1 projection, so the
mass would stay spread over ``k`` coordinates; proportional gains let the steepest ones win and
reach the sparse optimum. ``k`` starts at 20 % of the free coordinates and at each checkpoint
becomes 2/3 of the support of the clip's best perturbation, so updates get as sparse as the
solution. The projection is ``threat.project`` (exact onto the L1 ball, then clipped into the box):
feasible, but not the paper's exact projection onto ball ∩ box.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..models.base import AttackTarget, frozen
from .counting import Passes
from .criteria import attack_loss, is_fooled, margin_loss
from .result import AttackResult
from .threat import ThreatModel, ascent_direction

L1_START_FRACTION = 0.2  # share of the free coordinates an L1 step moves at first
L1_SHRINK = 1.5  # at a checkpoint, k = support of the best perturbation / this

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits [n, K], rows [n]) -> loss [n]


def dlr_loss(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Difference of Logits Ratio ``[B]``, to ascend; > 0 exactly when top-1 is not the label.

    Untargeted: ``-(z_y - max_{i≠y} z_i) / (z_π1 - z_π3)``; targeted at ``target``:
    ``-(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2)`` (π: logits sorted descending; with 3 classes
    ``z_π3`` stands in for ``z_π4``). Needs at least 3 classes. ``labels`` are the true classes.
    """
    z = logits.float()
    top = z.sort(dim=1, descending=True).values
    own = z.gather(1, labels[:, None]).squeeze(1)
    if target is None:
        other = z.scatter(1, labels[:, None], -torch.inf).amax(dim=1)
        return (other - own) / (top[:, 0] - top[:, 2] + 1e-12)
    fourth = top[:, min(3, z.shape[1] - 1)]
    aim = z.gather(1, target[:, None]).squeeze(1)
    return (aim - own) / (top[:, 0] - (top[:, 2] + fourth) / 2 + 1e-12)


def _checkpoints(steps: int) -> list[int]:
    """Steps ``w_j = ceil(p_j · steps)`` at which step sizes are reconsidered (the paper's p_j)."""
    marks, p, previous = set(), 0.22, 0.0
    while p <= 1:
        marks.add(math.ceil(p * steps - 1e-9))
        p, previous = p + max(p - previous - 0.03, 0.06), p
    return sorted(w for w in marks if 0 < w < steps)


def _support(x: torch.Tensor) -> torch.Tensor:
    return (x.reshape(x.shape[0], -1) != 0).sum(dim=1)


def _l1_step(grad: torch.Tensor, x: torch.Tensor, threat: ThreatModel, k: torch.Tensor) -> torch.Tensor:
    """Unit-L1 ascent direction on the ``k[i]`` largest ``|grad|`` coordinates that may still move."""
    g = grad.reshape(grad.shape[0], -1)
    score = g.abs()
    if threat.bounds is not None:  # a coordinate at the box edge cannot move further that way
        flat = x.reshape(x.shape[0], -1)
        score = score.masked_fill(((g > 0) & (flat >= threat.bounds[1])) | ((g < 0) & (flat <= threat.bounds[0])), 0)
    if threat.mask is not None:
        score = score * threat.mask.to(score).expand(x.shape[1:]).reshape(1, -1)
    top = score.topk(int(k.max()), dim=1).values
    pick = (score >= top.gather(1, (k - 1)[:, None])) & (score > 0)
    direction = g * pick  # not sign(g): see the module docstring
    return (direction / direction.abs().sum(dim=1, keepdim=True).clamp_min(1)).reshape(grad.shape)


class _Book:
    """Per-clip totals over restarts and target runs: the point to return, success and pass counts."""

    def __init__(self, model: AttackTarget, clean: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                 targeted: bool,
                 passes: Passes):
        self.best, self.logits, self.passes = clean.clone(), logits, passes
        self.success = is_fooled(model, logits, labels, targeted)
        self.loss = torch.full((clean.shape[0],), -torch.inf, device=clean.device)

    def record(self, rows: torch.Tensor, x: torch.Tensor, out: torch.Tensor, loss: torch.Tensor,
               fooled: torch.Tensor) -> None:
        # A fooling point beats any other; among points alike the higher loss wins.
        before = self.success[rows]
        better = (fooled & ~before) | ((fooled == before) & (loss > self.loss[rows]))
        if better.any():
            self.best[rows[better]] = x[better]
            self.logits[rows[better]] = out[better].to(self.logits.dtype)  # autocast: bf16 logits
            self.loss[rows[better]] = loss[better]
        self.success[rows[fooled]] = True

    def result(self, clean: torch.Tensor, eps: torch.Tensor) -> AttackResult:
        return AttackResult(adversarial=self.best, clean=clean, success=self.success, logits=self.logits,
                            budget=eps, forwards=self.passes.forwards, backwards=self.passes.backwards)


def _run(model: AttackTarget, threat: ThreatModel, x0: torch.Tensor, logits_fn: Callable[..., torch.Tensor],
         labels: torch.Tensor, targeted: bool, loss_fn: LossFn, book: _Book, rows: torch.Tensor, delta: torch.Tensor,
         eps: torch.Tensor, steps: int, rho: float, momentum: float, early_stop: bool) -> None:
    """One APGD run of ``steps`` steps on the clips ``rows`` (inputs ``x0``, start ``delta``)."""
    marks, last_mark = _checkpoints(steps), 0
    n, l1 = rows.numel(), threat.norm == "l1"
    free = _support(threat.mask.to(x0).expand_as(x0)) if threat.mask is not None else _support(torch.ones_like(x0))
    ninf = torch.full((n,), -torch.inf, device=x0.device)
    s = {"x0": x0, "delta": delta, "prev": delta, "eps": eps, "eta": eps * (1.0 if l1 else 2.0),
         "best": delta, "best_grad": torch.zeros_like(x0), "best_loss": ninf, "last_loss": ninf,
         "mark_loss": ninf, "gains": torch.zeros(n, device=x0.device), "reduced": torch.zeros(n, dtype=torch.bool,
         device=x0.device), "k": (free * L1_START_FRACTION).ceil().long().clamp_min(1), "free": free}
    for step in range(steps + 1):
        x = threat.apply(s["x0"], s["delta"]).requires_grad_(step < steps)
        with torch.enable_grad():
            out = book.passes.logits(x, rows)
            loss = loss_fn(out, rows).float()
        fooled = is_fooled(model, out.detach(), labels[rows], targeted)
        book.record(rows, x.detach(), out.detach(), loss.detach(), fooled)
        if step == steps:
            break
        keep = ~fooled if early_stop else torch.ones_like(fooled)
        if not keep.any():
            break
        grad = book.passes.gradient(loss[keep].sum(), x, rows[keep])
        loss = loss.detach()
        if not keep.all():  # fooled clips leave the batch
            rows, loss, grad = rows[keep], loss[keep], grad[keep]
            s = {name: value[keep] for name, value in s.items()}

        s["gains"] += (loss > s["last_loss"]).float()  # step 0 compares with -inf: not in any window
        up = loss > s["best_loss"]
        for name, value in (("best", s["delta"]), ("best_grad", grad), ("best_loss", loss)):
            s[name] = torch.where(up.view(-1, *[1] * (value.dim() - 1)), value, s[name])
        s["last_loss"] = loss
        if step == 0:
            s["mark_loss"], s["gains"] = loss.clone(), torch.zeros_like(s["gains"])
        elif step in marks:
            # Halve where under rho of the window's steps gained, or where the step was kept at the
            # last checkpoint and the best loss has not risen since; go on from the best point.
            halve = (s["gains"] < rho * (step - last_mark)) | (~s["reduced"] & (s["best_loss"] <= s["mark_loss"]))
            h = halve.view(-1, *[1] * (x0.dim() - 1))
            s["eta"] = torch.where(halve, s["eta"] / 2, s["eta"])
            s["delta"] = s["prev"] = torch.where(h, s["best"], s["delta"])
            grad = torch.where(h, s["best_grad"], grad)
            s["last_loss"] = torch.where(halve, s["best_loss"], loss)
            s["reduced"], s["mark_loss"], s["gains"], last_mark = halve, s["best_loss"], s["gains"] * 0, step
            if l1:
                s["k"] = torch.minimum((_support(s["best"]) / L1_SHRINK).ceil().long(), s["free"]).clamp_min(1)

        if l1:
            direction = _l1_step(grad, threat.apply(s["x0"], s["delta"]), threat, s["k"])
        else:
            direction = ascent_direction(grad, threat.norm)
        eta = s["eta"].view(-1, *[1] * (x0.dim() - 1))
        z = threat.project(s["delta"] + eta * direction, s["x0"], s["eps"])
        if step > 0:  # momentum from the second step on
            z = threat.project(s["delta"] + momentum * (z - s["delta"]) + (1 - momentum) * (s["delta"] - s["prev"]),
                               s["x0"], s["eps"])
        s["prev"], s["delta"] = s["delta"], z.detach()


def _setup(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel,
           eps: torch.Tensor | None, video: torch.Tensor | None, clean_logits: torch.Tensor | None, targeted: bool
           ) -> tuple[torch.Tensor, Callable[..., torch.Tensor], torch.Tensor, _Book]:
    clean, logits_fn = threat.view(model, audio, video)
    clean = clean.detach()
    if clean.dtype in (torch.bfloat16, torch.float16):  # features made under autocast: attack in float32
        clean = clean.float()
    eps = threat.budget(clean) if eps is None else eps.to(clean.device).float()
    passes = Passes(logits_fn, clean.shape[0], clean.device)
    if clean_logits is None:
        with torch.no_grad():
            clean_logits = passes.logits(clean)
    book = _Book(model, clean, clean_logits.detach().clone(), labels, targeted, passes)
    return clean, logits_fn, eps, book


def _start(threat: ThreatModel, clean: torch.Tensor, eps: torch.Tensor, init_delta: torch.Tensor | None,
           generator: torch.Generator | None) -> torch.Tensor:
    if init_delta is not None:
        return threat.project(init_delta.to(clean), clean, eps)
    return threat.random_start(clean, eps, generator)


def apgd(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, *, steps: int = 100,
         restarts: int = 1, loss: str = "ce", targeted: bool = False, target_classes: int = 9, rho: float = 0.75,
         momentum: float = 0.75, eps: torch.Tensor | None = None, video: torch.Tensor | None = None,
         generator: torch.Generator | None = None, early_stop: bool = True,
         clean_logits: torch.Tensor | None = None, init_delta: torch.Tensor | None = None) -> AttackResult:
    """Run APGD on a batch; returns the fooling point of each fooled clip, else its highest-loss point.

    Args:
        model, audio, labels, threat, eps, video, generator, early_stop, clean_logits: as for
            :func:`~robustaudio.attacks.pgd.pgd` (audio ``[B, T]``; labels ``[B]`` or ``[B, K]`` 0/1).
        steps: gradient steps per restart (``steps + 1`` forwards, ``steps`` backwards per clip).
        restarts: random starts (the first from ``init_delta`` if given); fooled clips are not attacked again.
        loss: ``"ce"`` (cross-entropy; multi-label: the "deactivate" BCE of ``attack_loss``) or
            ``"dlr"`` (scale-invariant; multi-label: minus the threshold margin of the true tags,
            ``-max_{k true}(z_k - logit(threshold))``, as DLR needs classes that compete).
        targeted: with ``"ce"``, ``labels`` are the targets to reach. With ``"dlr"``, APGD-T: runs
            :func:`apgd_targeted` with ``target_classes``, ``labels`` being the true classes.
        rho: a clip's step halves at a checkpoint where under this share of the steps since the
            last one raised the loss.
        momentum: the paper's α: ``x ← P(x + α(z − x) + (1 − α)(x − x_prev))``, ``z = P(x + η·dir)``.
        init_delta: warm start ``[B, ...]`` for the first restart, projected onto the threat model.
    """
    if loss == "dlr" and targeted:
        return apgd_targeted(model, audio, labels, threat, steps=steps, target_classes=target_classes,
                             restarts=restarts, rho=rho, momentum=momentum, eps=eps, video=video,
                             generator=generator, early_stop=early_stop, clean_logits=clean_logits,
                             init_delta=init_delta)
    if steps < 0 or restarts < 1 or loss not in ("ce", "dlr"):
        raise ValueError(f"need steps >= 0, restarts >= 1 and loss 'ce' or 'dlr'; got {steps}, {restarts}, {loss!r}.")
    with frozen(model):
        clean, logits_fn, eps, book = _setup(model, audio, labels, threat, eps, video, clean_logits, targeted)
        if loss == "ce":
            def loss_fn(out: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
                return attack_loss(model, out, labels[rows], targeted)
        elif model.multilabel:
            def loss_fn(out: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
                return -margin_loss(model, out.float(), labels[rows])
        else:
            _need_classes(book.logits, 3)
            def loss_fn(out: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
                return dlr_loss(out, labels[rows])
        for restart in range(restarts):
            rows = torch.nonzero(~book.success & (eps > 0)).flatten()
            if rows.numel() == 0:
                break
            start = init_delta[rows] if restart == 0 and init_delta is not None else None
            delta = _start(threat, clean[rows], eps[rows], start, generator)
            _run(model, threat, clean[rows], logits_fn, labels, targeted, loss_fn, book, rows, delta, eps[rows],
                 steps, rho, momentum, early_stop)
    return book.result(clean, eps)


def _need_classes(logits: torch.Tensor, least: int) -> None:
    if logits.shape[1] < least:
        raise ValueError(f"DLR needs at least {least} classes (it normalises by the third-largest logit); this model "
                         f"has {logits.shape[1]}: use loss='ce'.")


def apgd_targeted(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, *,
                  steps: int = 100,
                  target_classes: int = 9, restarts: int = 1, rho: float = 0.75, momentum: float = 0.75,
                  eps: torch.Tensor | None = None, video: torch.Tensor | None = None,
                  generator: torch.Generator | None = None, early_stop: bool = True,
                  clean_logits: torch.Tensor | None = None, init_delta: torch.Tensor | None = None) -> AttackResult:
    """APGD-T: targeted DLR towards each of the ``target_classes`` runner-up classes in turn.

    ``labels`` ``[B]`` are the true classes; run ``r`` targets each clip's ``(r + 2)``-th highest
    clean logit (at most ``K - 1`` runs), on the clips no earlier run has fooled. Success is
    untargeted (top-1 ≠ label). For clips never fooled the highest targeted-DLR point is returned.
    ``init_delta`` seeds the first run only. Multi-label models raise ``ValueError`` (no ranking
    of competing classes): use :func:`apgd` with ``loss="dlr"``, the threshold margin.
    Other arguments as for :func:`apgd`.
    """
    if model.multilabel:
        raise ValueError("apgd_targeted needs a single-label model; for a multi-label one use apgd(loss='dlr'), "
                         "which ascends the threshold margin of the true tags.")
    if steps < 0 or restarts < 1 or target_classes < 1:
        raise ValueError(f"need steps >= 0, restarts >= 1, target_classes >= 1; got {steps}, {restarts}, "
                         f"{target_classes}.")
    with frozen(model):
        clean, logits_fn, eps, book = _setup(model, audio, labels, threat, eps, video, clean_logits, False)
        _need_classes(book.logits, 3)
        order = book.logits.float().scatter(1, labels[:, None], -torch.inf).argsort(dim=1, descending=True)
        for run in range(min(target_classes, book.logits.shape[1] - 1)):
            target = order[:, run]

            def loss_fn(out: torch.Tensor, rows: torch.Tensor, target: torch.Tensor = target) -> torch.Tensor:
                return dlr_loss(out, labels[rows], target[rows])

            for restart in range(restarts):
                rows = torch.nonzero(~book.success & (eps > 0)).flatten()
                if rows.numel() == 0:
                    break
                start = init_delta[rows] if run == restart == 0 and init_delta is not None else None
                delta = _start(threat, clean[rows], eps[rows], start, generator)
                _run(model, threat, clean[rows], logits_fn, labels, False, loss_fn, book, rows, delta, eps[rows],
                     steps, rho, momentum, early_stop)
    return book.result(clean, eps)
