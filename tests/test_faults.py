"""Fault injection on a real `robustaudio attack` process: SIGKILL at random points and a full disk at
random writes, then resume; the records must equal an uninterrupted run's, no row lost or doubled.

CI runs a short version; `pytest -m slow tests/test_faults.py` runs >= 50 kill points and >= 20 full-disk
points (figures in the closing note of the integrity issue).
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from robustaudio.report import read_records

ARGS = ["attack", "--model", "cnn", "--attack", "pgd", "--steps", "2", "--norm", "linf", "--eps", "0.0005",
        "0.002", "--limit", "24", "--batch-size", "1", "--seed", "3", "--no-sanity"]
# Runs the CLI; with FAIL_WRITE=k the k-th write into the run folder's records/warnings/run.json writes half
# of its bytes and then fails with ENOSPC, as a full disk does.
DRIVER = """
import errno, os, sys
k = int(os.environ.get("FAIL_WRITE", "0"))
if k:
    import builtins
    from robustaudio import records
    count = [0]
    class Full:
        def __init__(self, f): self.f = f
        def write(self, data):
            count[0] += 1
            if count[0] == k:
                self.f.write(bytes(data)[: max(1, len(data) // 2)])
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)
        def __getattr__(self, name): return getattr(self.f, name)
        def __enter__(self): return self
        def __exit__(self, *exc): return self.f.__exit__(*exc)
    def full_open(path, *args, **kwargs):
        return Full(builtins.open(path, *args, **kwargs))
    records.open = full_open
from robustaudio.cli import main
main(sys.argv[1:], prog_name="robustaudio")
"""


def launch(out: Path, fail_write: int = 0) -> subprocess.Popen:
    env = {**os.environ, "FAIL_WRITE": str(fail_write), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", DRIVER, *ARGS, "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def records(out: Path) -> pd.DataFrame:
    frame = read_records(out).drop(columns=["seconds"])
    return frame.sort_values(["batch", "condition", "clip_id"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "reference"
    started = time.perf_counter()
    done = launch(out)
    _, err = done.communicate(timeout=600)
    assert done.returncode == 0, err
    return records(out), time.perf_counter() - started


def kill_chain(out: Path, seconds: float, rng: random.Random, kills: int) -> int:
    """Start, SIGKILL after a random time, restart ..., ``kills`` times, then run to the end; the kill points
    that landed while the process was running."""
    landed = 0
    for _ in range(kills):
        process = launch(out)
        try:
            process.wait(timeout=rng.uniform(0.3, seconds))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            landed += 1
        process.communicate()
    final = launch(out)
    _, err = final.communicate(timeout=600)
    assert final.returncode == 0, err
    return landed


def full_disk(out: Path, write: int) -> str:
    """Fail the ``write``-th write with ENOSPC, then rerun: the one-line error, then the resumed run."""
    failing = launch(out, fail_write=write)
    _, err = failing.communicate(timeout=600)
    assert failing.returncode != 0, "the write never came: choose a smaller write number"
    assert "Traceback" not in err, err
    assert "space" in err.lower() and len(err.strip().splitlines()) == 1, err
    resumed = launch(out)
    _, err2 = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err2
    return err.strip()


def check(out: Path, expected: pd.DataFrame) -> None:
    got = records(out)
    assert len(got) == len(expected) == 24 * 2
    assert not got.duplicated(["clip_id", "condition"]).any()
    pd.testing.assert_frame_equal(got, expected)


def test_kill_and_full_disk_lose_nothing(tmp_path, reference):
    expected, seconds = reference
    rng = random.Random(0)
    assert kill_chain(tmp_path / "killed", seconds, rng, kills=3) >= 1
    check(tmp_path / "killed", expected)
    for write in (2, 13):
        full_disk(tmp_path / f"full{write}", write)
        check(tmp_path / f"full{write}", expected)


@pytest.mark.slow
def test_fifty_kills_and_twenty_full_disks(tmp_path, reference):
    expected, seconds = reference
    rng = random.Random(1)
    landed = 0
    for chain in range(10):
        landed += kill_chain(tmp_path / f"chain{chain}", seconds, rng, kills=6)
        check(tmp_path / f"chain{chain}", expected)
    for write in range(1, 21):  # run.json, then one records append per batch (24 batches of one clip)
        full_disk(tmp_path / f"full{write}", write)
        check(tmp_path / f"full{write}", expected)
    print(f"\nkill points that landed: {landed}; full-disk points: 20, each a failed run then a resumed one")
    assert landed >= 50
