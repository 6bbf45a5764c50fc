"""Adversarial music against openWakeWord ``alexa``, measured on speech engines and voices it never heard.

Usage::

    apt-get install -y espeak-ng flite festival festvox-kallpc16k festvox-us-slt-hts \\
        festvox-italp16k festvox-itapc16k
    python experiments/make_wakeword_clips.py runs/voices --voices      # ~3 min
    python experiments/jam_heldout.py --voices runs/voices --out runs/jam_heldout
    python experiments/jam_heldout.py --steps 10 --seeds 1 2 --quick   # a smoke test of the pipeline

The protocol (issue: "jamming that holds for speakers it never heard"):

- **Engines apart.** The music is learned on eSpeak NG only: the bundled set's eSpeak NG ``train``
  voices and every eSpeak NG variant of ``make_wakeword_clips.py --voices`` (about 100 variants ×
  3 accents, rates and pitches drawn per clip), minus any voice of the validation set. The headline
  is measured on flite (kal, kal16, awb, rms, slt) and Festival (kal, ked, slt HTS, Italian lp and
  pc) voices saying "alexa" (statement and question, three speaking rates) plus ten everyday
  phrases each: two engines never used for learning (:func:`robustaudio.data.speech.engine_split`
  raises if an engine, voice or speaker were on both sides).
- **Talker and device augmentation while learning** (:class:`robustaudio.acoustics.augmentation.Augmentation`:
  speed ±15%, pitch ±3 semitones, formants ×0.88-1.12, three random EQ bands ±6 dB, random
  loudspeaker and microphone bands), on top of the rooms, placements, noise and level jitter.
- **The level from a validation set, averaged over scene seeds**: random-music F1 of the bundled
  eSpeak NG ``test`` voices (unseen when learning, never the evaluation engines) at each of
  ``--levels``, mean over the scene seeds; the loudest level keeping >= 0.70 is used
  (:func:`robustaudio.metrics.jamming.choose_level`).
- **Evaluation over scene seeds with voice-clustered intervals**: for each of ``--seeds``, 16 new
  held-out rooms, new scenes and new random loops (:func:`~robustaudio.metrics.jamming.evaluate_seeds`);
  F1 from counts pooled over seeds, 95% intervals that resample voices
  (:func:`~robustaudio.stats.clustered_bootstrap`), per-engine rows, per-seed F1 and a
  per-voice TPR table. Only clips the detector handles correctly when dry are evaluated.

Leave one language out (``jam_fresh.md``): ``--learn-set espeak+flite+festival --add-learn runs/accented
--add-repeat 3 --hold-out-voices festival:czech_dita ... --learn-only`` learns from every engine and from the
accented voices of the other languages (each entered three times, so a few voices are drawn into batches often
enough), never from the held-out ones; ``jam_fresh.py --only-voices`` scores the music on those.

Writes ``OUT/jam_heldout.md`` and ``OUT/jam_heldout.json`` (``--md`` also copies the markdown, e.g.
to ``experiments/jam_heldout.md``), the learned loop as ``OUT/adversarial.wav`` and ``OUT/music.pt``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from wakeword_protocol import (  # noqa: E402
    EVALUATE_ENGINES,
    LEARN_ENGINES,
    add_positives,
    detectable_sets,
    engine_level,
    learn_from_folders,
    leave_one_engine_out,
    log,
)
from wakeword_protocol import fmt as shared_fmt  # noqa: E402

from robustaudio.acoustics.augmentation import Augmentation
from robustaudio.acoustics.scenes import EOTConfig, room_split
from robustaudio.attacks.jamming import Detector, jam
from robustaudio.attacks.music import KarplusStrong
from robustaudio.data.audio import write_audio
from robustaudio.data.datasets import BUNDLED_ROOT
from robustaudio.data.speech import read_speech_set
from robustaudio.metrics.jamming import (
    evaluate_seeds,
    random_loops,
    seed_summary,
    voice_table,
)
from robustaudio.models import load_model
from robustaudio.report.card import json_safe
from robustaudio.stats import clustered_bootstrap, f1_from_counts


def learned_on(settings: dict) -> str:
    """Which speech the music was learned from, in words."""
    added = settings.get("added") or []
    if not added:
        return "eSpeak NG only"
    return "eSpeak NG and " + "; ".join(f"{a['from']}: {a['positives']} positives × {a['repeat']}" for a in added)


def fmt(estimate: dict) -> str:
    return shared_fmt(estimate, digits=2)


def markdown(result: dict) -> str:
    s = result["settings"]
    word = result["settings"].get("word", "alexa")
    lines = [f"# Adversarial music vs new engines and voices (openWakeWord {word}, "
             f"{result['music_db']:g} dB re speech)",
             "", f"Learned on {learned_on(s)} ({result['clips']['learn']['kept']['positives']} positives, "
             f"{result['clips']['learn']['kept']['voices']} voices) with talker and device augmentation "
             f"({'on' if s['augmentation'] else 'off'}); {s['steps']} steps × {s['batch_size']} scenes, lr {s['lr']}, "
             f"16 optimisation rooms (seed 0). Evaluated in 16 held-out rooms per scene seed, seeds "
             f"{', '.join(map(str, s['seeds']))}, {s['draws']} scenes per clip and seed; F1 from counts pooled "
             f"over seeds, 95% intervals resampling voices ({s['n_resamples']} resamples). Wall time "
             f"{result['wall_seconds'] / 60:.1f} min on CPU, {result.get('threads', 1)} thread(s), on a shared 2-core "
             "machine.", "",
             "## Music level (chosen on the validation voices, mean over scene seeds)", "",
             "| music dB re speech | random-music F1 per seed | mean |", "|---|---|---|"]
    for level, per_seed in sorted(result["level_sweep"].items(), key=lambda kv: float(kv[0])):
        values = list(per_seed.values())
        lines.append(f"| {float(level):g} | {', '.join(f'{v:.2f}' for v in values)} | {np.nanmean(values):.3f} |")
    for group, group_sweep in sorted(s.get("sweep_by_engine", {}).items()):
        if group != "all":
            lines.append(f"| {group} only | " + "; ".join(
                f"{float(level):g} dB: {np.nanmean(list(per_seed.values())):.3f}"
                for level, per_seed in sorted(group_sweep.items(), key=lambda kv: float(kv[0]))) + " | |")
    if s.get("sweep_by_engine"):
        lines += ["", f"Chosen: {result['music_db']:g} dB, the loudest keeping mean random-music F1 >= 0.70 for "
                  "every engine of the validation voices at once.", ""]
    else:
        lines += ["", f"Chosen: {result['music_db']:g} dB (the loudest with mean random-music F1 >= 0.70 on the "
                  "validation voices)." if result["level_sweep"] else
                  f"No sweep in this run: the level was set to {result['music_db']:g} dB (--music-db).", ""]
    test_engine = s.get("test_engine")
    for set_name, title in (("evaluate", f"Held-out engine ({test_engine}): the headline" if test_engine else
                             "Held-out engines (flite, Festival): the headline"),
                            ("validate", "Validation voices (never learned from): bundled eSpeak NG test voices"
                             + (f" and {', '.join(s['validate_voices'])}" if test_engine else ""))):
        lines += [f"## {title}", "", "| detector | engine | condition | voices | scenes | "
                  "F1 [voice-clustered 95% CI] | F1 per seed (min-max) | TPR [CI] | FPR [CI] |",
                  "|---|---|---|---|---|---|---|---|---|"]
        tables = ("overall", "by_engine") if len({r["group"] for r in result["summary"][set_name]["by_engine"]}) > 1 \
            else ("overall",)
        for table in tables:
            for row in result["summary"][set_name][table]:
                lo, hi = row["seed_range"]
                lines.append(f"| {row['detector']} | {row['group']} | {row['condition']} | {row['voices']} | "
                             f"{row['scenes']} | {fmt(row['f1'])} | {row['seed_mean']:.3f} ({lo:.2f}-{hi:.2f}) | "
                             f"{fmt(row['tpr'])} | {fmt(row['fpr'])} |")
        lines.append("")
        by_speaker = result["summary"][set_name].get("by_speaker")
        if by_speaker:
            lines += ["F1 with 95% intervals resampling *speakers* instead of voices (voices of one recorded person "
                      "merged: flite kal, kal16 and Festival kal; flite and Festival slt): "
                      + "; ".join(f"{r['detector']} {r['condition']} {fmt(r['f1'])} ({r['voices']} speakers)"
                                  for r in by_speaker) + ".", ""]
    lines += ["## TPR per held-out voice (all seeds and scenes)", "",
              "| detector | engine | voice | positive clips | clean | random | adversarial |",
              "|---|---|---|---|---|---|---|"]
    per: dict[tuple, dict] = {}
    for row in result["voices"]["evaluate"]:
        entry = per.setdefault((row["detector"], row["engine"], row["voice"]), {"clips": row["clips"]})
        entry[row["condition"]] = row["tpr"]
    for (detector, engine, voice), entry in sorted(per.items()):
        lines.append(f"| {detector} | {engine} | {voice} | {entry['clips']} | {entry.get('clean', float('nan')):.2f} | "
                     f"{entry.get('random', float('nan')):.2f} | {entry.get('adversarial', float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


def speakers_of(args: argparse.Namespace) -> dict[str, str]:
    """clip id -> speaker for every clip of the bundled and --voices sets."""
    clips = read_speech_set(BUNDLED_ROOT / "wakeword", "bundled") + read_speech_set(args.voices, "voices")
    return {c.id: c.speaker for c in clips}


def render(out: Path, args: argparse.Namespace) -> str:
    """Rebuild OUT/jam_heldout.md from OUT/jam_heldout.json and OUT/rows.json, adding intervals that
    resample speakers (for runs written before that table existed)."""
    result = json.loads((out / "jam_heldout.json").read_text())
    rows = json.loads((out / "rows.json").read_text())
    speakers = speakers_of(args)
    for name, part in rows.items():
        result["summary"][name]["by_speaker"] = seed_summary(part, speakers, n_resamples=args.n_resamples)
    text = markdown(result)
    (out / "jam_heldout.md").write_text(text)
    return text


def _paired(rows: list[dict], detector: str, condition: str) -> dict[tuple, tuple[int, bool]]:
    """(clip id, seed, draw) -> (label, fired) for one detector and condition."""
    return {(r["clip_id"], r["seed"], r["draw"]): (r["label"], r["fired"]) for r in rows
            if r["detector"] == detector and r["condition"] == condition}


def paired_difference(first: dict, second: dict, voices: dict[str, str], n_resamples: int) -> dict:
    """F1(second) − F1(first) on the same scenes (keys of :func:`_paired`), voice-clustered interval."""
    keys = sorted(set(first) & set(second))
    values = np.array([[first[k][0], first[k][1], second[k][1]] for k in keys], dtype=bool)

    def statistic(v: np.ndarray) -> float:
        return f1_from_counts(v[:, [0, 2]]) - f1_from_counts(v[:, [0, 1]])

    return clustered_bootstrap(values, [voices[k[0]] for k in keys], statistic, n_resamples)


def compare(dirs: list[Path], args: argparse.Namespace) -> str:
    """One row per run (held-out engines, openWakeWord): F1 per condition with voice-clustered
    intervals, adversarial − random on the same scenes, and adversarial F1 minus the first run's."""
    voices = {c.id: c.voice for c in read_speech_set(BUNDLED_ROOT / "wakeword", "bundled")
              + read_speech_set(args.voices, "voices")}
    lines = ["| run | learned on | augmentation | steps | music dB | clean F1 | random F1 | adversarial F1 | "
             "adversarial − random | adversarial − first run's | validation voices: random / adversarial F1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    reference = None
    for folder in dirs:
        result = json.loads((folder / "jam_heldout.json").read_text())
        rows = json.loads((folder / "rows.json").read_text())
        detector = f"openwakeword:{result['settings'].get('word', 'alexa')}"
        s, kept = result["settings"], result["clips"]["learn"]["kept"]
        overall = {r["condition"]: r for r in result["summary"]["evaluate"]["overall"] if r["detector"] == detector}
        validate = {r["condition"]: r for r in result["summary"]["validate"]["overall"] if r["detector"] == detector}
        adversarial = _paired(rows["evaluate"], detector, "adversarial")
        gap = paired_difference(_paired(rows["evaluate"], detector, "random"), adversarial, voices, args.n_resamples)
        versus = "—" if reference is None else fmt(paired_difference(reference, adversarial, voices, args.n_resamples))
        reference = adversarial if reference is None else reference
        lines.append(f"| {folder.name} | {s.get('learn_set', 'all')} eSpeak NG ({kept['positives']} clips) | "
                     f"{'on' if s['augmentation'] else 'off'} | {s['steps']} | {result['music_db']:g} | "
                     f"{fmt(overall['clean']['f1'])} | {fmt(overall['random']['f1'])} | "
                     f"{fmt(overall['adversarial']['f1'])} | {fmt(gap)} | {versus} | "
                     f"{validate['random']['f1']['value']:.3f} / {validate['adversarial']['f1']['value']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voices", type=Path, default=Path("runs/voices"))
    parser.add_argument("--out", type=Path, default=Path("runs/jam_heldout"))
    parser.add_argument("--md", type=Path, help="also write the markdown here")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--levels", type=float, nargs="+", default=[-14.0, -12.0, -10.0, -8.0])
    parser.add_argument("--music-db", type=float, help="skip the level sweep and use this level")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--sweep-draws", type=int, default=2)
    parser.add_argument("--n-resamples", type=int, default=2000)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--learn-set", choices=("all", "bundled", "espeak+flite", "espeak+flite+festival"),
                        default="all",
                        help="learn on every eSpeak NG voice (default), on the bundled train voices only, or on every "
                             "eSpeak NG voice plus the flite (and Festival English) positives; the evaluation rows of "
                             "an engine learned from are then not held out")
    parser.add_argument("--add-learn", type=Path, nargs="+", default=[],
                        help="--accented folders (split 'fresh') whose positives detected dry are learned from too, "
                             "except the voices of --hold-out-voices (leave-one-language-out)")
    parser.add_argument("--add-repeat", type=int, default=1,
                        help="each --add-learn positive enters the learning set this many times")
    parser.add_argument("--hold-out-voices", nargs="+", default=[],
                        help="voices of the --add-learn folders never learned from (full voice names)")
    parser.add_argument("--test-engine", choices=EVALUATE_ENGINES,
                        help="leave one engine out: score on this engine's voices only; learn also from the other "
                             "held-out engine's --learn-voices and choose the level on its --validate-voices")
    parser.add_argument("--learn-voices", nargs="+", default=[],
                        help="with --test-engine: voices of the other engine to learn from")
    parser.add_argument("--learn-repeat", type=int, default=1,
                        help="with --test-engine: each --learn-voices positive enters the learning set this many "
                             "times (so that the other engine's few voices weigh more beside eSpeak NG's hundreds)")
    parser.add_argument("--validate-voices", nargs="+", default=[],
                        help="with --test-engine: voices of the other engine joining the validation voices; the "
                             "level is then the loudest keeping random-music F1 >= 0.70 for every engine at once")
    parser.add_argument("--word", choices=("alexa", "hey_jarvis"), default="alexa",
                        help="the wake word (openWakeWord's model of that name); --voices must hold it")
    parser.add_argument("--transfer-to", help="also score with this detector, e.g. microwakeword:alexa")
    parser.add_argument("--quick", action="store_true", help="a third of the clips (smoke test)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--opt-seed", type=int, default=0,
                        help="the optimiser's seed (its starting loop and scene draws; the rooms stay seed 0's)")
    parser.add_argument("--learn-only", action="store_true",
                        help="save the music (music.pt, adversarial.wav, jam_heldout.json's settings) and stop: for "
                             "jam_fresh.py, which scores it elsewhere")
    parser.add_argument("--render", action="store_true", help="only rebuild OUT/jam_heldout.md from its JSON")
    parser.add_argument("--compare", type=Path, nargs="+", help="only print a table comparing these runs' outputs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.compare:
        print(compare(args.compare, args))
        return
    if args.render:
        print(render(args.out, args))
        return
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    detector = Detector(load_model(f"openwakeword:{args.word}", pad_before=0.0, pad_after=0.0), args.word)
    base = EOTConfig(music_db=-10.0, jitter_db=3.0, scene_seconds=3.0)
    sets = detectable_sets(args.voices, detector, base, bundled_only=args.learn_set == "bundled",
                           quick=args.quick)
    optimisation, _ = room_split(base, 16, 16, 0)
    if args.learn_set.startswith("espeak+flite"):
        engines = args.learn_set.split("+")[1:]
        add_positives(sets["learn"], sets["evaluate"], lambda i: sets["evaluate"]["engines"][i] in engines,
                      "+".join(engines))
    learn_from_folders(sets, args.add_learn, detector, base, args.add_repeat, args.hold_out_voices)

    if args.test_engine:
        leave_one_engine_out(sets, args)
    if args.music_db is None:
        sweep, music_db = engine_level(detector, sets["validate"], base, args.levels, args.seeds, optimisation,
                                       by_engine=bool(args.test_engine), draws=args.sweep_draws)
    else:
        sweep, music_db = {}, args.music_db
    log(f"music at {music_db:g} dB re speech")
    config = EOTConfig(music_db=music_db, jitter_db=3.0, scene_seconds=3.0)
    augmentation = None if args.no_augment else Augmentation()
    synth = KarplusStrong(4.0, detector.sample_rate, seed=args.opt_seed)

    def progress(entry: dict) -> None:
        if entry["step"] % 25 == 0 or entry["step"] == 1:
            log(f"step {entry['step']}: loss {entry['loss']:.3f}, batch firing {entry['firing']:.2f}, "
                f"{entry['seconds']:.0f} s")

    learned = jam(synth, detector, sets["learn"]["utterances"], optimisation, config, steps=args.steps,
                  batch_size=args.batch_size, lr=args.lr, seed=args.opt_seed, callback=progress,
                  augmentation=augmentation)
    write_audio(args.out / "adversarial.wav", learned.music, detector.sample_rate)
    torch.save({"music": learned.music, "music_db": music_db}, args.out / "music.pt")
    if args.learn_only:
        (args.out / "jam_heldout.json").write_text(json.dumps(json_safe({
            "music_db": music_db, "learn_only": True, "history": learned.history,
            "settings": {"word": args.word, "steps": args.steps, "opt_seed": args.opt_seed, "lr": args.lr,
                         "batch_size": args.batch_size, "learn_set": args.learn_set,
                         "add_learn": [str(f) for f in args.add_learn], "hold_out_voices": args.hold_out_voices,
                         "added": sets["learn"].get("added", []), "music_db_given": args.music_db is not None,
                         "augmentation": augmentation.as_dict() if augmentation else None},
            "wall_seconds": time.perf_counter() - started}), indent=1, allow_nan=False))
        log(f"learned in {(time.perf_counter() - started) / 60:.1f} min: {args.out / 'music.pt'}")
        return
    detectors = {f"openwakeword:{args.word}": detector}
    if args.transfer_to:
        detectors[args.transfer_to] = Detector(load_model(args.transfer_to), args.word)
    musics = {"clean": None, "random": random_loops(4.0, detector.sample_rate), "adversarial": learned.music}
    summary, voices, rows_out = {}, {}, {}
    for name in ("evaluate", "validate"):
        part = sets[name]
        rows = evaluate_seeds(detectors, part["utterances"], config, musics, seeds=args.seeds, draws=args.draws,
                              avoid=optimisation,
                              callback=lambda s, t, n=name: log(f"{n}: seed {s} scored in {t:.0f} s"))
        summary[name] = {"overall": seed_summary(rows, part["voices"], n_resamples=args.n_resamples),
                         "by_speaker": seed_summary(rows, speakers_of(args), n_resamples=args.n_resamples),
                         "by_engine": seed_summary(rows, part["voices"], by=part["engines"],
                                                   n_resamples=args.n_resamples)}
        voices[name] = voice_table(rows, part["voices"], part["engines"])
        rows_out[name] = [{k: r[k] for k in ("detector", "condition", "clip_id", "label", "seed", "draw", "score",
                                             "fired", "room")} for r in rows]
        for row in summary[name]["overall"]:
            log(f"{name} {row['detector']} {row['condition']}: F1 {fmt(row['f1'])}, per seed {row['per_seed']}")
    result = {"music_db": music_db, "level_sweep": {str(k): v for k, v in sweep.items()},
              "settings": {"word": args.word, "steps": args.steps, "opt_seed": args.opt_seed,
                           "batch_size": args.batch_size, "lr": args.lr,
                           "seeds": args.seeds,
                           "draws": args.draws, "sweep_draws": args.sweep_draws, "levels": args.levels,
                           "n_resamples": args.n_resamples, "quick": args.quick, "learn_set": args.learn_set,
                           "augmentation": augmentation.as_dict() if augmentation else None, "eot": config.as_dict(),
                           "learn_engines": LEARN_ENGINES, "evaluate_engines": EVALUATE_ENGINES,
                           "test_engine": args.test_engine, "learn_voices": args.learn_voices,
                           "validate_voices": args.validate_voices, "added": sets["learn"].get("added", []),
                           "add_learn": [str(f) for f in args.add_learn], "hold_out_voices": args.hold_out_voices,
                           "sweep_by_engine": {g: {str(k): v for k, v in sw.items()} for g, sw in
                                               sets["validate"].get("sweep_by_engine", {}).items()}},
              "clips": {k: {"given": v["given"], "kept": v["kept"], "notes": v["notes"]} for k, v in sets.items()},
              "history": learned.history, "summary": summary, "voices": voices,
              "wall_seconds": time.perf_counter() - started, "threads": args.threads}
    text = markdown(result)
    (args.out / "jam_heldout.md").write_text(text)
    (args.out / "jam_heldout.json").write_text(json.dumps(json_safe(result), indent=1, allow_nan=False))
    (args.out / "rows.json").write_text(json.dumps(json_safe(rows_out)))
    if args.md:
        args.md.write_text(text)
    log(f"done in {result['wall_seconds'] / 60:.1f} min: {args.out / 'jam_heldout.md'}")


if __name__ == "__main__":
    main()
