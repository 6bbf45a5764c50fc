"""Defenses and certification (thesis ch. 11 and 13; spec §3, §5, §6).

- :mod:`.training`: the one training loop (plain, mixup, PGD adversarial training, Gaussian noise);
- :mod:`.mixup`: Beta(α, α) mixup plans on inputs or per-modality latents, latent-geometry weights;
- :mod:`.smoothing`: randomized smoothing, CERTIFY and PREDICT (Cohen et al. 2019), optionally denoised;
- :mod:`.denoiser`: a diffusers UNet + DDPM scheduler for log-mel or waveform inputs;
- :mod:`.purification`: diffusion purification as a Classifier, and EOT to attack random defenses;

Modules import diffusers only when a denoiser is built (``pip install 'robustaudio[diffusion]'``).
"""

from .mixup import MixPlan, class_weights, draw_plan
from .purification import EOT, Purified
from .smoothing import ABSTAIN, Certificate, Smooth, SmoothingError, certified_accuracy, certify_clips
from .training import METHODS, Split, TrainingError, TrainSettings, fit, train_classifier

__all__ = ["MixPlan", "class_weights", "draw_plan", "EOT", "Purified", "ABSTAIN", "Certificate", "Smooth",
           "SmoothingError", "certified_accuracy", "certify_clips", "METHODS", "Split", "TrainingError",
           "TrainSettings", "fit", "train_classifier"]
