"""What the benchmarks share: the clips every benchmark times attacks on (clean-correct bundled test
clips: PGD does not attack clips the model gets wrong already, so timing those would measure other
work), and adv_lib as a baseline (its import, and the model on its [0, 1] input range)."""

from __future__ import annotations

import sys
import types

import torch

from robustaudio.data import AudioDataset


def clean_correct_clips(model, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``n`` clean-correct test clips: audio ``[n, T]``, labels ``[n]``, clean logits ``[n, K]``."""
    batch = next(AudioDataset.from_path(split="test").batches(model, 10_000))
    with torch.no_grad():
        correct = model(batch.audio.to(device)).argmax(-1).cpu() == batch.labels
    audio, labels = batch.audio[correct][:n].to(device), batch.labels[correct][:n].to(device)
    with torch.no_grad():
        clean_logits = model(audio)
    return audio, labels, clean_logits


def import_adv_lib() -> None:
    """Make ``import adv_lib.attacks...`` work: adv_lib imports visdom (a plotting server) at import time,
    unused here; a stub stands in if it is absent."""
    if "visdom" in sys.modules:
        return
    try:
        import visdom  # noqa: F401
    except ImportError:
        stub = types.ModuleType("visdom")
        stub.Visdom = object  # type: ignore[attr-defined]
        sys.modules["visdom"] = stub


class UnitInput(torch.nn.Module):
    """``u in [0, 1] -> model(2u - 1)``: adv_lib assumes inputs in [0, 1] (norms halve on the way in)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, u):
        return self.model(2 * u - 1)
