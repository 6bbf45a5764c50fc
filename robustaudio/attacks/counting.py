"""Pass counting: per-clip forward and backward passes made through a model.

* :class:`Passes` is how robustaudio's own attacks count: they call the logits function and take
  gradients through it, and it adds one pass per clip of the rows involved. Attacks stay plain loops.
* :class:`PassCounter` wraps a model and counts, per clip, the forward and backward passes made
  through it (the library backends use it to fill ``AttackResult.forwards``/``backwards``).
* :class:`QueryCounter` is a :class:`PassCounter` that runs under ``torch.no_grad()`` and refuses
  gradients: what a black-box attacker sees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..models.base import NO_GRADIENTS, GradientUnavailableError, refuse_gradients


class PassCounter(nn.Module):
    """Wraps a model; counts the forward and backward passes each clip of a batch took part in.

    Libraries call the model with batches of their own making (subsets of the clips, many noisy
    copies of one clip, ...), so rows are attributed to clips: a call with exactly one row per
    clip counts one pass for each clip, in order (how foolbox and batched gradient attacks call
    it); any other row goes to the clip of ``reference`` it is nearest to in L2. That is exact
    whenever such rows lie closer to their own clip than to any other (e.g. iterates inside the
    ε-balls of clips more than 2ε apart), and a guess for rows far from all clips (random-noise
    starts of decision-based attacks) or for a call of B rows that are not one per clip (ART's
    HopSkipJump estimating one clip's gradient from exactly B queries). ``total_forwards`` and
    ``total_backwards`` (rows) are always exact.

    Args:
        model: the module to call, ``[n, ...] -> [n, K]`` (extra positional arguments pass through).
        reference: ``[B, ...]`` the clean inputs, in the same domain as the rows the model gets;
            ``None`` counts totals only (``forwards``/``backwards`` stay empty).

    Attributes:
        forwards: ``[B]`` long, forward passes per clip.
        backwards: ``[B]`` long, backward passes per clip.
        total_forwards: rows forwarded, all clips together.
        total_backwards: rows backpropagated, all clips together.
        counting: set False to leave library set-up calls (e.g. a probe on a dummy input) uncounted.
    """

    model: Any  # the wrapped classifier (nn.Module attribute lookups are typed Tensor | Module)

    def __init__(self, model: nn.Module, reference: torch.Tensor | None = None):
        super().__init__()
        self.model = model
        self.counting = True
        self.track(reference)

    def track(self, reference: torch.Tensor | None) -> None:
        """Start counting afresh for the clips ``reference`` ``[B, ...]``."""
        self.reference = None if reference is None else reference.detach().reshape(reference.shape[0], -1)
        batch = 0 if reference is None else reference.shape[0]
        self.forwards = torch.zeros(batch, dtype=torch.long)
        self.backwards = torch.zeros(batch, dtype=torch.long)
        self.total_forwards = 0
        self.total_backwards = 0

    def attribute(self, rows: torch.Tensor) -> torch.Tensor | None:
        """``[n]`` index of the reference clip each row of ``rows`` ``[n, ...]`` is counted for."""
        if self.reference is None:
            return None
        if rows.shape[0] == self.reference.shape[0]:
            return torch.arange(rows.shape[0])
        flat = rows.detach().reshape(rows.shape[0], -1).to(self.reference)
        return torch.cdist(flat, self.reference).argmin(dim=1).cpu()

    def _count(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if not self.counting:
            return out
        index = self.attribute(x)
        self.total_forwards += x.shape[0]
        if index is not None:
            self.forwards.index_add_(0, index, torch.ones_like(index))
        if out.requires_grad:
            def count_backward(grad: torch.Tensor) -> None:
                self.total_backwards += x.shape[0]
                if index is not None:
                    self.backwards.index_add_(0, index, torch.ones_like(index))
            out.register_hook(count_backward)
        return out

    def forward(self, x: torch.Tensor, *args: torch.Tensor | None) -> torch.Tensor:
        return self._count(x, self.model(x, *args))

    def forward_features(self, features: torch.Tensor, *args: torch.Tensor | None) -> torch.Tensor:
        """Counted like :meth:`forward`; the rows are then features (feature-domain attacks)."""
        return self._count(features, self.model.forward_features(features, *args))

    def __getattr__(self, name: str) -> Any:
        # Classifier attributes (multilabel, predict, bounds, features, ...) come from the wrapped model.
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("model"), name)


class QueryCounter(PassCounter):
    """A model as a black-box attacker sees it: queries only, counted per clip.

    Runs the wrapped model under ``torch.no_grad()`` and raises :class:`GradientUnavailableError`
    when an input gradient is asked for. ``counts`` ``[B]`` are the queries per clip of
    ``reference`` (see :class:`PassCounter` for how rows are attributed), ``total`` all queries.
    Pass it wherever a model goes: attributes such as ``multilabel`` and ``predict`` are the
    wrapped model's.
    """

    @property
    def counts(self) -> torch.Tensor:
        return self.forwards

    @property
    def total(self) -> int:
        return self.total_forwards

    def forward(self, x: torch.Tensor, *args: torch.Tensor | None) -> torch.Tensor:
        refuse_gradients(x, type(self.model).__name__)
        with torch.no_grad():
            return super().forward(x, *args)

    def forward_features(self, features: torch.Tensor, *args: torch.Tensor | None) -> torch.Tensor:
        refuse_gradients(features, type(self.model).__name__)
        with torch.no_grad():
            return super().forward_features(features, *args)


class Passes:
    """Per-clip forward and backward passes of one attack on a batch of ``B`` clips.

    ``logits(x, rows)`` runs ``logits_fn(x, rows)`` (``rows``: the batch indices of the rows of ``x``;
    ``None`` for the whole batch) and counts one forward for each of those clips; ``gradient(loss, x,
    rows)`` takes ``d loss / d x`` and counts one backward for each clip in ``rows`` (the clips whose
    loss was backpropagated). ``forwards`` / ``backwards``: ``[B]`` long, on the batch's device.
    """

    def __init__(self, logits_fn: Callable[..., torch.Tensor], batch: int, device: torch.device | str):
        self.logits_fn = logits_fn
        self.forwards = torch.zeros(batch, dtype=torch.long, device=device)
        self.backwards = torch.zeros_like(self.forwards)

    def logits(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        self.forwards[slice(None) if rows is None else rows] += 1
        return self.logits_fn(x, rows)

    def gradient(self, loss: torch.Tensor, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if not loss.requires_grad:  # the model detaches its input somewhere (numpy, .item(), a non-torch library)
            raise GradientUnavailableError(f"the model's output does not depend on its input through torch operations, "
                                           f"so it gives no gradient: {NO_GRADIENTS}")
        grad, = torch.autograd.grad(loss, x)
        self.backwards[rows] += 1
        return grad
