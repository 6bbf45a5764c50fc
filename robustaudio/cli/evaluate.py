"""Evaluation commands: models, attack, noise, compare, report. Each is a few library calls."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from . import choices
from .common import (
    FINITE,
    Progress,
    data_for,
    default_out,
    given,
    model_options,
    parse_corruptions,
    parse_device,
    refuse_unused,
    require_extras,
    run_options,
    user_errors,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..models.base import Classifier
    from ..runner.attack import Threat


@click.command()
def models() -> None:
    """List the models that --model accepts."""
    from ..models import ARCHITECTURES, DEFAULT_MODEL, MODELS
    from ..models.loaders import describe_loaders
    rows = [("name", "architecture", "clean acc.", "on", "description")]
    for name, entry in MODELS.items():
        card = entry.card()
        accuracy = card.get("test_accuracy")
        rows.append((name + (" *" if name == DEFAULT_MODEL else ""), entry.arch,
                     f"{accuracy:.3f}" if accuracy is not None else "-", str(card.get("data", "-")),
                     entry.description))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:  # columns sized to the longest entry, whatever the names
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    click.echo("* the default model")
    click.echo("\nBy prefix, or an architecture with --weights:")
    for line in describe_loaders():
        click.echo(f"  {line}")
    click.echo(f"  architectures: {', '.join(ARCHITECTURES)}")


@click.command()
@model_options
@click.option("--norm", type=click.Choice(["linf", "l2", "l1"]), default="linf", show_default=True)
@click.option("--eps", type=FINITE, multiple=True, help="Absolute budget(s): --eps 0.001 0.002 0.005 gives an ε curve.")
@click.option("--snr-db", type=FINITE, multiple=True, help="Relative budget(s) in dB below the clip.")
@click.option("--minimal", is_flag=True,
              help="Search the minimal ε per clip instead (from the smallest --eps, or a default start).")
@click.option("--walk-steps", type=click.IntRange(min=0), default=None,
              help="With --minimal: boundary-walk steps after the search (default 40; more find smaller ε for "
                   "2 passes per clip each; 0: none).")
@click.option("--backend", type=click.Choice(["native", "art", "foolbox"]), default="native", show_default=True,
              help="Whose attack implementation runs.")
@click.option("--attack", "attack_name", default="reliable", show_default=True,
              help="native: reliable (APGD-CE, then APGD-T, then Square, on the clips still standing: robust only if "
                   "all three fail), pgd (cheaper, weaker), apgd-ce, apgd-t, square (black-box); art: pgd, apgd, cw, "
                   "deepfool, hsj; foolbox: pgd, fmn, deepfool, cw, hsj, boundary.")
@click.option("--queries", type=click.IntRange(min=2), default=None,
              help="Query budget per clip of Square (default 1000 alone, 100 inside reliable).")
@click.option("--targets", type=click.IntRange(min=1), default=None,
              help="Runner-up classes APGD-T aims at in turn, in reliable and apgd-t (default 1, chosen on the train "
                   "split; AutoAttack's standard version uses 9).")
@click.option("--universal", is_flag=True,
              help="Learn one perturbation on --learn-split and add it to every clip of --split.")
@click.option("--learn-split", default="train", show_default=True,
              help="Split the universal perturbation is learned on.")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True,
              help="Universal: passes over --learn-split.")
@click.option("--projection", type=click.Choice(["ball", "per-frame"]), default="ball", show_default=True,
              help="Universal L2: the L2 ball, or the thesis code's per-frame rescaling.")
@click.option("--time-window", type=FINITE, nargs=2, metavar="START END",
              help="Perturb only this window of the clip, in seconds.")
@click.option("--freq-band", type=FINITE, nargs=2, metavar="LOW HIGH",
              help="Perturb only this band, in Hz (waveform: band-pass of δ; feature: those mel bins).")
@click.option("--domain", type=click.Choice(["waveform", "feature"]), default="waveform", show_default=True)
@click.option("--data", type=click.Path(),
              help="Dataset directory (metadata.csv or label folders) or bundled set (minievents, avmini). "
              "Default: the set a bundled model was trained on, else minievents.")
@click.option("--split", default="test", show_default=True, help="Rows of that split when the data has splits.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Gradient steps per restart (default: pgd 10, reliable 100 per APGD member, apgd-* 100).")
@click.option("--restarts", type=click.IntRange(min=1), default=1, show_default=True)
@run_options
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default: robustaudio-runs/<settings>).")
@click.option("--restart", is_flag=True, help="Discard a previous run in --out and start over.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="bf16: attack passes under bfloat16 autocast (faster on GPUs); compare with fp32 on a subset.")
@click.option("--no-sanity", is_flag=True,
              help="Skip the sanity probes (gradients, randomness, large ε, stronger PGD, noise).")
@click.option("--labels", "labels_from", type=click.Choice(["data", "model"]), default="data", show_default=True,
              help="model: take the model's own clean predictions as the labels (unlabelled recordings); robust "
                   "accuracy then reads as the share of predictions that do not flip.")
@click.option("--transfer-to", "transfer_to", metavar="MODEL",
              help="Also score the adversarial audio with this model (black-box transfer, e.g. microwakeword:alexa).")
def attack(model_name: str, weights: str | None, trust_checkpoint: bool, norm: str, eps: tuple[float, ...],
           snr_db: tuple[float, ...], minimal: bool, walk_steps: int | None, backend: str, attack_name: str,
           queries: int | None, targets: int | None, universal: bool, learn_split: str, epochs: int,
           projection: str, time_window: tuple[float, float] | None, freq_band: tuple[float, float] | None,
           domain: str, data: str | None, split: str, steps: int | None, ray_address: str | None, workers: int | None,
           restarts: int, batch_size: int, limit: int | None, seed: int, device: str, out: str | None, restart: bool,
           no_sanity: bool, precision: str, transfer_to: str | None,
           labels_from: str) -> None:
    """PGD attack on every clip; writes records, card.json, report.md and report.html.

    Examples: robustaudio attack --model cnn --norm linf --eps 0.001 0.002 0.005;
    robustaudio attack --norm l2 --minimal
    """
    from ..attacks import ThreatModel
    from ..attacks.backends import check_backend_attack
    from ..attacks.minimal import DEFAULT_START
    from ..data import AudioDataset
    from ..data.audio import fit_clip_to_data
    from ..metrics.transfer import TransferTarget
    from ..models import load_model
    from ..records import file_safe
    from ..report import build_report
    from ..runner import AttackSpec, RunOptions, run_attack
    if universal and (snr_db or not eps):
        raise click.UsageError("--universal needs absolute budgets (--eps): one perturbation is shared by "
                               "all clips, so a per-clip SNR budget does not apply.")
    if universal and minimal:
        raise click.UsageError("Choose one of --universal and --minimal.")
    if walk_steps is not None and not minimal:
        raise click.UsageError("--walk-steps belongs to --minimal (the boundary walk after the minimal-ε search).")
    refuse_unused({option: why for option, why, unused in (
        ("--queries", "sets Square's query budget: use it with --attack square or reliable",
         queries is not None and (backend != "native" or attack_name not in ("square", "reliable"))),
        ("--targets", "sets APGD-T's runner-up classes: use it with --attack reliable or apgd-t",
         targets is not None and (backend != "native" or attack_name not in ("reliable", "apgd-t"))),
        ("--epochs", "belongs to --universal (passes over --learn-split)", given("epochs") and not universal),
        ("--projection", "belongs to --universal", given("projection") and not universal),
        ("--steps", "does not apply to --attack square (a query-based search: set --queries)",
         steps is not None and attack_name == "square"),
        ("--restarts", "does not apply to --attack square (one random search per clip: raise --queries)",
         restarts != 1 and attack_name == "square" and backend == "native"),
        ("--restarts", "does not apply to library attacks (they run once, at their authors' settings)",
         restarts != 1 and backend != "native"),
        ("--workers", "sizes the local Ray cluster: add --ray", workers is not None and not ray_address),
    ) if unused})
    if (backend != "native" or attack_name not in ("reliable", "pgd")) and (universal or minimal):
        raise click.UsageError("--universal and --minimal run native PGD; leave --backend/--attack at their "
                               "defaults (foolbox's minimal-norm attack is --backend foolbox --attack fmn).")
    if backend == "native" and attack_name not in choices.ATTACK_NAMES:
        raise click.UsageError(f"Unknown native attack {attack_name!r}: use one of "
                               f"{', '.join(choices.ATTACK_NAMES)}, or --backend art / foolbox for {attack_name}.")
    if minimal and not eps and not snr_db:
        eps = (DEFAULT_START[norm],)
    if not eps and not snr_db:
        raise click.UsageError("Give a budget: --eps VALUE (absolute) and/or --snr-db VALUE (relative), "
                               "or --minimal to search the smallest one per clip.")
    if transfer_to and domain != "waveform":
        raise click.UsageError("--transfer-to scores adversarial waveforms; a --domain feature perturbation lives "
                               "in the attacked model's own features and cannot be played to another model.")
    try:
        require_extras(ray=bool(ray_address))  # before any model is loaded or file written
        model = load_model(model_name, weights=weights, device=parse_device(device), trust_checkpoint=trust_checkpoint)
        data = data_for(model_name, data)
        dataset = AudioDataset.from_path(data, split=split)
        if labels_from == "data":  # with --labels model the data's labels are never read
            dataset.check_labels(model.labels, model.multilabel)
        fit_clip_to_data(model, [clip.path for clip in dataset.clips])  # hf: the data's clip length, before masks
        bounds = model.bounds if domain == "waveform" else None
        restriction = restrict_options(model, domain, time_window, freq_band)
        threats: list[Threat] = [ThreatModel(norm, eps=e, domain=domain, bounds=bounds, **restriction) for e in eps]
        threats += [ThreatModel(norm, snr_db=s, domain=domain, bounds=bounds, **restriction) for s in snr_db]
        if backend != "native":
            check_backend_attack(backend, attack_name, norm, multilabel=model.multilabel)
        n_clips = min(limit, len(dataset)) if limit else len(dataset)
        learn = None
        if universal:
            learn = AudioDataset.from_path(data, split=learn_split)
            learn.check_labels(model.labels, model.multilabel)
            if learn_split == split:
                click.echo(f"warning: the universal perturbation is learned and evaluated on the same "
                           f"split ({split!r}); use --learn-split train --split test for held-out numbers.",
                           err=True)
        extra = {"weights": str(weights) if weights else None, "split": split, "device": str(device)}
        transfer = None if not transfer_to else TransferTarget(
            load_model(transfer_to, device=parse_device(device), trust_checkpoint=trust_checkpoint), transfer_to, model)
        name = "universal" if universal else "minimal" if minimal else attack_name
        options = {"epochs": epochs, "projection": projection, "frame_length": model.sample_rate // 100} \
            if universal else {}
        if walk_steps is not None:  # only with --minimal (checked above)
            options["refine_steps"] = walk_steps
        spec = AttackSpec(name, backend=backend, steps=steps, restarts=restarts, queries=queries,
                          precision=precision, options=options, **({"targets": targets} if targets else {}))
        out_dir: str | Path | None = out  # a str as given, else the default run directory
        if out_dir is None:
            budget = "-".join(f"{e:g}" for e in eps) or "snr" + "-".join(f"{s:g}" for s in snr_db)
            out_dir = default_out(f"{file_safe(model_name)}-{spec.label}-{norm}-{domain}-{budget}",
                                  [model_name, weights, data, split, norm, domain, eps, snr_db, steps, restarts,
                                   batch_size, limit, seed, minimal, universal, learn_split, epochs, projection,
                                   backend, attack_name, queries, time_window, freq_band, precision, transfer_to]
                                  + ([labels_from] if labels_from != "data" else [])
                                  + ([targets] if targets else []))
        click.echo(f"Attacking {n_clips} clips with {model_name} under "
                   f"{', '.join(t.describe() for t in threats)} -> {out_dir}")
        progress = Progress("attack", n_clips)
        run_options = RunOptions(batch_size=batch_size, seed=seed, device=parse_device(device), limit=limit,
                                 restart=restart, sanity=not no_sanity, labels_from=labels_from,
                                 ray_address=ray_address, workers=workers)
        run_dir = run_attack(model, model_name, dataset, threats, out_dir, spec, run_options, universal_from=learn,
                             transfer=transfer, extra_settings=extra, on_batch=progress)
        progress.close()
        card = build_report(run_dir, trust_checkpoint=trust_checkpoint or "python:" in model_name)  # named here
    except user_errors() as error:
        raise click.ClickException(str(error)) from error
    print_summary(card, run_dir)


def print_summary(card: dict, run_dir: Path) -> None:
    """The run's numbers on the terminal; a natural-noise run in noise words (accuracy under noise, clips
    turned wrong), an attack run as :func:`robustaudio.cli.common.print_summary` says it."""
    from . import common
    conditions = card.get("conditions", [])
    if not conditions or any(c.get("kind") != "noise" for c in conditions):
        common.print_summary(card, run_dir)
        return
    from ..report.headline import noise_curves, severity_text
    click.echo(f"clean accuracy {card['clean_accuracy']['value']:.3f}")
    for name, curve in noise_curves(card).items():
        for c in curve:
            accuracy, rate = c["robust_accuracy"], c["success_rate"]
            wrong = (f", {round(rate['value'] * rate['n'])} of {rate['n']} clean-correct clips turned wrong"
                     if rate["n"] else "")
            click.echo(f"{name} at {severity_text(c['severity'], c['severity_unit'])}: accuracy under noise "
                       f"{accuracy['value']:.3f} [{accuracy['ci95'][0]:.3f}, {accuracy['ci95'][1]:.3f}]{wrong}")
    if card["skipped_clips"]:
        click.echo(f"{card['skipped_clips']} clip(s) skipped: see {run_dir / 'warnings.jsonl'}", err=True)
    click.echo(f"report: {run_dir / 'report.html'}")


def restrict_options(model: Classifier, domain: str, time_window: tuple[float, float] | None,
                     freq_band: tuple[float, float] | None) -> dict:
    """ThreatModel keyword arguments for --time-window and --freq-band."""
    from ..attacks.restrict import band_mask, check_band, time_mask
    mask, labels, options = None, [], {}
    try:
        if time_window:
            mask = time_mask(model, domain, *time_window)
            labels.append(f"t={time_window[0]:g}-{time_window[1]:g}s")
        if freq_band and domain == "feature":
            band = band_mask(model, *freq_band)
            mask = band if mask is None else mask * band
            labels.append(f"f={freq_band[0]:g}-{freq_band[1]:g}Hz")
        elif freq_band:
            check_band(*freq_band, model.sample_rate)
            options = {"band_hz": tuple(freq_band), "sample_rate": model.sample_rate}
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--time-window / --freq-band") from error
    if mask is not None:
        options.update(mask=mask, restriction="-".join(labels))
    return options


@click.command()
@model_options
@click.option("--corruption", multiple=True,
              help="Corruption(s) to run (default: the whole suite); see the noise report.")
@click.option("--data", type=click.Path(), help="Dataset directory or bundled set. Default: the set a bundled model "
              "was trained on, else minievents.")
@click.option("--split", default="test", show_default=True)
@run_options
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default: robustaudio-runs/noise-<hash>).")
@click.option("--restart", is_flag=True, help="Discard a previous run in --out and start over.")
def noise(model_name: str, weights: str | None, trust_checkpoint: bool, corruption: tuple[str, ...], data: str | None,
          split: str, batch_size: int, limit: int | None, seed: int, device: str, out: str | None,
          restart: bool, ray_address: str | None, workers: int | None) -> None:
    """Natural-noise suite: accuracy under each corruption at each severity, as records and a report.

    Example: robustaudio noise --model cnn --corruption gaussian_snr --corruption reverb
    """
    from ..data import AudioDataset
    from ..models import load_model
    from ..report import build_report
    from ..runner import RunOptions, run_noise
    refuse_unused({"--workers": "sizes the local Ray cluster: add --ray"} if workers is not None and not ray_address
                  else {})
    try:
        corruptions = parse_corruptions(corruption)
        require_extras(rooms=any(c.needs_rooms for c in corruptions.values()), ray=bool(ray_address))
        model = load_model(model_name, weights=weights, device=parse_device(device), trust_checkpoint=trust_checkpoint)
        data = data_for(model_name, data)
        dataset = AudioDataset.from_path(data, split=split)
        dataset.check_labels(model.labels, model.multilabel)
        out_dir = Path(out) if out else default_out(f"{model_name}-noise", [model_name, weights, data, split,
                                                                             corruption, batch_size, limit, seed])
        n_clips = min(limit, len(dataset)) if limit else len(dataset)
        click.echo(f"{n_clips} clips with {model_name} under {', '.join(corruptions)} -> {out_dir}")
        progress = Progress("noise", n_clips)
        options = RunOptions(batch_size=batch_size, seed=seed, device=parse_device(device), limit=limit,
                             restart=restart, ray_address=ray_address, workers=workers)
        run_dir = run_noise(model, model_name, dataset, corruptions, out_dir, options, on_batch=progress)
        progress.close()
        card = build_report(run_dir)  # a noise run recomputes no examples
    except user_errors() as error:
        raise click.ClickException(str(error)) from error
    print_summary(card, run_dir)


@click.command()
@click.option("--models", "model_names", multiple=True, required=True,
              help="Models to compare: --models cnn ast crnn-mini taltrans-mini")
@click.option("--norm", type=click.Choice(["linf", "l2", "l1"]), default="linf", show_default=True)
@click.option("--eps", type=FINITE, multiple=True, help="ε curve (default 0.0005 0.001 0.002 0.005 for L∞).")
@click.option("--table-eps", type=FINITE, help="The ε of the table's robust-accuracy column (default: mid --eps).")
@click.option("--video-eps", type=FINITE, multiple=True,
              help="Audio-visual data: the video ε curve for --norm, pixels in [0, 1] (repeat the option; default "
                   "4/255 8/255 16/255 32/255 for L∞).")
@click.option("--corruption", multiple=True, help="Corruptions (default: the whole suite).")
@click.option("--data", type=click.Path(), help="Dataset directory or bundled set (minievents, avmini). Default: the "
                                                 "set the models were trained on.")
@click.option("--split", default="test", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=10, show_default=True)
@run_options
@click.option("--out", type=click.Path(file_okay=False),
              help="Output directory (default: robustaudio-runs/compare-<hash>).")
@click.option("--restart", is_flag=True, help="Discard the runs and metrics already in --out and start over.")
def compare(model_names: tuple[str, ...], norm: str, eps: tuple[float, ...], table_eps: float | None,
            video_eps: tuple[float, ...], corruption: tuple[str, ...], data: str | None, split: str, steps: int,
            batch_size: int, limit: int | None, seed: int,
            device: str, out: str | None, restart: bool, ray_address: str | None, workers: int | None) -> None:
    """Models side by side: clean, natural noise, PGD ε curve, density, convexity, sharpness, rank correlations.

    On audio-visual data (e.g. the av-* models on avmini) also modality-wise attacks: audio only, video
    only and both (separate budgets), per norm, minimal ε per modality, and the fusion-theorem check.

    Examples: robustaudio compare --models cnn ast crnn-mini taltrans-mini --eps 0.0005 0.001 0.002 0.005;
    robustaudio compare --models av-early av-mid av-late av-superlate audio-only video-only
    """
    from ..data import AudioDataset
    from ..models import MODELS, ModelError, load_model
    from ..models.loaders import split_prefix
    from ..models.registry import unknown_model_message
    from ..runner import RunOptions
    from ..studies.compare import AUDIO_EPS, VIDEO_EPS, FusionPlan, run_comparison
    refuse_unused({"--workers": "sizes the local Ray cluster: add --ray"} if workers is not None and not ray_address
                  else {})

    eps = eps or AUDIO_EPS[norm]
    if table_eps is not None and table_eps not in eps:
        raise click.BadParameter(f"--table-eps {table_eps} is not one of --eps {list(eps)}.", param_hint="--table-eps")
    try:
        require_extras(rooms=any(c.needs_rooms for c in parse_corruptions(corruption).values()),
                       ray=bool(ray_address))
        for name in model_names:  # fail on a bad name before hours of work on the others
            if name not in MODELS and split_prefix(name) is None:
                raise ModelError(unknown_model_message(name))
        if data is None:
            trained_on = sorted(cast(set[str], {data_for(name, None) for name in model_names} - {None}))
            if len(trained_on) > 1:
                raise click.UsageError(f"The models were trained on different data ({', '.join(trained_on)}): pick "
                                       f"one with --data.")
            data = trained_on[0] if trained_on else None
        dataset = AudioDataset.from_path(data, split=split)
        if video_eps and not dataset.has_video:
            raise click.UsageError(f"--video-eps sets the video budgets of audio-visual data, and {dataset.root} has "
                                   f"no video: leave it out, or use audio-visual data (e.g. --data avmini).")
        out_dir = Path(out) if out else default_out("compare", [model_names, norm, eps, video_eps, corruption, data,
                                                                 split, steps, batch_size, limit, seed])
        plan = FusionPlan(minimal_norms=(norm,), video_eps={**VIDEO_EPS,
                                                            **({norm: tuple(sorted(video_eps))} if video_eps else {})})
        loaders = {name: cast("Callable[[], Classifier]",
                              lambda name=name: load_model(name, device=parse_device(device)))
                   for name in model_names}
        options = RunOptions(batch_size=batch_size, seed=seed, device=parse_device(device), limit=limit,
                             restart=restart, ray_address=ray_address, workers=workers)
        comparison = run_comparison(loaders, dataset, out_dir, norm=norm, eps=tuple(sorted(eps)),
                                    corruptions=parse_corruptions(corruption), steps=steps, options=options,
                                    table_eps=table_eps, fusion=plan, progress=click.echo)
    except user_errors() as error:
        raise click.ClickException(str(error)) from error
    for name, s in comparison["models"].items():
        robust = "–" if s["robust_accuracy"] is None else f"{s['robust_accuracy']:.3f}"
        click.echo(f"{name}: clean {s['clean_accuracy']:.3f}, noise mean {s['noise_mean']:.3f}, "
                   f"robust {robust} at ε={comparison['table_eps']:g}")
    for norm_name, check in comparison.get("fusion", {}).get("theorem", {}).items():
        for name, r in check["models"].items():
            click.echo(f"theorem check ({norm_name}): {name} flipped by an audio-only attack below "
                       f"{check['reference']}'s minimal ε on {r['cases']} of {r['clips_correct_for_both']} clips")
    c = comparison["correlations"]["noise (mean) vs adversarial"]
    if c["spearman"] is not None:
        click.echo(f"noise vs adversarial across models: Spearman {c['spearman']:.2f} (p {c['spearman_p']:.2f}), "
                   f"Kendall {c['kendall']:.2f}")
    click.echo(f"report: {out_dir / 'compare.html'}")


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--trust-checkpoint", is_flag=True,
              help="Let the model that RUN_DIR's run.json names run code (python:MODULE:FACTORY) or load pickled "
                   "weights, to recompute the examples to listen to. Only for run folders you trust.")
def report(run_dir: str, trust_checkpoint: bool) -> None:
    """Re-render card.json, report.md and report.html of RUN_DIR from its records."""
    from ..report import build_report, read_records
    from ..runner import RUN_FILE
    if not (Path(run_dir) / RUN_FILE).is_file():
        made_by = next((command for command, marker in (("defend", "summary.json"), ("certify", "defenses.json"),
                                                         ("compare", "compare.json"), ("sticker", "sticker.json"),
                                                         ("jam", "card.json"))
                        if (Path(run_dir) / marker).is_file()), None)
        if made_by:
            raise click.ClickException(f"{run_dir} was made by `robustaudio {made_by}`, which writes its own report: "
                                       f"rerun that command with the same --out (finished work is kept).")
        raise click.ClickException(f"{run_dir} is not a run directory (no {RUN_FILE}); pass the --out "
                                   f"of an earlier `robustaudio attack` or `noise`.")
    if not len(read_records(run_dir)):
        raise click.ClickException(f"{run_dir} holds no finished batch yet: rerun the command that made it (it "
                                   f"resumes), then the report.")
    from ..records import NOT_WRITABLE
    try:
        written = build_report(run_dir, trust_checkpoint=trust_checkpoint)
    except OSError as error:  # report writes into RUN_DIR itself, so "choose a writable --out" would name no option
        if error.errno not in NOT_WRITABLE:
            raise
        raise click.ClickException(f"Cannot write the report into {run_dir} ({os.strerror(error.errno)}): make it "
                                   f"writable, or copy the run (cp -r {run_dir} COPY) and run `robustaudio report "
                                   f"COPY`.") from error
    print_summary(written, Path(run_dir))


