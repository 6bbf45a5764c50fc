"""The clips every benchmark times attacks on: clean-correct bundled test clips (PGD does not
attack clips the model gets wrong already, so timing those would measure other work)."""

from __future__ import annotations

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
