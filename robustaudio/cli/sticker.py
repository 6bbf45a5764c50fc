"""The ``sticker`` command: a universal targeted camera sticker (translucent dots on the lens) against an
image classifier or the visual branch of an audio-visual model; a few library calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from . import choices

if TYPE_CHECKING:
    import torch

    from ..attacks.sticker import StickerTarget
    from ..models.base import Classifier

from .common import FINITE, SEED, default_out, parse_device, user_errors

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def read_images(paths: list[Path], size: int | None) -> torch.Tensor:
    """``[N, 3, H, W]`` float32 in [0, 1] from image files (RGB; resized to ``size × size`` if given)."""
    import numpy as np
    import torch
    from PIL import Image

    from ..attacks.sticker import StickerError

    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                if size:
                    image = image.resize((size, size), Image.BILINEAR)  # type: ignore[attr-defined]
                images.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1))
        except OSError as error:  # PIL's UnidentifiedImageError is one: a corrupt or non-image file
            raise StickerError(f"{path} is not an image that can be read ({type(error).__name__}): remove or "
                               f"replace it.") from error
    shapes = sorted({tuple(i.shape) for i in images})
    if len(shapes) > 1:
        raise StickerError(f"Images come in {len(shapes)} sizes ({shapes[:3]} ...): pass --image-size N to resize "
                           f"them to N×N.")
    return torch.stack(images)


def image_folder_split(root: Path, label: str, size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of ``root/label/``, sorted by name: even positions learn the sticker, odd ones are held out."""
    from ..attacks.sticker import StickerError
    folder = root / label
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if len(files) < 2:
        found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise StickerError(f"{folder} holds {len(files)} image(s); the sticker needs at least 2 images of the source "
                           f"class there (half to learn, half held out). Class folders found: "
                           f"{', '.join(found) or 'none'}.")
    return read_images(files[0::2], size), read_images(files[1::2], size)


def load_image_model(name: str, labels: str | None) -> tuple[torch.nn.Module, list[str]]:
    """An AV Classifier or a plain image module with its class names, for ``--model``."""

    from ..attacks.sticker import StickerError
    from ..models import load_model
    from ..models.base import Classifier
    from ..models.loaders import _import, load_script_module, split_prefix
    from ..models.sidecar import read_sidecar
    prefix = split_prefix(name)
    if prefix is None or prefix[0] not in ("python", "torchscript"):
        model = load_model(name)  # a registered name or image:NAME; its errors name the fix
        if isinstance(model, Classifier) or not getattr(model, "labels", None):
            return visual_classifier(model, name)
        return model.eval(), list(labels.split(",") if labels else model.labels)  # an image classifier (image:NAME)
    kind, target = prefix
    if kind == "torchscript":
        module, spec = load_script_module(target), read_sidecar(Path(target))
    else:
        module_name, _, factory_name = target.rpartition(":")
        factory = getattr(_import(module_name), factory_name, None) if module_name else None
        if not callable(factory):
            raise StickerError(f"python:{target} should name a factory, python:MODULE:FACTORY, returning an image "
                               f"classifier (nn.Module [B, 3, H, W] in [0, 1] -> logits).")
        module, spec = factory(), {}
        if isinstance(module, Classifier):
            return visual_classifier(module, name)
    names = labels.split(",") if labels else spec.get("labels") or list(getattr(module, "labels", []) or [])
    if not names:
        raise StickerError(f"{name!r} does not say its class names: pass --labels a,b,c (in logit order) or give "
                           f"the module a labels attribute / a FILE.json sidecar with \"labels\".")
    return module.eval(), [str(n).strip() for n in names]


def visual_classifier(model: Classifier, name: str) -> tuple[Classifier, list[str]]:
    """``model`` and its labels if it has a visual branch, else the error naming the models that do."""
    from ..attacks.sticker import StickerError
    from ..models import MODELS
    if "video" not in getattr(model, "modalities", ()):
        visual = ", ".join(n for n, e in MODELS.items() if e.data == "avmini" and n != "audio-only")
        raise StickerError(f"{name!r} has no visual branch (modalities: {', '.join(model.modalities)}). Use an "
                           f"audio-visual model fed raw frames ({visual}) or an image classifier: "
                           f"image:NAME, python:MODULE:FACTORY or torchscript:FILE with --images DIR.")
    return model.eval(), list(model.labels)


def av_split(model: Classifier, data: str | None, split: str, source: str) -> StickerTarget:
    import torch

    from ..attacks.sticker import StickerError, visual_branch_target
    from ..data import AudioDataset
    dataset = AudioDataset.from_path(data, split=split)
    dataset = AudioDataset(dataset.root, [c for c in dataset.clips if source in c.labels])
    if len(dataset) == 0:
        raise StickerError(f"No clips of {source!r} in split {split!r} of {data}.")
    batches = [b for b in dataset.batches(model, 64) if b.ids]
    return visual_branch_target(model, torch.cat([b.audio for b in batches]),
                                torch.cat(cast("list[torch.Tensor]", [b.video for b in batches])))


def load_calibration(root: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``root/clean/*.png``, ``root/photos/*.png`` (same names) and ``root/dots.json`` ({"centres": [[u, v], ...],
    "colours": [[r, g, b], ...]}, all in [0, 1]) as tensors."""
    import torch

    from ..attacks.sticker import StickerError
    dots = root / "dots.json"
    clean_files = sorted(p for p in (root / "clean").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not dots.is_file() or not clean_files:
        raise StickerError(f"--calibration {root} needs clean/*.png, photos/*.png (same file names) and dots.json "
                           f"with the printed centres and colours.")
    missing = [p.name for p in clean_files if not (root / "photos" / p.name).is_file()]
    if missing:
        raise StickerError(f"--calibration: no photo for {', '.join(missing[:5])} in {root / 'photos'}.")
    spec = json.loads(dots.read_text())
    return (read_images(clean_files, None), read_images([root / "photos" / p.name for p in clean_files], None),
            torch.tensor(spec["centres"], dtype=torch.float32), torch.tensor(spec["colours"], dtype=torch.float32))


@click.command()
@click.option("--model", "model_name", required=True,
              help="An audio-visual model fed raw frames (av-early, av-mid, av-late, av-superlate, video-only), or an "
                   "image classifier: image:NAME (e.g. image:mtcnn-onet), python:MODULE:FACTORY or torchscript:FILE "
                   "(nn.Module [B, 3, H, W] in [0, 1] -> logits).")
@click.option("--source", required=True, help="The class whose images the sticker is made for.")
@click.option("--target", "goal", required=True, help="The class the sticker should make the model predict.")
@click.option("--images", type=click.Path(file_okay=False), help="Image classifiers: DIR/<class>/*.png|jpg; sorted by "
              "name, even positions learn the sticker, odd ones are held out.")
@click.option("--labels", help="Image classifiers: class names in logit order, comma-separated (default: the "
              "module's labels attribute or FILE.json).")
@click.option("--image-size", type=click.IntRange(min=4), help="Resize images to N×N first.")
@click.option("--data", help="Audio-visual models: dataset (default: the one the model was trained on).")
@click.option("--learn-split", default="train", show_default=True,
              help="Audio-visual data: split the sticker is learned on.")
@click.option("--split", default="test", show_default=True, help="Audio-visual data: held-out split it is measured on.")
@click.option("--dots", type=click.IntRange(min=1), default=9, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=60, show_default=True)
@click.option("--lr", type=FINITE, default=0.02, show_default=True)
@click.option("--opacity", type=FINITE, default=0.9, show_default=True, help="Peak opacity α_max of a dot.")
@click.option("--radius", type=FINITE, default=choices.STICKER_RADIUS, show_default=True,
              help="Dot radius as a fraction of the image's larger side (25 px at 256²).")
@click.option("--edge", type=FINITE, default=2.0, show_default=True, help="Edge exponent β (larger: sharper edge).")
@click.option("--calibration", type=click.Path(file_okay=False),
              help="Fit opacity, radius, edge and the colour map to photos of real dots first: DIR/clean/*.png, "
                   "DIR/photos/*.png and DIR/dots.json.")
@click.option("--controls", type=click.IntRange(min=1), default=20, show_default=True,
              help="Random-dot stickers in the control.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--out", type=click.Path(file_okay=False),
              help="Output directory (default: robustaudio-runs/sticker-<hash>).")
def sticker(model_name: str, source: str, goal: str, images: str | None, labels: str | None, image_size: int | None,
            data: str | None, learn_split: str, split: str, dots: int, epochs: int, lr: float, opacity: float,
            radius: float, edge: float, calibration: str | None, controls: int, seed: int, device: str,
            out: str | None) -> None:
    """Universal targeted camera sticker: translucent dots on the lens that turn SOURCE into TARGET.

    Writes sticker.json (parameters, targeted success on held-out images, the random-dot control) and
    sticker.png (the sticker over sample frames).

    Examples: robustaudio sticker --model av-late --source speech+person --target speech+cafe;
    robustaudio sticker --model python:mynets:resnet --images photos/ --source cat --target dog
    """
    from ..attacks.sticker import DotOptics, StickerError, fit_dot_optics, image_target
    from ..models import MODELS
    from ..models.base import Classifier
    from ..records import make_folder
    from ..report.sticker import FIGURE_FILE, STICKER_FILE, write_sticker_run
    from ..runner.sticker import StickerSettings, run_sticker
    try:
        torch_device = parse_device(device)
        model, names = load_image_model(model_name, labels)
        model = model.to(torch_device)
        for option, name in (("--source", source), ("--target", goal)):
            if name not in names:
                raise StickerError(f"Unknown class {name!r} for {option}: the model's classes are {', '.join(names)}.")
        if isinstance(model, Classifier):
            if images:
                raise StickerError(f"--images is for image classifiers; {model_name!r} reads its frames from --data.")
            data = data or (MODELS[model_name].data if model_name in MODELS else None)
            learn, held = (av_split(model, data, s, source) for s in (learn_split, split))
            where: dict[str, str | int | None] = {"data": str(data), "learn_split": learn_split, "split": split}
        else:
            if not images:
                raise StickerError(f"{model_name!r} is an image classifier: pass --images DIR with one folder per "
                                   f"class (DIR/{source}/*.png ...).")
            learn_images, held_images = image_folder_split(Path(images), source, image_size)
            learn = image_target(model, learn_images.to(torch_device), names)
            held = image_target(model, held_images.to(torch_device), names)
            where = {"images": str(images), "image_size": image_size}
        optics = DotOptics(alpha_max=opacity, radius=radius, beta=edge)
        fitted = None
        if calibration:
            clean, photos, centres, colours = load_calibration(Path(calibration))
            fit = fit_dot_optics(clean, photos, centres, colours, init=optics)
            optics, fitted = fit.optics, {"rmse": fit.rmse, "photos": len(clean)}
            click.echo(f"fitted optics: {optics} (rmse {fit.rmse:.4f} on {len(clean)} photos)")
        out_dir = Path(out) if out else default_out("sticker", [model_name, source, goal, images, labels, image_size,
                                                                data, learn_split, split, dots, epochs, lr, opacity,
                                                                radius, edge, calibration, controls, seed])
        make_folder(out_dir)  # an unwritable --out fails now, not after the optimisation
        click.echo(f"Optimising a {dots}-dot sticker on {len(learn.images)} images of {source!r} -> {goal!r} "
                   f"({model_name}) -> {out_dir}")
        summary, sticker = run_sticker(learn, held, source, goal, StickerSettings(
            dots=dots, optics=optics, epochs=epochs, lr=lr, controls=controls, seed=seed),
            context={"model": model_name, **where, "calibration": fitted})
        write_sticker_run(out_dir, summary, sticker, held)
    except user_errors(StickerError) as error:
        raise click.ClickException(str(error)) from error
    h, c = summary["held_out"], summary["random_dots"]
    click.echo(f"held-out {source!r} images: clean accuracy {h['clean_accuracy']:.3f}, predicted {goal!r} "
               f"{h['clean_targeted']:.3f} clean, {h['targeted']:.3f} with the sticker; random dots "
               f"{c['targeted_mean']:.3f} (max {c['targeted_max']:.3f} over {c['draws']})")
    click.echo(f"sticker: {out_dir / STICKER_FILE}, picture: {out_dir / FIGURE_FILE}, "
               f"report: {out_dir / 'report.html'}")
