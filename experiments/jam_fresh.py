"""Adversarial music scored once on voices no choice has seen: the level chosen blind, on development engines.

Usage::

    apt-get install -y festival festvox-czech-dita festvox-czech-krb festvox-czech-machac festvox-czech-ph \\
        festvox-suopuhe-lj festvox-suopuhe-mv festvox-ca-ona-hts festvox-ru
    python experiments/make_wakeword_clips.py runs/accented --accented --word alexa
    python experiments/jam_fresh.py --word alexa --music-from runs/jam_alexa_m12_2000 --out runs/jam_fresh_alexa
    python experiments/jam_fresh.py --word alexa --choose-only             # the level, no scoring
    python experiments/jam_fresh.py --word alexa --music-from runs/jam_lolo_cs --only-voices festival:czech_dita \
        festival:czech_krb festival:czech_machac festival:czech_ph --out runs/jam_lolo_cs_score   # one LOLO fold

Why. ``jam_heldout.py`` chose the music level on the learning engine's own validation voices (eSpeak NG), and
that choice did not carry over to flite and Festival: their random-music F1 at the chosen level was 0.666 for
alexa (too loud) while hey_jarvis's choice was too quiet. The flite and Festival voices were then looked at
to set the levels by hand. So they can no longer give a blind headline; here they become the **development**
voices, and the headline comes from a **fresh** set that no setting or choice has seen.

Protocol (fixed before any fresh voice was scored under music):

- **Learn**: the music of a ``jam_heldout.py`` run (eSpeak NG voices only, talker and device augmentation,
  16 optimisation rooms); its level must be the one chosen below, else the script stops and names the run to
  make.
- **Choose the level on the development voices**: flite (kal, kal16, awb, rms, slt) and Festival's English
  voices (kal, ked, slt HTS, Italian lp and pc), never learned from; random-music F1 of the white-box detector
  at each of ``--levels`` (-14, -12, -10, -8 dB re speech, ``jam_heldout.py``'s default), mean over scene
  seeds 1-5 in held-out rooms; the loudest level whose mean stays >= 0.70
  (:func:`robustaudio.metrics.jamming.choose_level`, the rule ``jam_heldout.py`` uses).
- **Score on the fresh voices**: ``make_wakeword_clips.py --accented`` (Festival's Czech, Finnish, Catalan and
  Russian voices saying the word, no voice or speaker shared with any other set), clean / random music /
  adversarial music, scene seeds 1-5, 16 held-out rooms each (none an optimisation room), 3 scenes per clip and
  seed, clips the detector handles dry; F1 from counts pooled over seeds, 95% intervals resampling voices;
  microWakeWord scores the same scenes (never used to learn or choose).

The level on the scored engine itself (``jam_dectalk.md``): ``--calibrate-voices`` chooses the level on those
voices of the ``--fresh`` folder instead, by random music alone (no adversarial music is played to them), and
``--only-voices`` must name the others: the music never heard the engine, the level is set where the engine's own
voices keep ``--floor`` under random music, and the score comes from voices the level never saw.

``--cluster-by speaker``: intervals resample the set's ``speaker`` column (the recorded person) instead of its
voices, and the per-row table lists people, for sets whose voices are styles of a few people (``--openjtalk``).

Writes ``OUT/jam_fresh.md``, ``OUT/jam_fresh.json``, ``OUT/rows.json`` and ``OUT/level_sweep.json`` (reused
when present, so a stopped run does not sweep again).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from wakeword_protocol import CLUSTER_CHOICES, detectable_sets, fresh_set, log  # noqa: E402
from wakeword_protocol import fmt as shared_fmt  # noqa: E402

from robustaudio.acoustics.scenes import EOTConfig, JamError, room_split
from robustaudio.attacks.jamming import Detector
from robustaudio.metrics.jamming import (
    choose_level,
    choose_level_every,
    evaluate_seeds,
    level_means,
    random_loops,
    seed_summary,
    sweep_levels,
    sweep_levels_by,
    voice_table,
)
from robustaudio.models import load_model
from robustaudio.report.card import json_safe

FLOOR = 0.70


def fmt(estimate: dict) -> str:
    return shared_fmt(estimate, digits=2)


def markdown(result: dict) -> str:
    s = result["settings"]
    unit = s.get("cluster_by", "voice")
    calibrated = s.get("calibrate_voices")
    where = (f"calibration voices of the scored engine ({', '.join(calibrated)})" if calibrated
             else "development voices: flite + Festival English")
    lines = [f"# Blind headline: openWakeWord {s['word']} on fresh voices, level chosen on "
             f"{'the engine' + chr(39) + 's other voices' if calibrated else 'development engines'}",
             "", f"## Level ({where}; mean random-music F1 over seeds 1-5)", "",
             "| music dB re speech | random-music F1 per seed | mean |", "|---|---|---|"]
    means = level_means(result["level_sweep"])
    for level, per_seed in sorted(result["level_sweep"].items(), key=lambda kv: float(kv[0])):
        lines.append(f"| {float(level):g} | {', '.join(f'{v:.2f}' for v in per_seed.values())} | "
                     f"{means[float(level)]:.3f} |")
    if s.get("at_level") is not None:
        lines += ["", f"**Scored at {s['at_level']:g} dB given by hand (--at-level), not at the rule's choice: not a "
                  f"blind result.**"]
    lines += ["", (f"Chosen: **{result['music_db']:g} dB** (loudest mean >= {s.get('floor', FLOOR):g})."
                   if s.get("at_level") is None
                   else f"Played at **{result['music_db']:g} dB**.") + f" Music: `{s['music_from']}` "
              f"({s['music_steps']} steps, learned at {s.get('music_learned_db', result['music_db']):g} dB on "
              f"{s['music_learned_on']} voices, "
              f"optimiser seed {s['music_opt_seed']}).", "",
              f"## Fresh voices ({result['kept']['positives']} positives from {result['kept']['positive_voices']} "
              f"{unit}s, {result['kept']['negatives']} negatives; seeds {', '.join(map(str, s['seeds']))}, "
              f"{s['draws']} scenes per clip and seed)", "",
              f"| detector | condition | {unit}s | scenes | F1 [{unit}-clustered 95% CI] | F1 per seed (min-max) | "
              "TPR [CI] | FPR [CI] |", "|---|---|---|---|---|---|---|---|"]
    for row in result["summary"]:
        lo, hi = row["seed_range"]
        lines.append(f"| {row['detector']} | {row['condition']} | {row['voices']} | {row['scenes']} | "
                     f"{fmt(row['f1'])} | {row['seed_mean']:.3f} ({lo:.2f}-{hi:.2f}) | {fmt(row['tpr'])} | "
                     f"{fmt(row['fpr'])} |")
    lines += ["", f"## TPR per fresh {unit} (all seeds and scenes)", "",
              f"| detector | {unit} | positive clips | clean | random | adversarial |", "|---|---|---|---|---|---|"]
    per: dict[tuple, dict] = {}
    for row in result["voices"]:
        per.setdefault((row["detector"], row["voice"]), {"clips": row["clips"]})[row["condition"]] = row["tpr"]
    for (detector, voice), entry in sorted(per.items()):
        lines.append(f"| {detector} | {voice} | {entry['clips']} | "
                     + " | ".join(f"{entry.get(c, float('nan')):.2f}" for c in ("clean", "random", "adversarial"))
                     + " |")
    lines += ["", f"Wall time {result['wall_seconds'] / 60:.1f} min on CPU, one thread."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--word", choices=("alexa", "hey_jarvis"), default="alexa")
    parser.add_argument("--voices", type=Path, help="the --voices set (default runs/voices or runs/voices_jarvis)")
    parser.add_argument("--fresh", type=Path, help="the --accented set (default runs/accented[_jarvis])")
    parser.add_argument("--music-from", type=Path, help="a jam_heldout.py output folder (music.pt, jam_heldout.json)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--levels", type=float, nargs="+", default=[-14.0, -12.0, -10.0, -8.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--sweep-draws", type=int, default=2)
    parser.add_argument("--n-resamples", type=int, default=2000)
    parser.add_argument("--transfer-to", default=None, help="default microwakeword:alexa for alexa, none otherwise")
    parser.add_argument("--choose-only", action="store_true")
    parser.add_argument("--level-by", choices=("engine", "voice"),
                        help="also show the level robustaudio jam --level-by would choose (every engine or voice the "
                             "level is chosen on keeps --floor) on the same voices as the rule (not the protocol's "
                             "rule; with --choose-only)")
    parser.add_argument("--at-level", type=float,
                        help="score at this level, not the rule's (not blind: an existence check, reported as such)")
    parser.add_argument("--only-voices", nargs="+", help="score only these fresh voices (the ones a leave-one-"
                        "language-out music never heard)")
    parser.add_argument("--calibrate-voices", nargs="+", help="choose the level on these voices of --fresh (random "
                        "music only) instead of the development voices; --only-voices then names the scored ones")
    parser.add_argument("--detector", help="the detector whose random-music F1 sets the level and that the music is "
                        "scored on (default openwakeword:WORD)")
    parser.add_argument("--cluster-by", choices=CLUSTER_CHOICES, default="voice",
                        help="the unit the scored intervals resample and the per-row table lists: the voice column, "
                             "or the speaker column (the recorded person, where voices are styles of a few people)")
    parser.add_argument("--floor", type=float, default=FLOOR, help="the random-music F1 the level must keep")
    parser.add_argument("--learned-within", type=float, default=0.0,
                        help="accept music learned this many dB from the chosen level (a protocol's tolerance, fixed "
                             "before the level is known: the optimisation drew levels within its own ±3 dB jitter)")
    parser.add_argument("--quick", action="store_true", help="a third of the clips (smoke test)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.calibrate_voices and not args.only_voices:
        raise SystemExit("--calibrate-voices needs --only-voices: the voices scored, none of the calibration ones.")
    if set(args.calibrate_voices or []) & set(args.only_voices or []):
        both = sorted(set(args.calibrate_voices) & set(args.only_voices))
        raise SystemExit(f"voices both calibrate and are scored: {both}")
    torch.set_num_threads(args.threads)
    suffix = "" if args.word == "alexa" else "_jarvis"
    voices_dir = args.voices or Path(f"runs/voices{suffix}")
    fresh_dir = args.fresh or Path(f"runs/accented{suffix}")
    out = args.out or Path(f"runs/jam_fresh_{args.word}")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    name = args.detector or f"openwakeword:{args.word}"
    kwargs = {"pad_before": 0.0, "pad_after": 0.0} if name.startswith("openwakeword") else {}
    detector = Detector(load_model(name, **kwargs), args.word)
    base = EOTConfig(music_db=-10.0, jitter_db=3.0, scene_seconds=3.0)
    optimisation, _ = room_split(base, 16, 16, 0)
    sweep_file = out / "level_sweep.json"

    def level_voices() -> dict:
        """The clips the level is chosen on: --calibrate-voices of --fresh, or the development voices."""
        if args.calibrate_voices:
            return fresh_set(fresh_dir, detector, base, args.calibrate_voices)
        return detectable_sets(voices_dir, detector, base, quick=args.quick)["evaluate"]

    if sweep_file.exists():
        sweep = {float(k): {int(s): v for s, v in per.items()} for k, per in json.loads(sweep_file.read_text()).items()}
        log(f"level sweep read from {sweep_file}")
    else:
        sweep = sweep_levels(detector, level_voices()["utterances"], base, args.levels, seeds=args.seeds,
                             draws=args.sweep_draws, avoid=optimisation)
        sweep_file.write_text(json.dumps({str(k): v for k, v in sweep.items()}, indent=1))
    for level, per_seed in sorted(sweep.items()):
        log(f"development, {level:g} dB: random-music F1 per seed {[round(v, 3) for v in per_seed.values()]}")
    if args.at_level is None:
        try:
            music_db = choose_level(sweep, args.floor)
        except JamError as error:  # one line, no traceback; the saved sweep is reused as it is by a rerun
            raise SystemExit(f"{error} (sweep saved in {sweep_file}: other --levels need another --out)") from None
        log(f"chosen level {music_db:g} dB re speech")
    else:  # the rule is only reported: it may find no level at all among --levels
        try:
            rule = f"{choose_level(sweep, args.floor):g} dB"
        except JamError as error:
            rule = f"none: {error}"
        log(f"--at-level {args.at_level:g} dB: NOT this script's choice ({rule}); a level given by hand")
        music_db = args.at_level
    if args.level_by:
        by_file = out / f"level_sweep_by_{args.level_by}.json"
        if by_file.exists():
            by_group = {g: {float(k): {int(s): v for s, v in per.items()} for k, per in sweep.items()}
                        for g, sweep in json.loads(by_file.read_text()).items()}
        else:
            sets = level_voices()
            group_of = sets["engines"] if args.level_by == "engine" else sets["voices"]
            by_group = sweep_levels_by(detector, sets["utterances"], base, args.levels, group_of, seeds=args.seeds,
                                       draws=args.sweep_draws, avoid=optimisation)
            by_file.write_text(json.dumps({g: {str(k): v for k, v in sweep.items()} for g, sweep in by_group.items()},
                                          indent=1))
        for group, per_level in by_group.items():
            log(f"development, {args.level_by} {group}: mean random-music F1 "
                + ", ".join(f"{lvl:g} dB {m:.3f}" for lvl, m in sorted(level_means(per_level).items())))
        log(f"--level-by {args.level_by} would choose {choose_level_every(by_group, args.floor):g} dB "
            f"(the protocol's rule: {music_db:g} dB)")
    if args.choose_only:
        return
    if args.music_from is None:
        raise SystemExit(f"--music-from is needed: a jam_heldout.py run learned at {music_db:g} dB.")
    saved = torch.load(args.music_from / "music.pt", weights_only=True)
    learned_at = float(saved["music_db"])
    # --at-level: a look at another level, said as such; --learned-within: a protocol's tolerance, fixed in advance
    if abs(learned_at - music_db) > args.learned_within and args.at_level is None:
        raise SystemExit(f"{args.music_from} was learned at {learned_at:g} dB but the rule chose {music_db:g} dB: "
                         f"learn at that level first, e.g. `python experiments/jam_heldout.py --word {args.word} "
                         f"--voices {voices_dir} --music-db {music_db:g} --steps 2000 --out runs/jam_{args.word}_"
                         f"{music_db:g}`.")
    learned = json.loads((args.music_from / "jam_heldout.json").read_text())["settings"]
    steps, learned_on = learned["steps"], {"all": "eSpeak NG", "bundled": "bundled eSpeak NG",
                                           "espeak+flite": "eSpeak NG + flite",
                                           "espeak+flite+festival": "eSpeak NG + flite + Festival English"}[
        learned.get("learn_set", "all")]
    added = [voice for entry in learned.get("added", []) if entry["from"].startswith(str(fresh_dir))
             for voice in entry["voices"]]
    others = sorted({entry["from"].split(" (held out")[0] for entry in learned.get("added", [])
                     if "(held out" in entry["from"] and not entry["from"].startswith(str(fresh_dir))})
    if others:
        learned_on += f" + {', '.join(others)}"
    if added:
        learned_on += f" + fresh voices {', '.join(added)}"
    if set(added) & set(args.only_voices or []):
        raise SystemExit(f"{args.music_from} learned from {sorted(set(added) & set(args.only_voices))}: "
                         f"score it only on voices it never heard.")
    if added and not args.only_voices:
        raise SystemExit(f"{args.music_from} learned from fresh voices: name the held-out ones with --only-voices.")

    config = EOTConfig(music_db=music_db, jitter_db=3.0, scene_seconds=3.0)
    fresh = fresh_set(fresh_dir, detector, config, args.only_voices, args.cluster_by)
    detectors = {name: detector}
    transfer = args.transfer_to or ("microwakeword:alexa" if args.word == "alexa" and name != "microwakeword:alexa"
                                    else None)
    if transfer:
        detectors[transfer] = Detector(load_model(transfer), args.word)
    musics = {"clean": None, "random": random_loops(4.0, detector.sample_rate), "adversarial": saved["music"]}
    utterances = fresh["utterances"] if not args.quick else fresh["utterances"].subset(
        torch.arange(len(fresh["utterances"].ids)) % 3 == 0)
    rows = evaluate_seeds(detectors, utterances, config, musics, seeds=args.seeds, draws=args.draws,
                          avoid=optimisation, callback=lambda s, t: log(f"fresh: seed {s} scored in {t:.0f} s"))
    summary = seed_summary(rows, fresh["voices"], n_resamples=args.n_resamples)
    for row in summary:
        log(f"{row['detector']} {row['condition']}: F1 {fmt(row['f1'])}, per seed {row['per_seed']}")
    result = {"music_db": music_db, "level_sweep": {str(k): v for k, v in sweep.items()}, "kept": fresh["kept"],
              "settings": {"word": args.word, "music_from": str(args.music_from), "music_steps": steps,
                           "music_learned_on": learned_on, "music_learned_db": learned_at,
                           "music_opt_seed": learned.get("opt_seed", 0), "only_voices": args.only_voices,
                           "cluster_by": args.cluster_by,
                           "at_level": args.at_level, "calibrate_voices": args.calibrate_voices,
                           "levels": args.levels, "seeds": args.seeds, "draws": args.draws,
                           "sweep_draws": args.sweep_draws, "floor": args.floor,
                           "learned_within": args.learned_within, "n_resamples": args.n_resamples,
                           "quick": args.quick, "eot": config.as_dict(), "detectors": list(detectors)},
              "summary": summary, "voices": voice_table(rows, fresh["voices"], fresh["engines"]),
              "notes": fresh["notes"], "wall_seconds": time.perf_counter() - started}
    (out / "jam_fresh.md").write_text(markdown(result))
    (out / "jam_fresh.json").write_text(json.dumps(json_safe(result), indent=1, allow_nan=False))
    (out / "rows.json").write_text(json.dumps(json_safe(
        [{k: r[k] for k in ("detector", "condition", "clip_id", "label", "seed", "draw", "score", "fired", "room")}
         for r in rows])))
    log(f"done in {result['wall_seconds'] / 60:.1f} min: {out / 'jam_fresh.md'}")


if __name__ == "__main__":
    main()
