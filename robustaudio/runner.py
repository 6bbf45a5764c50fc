"""Run an attack over a dataset into a run directory, batch by batch, resumably.

A run directory holds ``run.json`` (settings, seed, versions, command), ``records.jsonl`` (one row
per clip and condition, see :mod:`robustaudio.report.records`) and ``warnings.jsonl`` (skipped
clips, resampling). Rerunning the same settings into the same directory skips finished batches; different settings are refused
unless ``restart=True``. Each batch draws its random starts from a generator seeded by
``(seed, batch number)``, so a resumed run writes the same rows as an uninterrupted one.

Audio-visual models get each batch's ``video`` with the audio. A :class:`ThreatModel` with
``modality="video"`` attacks the video with the audio held fixed; a :class:`JointThreat` attacks
both at once, each within its own threat model (:func:`~robustaudio.attacks.pgd_joint`). Rows say
which in ``domain``: ``waveform`` / ``feature`` (audio), ``video``, or ``waveform+video``.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import versions
from .attacks.criteria import decision_names
from .attacks.threat import domain_view
from .attacks import (AttackResult, ThreatModel, budget_order, curve_key, is_correct, is_fooled, lp_norm,
                      pgd_curve, pgd_joint, snr_db)
from .attacks.backends import backend_attack
from .attacks.blackbox import square_attack
from .attacks.universal import universal_perturbation
from .attacks.minimal import minimal_eps
from .metrics.corruptions import CORRUPTIONS, Corruption
from .metrics.sanity import probe_model
from .metrics.transfer import TransferTarget
from .data import AudioDataset, Batch
from .data.audio import write_audio
from .report.records import RECORDS_FILE, SANITY_FILE, WARNINGS_FILE, RecordWriter, append_warnings

RUN_FILE = "run.json"
SANITY_CLIPS = 16
UNIVERSAL_FILE = "universal.pt"
PRECISIONS = ("fp32", "bf16")


class RunSettingsError(ValueError):
    """The run directory holds a run with other settings."""


@dataclass(frozen=True)
class JointThreat:
    """Audio (waveform) and video perturbed together, each within its own threat model.

    Run by :func:`~robustaudio.attacks.pgd_joint`; rows record ``domain="waveform+video"``, the
    audio budget in ``eps_setting`` and the audio perturbation's norms (the video's stays within
    ``video.eps``; the condition name holds both budgets).
    """

    audio: ThreatModel
    video: ThreatModel
    modality = "audio+video"

    def __post_init__(self) -> None:
        if self.audio.modality != "audio" or self.audio.domain != "waveform" or self.video.modality != "video":
            raise ValueError("JointThreat takes a waveform audio threat model and a modality='video' one.")
        if self.audio.eps is None or self.video.eps is None:
            raise ValueError("JointThreat needs absolute budgets (eps) for both modalities.")

    @property
    def norm(self) -> str:
        return self.audio.norm if self.audio.norm == self.video.norm else f"{self.audio.norm}+{self.video.norm}"

    domain = "waveform+video"
    snr_db = None

    @property
    def eps(self) -> float:
        return self.audio.eps

    def describe(self) -> str:
        return f"{self.audio.describe()}+{self.video.describe()}"

    def as_dict(self) -> dict:
        return {"modality": self.modality, "audio": self.audio.as_dict(), "video": self.video.as_dict()}


def where(threat) -> str:
    """The ``domain`` a row records: the audio domain, ``video``, or ``waveform+video``."""
    return "video" if threat.modality == "video" else threat.domain


def uses_video(model) -> bool:
    return "video" in getattr(model, "modalities", ("audio",))


def open_run(run_dir: str | Path, settings: dict, restart: bool = False) -> Path:
    """Create or re-open ``run_dir`` for ``settings``; refuse a mismatch unless ``restart``."""
    run_dir = Path(run_dir)
    meta_path = run_dir / RUN_FILE
    if meta_path.exists() and not restart:
        previous = json.loads(meta_path.read_text())["settings"]
        if previous != settings:
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            raise RunSettingsError(
                f"{run_dir} holds a run with other settings (differs in: {', '.join(changed)}). "
                f"Use another --out, or pass --restart to discard it and start over.")
    elif meta_path.exists() and restart:
        for name in (RECORDS_FILE, RUN_FILE, WARNINGS_FILE, SANITY_FILE, UNIVERSAL_FILE):
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not meta_path.exists():
        meta_path.write_text(json.dumps({"settings": settings, "versions": versions(), "command": sys.argv,
                                         "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2))
    return run_dir


def to_device(tensor: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """Host-to-device copy; through pinned memory and asynchronously when the device is a GPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def precision_context(precision: str, device: str | torch.device):
    """``bf16``: attack passes under torch.autocast in bfloat16 (inputs, projections, the clean
    decision and the records stay float32); ``fp32``: nothing changes."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def _true_scores(model, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    scores = model.scores(logits)
    if model.multilabel:  # mean score of the true labels
        return (scores * labels).sum(-1) / labels.sum(-1).clamp_min(1)
    return scores.gather(1, labels.view(-1, 1)).squeeze(1)


def attack_batch(model, model_name: str, batch: Batch, threats: list[ThreatModel | JointThreat], *, steps: int,
                 restarts: int, seed: int, device: str | torch.device = "cpu",
                 minimal: bool = False, universal: dict | None = None, backend: str = "native",
                 attack: str = "pgd", queries: int = 1000, precision: str = "fp32",
                 minimal_options: dict | None = None, transfer: TransferTarget | None = None) -> list[dict]:
    """Rows for every clip of ``batch`` under every threat model.

    Threat models that differ only in their budget form an ε curve and are run together by
    :func:`~robustaudio.attacks.pgd_curve` (largest budget first; clips that resist a budget are
    not attacked at smaller ones, recorded with ``reused``). With ``minimal``, each curve is
    replaced by one minimal-ε search (:func:`~robustaudio.attacks.minimal_eps`, settings such as
    ``eps_max``, ``search_steps``, ``rel_tol`` in ``minimal_options``) started from its smallest
    budget; its rows hold the minimal ε found in ``eps``. With ``universal`` (threat
    description -> learned δ), each threat model's δ is added to every clip instead. Any other
    ``backend`` / ``attack`` (ART or foolbox attacks, the native black-box ``square``) runs once per
    threat model. A :class:`JointThreat` runs :func:`~robustaudio.attacks.pgd_joint` on its own. With
    ``transfer``, a second model also scores every waveform-domain adversarial clip (``transfer_*`` fields).
    """
    audio = to_device(batch.audio, device)
    labels = to_device(batch.labels, device)
    video = None if batch.video is None else to_device(batch.video, device)
    with torch.no_grad():
        clean_logits = model(audio, video)
    clean_ok = is_correct(model, clean_logits, labels)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + batch.index)
    curves: dict[tuple, list[ThreatModel]] = defaultdict(list)
    for threat in threats:
        curves[("joint", threat) if isinstance(threat, JointThreat) else curve_key(threat)].append(threat)
    attacked = torch.nonzero(clean_ok).flatten()
    rows = ConditionRows(model, model_name, batch, audio, labels, clean_logits, clean_ok, steps=steps,
                         restarts=restarts, seed=seed, video=video, transfer=transfer)
    with precision_context(precision, device):
        for curve in curves.values():
            if isinstance(curve[0], JointThreat):
                _attack_joint(model, batch, rows, curve[0], audio, video, labels, attacked, generator, steps=steps)
                continue
            _attack_curve(model, batch, rows, curve, audio, labels, attacked, clean_logits, generator, steps=steps,
                          restarts=restarts, minimal=minimal, universal=universal, backend=backend, attack=attack,
                          queries=queries, device=device, video=video, minimal_options=minimal_options)
    return rows.rows


def _attack_joint(model, batch: Batch, rows: "ConditionRows", threat: JointThreat, audio, video, labels, attacked,
                  generator, *, steps: int) -> None:
    """The rows of one joint (audio and video) condition."""
    start = time.perf_counter()
    result = None
    if attacked.numel():
        joint = pgd_joint(model, audio[attacked], video[attacked], labels[attacked], threat.audio, threat.video,
                          steps=steps, generator=generator)
        device = audio.device
        result = AttackResult(adversarial=joint.audio, clean=audio[attacked], success=joint.success.to(device),
                              logits=joint.logits, eps=torch.full((attacked.numel(),), float(threat.audio.eps),
                                                                  device=device),
                              forwards=joint.forwards.to(device), backwards=joint.backwards.to(device))
    seconds = (time.perf_counter() - start) / max(len(batch.ids), 1)
    rows.add(threat, "pgd", f"pgd-{threat.describe()}", attacked, result, seconds)


def _attack_curve(model, batch: Batch, rows: "ConditionRows", curve: list[ThreatModel], audio, labels, attacked,
              clean_logits, generator, *, steps, restarts, minimal, universal, backend, attack, queries,
              device, video=None, minimal_options: dict | None = None) -> None:
    """The rows of one ε curve (threat models that differ in their budget only)."""
    start = time.perf_counter()
    some_video = None if video is None else video[attacked]
    if universal is not None:
        for threat in curve:
            result = apply_universal(model, audio[attacked], labels[attacked], threat,
                                     universal[threat.describe()].to(device), video=some_video)
            seconds = (time.perf_counter() - start) / max(len(batch.ids) * len(curve), 1)
            rows.add(threat, "universal", f"universal-{threat.describe()}", attacked, result, seconds)
        return
    if (backend, attack) != ("native", "pgd"):
        label = attack if backend == "native" else f"{backend}-{attack}"
        for threat in curve:
            start = time.perf_counter()
            result = (run_other_attack(model, audio[attacked], labels[attacked], threat, backend=backend,
                                       attack=attack, steps=steps, queries=queries, generator=generator,
                                       clean_logits=clean_logits[attacked]) if attacked.numel() else None)
            seconds = (time.perf_counter() - start) / max(len(batch.ids), 1)
            rows.add(threat, attack, f"{label}-{threat.describe()}", attacked, result, seconds,
                     backend=backend)
        return
    if minimal:
        threat = min(curve, key=budget_order)
        result = (minimal_eps(model, audio[attacked], labels[attacked], threat, steps=steps,
                              generator=generator, clean_logits=clean_logits[attacked], video=some_video,
                              **(minimal_options or {}))
                  if attacked.numel() else None)
        seconds = (time.perf_counter() - start) / max(len(batch.ids), 1)
        rows.add(threat, "minimal", f"minimal-{threat.norm}-{where(threat)}", attacked, result, seconds,
                 kind="minimal")
        return
    results = (pgd_curve(model, audio[attacked], labels[attacked], curve, steps=steps,
                         restarts=restarts, generator=generator,
                         clean_logits=clean_logits[attacked], video=some_video) if attacked.numel() else None)
    seconds = (time.perf_counter() - start) / max(len(batch.ids) * len(curve), 1)
    for position, threat in enumerate(curve):
        rows.add(threat, "pgd", f"pgd-{threat.describe()}", attacked,
                 None if results is None else results[position], seconds)


def run_other_attack(model, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, *, backend: str,
                     attack: str, steps: int, queries: int, generator: torch.Generator,
                     clean_logits: torch.Tensor) -> AttackResult:
    """The native black-box square attack, or an ART / foolbox attack through the adapters."""
    if backend == "native" and attack == "square":
        return square_attack(model, audio, labels, threat, queries=queries, generator=generator,
                             clean_logits=clean_logits)
    return backend_attack(model, audio, labels, threat, backend=backend, attack=attack, steps=steps,
                          generator=generator)


def apply_universal(model, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel,
                    delta: torch.Tensor, video: torch.Tensor | None = None) -> AttackResult:
    """Add one learned perturbation ``delta`` to every clip ``audio`` ``[B, T]``; score once."""
    clean, logits_fn = threat.view(model, audio, video)
    clean = clean.detach()
    adversarial = threat.apply(clean, delta.expand_as(clean))
    with torch.no_grad():
        logits = logits_fn(adversarial)
    ones = torch.ones(len(audio), dtype=torch.long, device=clean.device)
    return AttackResult(adversarial=adversarial, clean=clean, success=is_fooled(model, logits, labels),
                        logits=logits, eps=torch.full((len(audio),), float(threat.eps), device=clean.device),
                        forwards=ones, backwards=torch.zeros_like(ones))


def learn_universal(model, dataset: AudioDataset, threats: list[ThreatModel], run_dir: Path, *,
                    batch_size: int, device: str | torch.device, options: dict) -> dict[str, torch.Tensor]:
    """Learn (or, on resume, load) one δ per threat model from ``dataset``; saved in ``universal.pt``
    (and as WAV files for waveform perturbations, to listen to)."""
    path = run_dir / UNIVERSAL_FILE
    if path.exists():
        return torch.load(path, weights_only=True)
    batches = [(b.audio, b.labels) for b in dataset.batches(model, batch_size) if b.ids]
    deltas, history = {}, {}
    for threat in threats:
        result = universal_perturbation(model, batches, threat, device=device, **options)
        deltas[threat.describe()] = result.delta.cpu()
        history[threat.describe()] = result.history
        if threat.domain == "waveform":
            peak = float(result.delta.abs().max()) or 1.0
            write_audio(run_dir / f"universal-{threat.describe()}.wav", (result.delta / peak).cpu(),
                        model.sample_rate)
    (run_dir / "universal_history.json").write_text(json.dumps(history, indent=2))
    torch.save(deltas, path)
    return deltas


class ConditionRows:
    """Turns one batch's attack results into records, one row per clip and condition."""

    def __init__(self, model, model_name: str, batch: Batch, audio: torch.Tensor, labels: torch.Tensor,
                 clean_logits: torch.Tensor, clean_ok: torch.Tensor, *, steps: int, restarts: int,
                 seed: int, video: torch.Tensor | None = None, transfer: TransferTarget | None = None):
        self.model, self.model_name, self.batch, self.labels = model, model_name, batch, labels
        self.transfer = transfer
        self.transfer_clean = None if transfer is None else transfer.score(audio, labels)[1]
        self.audio, self.video, self.views = audio, video, {}
        self.clean_logits, self.clean_ok = clean_logits, clean_ok
        self.clean_pred = decision_names(model, model.predict(clean_logits))
        self.clean_score = _true_scores(model, clean_logits, labels)
        self.settings = {"steps": steps, "restarts": restarts, "seed": seed}
        self.rows: list[dict] = []

    def view(self, domain: str):
        """The batch's clean input in ``domain`` (``waveform``, ``feature``, ``video``; ``waveform+video``
        is viewed as its audio) and its logits function, computed once per domain."""
        if domain not in self.views:
            if domain == "video":  # as ThreatModel.view for modality="video"
                self.views[domain] = (self.video, lambda x, index=None: self.model(
                    self.audio if index is None else self.audio[index], x))
            else:
                self.views[domain] = domain_view(self.model, self.audio, domain.split("+")[0], self.video)
        return self.views[domain]

    def add(self, threat: ThreatModel | None, attack: str, condition: str, attacked: torch.Tensor,
            result, seconds: float, backend: str = "native", severity: float | None = None,
            severity_unit: str | None = None, domain: str | None = None, kind: str = "attack") -> None:
        """``result``: an AttackResult or MinimalResult over the ``attacked`` clips, or None.
        ``kind``: the records' ``kind`` (attack, minimal or noise).
        Natural-noise conditions have no threat model: they give ``domain`` and ``severity``."""
        model, batch, n = self.model, self.batch, len(self.batch.ids)
        device = self.clean_logits.device
        domain = where(threat) if threat is not None else domain
        clean_in, logits_fn = self.view(domain)
        adversarial, adv_logits = clean_in.detach().clone(), self.clean_logits.clone()
        success = torch.zeros(n, dtype=torch.bool, device=device)
        reused = torch.zeros(n, dtype=torch.bool, device=device)
        eps = torch.full((n,), float("nan"), device=device)
        forwards = torch.zeros(n, dtype=torch.long, device=device)
        backwards = torch.zeros(n, dtype=torch.long, device=device)
        if result is not None:
            adversarial[attacked] = result.adversarial
            success[attacked] = result.success
            eps[attacked] = result.eps
            forwards[attacked] = result.forwards
            backwards[attacked] = result.backwards
            if hasattr(result, "logits"):
                adv_logits[attacked] = result.logits.float()
                reused[attacked] = result.carried
            else:  # a minimal-ε search keeps no logits: score its adversarial inputs once
                with torch.no_grad():
                    adv_logits[attacked] = logits_fn(result.adversarial, attacked)
        delta = adversarial - clean_in
        adv_ok = is_correct(model, adv_logits, self.labels)
        if severity is None:  # attacks leave clean errors alone: they stay errors
            adv_ok = adv_ok & self.clean_ok
        adv_pred = decision_names(model, model.predict(adv_logits))
        adv_score = _true_scores(model, adv_logits, self.labels)
        linf, l2, snr = lp_norm(delta, "linf"), lp_norm(delta, "l2"), snr_db(clean_in, delta)
        # Transfer: the target scores the same adversarial waveform (features are the surrogate's own).
        transfer_pred, transfer_ok = ([None] * n, [None] * n)
        if self.transfer is not None and domain == "waveform":
            transfer_pred, transfer_ok = self.transfer.score(adversarial, self.labels)
            transfer_ok = transfer_ok.tolist()
        for i, clip_id in enumerate(batch.ids):
            was_attacked = bool(self.clean_ok[i]) or severity is not None
            self.rows.append({
                "clip_id": clip_id, "label": batch.label_names[i], "batch": batch.index,
                "model": self.model_name, "condition": condition, "kind": kind, "attack": attack,
                "backend": backend,
                "norm": threat.norm if threat else None, "domain": domain,
                "eps_setting": threat.eps if threat else None,
                "snr_db_setting": threat.snr_db if threat else None, "eps": eps[i] if was_attacked else None,
                "targeted": False, "steps": self.settings["steps"], "restarts": self.settings["restarts"],
                "clean_pred": self.clean_pred[i], "clean_score": self.clean_score[i],
                "clean_correct": bool(self.clean_ok[i]), "attacked": was_attacked,
                "adv_pred": adv_pred[i], "adv_score": adv_score[i], "adv_correct": adv_ok[i],
                "success": bool(success[i]) if was_attacked else None,
                "reused": bool(reused[i]), "linf": linf[i], "l2": l2[i], "snr_db": snr[i],
                "forwards": forwards[i], "backwards": backwards[i], "seconds": seconds,
                "seed": self.settings["seed"], "severity": severity, "severity_unit": severity_unit,
                "transfer_model": self.transfer.name if self.transfer is not None else None,
                "transfer_clean_correct": bool(self.transfer_clean[i]) if self.transfer is not None else None,
                "transfer_adv_pred": transfer_pred[i], "transfer_adv_correct": transfer_ok[i],
            })


def probe_batch(model, batch: Batch, threats: list[ThreatModel | JointThreat], run_dir: Path, *, steps: int,
                restarts: int, seed: int, device: str | torch.device = "cpu") -> None:
    """Run the sanity probes on up to ``SANITY_CLIPS`` clean-correct clips of ``batch`` at the
    largest budget of each ε curve (of each modality's part of a joint threat); write ``sanity.json``
    (once per run)."""
    audio, labels = to_device(batch.audio, device), to_device(batch.labels, device)
    video = None if batch.video is None else to_device(batch.video, device)
    with torch.no_grad():
        correct = torch.nonzero(is_correct(model, model(audio, video), labels)).flatten()[:SANITY_CLIPS]
    if correct.numel() == 0:
        return  # try the next batch
    curves: dict[tuple, list[ThreatModel]] = defaultdict(list)
    for threat in threats:
        for single in (threat.audio, threat.video) if isinstance(threat, JointThreat) else (threat,):
            curves[curve_key(single)].append(single)
    generator = torch.Generator().manual_seed(seed * 1_000_003 - 1)
    found = []
    for curve in curves.values():
        threat = max(curve, key=budget_order)
        for check in probe_model(model, audio[correct], labels[correct], threat, steps=steps,
                                 restarts=restarts, generator=generator,
                                 video=None if video is None else video[correct]):
            found.append({**check.as_dict(), "threat": threat.describe(), "clips": int(correct.numel())})
    (run_dir / SANITY_FILE).write_text(json.dumps(found, indent=2))


def run_attack(model, model_name: str, dataset: AudioDataset, threats: list[ThreatModel | JointThreat],
               run_dir: str | Path, *, steps: int = 10, restarts: int = 1, batch_size: int = 16,
               seed: int = 0, device: str | torch.device = "cpu", limit: int | None = None,
               extra_settings: dict | None = None, restart: bool = False, minimal: bool = False,
               sanity: bool = True, universal_from: AudioDataset | None = None,
               universal_options: dict | None = None, backend: str = "native", attack: str = "pgd",
               queries: int = 1000, ray_address: str | None = None, workers: int | None = None,
               precision: str = "fp32", minimal_options: dict | None = None,
               transfer: TransferTarget | None = None,
               on_batch: Callable[[Batch, int], None] | None = None) -> Path:
    """Attack every clip of ``dataset`` under every threat model; rows go to ``run_dir``.

    ``precision``: ``"bf16"`` runs the attack's passes under bfloat16 autocast (see
    :func:`precision_context`); check it against fp32 on a subset before trusting it.
    ``ray_address``: shard batches over Ray workers (``"local"`` starts a local cluster of
    ``workers`` CPUs); the records are the same as a single-process run's (see :func:`run_batches`).
    ``minimal``: search the minimal ε per clip instead of attacking at fixed budgets (``minimal_options``:
    ``eps_max``, ``search_steps``, ``rel_tol`` of :func:`~robustaudio.attacks.minimal_eps`).
    ``universal_from``: learn one perturbation per threat model on that dataset (options in
    ``universal_options``, see :func:`~robustaudio.attacks.universal_perturbation`) and evaluate it
    on ``dataset``.
    ``transfer``: a second model that scores the same adversarial waveforms (black-box transfer;
    :class:`~robustaudio.metrics.transfer.TransferTarget`).
    ``on_batch(batch, n_clips)`` is called after each batch (for progress bars).
    Audio-visual models: threat models of either modality and :class:`JointThreat` s run natively
    (PGD, ε curves, minimal ε); universal perturbations and other backends are audio-only.
    Returns the run directory.
    """
    check_modalities(model, threats, universal=universal_from is not None, backend=backend, attack=attack)
    settings = {
        "model": model_name, "data": str(dataset.root), "clips": len(dataset) if limit is None
        else min(limit, len(dataset)), "threats": [t.as_dict() for t in threats], "attack": "universal" if universal_from is not None else "minimal" if minimal else attack,
        "backend": backend, **({"queries": queries} if attack == "square" else {}),
        **({"precision": precision} if precision != "fp32" else {}),
        **({"minimal_options": minimal_options} if minimal and minimal_options else {}),
        "steps": steps, "restarts": restarts, "batch_size": batch_size, "seed": seed,
        "labels": list(model.labels), "multilabel": bool(model.multilabel), "sanity": sanity,
        **({"universal_from": str(universal_from.root), "universal_clips": len(universal_from),
            "universal_options": universal_options or {}} if universal_from is not None else {}),
        **({"transfer_to": transfer.name} if transfer is not None else {}),
        **(extra_settings or {}),
    }
    run_dir = open_run(run_dir, settings, restart=restart)
    torch.manual_seed(seed)
    model = model.to(device).eval()
    deltas = None
    if universal_from is not None:
        deltas = learn_universal(model, universal_from, threats, run_dir, batch_size=batch_size,
                                 device=device, options=universal_options or {})
        sanity = False  # the probes are about per-clip PGD
    if (backend, attack) != ("native", "pgd"):
        sanity = False  # the probes need gradients and run native PGD; compare runs instead
    if sanity and not (run_dir / SANITY_FILE).exists():  # in this process, before any sharding
        for batch in dataset.batches(model, batch_size, limit=limit):
            if batch.ids:
                probe_batch(model, batch, threats, run_dir, steps=steps, restarts=restarts, seed=seed,
                            device=device)
            if (run_dir / SANITY_FILE).exists():
                break

    def rows(batch: Batch) -> list[dict]:
        return attack_batch(model, model_name, batch, threats, steps=steps, restarts=restarts, seed=seed,
                            device=device, minimal=minimal, universal=deltas, backend=backend,
                            attack=attack, queries=queries, precision=precision, minimal_options=minimal_options,
                            transfer=transfer)

    return run_batches(run_dir, model, dataset, rows, batch_size=batch_size, limit=limit, on_batch=on_batch,
                       ray_address=ray_address, workers=workers)


def check_modalities(model, threats: list, *, universal: bool = False, backend: str = "native",
                     attack: str = "pgd") -> None:
    """Refuse threat models on an input the model does not use, and audio-only machinery on video.

    An attack on an unused input cannot change anything (and has no gradient to follow).
    """
    modalities = getattr(model, "modalities", ("audio",))
    for threat in threats:
        needed = {"audio+video": {"audio", "video"}}.get(threat.modality, {threat.modality})
        missing = sorted(needed - set(modalities))
        if missing:
            raise RunSettingsError(f"{threat.describe()} perturbs {' and '.join(missing)}, which this model "
                                   f"({', '.join(modalities)}) does not use: attack its "
                                   f"{' / '.join(modalities)} instead.")
    if uses_video(model) and (universal or (backend, attack) != ("native", "pgd")):
        raise RunSettingsError("Universal perturbations and --backend/--attack other than native PGD take audio "
                               "only; for an audio-visual model use native PGD (per clip, ε curves, --minimal).")


def run_batches(run_dir: Path, model, dataset: AudioDataset, rows: Callable[[Batch], list[dict]], *,
                batch_size: int, limit: int | None, on_batch: Callable[[Batch, int], None] | None,
                ray_address: str | None = None, workers: int | None = None) -> Path:
    """The resumable loop: ``rows(batch)`` for every batch not yet in the records, appended per batch.

    With ``ray_address`` the batches run as Ray tasks (retried if a worker dies), at most two per
    worker in flight so memory stays flat; rows are still appended in batch order as soon as the
    oldest pending batch is done, so the records file is the one a single process writes (every
    batch seeds its own generator from the run seed and its index).
    """
    writer = RecordWriter(run_dir)
    done = writer.done_batches()

    def finish(batch: Batch, batch_rows: list[dict] | None) -> None:
        append_warnings(run_dir, batch.warnings)
        if batch_rows:
            writer.append(batch_rows)

    def report(batch: Batch) -> None:
        if on_batch is not None:
            on_batch(batch, len(batch.ids) + sum(w["kind"] == "skipped" for w in batch.warnings))

    if ray_address is None:
        for batch in dataset.batches(model, batch_size, limit=limit):
            if batch.index not in done:
                finish(batch, rows(batch) if batch.ids else None)
            report(batch)
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
    return run_dir


def _rows_on_worker(rows: Callable[[Batch], list[dict]], batch: Batch) -> list[dict]:
    torch.set_num_threads(1)  # one CPU per Ray task; more would oversubscribe the node
    return rows(batch)


def _ray():
    try:
        import ray
    except ImportError as error:
        raise RuntimeError("--ray needs Ray: pip install 'robustaudio[scale]'") from error
    return ray


def noise_batch(model, model_name: str, batch: Batch, corruptions: dict[str, Corruption], *, seed: int,
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
            result = AttackResult(adversarial=corrupted, clean=clean_in, success=~is_correct(model, logits, labels) & clean_ok,
                                  logits=logits, eps=torch.full((len(audio),), float("nan"), device=device),
                                  forwards=ones, backwards=torch.zeros_like(ones))
            seconds = (time.perf_counter() - start) / max(len(batch.ids), 1)
            rows.add(None, f"noise:{name}", f"noise-{name}-{severity:g}", everything, result, seconds,
                     severity=float(severity), severity_unit=corruption.unit, domain=corruption.domain, kind="noise")
    return rows.rows


def hash_name(name: str) -> int:
    """A stable small integer per corruption name (Python's hash() is salted per process)."""
    return int.from_bytes(name.encode()[:4].ljust(4, b"\0"), "little") % 100_003


def noise_suite(names: tuple[str, ...] | list[str] = ()) -> dict[str, Corruption]:
    """The registered corruptions called ``names`` (all of them by default), in registry order."""
    return {name: CORRUPTIONS[name] for name in (names or CORRUPTIONS)}


def run_noise(model, model_name: str, dataset: AudioDataset, corruptions: dict[str, Corruption],
              run_dir: str | Path, *, batch_size: int = 16, seed: int = 0, device: str | torch.device = "cpu",
              limit: int | None = None, restart: bool = False, extra_settings: dict | None = None,
              ray_address: str | None = None, workers: int | None = None,
              on_batch: Callable[[Batch, int], None] | None = None) -> Path:
    """Every clip of ``dataset`` under every corruption (see :func:`noise_suite`); records in
    ``run_dir``, the same schema as attacks, resumable."""
    settings = {
        "model": model_name, "data": str(dataset.root), "clips": len(dataset) if limit is None
        else min(limit, len(dataset)), "attack": "noise", "batch_size": batch_size, "seed": seed,
        "corruptions": {name: [float(v) for v in c.severities] for name, c in corruptions.items()},
        "labels": list(model.labels), "multilabel": bool(model.multilabel), "threats": [],
        **(extra_settings or {}),
    }
    run_dir = open_run(run_dir, settings, restart=restart)
    model = model.to(device).eval()
    return run_batches(run_dir, model, dataset,
                       lambda batch: noise_batch(model, model_name, batch, corruptions, seed=seed, device=device),
                       batch_size=batch_size, limit=limit, on_batch=on_batch, ray_address=ray_address,
                       workers=workers)
