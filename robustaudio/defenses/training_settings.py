"""Training settings: the methods, :class:`TrainSettings` (with its checks and description), the
:class:`TrainingError` they raise, and :func:`recipe_for` (a registered model's recipe)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from ..attacks import ThreatModel
from ..models import ARCHITECTURES, MODELS
from ..models.registry import ModelError, unknown_model_message
from .mixup import SPACES, WEIGHTINGS

METHODS = ("plain", "mixup", "adversarial", "noise")
NOISE_DOMAINS = ("waveform", "feature")


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
        def fail(message: str) -> NoReturn:
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
