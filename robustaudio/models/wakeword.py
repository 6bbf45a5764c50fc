"""openWakeWord 0.5.1 wake-word detectors in pure torch, with the weights read from the wheel's ONNX files.

openWakeWord (Scripka, Apache-2.0) chains three ONNX models; this module rebuilds each in torch so
that waveform gradients reach the input, and reproduces the streaming way ``Model.predict_clip``
scores a clip (16 kHz; the scheme measured in ``shared/specs/real_models.md``):

1. **Mel** (``melspectrogram.onnx``), once per 80 ms chunk of 1280 samples, on that chunk plus the
   480 samples before it (1760 samples): float samples in [-1, 1] scaled by 32768 (the model takes
   int16 values as float), Conv1d STFT (the file's 257 real + 257 imaginary window-folded kernels of
   512, stride 160, no padding: 8 frames per chunk), power, the file's 257 -> 32 mel matrix,
   ``10 log10(max(mel, 1e-10))``, floored at 80 dB below the chunk's maximum, then ``x / 10 + 2``.
2. **Embedding** (``embedding_model.onnx``, Google's speech embedding): 76 mel frames -> 96 values,
   one per chunk, on the last 76 frames. The network is convolutional in time without time padding
   and with a total time stride of 8, so it is run once over the whole frame sequence; that gives
   exactly the per-window outputs (76 = 9.5 chunks of 8 frames).
3. **Head** (e.g. ``alexa_v0.1.onnx``): an MLP over the last ``L`` embeddings (16 for most models,
   22 for weather, 34 for timer) -> one pre-sigmoid logit (7 pre-softmax logits for timer);
   hey_jarvis's second "verifier" MLP, which the ONNX file runs through an ``If`` when the first
   score is >= 0.5, replaces the logit in that case.

As ``predict_clip`` does, the clip is padded with silence, 2 s before and 1 s after (``pad_before``,
``pad_after``), and scored every 80 ms. Only windows with a full ~2 s context in the padded clip are
scored (openWakeWord's earlier scores depend on its random start-up buffer), so with 2 s before,
the scored windows end from the clip's start to 1 s after its end: every moment at which a
listening device could fire. The clip's logits are those of the window with the highest wake-word
probability: for single-output models, the max of the per-window scores, which is how
openWakeWord would fire (alexa fires only when the word ends within ~100 ms of a window's end).

**Label convention**: a single-label classifier ``("not-<name>", "<name>")`` with logits
``[-z/2, z/2]``, where ``z`` is the head's pre-sigmoid logit: softmax gives ``sigmoid(z)`` for the
wake word, so ``predict`` fires exactly at openWakeWord's 0.5 threshold, and an untargeted attack
on clips labelled ``<name>`` is the "deactivate" goal. timer: ``("not-timer", "1_minute_timer", ...)``
from the file's softmax classes (class 0 is "no timer").
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .base import Classifier, ModelError
from .onnx_sequential import Reshape, chain_from_nodes, graph_values

if TYPE_CHECKING:
    import onnx

SAMPLE_RATE = 16000
CHUNK = 1280            # openWakeWord's streaming step: 80 ms
CHUNK_CONTEXT = 480     # the mel model sees each chunk with the 3 hops of 160 samples before it
INT16_SCALE = 32768.0   # the mel model takes int16 sample values (as float32)
POWER_FLOOR = 1e-10
TOP_DB = 80.0
EMBEDDING_FRAMES = 76   # mel frames per speech embedding
FRAME_OFFSET = 4        # the first embedding (chunk 9) starts at frame 4 of chunk 0: 9 * 8 + 8 - 76
FIRST_EMBEDDED_CHUNK = 9
SUPPORT_FILES = {"melspectrogram", "embedding_model", "silero_vad"}
DB_PER_NEPER = 10.0 / math.log(10.0)


class WakeWordError(ValueError):
    """openWakeWord files that are missing or not as expected; the message says the fix."""


def resources_dir() -> Path:
    """``openwakeword/resources/models`` of the installed wheel, found without importing the package."""
    spec = importlib.util.find_spec("openwakeword")
    folder = Path(spec.origin).parent / "resources" / "models" if spec and spec.origin else None
    if folder is None or not (folder / "melspectrogram.onnx").is_file():
        raise WakeWordError("openWakeWord's ONNX files were not found: `pip install --no-deps openwakeword==0.5.1` "
                            "(0.5.1 ships the models; later versions download them; --no-deps avoids tflite).")
    return folder


def short_name(path: Path) -> str:
    """``alexa_v0.1.onnx`` -> ``alexa``."""
    return re.sub(r"_v\d[\w.]*$", "", path.stem)


def available_models() -> dict[str, Path]:
    """Head ONNX files in the wheel, by short name (alexa, hey_jarvis, hey_mycroft, hey_rhasspy, timer, weather)."""
    return {short_name(path): path for path in sorted(resources_dir().glob("*.onnx"))
            if path.stem not in SUPPORT_FILES}


def _load(path: Path) -> onnx.ModelProto:
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as error:  # protobuf's DecodeError for a cut-off or foreign file
        raise ModelError(f"{path} is not a readable ONNX model ({type(error).__name__}): reinstall openwakeword==0.5.1 "
                         f"or pass the model file it ships.") from error


def _node(graph: onnx.GraphProto, op_type: str, path: Path) -> onnx.NodeProto:
    for node in graph.node:
        if node.op_type == op_type:
            return node
    raise WakeWordError(f"{path} has no {op_type} node: is it openWakeWord 0.5.1's file?")


class StreamingMel(nn.Module):
    """``melspectrogram.onnx`` applied per 80 ms chunk: waveform ``[B, T]`` in [-1, 1] -> ``[B, 8 * (T // 1280), 32]``.

    Frames ``8c .. 8c + 7`` belong to chunk ``c`` (samples ``1280c - 480 .. 1280c + 1280``; the clip
    is preceded by 480 samples of silence). Values are openWakeWord's ``x / 10 + 2`` of the dB mel.
    """

    real: torch.Tensor  # buffers
    imag: torch.Tensor
    mel_matrix: torch.Tensor

    def __init__(self, path: Path):
        super().__init__()
        model = _load(path)
        values = graph_values(model.graph)
        convs = [node for node in model.graph.node if node.op_type == "Conv"]
        if len(convs) != 2:
            raise WakeWordError(f"{path}: expected the real and imaginary STFT convolutions.")
        self.stride = int(dict((a.name, a.ints) for a in convs[0].attribute)["strides"][0])
        self.register_buffer("real", torch.from_numpy(values[convs[0].input[1]].copy()))   # [257, 1, 512]
        self.register_buffer("imag", torch.from_numpy(values[convs[1].input[1]].copy()))
        matmul = _node(model.graph, "MatMul", path)
        self.register_buffer("mel_matrix", torch.from_numpy(values[matmul.input[1]].copy()))  # [257, 32]
        self.frames_per_chunk = (CHUNK + CHUNK_CONTEXT - self.real.shape[-1]) // self.stride + 1

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = F.pad(audio * INT16_SCALE, (CHUNK_CONTEXT, 0))
        chunks = x.unfold(-1, CHUNK + CHUNK_CONTEXT, CHUNK)                  # [B, C, 1760]
        batch, count, length = chunks.shape
        flat = chunks.reshape(batch * count, 1, length)
        power = F.conv1d(flat, self.real, stride=self.stride) ** 2 + F.conv1d(flat, self.imag, stride=self.stride) ** 2
        db = DB_PER_NEPER * torch.log(torch.matmul(power.transpose(1, 2), self.mel_matrix).clamp_min(POWER_FLOOR))
        # the ONNX model floors at its input's max - 80 dB; openWakeWord feeds it one chunk at a time
        db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - TOP_DB)
        return (db / 10 + 2).reshape(batch, count * self.frames_per_chunk, -1)


def embedding_network(path: Path) -> nn.Sequential:
    """``embedding_model.onnx`` without its NHWC reshapes.

    ``[B, 1, frames, 32]`` -> ``[B, 96, (frames - 76) / 8 + 1, 1]``: one 96-d embedding every 8 frames.
    """
    model = _load(path)
    chain = chain_from_nodes(model.graph.node, graph_values(model.graph))
    layers = list(chain.layers)
    if not (isinstance(layers[0], Reshape) and isinstance(layers[-1], Reshape)) or \
            layers[0].shape[-2:] != (EMBEDDING_FRAMES, 32):
        raise WakeWordError(f"{path}: expected Reshape -> convolutions -> Reshape on {EMBEDDING_FRAMES} x 32 frames.")
    return nn.Sequential(*layers[1:-1])


class OpenWakeWord(Classifier):
    """One openWakeWord detector (see the module docstring for the pipeline and the label convention).

    Stages: ``features``: padded clip -> mel ``[B, 32, frames]`` (8 frames per 80 ms chunk);
    ``embeddings``: speech embeddings, one per chunk from chunk 9 on, flattened to ``[B, N * 96]``;
    ``head``: the head MLP over every window of ``window`` embeddings -> logits of the most
    confident window ``[B, K]``. :meth:`window_probabilities` gives openWakeWord's per-80-ms scores.

    Args:
        head_path: the head ONNX file (e.g. ``alexa_v0.1.onnx``).
        resources: folder with ``melspectrogram.onnx`` and ``embedding_model.onnx``.
        pad_before, pad_after: seconds of silence added before and after the clip (``predict_clip``'s
            ``padding``, which is the same on both sides; 2 s before gives every window ending in the clip
            its full context).
        clip_seconds: the clip length data loaders crop or pad to.
    """

    def __init__(self, head_path: str | Path, resources: str | Path | None = None,
                 pad_before: float = 2.0, pad_after: float = 1.0, clip_seconds: float = 2.0):
        super().__init__()
        head_path = Path(head_path)
        resources = Path(resources) if resources is not None else resources_dir()
        self.name = short_name(head_path)
        self.sample_rate = SAMPLE_RATE
        self.clip_seconds = clip_seconds
        self.multilabel = False
        self.padding = (int(round(pad_before * SAMPLE_RATE)), int(round(pad_after * SAMPLE_RATE)))
        self.front_end = StreamingMel(resources / "melspectrogram.onnx")
        self.embedding = embedding_network(resources / "embedding_model.onnx")

        model = _load(head_path)
        try:  # a foreign or empty graph has no [1, L, 96] input to read
            values = graph_values(model.graph)
            self.window = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
            chain = chain_from_nodes(model.graph.node, values)
        except (IndexError, KeyError, ValueError, AttributeError) as error:
            raise WakeWordError(f"{head_path}: not an openWakeWord head ({type(error).__name__}); expected an MLP "
                                f"over [1, L, 96] embeddings.") from error
        if chain.terminal not in ("Sigmoid", "Softmax") or not self.window:
            raise WakeWordError(f"{head_path}: expected an MLP over [1, L, 96] embeddings ending in a sigmoid "
                                f"or softmax.")
        self.mlp = chain.layers
        self.verifier = self._verifier(model, values)
        outputs = cast(int, self.mlp[-1].out_features if isinstance(self.mlp[-1], nn.Linear)
                       else self.mlp[-2].out_features)
        self.binary = chain.terminal == "Sigmoid"
        if self.binary and outputs != 1:
            raise WakeWordError(f"{head_path}: a sigmoid head with {outputs} outputs is not supported.")
        self.labels = (f"not-{self.name}", self.name) if self.binary else \
            self._class_names(model.graph.output[0].name, outputs)

    @staticmethod
    def _verifier(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> nn.Sequential | None:
        """hey_jarvis's verifier MLP: the ``then`` branch of the head's ``If`` node, or None."""
        for node in model.graph.node:
            if node.op_type == "If":
                branch = next(a.g for a in node.attribute if a.name == "then_branch")
                return chain_from_nodes(branch.node, {**values, **graph_values(branch)}).layers
        return None

    def _class_names(self, output_name: str, count: int) -> tuple[str, ...]:
        """Softmax heads name classes 1.. in a JSON output name (timer); class 0 is the background."""
        try:
            names = {int(k): str(v) for k, v in json.loads(output_name).items()}
        except (json.JSONDecodeError, AttributeError, ValueError):
            names = {}
        return (f"not-{self.name}",) + tuple(names.get(k, f"{self.name}_{k}") for k in range(1, count))

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        padded = F.pad(audio, self.padding)
        chunks = padded.shape[-1] // CHUNK
        if chunks < FIRST_EMBEDDED_CHUNK + self.window:
            raise ModelError(f"openwakeword:{self.name} needs at least "
                             f"{(FIRST_EMBEDDED_CHUNK + self.window) * CHUNK / SAMPLE_RATE:g} s of audio including "
                             f"its padding ({sum(self.padding) / SAMPLE_RATE:g} s); got "
                             f"{audio.shape[-1] / SAMPLE_RATE:g} s: pad the clip or raise pad_after.")
        return self.front_end(padded).transpose(1, 2)                    # [B, 32, frames]

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        frames = features.transpose(1, 2)[:, FRAME_OFFSET:].unsqueeze(1)  # [B, 1, frames - 4, 32]
        embedded = self.embedding(frames).squeeze(-1).transpose(1, 2)    # [B, N, 96]: chunks 9, 10, ...
        return {"audio": embedded.flatten(1)}

    def window_logits(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``[B, W, K]`` of every scored window (one per 80 ms chunk, oldest first)."""
        embedded = embeddings["audio"].reshape(embeddings["audio"].shape[0], -1, 96)
        windows = embedded.unfold(1, self.window, 1).transpose(2, 3)     # [B, W, window, 96]
        batch, count = windows.shape[:2]
        flat = windows.reshape(batch * count, self.window, 96)
        logits = self.mlp(flat)
        if not self.binary:
            return logits.reshape(batch, count, -1)
        if self.verifier is not None:  # the ONNX If: the verifier's logit wherever the first score is >= 0.5
            logits = torch.where(logits >= 0, self.verifier(flat), logits)
        z = logits.reshape(batch, count, 1)
        return torch.cat([-z / 2, z / 2], dim=-1)

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.window_logits(embeddings)
        detection = 1 - torch.softmax(logits, dim=-1)[..., 0]            # [B, W]: wake-word probability
        best = detection.argmax(dim=1)
        return logits[torch.arange(logits.shape[0], device=logits.device), best]

    def window_probabilities(self, audio: torch.Tensor) -> torch.Tensor:
        """openWakeWord's scores ``[B, W, K]`` every 80 ms (softmax of the window logits; ``[..., 1]`` for
        single-output models is the sigmoid score). Window ``w`` ends at chunk ``w + 9 + window - 1`` of
        the padded clip, i.e. ``predict_clip``'s prediction number ``w + 8 + window``."""
        return torch.softmax(self.window_logits(self.embeddings(self.features(audio))), dim=-1)


def load_openwakeword(name: str, **options: Any) -> OpenWakeWord:
    """``openwakeword:NAME`` where NAME is a model of the wheel (``alexa``) or a head ``.onnx`` file."""
    path = Path(name)
    if path.suffix == ".onnx" and path.is_file():
        return OpenWakeWord(path, **options)
    models = available_models()
    if name not in models:
        raise WakeWordError(f"No openWakeWord model {name!r}; the installed wheel has: {', '.join(models)}. "
                            f"A custom head can be given as openwakeword:/path/to/head.onnx.")
    return OpenWakeWord(models[name], **options)
