"""Camera-sticker optics: a translucent dot sticker on the lens (thesis ch. 8; Li, Schmidt & Kolter,
"Adversarial camera stickers", ICML 2019; specs §1).

Threat model [paper, via the author-advised re-implementation]: ``K`` dots (default 9, initially a
3×3 grid at 0.25 / 0.5 / 0.75), dot ``i`` with centre ``c_i`` in normalised image coordinates
``(u, v) = (x / W, y / H)`` and printed colour ``γ_i`` in [0, 1]³; shared radius ``r`` (25 px at
256², i.e. ``25 / 256`` of the image's larger side), peak opacity ``α_max`` (0.9) and edge exponent
``β`` (2)::

    α_i(p) = α_max · exp(−(‖p − c_i‖² / r²)^β)        (distances in units of max(H, W))
    x ← (1 − α_i) · x + α_i · γ'_i                       dot by dot, γ'_i = clip(A γ_i + b, 0, 1)

``A``, ``b`` (identity and 0 by default) map printed to photographed colour [ours]. The sticker is
*universal* (one for every image the camera sees) and *targeted*: :func:`optimise_sticker`
minimises ``CE(f(x_adv), target) − CE(f(x_adv), true)`` averaged over images of the source class,
by gradient steps on the centres and colours (clamped to [0, 1]) [paper]. :func:`fit_dot_optics`
fits ``α_max``, ``r``, ``β``, ``A``, ``b`` (and optionally the centres) to photos of real dots by
least squares [ours].

Models: any module mapping images ``[B, 3, H, W]`` in [0, 1] to logits (:func:`image_target`),
or the visual branch of an audio-visual :class:`~robustaudio.models.Classifier` fed raw frames
(:func:`visual_branch_target`: the sticker covers every frame of a clip, the audio is held fixed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..models.base import Classifier, frozen

PAPER_RADIUS = 25 / 256


class StickerError(ValueError):
    """A model, image set or class that a sticker cannot be made for; the message says the fix."""


@dataclass(frozen=True)
class DotOptics:
    """How one printed dot appears in the image: peak opacity, radius (fraction of the image's larger
    side), edge exponent, and the affine map from printed to photographed colour ``γ' = A γ + b``."""

    alpha_max: float = 0.9
    radius: float = PAPER_RADIUS
    beta: float = 2.0
    colour_matrix: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    colour_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if not 0 < self.alpha_max <= 1:
            raise StickerError(f"opacity alpha_max must be in (0, 1], got {self.alpha_max}.")
        if not 0 < self.radius <= 1:
            raise StickerError(f"radius must be in (0, 1] (a fraction of the image's larger side), got {self.radius}.")
        if self.beta <= 0:
            raise StickerError(f"edge exponent beta must be > 0, got {self.beta}.")

    def tensors(self, device: str | torch.device | None = None) -> dict[str, torch.Tensor]:
        """The parameters as float32 tensors (``colour_matrix`` ``[3, 3]``, ``colour_offset`` ``[3]``)."""
        return {key: torch.as_tensor(value, dtype=torch.float32, device=device) for key, value in asdict(self).items()}

    def as_dict(self) -> dict:
        return {key: value if not isinstance(value, tuple) else [list(v) if isinstance(v, tuple) else v for v in value]
                for key, value in asdict(self).items()}


def grid_centres(dots: int = 9) -> torch.Tensor:
    """``[dots, 2]`` initial centres on a ⌈√dots⌉² grid at ``(j + 1) / (n + 1)`` (0.25/0.5/0.75 for 9)."""
    n = math.ceil(math.sqrt(dots))
    ticks = torch.arange(1, n + 1, dtype=torch.float32) / (n + 1)
    v, u = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([u.flatten(), v.flatten()], dim=1)[:dots]


def dot_alphas(centres: torch.Tensor, height: int, width: int, alpha_max: float | torch.Tensor,
               radius: float | torch.Tensor, beta: float | torch.Tensor) -> torch.Tensor:
    """Opacity of each dot at each pixel, ``[K, H, W]``; ``centres`` ``[K, 2]`` as ``(u, v)`` in [0, 1].

    ``alpha_max``, ``radius``, ``beta``: floats or 0-d tensors (differentiable, for fitting).
    """
    scale = max(height, width)
    y = (torch.arange(height, dtype=centres.dtype, device=centres.device) + 0.5) / scale   # pixel centres
    x = (torch.arange(width, dtype=centres.dtype, device=centres.device) + 0.5) / scale
    cu = centres[:, 0] * width / scale
    cv = centres[:, 1] * height / scale
    d2 = (x[None, None, :] - cu[:, None, None]) ** 2 + (y[None, :, None] - cv[:, None, None]) ** 2
    return alpha_max * torch.exp(-((d2 / radius ** 2) ** beta))


def apply_sticker(images: torch.Tensor, centres: torch.Tensor, colours: torch.Tensor,
                  optics: DotOptics | dict[str, torch.Tensor]) -> torch.Tensor:
    """Images seen through the sticker: ``images`` ``[..., 3, H, W]`` in [0, 1], dot by dot.

    ``centres`` ``[K, 2]``, ``colours`` ``[K, 3]`` printed colours in [0, 1]; ``optics``: a
    :class:`DotOptics` or its :meth:`~DotOptics.tensors` (differentiable parameters).
    """
    if images.dim() < 3 or images.shape[-3] != 3:
        raise StickerError(f"images must be [..., 3, H, W] RGB in [0, 1], got {list(images.shape)}.")
    p = optics.tensors(images.device) if isinstance(optics, DotOptics) else optics
    alphas = dot_alphas(centres, images.shape[-2], images.shape[-1], p["alpha_max"], p["radius"], p["beta"])
    seen = (colours @ p["colour_matrix"].T + p["colour_offset"]).clamp(0, 1)              # [K, 3]
    for alpha, colour in zip(alphas, seen):
        images = (1 - alpha) * images + alpha * colour[:, None, None]
    return images


@dataclass
class Sticker:
    """``centres`` ``[K, 2]`` (u, v) and printed ``colours`` ``[K, 3]``, both in [0, 1], seen through ``optics``."""

    centres: torch.Tensor
    colours: torch.Tensor
    optics: DotOptics = field(default_factory=DotOptics)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return apply_sticker(images, self.centres.to(images.device), self.colours.to(images.device), self.optics)

    @classmethod
    def random(cls, dots: int, optics: DotOptics, generator: torch.Generator | None = None) -> Sticker:
        """Uniform random centres and colours (the control)."""
        return cls(torch.rand(dots, 2, generator=generator), torch.rand(dots, 3, generator=generator), optics)

    def as_dict(self) -> dict:
        return {"centres": self.centres.tolist(), "colours": self.colours.tolist(), "optics": self.optics.as_dict()}


@dataclass
class StickerTarget:
    """What a sticker is made against.

    ``images``: ``[N, 3, H, W]`` (images) or ``[N, F, 3, H, W]`` (clips' frames) in [0, 1];
    ``logits(stickered, index)``: logits ``[n, K]`` for the rows ``index`` ``[n]`` of ``images``
    after the sticker; ``labels``: the class names of the logits.
    """

    images: torch.Tensor
    logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    labels: tuple[str, ...]
    module: nn.Module

    def class_index(self, name: str, option: str = "class") -> int:
        if name not in self.labels:
            raise StickerError(f"Unknown {option} {name!r}: the model's classes are {', '.join(self.labels)}.")
        return self.labels.index(name)

    def subset(self, rows: torch.Tensor) -> StickerTarget:
        """The target restricted to ``rows`` (the fixed inputs follow)."""
        return StickerTarget(self.images[rows], lambda x, index: self.logits(x, rows[index]), self.labels, self.module)


def image_target(model: nn.Module, images: torch.Tensor, labels: list[str] | tuple[str, ...]) -> StickerTarget:
    """A plain image classifier: ``model(images [B, 3, H, W] in [0, 1]) -> logits [B, len(labels)]``."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise StickerError(f"An image classifier takes images [B, 3, H, W]; got {list(images.shape)}. Give RGB "
                           f"images of one size (--image-size resizes them).")
    _check_logits(model, lambda: model(images[:2]), labels, f"images of shape {list(images[:2].shape)}")
    return StickerTarget(images, lambda x, index: model(x), tuple(labels), model)


def visual_branch_target(model: Classifier, audio: torch.Tensor, video: torch.Tensor) -> StickerTarget:
    """The visual input of an audio-visual Classifier fed raw frames: the sticker covers every frame
    of ``video`` ``[N, F, 3, H, W]``; ``audio`` ``[N, T]`` is held fixed."""
    name = type(model).__name__
    if "video" not in getattr(model, "modalities", ()):
        raise StickerError(f"{name} has no visual branch (modalities: {', '.join(getattr(model, 'modalities', ()))}): "
                           f"use an audio-visual model fed raw frames (e.g. av-late, video-only) or an image "
                           f"classifier.")
    if getattr(model, "video_input", "frames") != "frames":
        raise StickerError(f"{name} takes precomputed frame embeddings, not raw frames, so a lens sticker cannot be "
                           f"rendered into its input: use a model with video_input='frames'.")
    if video is None or video.dim() != 5 or video.shape[2] != 3:
        raise StickerError(f"{name}'s visual branch takes raw frames [N, F, 3, H, W]; got "
                           f"{None if video is None else list(video.shape)}.")
    _check_logits(model, lambda: model(audio[:2], video[:2]), model.labels, f"video of shape {list(video[:2].shape)}")
    return StickerTarget(video, lambda x, index: model(audio[index], x), tuple(model.labels), model)


def _check_logits(model: nn.Module, run: Callable[[], torch.Tensor], labels: Sequence[str], what: str) -> None:
    try:
        with torch.no_grad():
            out = run()
    except (RuntimeError, ValueError) as error:
        raise StickerError(f"{type(model).__name__} failed on {what} ({type(error).__name__}: {error}). It must map "
                           f"RGB images in [0, 1] to logits; resize the images to the size it expects.") from error
    if out.dim() != 2 or out.shape[1] != len(labels):
        raise StickerError(f"{type(model).__name__} returned {list(out.shape)} on {what}, but {len(labels)} class "
                           f"names were given: it must return logits [B, {len(labels)}] (give --labels in logit "
                           f"order).")


def sticker_loss(logits: torch.Tensor, source: int, target: int) -> torch.Tensor:
    """``CE(logits, target) − CE(logits, source)`` per row ``[n]`` [paper]: lower is better."""
    n = logits.shape[0]
    to = torch.full((n,), target, dtype=torch.long, device=logits.device)
    away = torch.full((n,), source, dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, to, reduction="none") - F.cross_entropy(logits, away, reduction="none")


@dataclass
class StickerResult:
    """The optimised ``sticker`` (the best epoch's), the ``best_epoch`` (0-based) and, per epoch, the mean
    loss and the targeted success on the learning images at the end of the epoch."""

    sticker: Sticker
    history: list[dict]
    best_epoch: int


def optimise_sticker(target: StickerTarget, source: str, goal: str, *, dots: int = 9, optics: DotOptics | None = None,
                     epochs: int = 60, batch_size: int = 32, lr: float = 0.02, init: Sticker | None = None,
                     generator: torch.Generator | None = None) -> StickerResult:
    """Universal targeted sticker over all of ``target.images`` (images of the ``source`` class).

    Adam on the centres and colours (clamped to [0, 1] after each step), ``epochs`` passes over the
    images in shuffled batches; starts from the 3×3 grid with mid-grey dots unless ``init``.
    The objective's ``− CE(true)`` term is unbounded: once the images leave the source class it keeps
    pushing them away, and can push them past the target into a third class. So the sticker returned
    is the one of the epoch with the highest targeted success on the learning images (ties: the
    lower loss) [ours: a selection on the learning images only; held-out images stay unseen].
    """
    source_k, goal_k = target.class_index(source, "source class"), target.class_index(goal, "target class")
    if source_k == goal_k:
        raise StickerError(f"--source and --target are both {source!r}: a targeted sticker needs another class.")
    optics = optics or DotOptics()
    start = init or Sticker(grid_centres(dots), torch.full((dots, 3), 0.5), optics)
    centres = start.centres.clone().requires_grad_(True)
    colours = start.colours.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([centres, colours], lr=lr)
    n = len(target.images)
    history, best, best_key = [], start, (-1.0, float("inf"))
    best_epoch = -1
    with frozen(target.module):
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator)
            for begin in range(0, n, batch_size):
                index = order[begin:begin + batch_size]
                with torch.enable_grad():
                    logits = target.logits(apply_sticker(target.images[index], centres, colours, optics), index)
                    loss = sticker_loss(logits, source_k, goal_k).mean()
                    optimizer.zero_grad()
                    loss.backward()
                optimizer.step()
                with torch.no_grad():
                    centres.clamp_(0, 1)
                    colours.clamp_(0, 1)
            current = Sticker(centres.detach().clone(), colours.detach().clone(), optics)
            with torch.no_grad():
                losses, hits = [], 0
                for begin in range(0, n, batch_size):
                    index = torch.arange(begin, min(begin + batch_size, n))
                    logits = target.logits(current(target.images[index]), index)
                    losses.append(sticker_loss(logits, source_k, goal_k))
                    hits += int((logits.argmax(-1) == goal_k).sum())
            record = {"loss": float(torch.cat(losses).mean()), "targeted_success": hits / n}
            history.append(record)
            key = (record["targeted_success"], -record["loss"])
            if key > (best_key[0], -best_key[1]):
                best, best_key, best_epoch = current, (record["targeted_success"], record["loss"]), epoch
    return StickerResult(best, history, best_epoch)


def predictions(target: StickerTarget, sticker: Sticker | None, batch_size: int = 64) -> torch.Tensor:
    """Top-1 class ``[N]`` of every item, through ``sticker`` (None: clean)."""
    out = []
    with frozen(target.module), torch.no_grad():
        for begin in range(0, len(target.images), batch_size):
            index = torch.arange(begin, min(begin + batch_size, len(target.images)))
            images = target.images[index]
            out.append(target.logits(images if sticker is None else sticker(images), index).argmax(-1))
    return torch.cat(out)


def sticker_success(target: StickerTarget, sticker: Sticker, source: str, goal: str) -> dict:
    """Targeted success of ``sticker`` on ``target.images`` (held-out images of ``source``).

    ``targeted``: share predicted as ``goal`` (all items); ``targeted_on_correct``: the same among
    items classified as ``source`` when clean; ``untargeted``: share not predicted as ``source``
    through the sticker; ``clean_accuracy``: share predicted as ``source`` without it.
    """
    source_k, goal_k = target.class_index(source, "source class"), target.class_index(goal, "target class")
    clean, stuck = predictions(target, None), predictions(target, sticker)
    correct = clean == source_k
    return {"items": len(clean), "clean_accuracy": float(correct.float().mean()),
            "clean_targeted": float((clean == goal_k).float().mean()),
            "targeted": float((stuck == goal_k).float().mean()),
            "targeted_on_correct": float((stuck[correct] == goal_k).float().mean()) if correct.any() else None,
            "untargeted": float((stuck != source_k).float().mean())}


def random_dot_control(target: StickerTarget, source: str, goal: str, *, dots: int, optics: DotOptics,
                       draws: int = 20, generator: torch.Generator | None = None) -> dict:
    """The same measures for ``draws`` random stickers (same dots and optics): mean and max over draws."""
    runs = [sticker_success(target, Sticker.random(dots, optics, generator), source, goal) for _ in range(draws)]
    keys = ("targeted", "untargeted")
    return {"draws": draws, **{f"{k}_mean": sum(r[k] for r in runs) / draws for k in keys},
            **{f"{k}_max": max(r[k] for r in runs) for k in keys}}


# -- fitting the optics to photographs ----------------------------------------------------------

@dataclass
class OpticsFit:
    """Fitted ``optics`` and ``centres`` ``[K, 2]``; ``rmse`` of the fitted rendering against the photos
    (pixel units, [0, 1]); ``history``: loss every 50 steps."""

    optics: DotOptics
    centres: torch.Tensor
    rmse: float
    history: list[float]


def synthetic_photos(clean: torch.Tensor, centres: torch.Tensor, colours: torch.Tensor, optics: DotOptics,
                     noise: float = 0.01, generator: torch.Generator | None = None) -> torch.Tensor:
    """Photos of a dot sticker rendered with known parameters: the sticker model plus Gaussian noise of
    standard deviation ``noise`` (pixel units), clipped to [0, 1] (for testing :func:`fit_dot_optics`)."""
    photos = apply_sticker(clean, centres, colours, optics)
    return (photos + noise * torch.randn(photos.shape, generator=generator)).clamp(0, 1)


def fit_dot_optics(clean: torch.Tensor, photos: torch.Tensor, centres: torch.Tensor, colours: torch.Tensor, *,
                   fit_centres: bool = True, steps: int = 500, lr: float = 0.03,
                   init: DotOptics | None = None) -> OpticsFit:
    """Least-squares fit of the dot optics to photos of a known printed sticker [ours].

    Args:
        clean: ``[N, 3, H, W]`` the scenes without the sticker, in [0, 1].
        photos: ``[N, 3, H, W]`` the same scenes photographed through it.
        centres: ``[K, 2]`` where the dots were placed (refined when ``fit_centres``).
        colours: ``[K, 3]`` the printed colours.
        init: starting optics (default: the paper's values, identity colour map).
    ``α_max`` is identified by how much the dots dim what lies behind them: photograph the sticker
    over several varied scenes.
    Minimises the mean squared pixel error over ``α_max`` (through a sigmoid), ``r``, ``β`` (through
    logs), ``A``, ``b`` and the centres, with Adam (``steps`` steps, learning rate ``lr``, cosine decay).
    The colour map is optimised as ``α_max·A`` and ``α_max·b``: the pixel at a dot's centre is
    ``x − α_max·x + α_max·(Aγ + b)``, so these and ``α_max`` enter separately (a far better
    conditioned problem than ``α_max`` against ``A``).
    """
    if clean.shape != photos.shape or clean.dim() != 4 or clean.shape[1] != 3:
        raise StickerError(f"clean and photos must be matching [N, 3, H, W] images, got {list(clean.shape)} and "
                           f"{list(photos.shape)}.")
    if centres.shape[0] != colours.shape[0]:
        raise StickerError(f"{centres.shape[0]} dot centres but {colours.shape[0]} colours.")
    init = init or DotOptics()
    p = init.tensors()
    alpha_logit = torch.logit(p["alpha_max"].clamp(1e-3, 1 - 1e-3)).requires_grad_(True)
    log_radius = p["radius"].log().requires_grad_(True)
    log_beta = p["beta"].log().requires_grad_(True)
    matrix = (p["alpha_max"] * p["colour_matrix"]).requires_grad_(True)    # α_max·A
    offset = (p["alpha_max"] * p["colour_offset"]).requires_grad_(True)    # α_max·b
    fitted_centres = centres.clone().float().requires_grad_(fit_centres)
    parameters = [alpha_logit, log_radius, log_beta, matrix, offset] + ([fitted_centres] if fit_centres else [])
    optimizer = torch.optim.Adam(parameters, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    history = []
    def current() -> dict[str, torch.Tensor]:
        alpha = torch.sigmoid(alpha_logit)
        return {"alpha_max": alpha, "radius": log_radius.exp(), "beta": log_beta.exp(),
                "colour_matrix": matrix / alpha, "colour_offset": offset / alpha}

    for step in range(steps):
        optics = current()
        loss = F.mse_loss(apply_sticker(clean, fitted_centres, colours, optics), photos)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            history.append(float(loss.detach()))
    with torch.no_grad():
        final = current()
        fitted = DotOptics(alpha_max=float(final["alpha_max"]), radius=float(final["radius"]),
                           beta=float(final["beta"]),
                           colour_matrix=cast("tuple[tuple[float, float, float], ...]",
                                              tuple(tuple(float(v) for v in row) for row in final["colour_matrix"])),
                           colour_offset=cast("tuple[float, float, float]",
                                              tuple(float(v) for v in final["colour_offset"])))
        rmse = float(F.mse_loss(apply_sticker(clean, fitted_centres, colours, fitted), photos).sqrt())
    return OpticsFit(fitted, fitted_centres.detach().clamp(0, 1), rmse, history)
