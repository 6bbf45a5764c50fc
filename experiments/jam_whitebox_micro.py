"""White-box ceiling for jamming microWakeWord ``alexa``: music learned with gradients of its float twin.

Usage::

    python experiments/jam_whitebox_micro.py --voices runs/voices --out runs/jam_whitebox_micro
    python experiments/jam_whitebox_micro.py --steps 20 --seeds 1 --quick --music-db -12   # smoke test

Why: the query-based search (``jam_query.py``) reaches F1 0.44 in 20,000 queries and no surrogate
transfers (``jam_surrogates.py``). Neither says whether music from this synthesiser *can* jam
microWakeWord at the level where random music leaves it F1 >= 0.70. This run answers that with the
strongest attacker there is: one holding the device's weights
(:class:`~robustaudio.models.microwakeword_float.MicroWakeWordFloat`, the int8 network dequantised in
front of the float front end). It is a ceiling for the black-box and transfer attacks, not one of them:
the twin *is* microWakeWord, so this music is neither query-based nor transferred.

Protocol (the data and level of ``jam_query.py``, so that the numbers sit side by side):

- learn on eSpeak NG voices (``detectable_sets``' learning set) in 16 optimisation rooms, with talker
  and device augmentation, ``--steps`` Adam steps of ``--batch-size`` scenes (the jam recipe of
  ``jam_heldout.py``), gradients from the twin;
- the level: ``--music-db``, or the loudest of ``--levels`` at which random music keeps the *device's*
  mean F1 >= 0.70 on the validation voices (as ``jam_query.py`` chooses it);
- score the loop after ``--snapshots`` steps with the device itself (``microwakeword:alexa``, TFLite) and
  with the twin on the same scenes: flite + Festival voices, held-out rooms, ``--seeds`` scene seeds,
  intervals resampling voices.

Writes ``OUT/jam_whitebox_micro.json`` and ``.md`` and the learned loop (``music.pt``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from wakeword_protocol import detectable_sets, fmt, log, validation_level  # the script's folder is on sys.path  # noqa: E402

from robustaudio.acoustics.augmentation import Augmentation
from robustaudio.acoustics.scenes import EOTConfig, room_split
from robustaudio.attacks.jamming import Detector, jam
from robustaudio.attacks.music import KarplusStrong
from robustaudio.data.audio import write_audio
from robustaudio.metrics.jamming import evaluate_seeds, random_loops, seed_summary
from robustaudio.models import load_model
from robustaudio.report.card import json_safe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voices", type=Path, default=Path("runs/voices"))
    parser.add_argument("--out", type=Path, default=Path("runs/jam_whitebox_micro"))
    parser.add_argument("--md", type=Path)
    parser.add_argument("--word", choices=("alexa", "hey_jarvis"), default="alexa")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--snapshots", type=int, nargs="+", default=[50, 150, 300, 600])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--music-db", type=float, help="skip the level sweep and use this level")
    parser.add_argument("--levels", type=float, nargs="+", default=[-16.0, -14.0, -12.0, -10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--n-resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    device = Detector(load_model(f"microwakeword:{args.word}"), args.word)
    twin = Detector(load_model(f"microwakeword-float:{args.word}"), args.word)
    base = EOTConfig(music_db=-10.0, jitter_db=3.0, scene_seconds=3.0)
    data = detectable_sets(args.voices, device, base, quick=args.quick)
    optimisation, _ = room_split(base, 16, 16, args.seed)
    sweep, music_db = validation_level(device, data, base, args.levels, args.seeds, optimisation, args.music_db)
    config = EOTConfig(music_db=music_db, jitter_db=3.0, scene_seconds=3.0)
    synth = KarplusStrong(4.0, device.sample_rate, seed=args.seed)
    snapshots: dict[int, torch.Tensor] = {0: synth().detach().clone()}

    def progress(entry: dict) -> None:
        if entry["step"] in args.snapshots:
            snapshots[entry["step"]] = synth().detach().clone()
        if entry["step"] % 25 == 0 or entry["step"] == 1:
            log(f"step {entry['step']}: loss {entry['loss']:.3f}, batch firing {entry['firing']:.2f}, "
                f"{entry['seconds']:.0f} s")

    learned = jam(synth, twin, data["learn"]["utterances"], optimisation, config, steps=args.steps,
                  batch_size=args.batch_size, lr=args.lr, seed=args.seed, callback=progress,
                  augmentation=None if args.no_augment else Augmentation())
    snapshots[args.steps] = learned.music.detach().clone()
    torch.save({"music": learned.music, "music_db": music_db, "snapshots": snapshots}, args.out / "music.pt")
    write_audio(args.out / "adversarial.wav", learned.music, device.sample_rate)
    evaluated, voices = data["evaluate"]["utterances"], data["evaluate"]["voices"]
    musics = {"clean": None, "random": random_loops(4.0, device.sample_rate),
              **{f"white-box {step} steps": loop for step, loop in sorted(snapshots.items())}}
    rows = evaluate_seeds({"device": device, "twin": twin}, evaluated, config, musics, seeds=tuple(args.seeds),
                          draws=args.draws, avoid=optimisation,
                          callback=lambda s, t: log(f"seed {s} scored in {t:.0f} s"))
    summary = seed_summary(rows, voices, n_resamples=args.n_resamples)
    agreement = {}
    for condition in musics:
        pairs = {}
        for row in rows:
            if row["condition"] == condition:
                pairs.setdefault((row["clip_id"], row["seed"], row["draw"]), {})[row["detector"]] = row["fired"]
        both = [p for p in pairs.values() if len(p) == 2]
        agreement[condition] = float(np.mean([p["device"] == p["twin"] for p in both])) if both else float("nan")
    table = {(r["detector"], r["condition"]): r for r in summary}
    lines = [f"# White-box ceiling: music learned on microWakeWord {args.word}'s float twin, scored on the device",
             "", f"Music at {music_db:g} dB re speech; held-out flite + Festival voices ({data['evaluate']['kept']}), "
             f"held-out rooms, scene seeds {args.seeds}, {args.draws} draws; 95% intervals resample voices. "
             f"Learned on {data['learn']['kept']} with {args.batch_size} scenes per step, lr {args.lr}, "
             f"augmentation {'off' if args.no_augment else 'on'}; {time.perf_counter() - started:.0f} s in all.", "",
             "| music | device F1 [95% CI] | device TPR | device FPR | twin F1 | device = twin (scenes) |",
             "|---|---|---|---|---|---|"]
    for condition in musics:
        d, t = table[("device", condition)], table[("twin", condition)]
        lines.append(f"| {condition} | {fmt(d['f1'])} | {d['tpr']['value']:.3f} | {d['fpr']['value']:.3f} | "
                     f"{t['f1']['value']:.3f} | {agreement[condition]:.3f} |")
    text = "\n".join(lines + [""])
    (args.out / "jam_whitebox_micro.md").write_text(text)
    (args.out / "jam_whitebox_micro.json").write_text(json.dumps(json_safe({
        "music_db": music_db, "sweep": {str(k): v for k, v in sweep.items()}, "summary": summary,
        "agreement": agreement, "history": learned.history[::10], "args": {k: str(v) for k, v in vars(args).items()},
        "sets": {k: v["kept"] for k, v in data.items()}, "seconds": time.perf_counter() - started}), indent=1))
    if args.md:
        args.md.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
