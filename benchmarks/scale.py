"""Memory of a run against its length, and the cost of Ray scale-out, measured in one run.

    python benchmarks/scale.py [--clips 16 48 105] [--workers 2] [--steps 10]

1. Peak RSS of ``robustaudio attack`` on the first N bundled clips (both splits, 310 in all), each N in a fresh
   subprocess: records are streamed batch by batch, so the peak must not grow with N. With glibc's
   default heap the peak creeps up by ~0.35 MB per clip (fragmentation, not retained tensors: with
   ``MALLOC_MMAP_THRESHOLD_=65536`` it stays within 15 MB from 16 to 310 clips, at 1.6x the time).
2. Wall time of the full bundled test split attacked in one process (torch with all cores) and
   sharded over a local Ray cluster of ``--workers`` single-threaded workers, ratio against the
   single process; the records are checked to be identical (except wall time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = """
import json, resource, sys, time
from robustaudio.attacks import ThreatModel
from robustaudio.data import AudioDataset
from robustaudio.models import load_model
from robustaudio.runner import AttackSpec, RunOptions, run_attack
limit, out, steps = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ray_address, workers = sys.argv[4] or None, int(sys.argv[5])
split = None if sys.argv[6] == "all" else sys.argv[6]
start = time.perf_counter()
run_attack(load_model("cnn"), "cnn", AudioDataset.from_path(split=split), [ThreatModel("linf", eps=0.002)], out,
           AttackSpec("pgd", steps=steps),
           RunOptions(limit=limit, sanity=False, ray_address=ray_address, workers=workers))
print(json.dumps({"seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(limit: int, out: Path, steps: int, ray_address: str = "", workers: int = 1, split: str = "test") -> dict:
    result = subprocess.run([sys.executable, "-c", RUN, str(limit), str(out), str(steps), ray_address, str(workers),
                             split],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, nargs="+", default=[16, 48, 105, 310])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("1. peak RSS of one process against the number of clips (L∞ PGD, ε = 0.002)")
        for n in args.clips:
            r = run(n, tmp / f"mem{n}", args.steps, split="all")  # train and test: 310 clips
            print(f"   {n:5d} clips: peak RSS {r['peak_rss_mb']:7.1f} MB, {r['seconds']:6.1f} s")
        n = 105  # the test split
        single = run(n, tmp / "single", args.steps)
        start = time.perf_counter()
        sharded = run(n, tmp / "ray", args.steps, "local", args.workers)
        wall = time.perf_counter() - start
        from robustaudio.report import read_records
        same = read_records(tmp / "single").drop(columns="seconds").equals(
            read_records(tmp / "ray").drop(columns="seconds"))
        print(f"\n2. {n} clips, one process vs Ray with {args.workers} local workers (ratio to one process)")
        print(f"   one process:          {single['seconds']:6.1f} s  1.00x")
        ratio = sharded["seconds"] / single["seconds"]
        print(f"   Ray, {args.workers} workers:       {sharded['seconds']:6.1f} s  {ratio:.2f}x"
              f"   (cluster start included; {wall:.1f} s with interpreter start)")
        print(f"   records identical: {same}")


if __name__ == "__main__":
    main()
