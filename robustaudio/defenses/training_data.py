"""Training data in memory: :class:`Split` (clips as tensors) and :func:`load_split`, the augmentation
(:func:`augment`), the front end's feature normalisation (:func:`fit_normalisation`) and per-clip
correctness (:func:`correct`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..attacks import is_correct
from ..data import AudioDataset, DatasetError
from ..metrics.latent import unpack_batch
from ..models.base import Classifier
from .smoothing import generator_for

EVAL_BATCH = 64


@dataclass
class Split:
    """Clips in memory: ``audio`` ``[N, T]`` in [-1, 1], ``labels`` ``[N]`` or ``[N, K]``, ``video``
    ``[N, ...]`` or None."""

    audio: torch.Tensor
    labels: torch.Tensor
    video: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.audio)

    def rows(self, index: torch.Tensor) -> Split:
        return Split(self.audio[index], self.labels[index], None if self.video is None else self.video[index])

    def chunks(self, size: int = EVAL_BATCH) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """``(audio, labels, video)`` tuples of at most ``size`` rows, in order."""
        for start in range(0, len(self), size):
            part = self.rows(torch.arange(start, min(start + size, len(self))))
            yield part.audio, part.labels, part.video


def load_split(dataset: AudioDataset, model: Classifier, split: str) -> Split:
    """The clips of ``split`` loaded for ``model`` (its rate and clip length), with video if the batches have it."""
    clips = [c for c in dataset.clips if c.split == split]
    if not clips:
        splits = sorted({str(c.split) for c in dataset.clips})
        raise DatasetError(f"No clips in split {split!r} of {dataset.root} (splits present: {', '.join(splits)}). "
                           f"Training needs a 'split' column in metadata.csv with train and test rows, or "
                           f"other split names (train, train-denoiser: --train-split / --test-split; defend "
                           f"learns on 'train' and scores --split).")
    audio, labels, video = [], [], []
    for batch in AudioDataset(dataset.root, clips).batches(model, batch_size=64):
        a, y, v = unpack_batch(batch)
        audio.append(a)
        labels.append(y)
        if v is not None:
            video.append(v)
    return Split(torch.cat(audio), torch.cat(labels), torch.cat(video) if video else None)


def augment(audio: torch.Tensor, generator: torch.Generator, sample_rate: int = 16000,
            noise_generator: torch.Generator | None = None) -> torch.Tensor:
    """Random gain (±6 dB), time shift (±0.15 s, zero fill), white noise at 20–50 dB SNR; ``[B, T]`` in and out.

    The per-clip scalars (gain, shift, SNR) come from ``generator`` (CPU); the noise ``[B, T]`` is drawn
    on ``audio``'s device with ``noise_generator`` (default: ``generator`` on the CPU, else one on the
    device seeded from it, :func:`~robustaudio.defenses.smoothing.generator_for`). On the CPU with the
    default, the draws are the ones made before this option existed.
    """
    batch, length = audio.shape
    device = audio.device
    gain = 10 ** ((torch.rand(batch, 1, generator=generator) * 12 - 6) / 20)
    shifts = ((torch.rand(batch, generator=generator) * 2 - 1) * 0.15 * sample_rate).long()
    source = torch.arange(length).unsqueeze(0) - shifts.unsqueeze(1)  # shifted[i, j] = audio[i, j - s_i]
    inside = ((source >= 0) & (source < length)).to(device)
    shifted = torch.where(inside, audio.gather(1, source.clamp(0, length - 1).to(device)), 0.0)
    x = shifted * gain.to(device)
    snr = 20 + 30 * torch.rand(batch, 1, generator=generator)
    rms = x.pow(2).mean(dim=1, keepdim=True).sqrt()
    noise_generator = generator_for(device, generator) if noise_generator is None else noise_generator
    noise = torch.randn(x.shape, generator=noise_generator, device=device, dtype=x.dtype)
    noise = noise * rms * 10 ** (-snr.to(device) / 20)
    return (x + noise).clamp(-1, 1)


def fit_normalisation(model: Classifier, audio: torch.Tensor) -> dict:
    """Set the front end's feature mean/std from the training clips ``[N, T]`` (as AST does); returns the
    config entries (``feature_mean``, ``feature_std``), or {} for a model without such a front end."""
    front_end = getattr(model, "front_end", None)
    if front_end is None or not all(hasattr(front_end, name) for name in ("raw", "mean", "std")):
        return {}
    with torch.no_grad():
        raw = torch.cat([front_end.raw(audio[i:i + EVAL_BATCH]) for i in range(0, len(audio), EVAL_BATCH)])
    stats = {"feature_mean": float(raw.mean()), "feature_std": float(raw.std())}
    front_end.mean.fill_(stats["feature_mean"])
    front_end.std.fill_(stats["feature_std"])
    return stats


def correct(model: Classifier, split: Split, device: str | torch.device = "cpu") -> torch.Tensor:
    """``[N]`` float 0/1: the model (eval mode) gets each clip right (multi-label: the exact label set)."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for audio, labels, video in split.chunks():
            logits = model(audio.to(device), None if video is None else video.to(device))
            out.append(is_correct(model, logits, labels.to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(out)
