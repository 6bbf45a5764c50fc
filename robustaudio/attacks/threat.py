"""Threat models: the one place that computes norms, budgets, projections and ascent steps.

Shapes: ``delta``, ``clean`` are ``[B, ...]`` (waveform ``[B, T]`` or features ``[B, F, frames]``);
norms are taken over everything but the batch axis; ``eps`` is a per-sample tensor ``[B]``.
Units: in the waveform domain ε is in sample units (full scale = 1); in the feature domain it is
in units of the model's normalised features. A relative budget ``snr_db`` sets
``eps = ||clean||_p * 10**(-snr_db / 20)``, i.e. for L2 the perturbation's SNR is exactly
``snr_db`` dB when the budget is used up (for L∞ it is a peak-to-peak ratio, for L1 an L1 ratio).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..models.base import AttackTarget

NORMS = ("linf", "l2", "l1")
DOMAINS = ("waveform", "feature")
MODALITIES = ("audio", "video")
SNR_DB_RANGE = (-20.0, 100.0)  # outside this a relative budget is a typo, not a threat model
ROUNDOFF = torch.finfo(torch.float32).eps / 2  # float32's unit roundoff u = 2^-24: |fl(a) - a| <= u |a|
AUTO_BOUNDS: tuple[float, float] = (math.nan, math.nan)  # "the domain's box", resolved in ThreatModel


class ThreatModelError(ValueError):
    """An impossible or absurd threat model; the message says what to change."""


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def lp_norm(x: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm ``[B]`` of ``x`` ``[B, ...]``."""
    flat = _flat(x)
    if norm == "linf":
        return flat.abs().amax(dim=1)
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    if norm == "l1":
        return flat.abs().sum(dim=1)
    raise ThreatModelError(f"Unknown norm {norm!r}; use one of {', '.join(NORMS)}.")


def _expand(eps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return eps.reshape(-1, *([1] * (like.dim() - 1)))


def project_l1_ball(delta: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each sample onto the L1 ball of radius ``eps`` (Duchi et al. 2008).

    The soft threshold is found in float64: in float32 the cumulative sums of a point far outside
    the ball (max|d|/ε ~ 1e4 and beyond) lose the digits that separate the threshold from the
    coordinates. A last rescaling absorbs the remaining rounding, so ``||result||_1 <= eps`` holds
    to float32 rounding (~1e-7 relative) whatever the starting point.
    """
    flat = _flat(delta)
    norms = flat.abs().sum(dim=1)
    outside = norms > eps
    if not outside.any():
        return delta
    v = flat[outside].abs().double()
    radius = eps[outside].double().unsqueeze(1)
    sorted_v, _ = v.sort(dim=1, descending=True)
    cumsum = sorted_v.cumsum(dim=1)
    ranks = torch.arange(1, v.shape[1] + 1, device=v.device, dtype=v.dtype)
    # Largest j with sorted_v[j] > (cumsum[j] - eps) / j gives the soft threshold theta.
    condition = sorted_v * ranks > (cumsum - radius)
    rho = condition.to(v.dtype).cumsum(dim=1).argmax(dim=1, keepdim=True)
    theta = ((cumsum.gather(1, rho) - radius) / (rho + 1).to(v.dtype)).clamp_min(0)
    shrunk = (v - theta).clamp_min(0)
    shrunk = shrunk * (radius / shrunk.sum(dim=1, keepdim=True).clamp_min(1e-300)).clamp(max=1.0)
    projected = flat.clone()
    projected[outside] = flat[outside].sign() * shrunk.to(flat.dtype)
    excess = projected.abs().sum(dim=1) / eps.clamp_min(1e-30)  # float32 rounding of the cast back
    projected = projected / excess.clamp_min(1.0).unsqueeze(1)
    return projected.reshape(delta.shape)


def project_lp_ball(delta: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """Project each ``delta[i]`` onto ``{d : ||d||_norm <= eps[i]}``."""
    if norm == "linf":
        bound = _expand(eps, delta)
        return torch.maximum(torch.minimum(delta, bound), -bound)
    if norm == "l2":
        norms = lp_norm(delta, "l2")
        factor = torch.where(norms > eps, eps / norms.clamp_min(1e-30), torch.ones_like(norms))
        return delta * _expand(factor, delta)
    if norm == "l1":
        return project_l1_ball(delta, eps)
    raise ThreatModelError(f"Unknown norm {norm!r}; use one of {', '.join(NORMS)}.")


def ascent_direction(grad: torch.Tensor, norm: str, l1_sparsity: float = 0.99) -> torch.Tensor:
    """Steepest-ascent direction of unit ``norm`` for gradient ``grad`` ``[B, ...]``.

    L∞: ``sign(g)``; L2: ``g / ||g||_2``; L1: the sign of the top ``1 - l1_sparsity`` fraction of
    coordinates by ``|g|``, scaled to unit L1 norm (the sparse step of SLIDE, Tramèr & Boneh 2019).
    """
    if norm == "linf":
        return grad.sign()
    if norm == "l2":
        return grad / _expand(lp_norm(grad, "l2").clamp_min(1e-30), grad)
    if norm == "l1":
        flat = _flat(grad)
        k = max(1, int(round((1 - l1_sparsity) * flat.shape[1])))
        threshold = flat.abs().topk(k, dim=1).values[:, -1:]
        direction = flat.sign() * (flat.abs() >= threshold)
        direction = direction / direction.abs().sum(dim=1, keepdim=True).clamp_min(1)
        return direction.reshape(grad.shape)
    raise ThreatModelError(f"Unknown norm {norm!r}; use one of {', '.join(NORMS)}.")


def input_view(model: AttackTarget, audio: torch.Tensor, where: str, video: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, Callable[..., torch.Tensor]]:
    """The clean input that a perturbation lives in and ``logits_fn(x, index=None)`` from it.

    ``where``: ``"waveform"`` (``[B, T]``), ``"feature"`` (the model's normalised features
    ``[B, F, frames]``), or ``"video"`` (the audio held fixed); ``"waveform+video"`` is viewed as its
    audio. ``index`` selects the rows of the fixed inputs (``video``, or ``audio`` for a video
    view) that go with ``x`` when ``x`` holds a subset of the batch.
    """
    if where == "video":
        if video is None:
            raise ThreatModelError("modality='video' needs the video input; this model or batch has none.")
        return video, lambda x, index=None: model(audio if index is None else audio[index], x)

    def pick(index: torch.Tensor | None) -> torch.Tensor | None:
        return video if video is None or index is None else video[index]

    if where.split("+")[0] == "waveform":
        return audio, lambda x, index=None: model(x, pick(index))
    if where != "feature":
        raise ThreatModelError(f"Unknown domain {where!r}; use one of {', '.join(DOMAINS)} or video.")
    with torch.no_grad():
        feats = model.features(audio)
    return feats, lambda x, index=None: model.forward_features(x, pick(index))




@dataclass(frozen=True)
class ThreatModel:
    """Where and how much an attacker may change the input.

    Args:
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        eps: absolute budget in the domain's units (exactly one of ``eps`` / ``snr_db``).
        snr_db: relative budget, dB below the clean clip's own ``norm`` (see module docstring).
        domain: ``"waveform"`` (perturb samples) or ``"feature"`` (perturb the normalised features).
        bounds: box the perturbed input must stay in; ``None`` = unbounded. The default
            (``AUTO_BOUNDS``) is ``(-1, 1)`` for waveforms (and video, whose callers usually pass their own box) and
            ``None`` in the feature domain, where normalised log-mels lie far outside [-1, 1].
        mask: optional 0/1 tensor broadcastable to one input (``[T]`` or ``[F, frames]``); only
            entries where it is 1 may change (time windows, frequency bands; see ``restrict``).
        band_hz: waveform domain only: ``(low, high)`` Hz; the perturbation is band-passed (FFT
            bins outside zeroed) before the Lp projection. Exact for L2 when the box does not
            bind; for L∞ / L1 the ball and box are enforced exactly and the band approximately.
        sample_rate: Hz of the waveform, needed with ``band_hz``.
        modality: ``"audio"`` or ``"video"`` (multi-modal models): the input that is perturbed;
            the other is held fixed. For video, ``domain`` is ignored and ``bounds`` are the
            video's (e.g. (0, 1) pixels, None for embeddings).
        restriction: short description of the mask (e.g. ``"t=0.2-0.5s"``) for names and reports.
    """

    norm: str
    eps: float | None = None
    snr_db: float | None = None
    domain: str = "waveform"
    bounds: tuple[float, float] | None = AUTO_BOUNDS
    mask: torch.Tensor | None = field(default=None, compare=False, repr=False)
    band_hz: tuple[float, float] | None = None
    sample_rate: int | None = None
    modality: str = "audio"
    restriction: str | None = None

    def __post_init__(self) -> None:
        if self.bounds is AUTO_BOUNDS:  # the box of the domain: samples in [-1, 1]; features unbounded
            auto = None if self.domain == "feature" and self.modality == "audio" else (-1.0, 1.0)
            object.__setattr__(self, "bounds", auto)
        elif self.bounds is not None:
            object.__setattr__(self, "bounds", (float(self.bounds[0]), float(self.bounds[1])))
        if self.modality not in MODALITIES:
            raise ThreatModelError(f"Unknown modality {self.modality!r}; use one of {', '.join(MODALITIES)}.")
        if self.band_hz is not None:
            if self.domain != "waveform" or self.modality != "audio":
                raise ThreatModelError("band_hz restricts waveform perturbations; in the feature domain "
                                       "use a mask on the mel bins (restrict.band_mask).")
            if self.sample_rate is None or not 0 <= self.band_hz[0] < self.band_hz[1] <= self.sample_rate / 2:
                raise ThreatModelError(f"band_hz={self.band_hz} needs the sample_rate and 0 <= LOW < HIGH <= "
                                       f"Nyquist.")
        if self.norm not in NORMS:
            raise ThreatModelError(f"Unknown norm {self.norm!r}; use one of {', '.join(NORMS)}.")
        if self.domain not in DOMAINS:
            raise ThreatModelError(f"Unknown domain {self.domain!r}; use one of {', '.join(DOMAINS)}.")
        if (self.eps is None) == (self.snr_db is None):
            raise ThreatModelError("Give exactly one budget: an absolute eps (--eps) or a relative "
                                   "snr_db (--snr-db).")
        if self.eps is not None:
            if not math.isfinite(self.eps) or self.eps <= 0:
                raise ThreatModelError(f"eps must be a finite number > 0, got {self.eps}. Typical "
                                       f"waveform budgets: L∞ 1e-4..1e-2, L2 0.1..2, L1 1..100.")
            if self.bounds is not None and self.norm == "linf" and self.eps >= (self.bounds[1] - self.bounds[0]) / 2:
                raise ThreatModelError(
                    f"L∞ eps={self.eps} is at least half the input range {self.bounds}: the attacker "
                    f"could replace the clip by anything, so the number would mean nothing. Use a "
                    f"small fraction of full scale (e.g. --eps 0.002), or --snr-db for a relative budget.")
        if self.snr_db is not None and not (SNR_DB_RANGE[0] <= self.snr_db <= SNR_DB_RANGE[1]):
            raise ThreatModelError(f"snr_db={self.snr_db} dB is outside [{SNR_DB_RANGE[0]:g}, "
                                   f"{SNR_DB_RANGE[1]:g}] dB; typical budgets are 20..60 dB.")
        if self.bounds is not None and not self.bounds[0] < self.bounds[1]:
            raise ThreatModelError(f"bounds must be (low, high) with low < high, got {self.bounds}.")

    # -- budget and geometry ---------------------------------------------------------------
    def budget(self, clean: torch.Tensor) -> torch.Tensor:
        """Per-sample ε ``[B]`` for the clean inputs ``[B, ...]`` (in the attacked domain)."""
        if self.eps is not None:
            eps = torch.full((clean.shape[0],), float(self.eps), device=clean.device)
        else:
            assert self.snr_db is not None  # one budget is given (__post_init__)
            eps = lp_norm(clean.detach(), self.norm) * 10 ** (-self.snr_db / 20)
        if self.bounds is not None and self.norm != "linf":
            # An Lp ball that contains the whole box does not constrain anything.
            n = _flat(clean).shape[1]
            diameter = self.box_reach(n)
            if bool((eps >= diameter).any()):
                raise ThreatModelError(
                    f"{self.norm} budget {float(eps.max()):.4g} reaches {diameter:.4g}, enough to turn "
                    f"a clip of {n} values into any other: lower --eps or raise --snr-db.")
        return eps

    def box_reach(self, values: int) -> float:
        """This norm of a perturbation that moves each of ``values`` samples by half the box range
        (``bounds``): from the box's middle, a budget this large reaches every input (``inf`` without bounds)."""
        if self.bounds is None:
            return float("inf")
        half_range = (self.bounds[1] - self.bounds[0]) / 2
        return half_range * {"linf": 1.0, "l2": math.sqrt(values), "l1": float(values)}[self.norm]

    def _mask(self, like: torch.Tensor) -> torch.Tensor | None:
        return None if self.mask is None else self.mask.to(device=like.device, dtype=like.dtype)

    def restrict(self, delta: torch.Tensor) -> torch.Tensor:
        """``delta`` with the mask applied and, for ``band_hz``, band-passed (no norm, no box).

        With both, the mask is applied again after the band-pass (which spreads energy in time), so
        masked entries stay exactly 0 and the band holds approximately there.
        """
        mask = self._mask(delta)
        if mask is not None:
            delta = delta * mask
        if self.band_hz is not None:
            from .restrict import bandpass  # restrict imports nothing from here; keeps threat standalone
            assert self.sample_rate is not None  # checked in __post_init__
            delta = bandpass(delta, self.sample_rate, *self.band_hz)
            if mask is not None:
                delta = delta * mask
        return delta

    def project(self, delta: torch.Tensor, clean: torch.Tensor | None, eps: torch.Tensor) -> torch.Tensor:
        """Project ``delta`` onto mask ∩ band ∩ Lp ball(eps) ∩ {clean + delta in bounds}.

        ``clean=None`` leaves out the box: a perturbation shared by many clips (universal) meets
        each clip's box when :meth:`apply` adds it.

        Clipping into the box only shrinks each coordinate of ``delta`` towards 0 (the clean input
        lies inside the box), so the result stays inside the ball. The ball's radius is ``eps`` less
        :meth:`rounding_margin`, so the perturbation the model sees, ``apply(clean, delta) - clean`` in
        exact arithmetic, is within ``eps`` (and within the float64 value ε was given as) despite the
        float32 rounding of the sums.
        """
        radius = (eps - self.rounding_margin(eps, clean, _flat(delta).shape[1])).clamp_min(0)
        delta = project_lp_ball(self.restrict(delta), radius, self.norm)
        if self.bounds is not None and clean is not None:
            delta = (clean + delta).clamp(self.bounds[0], self.bounds[1]) - clean
        return delta

    def rounding_margin(self, eps: torch.Tensor, clean: torch.Tensor | None, values: int) -> torch.Tensor:
        """How much float32 rounding can add to a perturbation of norm ``eps`` ``[B]`` on ``clean``
        ``[B, ...]`` of ``values`` values per sample: the sums ``clean + delta`` (in :meth:`project` and
        :meth:`apply`) and the difference between them round each value by at most ``u |clean + delta|``, so
        ``4u (||clean|| + eps)`` in the norm, and ε's own float32 value and the projection's arithmetic (a float32
        norm of many values) another 64u·eps (u = 2^-24): about 2.4e-7 of full scale for L∞, of the clip's
        norm for L2 / L1, and 4e-6 of ε.
        ``clean=None`` (a universal perturbation, added to clips later): the loudest clip the box allows
        (none without a box)."""
        if clean is not None:
            clip = lp_norm(clean.detach(), self.norm).to(eps)
        elif self.bounds is not None:
            peak = max(abs(self.bounds[0]), abs(self.bounds[1]))
            clip = torch.full_like(eps, peak * {"linf": 1.0, "l2": math.sqrt(values), "l1": float(values)}[self.norm])
        else:
            clip = torch.zeros_like(eps)
        return ROUNDOFF * (4 * (clip + eps) + 64 * eps)

    def apply(self, clean: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """``clean + delta``, clamped to the bounds so float rounding never leaves the box."""
        x = clean + delta
        return x if self.bounds is None else x.clamp(self.bounds[0], self.bounds[1])

    def norms(self, delta: torch.Tensor) -> torch.Tensor:
        return lp_norm(delta, self.norm)

    def random_start(self, clean: torch.Tensor, eps: torch.Tensor, generator: torch.Generator | None = None, *,
                     on_sphere: bool = False) -> torch.Tensor:
        """A uniform draw from the ε-ball of each sample ``clean [B, ...]`` (``eps [B]``), then projected onto the
        box and mask. ``on_sphere``: L2 / L1 draws on the ε-sphere instead (the strongest random noise of the
        budget); L∞ draws stay uniform in the cube. The generator is consumed the same either way."""
        shape, n = clean.shape, _flat(clean).shape[1]
        uniform = torch.rand(shape, generator=generator).to(clean.device)
        if self.norm == "linf":
            delta = (2 * uniform - 1) * _expand(eps, clean)
        else:
            if self.norm == "l2":
                direction = torch.randn(shape, generator=generator).to(clean.device)
            else:  # iid Laplace, normalised, is uniform on the L1 sphere
                direction = -torch.log(uniform.clamp_min(1e-12)) * torch.sign(
                    torch.rand(shape, generator=generator).to(clean.device) - 0.5)
            direction = direction / _expand(lp_norm(direction, self.norm).clamp_min(1e-30), clean)
            radius = torch.rand(shape[0], generator=generator).to(clean.device) ** (1.0 / n)
            delta = direction * _expand(eps if on_sphere else eps * radius, clean)
        return self.project(delta, clean, eps)

    # -- domain ---------------------------------------------------------------------------
    def view(self, model: AttackTarget, audio: torch.Tensor, video: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, Callable[..., torch.Tensor]]:
        """The clean input in the attacked domain and ``logits_fn(x, index)`` (see :func:`input_view`)."""
        return input_view(model, audio, self.row_domain, video)

    @property
    def row_domain(self) -> str:
        """Where the perturbation lives, as records say: ``waveform``, ``feature`` or ``video``."""
        return "video" if self.modality == "video" else self.domain

    # -- description ----------------------------------------------------------------------
    def describe(self) -> str:
        budget = f"eps={self.eps:g}" if self.eps is not None else f"snr={self.snr_db:g}dB"
        where = "video" if self.modality == "video" else self.domain
        restricted = ""
        if self.restriction:
            restricted = f"-{self.restriction}"
        elif self.mask is not None:
            restricted = "-masked"
        if self.band_hz is not None:
            restricted += f"-band={self.band_hz[0]:g}-{self.band_hz[1]:g}Hz"
        return f"{self.norm}-{where}-{budget}{restricted}"

    def as_dict(self) -> dict:
        return {"norm": self.norm, "eps": self.eps, "snr_db": self.snr_db, "domain": self.domain,
                "bounds": list(self.bounds) if self.bounds is not None else None,
                "masked": self.mask is not None, "restriction": self.restriction,
                "band_hz": list(self.band_hz) if self.band_hz is not None else None, "modality": self.modality}
