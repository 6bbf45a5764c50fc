"""The records schema and its file: one JSON line per (clip, model, condition).

Everything downstream (tables, figures, the card, resume) reads these rows and nothing else.
A batch's rows are appended in one ``write`` followed by ``fsync``; a run killed mid-write leaves
at most one partial last line, which :func:`read_records` ignores and :class:`RecordWriter`
truncates before appending again.
"""

from __future__ import annotations

import json
import re
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

RECORDS_FILE = "records.jsonl"
WARNINGS_FILE = "warnings.jsonl"
SANITY_FILE = "sanity.json"  # the sanity probes' checks (robustaudio.metrics.sanity)

# Column -> meaning. The single source of truth for what a record holds.
FIELDS: dict[str, str] = {
    "clip_id": "clip identifier (path relative to the dataset root)",
    "label": "true label(s), ';'-separated",
    "batch": "batch number in dataset order (the unit of resume)",
    "model": "model name",
    "condition": "short name of the condition (attack, norm, domain, budget)",
    "kind": "attack (a fixed budget) | minimal (a minimal-ε search) | noise (a natural corruption)",
    "attack": "attack name, e.g. 'pgd', 'minimal', 'universal', 'square', 'fmn'",
    "backend": "native | art | foolbox: whose implementation ran",
    "norm": "linf | l2 | l1",
    "domain": "waveform | feature",
    "eps_setting": "absolute budget asked for (None if relative)",
    "snr_db_setting": "relative budget asked for, dB (None if absolute)",
    "eps": "effective per-clip budget in the domain's units",
    "targeted": "whether the attack aimed at a target class",
    "steps": "gradient steps per restart",
    "restarts": "random restarts",
    "clean_pred": "clean prediction (label name(s))",
    "clean_score": "clean score of the true label (softmax or sigmoid)",
    "clean_correct": "clean prediction correct",
    "attacked": "the clip was attacked (clean-correct clips only; every clip for noise)",
    "adv_pred": "prediction under attack",
    "adv_score": "score of the true label under attack",
    "adv_correct": "prediction under attack correct (False for clean errors); under noise, correct at all",
    "success": "the attack reached its goal (attacked clips only)",
    "reused": "not attacked at this budget: it resisted a larger budget of the same ε curve",
    "linf": "L∞ norm of the perturbation (domain units)",
    "l2": "L2 norm of the perturbation",
    "snr_db": "20 log10(||x|| / ||δ||) in dB; None when δ = 0",
    "forwards": "forward passes this clip took part in",
    "backwards": "backward passes this clip took part in",
    "seconds": "wall time of the clip's batch and condition, divided over its clips",
    "seed": "run seed",
    "severity": "natural-noise conditions: the corruption's severity (None for attacks)",
    "severity_unit": "its unit, e.g. 'SNR dB', 'RT60 s', 'chunk s'",
    "transfer_model": "--transfer-to: the second model scoring the same adversarial waveform (else None)",
    "transfer_clean_correct": "that model's clean prediction correct",
    "transfer_adv_pred": "its prediction on the adversarial waveform (None for feature/video perturbations)",
    "transfer_adv_correct": "that prediction correct",
}


def file_safe(name: str) -> str:
    """A model or condition name as one path component: ``hf:/a/dir`` -> ``hf_a_dir``."""
    return re.sub(r"[^\w.+-]+", "_", name)


def _clean(value):
    """JSON-safe scalars: numpy/torch scalars to Python, non-finite floats to None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RecordWriter:
    """Appends rows to ``RUN_DIR/records.jsonl`` a batch at a time, crash-safely."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / RECORDS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_partial_line()

    def _drop_partial_line(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def done_batches(self) -> set[int]:
        """Batch numbers already written (a batch's rows are written together or not at all)."""
        return set(read_records(self.path.parent)["batch"].unique().tolist()) if self.path.exists() else set()

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        text = "".join(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n" for row in rows)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def read_records(run_dir: str | Path) -> pd.DataFrame:
    """All complete rows of a run as a DataFrame (a trailing partial line is ignored)."""
    path = Path(run_dir) / RECORDS_FILE
    if not path.exists():
        return pd.DataFrame(columns=list(FIELDS))
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n"):
                rows.append(json.loads(line))
    records = pd.DataFrame(rows, columns=list(rows[0]) if rows else list(FIELDS))
    if "kind" not in records.columns:  # written before records had a kind: infer it as those versions did
        noise = records["severity"].notna() if "severity" in records.columns else False
        records.insert(records.columns.get_loc("condition") + 1, "kind",
                       np.where(noise, "noise", np.where(records["attack"] == "minimal", "minimal", "attack")))
    return records


def append_warnings(run_dir: str | Path, entries: list[dict]) -> None:
    """Record skipped clips and notes (``{"clip_id", "kind", "message"}``), once each."""
    seen = {(e["clip_id"], e["kind"], e["message"]) for e in read_warnings(run_dir)}
    new = [e for e in entries if (e["clip_id"], e["kind"], e["message"]) not in seen]
    if new:
        with open(Path(run_dir) / WARNINGS_FILE, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(e) + "\n" for e in new))


def read_warnings(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / WARNINGS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
