"""Models without gradients: query counting, an ONNX classifier and a native Square Attack.

* :class:`PassCounter` wraps a model and counts, per clip, the forward and backward passes made
  through it (the library backends use it to fill ``AttackResult.forwards``/``backwards``).
* :class:`QueryCounter` is a :class:`PassCounter` that runs under ``torch.no_grad()`` and refuses
  gradients: what a black-box attacker sees.
* :class:`OnnxClassifier` is a :class:`~robustaudio.models.Classifier` around an onnxruntime
  session: forward only, no gradients, no internal stages.
* :func:`square_attack` is the score-based Square Attack (Andriushchenko et al. 2020) for L∞ and L2,
  adapted to 1-D signals: contiguous windows of samples replace the paper's squares of pixels.
"""

from __future__ import annotations

import bisect
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models.base import WholeModel, frozen
from ..models.registry import ModelError
from .criteria import is_fooled
from .pgd import AttackResult
from .threat import ThreatModel, ThreatModelError, lp_norm

NO_GRADIENTS = "this model gives no gradients: use a black-box attack, e.g. --attack square"


class GradientUnavailableError(RuntimeError):
    """A gradient was asked of a model that only answers queries."""


def refuse_gradients(x: torch.Tensor, model_name: str) -> None:
    """Raise :class:`GradientUnavailableError` if an input gradient is being asked for."""
    if torch.is_grad_enabled() and x.requires_grad:
        raise GradientUnavailableError(f"{model_name}: {NO_GRADIENTS}.")


# -- counting ----------------------------------------------------------------------------------

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

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        return self._count(x, self.model(x, *args))

    def forward_features(self, features: torch.Tensor, *args) -> torch.Tensor:
        """Counted like :meth:`forward`; the rows are then features (feature-domain attacks)."""
        return self._count(features, self.model.forward_features(features, *args))

    def __getattr__(self, name: str):
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

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        refuse_gradients(x, type(self.model).__name__)
        with torch.no_grad():
            return super().forward(x, *args)

    def forward_features(self, features: torch.Tensor, *args) -> torch.Tensor:
        refuse_gradients(features, type(self.model).__name__)
        with torch.no_grad():
            return super().forward_features(features, *args)


# -- ONNX --------------------------------------------------------------------------------------

def _onnxruntime_errors() -> tuple[type[BaseException], ...]:
    """The exceptions onnxruntime raises for files it cannot load (they derive from Exception only)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NotImplemented",
             "RuntimeException", "NoModel", "EPFail")
    return tuple(getattr(state, name) for name in names if hasattr(state, name)) + (RuntimeError, ValueError)


def _parse_labels(text: str) -> tuple[str, ...]:
    """Labels from ONNX metadata: a JSON list or comma-separated names."""
    try:
        parsed = json.loads(text)
        if isinstance(parsed, list):
            return tuple(str(label) for label in parsed)
    except json.JSONDecodeError:
        pass
    return tuple(label.strip() for label in text.split(",") if label.strip())


class OnnxClassifier(WholeModel):
    """A robustaudio :class:`Classifier` around an ONNX file, run by onnxruntime on the CPU.

    Input: waveform ``[B, T]`` float32 in [-1, 1] at ``sample_rate`` Hz; output: logits ``[B, K]``.
    Forward only: there are no gradients (gradient attacks raise :class:`GradientUnavailableError`
    and name the black-box alternative), and the internal stages are not exposed, so
    ``features`` is the identity on the waveform and ``embeddings``/``head`` raise (feature-domain
    attacks and latent metrics need a torch model).

    Settings not given by the caller are read from the file's ``metadata_props``, keys ``labels``
    (JSON list or comma-separated), ``sample_rate``, ``multilabel`` (true/false), ``clip_seconds``;
    labels otherwise default to ``class0..``, sized by the model's output, and ``clip_seconds`` to
    the input's fixed length if it has one.

    Args:
        path: the ``.onnx`` file.
        providers: onnxruntime execution providers (default CPU).
    """

    def __init__(self, path: str | Path, *, labels: list[str] | tuple[str, ...] | None = None,
                 sample_rate: int | None = None, multilabel: bool | None = None,
                 clip_seconds: float | None = None, providers: list[str] | None = None):
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"ONNX model file {self.path} does not exist: check the path, or export a torch "
                             f"model with torch.onnx.export(model, example_audio, '{self.path}').")
        try:
            import onnxruntime
        except ImportError as error:
            raise ModelError(f"Loading {self.path} needs onnxruntime: pip install onnxruntime.") from error
        try:
            self.session = onnxruntime.InferenceSession(str(self.path),
                                                        providers=providers or ["CPUExecutionProvider"])
        except _onnxruntime_errors() as error:
            raise ModelError(f"ONNX model file {self.path} could not be loaded ({type(error).__name__}: "
                             f"{str(error).strip()[:300]}). Is it an .onnx file? Re-export it with "
                             f"torch.onnx.export, and check it with onnx.checker.check_model.") from error
        metadata = self.session.get_modelmeta().custom_metadata_map
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.fixed_batch = model_input.shape[0] if isinstance(model_input.shape[0], int) else None
        self.fixed_length = (model_input.shape[-1] if len(model_input.shape) >= 2
                             and isinstance(model_input.shape[-1], int) else None)

        self.sample_rate = int(sample_rate if sample_rate is not None else metadata.get("sample_rate", 16000))
        self.multilabel = bool(multilabel if multilabel is not None
                               else metadata.get("multilabel", "false").strip().lower() in ("1", "true", "yes"))
        if clip_seconds is None:
            clip_seconds = (float(metadata["clip_seconds"]) if "clip_seconds" in metadata
                            else self.fixed_length / self.sample_rate if self.fixed_length else 1.0)
        self.clip_seconds = float(clip_seconds)
        if labels is None and "labels" in metadata:
            labels = _parse_labels(metadata["labels"])
        if labels is None:
            classes = self.session.get_outputs()[0].shape[-1]
            if not isinstance(classes, int):
                with torch.no_grad():
                    classes = self.forward(torch.zeros(1, self.clip_samples)).shape[-1]
            labels = [f"class{k}" for k in range(classes)]
        self.labels = tuple(labels)

    def _run(self, audio: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: audio})[0]

    def forward(self, audio: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        refuse_gradients(audio, f"OnnxClassifier({self.path.name})")
        if video is not None:
            raise ModelError(f"{self.path}: OnnxClassifier takes audio only.")
        if self.fixed_length is not None and audio.shape[-1] != self.fixed_length:
            raise ModelError(f"{self.path} expects clips of {self.fixed_length} samples, got {audio.shape[-1]}: "
                             f"crop or pad the audio to {self.clip_seconds:g} s.")
        batch = audio.detach().cpu().numpy().astype(np.float32, copy=False)
        if self.fixed_batch is None or self.fixed_batch == batch.shape[0]:
            logits = self._run(batch)
        elif self.fixed_batch == 1:  # exported with a fixed batch of one: run clip by clip
            logits = np.concatenate([self._run(batch[i:i + 1]) for i in range(batch.shape[0])])
        else:
            raise ModelError(f"{self.path} was exported with a fixed batch of {self.fixed_batch}, got "
                             f"{batch.shape[0]}: re-export with dynamic_axes={{'{self.input_name}': {{0: 'batch'}}}}.")
        return torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)).to(audio.device)

    stage_hint = ("only forward(audio) is available: attack the waveform domain, or load the torch model "
                  "for feature-domain attacks and latent metrics")

    def describe_source(self) -> str:
        return f"OnnxClassifier({self.path.name})"

    def forward_features(self, features: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward(features, video)


# -- Square Attack -----------------------------------------------------------------------------

# Iteration (out of 10,000, rescaled to the budget) after which the window fraction halves again.
_HALVING_ITERATIONS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
L2_INIT_TILES = 25  # the paper's initial 5x5 grid of squares: 25 windows along the signal


def margin_loss(model, logits: torch.Tensor, labels: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """``[B]`` margin the attack minimises: > 0 while the goal is not reached, < 0 once it is.

    Single-label: ``z_label - max_{k≠label} z_k`` (untargeted) or ``max_{k≠target} z_k - z_target``.
    Multi-label, on logits shifted by the decision threshold's logit ``t``: untargeted
    ("deactivate"), the largest ``z_k - t`` over the true labels; targeted, the largest violation
    ``±(t - z_k)`` over all labels (on for targets, off for the rest).
    """
    if model.multilabel:
        shifted = logits - math.log(model.threshold / (1 - model.threshold))
        if targeted:
            sign = 2 * (labels > 0.5).to(logits.dtype) - 1
            return (-sign * shifted).amax(dim=-1)
        return shifted.masked_fill(labels <= 0.5, -torch.inf).amax(dim=-1)
    own = logits.gather(1, labels[:, None]).squeeze(1)
    best_other = logits.scatter(1, labels[:, None], -torch.inf).amax(dim=1)
    return best_other - own if targeted else own - best_other


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


def _linf_proposal(delta: torch.Tensor, eps: torch.Tensor, p: float, project, generator, device) -> torch.Tensor:
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


def _l2_proposal(delta: torch.Tensor, eps: torch.Tensor, p: float, project, generator, device) -> torch.Tensor:
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


def _initial_perturbation(clean: torch.Tensor, eps: torch.Tensor, norm: str, generator, device) -> torch.Tensor:
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


def square_attack(model, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, *,
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
        forwards = torch.zeros(batch, dtype=torch.long, device=device)
        if clean_logits is None:
            logits = logits_fn(clean, None)
            forwards += 1
        else:
            logits = clean_logits.detach().clone()
        success = is_fooled(model, logits, labels, targeted)
        best = clean.clone()
        active = torch.nonzero(~success & (eps > 0)).flatten()
        iterations = queries - int(forwards.max()) - 1  # after the initial perturbation's query
        if active.numel() == 0 or iterations < 0:
            return AttackResult(best, clean, success, logits, eps, forwards, torch.zeros_like(forwards))

        flat_clean = clean.reshape(batch, -1)

        def project(delta: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return threat.project(delta.reshape(-1, *shape[1:]), clean[rows], eps[rows]).reshape(delta.shape)

        def query(delta: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = threat.apply(clean[rows], delta.reshape(-1, *shape[1:]))
            forwards[rows] += 1
            return x, logits_fn(x, rows)

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
            candidate = propose(delta, eps[active], p, lambda d: project(d, active), generator, device)
            x, out = query(candidate, active)
            margin = margin_loss(model, out, labels[active], targeted)
            fooled = is_fooled(model, out, labels[active], targeted)
            improved = fooled | (margin < best_margin)
            rows = active[improved]
            best[rows], logits[rows] = x[improved], out[improved]
            delta = torch.where(improved[:, None], candidate, delta)
            best_margin = torch.where(improved, margin, best_margin)
        success[active[fooled]] = True
    return AttackResult(adversarial=best, clean=clean, success=success, logits=logits, eps=eps,
                        forwards=forwards, backwards=torch.zeros_like(forwards))
