"""A camera-sticker run: optimise on one image set, measure on held-out images against random dots, and
write ``sticker.json`` (parameters, settings, success rates) and ``sticker.png`` (the sticker over
sample frames). Used by ``robustaudio sticker`` and ``experiments/camera_sticker.py``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ..attacks.sticker import DotOptics, Sticker, StickerTarget, optimise_sticker, random_dot_control, sticker_success

STICKER_FILE, FIGURE_FILE = "sticker.json", "sticker.png"


def sample_images(target: StickerTarget, count: int = 6) -> torch.Tensor:
    """``[count, 3, H, W]``: the first images (first frame of each clip for video)."""
    images = target.images[:count]
    return images[:, 0] if images.dim() == 5 else images


def sticker_figure(samples: torch.Tensor, sticker: Sticker, title: str) -> plt.Figure:
    """Two rows over ``samples`` ``[n, 3, H, W]`` (clean; through the sticker), and the sticker alone on
    mid-grey and on white."""
    n = len(samples)
    fig, axes = plt.subplots(2, n + 1, figsize=(1.6 * (n + 1), 3.6), squeeze=False)
    with torch.no_grad():
        stuck = sticker(samples)
        size = samples.shape[-2:]
        plain = sticker(torch.stack([torch.full((3, *size), 0.5), torch.ones(3, *size)]))
    for i in range(n):
        axes[0, i].imshow(samples[i].permute(1, 2, 0).clamp(0, 1).numpy())
        axes[1, i].imshow(stuck[i].permute(1, 2, 0).clamp(0, 1).numpy())
    axes[0, n].imshow(plain[0].permute(1, 2, 0).numpy())
    axes[1, n].imshow(plain[1].permute(1, 2, 0).numpy())
    axes[0, 0].set_ylabel("clean")
    axes[1, 0].set_ylabel("sticker")
    axes[0, n].set_title("on grey", fontsize=8)
    axes[1, n].set_title("on white", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def run_sticker(learn: StickerTarget, held: StickerTarget, source: str, goal: str, out: str | Path, *,
                dots: int = 9, optics: DotOptics | None = None, epochs: int = 60, lr: float = 0.02,
                batch_size: int = 32, controls: int = 20, seed: int = 0, settings: dict | None = None) -> dict:
    """Optimise a universal targeted sticker on ``learn`` (images of ``source``), measure it and
    ``controls`` random-dot stickers of the same optics on ``held``; write the files in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    optics = optics or DotOptics()
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    result = optimise_sticker(learn, source, goal, dots=dots, optics=optics, epochs=epochs, lr=lr,
                              batch_size=batch_size, generator=generator)
    seconds = time.perf_counter() - start
    summary = {
        "source": source, "target": goal, "labels": list(learn.labels),
        "sticker": result.sticker.as_dict(),
        "learned_on": sticker_success(learn, result.sticker, source, goal),
        "held_out": sticker_success(held, result.sticker, source, goal),
        "random_dots": random_dot_control(held, source, goal, dots=dots, optics=optics, draws=controls,
                                          generator=torch.Generator().manual_seed(seed + 1)),
        "history": result.history, "best_epoch": result.best_epoch, "optimisation_seconds": round(seconds, 1),
        "settings": {"dots": dots, "epochs": epochs, "lr": lr, "batch_size": batch_size, "controls": controls,
                     "seed": seed, "learn_items": len(learn.images), "held_out_items": len(held.images),
                     **(settings or {})},
        "note": "targeted: share of held-out source images predicted as the target through the sticker; "
                "random_dots: the same for random centres and colours with the same optics (mean and max "
                "over draws). Threat model and objective [paper]; optics fit [ours] (robustaudio.attacks.sticker).",
    }
    (out / STICKER_FILE).write_text(json.dumps(summary, indent=2))
    held_rate = summary["held_out"]["targeted"]
    title = (f"{source} → {goal}: targeted {held_rate:.0%} on {len(held.images)} held-out "
             f"(random dots {summary['random_dots']['targeted_mean']:.0%})")
    fig = sticker_figure(sample_images(held), result.sticker, title)
    fig.savefig(out / FIGURE_FILE, dpi=110)
    plt.close(fig)
    return summary
