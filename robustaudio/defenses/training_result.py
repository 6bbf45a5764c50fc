"""Training outcomes: :class:`FitLog` (time and history of the loop) and :class:`TrainResult` (a trained
model, its card and its checkpoint)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import versions
from ..metrics import mean_with_ci, per_class_mean
from ..models import save_checkpoint
from ..models.base import Classifier
from ..records import make_folder, write_json_atomic
from .training_settings import TrainSettings


@dataclass
class FitLog:
    seconds: float                 # wall time of the loop
    cpu_seconds: float = 0.0       # CPU time of this process over the loop (all threads; less load-dependent)
    history: list[dict] = field(default_factory=list)
    class_weights: list[float] | None = None


@dataclass
class TrainResult:
    """A trained model and what its card reports."""

    model: Classifier
    arch: str
    config: dict
    settings: TrainSettings
    log: FitLog
    train_correct: torch.Tensor
    test_correct: torch.Tensor
    test_labels: list[str]
    data: str
    name: str

    def card(self) -> dict:
        """Settings, seed, clean train/test accuracy (95% Wilson interval, per class) and training time."""
        mean, low, high = mean_with_ci(self.test_correct.numpy(), seed=self.settings.seed)
        card = {
            "model": self.name, "arch": self.arch, "method": self.settings.method,
            "defense": self.settings.describe(), "data": self.data, "labels": list(self.model.labels),
            "train_clips": len(self.train_correct), "test_clips": len(self.test_correct),
            "train_accuracy": float(self.train_correct.mean()),
            "test_accuracy": mean, "test_accuracy_ci95": [low, high],
            "per_class_test_accuracy": per_class_mean(self.test_correct.numpy(), self.test_labels),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "settings": asdict(self.settings), "seed": self.settings.seed,
            "training_seconds": round(self.log.seconds, 1), "training_cpu_seconds": round(self.log.cpu_seconds, 1),
            "torch_threads": torch.get_num_threads(), "history": self.log.history,
            "versions": versions(),
        }
        if self.log.class_weights is not None:
            card["mixup_class_weights"] = dict(zip(self.model.labels, self.log.class_weights))
        return card

    def save(self, path: str | Path, **card_extra: object) -> dict:
        """Write the checkpoint at ``path`` and its card at ``path`` with ``.json``; returns the card."""
        path = make_folder(Path(path).parent) / Path(path).name
        save_checkpoint(path, self.arch, self.config, self.model)
        card = {**self.card(), "checkpoint_bytes": path.stat().st_size, **card_extra}
        write_json_atomic(path.with_suffix(".json"), card)
        return card
