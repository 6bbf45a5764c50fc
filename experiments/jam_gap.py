"""Where a learned jam stops working: new voices, or new rooms?

Usage::

    python experiments/jam_gap.py runs/jam_query_sub3_aug_r64_s0 runs/jam_query_sub3_aug_r64_s1

For each run of ``jam_query.py`` (its ``music.pt`` and ``jam_query.json``), the share of positives on which
microWakeWord alexa fires (TPR) under the run's loop and under random music at the run's level, in a 2 × 3
grid: the rooms the loop was optimised in, or held-out rooms (scene seeds ``--seeds``), against the voices it
was learned on (every ``--learn-every``-th learning positive), the validation voices (unseen eSpeak NG) and the
evaluation voices (flite and Festival, never learned from). Scenes are rendered plainly (no talker or device
augmentation), ``--draws`` per clip. The attack's own firing share (``box_firing``) was measured on augmented
learning scenes, so it is a neighbour of the top-left cell, not the same number.

Prints a Markdown table per run (``--md`` writes them to a file).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from wakeword_protocol import detectable_sets, log  # the script's folder is on sys.path  # noqa: E402

from robustaudio.acoustics.scenes import EOTConfig, room_split
from robustaudio.attacks.jamming import Detector
from robustaudio.metrics.jamming import evaluate, random_loops, seed_rooms
from robustaudio.models import load_model

VOICE_SETS = {"learn": "learning voices (eSpeak NG)", "validate": "validation voices (unseen eSpeak NG)",
              "evaluate": "evaluation voices (flite, Festival)"}


def firing(rows: list[dict]) -> dict[tuple[str, str], tuple[float, int]]:
    """(rooms, condition) -> (share of positive scenes fired on, positive scenes)."""
    out: dict[tuple[str, str], list[bool]] = {}
    for row in rows:
        if row["label"] == 1:
            out.setdefault((row["rooms"], row["condition"]), []).append(row["fired"])
    return {key: (float(np.mean(fired)), len(fired)) for key, fired in out.items()}


def run_table(run: Path, detector: Detector, data: dict, args: argparse.Namespace) -> str:
    card = json.loads((run / "jam_query.json").read_text())
    seed, rooms = int(card["args"]["seed"]), int(card["args"].get("rooms", 16))
    config = EOTConfig(music_db=float(card["music_db"]), jitter_db=3.0, scene_seconds=3.0)
    optimisation, _ = room_split(config, rooms, 16, seed)
    music = torch.load(run / "music.pt", weights_only=True)["music"]
    cells: dict[tuple[str, str, str], tuple[float, int]] = {}
    for name in VOICE_SETS:
        utterances = data[name]["utterances"].positives()
        if name == "learn":
            utterances = utterances.subset(torch.arange(0, len(utterances), args.learn_every))
        rows = []  # pooled over the scene seeds
        for s in args.seeds:
            held_out = seed_rooms(config, 16, (s,))[s]
            musics = {"adversarial": music, "random": random_loops(4.0, detector.sample_rate, 4)(s)}
            rows += evaluate({"target": detector}, utterances, {"optimisation": optimisation, "held-out": held_out},
                             config, musics, draws=args.draws, seed=s)
        cells.update({(name, *key): value for key, value in firing(rows).items()})
        log(f"{run.name}: {name} done")
    lines = [f"### {run.name} ({rooms} optimisation rooms, start seed {seed}, {config.music_db:g} dB)", "",
             "| voices | adversarial, its rooms | adversarial, held-out rooms | random, its rooms | "
             "random, held-out rooms | positive scenes per cell |", "|---|---|---|---|---|---|"]
    for name, label in VOICE_SETS.items():
        shares = [cells[(name, r, c)][0] for c in ("adversarial", "random") for r in ("optimisation", "held-out")]
        lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in shares) +
                     f" | {cells[(name, 'held-out', 'random')][1]} |")
    return "\n".join(lines + [""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--voices", type=Path, default=Path("runs/voices"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--learn-every", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--md", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for run in args.runs:
        if not (run / "music.pt").is_file():
            raise SystemExit(f"{run} has no music.pt: run jam_query.py (which saves its loops there) first.")
    detector = Detector(load_model("microwakeword:alexa"), "alexa")
    data = detectable_sets(args.voices, detector, EOTConfig(music_db=-10.0, jitter_db=3.0, scene_seconds=3.0))
    text = "\n".join(run_table(run, detector, data, args) for run in args.runs)
    if args.md:
        args.md.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
