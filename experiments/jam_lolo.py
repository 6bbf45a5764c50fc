"""Leave one language out: the fresh voices' scores of every alexa music, restricted to one held-out language.

Usage (after ``jam_fresh.py`` has scored each music; see ``jam_fresh.md``, "Leave one language out")::

    python experiments/jam_lolo.py --fold ca+fi --voices festival:upc_ca_ona_hts festival:suo_fi_lj_diphone \\
        festival:hy_fi_mv_diphone --runs eSpeak=runs/jam_fresh_alexa eSpeak_s1=runs/jam_fresh_alexa_s1 \\
        LOLO=runs/jam_lolo_cafi_score

Reads each run's ``rows.json`` (every scene's score and firing, per detector and condition), keeps the rows of
the named fresh voices, and prints one markdown row per run: random and adversarial F1 pooled over scene seeds
with 95% intervals that resample voices, the per-seed range, microWakeWord's adversarial F1 and each voice's
adversarial TPR. Nothing is scored again: the comparison uses the scenes each run was scored on (the same
rooms per seed; the scene draws of a run depend on which clips it scored).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from robustaudio.data.speech import read_speech_set
from robustaudio.metrics.jamming import seed_summary


def summarise(rows: list[dict], voice_of: dict[str, str], voices: list[str], n_resamples: int) -> dict:
    """F1 per detector and condition on ``voices`` only, and the adversarial TPR of each voice."""
    kept = [r for r in rows if voice_of.get(r["clip_id"]) in voices]
    if not kept:
        raise SystemExit(f"no scored rows of {voices}: was the run scored on these voices?")
    summary = {(s["detector"], s["condition"]): s for s in seed_summary(kept, voice_of, n_resamples=n_resamples)}
    tpr = {}
    for voice in voices:
        fired = [r["fired"] for r in kept if r["condition"] == "adversarial" and r["label"] == 1
                 and r["detector"].startswith("openwakeword") and voice_of[r["clip_id"]] == voice]
        tpr[voice] = float(np.mean(fired)) if fired else float("nan")
    return {"summary": summary, "tpr": tpr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fold", required=True)
    parser.add_argument("--voices", nargs="+", required=True, help="the held-out fresh voices")
    parser.add_argument("--runs", nargs="+", required=True, help="NAME=FOLDER of jam_fresh.py outputs")
    parser.add_argument("--fresh", type=Path, default=Path("runs/accented"))
    parser.add_argument("--n-resamples", type=int, default=2000)
    args = parser.parse_args()
    voice_of = {c.id: c.voice for c in read_speech_set(args.fresh, "fresh")}
    short = [v.split(":")[-1].split("_")[-2] if v.count("_") >= 2 else v.split(":")[-1] for v in args.voices]
    print(f"Fold {args.fold}: held-out voices {', '.join(args.voices)}\n")
    print("| music | random F1 | adversarial F1 [95% CI, voices] | per seed | microWakeWord adv. (random) | "
          f"adv. TPR {' / '.join(short)} |")
    print("|---|---|---|---|---|---|")
    for spec in args.runs:
        name, folder = spec.split("=", 1)
        rows = json.loads((Path(folder) / "rows.json").read_text())
        result = summarise(rows, voice_of, args.voices, args.n_resamples)
        s = result["summary"]
        adv, rnd = s[("openwakeword:alexa", "adversarial")], s[("openwakeword:alexa", "random")]
        low, high = adv["f1"]["ci95"]
        mww = s.get(("microwakeword:alexa", "adversarial")), s.get(("microwakeword:alexa", "random"))
        transfer = f"{mww[0]['f1']['value']:.3f} ({mww[1]['f1']['value']:.3f})" if all(mww) else "-"
        print(f"| {name} | {rnd['f1']['value']:.3f} | **{adv['f1']['value']:.3f}** [{low:.2f}, {high:.2f}] | "
              f"{adv['seed_range'][0]:.2f}-{adv['seed_range'][1]:.2f} | {transfer} | "
              + " / ".join(f"{result['tpr'][v]:.2f}" for v in args.voices) + " |")


if __name__ == "__main__":
    main()
