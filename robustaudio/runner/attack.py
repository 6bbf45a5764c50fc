"""Attack runs: a dataset × threat models × one :class:`AttackSpec` -> records, batch by batch.

Each batch draws its random starts from a generator seeded by ``(seed, batch number)``, so a
resumed run writes the same rows as an uninterrupted one. Threat models that differ only in their
budget form an ε curve, run together by :func:`~robustaudio.attacks.curve.eps_curve`.
Audio-visual models get each batch's ``video`` with the audio; a ``ThreatModel(modality="video")``
attacks the video with the audio held fixed, a :class:`~robustaudio.attacks.joint.JointThreat`
both at once. Rows say which in ``domain``.

How ``--eps`` travels: the CLI makes one ``ThreatModel(eps=...)`` per value; :func:`attack_batch`
groups them into curves (:func:`~robustaudio.attacks.curve.curve_key`); the curve attack gets each
threat model's per-clip ``budget`` ``[B]``; :class:`~robustaudio.runner.rows.ConditionRows` writes the
setting (``eps_setting``) and the budget each clip had (``eps``) into its rows.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..attacks.criteria import decision_names, is_correct
from ..attacks.curve import budget_order, curve_key, eps_curve
from ..attacks.joint import JointThreat, pgd_joint
from ..attacks.minimal import minimal_eps
from ..attacks.result import AttackResult
from ..attacks.threat import ThreatModel
from ..data import AudioDataset, Batch
from ..data.audio import fit_clip_to_data
from ..metrics.sanity import probe_model
from ..metrics.transfer import TransferTarget
from ..models.base import AttackTarget
from ..records import SANITY_FILE, write_json_atomic
from .devices import precision_context, to_device
from .files import RunSettingsError, open_run
from .registry import ATTACKS, budget_attack
from .rows import ConditionRows
from .scale import require_ray, run_batches
from .spec import AttackSpec
from .universal import apply_universal, learn_universal

SANITY_CLIPS = 16
Threat = ThreatModel | JointThreat


def uses_video(model: AttackTarget) -> bool:
    return "video" in getattr(model, "modalities", ("audio",))


def attack_batch(model: AttackTarget, model_name: str, batch: Batch, threats: list[Threat], spec: AttackSpec, *,
                 seed: int,
                 device: str | torch.device = "cpu", universal: dict[str, torch.Tensor] | None = None,
                 transfer: TransferTarget | None = None, labels_from: str = "data") -> list[dict]:
    """Rows for every clip of ``batch`` under every threat model.

    ``spec.name``: an attack of the registry, run over each ε curve (clips that resist a budget are
    not attacked at smaller ones, recorded with ``carried``); ``minimal``: one minimal-ε search per
    curve, started from its smallest budget, whose rows hold the norm found in ``eps``;
    ``universal``: ``universal`` (threat description -> learned δ) added to every clip. A
    :class:`JointThreat` runs :func:`~robustaudio.attacks.joint.pgd_joint`. With ``transfer``, a
    second model also scores every waveform-domain adversarial clip (``transfer_*`` fields).
    ``labels_from="model"``: the model's own clean decisions are the labels (unlabelled recordings), so
    robust accuracy reads as the share of decisions that do not flip; multi-label clips with no tag
    detected are not attacked (there is nothing to switch off).
    """
    batch, audio, video, labels, clean_logits, clean_ok = clean_batch(model, batch, device, labels_from)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + batch.index)
    curves: dict[tuple, list] = defaultdict(list)
    for threat in threats:
        curves[("joint", threat) if isinstance(threat, JointThreat) else curve_key(threat)].append(threat)
    attacked = torch.nonzero(clean_ok).flatten()
    rows = ConditionRows(model, model_name, batch, audio, labels, clean_logits, clean_ok, steps=spec.steps,
                         restarts=spec.restarts, seed=seed, video=video, transfer=transfer)
    some_video = None if video is None else video[attacked]
    per_clip = max(len(batch.ids), 1)
    with precision_context(spec.precision, device):
        for curve in curves.values():
            start = time.perf_counter()
            if isinstance(curve[0], JointThreat):
                result = _joint(model, audio, video, labels, attacked, curve[0], spec, generator)
                rows.add(curve[0], "pgd", f"pgd-{curve[0].describe()}", attacked, result,
                         (time.perf_counter() - start) / per_clip)
            elif spec.name == "universal":
                assert universal is not None
                for threat in curve:
                    start = time.perf_counter()
                    result = apply_universal(model, audio[attacked], labels[attacked], threat,
                                             universal[threat.describe()].to(device), video=some_video)
                    rows.add(threat, "universal", f"universal-{threat.describe()}", attacked, result,
                             (time.perf_counter() - start) / per_clip)
            elif spec.name == "minimal":
                threat = min(curve, key=budget_order)
                found = (minimal_eps(model, audio[attacked], labels[attacked], threat, steps=spec.gradient_steps,
                                     generator=generator, clean_logits=clean_logits[attacked], video=some_video,
                                     **spec.options) if attacked.numel() else None)
                rows.add(threat, "minimal", f"minimal-{threat.norm}-{threat.row_domain}", attacked, found,
                         (time.perf_counter() - start) / per_clip, kind="minimal")
            else:
                _attack_curve(model, rows, curve, spec, audio, labels, attacked, clean_logits, some_video,
                              generator, per_clip)
    return rows.rows


def clean_batch(model: AttackTarget, batch: Batch, device: str | torch.device, labels_from: str
                ) -> tuple[Batch, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``batch`` on ``device`` with its clean logits and which clips are attacked (clean-correct; with
    ``labels_from="model"`` the model's own decisions are the labels, and tagless multi-label clips are left
    alone). Returns ``(batch, audio, video, labels, clean_logits, attacked_mask)``."""
    audio = to_device(batch.audio, device)
    video = None if batch.video is None else to_device(batch.video, device)
    with torch.no_grad():
        clean_logits = model(audio, video)
    if labels_from == "model":
        batch = predicted_labels(model, batch, clean_logits)
    labels = to_device(batch.labels, device)
    ok = is_correct(model, clean_logits, labels)
    if labels_from == "model" and model.multilabel:
        ok &= labels.sum(dim=-1) > 0
    return batch, audio, video, labels, clean_logits, ok


def predicted_labels(model: AttackTarget, batch: Batch, clean_logits: torch.Tensor) -> Batch:
    """``batch`` with the model's clean decisions as its labels (``[B]`` classes, or ``[B, K]`` 0/1 tags)."""
    decisions = model.predict(clean_logits).cpu()
    labels = decisions.float() if model.multilabel else decisions
    return replace(batch, labels=labels, label_names=decision_names(model, decisions))


def unlabelled(dataset: AudioDataset, model: AttackTarget) -> AudioDataset:
    """``dataset`` with every clip labelled with the model's first class: with ``labels_from="model"`` the
    data's own labels (possibly unknown to the model, or none) are never read."""
    return AudioDataset(dataset.root, [replace(clip, labels=(model.labels[0],)) for clip in dataset.clips])


def _attack_curve(model: AttackTarget, rows: ConditionRows, curve: list[ThreatModel], spec: AttackSpec,
                  audio: torch.Tensor, labels: torch.Tensor, attacked: torch.Tensor, clean_logits: torch.Tensor,
                  video: torch.Tensor | None, generator: torch.Generator, per_clip: int) -> None:
    """Rows of one ε curve under the spec's attack (as one curve, or budget by budget)."""
    attack, as_curve = budget_attack(spec)
    if as_curve:
        start = time.perf_counter()
        results: list[AttackResult | None] = (
            list(eps_curve(attack, model, audio[attacked], labels[attacked], curve, generator=generator,
                           clean_logits=clean_logits[attacked], video=video))
            if attacked.numel() else [None] * len(curve))
        average = (time.perf_counter() - start) / len(curve)  # where no budget was attacked
        for threat, result in zip(curve, results):
            seconds = result.seconds if result is not None and result.seconds is not None else average
            rows.add(threat, spec.name, f"{spec.label}-{threat.describe()}", attacked, result, seconds / per_clip,
                     backend=spec.backend)
        return
    for threat in curve:
        start = time.perf_counter()
        result = None
        if attacked.numel():
            clean, _ = threat.view(model, audio[attacked], video)
            result = attack(model, audio[attacked], labels[attacked], threat, eps=threat.budget(clean.detach()),
                            clean_logits=clean_logits[attacked], video=video, init_delta=None, generator=generator)
        rows.add(threat, spec.name, f"{spec.label}-{threat.describe()}", attacked, result,
                 (time.perf_counter() - start) / per_clip, backend=spec.backend)


def _joint(model: AttackTarget, audio: torch.Tensor, video: torch.Tensor | None, labels: torch.Tensor,
           attacked: torch.Tensor, threat: JointThreat, spec: AttackSpec,
           generator: torch.Generator) -> AttackResult | None:
    """One joint (audio and video) condition, as an AttackResult on the audio."""
    if not attacked.numel():
        return None
    assert video is not None  # check_modalities: a joint threat needs a model that takes video; batches then have it
    joint = pgd_joint(model, audio[attacked], video[attacked], labels[attacked], threat.audio, threat.video,
                      steps=spec.gradient_steps, generator=generator)
    device = audio.device
    return AttackResult(adversarial=joint.audio, clean=audio[attacked], success=joint.success.to(device),
                        logits=joint.logits, budget=torch.full((attacked.numel(),), float(threat.eps), device=device),
                        forwards=joint.forwards.to(device), backwards=joint.backwards.to(device))


def probe_batch(model: AttackTarget, batch: Batch, threats: list[Threat], run_dir: Path, spec: AttackSpec, *, seed: int,
                device: str | torch.device = "cpu", labels_from: str = "data") -> None:
    """Run the sanity probes on up to ``SANITY_CLIPS`` clean-correct clips of ``batch``; write
    ``sanity.json`` (once per run).

    The model checks run once per ε curve (at its largest budget); the attack checks (converged,
    random noise) at every budget, with the run's attack against one with about 4x its work: an
    unconverged small budget is what an ε curve hides if only its largest budget is probed.
    """
    batch, audio, video, labels, clean_logits, correct = clean_batch(model, batch, device, labels_from)
    correct = torch.nonzero(correct).flatten()[:SANITY_CLIPS]
    if correct.numel() == 0:
        return  # try the next batch
    curves: dict[tuple, list[ThreatModel]] = defaultdict(list)
    for threat in threats:
        for single in (threat.audio, threat.video) if isinstance(threat, JointThreat) else (threat,):
            curves[curve_key(single)].append(single)
    probed = spec if spec.name in ATTACKS else replace(spec, name="pgd", options={})  # minimal: its PGD
    attack, _ = budget_attack(probed)
    stronger, _ = budget_attack(replace(probed, steps=4 * (probed.steps or 1), restarts=probed.restarts + 1,
                                        queries=4 * (probed.queries or 1), targets=probed.targets + 2))
    generator = torch.Generator().manual_seed(seed * 1_000_003 - 1)
    found = []
    for curve in curves.values():
        largest = max(curve, key=budget_order)
        for threat in sorted(curve, key=budget_order, reverse=True):
            for check in probe_model(model, audio[correct], labels[correct], threat, attack=attack, stronger=stronger,
                                     attack_name=probed.label, generator=generator, model_checks=threat is largest,
                                     video=None if video is None else video[correct]):
                found.append({**check.as_dict(), "threat": threat.describe(), "clips": int(correct.numel())})
    write_json_atomic(run_dir / SANITY_FILE, found)


def check_modalities(model: AttackTarget, threats: list, spec: AttackSpec) -> None:
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
    if uses_video(model) and (spec.name == "universal" or spec.backend != "native" or spec.name == "square"):
        raise RunSettingsError("Universal perturbations and --backend/--attack other than native PGD take audio "
                               "only; for an audio-visual model use native PGD (per clip, ε curves, --minimal).")


@dataclass(frozen=True)
class RunOptions:
    """How an attack run executes (:func:`run_attack`), as opposed to what it attacks.

    Args:
        batch_size: clips per batch (at least 1); also the batch size of universal learning.
        seed: the run's seed: each batch's random starts come from ``(seed, batch number)``.
        device: where the model and the attack run (``"cpu"``, ``"cuda"``, a :class:`torch.device`).
        limit: attack a seeded sample of ``limit`` clips, stratified over labels (``None``: all of them).
        restart: discard a run already in the run directory and start over (without it, a run with the
            same settings resumes and one with other settings is refused).
        sanity: run the gradient-masking probes (native gradient attacks only) before the attack.
        labels_from: ``"data"``, or ``"model"`` to take the model's clean decisions as the labels
            (robustness without ground truth: robust accuracy is then the share of decisions that do not flip).
        ray_address: shard batches over Ray workers (``"local"`` starts a local cluster of ``workers``
            CPUs; ``None``: one process); each worker uses one intra-op thread, and the records are bit for bit
            a single-process run's at one thread (``OMP_NUM_THREADS=1``; with more, float32 sums round
            differently in the last digits).
        workers: CPUs of the local Ray cluster (``ray_address="local"``); ``None``: Ray's default.
    """

    batch_size: int = 16
    seed: int = 0
    device: str | torch.device = "cpu"
    limit: int | None = None
    restart: bool = False
    sanity: bool = True
    labels_from: str = "data"
    ray_address: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.labels_from not in ("data", "model"):
            raise RunSettingsError(f"labels_from must be 'data' or 'model', got {self.labels_from!r}.")
        if self.batch_size < 1:
            raise RunSettingsError(f"batch_size must be at least 1 (clips per batch), got {self.batch_size}.")


def run_attack(model: AttackTarget, model_name: str, dataset: AudioDataset, threats: list[Threat], run_dir: str | Path,
               spec: AttackSpec | None = None, options: RunOptions | None = None, *,
               universal_from: AudioDataset | None = None, transfer: TransferTarget | None = None,
               extra_settings: dict | None = None, on_batch: Callable[[Batch, int, bool], None] | None = None) -> Path:
    """Attack every clip of ``dataset`` under every threat model with ``spec``; rows go to ``run_dir``.

    ``spec``: the attack and its settings (:class:`AttackSpec`; default ``AttackSpec()``, the "reliable" attack).
    ``spec.precision == "bf16"`` runs the attack's passes under bfloat16 autocast; check it against
    fp32 on a subset before trusting it. ``options``: how the run executes (:class:`RunOptions`: batch
    size, seed, device, clip limit, restart, sanity probes; default ``RunOptions()``).
    ``universal_from`` (with ``spec.name == "universal"``):
    learn one perturbation per threat model on that dataset (``spec.options``, see
    :func:`~robustaudio.attacks.universal_perturbation`) and evaluate it on ``dataset``.
    ``transfer``: a second model that scores the same adversarial waveforms (black-box transfer).
    ``options.labels_from``: ``"data"``, or ``"model"`` to take the model's clean decisions as the labels
    (robustness without ground truth: robust accuracy is then the share of decisions that do not flip).
    ``options.ray_address``: shard batches over Ray workers (``"local"`` starts a local cluster of
    ``options.workers`` CPUs, one intra-op thread each); the records are bit for bit a single-process run's at
    one thread.
    ``extra_settings``: more entries for the run's recorded settings.
    ``on_batch(batch, n_clips, resumed)`` is called after each batch (for progress displays).
    Audio-visual models: threat models of either modality and :class:`JointThreat` s run natively
    (PGD, ε curves, minimal ε); universal perturbations and other backends are audio-only.
    Returns the run directory.
    """
    spec = spec or AttackSpec()
    options = options or RunOptions()
    if (spec.name == "universal") != (universal_from is not None):
        raise RunSettingsError("A universal run needs universal_from (the dataset δ is learned on), and only "
                               "a universal run takes one.")
    check_modalities(model, threats, spec)
    if options.ray_address:
        require_ray()  # before the probes and the run directory
    if options.labels_from == "model":
        dataset = unlabelled(dataset, model)
    fit_clip_to_data(model, [clip.path for clip in dataset.clips])  # hf: models read the data's clip length
    budget_attack(spec) if spec.name not in ("minimal", "universal") else None  # unknown names fail here
    settings = {
        "model": model_name, "data": str(dataset.root),
        "clips": len(dataset) if options.limit is None else min(options.limit, len(dataset)),
        "threats": [t.as_dict() for t in threats], **spec.settings(),
        "batch_size": options.batch_size, "seed": options.seed,
        "labels": list(model.labels), "multilabel": bool(model.multilabel), "sanity": options.sanity,
        **({"universal_from": str(universal_from.root), "universal_clips": len(universal_from),
            "universal_options": dict(spec.options)} if universal_from is not None else {}),
        **({"transfer_to": transfer.name} if transfer is not None else {}),
        **({"labels_from": "model"} if options.labels_from == "model" else {}),
        **(extra_settings or {}),
    }
    run_dir = open_run(run_dir, settings, restart=options.restart)
    torch.manual_seed(options.seed)
    model = model.to(options.device).eval()
    deltas = None
    if universal_from is not None:
        single = [t for t in threats if isinstance(t, ThreatModel)]  # check_modalities refused joint ones
        deltas = learn_universal(model, universal_from, single, run_dir, batch_size=options.batch_size,
                                 device=options.device, options=dict(spec.options))
    # The probes need gradients (library and gradient-free attacks are compared by runs instead).
    probe = options.sanity and spec.backend == "native" and spec.name not in ("universal", "square")
    if probe and not (run_dir / SANITY_FILE).exists():  # in this process, before any sharding
        for batch in dataset.batches(model, options.batch_size, limit=options.limit):
            if batch.ids:
                probe_batch(model, batch, threats, run_dir, spec, seed=options.seed, device=options.device,
                            labels_from=options.labels_from)
            if (run_dir / SANITY_FILE).exists():
                break

    def rows(batch: Batch) -> list[dict]:
        return attack_batch(model, model_name, batch, threats, spec, seed=options.seed, device=options.device,
                            universal=deltas, transfer=transfer, labels_from=options.labels_from)

    return run_batches(run_dir, model, dataset, rows, batch_size=options.batch_size, limit=options.limit,
                       on_batch=on_batch, ray_address=options.ray_address, workers=options.workers)
