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

This module owns the loop (:func:`batch_logits`, :func:`fit`, :func:`train_classifier`); the settings
live in :mod:`.training_settings`, the data in memory and augmentation in :mod:`.training_data`, the
log, card and checkpoint in :mod:`.training_result`, all importable from here as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..attacks import pgd
from ..data import AudioDataset
from ..data.datasets import BUNDLED_ROOT
from ..metrics.latent import latent_metrics
from ..models import ARCHITECTURES
from ..models.base import Classifier
from .mixup import class_weights, draw_plan
from .smoothing import generator_for
from .training_data import EVAL_BATCH, Split, augment, correct, fit_normalisation, load_split  # noqa: F401
from .training_result import FitLog, TrainResult
from .training_settings import METHODS, NOISE_DOMAINS, TrainingError, TrainSettings, recipe_for  # noqa: F401


def _loss(model: Classifier, logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Mean loss over the batch; ``targets`` are class indices ``[B]`` or (soft) targets ``[B, K]``."""
    if model.multilabel:
        return F.binary_cross_entropy_with_logits(logits, targets.float())
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def _mixup_weights(model: Classifier, train: Split, settings: TrainSettings,
                   device: str | torch.device) -> torch.Tensor:
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
