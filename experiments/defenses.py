"""Reproduce the defenses study on the bundled data: the bundled denoiser, the defended cnn checkpoints,
the defenses table and the certified-accuracy curves.

    python experiments/defenses.py --denoiser-only    # train the bundled log-mel denoiser (~10 min on 1 core)
    python experiments/defenses.py                    # retrain every row, attack, certify -> runs/defenses/
    python experiments/defenses.py --bundle           # ... and copy the defended cnn checkpoints into the package

On a shared machine the table and the certification can run side by side (finished parts are
reused, so a final plain run only assembles the report):

    python experiments/defenses.py --part table --rows none mixup mixup-latent purification &
    python experiments/defenses.py --part table --rows adversarial &
    python experiments/defenses.py --part certify --sigmas 0.25 &
    python experiments/defenses.py --part certify --sigmas 0.5
    python experiments/defenses.py --part strong      # PGD-40 × 2 restarts on the trained rows,
                                                      # PGD-20 with EOT-16 on purification
    python experiments/defenses.py --part cost        # CPU seconds per epoch of each training method
    python experiments/defenses.py --bundle

Settings (all on one CPU thread, seed 0, the bundled ``minievents`` data; train split for training,
the 105 test clips for every number):

- denoiser ``minievents-logmel``: diffusers UNet2DModel (blocks 8/16/32, no attention) + DDPMScheduler
  (linear β 1e-4..0.02, 1000 steps) on the bundled cnn's normalised log-mel (64 × 101), σ ≤ 1.0
  (t ≤ 259), 20 epochs of batch 32, AdamW 3e-3 one-cycle, EMA 0.995, augmented clips;
- rows: ``none`` (plain recipe: 40 epochs, AdamW 2e-3, batch 32), ``mixup`` (waveform mixup, α = 0.2),
  ``mixup-latent`` (embedding mixup, α = 0.2, partners weighted to low-convexity classes, refreshed
  every 5 epochs), ``adversarial`` (PGD-5 L∞ ε = 0.002 waveform, Madry), ``purification`` (DiffPure at
  σ = 0.25 → t* = 73, 2 DDPM reverse steps, deployed as the mean of 8 draws) — every training row
  retrained here so that their wall times are measured under the same conditions;
- attack: PGD-10, 1 restart, L∞ ε = 0.002 on the waveform; purification attacked through EOT-8
  with exact gradients through the sampler; then a stronger attack on every row to see whether the
  table's has converged: PGD-40 with 2 restarts on the trained rows, PGD-20 through EOT-16 on
  purification (deployed then as the mean of 16 draws);
- certification of the cnn in the normalised log-mel domain at σ = 0.25 and 0.5, with and without
  the denoiser: CERTIFY with n0 = 50, n = 250, α = 0.001 (largest certifiable radius 1.92σ; Cohen et
  al. use n = 100,000 on ImageNet, which this machine could not afford for 105 clips × 4 curves).

The numbers this produced are in ``defenses.md`` beside this script (written by a full run, with
the certified-accuracy figure ``defenses_certified.png``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from robustaudio.attacks import ThreatModel
from robustaudio.data import AudioDataset
from robustaudio.defenses.denoiser import BUNDLED_DENOISERS, DenoiserSettings, train_denoiser
from robustaudio.defenses.training import recipe_for, train_classifier
from robustaudio.models import load_model
from robustaudio.models.registry import BUNDLED_DIR
from robustaudio.report.defenses import build_defenses_report
from robustaudio.studies.defenses import (
    ROWS,
    TRAINED_DEFENSES,
    CertifySettings,
    PurifySettings,
    bundled_defended,
    certify_study,
    defense_settings,
    run_defenses,
)

DENOISER = DenoiserSettings(domain="feature", epochs=20, batch_size=32, lr=3e-3, sigma_max=1.0, channels=(8, 16, 32),
                            ema_decay=0.995, seed=0)
SIGMAS = (0.25, 0.5)
N0, N = 50, 250  # CERTIFY samples per clip: cheap enough for a shared 2-core machine
THREAT = ThreatModel("linf", eps=0.002)
STEPS, RESTARTS = 10, 1  # the table's PGD, on every row (through EOT-8 for purification)
STRONG_STEPS, STRONG_RESTARTS = 40, 2  # a stronger PGD on the rows without randomness
STRONG_PURIFY_STEPS, STRONG_EOT = 20, 16  # ... and on purification: twice the steps, twice the EOT draws


def bundle_denoiser() -> None:
    denoiser, card = train_denoiser(load_model("cnn"), AudioDataset.from_path(None), DENOISER, model_name="cnn",
                                    name="minievents-logmel", log=lambda line: print(line, flush=True))
    card["script"] = "experiments/defenses.py --denoiser-only"
    denoiser.save(BUNDLED_DIR / BUNDLED_DENOISERS["minievents-logmel"], card)
    print(json.dumps({k: card[k] for k in ("parameters", "training_seconds", "test_denoising")}, indent=1))


def training_cost(out: Path, epochs: int = 2) -> dict:
    """CPU seconds per training epoch of each trained row, measured back to back in one process on one
    thread: wall times of runs made hours apart on a shared machine mostly measure its load."""
    dataset = AudioDataset.from_path(None)
    arch, config, base = recipe_for("cnn")
    cost = {}
    for defense in ("none", *ROWS[:-1]):  # the first run warms up (lazy initialisation), the second counts
        settings = replace(defense_settings(defense, base, THREAT), epochs=epochs)
        cost[defense] = round(train_classifier(arch, config, dataset, settings).log.cpu_seconds / epochs, 2)
    cost["note"] = (f"CPU seconds per training epoch (one thread, {epochs} epochs each, measured back to back; the "
                    f"latent mixup's class-weight refresh, 7 passes over the training clips per run, not included): "
                    + ", ".join(f"{d} {cost[d]:.1f}" for d in ROWS[:-1])
                    + f"; adversarial / mixup = {cost['adversarial'] / cost['mixup']:.1f}×.")
    (out / "training_cost.json").write_text(json.dumps(cost, indent=1))
    return cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--denoiser-only", action="store_true", help="Only train the bundled denoiser.")
    parser.add_argument("--bundle", action="store_true", help="Copy the defended checkpoints into the package.")
    parser.add_argument("--out", type=Path, default=Path("runs/defenses"))
    parser.add_argument("--limit", type=int, default=None, help="Only the first N test clips (smoke runs).")
    parser.add_argument("--part", choices=["all", "table", "strong", "certify", "cost"], default="all",
                        help="table: train and attack only; strong: PGD-40 with 2 restarts on the trained rows; "
                             "certify: certification only (after the table part has trained the undefended row); "
                             "cost: CPU seconds per epoch of each training method; all: everything, reusing finished "
                             "parts.")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS), help="Table rows of this run.")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: what the docstring's times used).")
    parser.add_argument("--sigmas", nargs="+", type=float, default=list(SIGMAS), help="σ of this certify part.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    denoiser_missing = not (BUNDLED_DIR / BUNDLED_DENOISERS["minievents-logmel"]).is_file()
    if args.denoiser_only or args.part == "all" and denoiser_missing:
        bundle_denoiser()
        if args.denoiser_only:
            return
    log = lambda line: print(line, flush=True)  # noqa: E731
    if args.part == "certify":
        none = args.out / "train" / "none.pt"
        while not none.with_suffix(".json").is_file():  # written by the table part after training
            time.sleep(30)
        settings = CertifySettings(sigmas=tuple(args.sigmas), n0=N0, n=N, alpha=0.001, batch_size=250, limit=args.limit)
        certify_study("cnn", str(none), AudioDataset.from_path(None, split="test"), args.out,
                      settings, denoiser="minievents-logmel", seed=0, device="cpu", log=log)
        return
    if args.part == "cost":
        print(json.dumps(training_cost(args.out), indent=1))
        return
    def strong() -> dict:  # every row attacked harder: has the table's attack converged?
        summary = run_defenses("cnn", THREAT, args.out, steps=STRONG_STEPS, restarts=STRONG_RESTARTS, batch_size=16,
                               limit=args.limit, seed=0, retrain=True, rows=ROWS[:-1],
                               certify=CertifySettings(sigmas=()), log=log)
        summary["rows"] += run_defenses("cnn", THREAT, args.out, steps=STRONG_PURIFY_STEPS, restarts=RESTARTS,
                                        batch_size=16, limit=args.limit, seed=0, retrain=True, rows=("purification",),
                                        purify=PurifySettings(sigma=0.25, steps=2, eot=STRONG_EOT),
                                        certify=CertifySettings(sigmas=()), log=log)["rows"]
        return summary

    if args.part == "strong":
        strong()
        return
    summary = run_defenses("cnn", THREAT, args.out, steps=STEPS, restarts=RESTARTS, batch_size=16, limit=args.limit,
                           seed=0, retrain=True, rows=tuple(args.rows),
                           purify=PurifySettings(sigma=0.25, steps=2, eot=8),
                           certify=CertifySettings(sigmas=SIGMAS if args.part == "all" else (), n0=N0, n=N,
                                                   alpha=0.001), log=log)
    if args.part == "all":
        summary["rows"] += strong()["rows"]
    summary["notes"] = []
    if (args.out / "training_cost.json").is_file():
        cost = json.loads((args.out / "training_cost.json").read_text())
        summary["notes"].append(cost["note"])
        for row in summary["rows"]:
            row["cpu_per_epoch"] = cost.get(row["defense"])
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    document = build_defenses_report(args.out, summary)
    print(json.dumps({"rows": document["rows"], "certification": document["certification"],
                      "closing_note": document["closing_note"]}, indent=1, default=str))
    if args.limit is None and args.part == "all":  # the full study's numbers are kept beside the script
        here = Path(__file__).parent
        shutil.copyfile(args.out / "figures" / "certified.png", here / "defenses_certified.png")
        text = (args.out / "defenses.md").read_text().replace("figures/certified.png", "defenses_certified.png")
        (here / "defenses.md").write_text(text.replace(str(Path.cwd()) + "/", ""))
    if args.bundle and args.part == "all":
        for defense in TRAINED_DEFENSES:
            source = args.out / "train" / f"{defense}.pt"
            shutil.copyfile(source, bundled_defended("cnn", defense))
            shutil.copyfile(source.with_suffix(".json"), bundled_defended("cnn", defense).with_suffix(".json"))


if __name__ == "__main__":
    main()
