"""Defense and certification commands: train, train-denoiser, certify, defend. Each is a few library calls."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from . import choices
from .common import (
    FINITE,
    SEED,
    Progress,
    default_out,
    flag,
    given,
    model_options,
    parse_device,
    refuse_unused,
    user_errors,
)

if TYPE_CHECKING:
    from collections.abc import Callable


def defense_errors() -> tuple[type[Exception], ...]:
    """User mistakes of the training and certification commands (see :func:`.common.user_errors`)."""
    from ..defenses.denoiser import DenoiserError
    from ..defenses.smoothing import SmoothingError
    from ..defenses.training import TrainingError

    return user_errors(TrainingError, DenoiserError, SmoothingError)


def _fail(error: Exception) -> click.ClickException:
    return click.ClickException(str(error))


@click.command()
@click.option("--model", "model_name", default=choices.DEFAULT_MODEL, show_default=True,
              help="A registered model (trained with its bundled recipe) or a zoo / fusion architecture.")
@click.option("--method", type=click.Choice(choices.TRAINING_METHODS), default="plain", show_default=True)
@click.option("--data", type=click.Path(), help="Dataset directory with a split column. Default: bundled minievents.")
@click.option("--train-split", default="train", show_default=True)
@click.option("--test-split", default="test", show_default=True, help="Split of the card's clean accuracy.")
@click.option("--epochs", type=click.IntRange(min=1), help="Default: the model's recipe (40 for the cnn).")
@click.option("--lr", type=FINITE, help="Peak learning rate of the one-cycle schedule. Default: the recipe.")
@click.option("--weight-decay", type=FINITE, help="AdamW weight decay. Default: the recipe.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Default: the recipe.")
@click.option("--no-augment", is_flag=True, help="No gain / shift / white-noise augmentation.")
@click.option("--mixup-alpha", type=FINITE, default=0.2, show_default=True, help="Beta(α, α) of mixup.")
@click.option("--mixup-space", type=click.Choice(choices.MIXUP_SPACES), default="input", show_default=True,
              help="Mix waveforms (input) or every modality's embedding before the head (latent).")
@click.option("--mixup-weighting", type=click.Choice(choices.MIXUP_WEIGHTINGS), default="none", show_default=True,
              help="Draw partners more often from classes of low latent density / convexity.")
@click.option("--mixup-modality", default="audio", show_default=True, help="Whose latent metrics weight the classes.")
@click.option("--mixup-refresh", type=click.IntRange(min=1), default=5, show_default=True,
              help="Epochs between class-weight updates (the first epochs are unweighted).")
@click.option("--adv-norm", type=click.Choice(["linf", "l2", "l1"]), default="linf", show_default=True)
@click.option("--adv-eps", type=FINITE, default=0.002, show_default=True, help="PGD budget of adversarial training.")
@click.option("--adv-domain", type=click.Choice(["waveform", "feature"]), default="waveform", show_default=True)
@click.option("--adv-steps", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--noise-sigma", type=FINITE, default=0.25, show_default=True,
              help="Noise std for --method noise, in --noise-domain units.")
@click.option("--noise-domain", type=click.Choice(choices.NOISE_DOMAINS), default="feature", show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Checkpoint file (card beside it, .json). "
              "Default: robustaudio-runs/train/<model>-<method>.pt")
def train(model_name: str, method: str, data: str | None, train_split: str, test_split: str, epochs: int | None,
          lr: float | None, weight_decay: float | None, batch_size: int | None, no_augment: bool,
          mixup_alpha: float, mixup_space: str, mixup_weighting: str, mixup_modality: str, mixup_refresh: int,
          adv_norm: str, adv_eps: float, adv_domain: str,
          adv_steps: int,
          noise_sigma: float, noise_domain: str, seed: int, device: str, out: str | None) -> None:
    """Train a model: plain, mixup, PGD adversarial training or Gaussian noise; writes a checkpoint and its card.

    Examples: robustaudio train --model cnn --method mixup --mixup-space latent --mixup-weighting convexity;
    robustaudio train --model cnn --method adversarial --adv-eps 0.002
    """
    from ..data import AudioDataset
    from ..defenses.training import recipe_for, train_classifier
    from ..records import file_safe, writable_file
    belongs = {"mixup": ("mixup_alpha", "mixup_space", "mixup_weighting", "mixup_modality", "mixup_refresh"),
               "adversarial": ("adv_norm", "adv_eps", "adv_domain", "adv_steps"),
               "noise": ("noise_sigma", "noise_domain")}
    refuse_unused({flag(name): f"belongs to --method {owner} (this is --method {method})"
                   for owner, names in belongs.items() if owner != method for name in names if given(name)})
    try:
        arch, config, settings = recipe_for(model_name)
        overrides: dict[str, Any] = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size}
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None}, method=method,
                           augment=not no_augment, mixup_alpha=mixup_alpha, mixup_space=mixup_space,
                           mixup_weighting=mixup_weighting, mixup_modality=mixup_modality, mixup_refresh=mixup_refresh,
                           adv_norm=adv_norm,
                           adv_eps=adv_eps, adv_domain=adv_domain, adv_steps=adv_steps, noise_sigma=noise_sigma,
                           noise_domain=noise_domain, seed=seed)
        settings.check()
        out_file = writable_file(Path(out) if out else
                                 Path("robustaudio-runs") / "train" / f"{file_safe(model_name)}-{method}.pt")
        dataset = AudioDataset.from_path(data)
        click.echo(f"Training {model_name} ({arch}) with {settings.describe()} for {settings.epochs} epochs "
                   f"-> {out_file}")
        result = train_classifier(arch, config, dataset, settings, name=model_name, train_split=train_split,
                                  test_split=test_split, device=parse_device(device), log=click.echo)
        card = result.save(out_file)
    except defense_errors() as error:
        raise _fail(error) from error
    low, high = card["test_accuracy_ci95"]
    click.echo(f"clean test accuracy {card['test_accuracy']:.3f} [{low:.3f}, {high:.3f}] on {card['test_clips']} "
               f"clips; training {card['training_seconds']:.1f} s")
    click.echo(f"checkpoint: {out_file} (use: --model {arch} --weights {out_file}); "
               f"card: {out_file.with_suffix('.json')}")


@click.command("train-denoiser")
@model_options
@click.option("--domain", type=click.Choice(["feature", "waveform"]), default="feature", show_default=True,
              help="Denoise the model's normalised log-mel (feature) or the waveform.")
@click.option("--data", type=click.Path(), help="Dataset directory with a split column. Default: bundled minievents.")
@click.option("--train-split", default="train", show_default=True)
@click.option("--test-split", default="test", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=60, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=FINITE, default=2e-3, show_default=True)
@click.option("--sigma-max", type=FINITE, default=1.0, show_default=True,
              help="Largest noise std it will be used at, in --domain units; trained on t in [0, t*(sigma-max)].")
@click.option("--channels", default="16,32,64", show_default=True, help="UNet block widths, comma-separated.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Checkpoint file (card beside it). "
              "Default: robustaudio-runs/denoisers/<model>-<domain>.pt")
def train_denoiser_command(model_name: str, weights: str | None, trust_checkpoint: bool, domain: str,
                           data: str | None, train_split: str, test_split: str, epochs: int,
                           batch_size: int, lr: float, sigma_max: float, channels: str, seed: int, device: str,
                           out: str | None) -> None:
    """Train a diffusion denoiser (diffusers UNet + DDPM scheduler) for a model's input domain.

    Example: robustaudio train-denoiser --model cnn --domain feature --sigma-max 1.0
    """
    from ..data import AudioDataset
    from ..defenses.denoiser import DenoiserSettings, train_denoiser
    from ..models import load_model
    from ..records import file_safe, writable_file
    try:
        widths = tuple(int(c) for c in channels.split(","))
    except ValueError as error:
        raise click.BadParameter(f"{channels!r} is not a comma-separated list of integers.",
                                 param_hint="--channels") from error
    if not sigma_max > 0:
        raise click.BadParameter(f"must be > 0, got {sigma_max}.", param_hint="--sigma-max")
    try:
        model = load_model(model_name, weights=weights, device=parse_device(device), trust_checkpoint=trust_checkpoint)
        settings = DenoiserSettings(domain=domain, epochs=epochs, batch_size=batch_size, lr=lr, sigma_max=sigma_max,
                                    channels=widths, seed=seed)
        out_file = writable_file(Path(out) if out else
                                 Path("robustaudio-runs") / "denoisers" / f"{file_safe(model_name)}-{domain}.pt")
        click.echo(f"Training a {domain} denoiser for {model_name} (σ ≤ {sigma_max:g}) -> {out_file}")
        denoiser, card = train_denoiser(model, AudioDataset.from_path(data), settings, model_name=model_name,
                                        train_split=train_split, test_split=test_split, device=parse_device(device),
                                        log=click.echo, name=out_file.stem)
        denoiser.save(out_file, card)
    except defense_errors() as error:
        raise _fail(error) from error
    for row in card["test_denoising"]:
        click.echo(f"σ={row['sigma']:g}: test MSE {row['noisy_mse']:.4f} noisy -> {row['denoised_mse']:.4f} denoised")
    click.echo(f"denoiser: {out_file} ({card['training_seconds']:.0f} s); "
               f"use: robustaudio certify --denoiser {out_file}")


@click.command()
@model_options
@click.option("--denoiser", help="Denoised smoothing with this denoiser (a file, or the bundled minievents-logmel).")
@click.option("--sigma", type=FINITE, multiple=True, required=True,
              help="Noise std in the smoothed domain (repeat for several: --sigma 0.25 --sigma 0.5).")
@click.option("--domain", type=click.Choice(["waveform", "feature"]),
              help="Smoothed space. Default: the denoiser's, else waveform.")
@click.option("--n0", type=click.IntRange(min=1), default=100, show_default=True, help="Selection samples.")
@click.option("--n", "n", type=click.IntRange(min=1), default=10000, show_default=True, help="Estimation samples.")
@click.option("--alpha", type=FINITE, default=0.001, show_default=True, help="Failure probability of each certificate.")
@click.option("--noise-batch", type=click.IntRange(min=1), default=250, show_default=True,
              help="Noisy copies per forward pass.")
@click.option("--data", type=click.Path(), help="Dataset directory. Default: bundled minievents.")
@click.option("--split", default="test", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="A seeded sample of N clips, stratified over labels.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--out", type=click.Path(file_okay=False),
              help="Output directory (default: robustaudio-runs/certify-<hash>).")
@click.option("--restart", is_flag=True, help="Discard the certificates already in --out and start over.")
def certify(model_name: str, weights: str | None, trust_checkpoint: bool, denoiser: str | None,
            sigma: tuple[float, ...], domain: str | None, n0: int, n: int, alpha: float, noise_batch: int,
            data: str | None, split: str,
            limit: int | None, seed: int, device: str, out: str | None, restart: bool) -> None:
    """Certify every clip with randomized smoothing (CERTIFY of Cohen et al.), optionally denoised.

    Example: robustaudio certify --model cnn --denoiser minievents-logmel --sigma 0.25 --n 1000
    """
    from ..data import AudioDataset
    from ..defenses.denoiser import load_denoiser
    from ..defenses.smoothing import Smooth, certify_clips, check_settings, keep_warnings, usable_clips
    from ..models import load_model
    from ..records import WARNINGS_FILE, make_folder
    from ..report.defenses import build_defenses_report
    from ..report.listen import smoothing_examples
    try:
        for s in sigma:  # before any model is loaded or folder made
            check_settings(s, n0, n, alpha)
        model = load_model(model_name, weights=weights, device=parse_device(device), trust_checkpoint=trust_checkpoint)
        den = load_denoiser(denoiser, device=parse_device(device), trust_checkpoint=trust_checkpoint) if denoiser \
            else None
        smooths = [Smooth(model, s, domain=domain, denoiser=den) for s in sigma]  # checks σ, domain, denoiser
        dataset = AudioDataset.from_path(data, split=split)
        dataset.check_labels(model.labels, model.multilabel)
        out_dir = Path(out) if out else default_out("certify", [model_name, weights, denoiser, sigma, domain, n0, n,
                                                                alpha, data, split, limit, seed])
        make_folder(out_dir)
        clips, warnings = usable_clips(dataset, model, limit)
        skipped = keep_warnings(out_dir, warnings)
        if skipped:
            click.echo(f"{len(skipped)} clip(s) skipped ({skipped[0]['message']}): see {out_dir / WARNINGS_FILE}",
                       err=True)
        curves = []
        for smooth in smooths:
            name = f"sigma-{smooth.sigma:g}-{'denoised' if den is not None else 'plain'}"
            rows_file = out_dir / f"{name}.jsonl"
            if restart:
                rows_file.unlink(missing_ok=True)
            click.echo(f"CERTIFY {len(clips)} clips, {smooth.describe()}, n0={n0}, n={n}, α={alpha:g} -> "
                       f"{rows_file}")
            progress = Progress(name, len(clips))
            rows = certify_clips(smooth, clips, n0=n0, n=n, alpha=alpha, batch_size=noise_batch, seed=seed,
                                 rows_file=rows_file,
                                 source={"model": model_name, "weights": weights, "data": str(dataset.root),
                                         "split": split, "limit": limit},
                                 on_clip=cast("Callable[[dict, bool], None]",
                                              lambda row, kept, progress=progress: progress(None, 1, kept)))
            progress.close()
            curves.append({"name": name, "sigma": smooth.sigma, "domain": smooth.domain,
                           "denoiser": den.name if den is not None else None, "description": smooth.describe(),
                           "n0": n0, "n": n, "alpha": alpha, "rows": rows, "seconds": sum(r["seconds"] for r in rows)})
        listen = smoothing_examples(smooths[0], clips, curves[0]["rows"], out_dir, seed=seed) if curves else None
        document = build_defenses_report(out_dir, {"model": model_name, "data": str(dataset.root), "split": split,
                                                   "seed": seed, "rows": [], "certification": curves}, listen)
    except defense_errors() as error:
        raise _fail(error) from error
    for s in document["certification"]:
        levels = ", ".join(f"{a:.3f} at r={r:g}" for r, a in zip(s["radii"], s["certified_accuracy"]))
        click.echo(f"{s['description']}: certified accuracy {levels}")
    click.echo(f"report: {out_dir / 'defenses.html'}")


@click.command()
@click.option("--model", "model_name", default=choices.DEFAULT_MODEL, show_default=True, help="A registered model.")
@click.option("--norm", type=click.Choice(["linf", "l2", "l1"]), default="linf", show_default=True)
@click.option("--eps", type=FINITE, default=0.002, show_default=True, help="Budget of the table's attack (waveform).")
@click.option("--steps", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--restarts", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--defenses", "rows", multiple=True, type=click.Choice(choices.DEFENSE_ROWS), help="Rows (default: all).")
@click.option("--retrain", is_flag=True, help="Train every row here instead of using bundled defended checkpoints.")
@click.option("--denoiser", default="minievents-logmel", show_default=True, help="Purifier and smoothing denoiser.")
@click.option("--purify-sigma", type=FINITE, default=0.25, show_default=True, help="Purification noise (sets t*).")
@click.option("--purify-steps", type=click.IntRange(min=1), default=2, show_default=True, help="Reverse steps.")
@click.option("--eot", type=click.IntRange(min=1), default=8, show_default=True, help="Purifier draws per attack step.")
@click.option("--sigma", type=FINITE, multiple=True, help="Certification σ (repeat; default 0.25 and 0.5; 0 to skip).")
@click.option("--n0", type=click.IntRange(min=1), default=50, show_default=True, help="CERTIFY selection samples.")
@click.option("--n", "n", type=click.IntRange(min=1), default=250, show_default=True,
              help="CERTIFY estimation samples.")
@click.option("--alpha", type=FINITE, default=0.001, show_default=True)
@click.option("--certify-limit", type=click.IntRange(min=1),
              help="Certify a stratified sample of N clips (default: --limit).")
@click.option("--data", type=click.Path(), help="Dataset directory. Default: bundled minievents.")
@click.option("--split", default="test", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="A seeded sample of N clips, stratified over labels.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--out", type=click.Path(file_okay=False),
              help="Output directory (default: robustaudio-runs/defend-<hash>).")
@click.option("--restart", is_flag=True,
              help="Discard the attack runs and certificates already in --out and start over (--retrain: the models).")
def defend(model_name: str, norm: str, eps: float, steps: int, restarts: int, rows: tuple[str, ...], retrain: bool,
           denoiser: str, purify_sigma: float, purify_steps: int, eot: int, sigma: tuple[float, ...],
           n0: int, n: int, alpha: float, certify_limit: int | None, data: str | None, split: str, batch_size: int,
           limit: int | None, seed: int, device: str, out: str | None, restart: bool) -> None:
    """The defenses table (none / mixup / adversarial training / purification) and certified-accuracy curves.

    Example: robustaudio defend --model cnn --eps 0.002 --out runs/defenses
    """
    from ..attacks import ThreatModel
    from ..records import write_json_atomic
    from ..report.defenses import build_defenses_report
    from ..studies.defenses import CertifySettings, PurifySettings, run_defenses
    sigmas = tuple(s for s in (sigma or (0.25, 0.5)) if s != 0)
    purifying = "purification" in (rows or choices.DEFENSE_ROWS)
    refuse_unused({option: why for option, why, unused in (
        *((flag(name), "sets the purification row: add --defenses purification",
           given(name) and not purifying) for name in ("eot", "purify_sigma", "purify_steps")),
        ("--denoiser", "serves purification and certification, and this command runs neither",
         given("denoiser") and not purifying and not sigmas),
        *((flag(name), "sets the certification, which --sigma 0 skips", given(name) and not sigmas)
          for name in ("n0", "n", "alpha", "certify_limit")),
    ) if unused})
    if not purify_sigma > 0:
        raise click.BadParameter(f"must be > 0 (the purifier's noise level), got {purify_sigma}.",
                                 param_hint="--purify-sigma")
    try:
        threat = ThreatModel(norm, eps=eps)
        out_dir = Path(out) if out else default_out("defend", [model_name, norm, eps, steps, restarts, rows, retrain,
                                                               denoiser, purify_sigma, purify_steps, eot, sigmas, n0,
                                                               n, alpha, certify_limit, data, split, batch_size, limit,
                                                               seed])
        summary = run_defenses(model_name, threat, out_dir, data=data, split=split, steps=steps, restarts=restarts,
                               batch_size=batch_size, limit=limit, seed=seed, device=parse_device(device),
                               retrain=retrain, rows=tuple(rows) or choices.DEFENSE_ROWS, denoiser=denoiser,
                               purify=PurifySettings(sigma=purify_sigma, steps=purify_steps, eot=eot),
                               certify=CertifySettings(sigmas=sigmas, n0=n0, n=n, alpha=alpha, limit=certify_limit),
                               restart=restart, log=click.echo)
        write_json_atomic(out_dir / "summary.json", summary, default=str)
        document = build_defenses_report(out_dir, summary)
    except defense_errors() as error:
        raise _fail(error) from error
    for row in document["rows"]:
        click.echo(f"{row['defense']:13s} clean {row['clean_accuracy']['value']:.3f}  robust "
                   f"{row['robust_accuracy']['value']:.3f}  training {row['training_seconds'] or float('nan'):.0f} s")
    for s in document["certification"]:
        click.echo(f"{s['description']}: certified accuracy "
                   + ", ".join(f"{a:.3f}@{r:g}" for r, a in zip(s["radii"], s["certified_accuracy"])))
    if document["closing_note"]:
        click.echo(document["closing_note"])
    click.echo(f"report: {out_dir / 'defenses.html'}")

