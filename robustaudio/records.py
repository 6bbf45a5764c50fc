"""The records schema and its file: one JSON line per (clip, model, condition).

Everything downstream (tables, figures, the card, resume) reads these rows and nothing else.
A batch's rows are appended in one write followed by ``fsync``, and each row carries
``batch_rows``, the number of rows of its batch: a batch counts as done only when all its rows are
there. A write that fails (a full disk) is rolled back to the file's size before it; a run killed
mid-write (power loss) leaves complete lines of an unfinished batch and at most one partial last
line, which :func:`read_records` ignores and :class:`RecordWriter` drops before appending again.
``warnings.jsonl`` tolerates a partial last line the same way; ``run.json`` is replaced atomically
(:func:`write_json_atomic`) and read by :func:`read_run_json`. A full disk or an unwritable folder
raises :class:`RunDirectoryError`, whose one-line message names the folder and the fix.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

RECORDS_FILE = "records.jsonl"
WARNINGS_FILE = "warnings.jsonl"
SANITY_FILE = "sanity.json"  # the sanity probes' checks (robustaudio.metrics.sanity)
RUN_FILE = "run.json"  # settings, seed, versions, command
BATCH_ROWS = "batch_rows"  # on every written row: how many rows its batch has (not a column of read_records)

NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}

# Column -> meaning. The single source of truth for what a record holds.
FIELDS: dict[str, str] = {
    "clip_id": "clip identifier (path relative to the dataset root)",
    "label": "true label(s), ';'-separated",
    "batch": "batch number in dataset order (the unit of resume)",
    "model": "model name",
    "condition": "short name of the condition (attack, norm, domain, budget)",
    "kind": "attack (a fixed budget) | minimal (a minimal-ε search) | noise (a natural corruption)",
    "attack": "attack name: an attack of robustaudio.runner.ATTACKS ('pgd', 'square', ...), a library attack "
              "('apgd', 'fmn', ... with backend art / foolbox), 'minimal', 'universal', or 'noise:<corruption>'",
    "backend": "native | art | foolbox: whose implementation ran",
    "norm": "linf | l2 | l1",
    "domain": "where the perturbation lives: waveform | feature (the model's normalised features) | video | "
              "waveform+video (both, norms of the audio part)",
    "eps_setting": "absolute budget asked for (None if relative)",
    "snr_db_setting": "relative budget asked for, dB (None if absolute)",
    "eps": "kind attack: the budget this clip had, in the norm and the domain's units (from the SNR for relative "
           "budgets); kind minimal: the smallest norm found to fool it (inf if none); kind noise: None",
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
    "carried": "not attacked at this budget: it resisted a larger budget of the same ε curve, so it resists this one",
    "broken_by": "ensemble attacks: the member that fooled this clip (None if none did, or a single attack)",
    "linf": "L∞ norm of the perturbation (domain units)",
    "l2": "L2 norm of the perturbation",
    "l1": "L1 norm of the perturbation (all three are of the exact perturbation the model saw, computed in float64; "
          "for kind attack never above the clip's eps)",
    "snr_db": "20 log10(||x|| / ||δ||) in dB; None when δ = 0",
    "forwards": "forward passes this clip took part in",
    "backwards": "backward passes this clip took part in",
    "seconds": "wall time of the clip's batch and condition (each budget of an ε curve timed on its own), "
    "divided over its clips",
    "seed": "run seed",
    "severity": "natural-noise conditions: the corruption's severity (None for attacks)",
    "severity_unit": "its unit, e.g. 'SNR dB', 'RT60 s', 'chunk s'",
    "transfer_model": "--transfer-to: the second model scoring the same adversarial waveform (else None)",
    "transfer_clean_correct": "that model's clean prediction correct",
    "transfer_adv_pred": "its prediction on the adversarial waveform (None for feature/video perturbations)",
    "transfer_adv_correct": "that prediction correct",
}


# Fields added after the first records were written; a reader fills them in (or does without) for older runs.
LATER_FIELDS = ("kind", "broken_by", "l1", "severity", "severity_unit", "transfer_model", "transfer_clean_correct",
                "transfer_adv_pred", "transfer_adv_correct")


def check_fields(records: pd.DataFrame, run_dir: str | Path) -> None:
    """Refuse, in one line, records that lack a field every version wrote (hand-edited, or another tool's):
    the report would otherwise stop on a ``KeyError`` deep in its tables."""
    missing = [name for name in FIELDS if name not in LATER_FIELDS and name not in records.columns]
    if len(records) and missing:
        raise RunDirectoryError(f"{Path(run_dir) / RECORDS_FILE} lacks the field(s) {', '.join(missing)} that every "
                                f"version of robustaudio writes: rerun the command that made it with --restart.")


def check_own_folders(run_dir: str | Path, names: tuple[str, ...] = ("figures", "listen")) -> None:
    """Refuse a run folder whose output subfolders are links: a report writes, and clears, files there, which must
    never reach outside the run folder (a copied or planted folder could point ``listen/`` at any folder)."""
    for name in names:
        path = Path(run_dir) / name
        if path.is_symlink():
            raise RunDirectoryError(f"{path} is a link (to {os.readlink(path)}), and a report writes and deletes files "
                                    f"in it: replace the link with a folder (rm {path}), then rerun.")


def file_safe(name: str) -> str:
    """A model or condition name as one path component: ``hf:/a/dir`` -> ``hf_a_dir``."""
    return re.sub(r"[^\w.+-]+", "_", name)


def _clean(value: object) -> object:
    """JSON-safe scalars: numpy/torch scalars to Python, non-finite floats to None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunDirectoryError(OSError):
    """A run directory that cannot be written (full disk, no permission, read-only file system) or
    whose ``run.json`` is unreadable; the one-line message names the folder and the fix. ``errno``
    is the underlying error's (``None`` for an unreadable run.json)."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.errno = code


@contextmanager
def _writing(folder: Path, name: str) -> Iterator[None]:
    """Turn a full disk or an unwritable folder met while writing ``folder/name`` into a
    :class:`RunDirectoryError`; other errors pass unchanged."""
    try:
        yield
    except RunDirectoryError:
        raise
    except OSError as error:
        if error.errno in NO_SPACE:
            raise RunDirectoryError(f"No space left to write {name} in {folder}: free space and rerun the same "
                                    f"command.", error.errno) from error
        if error.errno in NOT_WRITABLE:
            raise RunDirectoryError(f"Cannot write {name} in {folder} ({os.strerror(error.errno)}): choose a "
                                    f"writable --out.", error.errno) from error
        raise


def make_folder(folder: str | Path) -> Path:
    """Create the output folder ``folder`` and its parents; any failure (a path through a file, a folder
    that cannot exist such as one under ``/proc``, no permission, a read-only or full disk) raises a
    one-line :class:`RunDirectoryError` naming it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fix = ("free space and rerun the same command" if error.errno in NO_SPACE else "choose a writable --out")
        raise RunDirectoryError(f"Cannot create the folder {folder} ({error.strerror or error}): {fix}.",
                                error.errno) from error
    return folder


def writable_file(path: str | Path) -> Path:
    """Check, before any work, that the file ``path`` can be written: its folder is created and a temporary
    file made and removed there. A path through a file, no permission, a read-only or full disk raise a
    one-line :class:`RunDirectoryError` naming the folder."""
    path = Path(path)
    make_folder(path.parent)
    with _writing(path.parent, path.name):
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        os.unlink(temporary)
    return path


def save_torch_atomic(path: str | Path, obj: object) -> None:
    """``torch.save(obj)`` to ``path`` whole or not at all (a full disk leaves the old file, or none, and raises
    a one-line :class:`RunDirectoryError`), never a truncated checkpoint."""
    import torch  # noqa: PLC0415 (records reads and writes rows without torch otherwise)

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    _replace_bytes(Path(path), buffer.getvalue())


def describe_os_error(error: OSError, resumable: bool) -> str:
    """One line for a file-system error no layer turned into its own message (a full disk while writing a
    report, say): what failed, on which path, and what to do. ``resumable``: the command keeps its finished
    batches in its run directory (records are appended batch by batch), so rerunning it redoes none of them."""
    kept = ("finished batches are kept, so only what is missing is redone" if resumable else
            "this command keeps no partial results")
    if isinstance(error, RunDirectoryError):  # already one line with its fix; say what a rerun redoes
        return f"{str(error).rstrip('.')} ({kept})." if error.errno in NO_SPACE else str(error)
    where = f": {error.filename}" if error.filename else ""
    reason = error.strerror or str(error)
    if error.errno in NO_SPACE:
        return f"{reason}{where}: free space and rerun the same command ({kept})."
    if error.errno in NOT_WRITABLE:
        return f"Cannot write{' ' + str(error.filename) if error.filename else ''} ({reason}): choose a writable " \
               f"--out, or fix its permissions."
    return f"{reason}{where}: check the path (a missing folder, or a file where a folder should be)."


def _append_bytes(path: Path, data: bytes) -> None:
    """Append ``data`` and ``fsync``, or on any error (a full disk, an interrupt) truncate the file
    back to its size before and re-raise: an append lands whole or not at all."""
    with _writing(path.parent, path.name), open(path, "ab", buffering=0) as f:
        start = os.fstat(f.fileno()).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[f.write(view):]
            os.fsync(f.fileno())
        except BaseException:
            try:
                f.truncate(start)
                os.fsync(f.fileno())
            except OSError:
                pass  # what is left is an unfinished batch, which readers ignore and the writer drops
            raise


def _replace_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` atomically: a temporary file in the same folder, ``fsync``, ``os.replace``."""
    with _writing(path.parent, path.name):
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        umask = os.umask(0)  # mkstemp makes the file 0600; give it the mode a plain open() would
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        try:
            with open(temporary, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        try:  # make the rename itself durable
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError:
            pass


def write_json_atomic(path: str | Path, obj: object, **dump_options: Any) -> None:
    """Write ``obj`` as JSON (``indent=2`` unless given) so that ``path`` holds the old or the new
    content, never a partial one; a full disk or unwritable folder raises :class:`RunDirectoryError`."""
    path = Path(path)
    _replace_bytes(path, json.dumps(obj, **{"indent": 2, **dump_options}).encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` holds the old or the new content, never a partial one; a full disk or
    unwritable folder raises :class:`RunDirectoryError`."""
    _replace_bytes(Path(path), data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) so that ``path`` holds the old or the new content, never a partial one (a report
    a full disk interrupted); a full disk or unwritable folder raises :class:`RunDirectoryError`."""
    _replace_bytes(Path(path), text.encode("utf-8"))


def read_run_json(run_dir: str | Path) -> dict:
    """A run's ``run.json`` (a dict with its ``settings``); one-line :class:`RunDirectoryError` if it
    is missing or unreadable."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise RunDirectoryError(f"{run_dir} is not a run directory (no {RUN_FILE}): pass the --out folder of a "
                                f"run.", errno.ENOENT)
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("settings"), dict):
        raise RunDirectoryError(f"{RUN_FILE} in {run_dir} is unreadable (partial write?): rerun the command that "
                                f"made the run with --restart to start over.")
    return meta


def _complete_lines(data: bytes) -> tuple[list[bytes], list[dict]]:
    """The lines of a records file that belong to complete batches, and their rows (``batch_rows``
    removed). A partial last line, unreadable lines and the rows of batches with fewer rows than
    their ``batch_rows`` are left out; rows written before the marker existed count as complete."""
    lines, rows = [], []
    for line in data.splitlines(keepends=True):
        try:
            row = json.loads(line) if line.endswith(b"\n") else None
        except ValueError:  # garbage a power loss left (e.g. zeros): its batch then lacks a row
            row = None
        if isinstance(row, dict):
            lines.append(line)
            rows.append(row)
    found = Counter(row.get("batch") for row in rows)
    complete = [BATCH_ROWS not in row or found[row.get("batch")] == row[BATCH_ROWS] for row in rows]
    for row in rows:
        row.pop(BATCH_ROWS, None)
    return ([line for line, keep in zip(lines, complete, strict=True) if keep],
            [row for row, keep in zip(rows, complete, strict=True) if keep])


def _keep_complete(path: Path) -> None:
    """Cut ``path`` back to its complete lines (:func:`_complete_lines`): what a crash left unfinished goes."""
    if not path.exists():
        return
    data = path.read_bytes()
    kept = b"".join(_complete_lines(data)[0])
    if kept == data:
        return
    if data.startswith(kept):  # the usual case: the unfinished part is at the end
        with _writing(path.parent, path.name), open(path, "r+b") as f:
            f.truncate(len(kept))
            os.fsync(f.fileno())
    else:
        _replace_bytes(path, kept)


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a JSON-lines file written by :func:`append_rows` (``[]`` if it does not exist); a partial
    last line or a line a power loss garbled is left out, so a crashed run resumes from what was whole."""
    path = Path(path)
    return _complete_lines(path.read_bytes())[1] if path.exists() else []


def append_rows(path: str | Path, rows: list[dict]) -> None:
    """Append ``rows`` (one JSON object a line) to ``path`` whole, with ``fsync``: what a crash left
    unfinished is dropped first, and a failed write (a full disk) is rolled back and raised as a one-line
    :class:`RunDirectoryError`. For row files outside ``records.jsonl`` (e.g. certificates)."""
    path = Path(path)
    if not rows:
        return
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as f:  # only the last byte: a file read whole at every row would cost n² reads
            f.seek(-1, os.SEEK_END)
            cut_off = f.read(1) != b"\n"
        if cut_off:
            _keep_complete(path)
    _append_bytes(path, "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8"))


class RecordWriter:
    """Appends rows to ``RUN_DIR/records.jsonl`` a batch at a time, crash-safely (see the module)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / RECORDS_FILE
        with _writing(self.path.parent, RECORDS_FILE):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_incomplete()

    def _drop_incomplete(self) -> None:
        """Remove a partial last line and the rows of unfinished batches before appending again."""
        _keep_complete(self.path)

    def done_batches(self) -> set[int]:
        """Batch numbers whose rows are all written."""
        return set(read_records(self.path.parent)["batch"].unique().tolist()) if self.path.exists() else set()

    def append(self, rows: list[dict]) -> None:
        """Append the rows of one or more batches whole (each row records its batch's row count);
        a failed write is rolled back."""
        if not rows:
            return
        sizes = Counter(row.get("batch") for row in rows)
        text = "".join(json.dumps({**{k: _clean(v) for k, v in row.items()}, BATCH_ROWS: sizes[row.get("batch")]})
                       + "\n" for row in rows)
        _append_bytes(self.path, text.encode("utf-8"))


def read_records(run_dir: str | Path) -> pd.DataFrame:
    """All rows of a run's complete batches as a DataFrame (rows of an unfinished batch and a
    trailing partial line are ignored)."""
    path = Path(run_dir) / RECORDS_FILE
    if not path.exists():
        return pd.DataFrame(columns=list(FIELDS))
    rows = _complete_lines(path.read_bytes())[1]
    records = pd.DataFrame(rows, columns=list(rows[0]) if rows else list(FIELDS))
    if "kind" not in records.columns:  # written before records had a kind: infer it as those versions did
        noise = records["severity"].notna() if "severity" in records.columns else False
        records.insert(records.columns.get_loc("condition") + 1, "kind",
                       np.where(noise, "noise", np.where(records["attack"] == "minimal", "minimal", "attack")))
    if "reused" in records.columns:  # written before the field was named carried, as in AttackResult
        records = records.rename(columns={"reused": "carried"})
    return records


def append_warnings(run_dir: str | Path, entries: list[dict]) -> None:
    """Record skipped clips and notes (``{"clip_id", "kind", "message"}``), once each. A partial last
    line left by a crash is dropped first; a failed write is rolled back."""
    path = Path(run_dir) / WARNINGS_FILE
    seen = {(e["clip_id"], e["kind"], e["message"]) for e in read_warnings(run_dir)}
    new = [e for e in entries if (e["clip_id"], e["kind"], e["message"]) not in seen]
    if not new:
        return
    if path.exists():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with _writing(path.parent, WARNINGS_FILE), open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
    _append_bytes(path, "".join(json.dumps(e) + "\n" for e in new).encode("utf-8"))


def read_warnings(run_dir: str | Path) -> list[dict]:
    """The warnings of a run; a partial last line (a crash mid-write) and unreadable lines are ignored."""
    path = Path(run_dir) / WARNINGS_FILE
    if not path.exists():
        return []
    warnings = []
    for line in path.read_bytes().splitlines(keepends=True):
        if not line.endswith(b"\n") or not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:  # a line an older version appended after a partial one
            continue
        if isinstance(entry, dict) and {"clip_id", "kind", "message"} <= set(entry):
            warnings.append(entry)
    return warnings
