"""The five multiple-instance-learning (MIL) pooling functions of thesis ch. 4 (§4.2.2, Wang et al. TALNet).

A weakly labelled clip is a bag of frames: the network predicts a probability per frame and class,
``y_i`` in ``[B, frames, K]``, and a pooling function aggregates them into the clip probability
``y`` in ``[B, K]``:

- ``max``: ``y = max_i y_i``; only the arg-max frame gets a gradient.
- ``average``: ``y = (1/n) sum_i y_i``; every frame gets ``1/n``.
- ``linear_softmax``: ``y = sum_i y_i^2 / sum_i y_i``; gradient ``(2 y_i - y) / sum_j y_j``.
- ``exponential_softmax``: ``y = sum_i y_i e^{y_i} / sum_i e^{y_i}``;
  gradient ``(1 + y_i - y) e^{y_i} / sum_j e^{y_j}``.
- ``attention``: ``y = sum_i w_i y_i`` with ``w = softmax_i(W h_i + b)`` learned from the frame embeddings ``h_i``.

Classifiers in this package output logits, so :class:`MILHead` converts the pooled probability
back with :func:`probabilities_to_logits` (``logit(clamp(p, eps, 1 - eps))``): ``sigmoid`` of the
returned logit is the MIL clip probability, and BCE-with-logits on it is the MIL loss.
"""

from __future__ import annotations

import torch
from torch import nn

PROBABILITY_EPS = 1e-7  # TALNet clamps frame probabilities to [1e-7, 1 - 1e-7]; also keeps logit finite


def probabilities_to_logits(probabilities: torch.Tensor, eps: float = PROBABILITY_EPS) -> torch.Tensor:
    """Clip logits ``logit(clamp(p, eps, 1 - eps))``, any shape; ``sigmoid`` inverts it inside the clamp."""
    return torch.logit(probabilities.clamp(eps, 1.0 - eps))


class MaxPooling(nn.Module):
    """``y = max_i y_i``: only the most confident frame gets a gradient (thesis §4.2.2)."""

    def forward(self, frame_probabilities: torch.Tensor, frame_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, frames, K]`` -> ``[B, K]``; ``frame_embeddings`` is unused."""
        return frame_probabilities.amax(dim=1)


class AveragePooling(nn.Module):
    """``y = mean_i y_i``: every frame gets the same gradient ``1/n``."""

    def forward(self, frame_probabilities: torch.Tensor, frame_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, frames, K]`` -> ``[B, K]``; ``frame_embeddings`` is unused."""
        return frame_probabilities.mean(dim=1)


class LinearSoftmaxPooling(nn.Module):
    """``y = sum_i y_i^2 / sum_i y_i``: each frame weighted by its own probability.

    The thesis's preferred function for localisation: frames above ``y/2`` are pushed up and
    those below pushed down on positive clips, driving frame probabilities to 0 or 1.
    """

    def forward(self, frame_probabilities: torch.Tensor, frame_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, frames, K]`` (probabilities > 0) -> ``[B, K]``; ``frame_embeddings`` is unused."""
        p = frame_probabilities
        return (p * p).sum(dim=1) / p.sum(dim=1)


class ExponentialSoftmaxPooling(nn.Module):
    """``y = sum_i y_i exp(y_i) / sum_i exp(y_i)``: each frame weighted by ``exp`` of its probability."""

    def forward(self, frame_probabilities: torch.Tensor, frame_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, frames, K]`` -> ``[B, K]``; ``frame_embeddings`` is unused."""
        weights = torch.softmax(frame_probabilities, dim=1)  # exp(y_i) / sum_j exp(y_j), stable
        return (weights * frame_probabilities).sum(dim=1)


class AttentionPooling(nn.Module):
    """``y = sum_i w_i y_i`` with ``w = softmax over frames of (W h_i + b)``, one weight per frame and class.

    As in TALNet (after Kong et al. 2018), the attention logits come from a linear layer on the
    frame embeddings ``h_i`` that also feed the frame classifier.
    """

    def __init__(self, embed_dim: int, num_classes: int):
        super().__init__()
        self.attention = nn.Linear(embed_dim, num_classes)

    def weights(self, frame_embeddings: torch.Tensor) -> torch.Tensor:
        """Attention weights ``[B, frames, K]`` from embeddings ``[B, frames, embed_dim]``; sum to 1 over frames."""
        return torch.softmax(self.attention(frame_embeddings), dim=1)

    def forward(self, frame_probabilities: torch.Tensor, frame_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, frames, K]`` and embeddings ``[B, frames, embed_dim]`` -> ``[B, K]``."""
        if frame_embeddings is None:
            raise ValueError("attention pooling needs the frame embeddings its weights are computed from")
        return (self.weights(frame_embeddings) * frame_probabilities).sum(dim=1)


MIL_POOLINGS: dict[str, type[nn.Module]] = {
    "max": MaxPooling,
    "average": AveragePooling,
    "linear_softmax": LinearSoftmaxPooling,
    "exponential_softmax": ExponentialSoftmaxPooling,
    "attention": AttentionPooling,
}


def make_pooling(name: str, embed_dim: int, num_classes: int) -> nn.Module:
    """The MIL pooling called ``name`` (a key of :data:`MIL_POOLINGS`)."""
    if name not in MIL_POOLINGS:
        raise ValueError(f"Unknown MIL pooling {name!r}; choose one of {', '.join(MIL_POOLINGS)}.")
    if name == "attention":
        return AttentionPooling(embed_dim, num_classes)
    return MIL_POOLINGS[name]()


class MILHead(nn.Module):
    """Frame classifier + sigmoid + MIL pooling + logit: frame embeddings ``[B, frames, D]`` -> clip logits ``[B, K]``.

    The decision-level head shared by the CRNN (TALNet), CNN+Transformer, ResNet-50 and Conformer
    of thesis ch. 4 and §6.3.
    """

    def __init__(self, embed_dim: int, num_classes: int, pooling: str = "attention"):
        super().__init__()
        self.frame_classifier = nn.Linear(embed_dim, num_classes)
        self.pooling = make_pooling(pooling, embed_dim, num_classes)

    def frame_probabilities(self, frame_embeddings: torch.Tensor) -> torch.Tensor:
        """Per-frame class probabilities ``[B, frames, K]``, clamped to ``[eps, 1 - eps]`` as in TALNet."""
        probabilities = torch.sigmoid(self.frame_classifier(frame_embeddings))
        return probabilities.clamp(PROBABILITY_EPS, 1.0 - PROBABILITY_EPS)

    def forward(self, frame_embeddings: torch.Tensor) -> torch.Tensor:
        clip_probabilities = self.pooling(self.frame_probabilities(frame_embeddings), frame_embeddings)
        return probabilities_to_logits(clip_probabilities)
