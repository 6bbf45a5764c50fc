"""Natural-noise runs: every clip under every corruption at each severity, as records."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..acoustics import require_pyroomacoustics
from ..attacks.criteria import is_correct
from ..attacks.result import AttackResult
from ..data import AudioDataset, Batch
from ..data.audio import fit_clip_to_data
from ..metrics.corruptions import CORRUPTIONS, Corruption
from ..models.base import AttackTarget
from .attack import RunOptions, RunSettingsError
from .devices import to_device
from .files import open_run
from .rows import ConditionRows
from .scale import require_ray, run_batches


def noise_batch(model: AttackTarget, model_name: str, batch: Batch, corruptions: dict[str, Corruption], *, seed: int,
                device: str | torch.device = "cpu") -> list[dict]:
    """Rows for every clip of ``batch`` under every corruption at each of its severities.

    ``corruptions``: name -> :class:`~robustaudio.metrics.corruptions.Corruption`. Every clip is corrupted (clean errors
    included): ``adv_correct`` is the accuracy under noise, ``success`` whether a clean-correct clip
    was turned wrong.
    """
    audio, labels = to_device(batch.audio, device), to_device(batch.labels, device)
    video = None if batch.video is None else to_device(batch.video, device)
    with torch.no_grad():
        clean_logits = model(audio, video)
    clean_ok = is_correct(model, clean_logits, labels)
    rows = ConditionRows(model, model_name, batch, audio, labels, clean_logits, clean_ok, steps=0, restarts=0,
                         seed=seed, video=video)
    everything = torch.arange(len(batch.ids), device=device)
    for name, corruption in corruptions.items():
        for severity in corruption.severities:
            generator = torch.Generator().manual_seed(seed * 1_000_003 + batch.index * 7919 + hash_name(name))
            start = time.perf_counter()
            clean_in, logits_fn = rows.view(corruption.domain)
            with torch.no_grad():
                corrupted = corruption(clean_in.detach(), severity, generator, sample_rate=model.sample_rate)
                logits = logits_fn(corrupted)
            ones = torch.ones(len(audio), dtype=torch.long, device=device)
            result = AttackResult(adversarial=corrupted, clean=clean_in, success=~is_correct(model, logits,
                                                                                             labels) & clean_ok,
                                  logits=logits, budget=torch.full((len(audio),), float("nan"), device=device),
                                  forwards=ones, backwards=torch.zeros_like(ones))
            seconds = (time.perf_counter() - start) / max(len(batch.ids), 1)
            rows.add(None, f"noise:{name}", f"noise-{name}-{severity:g}", everything, result, seconds,
                     severity=float(severity), severity_unit=corruption.unit, domain=corruption.domain, kind="noise")
    return rows.rows


def hash_name(name: str) -> int:
    """A stable integer per corruption name, from a digest of the whole name (Python's hash() is
    salted per process; the first bytes alone gave names with a common prefix one seed)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:6], "little") % 1_000_000_007


def noise_suite(names: tuple[str, ...] | list[str] = ()) -> dict[str, Corruption]:
    """The registered corruptions called ``names`` (all of them by default), in registry order."""
    return {name: CORRUPTIONS[name] for name in (names or CORRUPTIONS)}


def run_noise(model: AttackTarget, model_name: str, dataset: AudioDataset, corruptions: dict[str, Corruption],
              run_dir: str | Path, options: RunOptions | None = None, *, extra_settings: dict | None = None,
              on_batch: Callable[[Batch, int, bool], None] | None = None) -> Path:
    """Every clip of ``dataset`` under every corruption (see :func:`noise_suite`); records in
    ``run_dir``, the same schema as attacks, resumable. ``options`` (:class:`~.attack.RunOptions`) as for
    an attack run; its ``sanity`` does not apply (nothing is attacked), and the labels are the data's."""
    options = options or RunOptions()
    if options.labels_from != "data":
        raise RunSettingsError("A noise run scores the data's labels: labels_from='model' is for attack runs.")
    batch_size, seed, device, limit = options.batch_size, options.seed, options.device, options.limit
    if any(c.needs_rooms for c in corruptions.values()):
        require_pyroomacoustics()  # missing extras stop the run before its directory exists
    if options.ray_address:
        require_ray()
    fit_clip_to_data(model, [clip.path for clip in dataset.clips])  # hf: models read the data's clip length
    settings = {
        "model": model_name, "data": str(dataset.root), "clips": len(dataset) if limit is None
        else min(limit, len(dataset)), "attack": "noise", "batch_size": batch_size, "seed": seed,
        "corruptions": {name: [float(v) for v in c.severities] for name, c in corruptions.items()},
        "labels": list(model.labels), "multilabel": bool(model.multilabel), "threats": [],
        **(extra_settings or {}),
    }
    run_dir = open_run(run_dir, settings, restart=options.restart)
    model = model.to(device).eval()
    return run_batches(run_dir, model, dataset,
                       lambda batch: noise_batch(model, model_name, batch, corruptions, seed=seed, device=device),
                       batch_size=batch_size, limit=limit, on_batch=on_batch, ray_address=options.ray_address,
                       workers=options.workers)
