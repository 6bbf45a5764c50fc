"""Fuzzed datasets: a metadata.csv built from random good and bad pieces either runs, attacking every good
clip and listing every bad one with its reason, or stops with a one-line error before writing anything.

Pieces: good clips (16 kHz, 8 kHz to be resampled, stereo to be downmixed, shorter than the model's window,
odd file names with spaces, commas, quotes and accents, rows of another split), clips to skip (silent, NaN,
corrupt, empty, listed but missing) and mistakes that stop the run (an empty or unknown label, a clip listed
twice, no row in the split asked for).
"""

import csv
import json

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustaudio.cli import main

GOOD = ["tone", "slow", "stereo", "short", "other_split"]
SKIPPED = ["silent", "nan", "corrupt", "empty", "missing"]
FATAL = ["empty_label", "unknown_label", "twice"]
LABELS = ["bird", "engine", "water"]  # of the bundled cnn
NAME = st.text(alphabet="ab xyz,;'\"-_éü0", min_size=1, max_size=6).map(str.strip).filter(bool)


def write_clip(path, kind, rng):
    t = np.arange(16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)).astype(np.float32)
    if kind in ("tone", "other_split", "empty_label", "unknown_label", "twice"):
        soundfile.write(path, tone, 16000)
    elif kind == "slow":
        soundfile.write(path, tone[::2], 8000)
    elif kind == "stereo":
        soundfile.write(path, np.stack([tone, 0.5 * tone], axis=1), 16000)
    elif kind == "short":
        soundfile.write(path, tone[:3000], 16000)
    elif kind == "silent":
        soundfile.write(path, np.zeros(16000, np.float32), 16000)
    elif kind == "nan":
        soundfile.write(path, np.where(t > 0.5, np.nan, tone).astype(np.float32), 16000, subtype="FLOAT")
    elif kind == "corrupt":
        path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(rng.integers(0, 256, 40, dtype=np.uint8)))
    elif kind == "empty":
        path.write_bytes(b"")
    # "missing": listed in metadata.csv, never written


def build(root, pieces, rng):
    """Write the pieces as clips and a metadata.csv; returns (good ids, skipped ids, fatal kinds)."""
    root.mkdir(parents=True)
    rows, good, skipped, fatal = [], set(), set(), set()
    for i, (kind, name, label) in enumerate(pieces):
        path = f"clips/{i}_{name}.wav"
        (root / "clips").mkdir(exist_ok=True)
        write_clip(root / path, kind, rng)
        label_text = {"empty_label": " ", "unknown_label": "spaceship"}.get(kind, f" {label} ")
        split = "train" if kind == "other_split" else "test"
        rows.append({"path": path, "label": label_text, "split": split})
        if kind == "twice":
            rows.append({"path": path, "label": label, "split": "test"})
        if kind in FATAL:
            fatal.add(kind)
        elif kind in SKIPPED:
            skipped.add(path)
        elif split == "test":
            good.add(path)
    with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return good, skipped, fatal


PIECES = st.lists(st.tuples(st.sampled_from(GOOD + SKIPPED + FATAL), NAME, st.sampled_from(LABELS)),
                  min_size=1, max_size=6)


def check_run(tmp_path_factory, pieces, seed):
    tmp = tmp_path_factory.mktemp("fuzz")
    good, skipped, fatal = build(tmp / "data", pieces, np.random.default_rng(seed))
    out = tmp / "run"
    result = CliRunner().invoke(main, ["attack", "--model", "cnn", "--data", str(tmp / "data"), "--attack", "pgd",
                                       "--steps", "1", "--eps", "0.001", "--batch-size", "3", "--no-sanity",
                                       "--out", str(out)])
    if fatal or not (good or skipped):
        assert result.exit_code == 1, result.output
        assert not isinstance(result.exception, SystemExit) or result.exception.code == 1
        message = result.output.strip().splitlines()
        assert message[-1].startswith("Error: ") and "Traceback" not in result.output, result.output
        assert not out.exists(), "a refused run wrote files"
        return
    if not good:  # every clip unusable: a one-line error, the reasons kept in the run's warnings
        assert result.exit_code == 1 and result.output.strip().splitlines()[-1].startswith("Error: "), result.output
        assert "Traceback" not in result.output
    else:
        assert result.exit_code == 0, result.output
        records = [json.loads(line) for line in (out / "records.jsonl").read_text(encoding="utf-8").splitlines()]
        assert {r["clip_id"] for r in records} == good
    warnings = [json.loads(line) for line in (out / "warnings.jsonl").read_text(encoding="utf-8").splitlines()] \
        if (out / "warnings.jsonl").exists() else []
    listed = {w["clip_id"]: w["message"] for w in warnings if w["kind"] == "skipped"}
    assert set(listed) == skipped
    for clip_id, message in listed.items():
        assert clip_id.split("/")[-1] in message  # the reason names the file


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=PIECES, seed=st.integers(0, 2**16))
def test_fuzzed_datasets_run_or_stop_cleanly(tmp_path_factory, pieces, seed):
    check_run(tmp_path_factory, pieces, seed)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=PIECES, seed=st.integers(0, 2**16))
def test_fuzzed_datasets_run_or_stop_cleanly_many(tmp_path_factory, pieces, seed):
    check_run(tmp_path_factory, pieces, seed)
