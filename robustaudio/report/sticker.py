"""A camera-sticker run: optimise on one image set, measure on held-out images against random dots, and
write ``sticker.json`` (parameters, settings, success rates), ``sticker.png`` (the sticker over
sample frames) and ``report.html`` / ``report.md`` (headline first: the held-out targeted rate against
the random-dot control). Used by ``robustaudio sticker`` and ``experiments/camera_sticker.py``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch

from ..attacks.sticker import DotOptics, Sticker, StickerTarget, optimise_sticker, random_dot_control, sticker_success
from ..records import make_folder, write_json_atomic, write_text_atomic
from .document import FIGURES_DIR, document_html, document_markdown
from .headline import Flag, Headline
from .style import png

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
    make_folder(out)
    optics = optics or DotOptics()
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    result = optimise_sticker(learn, source, goal, dots=dots, optics=optics, epochs=epochs, lr=lr,
                              batch_size=batch_size, generator=generator)
    seconds = time.perf_counter() - start
    summary: dict[str, Any] = {
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
    write_json_atomic(out / STICKER_FILE, summary)
    held_rate = summary["held_out"]["targeted"]
    title = (f"{source} → {goal}: targeted {held_rate:.0%} on {len(held.images)} held-out "
             f"(random dots {summary['random_dots']['targeted_mean']:.0%})")
    fig = sticker_figure(sample_images(held), result.sticker, title)
    fig.savefig(out / FIGURE_FILE, dpi=110)
    picture = png(fig)
    plt.close(fig)
    write_sticker_report(out, summary, picture)
    return summary


def sticker_headline(summary: dict) -> Headline:
    """The held-out targeted rate against the best random-dot sticker of the same optics; flags when the
    sticker is no better than chance dots, or much better on the images it was learned on."""
    held, learned, control = summary["held_out"], summary["learned_on"], summary["random_dots"]
    s = summary["settings"]
    source, goal = summary["source"], summary["target"]
    sentence = (f"Through a {s['dots']}-dot sticker, {held['targeted']:.0%} of {held['items']} held-out "
                f"{source!r} images are classified {goal!r} (clean: {held['clean_targeted']:.0%}; random dots of "
                f"the same optics: {control['targeted_mean']:.0%} on average, {control['targeted_max']:.0%} at "
                f"best over {control['draws']} draws).")
    flags = []
    if held["targeted"] <= control["targeted_max"]:
        flags.append(Flag("no better than random dots", "held-out images",
                          f"targeted {held['targeted']:.0%} against {control['targeted_max']:.0%} for the best "
                          f"random sticker", "more epochs or dots, or read it as: this model resists this sticker"))
    if learned["targeted"] - held["targeted"] > 0.3:
        flags.append(Flag("learned images only", "learning vs held-out images",
                          f"targeted {learned['targeted']:.0%} on the {learned['items']} images it was learned on, "
                          f"{held['targeted']:.0%} held out", "learn on more (and more varied) images of the source"))
    passed = "" if flags else "The sticker beats the best random-dot control on images it never saw."
    settings = [f"model: {s.get('model', '?')}", f"dots: {s['dots']}", f"epochs: {s['epochs']} (best "
                f"{summary['best_epoch']})", f"learned on {s['learn_items']} images, measured on {s['held_out_items']}",
                f"seed: {s['seed']}"]
    return Headline(sentence, flags, passed, settings)


def write_sticker_report(out: Path, summary: dict, picture: bytes) -> None:
    """``report.html`` (self-contained) and ``report.md`` next to ``sticker.json`` and ``sticker.png``."""
    held, learned, control = summary["held_out"], summary["learned_on"], summary["random_dots"]
    title = f"Camera sticker: {summary['source']} → {summary['target']}"
    rows = [["learned on", str(learned["items"]), f"{learned['clean_accuracy']:.2f}", f"{learned['targeted']:.2f}",
             f"{learned['untargeted']:.2f}"],
            ["held out", str(held["items"]), f"{held['clean_accuracy']:.2f}", f"{held['targeted']:.2f}",
             f"{held['untargeted']:.2f}"],
            [f"random dots (mean / max of {control['draws']})", str(held["items"]), "",
             f"{control['targeted_mean']:.2f} / {control['targeted_max']:.2f}",
             f"{control['untargeted_mean']:.2f} / {control['untargeted_max']:.2f}"]]
    sections = [("Success rates", ["images", "n", "clean accuracy", f"→ {summary['target']}", "not the source"],
                 rows, summary["note"])]
    figures = [("The sticker over held-out images", FIGURE_FILE, picture)]
    (out / FIGURES_DIR).mkdir(exist_ok=True)  # where report.md's figure links point
    (out / FIGURES_DIR / FIGURE_FILE).write_bytes(picture)
    lines = [f"optimisation: {summary['optimisation_seconds']:g} s", f"files: {STICKER_FILE} (parameters), "
             f"{FIGURE_FILE}"]
    headline = sticker_headline(summary)
    write_text_atomic(out / "report.md", document_markdown(title, lines, sections, figures, [], headline))
    write_text_atomic(out / "report.html", document_html(title, lines, sections, figures, [], headline))
