"""F1 with intervals that resample recorded speakers, from a ``jam_fresh.py`` run's ``rows.json``.

Usage::

    python experiments/speaker_ci.py runs/jam_openjtalk_alexa_s0 --metadata runs/openjtalk

Why. ``jam_fresh.py`` resamples the ``voice`` column unless run with ``--cluster-by speaker``; this script serves runs
made without it. Where the voices are speaking styles of a few people (Open
JTalk's mei, takumi, tohoku-f01 and m001), styles of one person are not independent, and an interval that resamples
them is too narrow. This reads the rows back, maps each clip to its ``speaker`` column and gives each detector and
condition its F1 (pooled over scene seeds, as ``jam_fresh.py``), a 95% interval resampling speakers, the number of
speakers, and TPR per speaker. Nothing is scored again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robustaudio.data.speech import read_speech_set
from robustaudio.metrics.jamming import seed_summary, voice_table


def speaker_of(metadata: Path) -> dict[str, str]:
    """clip id -> speaker (``speaker:<name>``), as ``jam_fresh.py`` reads the set: its ``fresh`` clips."""
    return {clip.id: clip.speaker for clip in read_speech_set(metadata, "fresh")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a jam_fresh.py output folder (rows.json)")
    parser.add_argument("--metadata", type=Path, required=True, help="the set the run scored (metadata.csv)")
    parser.add_argument("--n-resamples", type=int, default=2000)
    args = parser.parse_args()
    rows = json.loads((args.run / "rows.json").read_text())
    speakers = speaker_of(args.metadata)
    missing = {r["clip_id"] for r in rows} - set(speakers)
    if missing:
        raise SystemExit(f"{len(missing)} clips of {args.run} are not in {args.metadata}/metadata.csv, "
                         f"e.g. {sorted(missing)[0]}")
    result = {"summary": seed_summary(rows, speakers, n_resamples=args.n_resamples),
              "speakers": voice_table(rows, speakers)}
    for row in result["summary"]:
        low, high = row["f1"]["ci95"]
        print(f"{row['detector']} {row['condition']}: F1 {row['f1']['value']:.3f} [{low:.2f}, {high:.2f}] "
              f"({row['f1']['clusters']} speakers)")
    for row in result["speakers"]:
        print(row)
    (args.run / "speaker_ci.json").write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
