"""What a run says while it runs: a time left measured without start-up or resumed batches, "already
complete" on a finished run, and a Ctrl-C that says how to resume."""

import os
import signal
import subprocess
import sys
import time

import pytest

from robustaudio.cli.common import Progress, clock_text


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_time_left_leaves_out_start_up_and_resumed_batches(capsys):
    progress = Progress("attack", total=100, every=0)
    progress.clock = clock = FakeClock()
    progress.started = progress.last = progress.printed = 0.0
    progress(None, 20, True)          # resumed from the records: instant
    clock.now = 30.0
    progress(None, 10, False)         # the first computed batch: 25 s start-up + 5 s of work
    assert "about" not in progress.line(clock.now)
    clock.now = 35.0
    progress(None, 10, False)         # 5 s per 10 clips from here on
    assert progress.line(clock.now).startswith("attack: 40/100 clips, 35 s elapsed, about 30 s left")
    assert "(20 from the records)" in progress.line(clock.now)
    # Before the fix (click's bar: time since start / clips done) it said 35 s / 40 clips x 60 = 52 s.


def test_a_finished_run_says_already_complete(capsys):
    progress = Progress("noise", total=8, every=0)
    progress(None, 4, True)
    progress(None, 4, True)
    progress.close()
    assert "already complete (all 8 clips were in the records)" in capsys.readouterr().out


def test_clock_text():
    assert [clock_text(s) for s in (4.4, 242, 3749)] == ["4 s", "4:02", "1:02:29"]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_says_that_rerunning_resumes(tmp_path, stop):
    """SIGINT (Ctrl-C) or SIGTERM (`kill`) to a real run after its first batch: exit 130, one message that says how
    to resume (click alone printed only "Aborted!"; SIGTERM ended it silently), and the rerun finishes from the
    saved batches."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "robustaudio.cli", "attack", "--eps", "0.002", "--attack", "pgd", "--steps", "20",
            "--limit", "48", "--batch-size", "4", "--no-sanity", "--out", str(out)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    records = out / "records.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (records.exists() and records.stat().st_size):
        time.sleep(0.2)
    process.send_signal(stop)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stdout + stderr
    assert "rerun the same command to resume" in stderr and "Traceback" not in stderr
    saved = len(records.read_text().splitlines())
    assert 0 < saved < 48
    if stop == signal.SIGTERM:  # the same handler from here on: the resume is checked once, after Ctrl-C
        return
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=600, env=os.environ)
    assert rerun.returncode == 0, rerun.stderr
    assert "from the records" in rerun.stdout
    assert len(records.read_text().splitlines()) == 48
