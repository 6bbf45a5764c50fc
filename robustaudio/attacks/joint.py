"""PGD on both modalities of an audio-visual model at once, each with its own budget.

Thesis ch. 10-11 attack audio only, video only, or both; with both, each modality keeps its own
threat model (norm, ε, bounds), and one gradient step moves both perturbations by the ascent
direction of their own norm. Single-modality attacks are plain :func:`pgd` with
``ThreatModel(modality="video")`` or the default audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.base import AttackTarget, frozen
from .criteria import attack_loss, is_fooled
from .threat import ThreatModel, ascent_direction


@dataclass(frozen=True)
class JointThreat:
    """Audio (waveform) and video perturbed together, each within its own threat model.

    Run by :func:`pgd_joint`; rows record ``domain="waveform+video"``, the audio budget in
    ``eps_setting`` and the audio perturbation's norms (the video's stays within ``video.eps``; the
    condition name holds both budgets).
    """

    audio: ThreatModel
    video: ThreatModel
    modality = "audio+video"
    domain = "waveform+video"
    snr_db = None

    def __post_init__(self) -> None:
        if self.audio.modality != "audio" or self.audio.domain != "waveform" or self.video.modality != "video":
            raise ValueError("JointThreat takes a waveform audio threat model and a modality='video' one.")
        if self.audio.eps is None or self.video.eps is None:
            raise ValueError("JointThreat needs absolute budgets (eps) for both modalities.")

    @property
    def norm(self) -> str:
        return self.audio.norm if self.audio.norm == self.video.norm else f"{self.audio.norm}+{self.video.norm}"

    @property
    def eps(self) -> float:
        assert self.audio.eps is not None  # checked in __post_init__
        return self.audio.eps

    @property
    def row_domain(self) -> str:
        return self.domain

    def describe(self) -> str:
        return f"{self.audio.describe()}+{self.video.describe()}"

    def as_dict(self) -> dict:
        return {"modality": self.modality, "audio": self.audio.as_dict(), "video": self.video.as_dict()}


@dataclass
class JointResult:
    """``audio`` ``[B, T]`` and ``video`` ``[B, ...]`` adversarial inputs (best iterate per clip),
    ``success`` ``[B]``, ``logits`` ``[B, K]``, ``forwards`` / ``backwards`` ``[B]``."""

    audio: torch.Tensor
    video: torch.Tensor
    success: torch.Tensor
    logits: torch.Tensor
    forwards: torch.Tensor
    backwards: torch.Tensor


def pgd_joint(model: AttackTarget, audio: torch.Tensor, video: torch.Tensor, labels: torch.Tensor,
              audio_threat: ThreatModel,
              video_threat: ThreatModel, *, steps: int = 10, rel_step_size: float | None = None,
              targeted: bool = False, generator: torch.Generator | None = None) -> JointResult:
    """Untargeted (or targeted) PGD on waveform ``audio`` and ``video`` together.

    ``audio_threat`` must be a waveform-domain audio threat model, ``video_threat`` one with
    ``modality="video"``; each budget is enforced by its own projection every step.
    """
    if audio_threat.modality != "audio" or audio_threat.domain != "waveform" or video_threat.modality != "video":
        raise ValueError("pgd_joint takes a waveform audio threat model and a modality='video' one.")
    alpha = rel_step_size if rel_step_size is not None else 2.5 / max(steps, 1)
    with frozen(model):
        audio, video = audio.detach(), video.detach()
        eps_a, eps_v = audio_threat.budget(audio), video_threat.budget(video)
        delta_a = audio_threat.random_start(audio, eps_a, generator)
        delta_v = video_threat.random_start(video, eps_v, generator)
        batch = len(audio)
        best_a, best_v = audio.clone(), video.clone()
        with torch.no_grad():
            logits = model(audio, video)
        success = is_fooled(model, logits, labels, targeted)
        best_loss = torch.where(success, torch.inf, -torch.inf)
        forwards = torch.ones(batch, dtype=torch.long)
        backwards = torch.zeros(batch, dtype=torch.long)
        for step in range(steps + 1):
            active = ~success
            if not active.any():
                break
            xa = audio_threat.apply(audio, delta_a).requires_grad_(True)
            xv = video_threat.apply(video, delta_v).requires_grad_(True)
            with torch.enable_grad():
                out = model(xa, xv)
                loss = attack_loss(model, out, labels, targeted)
            forwards += active.long().cpu()
            fooled = is_fooled(model, out.detach(), labels, targeted) & active
            improved = active & (fooled | (loss.detach() > best_loss))
            best_a[improved], best_v[improved] = xa.detach()[improved], xv.detach()[improved]
            logits[improved] = out.detach()[improved]
            best_loss[improved] = torch.where(fooled[improved], torch.inf, loss.detach()[improved])
            success |= fooled
            if step == steps:
                break
            grad_a, grad_v = torch.autograd.grad((loss * (~success).float()).sum(), (xa, xv))
            backwards += (~success).long().cpu()
            shape_a, shape_v = (-1,) + (1,) * (audio.dim() - 1), (-1,) + (1,) * (video.dim() - 1)
            delta_a = audio_threat.project(delta_a + (alpha * eps_a).view(shape_a) * ascent_direction(grad_a,
                                                                                                      audio_threat.norm),
                                           audio, eps_a)
            delta_v = video_threat.project(delta_v + (alpha * eps_v).view(shape_v) * ascent_direction(grad_v,
                                                                                                      video_threat.norm),
                                           video, eps_v)
    return JointResult(audio=best_a, video=best_v, success=success, logits=logits, forwards=forwards,
                       backwards=backwards)
