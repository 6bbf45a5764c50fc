"""A camera-sticker run: optimise a universal targeted sticker on one image set, then measure it on held-out
images against random-dot stickers of the same optics. :mod:`robustaudio.report.sticker` writes the files."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..attacks.sticker import DotOptics, Sticker, StickerTarget, optimise_sticker, random_dot_control, sticker_success


@dataclass(frozen=True)
class StickerSettings:
    """How the sticker is learned (``dots`` with ``optics``, ``epochs`` of Adam at ``lr`` over batches of
    ``batch_size`` images) and how many random-dot stickers (``controls``) measure chance; ``seed`` seeds
    both."""

    dots: int = 9
    optics: DotOptics = field(default_factory=DotOptics)
    epochs: int = 60
    lr: float = 0.02
    batch_size: int = 32
    controls: int = 20
    seed: int = 0


def run_sticker(learn: StickerTarget, held: StickerTarget, source: str, goal: str,
                settings: StickerSettings = StickerSettings(), context: dict | None = None) -> tuple[dict, Sticker]:
    """Optimise a sticker on ``learn``'s images of ``source`` towards ``goal`` and measure it on ``held``.

    Returns the summary (success rates learned-on and held-out, the random-dot control, the history and the
    settings, with ``context`` such as the model and data recorded beside them) and the sticker."""
    generator = torch.Generator().manual_seed(settings.seed)
    start = time.perf_counter()
    result = optimise_sticker(learn, source, goal, dots=settings.dots, optics=settings.optics, epochs=settings.epochs,
                              lr=settings.lr, batch_size=settings.batch_size, generator=generator)
    seconds = time.perf_counter() - start
    summary: dict[str, Any] = {
        "source": source, "target": goal, "labels": list(learn.labels),
        "sticker": result.sticker.as_dict(),
        "learned_on": sticker_success(learn, result.sticker, source, goal),
        "held_out": sticker_success(held, result.sticker, source, goal),
        "random_dots": random_dot_control(held, source, goal, dots=settings.dots, optics=settings.optics,
                                          draws=settings.controls,
                                          generator=torch.Generator().manual_seed(settings.seed + 1)),
        "history": result.history, "best_epoch": result.best_epoch, "optimisation_seconds": round(seconds, 1),
        "settings": {"dots": settings.dots, "epochs": settings.epochs, "lr": settings.lr,
                     "batch_size": settings.batch_size, "controls": settings.controls, "seed": settings.seed,
                     "learn_items": len(learn.images), "held_out_items": len(held.images), **(context or {})},
        "note": "targeted: share of held-out source images predicted as the target through the sticker; "
                "random_dots: the same for random centres and colours with the same optics (mean and max "
                "over draws). Threat model and objective [paper]; optics fit [ours] (robustaudio.attacks.sticker).",
    }
    return summary, result.sticker
