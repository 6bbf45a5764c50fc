"""The resumable batch loop, in one process or sharded over Ray workers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

from ..data import AudioDataset, Batch, DatasetError
from ..extras import require
from ..models.base import AttackTarget
from ..records import WARNINGS_FILE, RecordWriter, append_warnings


def run_batches(run_dir: Path, model: AttackTarget, dataset: AudioDataset, rows: Callable[[Batch], list[dict]], *,
                batch_size: int, limit: int | None, on_batch: Callable[[Batch, int, bool], None] | None,
                ray_address: str | None = None, workers: int | None = None) -> Path:
    """The resumable loop: ``rows(batch)`` for every batch not yet in the records, appended per batch.

    ``on_batch(batch, n_clips, resumed)`` after each batch; ``resumed``: it was already in the records
    (progress displays leave such batches out of their rate).

    With ``ray_address`` the batches run as Ray tasks (retried if a worker dies), at most two per
    worker in flight so memory stays flat; rows are still appended in batch order as soon as the
    oldest pending batch is done, so the records file is the one a single process writes (every
    batch seeds its own generator from the run seed and its index).
    """
    writer = RecordWriter(run_dir)
    done = writer.done_batches()
    skipped: list[dict] = []

    def finish(batch: Batch, batch_rows: list[dict] | None) -> None:
        append_warnings(run_dir, batch.warnings)
        if batch_rows:
            writer.append(batch_rows)

    def report(batch: Batch) -> None:
        skipped.extend(w for w in batch.warnings if w["kind"] == "skipped")
        if on_batch is not None:
            on_batch(batch, len(batch.ids) + sum(w["kind"] == "skipped" for w in batch.warnings), batch.index in done)

    if ray_address is None:
        for batch in dataset.batches(model, batch_size, limit=limit):
            if batch.index not in done:
                finish(batch, rows(batch) if batch.ids else None)
            report(batch)
        _refuse_empty_run(run_dir, writer, skipped)
        return run_dir

    ray = _ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if ray_address == "local" else ray_address, num_cpus=workers,
                 include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(max_retries=3)(_rows_on_worker)
        rows_ref = ray.put(rows)  # the model and settings, shipped once
        window = 2 * max(1, int(ray.available_resources().get("CPU", 1)))
        pending: list[tuple[Batch, object]] = []
        for batch in dataset.batches(model, batch_size, limit=limit):
            if batch.index in done or not batch.ids:
                pending.append((batch, None))
            else:
                pending.append((batch, task.remote(rows_ref, batch)))
            while len([ref for _, ref in pending if ref is not None]) > window or (pending and pending[0][1] is None):
                oldest, ref = pending.pop(0)
                if oldest.index not in done:
                    finish(oldest, ray.get(ref) if ref is not None else None)
                report(oldest)
        for batch, ref in pending:
            if batch.index not in done:
                finish(batch, ray.get(ref) if ref is not None else None)
            report(batch)
    finally:
        if started:
            ray.shutdown()
    _refuse_empty_run(run_dir, writer, skipped)
    return run_dir


def _refuse_empty_run(run_dir: Path, writer: RecordWriter, skipped: list[dict]) -> None:
    """A run where every clip was unusable has no number to report: say so (the reasons stay in the
    run's warnings) instead of writing a report over zero clips."""
    if not skipped or writer.done_batches():  # the records are read back only when clips were skipped
        return
    raise DatasetError(f"All {len(skipped)} clip(s) were unusable, so nothing was attacked; first: "
                       f"{skipped[0]['message']} (all reasons: {run_dir / WARNINGS_FILE}).")


def _rows_on_worker(rows: Callable[[Batch], list[dict]], batch: Batch) -> list[dict]:
    torch.set_num_threads(1)  # one CPU per Ray task; more would oversubscribe the node
    return rows(batch)


def require_ray() -> None:
    """Fail with the install line before any work if --ray is asked for without Ray."""
    _ray()


def _ray() -> ModuleType:
    return require("ray", "scale", "Sharding over workers (--ray)")
