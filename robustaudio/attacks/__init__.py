"""Attacks: threat models and attack functions over tensors.

Each L_p attack is a function ``(model, audio, labels, threat, **settings) -> AttackResult``.
The physical attacks optimise an object instead of a perturbation: :func:`jam` a looped piece of
music played into simulated rooms (EOT), :func:`optimise_sticker` dots on a camera lens.
A new attack goes in its own module here and is exported below.
"""

from ..acoustics.mixing import snr_db
from .criteria import attack_loss, is_correct, is_fooled
from .curve import budget_order, curve_key, pgd_curve, same_curve
from .jamming import Detector, JamResult, jam
from .joint import JointResult, pgd_joint
from .minimal import MinimalResult, minimal_eps
from .music import KarplusStrong
from .pgd import pgd
from .result import AttackResult
from .sticker import DotOptics, Sticker, StickerResult, optimise_sticker, random_dot_control
from .threat import NORMS, ThreatModel, ThreatModelError, ascent_direction, lp_norm, project_lp_ball
from .universal import UniversalResult, project_universal, universal_perturbation

__all__ = ["ThreatModel", "ThreatModelError", "NORMS", "lp_norm", "snr_db", "project_lp_ball",
           "ascent_direction", "pgd", "pgd_curve", "budget_order", "curve_key", "same_curve", "AttackResult",
           "attack_loss", "is_correct", "is_fooled",
           "minimal_eps", "MinimalResult", "pgd_joint", "JointResult", "universal_perturbation", "project_universal",
           "UniversalResult",
           "jam", "JamResult", "Detector", "KarplusStrong",
           "optimise_sticker", "random_dot_control", "Sticker", "StickerResult", "DotOptics"]
