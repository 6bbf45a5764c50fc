"""One batch's results as records: one row per clip and condition (schema: :data:`robustaudio.report.FIELDS`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch

from ..acoustics.mixing import snr_db
from ..attacks.criteria import decision_names, is_correct
from ..attacks.joint import JointThreat
from ..attacks.minimal import MinimalResult
from ..attacks.result import AttackResult
from ..attacks.threat import ThreatModel, input_view, lp_norm
from ..data import Batch
from ..metrics.transfer import TransferTarget
from ..models.base import AttackTarget


def true_scores(model: AttackTarget, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[B]`` score of the true class (single-label), or the mean score of the true labels."""
    scores = model.scores(logits)
    if model.multilabel:
        return (scores * labels).sum(-1) / labels.sum(-1).clamp_min(1)
    return scores.gather(1, labels.view(-1, 1)).squeeze(1)


class ConditionRows:
    """Turns one batch's attack results into records, one row per clip and condition."""

    def __init__(self, model: AttackTarget, model_name: str, batch: Batch, audio: torch.Tensor, labels: torch.Tensor,
                 clean_logits: torch.Tensor, clean_ok: torch.Tensor, *, steps: int | None, restarts: int,
                 seed: int, video: torch.Tensor | None = None, transfer: TransferTarget | None = None):
        self.model, self.model_name, self.batch, self.labels = model, model_name, batch, labels
        self.transfer = transfer
        self.transfer_clean = None if transfer is None else transfer.score(audio, labels)[1]
        self.audio, self.video = audio, video
        self.views: dict[str, tuple] = {}
        self.clean_logits, self.clean_ok = clean_logits, clean_ok
        self.clean_pred = decision_names(model, model.predict(clean_logits))
        self.clean_score = true_scores(model, clean_logits, labels)
        self.settings = {"steps": steps, "restarts": restarts, "seed": seed}
        self.rows: list[dict] = []

    def view(self, domain: str) -> tuple[torch.Tensor, Callable[..., torch.Tensor]]:
        """The batch's clean input in ``domain`` and its logits function, computed once per domain
        (:func:`~robustaudio.attacks.threat.input_view`)."""
        if domain not in self.views:
            self.views[domain] = input_view(self.model, self.audio, domain, self.video)
        return self.views[domain]

    def add(self, threat: ThreatModel | JointThreat | None, attack: str, condition: str, attacked: torch.Tensor,
            result: AttackResult | MinimalResult | None, seconds: float, backend: str = "native",
            severity: float | None = None, severity_unit: str | None = None, domain: str | None = None,
            kind: str = "attack") -> None:
        """Rows of one condition.

        ``result``: an AttackResult or MinimalResult over the ``attacked`` clips (indices into the
        batch), or None when no clip was attacked. ``seconds``: this condition's time per clip.
        ``kind``: the records' ``kind`` (attack, minimal or noise). Natural-noise conditions have no
        threat model: they give ``domain`` and ``severity``.
        """
        model, batch, n = self.model, self.batch, len(self.batch.ids)
        device = self.clean_logits.device
        domain = threat.row_domain if threat is not None else domain
        assert domain is not None
        clean_in, logits_fn = self.view(domain)
        adversarial, adv_logits = clean_in.detach().clone(), self.clean_logits.clone()
        success = torch.zeros(n, dtype=torch.bool, device=device)
        carried = torch.zeros(n, dtype=torch.bool, device=device)
        eps = torch.full((n,), float("nan"), device=device)
        forwards = torch.zeros(n, dtype=torch.long, device=device)
        backwards = torch.zeros(n, dtype=torch.long, device=device)
        broken_by: list[str | None] = [None] * n
        if result is not None:
            adversarial[attacked] = result.adversarial
            success[attacked] = result.success
            forwards[attacked] = result.forwards
            backwards[attacked] = result.backwards
            if hasattr(result, "logits"):  # an AttackResult: its budget
                result = cast(AttackResult, result)
                assert result.carried is not None  # AttackResult.__post_init__ fills it
                eps[attacked] = result.budget
                adv_logits[attacked] = result.logits.float()
                carried[attacked] = result.carried
                for position, name in zip(attacked.tolist(), result.broken_by or []):
                    broken_by[position] = name
            else:  # a minimal-ε search: the norm it found; it keeps no logits, so score once
                eps[attacked] = result.found_norm
                with torch.no_grad():
                    adv_logits[attacked] = logits_fn(result.adversarial, attacked)
        delta = adversarial.double() - clean_in.double()  # exact: what the model saw, not its float32 rounding
        adv_ok = is_correct(model, adv_logits, self.labels)
        if severity is None:  # attacks leave clean errors alone: they stay errors
            adv_ok = adv_ok & self.clean_ok
        adv_pred = decision_names(model, model.predict(adv_logits))
        adv_score = true_scores(model, adv_logits, self.labels)
        linf, l2, l1, snr = (lp_norm(delta, "linf"), lp_norm(delta, "l2"), lp_norm(delta, "l1"),
                             snr_db(clean_in, delta))
        # Transfer: the target scores the same adversarial waveform (features are the surrogate's own).
        transfer_pred: list = [None] * n
        transfer_ok: list = [None] * n
        if self.transfer is not None and domain == "waveform":
            transfer_pred, transfer_tensor = self.transfer.score(adversarial, self.labels)
            transfer_ok = transfer_tensor.tolist()
        for i, clip_id in enumerate(batch.ids):
            was_attacked = bool(self.clean_ok[i]) or severity is not None
            self.rows.append({
                "clip_id": clip_id, "label": batch.label_names[i], "batch": batch.index,
                "model": self.model_name, "condition": condition, "kind": kind, "attack": attack,
                "backend": backend,
                "norm": threat.norm if threat else None, "domain": domain,
                "eps_setting": threat.eps if threat else None,
                "snr_db_setting": threat.snr_db if threat else None, "eps": eps[i] if was_attacked else None,
                "targeted": False, "steps": self.settings["steps"], "restarts": self.settings["restarts"],
                "clean_pred": self.clean_pred[i], "clean_score": self.clean_score[i],
                "clean_correct": bool(self.clean_ok[i]), "attacked": was_attacked,
                "adv_pred": adv_pred[i], "adv_score": adv_score[i], "adv_correct": adv_ok[i],
                "success": bool(success[i]) if was_attacked else None,
                "carried": bool(carried[i]), "broken_by": broken_by[i],
                "linf": linf[i], "l2": l2[i], "l1": l1[i], "snr_db": snr[i],
                "forwards": forwards[i], "backwards": backwards[i], "seconds": seconds,
                "seed": self.settings["seed"], "severity": severity, "severity_unit": severity_unit,
                "transfer_model": self.transfer.name if self.transfer is not None else None,
                "transfer_clean_correct": bool(self.transfer_clean[i]) if self.transfer_clean is not None else None,
                "transfer_adv_pred": transfer_pred[i], "transfer_adv_correct": transfer_ok[i],
            })
