"""Write a subset of a ``make_wakeword_clips.py`` set: the rows of the named voices, clips shared by a link.

Usage::

    python experiments/split_fresh_set.py runs/openjtalk runs/openjtalk_eval --voices mei_bashful mei_happy ... \\
        --voice-from speaker

Why. The scoring scripts (``jam_surrogates.py --fresh``, ``jam_revalidate.py --fresh``) take a folder, and their
intervals resample the ``voice`` column. ``--voice-from speaker`` writes the ``speaker`` column into ``voice``, so
that a set whose voices are speaking styles of a few recorded people (``--openjtalk``) is resampled by person.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def split(source: Path, out: Path, voices: list[str], voice_from: str = "voice") -> int:
    """Write ``out/metadata.csv`` with the rows of ``source/metadata.csv`` whose ``voice`` is in ``voices`` (their
    ``voice`` taken from the ``voice_from`` column) and link ``out/clips`` to ``source/clips``; returns the rows."""
    with open(source / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    unknown = set(voices) - {row["voice"] for row in rows}
    if unknown:
        raise SystemExit(f"{sorted(unknown)} are not voices of {source}")
    kept = [{**row, "voice": row[voice_from]} for row in rows if row["voice"] in voices]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    link = out / "clips"
    if not link.exists():
        link.symlink_to((source / "clips").resolve())
    return len(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--voices", nargs="+", required=True, help="values of the source's voice column")
    parser.add_argument("--voice-from", default="voice", choices=("voice", "speaker"),
                        help="the column written as voice (speaker: intervals resample recorded people)")
    args = parser.parse_args()
    print(f"wrote {split(args.source, args.out, args.voices, args.voice_from)} rows to {args.out / 'metadata.csv'}")


if __name__ == "__main__":
    main()
