"""silero-vad (speech / no speech) as a differentiable, batched robustaudio Classifier over a fixed window.

**Weights.** The ``silero-vad`` wheel (``pip install silero-vad==6.2.3``, MIT) ships the model as
TorchScript (``silero_vad/data/silero_vad.jit``, the package's default) and ONNX. The weights
are read from the TorchScript archive with ``torch.jit.load`` (its 16 kHz submodule's
``state_dict``): loading a TorchScript archive deserialises TorchScript code along with the
weights, so it trusts the installed wheel as much as importing the package would; that code is
never run here (robustaudio's module below is its own). The wheel's ``silero_vad_16k.safetensors``
holds other, older weights (they disagree with the TorchScript and ONNX files), so it is not used.

**The network** (16 kHz), per 512-sample chunk (32 ms), exactly as the package streams audio:
the chunk is prefixed with the previous chunk's last 64 samples (zeros before the first chunk),
reflect-padded by 64 at the end (640 samples), transformed by a fixed STFT basis
(``conv1d``, 258 filters of 256 samples, hop 128: 4 frames of 129 bins) to magnitudes
``sqrt(re² + im²)``; four ``conv1d`` + ReLU blocks (129 -> 128 -> 64 -> 64 -> 128 channels,
kernel 3, strides 1, 2, 2, 1) reduce the 4 frames to one 128-d vector; an ``LSTMCell`` (128)
carries state from chunk to chunk (zero state at the start of every clip, as
``model.audio_forward`` resets it); ReLU, a 1x1 conv and a sigmoid give the chunk's speech
probability ``p_i``. A clip that is not a whole number of chunks is zero-padded at the end, as
``audio_forward`` pads it.

**The window decision.** The clip's speech probability is ``max_i p_i`` (``pooling="max"``, the
default: the VAD starts a speech segment as soon as one chunk reaches its threshold, 0.5 in
``get_speech_timestamps``) or ``mean_i p_i`` (``pooling="mean"``). Labels
``("no-speech", "speech")``, single-label, logits ``[-z/2, z/2]`` with
``z = logit(p) - logit(threshold)``: the softmax's speech probability is ``sigmoid(z)`` (``= p``
at the default threshold 0.5) and ``predict`` says speech exactly when ``p > threshold``.
``logit(p)`` is computed from the pre-sigmoid outputs (max: the largest; mean:
``logsumexp(log σ(a)) - logsumexp(log σ(-a))``), exact and differentiable.
:meth:`SileroVAD.chunk_probabilities` gives ``[B, chunks]``.

**Stages.** ``features``: the STFT magnitudes of every chunk, frames in time order,
``[B, 129, 4 * chunks]``; ``embeddings``: the LSTM's hidden state after every chunk,
``[B, chunks * 128]``; ``head``: ReLU, 1x1 conv, pooling, logits.

**Gradients.** ``sqrt`` has an infinite slope at 0 (a bin of digital silence): its gradient
there is taken as 0 (the forward value is unchanged), so silent clips give finite gradients.

By name: ``silero-vad:max`` / ``silero-vad:mean`` (window length: ``clip_seconds=``, default 0.5 s).
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .base import Classifier, ModelError

SAMPLE_RATE = 16000
CHUNK = 512
CONTEXT = 64
PAD = 64
HOP = 128
BINS = 129
DEFAULT_THRESHOLD = 0.5  # get_speech_timestamps' threshold
DEFAULT_CLIP_SECONDS = 0.5
POOLINGS = ("max", "mean")
INSTALL_HINT = "pip install silero-vad==6.2.3 (or pip install 'robustaudio[vad]')"
JIT_FILE = "silero_vad.jit"
STRIDES = (1, 2, 2, 1)


def data_dir() -> Path:
    """``silero_vad/data`` of the installed wheel (found without importing the package)."""
    spec = importlib.util.find_spec("silero_vad")
    folder = Path(spec.origin).parent / "data" if spec and spec.origin else None
    if folder is None or not (folder / JIT_FILE).is_file():
        raise ModelError(f"silero-vad's model ships in the silero-vad wheel, which is not installed: {INSTALL_HINT}.")
    return folder


def read_weights(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The 16 kHz network's weights from the wheel's TorchScript archive (see the module docstring)."""
    path = Path(path) if path else data_dir() / JIT_FILE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        archive = torch.jit.load(str(path), map_location="cpu")
    try:
        state = archive._model.state_dict()
    except AttributeError as error:
        raise ModelError(f"{path} has no 16 kHz submodule '_model': is it silero-vad's silero_vad.jit?") from error
    return {key: value.detach().clone().float() for key, value in state.items()}


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` for x >= 0 with gradient 0 (not inf) where x == 0."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x))


class SileroVAD(Classifier):
    """silero-vad over a fixed window (see the module docstring).

    Args:
        pooling: ``"max"`` or ``"mean"`` over the window's chunk probabilities.
        clip_seconds: the window length (data loaders crop / pad to it).
        threshold: speech when the pooled probability exceeds it (0.5, silero's default).
        path: another copy of ``silero_vad.jit``.
    """

    sample_rate = SAMPLE_RATE
    labels = ("no-speech", "speech")
    multilabel = False
    basis: torch.Tensor

    def __init__(self, pooling: str = "max", clip_seconds: float = DEFAULT_CLIP_SECONDS,
                 threshold: float = DEFAULT_THRESHOLD, path: str | Path | None = None):
        super().__init__()
        if pooling not in POOLINGS:
            raise ModelError(f"silero-vad: pooling {pooling!r} is not one of {', '.join(POOLINGS)}.")
        if not 0 < threshold < 1:
            raise ModelError(f"silero-vad: threshold must lie in (0, 1), got {threshold!r}.")
        if not clip_seconds * SAMPLE_RATE >= 1:
            raise ModelError(f"silero-vad: clip_seconds must be > 0, got {clip_seconds!r}.")
        weights = read_weights(path)
        self.pooling, self.clip_seconds, self.decision_threshold = pooling, float(clip_seconds), float(threshold)
        self.register_buffer("basis", weights["stft.forward_basis_buffer"])  # [258, 1, 256]
        self.encoder = nn.ModuleList()
        for i, stride in enumerate(STRIDES):
            weight = weights[f"encoder.{i}.reparam_conv.weight"]
            conv = nn.Conv1d(weight.shape[1], weight.shape[0], weight.shape[2], stride=stride, padding=1)
            conv.load_state_dict({"weight": weight, "bias": weights[f"encoder.{i}.reparam_conv.bias"]})
            self.encoder.append(conv)
        self.rnn = nn.LSTMCell(128, 128)
        self.rnn.load_state_dict({name: weights[f"decoder.rnn.{name}"]
                                  for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
        final = weights["decoder.decoder.2.weight"]
        self.output = nn.Linear(final.shape[1], 1)
        self.output.load_state_dict({"weight": final[:, :, 0], "bias": weights["decoder.decoder.2.bias"]})

    # -- stages -----------------------------------------------------------------------------------
    @staticmethod
    def chunk_count(samples: int) -> int:
        return max(1, math.ceil(samples / CHUNK))

    def chunks(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, chunks, 576]``: each 512-sample chunk behind the previous chunk's last 64 samples."""
        if audio.dim() != 2:
            raise ModelError(f"silero-vad takes audio [B, T] at 16 kHz; got {tuple(audio.shape)}.")
        count = self.chunk_count(audio.shape[1])
        padded = F.pad(audio.float(), (CONTEXT, count * CHUNK - audio.shape[1]))
        return padded.unfold(1, CHUNK + CONTEXT, CHUNK)

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        windows = self.chunks(audio)
        batch, count, width = windows.shape
        x = F.pad(windows.reshape(batch * count, 1, width), (0, PAD), mode="reflect")
        spectrum = F.conv1d(x, self.basis, stride=HOP)                       # [B * chunks, 258, 4]
        magnitude = _safe_sqrt(spectrum[:, :BINS] ** 2 + spectrum[:, BINS:] ** 2)
        frames = magnitude.shape[2]
        return magnitude.reshape(batch, count, BINS, frames).permute(0, 2, 1, 3).reshape(batch, BINS, count * frames)

    def _frames_per_chunk(self) -> int:
        return (CHUNK + CONTEXT + PAD - self.basis.shape[2]) // HOP + 1

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if video is not None:
            raise ModelError("silero-vad takes audio only.")
        batch, bins, total = features.shape
        frames = self._frames_per_chunk()
        count = total // frames
        x = features.reshape(batch, bins, count, frames).permute(0, 2, 1, 3).reshape(batch * count, bins, frames)
        for conv in self.encoder:
            x = torch.relu(conv(x))
        x = x.reshape(batch, count, -1)                                      # one 128-d vector per chunk
        h = c = x.new_zeros(batch, self.rnn.hidden_size)
        states = []
        for i in range(count):
            h, c = self.rnn(x[:, i], (h, c))
            states.append(h)
        return {"audio": torch.stack(states, dim=1).reshape(batch, -1)}

    def chunk_logits(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pre-sigmoid speech outputs per chunk ``[B, chunks]``."""
        states = embeddings["audio"]
        states = states.reshape(states.shape[0], -1, self.rnn.hidden_size)
        return self.output(torch.relu(states)).squeeze(-1)

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        a = self.chunk_logits(embeddings)
        if self.pooling == "max":
            pooled = a.amax(dim=1)
        else:  # logit of the mean probability
            pooled = torch.logsumexp(F.logsigmoid(a), dim=1) - torch.logsumexp(F.logsigmoid(-a), dim=1)
        z = pooled - math.log(self.decision_threshold / (1 - self.decision_threshold))
        return torch.stack([-z / 2, z / 2], dim=1)

    def chunk_probabilities(self, audio: torch.Tensor) -> torch.Tensor:
        """silero's speech probability per 32 ms chunk ``[B, chunks]`` (as ``model.audio_forward``)."""
        return torch.sigmoid(self.chunk_logits(self.embeddings(self.features(audio))))

    def speech_probability(self, audio: torch.Tensor) -> torch.Tensor:
        """The pooled probability ``[B]`` the decision thresholds."""
        a = self.chunk_logits(self.embeddings(self.features(audio)))
        p = torch.sigmoid(a)
        return p.amax(dim=1) if self.pooling == "max" else p.mean(dim=1)


def load_silero_vad(target: str = "max", **options: Any) -> SileroVAD:
    """``silero-vad:max`` / ``silero-vad:mean``; options ``clip_seconds``, ``threshold``, ``path``."""
    if target not in POOLINGS:
        raise ModelError(f"silero-vad:{target}: write silero-vad:max or silero-vad:mean (pooling over the "
                         f"window's 32 ms chunks).")
    known = {"clip_seconds", "threshold", "path", "sample_rate", "multilabel", "labels"}
    unknown = set(options) - known
    if unknown:
        raise ModelError(f"silero-vad: takes clip_seconds, threshold, path; not {', '.join(sorted(unknown))}.")
    if options.get("sample_rate") not in (None, SAMPLE_RATE):
        raise ModelError(f"silero-vad: runs at 16 kHz only (the wheel's 8 kHz model is not wrapped); got "
                         f"sample_rate={options['sample_rate']}.")
    if options.get("multilabel"):
        raise ModelError("silero-vad: is a single-label speech / no-speech classifier.")
    if options.get("labels") is not None:
        raise ModelError("silero-vad: its labels are fixed: ('no-speech', 'speech').")
    settings = {key: options[key] for key in ("clip_seconds", "threshold", "path") if options.get(key) is not None}
    return SileroVAD(pooling=target, **settings).eval()
