"""The one training loop: plain, mixup, PGD adversarial training and Gaussian-noise training.

Used by ``robustaudio train``, ``experiments/train_bundled.py`` (the bundled minievents models) and
``robustaudio defend`` (the defended models). Methods:

- ``plain``: cross-entropy (label smoothing) on augmented clips;
- ``mixup``: :mod:`~robustaudio.defenses.mixup` on the waveform (``input``) or on every modality's
  embedding before the head (``latent``), optionally weighted by latent density / convexity;
- ``adversarial``: Madry et al. (2018): each batch is replaced by its PGD adversarial examples
  (:func:`~robustaudio.attacks.pgd` under one :class:`~robustaudio.attacks.ThreatModel`, full
  ``adv_steps`` steps, no early stop), found with the model in eval mode;
- ``noise``: Gaussian data augmentation for randomized smoothing (Cohen et al. 2019): every
  batch gets ``N(0, σ²)`` noise in the domain that will be smoothed (waveform samples, or the
  normalised log-mel features), not clamped, exactly as :class:`~robustaudio.defenses.smoothing.Smooth`
  adds it.

Batches may carry a video tensor (audio-visual fusion models: ``model(audio, video)``); the loop
passes it through and mixes it with the audio. Randomness: the global torch seed (weights,
dropout) and one generator (order, augmentation, mixup, noise) seeded with ``seed``; PGD random
starts use a second generator, so the plain method draws exactly what the original bundled
recipe drew and reproduces its checkpoints. On a GPU the noise tensors (augmentation noise, the
``noise`` method's Gaussian noise) are drawn on the GPU by a generator there seeded with
``seed + 2`` (no CPU draw and copy per batch); order, gains, shifts and mixup's λ and partners
still come from the CPU generator. On the CPU nothing changes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import versions
from ..attacks import ThreatModel, is_correct, pgd
from ..data import AudioDataset, DatasetError
from ..data.datasets import BUNDLED_ROOT
from ..metrics import mean_with_ci, per_class_mean
from ..metrics.latent import latent_metrics, unpack_batch
from ..models import ARCHITECTURES, MODELS, save_checkpoint
from ..models.base import Classifier
from ..models.registry import ModelError, unknown_model_message
from .mixup import SPACES, WEIGHTINGS, class_weights, draw_plan
from .smoothing import generator_for

METHODS = ("plain", "mixup", "adversarial", "noise")
NOISE_DOMAINS = ("waveform", "feature")
EVAL_BATCH = 64


class TrainingError(ValueError):
    """Training settings or data that cannot work; the message says what to change."""


@dataclass
class TrainSettings:
    """How to train. Units: ``adv_eps`` in the attacked domain (waveform samples, full scale 1, or
    normalised features); ``noise_sigma`` in the noised domain (same units)."""

    method: str = "plain"
    epochs: int = 40
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    label_smoothing: float = 0.05
    augment: bool = True          # gain ±6 dB, shift ±0.15 s, white noise at 20–50 dB SNR
    seed: int = 0
    log_every: int = 10           # epochs between test-accuracy lines
    mixup_alpha: float = 0.2
    mixup_space: str = "input"    # "input" (waveform and video) or "latent" (every modality's embedding)
    mixup_weighting: str = "none"  # "none", "density", "convexity", "both"
    mixup_modality: str = "audio"  # whose latent metrics set the class weights
    mixup_refresh: int = 5        # epochs between weight updates (the first epochs are unweighted)
    adv_norm: str = "linf"
    adv_eps: float = 0.002
    adv_domain: str = "waveform"
    adv_steps: int = 5
    noise_sigma: float = 0.25
    noise_domain: str = "feature"

    def check(self) -> None:
        def fail(message: str):
            raise TrainingError(message)

        if self.method not in METHODS:
            fail(f"Unknown training method {self.method!r}; use one of {', '.join(METHODS)}.")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            fail(f"epochs and batch size must be >= 1 and lr > 0 (got {self.epochs}, {self.batch_size}, {self.lr}).")
        if self.mixup_space not in SPACES:
            fail(f"Unknown mixup space {self.mixup_space!r}; use one of {', '.join(SPACES)}.")
        if self.mixup_weighting not in WEIGHTINGS:
            fail(f"Unknown mixup weighting {self.mixup_weighting!r}; use one of {', '.join(WEIGHTINGS)}.")
        if self.method == "mixup" and not self.mixup_alpha > 0:
            fail(f"mixup alpha must be > 0 (the spec uses 0.2–0.4), got {self.mixup_alpha}.")
        if self.method == "noise" and not self.noise_sigma > 0:
            fail(f"noise sigma must be > 0, got {self.noise_sigma}: it is the std of the Gaussian noise in "
                 f"{self.noise_domain} units (e.g. 0.25 on normalised log-mels).")
        if self.noise_domain not in NOISE_DOMAINS:
            fail(f"Unknown noise domain {self.noise_domain!r}; use one of {', '.join(NOISE_DOMAINS)}.")
        if self.method == "adversarial":
            if self.adv_steps < 1:
                fail(f"adversarial training needs adv_steps >= 1, got {self.adv_steps}.")
            self.threat()  # ThreatModel validates the budget

    def threat(self, bounds: tuple[float, float] | None = (-1.0, 1.0)) -> ThreatModel:
        return ThreatModel(self.adv_norm, eps=self.adv_eps, domain=self.adv_domain,
                           bounds=bounds if self.adv_domain == "waveform" else None)

    def describe(self) -> str:
        if self.method == "mixup":
            weighted = f", {self.mixup_weighting}-weighted" if self.mixup_weighting != "none" else ""
            return f"mixup (α={self.mixup_alpha:g}, {self.mixup_space}{weighted})"
        if self.method == "adversarial":
            return f"PGD-{self.adv_steps} adversarial training ({self.threat().describe()})"
        if self.method == "noise":
            return f"Gaussian noise σ={self.noise_sigma:g} ({self.noise_domain})"
        return "plain"


def recipe_for(name: str) -> tuple[str, dict, TrainSettings]:
    """``(architecture, constructor config, settings)`` to train ``name``: a registered model's recipe
    (from its bundled card), or an architecture with the default settings."""
    if name in MODELS:
        recipe = MODELS[name].card().get("recipe", {})
        settings = TrainSettings(**{k: recipe[k] for k in ("epochs", "lr", "weight_decay",
                                                           "batch_size") if k in recipe})
        return MODELS[name].arch, dict(recipe.get("config", {})), settings
    if name in ARCHITECTURES:
        return name, {}, TrainSettings()
    raise ModelError(unknown_model_message(name))


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

    def chunks(self, size: int = EVAL_BATCH):
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
                           f"choose the splits with --train-split / --test-split.")
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


def _loss(model: Classifier, logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Mean loss over the batch; ``targets`` are class indices ``[B]`` or (soft) targets ``[B, K]``."""
    if model.multilabel:
        return F.binary_cross_entropy_with_logits(logits, targets.float())
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def _mixup_weights(model: Classifier, train: Split, settings: TrainSettings, device) -> torch.Tensor:
    metrics = latent_metrics(model, train.chunks(), modalities=[settings.mixup_modality], seed=settings.seed,
                             device=device)
    return class_weights(metrics[settings.mixup_modality], model.labels, settings.mixup_weighting)


def batch_logits(model: Classifier, audio: torch.Tensor, labels: torch.Tensor, video: torch.Tensor | None,
                 settings: TrainSettings, generator: torch.Generator, attack_generator: torch.Generator,
                 weights: torch.Tensor | None, noise_generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch under ``settings.method``: ``(logits [B, K], targets)`` for the loss.

    ``noise_generator``: draws the ``noise`` method's Gaussian noise on ``audio``'s device (default:
    ``generator`` on the CPU, else one on the device seeded from it); mixup's λ and partners come
    from ``generator``."""
    method = settings.method
    if method == "mixup":
        plan = draw_plan(labels, model.num_classes, settings.mixup_alpha, generator, weights)
        if settings.mixup_space == "input":
            return model(plan.apply(audio), plan.apply(video)), plan.targets
        return model.head(plan.apply(model.embeddings(model.features(audio), video))), plan.targets
    if method == "adversarial":
        threat = settings.threat(model.bounds)
        result = pgd(model, audio, labels, threat, steps=settings.adv_steps, generator=attack_generator,
                     video=video, early_stop=False)
        if threat.domain == "waveform":
            return model(result.adversarial, video), labels
        return model.forward_features(result.adversarial, video), labels
    if method == "noise":
        noise_generator = generator_for(audio.device, generator) if noise_generator is None else noise_generator
        if settings.noise_domain == "waveform":
            noise = torch.randn(audio.shape, generator=noise_generator, device=audio.device, dtype=audio.dtype)
            return model(audio + settings.noise_sigma * noise, video), labels
        features = model.features(audio)
        noise = torch.randn(features.shape, generator=noise_generator, device=features.device, dtype=features.dtype)
        return model.forward_features(features + settings.noise_sigma * noise, video), labels
    return model(audio, video), labels


@dataclass
class FitLog:
    seconds: float                 # wall time of the loop
    cpu_seconds: float = 0.0       # CPU time of this process over the loop (all threads; less load-dependent)
    history: list[dict] = field(default_factory=list)
    class_weights: list[float] | None = None


def fit(model: Classifier, train: Split, settings: TrainSettings, *, test: Split | None = None,
        device: str | torch.device = "cpu", log: Callable[[str], None] | None = None, name: str = "model") -> FitLog:
    """Train ``model`` in place on ``train`` (AdamW, one-cycle learning rate); returns the wall time and history.

    The caller seeds torch (``torch.manual_seed``) before building the model; this function seeds
    its own generators from ``settings.seed``. ``test``: logged every ``settings.log_every`` epochs.
    """
    settings.check()
    if settings.method == "mixup" and settings.mixup_weighting != "none" and model.multilabel:
        raise TrainingError("Weighted mixup reads per-class convexity, defined here for single-label models; "
                            "use --mixup-weighting none for a multi-label model.")
    generator = torch.Generator().manual_seed(settings.seed)
    attack_generator = torch.Generator().manual_seed(settings.seed + 1)
    # Noise tensors (augmentation, the noise method) on the training device; on the CPU this is
    # ``generator`` itself, so CPU runs draw exactly what they drew before.
    noise_generator = generator_for(device, generator, seed=settings.seed + 2)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = -(-len(train) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr,
                                                   total_steps=settings.epochs * steps_per_epoch)
    fit_log = FitLog(seconds=0.0)
    cpu_start = time.process_time()
    weights = None
    start = time.perf_counter()
    for epoch in range(settings.epochs):
        weighted = settings.method == "mixup" and settings.mixup_weighting != "none"
        if weighted and epoch > 0 and epoch % settings.mixup_refresh == 0:
            weights = _mixup_weights(model, train, settings, device)
            fit_log.class_weights = [round(float(w), 4) for w in weights]
        model.train()
        order = torch.randperm(len(train), generator=generator)
        total = 0.0
        for i in range(0, len(order), settings.batch_size):
            index = order[i:i + settings.batch_size]
            part = train.rows(index)
            audio = part.audio.to(device)
            audio = augment(audio, generator, model.sample_rate, noise_generator) if settings.augment else audio
            video = None if part.video is None else part.video.to(device)
            logits, targets = batch_logits(model, audio, part.labels.to(device), video, settings,
                                           generator, attack_generator, weights, noise_generator)
            loss = _loss(model, logits, targets, settings.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        if test is not None and (epoch % settings.log_every == settings.log_every - 1 or epoch == settings.epochs - 1):
            test_accuracy = float(correct(model, test, device).mean())
            fit_log.history.append({"epoch": epoch + 1, "train_loss": total / len(train),
                                    "test_accuracy": test_accuracy})
            if log is not None:
                log(f"{name} epoch {epoch + 1}: train loss {total / len(train):.3f}, test acc {test_accuracy:.3f}")
    fit_log.seconds = time.perf_counter() - start
    fit_log.cpu_seconds = time.process_time() - cpu_start
    model.eval()
    return fit_log


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
        """Settings, seed, clean train/test accuracy (95% bootstrap CI, per class) and training time."""
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

    def save(self, path: str | Path, **card_extra) -> dict:
        """Write the checkpoint at ``path`` and its card at ``path`` with ``.json``; returns the card."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, self.arch, self.config, self.model)
        card = {**self.card(), "checkpoint_bytes": path.stat().st_size, **card_extra}
        path.with_suffix(".json").write_text(json.dumps(card, indent=2))
        return card


def train_classifier(arch: str, config: dict, dataset: AudioDataset, settings: TrainSettings, *,
                     name: str | None = None, train_split: str = "train", test_split: str = "test",
                     device: str | torch.device = "cpu", log: Callable[[str], None] | None = None) -> TrainResult:
    """Build architecture ``arch`` for ``dataset``'s labels, fit its feature normalisation on the train
    split and train it with ``settings``; test accuracy is on ``test_split``.

    ``config``: constructor arguments other than ``labels`` (the dataset's sorted label names).
    """
    if arch not in ARCHITECTURES:
        raise TrainingError(f"Unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}.")
    settings.check()
    torch.manual_seed(settings.seed)
    config = {"labels": dataset.label_names, **config}
    model = ARCHITECTURES[arch](**config)
    train = load_split(dataset, model, train_split)
    test = load_split(dataset, model, test_split)
    config.update(fit_normalisation(model, train.audio))
    fit_log = fit(model, train, settings, test=test, device=device, log=log, name=name or arch)
    index_of = dict(enumerate(model.labels))
    test_labels = ([index_of[int(k)] for k in test.labels] if test.labels.dim() == 1
                   else [";".join(model.labels[k] for k in torch.nonzero(row).flatten()) for row in test.labels])
    data = dataset.root.name if dataset.root.parent == BUNDLED_ROOT else str(dataset.root)
    return TrainResult(model=model, arch=arch, config=config, settings=settings, log=fit_log,
                       train_correct=correct(model, train, device), test_correct=correct(model, test, device),
                       test_labels=test_labels, data=data, name=name or arch)
