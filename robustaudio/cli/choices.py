"""The values command-line options show in ``--help``, importable without torch.

``robustaudio --help`` and ``robustaudio <command> --help`` must start fast, so the option
definitions cannot import the modules that own these values (they import torch). Each value here is a
copy of its owner's, named beside it; ``tests/test_cli.py`` checks that every copy equals its owner.
"""

DEFAULT_MODEL = "cnn"  # robustaudio.models.registry.DEFAULT_MODEL
ATTACK_NAMES = ("reliable", "pgd", "apgd-ce", "apgd-t", "square")  # robustaudio.runner.registry.ATTACKS
TRAINING_METHODS = ("plain", "mixup", "adversarial", "noise")  # robustaudio.defenses.training.METHODS
NOISE_DOMAINS = ("waveform", "feature")  # robustaudio.defenses.training.NOISE_DOMAINS
MIXUP_SPACES = ("input", "latent")  # robustaudio.defenses.mixup.SPACES
MIXUP_WEIGHTINGS = ("none", "density", "convexity", "both")  # robustaudio.defenses.mixup.WEIGHTINGS
DEFENSE_ROWS = ("none", "mixup", "mixup-latent", "adversarial", "purification")  # robustaudio.studies.defenses.ROWS
JAM_MUSIC_DB = -10.0  # robustaudio.acoustics.scenes.EOTConfig.music_db
JAM_JITTER_DB = 3.0  # EOTConfig.jitter_db
JAM_NOISE_SNR_DB = (20.0, 40.0)  # EOTConfig.noise_snr_db
JAM_RT60 = (0.15, 0.3)  # EOTConfig.rt60
STICKER_RADIUS = 0.09765625  # robustaudio.attacks.sticker.PAPER_RADIUS
WAKEWORD_DATA = "wakeword"  # folder under robustaudio.data.datasets.BUNDLED_ROOT

OWNERS = {  # copy -> (owner module, attribute path)
    "DEFAULT_MODEL": ("robustaudio.models.registry", "DEFAULT_MODEL"),
    "ATTACK_NAMES": ("robustaudio.runner.registry", "ATTACKS"),
    "TRAINING_METHODS": ("robustaudio.defenses.training", "METHODS"),
    "NOISE_DOMAINS": ("robustaudio.defenses.training", "NOISE_DOMAINS"),
    "MIXUP_SPACES": ("robustaudio.defenses.mixup", "SPACES"),
    "MIXUP_WEIGHTINGS": ("robustaudio.defenses.mixup", "WEIGHTINGS"),
    "DEFENSE_ROWS": ("robustaudio.studies.defenses", "ROWS"),
    "JAM_MUSIC_DB": ("robustaudio.acoustics.scenes", "EOTConfig.music_db"),
    "JAM_JITTER_DB": ("robustaudio.acoustics.scenes", "EOTConfig.jitter_db"),
    "JAM_NOISE_SNR_DB": ("robustaudio.acoustics.scenes", "EOTConfig.noise_snr_db"),
    "JAM_RT60": ("robustaudio.acoustics.scenes", "EOTConfig.rt60"),
    "STICKER_RADIUS": ("robustaudio.attacks.sticker", "PAPER_RADIUS"),
}
