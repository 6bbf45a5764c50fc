"""Universal perturbations in a run: one δ per threat model, learned once (resumable), added to every clip."""

from __future__ import annotations

from pathlib import Path

import torch

from ..attacks.criteria import is_fooled
from ..attacks.result import AttackResult
from ..attacks.threat import ThreatModel
from ..attacks.universal import universal_perturbation
from ..data import AudioDataset
from ..data.audio import write_audio
from ..models.base import AttackTarget
from ..records import write_json_atomic
from .files import UNIVERSAL_FILE, RunSettingsError


def apply_universal(model: AttackTarget, audio: torch.Tensor, labels: torch.Tensor, threat: ThreatModel,
                    delta: torch.Tensor, video: torch.Tensor | None = None) -> AttackResult:
    """Add one learned perturbation ``delta`` (one input's shape) to every clip ``audio`` ``[B, T]``; score once."""
    clean, logits_fn = threat.view(model, audio, video)
    clean = clean.detach()
    adversarial = threat.apply(clean, delta.expand_as(clean))
    with torch.no_grad():
        logits = logits_fn(adversarial)
    ones = torch.ones(len(audio), dtype=torch.long, device=clean.device)
    assert threat.eps is not None  # universal budgets are absolute (checked when learning)
    return AttackResult(adversarial=adversarial, clean=clean, success=is_fooled(model, logits, labels),
                        logits=logits, budget=torch.full((len(audio),), float(threat.eps), device=clean.device),
                        forwards=ones, backwards=torch.zeros_like(ones))


def learn_universal(model: AttackTarget, dataset: AudioDataset, threats: list[ThreatModel], run_dir: Path, *,
                    batch_size: int, device: str | torch.device, options: dict) -> dict[str, torch.Tensor]:
    """Learn (or, on resume, load) one δ per threat model from ``dataset``; saved in ``universal.pt``
    (and as WAV files for waveform perturbations, to listen to)."""
    path = run_dir / UNIVERSAL_FILE
    if path.exists():
        try:  # pickled (refused by weights_only), truncated or foreign: never run, never trusted
            deltas = torch.load(path, weights_only=True)
        except Exception:
            deltas = None
        if not isinstance(deltas, dict) or not all(isinstance(d, torch.Tensor) for d in deltas.values()):
            raise RunSettingsError(f"{path} is not a universal perturbation this run wrote: rerun with --restart to "
                                   f"learn it again.")
        return deltas
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
    write_json_atomic(run_dir / "universal_history.json", history)
    torch.save(deltas, path)
    return deltas
