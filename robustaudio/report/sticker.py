"""The files of a camera-sticker run (:func:`robustaudio.runner.sticker.run_sticker`): ``sticker.json``
(parameters, settings, success rates), ``sticker.png`` (the sticker over sample frames) and ``report.html`` /
``report.md`` (headline first: the held-out targeted rate against the random-dot control). Used by
``robustaudio sticker`` and ``experiments/camera_sticker.py``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import torch

from ..attacks.sticker import Sticker, StickerTarget
from ..records import check_own_folders, make_folder, write_bytes_atomic, write_json_atomic, write_text_atomic
from . import style
from .document import FIGURES_DIR, document_html, document_markdown
from .headline import Flag, Headline

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STICKER_FILE, FIGURE_FILE = "sticker.json", "sticker.png"


def sample_images(target: StickerTarget, count: int = 6) -> torch.Tensor:
    """``[count, 3, H, W]``: the first images (first frame of each clip for video)."""
    images = target.images[:count]
    return images[:, 0] if images.dim() == 5 else images


def sticker_figure(samples: torch.Tensor, sticker: Sticker, title: str) -> Figure:
    """Two rows over ``samples`` ``[n, 3, H, W]`` (clean; through the sticker), and the sticker alone on
    mid-grey and on white."""
    n = len(samples)
    fig, axes = style.figure(2, n + 1, width=1.6 * (n + 1), height=3.9)
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
    axes[0, n].set_title("on grey")
    axes[1, n].set_title("on white")
    for ax in axes.flat:  # pictures: no ticks, grid or frame
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle(title, fontsize=style.RC["axes.titlesize"])
    style.finish(fig)
    return fig


def write_sticker_run(out: str | Path, summary: dict, sticker: Sticker, held: StickerTarget) -> None:
    """``sticker.json`` (the summary of :func:`~robustaudio.runner.sticker.run_sticker`), ``sticker.png`` (the
    sticker over sample held-out frames) and the report, in ``out``."""
    out = Path(out)
    make_folder(out)
    check_own_folders(out)
    write_json_atomic(out / STICKER_FILE, summary)
    held_rate = summary["held_out"]["targeted"]
    title = (f"{summary['source']} → {summary['target']}: targeted {held_rate:.0%} on {len(held.images)} held-out "
             f"(random dots {summary['random_dots']['targeted_mean']:.0%})")
    fig = sticker_figure(sample_images(held), sticker, title)
    picture = style.png(fig)
    plt.close(fig)
    write_bytes_atomic(out / FIGURE_FILE, picture)
    write_sticker_report(out, summary, picture)


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
