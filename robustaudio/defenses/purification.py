"""Diffusion purification as a defense (DiffPure, Nie et al. 2022), and EOT to attack it.

:class:`Purified` is a :class:`~robustaudio.models.Classifier`: ``classifier(purify(x))`` with the
purifier inside the graph, so every attack of the library (and ``run_attack``) differentiates
through the UNet and every step of the sampler. The purifier draws fresh noise at each call, so
the defended model is random: attack it through :class:`EOT`, which averages ``samples`` draws
per forward pass (spec §6: gradients through the sampler and expectation over its randomness;
a defense evaluated without them is not evaluated).

Stages of :class:`Purified`: ``features(audio)`` is the purifier's input space (the classifier's
normalised log-mel for a feature-domain denoiser; the waveform itself, ``[B, T]``, for a waveform
denoiser); ``embeddings(features)`` purifies and then runs the classifier's own stages. A
feature-domain attack therefore perturbs what enters the purifier, never what leaves it.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch

from ..models.base import Classifier
from .denoiser import Denoiser

COPIED = ("sample_rate", "labels", "multilabel", "bounds", "modalities", "clip_seconds", "threshold")


def _copy_attributes(wrapper: Classifier, model: Classifier) -> None:
    for name in COPIED:
        setattr(wrapper, name, getattr(model, name))


class Purified(Classifier):
    """``model`` behind a diffusion purifier: diffuse to ``t*(sigma)``, ``steps`` reverse steps, classify.

    Args:
        model: the classifier to defend (any Classifier with stages; not retrained).
        denoiser: a :class:`~robustaudio.defenses.denoiser.Denoiser` for ``model``'s input.
        sigma: the diffusion noise level in the denoiser's input units (sets ``t*``).
        steps: reverse (DDPM posterior) steps from ``t*`` to 0.
        seed: seeds the purifier's own generator, one per device, created on the device of the
            inputs (all noise is drawn there); ``None``: the device's global generator.
    """

    def __init__(self, model: Classifier, denoiser: Denoiser, sigma: float = 0.25, steps: int = 2,
                 seed: int | None = None):
        super().__init__()
        denoiser.check_compatible(model)
        self.t_star = denoiser.timestep(sigma)
        self.model, self.denoiser, self.sigma, self.steps = model, denoiser, float(sigma), int(steps)
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}
        _copy_attributes(self, model)
        self.eval()  # an inference-time defense: never BatchNorm statistics or dropout of training

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        return audio if self.denoiser.domain == "waveform" else self.model.features(audio)

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        purified = self.denoiser.purify(features, self.sigma, self.steps, generator=self.generator(features.device))
        if self.denoiser.domain == "waveform":
            purified = self.model.features(purified.clamp(*self.bounds))
        return self.model.embeddings(purified, video)

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.head(embeddings)

    def generator(self, device: torch.device) -> torch.Generator | None:
        """The purifier's generator on ``device`` (seeded with ``seed`` on first use there), or None
        without a seed: the device's global generator, as ``torch.manual_seed`` sets it."""
        if self.seed is None:
            return None
        key = str(torch.device(device))
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(int(self.seed))
        return self._generators[key]

    def describe(self) -> str:
        return (f"DiffPure ({self.denoiser.name}, {self.denoiser.domain}, σ={self.sigma:g} → t*={self.t_star}, "
                f"{self.steps} DDPM reverse steps)")


class EOT(Classifier):
    """Expectation over transformation: a random classifier averaged over ``samples`` draws per input.

    ``forward`` runs ``model`` on ``samples`` copies of the batch and returns
    ``log mean_s softmax(model(x)_s)`` (single-label; for multi-label models the logit of the mean
    sigmoid), so the attack loss is taken on the expected prediction and its gradient averages
    the gradients of all draws (Athalye et al. 2018). Its decision is the average-probability vote
    of the draws. ``features`` is the wrapped model's (deterministic) front end; the
    ``embeddings`` / ``head`` split does not exist for an average over draws.
    """

    def __init__(self, model: Classifier, samples: int = 8):
        super().__init__()
        if samples < 1:
            raise ValueError(f"EOT needs at least one sample per input, got {samples}.")
        self.model, self.samples = model, int(samples)
        _copy_attributes(self, model)
        self.eval()

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        return self.model.features(audio)

    def forward_features(self, features: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        batch = features.shape[0]
        repeated = features.repeat_interleave(self.samples, dim=0)
        video = None if video is None else video.repeat_interleave(self.samples, dim=0)
        logits = self.model.forward_features(repeated, video).reshape(batch, self.samples, -1)
        if self.multilabel:
            p = torch.sigmoid(logits).mean(dim=1).clamp(1e-7, 1 - 1e-7)
            return torch.log(p) - torch.log1p(-p)
        return torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=1) - math.log(self.samples)

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError("EOT averages the predictions of several random draws; it has no single "
                                  "embedding. Take the embeddings of the wrapped model.")

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError("EOT averages the predictions of several random draws; it has no head of its "
                                  "own. Use the wrapped model's head.")

    def describe(self) -> str:
        inner = cast(Any, self.model).describe() if hasattr(self.model, "describe") else type(self.model).__name__
        return f"EOT over {self.samples} draws of {inner}"
