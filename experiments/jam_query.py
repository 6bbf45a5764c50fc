"""Query-based jamming of microWakeWord ``alexa``: NES over the synthesiser, F1 against queries.

Usage::

    python experiments/make_wakeword_clips.py runs/voices --voices      # once (see jam_heldout.py)
    python experiments/jam_query.py --voices runs/voices --out runs/jam_query
    python experiments/jam_query.py --queries 800 --seeds 1 --quick      # a smoke test

Protocol (issue: "query-based jamming as its own threat model"):

- **Black box.** microWakeWord runs as its TFLite graph (``microwakeword:alexa``); the attack sees its
  scores only, and every scene it scores counts as a query (:func:`robustaudio.attacks.query_jam.query_jam`).
- **Engines apart, as in ``jam_heldout.py``.** The music is learned on eSpeak NG voices (the bundled
  ``train`` voices and ``--voices``' eSpeak NG variants, minus the validation voices) in 16
  optimisation rooms; the headline is measured on flite and Festival voices (never queried) in
  held-out rooms over ``--seeds`` scene seeds, intervals resampling voices.
- **Or one engine left out** (``--test-engine``, as ``jam_heldout.py``'s folds): learn also from the other
  evaluation engine's ``--learn-voices`` (and ``--add-learn`` accented folders), choose the level on its
  ``--validate-voices`` too, for every validation engine at once, and score the test engine alone.
- **The level from validation voices.** The loudest of ``--levels`` at which random music keeps a
  mean F1 >= 0.70 on the bundled eSpeak NG ``test`` voices (never the evaluation engines).
- **F1 against queries.** The loop is kept at several query counts; each is scored on the held-out
  set like the final one (those scorings are measurement, not counted in the attack's budget).

Writes ``OUT/jam_query.json``, ``OUT/music.pt`` (the loops), ``OUT/jam_query.md`` (``--md`` also copies the
markdown) and ``OUT/f1_queries.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from wakeword_protocol import (  # the script's folder is on sys.path  # noqa: E402
    EVALUATE_ENGINES,
    detectable_sets,
    fmt,
    learn_from_folders,
    leave_one_engine_out,
    log,
    validation_level,
)

from robustaudio.acoustics.augmentation import Augmentation
from robustaudio.acoustics.scenes import EOTConfig, room_split
from robustaudio.attacks.jamming import Detector
from robustaudio.attacks.music import KarplusStrong
from robustaudio.attacks.query_jam import FEEDBACK, MUSIC_PARAMETERS, QuerySettings, query_jam
from robustaudio.attacks.substitute_jam import SubstituteSettings, substitute_jam
from robustaudio.metrics.jamming import (
    evaluate_seeds,
    random_loops,
    seed_summary,
)
from robustaudio.models import load_model
from robustaudio.report import style
from robustaudio.report.card import json_safe
from robustaudio.stats import f1_from_counts


def summarise(rows: list[dict], voices: dict, seed: int, n_resamples: int) -> dict:
    return {r["condition"]: r for r in seed_summary(rows, voices, n_resamples=n_resamples, seed=seed)}


def tune(args: argparse.Namespace, detector: Detector, data: dict, config: EOTConfig, optimisation) -> dict:
    """NES's σ, lr and scenes per step, chosen on the validation voices (never the evaluation engines): each
    candidate runs ``--tune-queries`` queries on the learning set from the same start, its loop is scored on the
    validation clips over scene seeds 1-2 in held-out rooms, and the lowest validation F1 wins (ties: the first
    in the grid, which lists the previous defaults first)."""
    grid = [(sigma, lr, batch) for batch in (8, 4) for sigma in (0.05, 0.2) for lr in (0.02, 0.1)]
    tried = []
    for sigma, lr, batch in grid:
        settings = QuerySettings(queries=args.tune_queries, population=args.population, batch_size=batch,
                                 sigma=sigma, lr=lr, snapshots=(), parameters=tuple(args.parameters),
                                 feedback=args.feedback)
        synth = start_synth(args, detector.sample_rate)
        result = query_jam(synth, detector, data["learn"]["utterances"], optimisation, config, settings,
                           seed=args.seed)
        f1 = validation_score(detector, data, config, result.music, optimisation, args.draws)
        tried.append({"sigma": sigma, "lr": lr, "batch_size": batch, "validation_f1": f1,
                      "seconds": result.seconds})
        log(f"tune: σ {sigma:g}, lr {lr:g}, {batch} scenes/step: validation F1 {f1:.3f} after "
            f"{result.queries} queries ({result.seconds:.0f} s)")
    best = min(tried, key=lambda t: t["validation_f1"])
    return {"tried": tried, "chosen": best}


def validation_score(detector: Detector, data: dict, config: EOTConfig, music: torch.Tensor, optimisation,
                     draws: int) -> float:
    """F1 of ``music`` on the validation voices (bundled eSpeak NG test voices, never the evaluation engines),
    scene seeds 1-2 in held-out rooms: what settings are chosen on."""
    rows = evaluate_seeds({"target": detector}, data["validate"]["utterances"], config, {"adversarial": music},
                          seeds=(1, 2), held_out_rooms=16, draws=draws, avoid=optimisation)
    return f1_from_counts(np.array([[r["label"], r["fired"]] for r in rows], dtype=bool))


def start_synth(args: argparse.Namespace, sample_rate: int) -> KarplusStrong:
    """The synthesiser NES starts from: a random loop (``--seed``), or ``--start-from FILE KEY``, a loop learned
    elsewhere (``jam_surrogates.py``'s ``synths.pt``: learned on white-box surrogates, never on microWakeWord)."""
    synth = KarplusStrong(4.0, sample_rate, seed=args.seed)
    if args.start_from:
        path, key = args.start_from
        synth.load_state_dict(torch.load(path, weights_only=True)[key])
    return synth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voices", type=Path, default=Path("runs/voices"))
    parser.add_argument("--out", type=Path, default=Path("runs/jam_query"))
    parser.add_argument("--md", type=Path)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--population", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sigma", type=float, default=0.05)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--levels", type=float, nargs="+", default=[-16.0, -14.0, -12.0, -10.0])
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--n-resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tune-queries", type=int, default=0,
                        help="choose σ, lr and scenes per step on the validation voices first, this many queries each")
    parser.add_argument("--parameters", nargs="+", choices=MUSIC_PARAMETERS, default=list(MUSIC_PARAMETERS),
                        help="the synthesiser parameters NES searches (e.g. gains damping_logit: the melody and "
                             "decays, 187 numbers, leaving the strings' timbre as it starts)")
    parser.add_argument("--feedback", choices=FEEDBACK, default="clip",
                        help="what each query answers: the clip's score, or the score of every 30 ms step of the "
                             "stream (microWakeWord's streaming API)")
    parser.add_argument("--start-from", nargs=2, metavar=("FILE", "KEY"),
                        help="start NES from a learned loop: jam_surrogates.py's OUT/synths.pt and a set name "
                             "(e.g. surrogates), a transfer prior that never queried microWakeWord")
    parser.add_argument("--method", choices=("nes", "substitute"), default="nes",
                        help="nes: NES over the synthesiser's parameters; substitute: fit a streaming DS-CNN to the "
                             "box's answers and jam it with gradients, round after round "
                             "(robustaudio.attacks.substitute_jam)")
    parser.add_argument("--first-queries", type=int, default=4_000, help="substitute: queries before the first fit")
    parser.add_argument("--round-queries", type=int, default=2_000, help="substitute: queries per later round")
    parser.add_argument("--fit-steps", type=int, default=600, help="substitute: Adam steps per fit")
    parser.add_argument("--jam-steps", type=int, default=200, help="substitute: jam steps per round")
    parser.add_argument("--substitutes", type=int, default=1, help="substitute: how many fitted and jammed at once "
                        "(1 as first run here; the library's default is 3)")
    parser.add_argument("--keep-best", action="store_true",
                        help="substitute: keep the round's loop that the box's own answers found firing least (the "
                             "library's default; without it, the last round's loop, as first run here)")
    parser.add_argument("--augment-asks", action="store_true",
                        help="substitute: ask the box about scenes drawn with the jam's talker and device augmentation")
    parser.add_argument("--rooms", type=int, default=16,
                        help="optimisation rooms: the only rooms the attack renders (and, for the substitute, asks "
                             "the box about)")
    parser.add_argument("--device-probability", type=float, default=1.0,
                        help="substitute: the chance each device band (loudspeaker, microphone) is applied to a "
                             "learning scene (Augmentation.device_probability)")
    parser.add_argument("--test-engine", choices=EVALUATE_ENGINES,
                        help="leave one engine out (as jam_heldout.py): score on this engine's voices only; learn "
                             "also from the other engine's --learn-voices and choose the level on its "
                             "--validate-voices too, for every validation engine at once")
    parser.add_argument("--learn-voices", nargs="+", default=[], help="with --test-engine: see jam_heldout.py")
    parser.add_argument("--learn-repeat", type=int, default=1, help="with --test-engine: see jam_heldout.py")
    parser.add_argument("--validate-voices", nargs="+", default=[], help="with --test-engine: see jam_heldout.py")
    parser.add_argument("--add-learn", type=Path, nargs="+", default=[],
                        help="--accented folders whose positives the box handles dry are learned from too")
    parser.add_argument("--add-repeat", type=int, default=1, help="each --add-learn positive enters this many times")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--music-db", type=float, help="skip the level sweep and use this level")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    detector = Detector(load_model("microwakeword:alexa"), "alexa")
    base = EOTConfig(music_db=-10.0, jitter_db=3.0, scene_seconds=3.0)
    data = detectable_sets(args.voices, detector, base, quick=args.quick)
    learn_from_folders(data, args.add_learn, detector, base, args.add_repeat)
    # every learning clip was put to the box once, dry, to keep the ones it detects: queries outside the budget
    # (voices that --test-engine moves in were checked with the evaluation set: their kept positives are counted)
    selection_queries = sum(data["learn"]["given"].values()) + sum(
        a["checked_dry"] or 0 for a in data["learn"].get("added", []))
    if args.test_engine:
        leave_one_engine_out(data, args)
        selection_queries += data["learn"]["added"][-1]["positives"]
    log(f"{selection_queries} dry queries chose the clips to learn from (outside the {args.queries:,} budget)")
    optimisation, _ = room_split(base, args.rooms, 16, args.seed)
    sweep, music_db = validation_level(detector, data, base, args.levels, args.seeds, optimisation, args.music_db,
                                       by_engine=bool(args.test_engine))
    config = EOTConfig(music_db=music_db, jitter_db=3.0, scene_seconds=3.0)
    tuning = None
    if args.tune_queries:
        tuning = tune(args, detector, data, config, optimisation)
        chosen = tuning["chosen"]
        args.sigma, args.lr, args.batch_size = chosen["sigma"], chosen["lr"], chosen["batch_size"]
        log(f"tuned on validation voices: σ {args.sigma:g}, lr {args.lr:g}, {args.batch_size} scenes per step")
    snapshots = tuple(q for q in (500, 1_000, 2_500, 5_000, 10_000, 15_000, 20_000, 30_000) if q <= args.queries)
    synth = start_synth(args, detector.sample_rate)
    learn = data["learn"]["utterances"]
    if args.method == "substitute":
        substitute = SubstituteSettings(queries=args.queries, first_queries=args.first_queries,
                                        round_queries=args.round_queries, fit_steps=args.fit_steps,
                                        jam_steps=args.jam_steps, feedback=args.feedback,
                                        substitutes=args.substitutes, keep_best=args.keep_best,
                                        augment_asks=args.augment_asks)
        result = substitute_jam(synth, detector, learn, optimisation, config, substitute, seed=args.seed,
                                augmentation=Augmentation(device_probability=args.device_probability),
                                callback=lambda e: log(f"round {e['round']}: {e['queries']} queries, fit loss "
                                                       f"{e['fit_loss']:.3f}, jam loss {e['jam_loss']:.3f}, box "
                                                       f"firing {e.get('box_firing', float('nan')):.3f}, "
                                                       f"{e['seconds']:.0f} s"))
    else:
        settings = QuerySettings(queries=args.queries, population=args.population, batch_size=args.batch_size,
                                 sigma=args.sigma, lr=args.lr, snapshots=snapshots, parameters=tuple(args.parameters),
                                 feedback=args.feedback)
        result = query_jam(synth, detector, learn, optimisation, config, settings, seed=args.seed,
                           callback=lambda e: log(f"step {e['step']}: {e['queries']} queries, loss {e['loss']:.3f}, "
                                                  f"firing {e['firing']:.2f}") if e["step"] % 25 == 0 else None)
    torch.save({"music": result.music, "initial": result.initial, "snapshots": result.snapshots},
               args.out / "music.pt")  # the loops, for later scoring or listening
    validation_f1 = validation_score(detector, data, config, result.music, optimisation, args.draws)
    validation_engines = ", ".join(sorted(set(data["validate"]["engines"].values())))
    log(f"validation F1 of the result ({validation_engines} validation voices, scene seeds 1-2): {validation_f1:.3f}")
    evaluated, voices = data["evaluate"]["utterances"], data["evaluate"]["voices"]
    common = {"seeds": tuple(args.seeds), "held_out_rooms": 16, "draws": args.draws, "avoid": optimisation}
    detectors = {"target": detector}
    baseline = evaluate_seeds(detectors, evaluated, config,
                              {"clean": None, "random": random_loops(4.0, detector.sample_rate, 4)}, **common)
    curve = {}
    for queries, loop in sorted({0: result.initial, **result.snapshots}.items()):
        rows = evaluate_seeds(detectors, evaluated, config, {"adversarial": loop}, **common)
        curve[queries] = summarise(baseline + rows, voices, args.seed, args.n_resamples)["adversarial"]
        log(f"{queries} queries: held-out adversarial F1 {fmt(curve[queries]['f1'])}")
    pooled = summarise(baseline, voices, args.seed, args.n_resamples)
    final = max(curve)
    result_json = {
        "music_db": music_db, "sweep": sweep, "method": args.method,
        "settings": (vars(substitute) if args.method == "substitute" else
                     vars(settings) | {"snapshots": list(snapshots)}),
        "sets": {k: v["kept"] for k, v in data.items()}, "added": data["learn"].get("added", []),
        "clean": pooled["clean"], "random": pooled["random"],
        "curve": {str(q): s for q, s in curve.items()}, "attack_queries": result.queries,
        "selection_queries": selection_queries,
        "attack_seconds": result.seconds, "validation_f1": validation_f1, "seconds": time.perf_counter() - started,
        "history": result.history[::10], "args": {k: str(v) for k, v in vars(args).items()}, "tuning": tuning,
    }
    (args.out / "jam_query.json").write_text(json.dumps(json_safe(result_json), indent=2))
    fig, axes = style.figure(1, 1, width=6.5, height=3.2)
    ax = axes[0][0]
    qs = sorted(curve)
    ax.plot(qs, [curve[q]["f1"]["value"] for q in qs], marker="o", color=style.SERIES[2], label="adversarial music")
    ax.fill_between(qs, [curve[q]["f1"]["ci95"][0] for q in qs], [curve[q]["f1"]["ci95"][1] for q in qs],
                    color=style.SERIES[2], alpha=0.2)
    ax.axhline(pooled["random"]["f1"]["value"], color=style.SERIES[1], linestyle="--", label="random music")
    ax.axhline(pooled["clean"]["f1"]["value"], color=style.SERIES[0], linestyle=":", label="no music")
    ax.set_xlabel("queries to microWakeWord (scenes scored)")
    ax.set_ylabel("F1, held-out voices and rooms")
    ax.set_ylim(0, 1.05)
    style.legend_outside(ax)
    style.finish(fig)
    fig.savefig(args.out / "f1_queries.png")
    # the level's origin as it was: given by hand (a protocol's level, chosen elsewhere) or this run's sweep
    origin = ("given with --music-db" if args.music_db is not None else
              f"the loudest of {args.levels} keeping random-music F1 >= 0.70 on validation voices"
              f"{', every engine at once' if args.test_engine else ''}")
    lines = [
        "# Query-based jamming of microWakeWord alexa", "",
        f"Music at {music_db:g} dB re speech ({origin}). Held-out "
        f"{' + '.join(data['evaluate']['kept']['engines'])} voices ({data['evaluate']['kept']}), held-out rooms, "
        f"scene seeds {args.seeds}, {args.draws} draws; 95% intervals resample voices.", "",
        f"- clean F1 {fmt(pooled['clean']['f1'])}", f"- random music F1 {fmt(pooled['random']['f1'])}",
        f"- adversarial music after {final} queries F1 {fmt(curve[final]['f1'])} "
        f"(seed mean {curve[final]['seed_mean']:.3f}, range {curve[final]['seed_range']}); on the validation "
        f"voices ({validation_engines}, scene seeds 1-2) "
        f"{validation_f1:.3f}", "",
        "| queries | adversarial F1 [95% CI] | TPR | FPR |", "|---|---|---|---|",
        *[f"| {q} | {fmt(curve[q]['f1'])} | {curve[q]['tpr']['value']:.3f} | {curve[q]['fpr']['value']:.3f} |"
          for q in qs], "",
        (f"Substitute: {substitute}" if args.method == "substitute" else
         f"NES over {', '.join(settings.parameters)}, {settings.feedback} scores: population {settings.population}, "
         f"{settings.batch_size} scenes per step, σ {settings.sigma}, lr {settings.lr}")
        + f"; attack {result.seconds:.0f} s, "
        f"whole run {time.perf_counter() - started:.0f} s (learning set {data['learn']['kept']}"
        + "".join(f"; + {a['positives']} positives × {a['repeat']} of {a['from']}"
                  for a in data["learn"].get("added", []))
        + ").", "",
        "![F1 against queries](f1_queries.png)", ""]
    if tuning:
        lines += ["## NES settings chosen on the validation voices", "",
                  f"{args.tune_queries} queries each from the same start, validation F1 (bundled eSpeak NG test "
                  "voices, scene seeds 1-2, held-out rooms) of the loop; the lowest is used above.", "",
                  "| σ | lr | scenes per step | validation F1 | attack s |", "|---|---|---|---|---|",
                  *[f"| {t['sigma']:g} | {t['lr']:g} | {t['batch_size']} | {t['validation_f1']:.3f} | "
                    f"{t['seconds']:.0f} |" for t in tuning["tried"]], ""]
    text = "\n".join(lines)
    (args.out / "jam_query.md").write_text(text)
    if args.md:
        args.md.write_text(text)
    print(text)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
