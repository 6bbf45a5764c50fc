"""Score learned jamming loops on a validation set again, paired by start: for deciding a setting afresh.

Usage::

    python experiments/make_wakeword_clips.py runs/voices_languages --languages      # once
    python experiments/jam_revalidate.py --baseline runs/jam_query_sub3_aug_r64_s{0,1,2,3} \\
        --candidate runs/jam_query_sub3_aug_r64_d50_s{0,1,2,3} --out runs/jam_revalidate

Each ``--baseline`` / ``--candidate`` folder is a ``jam_query.py`` run (``music.pt`` and ``jam_query.json``); the
two lists are paired by position (same start seed). Every loop is scored on the **validation clips**: the bundled
eSpeak NG test clips (``jam_query.py``'s validation set) plus ``--languages``' clips of split ``validate`` (voices
no learning set has: the script raises if one is a learning voice), kept where microWakeWord is right dry; at the
run's own level, scene seeds ``--seeds``, ``--draws`` draws, in the held-out rooms of the run's start seed (never its
optimisation rooms). The held-out evaluation voices (flite, Festival) are not read, but for:

``--held-out-engine flite`` scores the evaluation voices of that engine instead: a measurement after the fact
(e.g. two protocols' loops on the same held-out scenes), never a choice. ``--fresh FOLDER`` scores every clip of a
``make_wakeword_clips.py`` folder (``--sam``, ``--accented``) the same way.

Printed and written to ``OUT/jam_revalidate.md`` / ``.json``: each loop's validation F1 with its voice-clustered
interval (per validation part too), the pairs, how many pairs the candidate wins, and the voice-clustered interval
of the mean paired difference (candidate − baseline; voices resampled jointly across all loops), and a per-voice
table: each voice's TPR under random music and under every loop (its positive scenes over all seeds and draws).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from wakeword_protocol import (  # the script's folder is on sys.path  # noqa: E402
    CLUSTER_CHOICES,
    EVALUATE_ENGINES,
    cluster_of,
    kept_counts,
    log,
    speech_split,
)

from robustaudio.acoustics.scenes import EOTConfig, room_split
from robustaudio.attacks.jamming import Detector, load_speech
from robustaudio.data.speech import read_speech_set
from robustaudio.metrics.jamming import clean_correct, evaluate_seeds, random_loops, seed_summary, voice_table
from robustaudio.models import load_model
from robustaudio.report.card import json_safe
from robustaudio.stats import clustered_bootstrap, f1_from_counts


def validation_clips(voices: Path, languages: Path, word: str) -> list:
    """The bundled eSpeak NG test clips and ``languages``' validate clips; raises if a voice is also learned."""
    split = speech_split(voices, word=word)
    extra = [c for c in read_speech_set(languages, "languages") if c.split == "validate"]
    if not extra:
        raise SystemExit(f"{languages} has no clips of split 'validate': make it with "
                         f"`python experiments/make_wakeword_clips.py {languages} --languages`.")
    shared = {c.voice for c in split["learn"]} & {c.voice for c in extra}
    if shared:
        raise SystemExit(f"{len(shared)} validation voice(s) are learning voices: {sorted(shared)[:5]}")
    return split["validate"] + extra


def run_settings(folder: Path) -> dict:
    """A ``jam_query.py`` run's loop, level, start seed and optimisation rooms."""
    saved = json.loads((folder / "jam_query.json").read_text())
    return {"music": torch.load(folder / "music.pt", weights_only=True)["music"], "music_db": saved["music_db"],
            "seed": int(saved["args"]["seed"]), "rooms": int(saved["args"]["rooms"]),
            "device_probability": saved["args"].get("device_probability", "1.0")}


def paired_difference(rows: dict[str, list[dict]], pairs: list[tuple[str, str]], voices: dict[str, str],
                      n_resamples: int) -> dict:
    """Mean over ``pairs`` of F1(candidate) − F1(baseline), voice-clustered: each resample draws voices and
    keeps all of their rows in every loop."""
    names = sorted(rows)
    table = np.array([[names.index(name), r["label"], r["fired"]] for name in names for r in rows[name]])
    clusters = [voices[r["clip_id"]] for name in names for r in rows[name]]
    index = [(names.index(b), names.index(c)) for b, c in pairs]

    def statistic(values: np.ndarray) -> float:
        f1 = {k: f1_from_counts(values[values[:, 0] == k][:, 1:].astype(bool)) for k in range(len(names))}
        return float(np.mean([f1[c] - f1[b] for b, c in index]))

    return clustered_bootstrap(table, clusters, statistic, n_resamples=n_resamples)


def per_voice_lines(voice_tpr: dict[str, dict[str, float]], loops: list[str]) -> list[str]:
    """Markdown rows: each voice's TPR under random music and under each loop (columns in ``loops`` order; a
    folder given as both baseline and candidate is one column)."""
    lines = ["Per voice, TPR over its positive scenes (all seeds and draws):", "",
             "| voice | random music | " + " | ".join(loops) + " |", "|---" * (len(loops) + 2) + "|"]
    for voice, tpr in sorted(voice_tpr.items()):
        lines.append(f"| {voice} | " + " | ".join(f"{tpr.get(k, float('nan')):.2f}" for k in ["random", *loops])
                     + " |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, nargs="+", required=True)
    parser.add_argument("--candidate", type=Path, nargs="+", required=True)
    parser.add_argument("--voices", type=Path, default=Path("runs/voices"))
    parser.add_argument("--languages", type=Path, default=Path("runs/voices_languages"))
    parser.add_argument("--out", type=Path, default=Path("runs/jam_revalidate"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--n-resamples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--music-db", type=float,
                        help="play every loop at this level (dB re speech) instead of its run's: after the fact")
    parser.add_argument("--held-out-engine", choices=EVALUATE_ENGINES,
                        help="score on this evaluation engine's voices instead (a measurement after the fact, e.g. "
                             "to compare two protocols' loops on the same held-out scenes; never to choose)")
    parser.add_argument("--fresh", type=Path,
                        help="score on every clip of this make_wakeword_clips.py folder instead (after the fact)")
    parser.add_argument("--cluster-by", choices=CLUSTER_CHOICES, default="voice",
                        help="--fresh: the unit the intervals resample (speaker: the recorded person)")
    args = parser.parse_args()
    if args.fresh and args.held_out_engine:
        raise SystemExit("--fresh and --held-out-engine each name the clips to score: give one.")
    if len(args.baseline) != len(args.candidate):
        raise SystemExit("--baseline and --candidate pair by position: give as many of each.")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    detector = Detector(load_model("microwakeword:alexa"), "alexa")
    base = EOTConfig(music_db=-10.0, jitter_db=3.0, scene_seconds=3.0)
    if args.held_out_engine:  # measurement only: the evaluation voices of one engine, never for a choice
        clips = [c for c in speech_split(args.voices)["evaluate"] if c.engine == args.held_out_engine]
    elif args.fresh:  # measurement only, as above
        clips = read_speech_set(args.fresh, "fresh")
    else:
        clips = validation_clips(args.voices, args.languages, "alexa")
    utterances, voice_of, engine_of, notes = load_speech(clips, "alexa", detector.sample_rate)
    voice_of = cluster_of(clips, args.cluster_by, loaded=voice_of)
    utterances = utterances.subset(clean_correct(detector, utterances, base))
    by_engine = bool(args.held_out_engine or args.fresh)
    part = {i: engine_of[i] if by_engine else "languages" if i.startswith("languages/") else "bundled test"
            for i in utterances.ids}
    part_names = sorted(set(part.values()))
    kept = {p: kept_counts(utterances.subset(torch.tensor([part[i] == p for i in utterances.ids])), voice_of,
                           engine_of) for p in part_names}
    log(f"validation clips kept: {kept}")
    rows, scores = {}, {}
    random_f1: dict = {}
    voice_tpr: dict[str, dict[str, float]] = {}  # voice -> {"random" or loop folder: TPR}
    for folder in args.baseline + args.candidate:
        run = run_settings(folder)
        level = run["music_db"] if args.music_db is None else args.music_db
        config = EOTConfig(music_db=level, jitter_db=3.0, scene_seconds=3.0)
        optimisation, _ = room_split(base, run["rooms"], 16, run["seed"])
        name = str(folder)
        rows[name] = evaluate_seeds({"target": detector}, utterances, config, {"adversarial": run["music"]},
                                    seeds=tuple(args.seeds), held_out_rooms=16, draws=args.draws, avoid=optimisation)
        if not random_f1:  # how hard the set is: random loops at the same level, in the first run's rooms
            loops = evaluate_seeds({"target": detector}, utterances, config,
                                   {"random": random_loops(4.0, detector.sample_rate, 4)}, seeds=tuple(args.seeds),
                                   held_out_rooms=16, draws=args.draws, avoid=optimisation)
            for entry in voice_table(loops, voice_of):
                voice_tpr.setdefault(entry["voice"], {})["random"] = entry["tpr"]
            random_f1 = {"all": seed_summary(loops, voice_of, n_resamples=args.n_resamples)[0]["f1"],
                         **{s["group"]: s["f1"]["value"]
                            for s in seed_summary(loops, voice_of, by=part, n_resamples=args.n_resamples)}}
            log(f"random music: validation F1 {random_f1['all']['value']:.3f}, by part "
                f"{ {k: round(v, 3) for k, v in random_f1.items() if k != 'all'} }")
        for entry in voice_table(rows[name], voice_of):
            voice_tpr.setdefault(entry["voice"], {})[name] = entry["tpr"]
        pooled = seed_summary(rows[name], voice_of, n_resamples=args.n_resamples)[0]
        by_part = {s["group"]: s for s in seed_summary(rows[name], voice_of, by=part, n_resamples=args.n_resamples)}
        scores[name] = {"f1": pooled["f1"], "tpr": pooled["tpr"]["value"], "fpr": pooled["fpr"]["value"],
                        "parts": {p: s["f1"]["value"] for p, s in by_part.items()}, "seed": run["seed"],
                        "device_probability": run["device_probability"], "music_db": level}
        log(f"{name}: validation F1 {pooled['f1']['value']:.3f} {pooled['f1']['ci95']} "
            f"({', '.join(f'{p} {v:.3f}' for p, v in scores[name]['parts'].items())})")
    pairs = [(str(b), str(c)) for b, c in zip(args.baseline, args.candidate)]
    diff = paired_difference(rows, pairs, voice_of, args.n_resamples)
    base_mean = float(np.mean([scores[b]["f1"]["value"] for b, _ in pairs]))
    cand_mean = float(np.mean([scores[c]["f1"]["value"] for _, c in pairs]))
    wins = sum(scores[c]["f1"]["value"] < scores[b]["f1"]["value"] for b, c in pairs)
    held_out = args.held_out_engine or (args.fresh and f"fresh {args.fresh}")
    title = f"Held-out {held_out} F1" if held_out else "Validation F1"
    lines = [f"# {title} of paired loops", "",
             f"Clips kept: {kept}. Music at {sorted({v['music_db'] for v in scores.values()})} dB. Scene seeds "
             f"{args.seeds}, {args.draws} draws, held-out rooms of each run's start seed; 95% intervals resample "
             "voices.", "",
             f"| start seed | baseline F1 [95% CI] | candidate F1 [95% CI] | baseline ({' / '.join(part_names)}) | "
             f"candidate ({' / '.join(part_names)}) |", "|---|---|---|---|---|"]
    for b, c in pairs:
        def cell(name: str) -> str:
            f1 = scores[name]["f1"]
            return f"{f1['value']:.3f} [{f1['ci95'][0]:.3f}, {f1['ci95'][1]:.3f}]"

        def parts(name: str) -> str:
            return " / ".join(f"{scores[name]['parts'].get(p, float('nan')):.3f}" for p in part_names)

        lines.append(f"| {scores[b]['seed']} | {cell(b)} | {cell(c)} | {parts(b)} | {parts(c)} |")
    lines += ["", f"- random music (first run's rooms): F1 {random_f1['all']['value']:.3f}; "
              + ", ".join(f"{p} {random_f1.get(p, float('nan')):.3f}" for p in part_names),
              f"- mean over starts: baseline {base_mean:.3f}, candidate {cand_mean:.3f}; the candidate is lower "
              f"on {wins} of {len(pairs)} starts",
              f"- mean paired difference (candidate − baseline) {diff['value']:+.3f} "
              f"[{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}] ({diff['clusters']} voices resampled)", ""]
    lines += per_voice_lines(voice_tpr, [str(f) for f in dict.fromkeys(args.baseline + args.candidate)])
    text = "\n".join(lines)
    (args.out / "jam_revalidate.md").write_text(text)
    (args.out / "jam_revalidate.json").write_text(json.dumps(json_safe(
        {"kept": kept, "scores": scores, "random": random_f1, "pairs": pairs, "difference": diff,
         "baseline_mean": base_mean, "candidate_mean": cand_mean, "candidate_wins": wins, "notes": notes,
         "voice_tpr": voice_tpr,
         "engines": sorted(set(engine_of.values())), "args": {k: str(v) for k, v in vars(args).items()}}), indent=2))
    print(text)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
