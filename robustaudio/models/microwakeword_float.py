"""microWakeWord rebuilt in float torch: a differentiable twin of the device, for white-box attacks.

``microwakeword-float:NAME`` reads the same int8 streaming TFLite file that
:class:`~robustaudio.models.microwakeword.MicroWakeWord` runs, dequantises its weights and runs the
network over a whole clip at once, in front of :class:`~robustaudio.models.frontends.MicroFrontend`
(the float model of the TFLite-Micro front end). It answers the question a black-box search cannot:
*what would an attacker with the device's weights reach?* It is a diagnostic and an upper bound;
music learned on it is always scored on the device itself (``microwakeword:NAME``).

**The network.** The streaming graph keeps, before each temporal convolution, a ring buffer of its
last ``k - 1`` inputs (initialised to the quantised zero, i.e. float 0) and runs every 3 feature
frames (30 ms). Run over a clip, that is a causal 1-D convolution with ``k - 1`` zeros of left
padding: the first convolution (kernel 5 over frames, stride 3, its buffer holds 2 frames) sees frames
``3s - 2 .. 3s + 2`` at step ``s``; each depthwise convolution (kernel 5, 9, 13, 21) then runs over
steps, each followed by a 1x1 convolution with ReLU; the last ``window`` steps (5 for alexa) are
flattened, time-major, into one dense unit whose sigmoid is the step's probability. The walk is
generic over models built that way (``alexa``, ``hey_jarvis``, ``hey_mycroft``); a graph with
operators outside that chain (``okay_nabu``'s split mixed-kernel blocks) is refused.

**What is approximated.** Weights and biases are the file's, dequantised exactly; activations stay
float (the device rounds each to int8), except the network input, which is rounded to the device's
int8 grid with a straight-through gradient. The front end is :class:`MicroFrontend` (Pearson r 0.998
with ``pymicro-features``). The detector's probability is, as the package computes it, the mean of the
last ``sliding_window_size`` (5) step probabilities, 0 before the window first fills. How close the
twin's step probabilities are to the device's on real clips is measured in
``tests/test_microwakeword_float.py`` and reported by ``experiments/jam_whitebox_micro.py``.

Labels, logits and the cutoff follow :class:`MicroWakeWord`: ``("not-<name>", "<name>")``, logits
``[-z/2, z/2]`` with ``z = logit(p) - logit(cutoff)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.autograd.function import FunctionCtx
from torch.nn import functional as F

from .base import ModelError, WholeModel
from .frontends import MicroFrontend
from .microwakeword import SAMPLE_RATE, cutoff_logits, model_config

CHAIN = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
PLUMBING = {"CALL_ONCE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CONCATENATION", "STRIDED_SLICE",
            "RESHAPE", "LOGISTIC", "QUANTIZE"}


@dataclass
class Layer:
    """One dequantised layer: ``kind`` "conv" (``weight [O, I, k]``), "depthwise" (``[C, 1, k]``) or
    "dense" (``[1, F]``); ``bias`` ``[O]``; ``relu`` the fused activation."""

    kind: str
    weight: torch.Tensor
    bias: torch.Tensor
    relu: bool


@dataclass
class Network:
    layers: list[Layer]
    input_scale: float
    input_zero_point: int
    stride: int            # feature frames per network step (the input tensor's time size)


def _quantised(model: Any, graph: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The constant tensor ``index`` as stored (int8/int32) and its per-channel scales."""
    tensor = graph.Tensors(index)
    raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
    dtype = {9: np.int8, 2: np.int32}.get(tensor.Type())
    if dtype is None or isinstance(raw, int):
        raise ModelError(f"microWakeWord layer {tensor.Name().decode()!r} is not an int8/int32 constant.")
    values = np.frombuffer(raw.tobytes(), dtype=dtype).reshape(tensor.ShapeAsNumpy())
    return values, tensor.Quantization().ScaleAsNumpy()


def read_network(path: str | Path) -> Network:
    """Dequantise the conv / depthwise / dense chain of a microWakeWord ``.tflite`` file (see the module)."""
    try:
        import tflite
    except ImportError as error:
        raise ModelError("Rebuilding microWakeWord needs the tflite package: pip install tflite.") from error
    model = tflite.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    graph = model.Subgraphs(0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    fused = {v: k for k, v in vars(tflite.ActivationFunctionType).items() if not k.startswith("_")}
    layers = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        if kind in PLUMBING:
            continue
        if kind not in CHAIN:
            raise ModelError(f"{Path(path).name} has a {kind} operator: only chains of convolutions, depthwise "
                             f"convolutions and one dense layer are rebuilt (alexa, hey_jarvis, hey_mycroft).")
        inputs = op.InputsAsNumpy()
        weight, w_scale = _quantised(model, graph, inputs[1])
        bias, b_scale = _quantised(model, graph, inputs[2])
        options_class = {"CONV_2D": tflite.Conv2DOptions, "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
                         "FULLY_CONNECTED": tflite.FullyConnectedOptions}[kind]
        options = options_class()
        table = op.BuiltinOptions()
        options.Init(table.Bytes, table.Pos)
        relu = fused.get(options.FusedActivationFunction()) == "RELU"
        if kind == "CONV_2D":        # [O, k, 1, I], scales per output channel
            w = weight[:, :, 0, :].astype(np.float64) * w_scale[:, None, None]
            w = np.transpose(w, (0, 2, 1))                                   # [O, I, k]
            layers.append(Layer("conv", torch.tensor(w, dtype=torch.float32),
                                torch.tensor(bias * b_scale, dtype=torch.float32), relu))
        elif kind == "DEPTHWISE_CONV_2D":   # [1, k, 1, C], scales per channel
            w = weight[0, :, 0, :].astype(np.float64) * w_scale[None, :]
            layers.append(Layer("depthwise", torch.tensor(w.T[:, None, :], dtype=torch.float32),
                                torch.tensor(bias * b_scale, dtype=torch.float32), relu))
        else:                          # [1, F]
            layers.append(Layer("dense", torch.tensor(weight.astype(np.float64) * w_scale[0], dtype=torch.float32),
                                torch.tensor(bias * b_scale, dtype=torch.float32), relu))
    if not layers or layers[0].kind != "conv" or layers[-1].kind != "dense" or \
            any(layer.kind == "dense" for layer in layers[:-1]):
        raise ModelError(f"{Path(path).name}: expected a convolution first and one dense layer last.")
    first = graph.Tensors(graph.Inputs(0))
    quantisation = first.Quantization()
    return Network(layers, float(quantisation.ScaleAsNumpy()[0]), int(quantisation.ZeroPointAsNumpy()[0]),
                   int(first.ShapeAsNumpy()[1]))


class _RoundThrough(torch.autograd.Function):
    """``round`` forward, identity backward (straight-through)."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class MicroWakeWordFloat(WholeModel):
    """Differentiable float twin of a microWakeWord detector (see the module docstring).

    Input ``[B, T]`` float waveforms in [-1, 1] at 16 kHz; ``pad_after`` seconds of silence are
    appended, as :class:`MicroWakeWord` streams them. Output logits ``[B, 2]`` of the clip's highest
    sliding-window probability; :meth:`step_logits` ``[B, S, 2]`` every 30 ms step.
    """

    stage_hint = "attack the waveform domain (the front end is part of the model)"

    def __init__(self, config: str | Path, pad_after: float = 1.0, clip_seconds: float = 2.0):
        super().__init__()
        if pad_after < 0 or not clip_seconds > 0:
            raise ModelError(f"pad_after must be >= 0 and clip_seconds > 0, got {pad_after}, {clip_seconds}.")
        self.config_path = Path(config)
        settings = json.loads(self.config_path.read_text())
        micro = settings["micro"]
        network = read_network(self.config_path.parent / settings["model"])
        self.name = self.config_path.stem
        self.labels = (f"not-{self.name}", self.name)
        self.cutoff = float(micro["probability_cutoff"])
        self.sliding_window = int(micro["sliding_window_size"])
        self.sample_rate = SAMPLE_RATE
        self.multilabel = False
        self.clip_seconds = float(clip_seconds)
        self.pad_after = int(round(pad_after * SAMPLE_RATE))
        self.front_end = MicroFrontend()
        self.input_scale, self.input_zero_point = network.input_scale, network.input_zero_point
        self.stride = network.stride
        self.kinds = [layer.kind for layer in network.layers]
        self.relus = [layer.relu for layer in network.layers]
        self.weights = nn.ParameterList([nn.Parameter(layer.weight, requires_grad=False) for layer in network.layers])
        self.biases = nn.ParameterList([nn.Parameter(layer.bias, requires_grad=False) for layer in network.layers])
        channels = network.layers[-2].weight.shape[0]
        self.window = network.layers[-1].weight.shape[1] // channels   # steps flattened into the dense layer

    def describe_source(self) -> str:
        return f"microwakeword-float:{self.name}"

    def network_input(self, features: torch.Tensor) -> torch.Tensor:
        """Front-end features ``[B, 40, frames]`` on the device's int8 grid (straight-through rounding)."""
        q = _RoundThrough.apply(features / self.input_scale + self.input_zero_point).clamp(-128, 127)
        return (q - self.input_zero_point) * self.input_scale

    def network_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid output ``[B, S]`` of every step, ``S = frames // stride``, for features ``[B, 40, frames]``."""
        x = self.network_input(features)
        steps = x.shape[-1] // self.stride
        x = x[..., : steps * self.stride]
        for kind, relu, weight, bias in zip(self.kinds, self.relus, self.weights, self.biases):
            if kind == "conv":
                k = weight.shape[-1]
                stride = self.stride if k > 1 else 1
                # the first convolution's buffer holds k - stride frames; a 1x1 one needs none
                x = F.conv1d(F.pad(x, (k - stride, 0)), weight, bias, stride=stride)
            elif kind == "depthwise":
                k = weight.shape[-1]
                x = F.conv1d(F.pad(x, (k - 1, 0)), weight, bias, groups=weight.shape[0])
            else:
                windows = F.pad(x, (self.window - 1, 0)).unfold(-1, self.window, 1)     # [B, C, S, window]
                flat = windows.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[-1], -1)  # time-major
                x = flat @ weight.T + bias                                                 # [B, S, 1]
                return x.squeeze(-1)
            if relu:
                x = F.relu(x)
        raise ModelError("the network has no dense layer")  # read_network guarantees one

    def step_probabilities(self, audio: torch.Tensor) -> torch.Tensor:
        """The detector's probability every 30 ms ``[B, S]`` (mean of the last ``sliding_window`` step
        probabilities; 0 before the window first fills, as the package returns it)."""
        if audio.dim() != 2:
            raise ModelError(f"{self.describe_source()} takes audio [B, T], got shape {tuple(audio.shape)}.")
        audio = F.pad(audio, (0, self.pad_after))
        p = torch.sigmoid(self.network_logits(self.front_end.raw(audio)))
        n = self.sliding_window
        mean = F.avg_pool1d(p.unsqueeze(1), n, stride=1).squeeze(1)                  # [B, S - n + 1]
        return F.pad(mean, (n - 1, 0))

    def step_logits(self, audio: torch.Tensor) -> torch.Tensor:
        return self._logits(self.step_probabilities(audio))

    def forward(self, audio: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        if video is not None:
            raise ModelError(f"{self.describe_source()} takes audio only.")
        return self._logits(self.step_probabilities(audio).amax(dim=1))

    def forward_features(self, features: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward(features, video)

    def _logits(self, p: torch.Tensor) -> torch.Tensor:
        return cutoff_logits(p, self.cutoff)


def load_microwakeword_float(name: str, **options: Any) -> MicroWakeWordFloat:
    """``microwakeword-float:NAME`` (alexa, hey_jarvis, hey_mycroft) or ``microwakeword-float:/path/model.json``.

    Options: ``pad_after``, ``clip_seconds``; ``sample_rate`` must be 16000.
    """
    return MicroWakeWordFloat(model_config(name, "microwakeword-float", options), **options)


__all__ = ["Layer", "MicroWakeWordFloat", "Network", "load_microwakeword_float", "read_network"]
