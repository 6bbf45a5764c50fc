"""Transfer: does audio made against one model fool another?

The attacked model is a white-box surrogate; the transfer target is any Classifier that scores the
same waveforms, typically a black-box one (``microwakeword:alexa``, an ONNX or TorchScript model),
as the thesis went from an emulated wake-word detector to a real device. Only waveform
perturbations transfer: features and latents are the surrogate's own.
"""

from __future__ import annotations

import torch

from ..attacks.criteria import decision_names, is_correct
from ..models.base import AttackTarget, ModelError


class TransferTarget:
    """A second model scoring the surrogate's adversarial audio.

    Labels are matched by name, so the target may order them differently or know more classes;
    every label of the surrogate must exist in the target (wrap a tagger with ``labelmap:`` if its
    names differ). Both models must take the same sample rate.

    Args:
        model: the target Classifier (gradients are never asked of it).
        name: how records and reports name it.
        source: the attacked (surrogate) Classifier.
    """

    def __init__(self, model: AttackTarget, name: str, source: AttackTarget):
        if model.sample_rate != source.sample_rate:
            raise ModelError(f"--transfer-to {name} takes {model.sample_rate} Hz audio but the attacked model "
                             f"takes {source.sample_rate} Hz: transfer needs one waveform both can score.")
        if model.multilabel != source.multilabel:
            raise ModelError(f"--transfer-to {name} is {'multi' if model.multilabel else 'single'}-label and the "
                             f"attacked model is not: their decisions cannot be compared.")
        missing = [label for label in source.labels if label not in model.labels]
        if missing:
            raise ModelError(f"--transfer-to {name} has no label(s) {missing[:5]} of the attacked model; use a "
                             f"target with the same label names (e.g. labelmap:MAP:{name}).")
        self.model, self.name = model.eval(), name
        self.index = torch.tensor([model.labels.index(label) for label in source.labels])

    def target_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Surrogate labels (``[B]`` indices, or ``[B, K]`` 0/1) in the target's label space."""
        index = self.index.to(labels.device)
        if labels.dim() == 1:
            return index[labels]
        mapped = torch.zeros(labels.shape[0], len(self.model.labels), dtype=labels.dtype, device=labels.device)
        return mapped.index_copy(1, index, labels)

    @torch.no_grad()
    def score(self, audio: torch.Tensor, labels: torch.Tensor) -> tuple[list[str], torch.Tensor]:
        """The target's decisions on ``audio`` ``[B, T]`` (waveform, surrogate's sample rate): predicted
        label names, and ``[B]`` bool, correct."""
        logits = self.model(audio)  # loaded on the attacked model's device
        names = decision_names(self.model, self.model.predict(logits).cpu())
        return names, is_correct(self.model, logits, self.target_labels(labels).to(logits.device)).cpu()
