"""The defenses study behind ``robustaudio defend``: train or load each defense, attack it, certify.

Rows of the table (one model, one dataset, one threat model):

- ``none``: the model as trained by its recipe (the bundled checkpoint, or retrained here);
- ``mixup``: Beta(0.2, 0.2) mixup of the waveforms, same recipe otherwise;
- ``mixup-latent``: mixup of the embeddings before the head, partners weighted towards classes
  of low latent convexity (thesis ch. 11);
- ``adversarial``: PGD adversarial training at the table's threat model (5 steps);
- ``purification``: ``none`` behind diffusion purification (:class:`~.purification.Purified`).

Every row is attacked by :func:`robustaudio.runner.run_attack` (records, card and report per
row). The purification row is attacked adaptively: PGD on :class:`~.purification.EOT` of the
purified model (gradients through the UNet and every sampler step, averaged over the sampler's
noise), and its clean and robust accuracies are those of that EOT average. Training cost is the
wall time of the training loop from each checkpoint's card (for purification, the denoiser's).

The certification part runs CERTIFY (:mod:`~.smoothing`) on the ``none`` model in the denoiser's
domain at each σ, with and without the denoiser (denoised smoothing, Carlini et al. 2023).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..attacks import ThreatModel
from ..data import AudioDataset
from ..defenses.denoiser import BUNDLED_DENOISERS, Denoiser, load_denoiser
from ..defenses.purification import EOT, Purified
from ..defenses.smoothing import Smooth, certify_clips, check_settings, keep_warnings, usable_clips
from ..defenses.training import TrainSettings, recipe_for, train_classifier
from ..models import MODELS, load_model
from ..models.registry import BUNDLED_DIR, ModelError, unknown_model_message
from ..records import WARNINGS_FILE, file_safe, make_folder
from ..report import build_report
from ..runner import AttackSpec, RunOptions, run_attack

TRAINED_DEFENSES = ("mixup", "mixup-latent", "adversarial")
ROWS = ("none", *TRAINED_DEFENSES, "purification")


@dataclass(frozen=True)
class PurifySettings:
    """The purification row: the undefended classifier behind :class:`~.purification.Purified` (diffuse to noise
    ``sigma`` in the denoiser's input units, ``steps`` reverse steps), deployed and attacked as the mean of ``eot``
    purifications (:class:`~.purification.EOT`)."""

    sigma: float = 0.25
    steps: int = 2
    eot: int = 8


@dataclass(frozen=True)
class CertifySettings:
    """CERTIFY (:func:`~.smoothing.certify_clips`) at each noise level of ``sigmas`` (the denoiser's input units;
    empty: no certification): ``n0`` noise draws to guess the class, ``n`` to bound its probability, each
    certificate failing with probability at most ``alpha``; ``batch_size`` noisy copies per forward pass; ``limit``
    clips (None: every clip, or the study's own limit)."""

    sigmas: tuple[float, ...] = (0.25, 0.5)
    n0: int = 50
    n: int = 250
    alpha: float = 0.001
    batch_size: int = 250
    limit: int | None = None


def defense_settings(defense: str, base: TrainSettings, threat: ThreatModel) -> TrainSettings:
    """The training settings of each trained row: the model's recipe ``base`` plus the defense."""
    if defense == "none":
        return replace(base, method="plain")
    if defense == "mixup":
        return replace(base, method="mixup", mixup_alpha=0.2, mixup_space="input")
    if defense == "mixup-latent":
        return replace(base, method="mixup", mixup_alpha=0.2, mixup_space="latent", mixup_weighting="convexity")
    if defense == "adversarial":
        if threat.eps is None:
            raise ValueError("Adversarial training needs an absolute budget (--eps), not an SNR.")
        return replace(base, method="adversarial", adv_norm=threat.norm, adv_eps=threat.eps, adv_domain=threat.domain,
                       adv_steps=5)
    raise ValueError(f"Unknown defense {defense!r}; trained defenses: none, {', '.join(TRAINED_DEFENSES)}.")


def bundled_defended(model_name: str, defense: str) -> Path:
    """Where a bundled defended checkpoint of ``model_name`` lives: ``minievents-<model>-<defense>.pt``."""
    return BUNDLED_DIR / f"minievents-{file_safe(model_name)}-{defense}.pt"


def _card(path: Path) -> dict:
    """The card beside a checkpoint (``{}`` if none, or if it is unreadable: the checkpoint is then retrained, not
    trusted)."""
    card_path = path.with_suffix(".json")
    try:
        card = json.loads(card_path.read_text()) if card_path.exists() else {}
    except (ValueError, UnicodeDecodeError):  # cut off by a crash, or not ours
        return {}
    return card if isinstance(card, dict) else {}


def obtain_checkpoint(model_name: str, defense: str, settings: TrainSettings, dataset: AudioDataset, out: Path, *,
                      retrain: bool, device: str | torch.device, log: Callable[[str], None]) -> tuple[str | None, dict]:
    """``(weights path or None for the bundled model, card)`` of one trained row.

    Without ``retrain``: the bundled model (``none``) or a bundled defended checkpoint whose card has
    exactly these settings; otherwise (or with ``retrain``) train into ``out/train/<defense>.pt``,
    reusing a checkpoint there whose card has these settings.
    """
    wanted = asdict(settings)
    if not retrain and defense == "none" and model_name in MODELS:
        return None, MODELS[model_name].card()
    bundled = bundled_defended(model_name, defense)
    if not retrain and bundled.is_file() and _card(bundled).get("settings") == wanted:
        return str(bundled), _card(bundled)
    path = out / "train" / f"{defense}.pt"
    if path.is_file() and _card(path).get("settings") == wanted:
        log(f"{defense}: reusing {path}")
        return str(path), _card(path)
    arch, config, _ = recipe_for(model_name)
    log(f"{defense}: training {model_name} with {settings.describe()} -> {path}")
    result = train_classifier(arch, config, dataset, settings, name=model_name, device=device, log=log)
    card = result.save(path, defense=defense)
    return str(path), card


def attack_dir(out: Path, threat: ThreatModel, steps: int, restarts: int) -> Path:
    """Where the rows' attack runs go: one folder per attack setting, one run directory per row inside."""
    return Path(out) / "attacks" / f"pgd{steps}x{restarts}-{file_safe(threat.describe())}"


def certify_dir(out: Path, settings: CertifySettings) -> Path:
    """Where the certification rows go: one folder per CERTIFY setting, one file per curve inside."""
    return Path(out) / "certify" / f"n0-{settings.n0}-n-{settings.n}-alpha-{settings.alpha:g}"


def run_defenses(model_name: str, threat: ThreatModel, out: str | Path, *, data: str | None = None,
                 split: str = "test", steps: int = 10, restarts: int = 1, batch_size: int = 16,
                 limit: int | None = None, seed: int = 0, device: str | torch.device = "cpu", retrain: bool = False,
                 rows: tuple[str, ...] = ROWS, denoiser: str = "minievents-logmel",
                 purify: PurifySettings = PurifySettings(), certify: CertifySettings = CertifySettings(),
                 restart: bool = False, log: Callable[[str], None] = print) -> dict:
    """Run the whole study into ``out``; returns the summary that :func:`robustaudio.report.defenses` renders.

    Each row is attacked by PGD with ``steps`` steps and ``restarts`` restarts at ``threat`` on ``limit`` clips
    of ``split``; ``denoiser`` serves the purification row (``purify``) and the certification (``certify``).

    Finished parts are kept: trained checkpoints, attack run directories (resumed batch by batch)
    and certification rows (resumed clip by clip); ``restart`` discards the attack runs and certification rows
    (``retrain`` the checkpoints).
    """
    if model_name not in MODELS:
        raise ModelError(unknown_model_message(model_name) + " `robustaudio defend` trains with a registered "
                         "model's recipe.")
    for sigma in certify.sigmas:  # what would fail after the attack rows fails now
        check_settings(sigma, certify.n0, certify.n, certify.alpha)
    # loaded once, before any row: a missing, pickled or foreign denoiser fails now
    den = load_denoiser(denoiser, device=device) if "purification" in rows or certify.sigmas else None
    out = Path(out)
    make_folder(out)
    dataset = AudioDataset.from_path(data)
    test = AudioDataset.from_path(data, split=split)
    _, _, base = recipe_for(model_name)
    base = replace(base, seed=seed)
    summary: dict[str, Any] = {
        "model": model_name, "data": str(dataset.root), "split": split, "threat": threat.as_dict(),
        "threat_name": threat.describe(), "steps": steps, "restarts": restarts, "limit": limit, "seed": seed,
        "rows": [], "certification": [], "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    attack_name = f"PGD-{steps} ({restarts} restart{'s' if restarts > 1 else ''}), {threat.describe()}"
    attacks = attack_dir(out, threat, steps, restarts)

    def checkpoint(row: str) -> tuple[str | None, dict]:
        settings = defense_settings(row, base, threat)
        return obtain_checkpoint(model_name, row, settings, dataset, out, retrain=retrain, device=device, log=log)

    undefended, _ = checkpoint("none")  # purification and certification wrap it
    pgd = AttackSpec("pgd", steps=steps, restarts=restarts)
    options = RunOptions(batch_size=batch_size, seed=seed, device=device, limit=limit, restart=restart)
    for row in rows:
        if row == "purification":
            continue
        path, card = checkpoint(row)
        try:
            model = load_model(model_name, weights=path, device=device)
        except ModelError as error:  # defend writes state dicts: a file it cannot read so was not written by it
            raise ModelError(f"{path} is not a checkpoint defend wrote ({str(error).split('. ')[0]}): remove it "
                             f"(rm {path}) and rerun; defend trains it again.") from error
        run_dir = run_attack(model, model_name, test, [threat], attacks / row, pgd, options,
                             extra_settings={"defense": row, "weights": path})
        what = defense_settings(row, base, threat).describe() if row != "none" else "none (plain training)"
        summary["rows"].append(_row(row, what, build_report(run_dir), card, attack_name, run_dir, path))
        log(_row_line(summary["rows"][-1]))
    if den is not None and "purification" in rows:
        base_model = load_model(model_name, weights=undefended, device=device)
        purified = Purified(base_model, den, sigma=purify.sigma, steps=purify.steps)
        eot = purify.eot
        defended = EOT(purified, samples=eot)
        run_dir = run_attack(defended, model_name, test, [threat], attacks / f"purification-eot{eot}", pgd,
                             replace(options, sanity=False),
                             extra_settings={"defense": "purification", "purifier": purified.describe(),
                                             "eot": eot, "denoiser": denoiser})
        adaptive = (f"adaptive: {attack_name} on the average of {eot} purifications per step (EOT over the sampler's "
                    f"noise), exact gradients through the UNet and all {purify.steps} sampler steps (no BPDA needed)")
        card = {"training_seconds": _card(_denoiser_path(denoiser)).get("training_seconds"),
                "training_note": f"denoiser training ({denoiser}); the classifier is the undefended one"}
        summary["rows"].append(_row("purification", purified.describe() + f", deployed as the mean of {eot} draws",
                                    build_report(run_dir), card, adaptive, run_dir, undefended))
        log(_row_line(summary["rows"][-1]))
    if certify.sigmas:
        certify = certify if certify.limit is not None else replace(certify, limit=limit)
        summary["certification"] = certify_study(model_name, undefended, test, out, certify, denoiser=den or denoiser,
                                                 seed=seed, device=device, restart=restart, log=log)
    summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return summary


def _denoiser_path(denoiser: str) -> Path:
    return BUNDLED_DIR / BUNDLED_DENOISERS[denoiser] if denoiser in BUNDLED_DENOISERS else Path(denoiser)


def _row(defense: str, description: str, attack_card: dict, train_card: dict, attack: str, run_dir: Path,
         weights: str | None) -> dict:
    condition = attack_card["conditions"][0]
    return {"defense": defense, "description": description, "clean_accuracy": attack_card["clean_accuracy"],
            "robust_accuracy": condition["robust_accuracy"], "attack": attack,
            "training_seconds": train_card.get("training_seconds"), "training_note": train_card.get("training_note"),
            "attack_seconds": condition["seconds"], "clips": attack_card["clips"], "run_dir": str(run_dir),
            "weights": weights, "flags": attack_card.get("flags", [])}


def _row_line(row: dict) -> str:
    return (f"{row['defense']}: clean {row['clean_accuracy']['value']:.3f}, "
            f"robust {row['robust_accuracy']['value']:.3f} ({row['attack']})")


def certify_study(model_name: str, weights: str | None, test: AudioDataset, out: Path, settings: CertifySettings, *,
                  denoiser: str | Denoiser, seed: int, device: str | torch.device, restart: bool = False,
                  log: Callable[[str], None] = print) -> list[dict]:
    """CERTIFY every test clip (``settings.limit`` of them) at each σ of ``settings``, with and without
    ``denoiser`` (a name or path, or one already loaded), in the denoiser's domain; rows go to
    ``certify_dir(out, settings)`` (``out``: the study's folder), resumed clip by clip unless ``restart``."""
    model = load_model(model_name, weights=weights, device=device)
    den = denoiser if isinstance(denoiser, Denoiser) else load_denoiser(denoiser, device=device)
    clips, warnings = usable_clips(test, model, settings.limit, device)
    out = certify_dir(out, settings)
    make_folder(out)
    skipped = keep_warnings(out, warnings)
    if skipped:
        log(f"certification: {len(skipped)} clip(s) skipped, see {out / WARNINGS_FILE}")
    curves = []
    n0, n, alpha = settings.n0, settings.n, settings.alpha
    for sigma in settings.sigmas:
        for use in (None, den):
            smooth = Smooth(model, sigma, domain=den.domain, denoiser=use)
            name = f"sigma-{sigma:g}-{'denoised' if use is not None else 'plain'}"
            if restart:
                (out / f"{name}.jsonl").unlink(missing_ok=True)
            rows = certify_clips(smooth, clips, n0=n0, n=n, alpha=alpha, batch_size=settings.batch_size, seed=seed,
                                 rows_file=out / f"{name}.jsonl",
                                 source={"model": model_name, "weights": str(weights) if weights else None,
                                         "data": str(test.root), "limit": settings.limit})
            curves.append({"name": name, "sigma": sigma, "domain": den.domain, "denoiser": den.name if use else None,
                           "description": smooth.describe(), "n0": n0, "n": n, "alpha": alpha, "rows": rows,
                           "seconds": sum(r["seconds"] for r in rows)})
            log(f"certified {name}: {sum(r['correct'] for r in rows)} of {len(rows)} clips correct at radius 0")
    return curves
