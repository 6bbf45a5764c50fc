"""TFLite flatbuffers in torch: read a single-subgraph ``.tflite`` file (operators, tensor names,
constants) with the ``tflite`` package and run a range of its operators op by op, in TFLite's NHWC
layout, as an ``nn.Module`` with exact gradients (:class:`TFLiteSection`).

Used for BirdNET (:mod:`robustaudio.models.birdnet`, whose docstring explains how the rebuild is
checked against LiteRT); nothing in here is specific to one network: the operators supported are
:data:`SUPPORTED`, and any other one is refused when a section is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .base import ModelError

INSTALL_HINT = "pip install tflite"


# -- the flatbuffer ---------------------------------------------------------------------------------

def _tflite() -> ModuleType:
    try:
        import tflite
    except ImportError as error:
        raise ModelError(f"Reading a TFLite graph needs the tflite package: {INSTALL_HINT}.") from error
    return tflite


@dataclass
class TFLiteOp:
    index: int
    kind: str                 # builtin operator name, e.g. "CONV_2D"
    inputs: list[int]         # tensor indices, -1 for an absent optional input
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass
class TFLiteGraph:
    ops: list[TFLiteOp]
    names: list[str]                     # tensor names
    constants: dict[int, np.ndarray]     # tensor index -> value, for tensors with a buffer
    inputs: list[int]
    outputs: list[int]

    def tensor(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ModelError(f"the TFLite graph has no tensor {name!r}: is this the model expected?") from None

    def producer(self, tensor: int) -> int:
        """Position in :attr:`ops` of the operator that writes ``tensor``."""
        return next(i for i, op in enumerate(self.ops) if tensor in op.outputs)


# options tables read per operator kind: (options class, fields)
_OPTIONS = {
    "CONV_2D": ("Conv2DOptions", ("Padding", "StrideH", "StrideW", "DilationHFactor", "DilationWFactor",
                                  "FusedActivationFunction")),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", ("Padding", "StrideH", "StrideW", "DilationHFactor",
                                                     "DilationWFactor", "DepthMultiplier",
                                                     "FusedActivationFunction")),
    "AVERAGE_POOL_2D": ("Pool2DOptions", ("Padding", "StrideH", "StrideW", "FilterHeight", "FilterWidth",
                                          "FusedActivationFunction")),
    "MAX_POOL_2D": ("Pool2DOptions", ("Padding", "StrideH", "StrideW", "FilterHeight", "FilterWidth",
                                      "FusedActivationFunction")),
    "FULLY_CONNECTED": ("FullyConnectedOptions", ("FusedActivationFunction", "KeepNumDims", "WeightsFormat")),
    "ADD": ("AddOptions", ("FusedActivationFunction",)),
    "SUB": ("SubOptions", ("FusedActivationFunction",)),
    "MUL": ("MulOptions", ("FusedActivationFunction",)),
    "DIV": ("DivOptions", ("FusedActivationFunction",)),
    "CONCATENATION": ("ConcatenationOptions", ("Axis", "FusedActivationFunction")),
    "PACK": ("PackOptions", ("ValuesCount", "Axis")),
    "GATHER": ("GatherOptions", ("Axis", "BatchDims")),
    "MEAN": ("ReducerOptions", ("KeepDims",)),
    "REDUCE_MIN": ("ReducerOptions", ("KeepDims",)),
    "REDUCE_MAX": ("ReducerOptions", ("KeepDims",)),
    "REDUCE_PROD": ("ReducerOptions", ("KeepDims",)),
    "SQUEEZE": ("SqueezeOptions", ()),
    "STRIDED_SLICE": ("StridedSliceOptions", ("BeginMask", "EndMask", "EllipsisMask", "NewAxisMask",
                                              "ShrinkAxisMask", "Offset")),
    "SPLIT_V": ("SplitVOptions", ("NumSplits",)),
    "RESHAPE": ("ReshapeOptions", ()),
}

_DTYPES = {"FLOAT32": np.float32, "INT32": np.int32, "INT64": np.int64, "FLOAT16": np.float16,
           "UINT8": np.uint8, "INT8": np.int8, "BOOL": np.bool_, "COMPLEX64": np.complex64}


def _read_options(tflite: ModuleType, op: Any, kind: str) -> dict:
    if kind not in _OPTIONS:
        return {}
    class_name, fields = _OPTIONS[kind]
    table = op.BuiltinOptions()
    if table is None:
        return {}
    options = getattr(tflite, class_name)()
    options.Init(table.Bytes, table.Pos)
    found = {name: getattr(options, name)() for name in fields}
    if kind == "SQUEEZE":
        found["SqueezeDims"] = [int(v) for v in options.SqueezeDimsAsNumpy()] if options.SqueezeDimsLength() else []
    if kind == "RESHAPE" and options.NewShapeLength():
        found["NewShape"] = [int(v) for v in options.NewShapeAsNumpy()]
    return found


def read_tflite(path: str | Path) -> TFLiteGraph:
    """Operators, tensor names and constants of the (single-subgraph) TFLite file at ``path``."""
    tflite = _tflite()
    path = Path(path)
    buffer = path.read_bytes()
    model = tflite.Model.GetRootAsModel(buffer, 0)
    if model.SubgraphsLength() != 1:
        raise ModelError(f"{path.name} has {model.SubgraphsLength()} subgraphs; only single-graph models are read.")
    builtin = {value: name for name, value in vars(tflite.BuiltinOperator).items() if not name.startswith("_")}
    type_names = {value: name for name, value in vars(tflite.TensorType).items() if not name.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        codes.append("CUSTOM:" + code.CustomCode().decode() if builtin.get(number) == "CUSTOM" else builtin[number])
    graph = model.Subgraphs(0)
    names, constants = [], {}
    for t in range(graph.TensorsLength()):
        tensor = graph.Tensors(t)
        names.append(tensor.Name().decode())
        data = model.Buffers(tensor.Buffer()).DataAsNumpy()
        dtype = _DTYPES.get(type_names[tensor.Type()])
        shape = tuple(int(s) for s in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        if isinstance(data, np.ndarray) and data.size:
            constants[t] = np.frombuffer(data.tobytes(), dtype=dtype).reshape(shape).copy()
        elif tensor.Buffer() > 0 and 0 in shape:  # an empty constant, e.g. the shape [] of a scalar
            constants[t] = np.zeros(shape, dtype=dtype)
    ops = []
    for j in range(graph.OperatorsLength()):
        op = graph.Operators(j)
        kind = codes[op.OpcodeIndex()]
        ops.append(TFLiteOp(j, kind, [int(i) for i in op.InputsAsNumpy()], [int(i) for i in op.OutputsAsNumpy()],
                            _read_options(tflite, op, kind)))
    return TFLiteGraph(ops, names, constants, [int(i) for i in graph.InputsAsNumpy()],
                       [int(i) for i in graph.OutputsAsNumpy()])


def print_ops(graph: TFLiteGraph) -> list[str]:
    """One line per operator: ``index KIND inputs -> outputs`` (tensor names); also printed."""
    name = lambda t: "-" if t < 0 else graph.names[t] + ("*" if t in graph.constants else "")  # noqa: E731
    lines = [f"{op.index:3d} {op.kind:18s} {', '.join(map(name, op.inputs))} -> {', '.join(map(name, op.outputs))}"
             for op in graph.ops]
    print("\n".join(lines))
    return lines


# -- running operators in torch ---------------------------------------------------------------------

SUPPORTED = {"ADD", "SUB", "MUL", "DIV", "FLOOR_DIV", "MAXIMUM", "POW", "LOGISTIC", "CAST", "SHAPE",
             "RESHAPE", "EXPAND_DIMS", "SQUEEZE", "TRANSPOSE", "REVERSE_V2", "PACK", "CONCATENATION",
             "STRIDED_SLICE", "SPLIT_V", "GATHER", "RANGE", "PAD", "REDUCE_MIN", "REDUCE_MAX",
             "REDUCE_PROD", "MEAN", "RFFT2D", "FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D",
             "AVERAGE_POOL_2D", "MAX_POOL_2D"}


def _activation(x: torch.Tensor, code: int | None) -> torch.Tensor:
    if not code:
        return x
    if code == 1:
        return torch.relu(x)
    if code == 2:
        return x.clamp(-1.0, 1.0)
    if code == 3:
        return x.clamp(0.0, 6.0)
    if code == 4:
        return torch.tanh(x)
    raise ModelError(f"fused activation {code} is not supported.")


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding of one axis: (before, after), the odd one at the end."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _pad_nhwc(x: torch.Tensor, options: dict, kernel: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    if options.get("Padding", 1) != 0:  # VALID
        return x
    top, bottom = _same_padding(x.shape[1], kernel[0], options["StrideH"], options.get("DilationHFactor", 1) or 1)
    left, right = _same_padding(x.shape[2], kernel[1], options["StrideW"], options.get("DilationWFactor", 1) or 1)
    if top or bottom or left or right:
        x = F.pad(x, (0, 0, left, right, top, bottom), value=value)
    return x


def _ints(x: torch.Tensor) -> list[int]:
    return [int(v) for v in x.reshape(-1).tolist()]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


class TFLiteSection(nn.Module):
    """Operators ``ops`` of a :class:`TFLiteGraph`, run in order from tensors ``inputs`` to ``outputs``.

    Float constants become parameters (``trainable=True``) or buffers, conv weights transposed once
    to torch's layout; integer constants (shapes, axes, indices) stay on the CPU, where the graph's
    shape arithmetic runs. Activations keep TFLite's layout (NHWC).
    """

    def __init__(self, graph: TFLiteGraph, ops: list[TFLiteOp], inputs: list[int], outputs: list[int],
                 trainable: bool = False) -> None:
        super().__init__()
        unsupported = sorted({op.kind for op in ops} - SUPPORTED)
        if unsupported:
            raise ModelError(f"TFLite operators {', '.join(unsupported)} are not supported by the torch rebuild.")
        self.ops, self.inputs, self.outputs = ops, list(inputs), list(outputs)
        self.names = {t: graph.names[t] for op in ops for t in op.inputs + op.outputs if t >= 0}
        self.tensors = nn.ParameterDict() if trainable else None
        self.int_constants: dict[int, torch.Tensor] = {}
        self.float_keys: dict[tuple[int, str], str] = {}
        for op in ops:
            for position, t in enumerate(op.inputs):
                if t < 0 or t not in graph.constants:
                    continue
                value = graph.constants[t]
                if value.dtype.kind in "iub":
                    self.int_constants[t] = torch.from_numpy(value.astype(np.int32 if value.dtype.kind != "b"
                                                                          else np.bool_))
                    continue
                layout = "x"
                if op.kind == "CONV_2D" and position == 1:
                    layout, value = "conv", value.transpose(0, 3, 1, 2)              # OHWI -> OIHW
                elif op.kind == "DEPTHWISE_CONV_2D" and position == 1:
                    layout, value = "depthwise", value.transpose(3, 0, 1, 2)         # 1HWC -> C1HW
                self._add_float(t, layout, np.ascontiguousarray(value, dtype=np.float32))
        # after op i, the activations no later op (nor the output) reads: freed early (memory without autograd)
        last = {t: i for i, op in enumerate(ops) for t in op.inputs if t >= 0}
        self.release = [[t for t in op.inputs if last.get(t) == i and t not in self.outputs]
                        for i, op in enumerate(ops)]

    def _add_float(self, t: int, layout: str, value: np.ndarray) -> None:
        if (t, layout) in self.float_keys:
            return
        key = f"{layout}{t}"
        tensor = torch.from_numpy(value)
        if self.tensors is not None:
            self.tensors[key] = nn.Parameter(tensor)
        else:
            self.register_buffer(key, tensor)
        self.float_keys[(t, layout)] = key

    def _float(self, t: int, layout: str = "x") -> torch.Tensor:
        key = self.float_keys[(t, layout)]
        return self.tensors[key] if self.tensors is not None else getattr(self, key)

    def _constant(self, t: int) -> torch.Tensor | None:
        """An integer or float constant; None for an absent input or a weight kept in another layout."""
        if t in self.int_constants:
            return self.int_constants[t]
        return self._float(t) if (t, "x") in self.float_keys else None

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        values: dict[int, torch.Tensor] = dict(zip(self.inputs, tensors))
        for op, release in zip(self.ops, self.release):
            args = [self._constant(t) if t not in values else values[t] for t in op.inputs]
            result = getattr(self, "_" + op.kind.lower())(op, args)
            results = result if isinstance(result, (list, tuple)) else [result]
            for t, value in zip(op.outputs, results):
                values[t] = value
            for t in release:
                values.pop(t, None)
        found = [values[t] for t in self.outputs]
        return found[0] if len(found) == 1 else tuple(found)

    # elementwise ----------------------------------------------------------------------------------
    def _binary(self, op: TFLiteOp, args: list[torch.Tensor],
                fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        a, b = args
        if a.device != b.device:  # a CPU-held integer constant meeting an activation on the GPU
            a, b = (a, b.to(a.device)) if a.device.type != "cpu" else (a.to(b.device), b)
        return _activation(fn(a, b), op.options.get("FusedActivationFunction"))

    def _add(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        return self._binary(op, args, torch.add)

    def _sub(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        return self._binary(op, args, torch.sub)

    def _mul(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        return self._binary(op, args, torch.mul)

    def _div(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        return self._binary(op, args, torch.div)

    def _floor_div(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        return torch.div(args[0], args[1], rounding_mode="floor")

    def _maximum(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        return torch.maximum(args[0], args[1])

    def _pow(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        base, exponent = args
        if exponent.dim() == 0 and 0 < float(exponent) < 1:
            # x ** p for 0 < p < 1 has an infinite slope at x = 0: its gradient there is taken as 0
            # (else 0 * inf = NaN through x * x (BirdNET's power law)); the forward value is unchanged
            positive = base > 0
            return torch.where(positive, torch.pow(torch.where(positive, base, torch.ones_like(base)), exponent),
                               torch.zeros_like(base))
        return torch.pow(base, exponent)

    def _logistic(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        return torch.sigmoid(args[0])

    def _cast(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        x = args[0]
        if x.is_complex():
            x = x.real  # tf.cast(complex -> float) keeps the real part
        return x.float() if x.is_floating_point() else x

    # shapes ---------------------------------------------------------------------------------------
    def _shape(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        return torch.tensor(list(args[0].shape), dtype=torch.int32)

    def _reshape(self, op: TFLiteOp, args: list[torch.Tensor | None]) -> torch.Tensor:
        shape = _ints(args[1]) if len(args) > 1 and args[1] is not None else op.options.get("NewShape", [])
        return cast(torch.Tensor, args[0]).reshape(shape)  # the data input: always given

    def _expand_dims(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        axis = _ints(args[1])[0]
        return args[0].unsqueeze(axis + args[0].dim() + 1 if axis < 0 else axis)

    def _squeeze(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        x, dims = args[0], op.options.get("SqueezeDims") or [d for d, s in enumerate(args[0].shape) if s == 1]
        for d in sorted((_axis(d, x.dim()) for d in dims), reverse=True):
            x = x.squeeze(d)
        return x

    def _transpose(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        return args[0].permute(_ints(args[1]))

    def _reverse_v2(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        return torch.flip(args[0], [_axis(a, args[0].dim()) for a in _ints(args[1])])

    def _pack(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(args, dim=_axis(op.options["Axis"], args[0].dim() + 1))

    def _concatenation(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        out = torch.cat(args, dim=_axis(op.options["Axis"], args[0].dim()))
        return _activation(out, op.options.get("FusedActivationFunction"))

    def _strided_slice(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        x, begin, end, strides = args[0], _ints(args[1]), _ints(args[2]), _ints(args[3])
        o = op.options
        if o.get("EllipsisMask") or o.get("NewAxisMask"):
            raise ModelError("STRIDED_SLICE with ellipsis or new-axis masks is not supported.")
        index: list[int | slice] = []
        for d in range(len(begin)):
            b, e, s = begin[d], end[d], strides[d]
            if o.get("Offset"):
                e = b + e
            if o.get("ShrinkAxisMask", 0) >> d & 1:
                index.append(b + x.shape[d] if b < 0 else b)
                continue
            if s <= 0:
                raise ModelError("STRIDED_SLICE with a negative stride is not supported.")
            index.append(slice(None if o.get("BeginMask", 0) >> d & 1 else b,
                               None if o.get("EndMask", 0) >> d & 1 else e, s))
        return x[tuple(index)]

    def _split_v(self, op: TFLiteOp, args: list[torch.Tensor]) -> list[torch.Tensor]:
        x, sizes, axis = args[0], _ints(args[1]), _axis(_ints(args[2])[0], args[0].dim())
        if -1 in sizes:
            sizes[sizes.index(-1)] = x.shape[axis] - sum(s for s in sizes if s != -1)
        return list(torch.split(x, sizes, dim=axis))

    def _gather(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        x, indices = args
        if op.options.get("BatchDims"):
            raise ModelError("GATHER with batch_dims is not supported.")
        axis = _axis(op.options.get("Axis", 0), x.dim())
        flat = indices.reshape(-1).long().to(x.device)
        out = x.index_select(axis, flat)
        return out.reshape(list(x.shape[:axis]) + list(indices.shape) + list(x.shape[axis + 1:]))

    def _range(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        start, limit, delta = (_ints(a)[0] for a in args)
        return torch.arange(start, limit, delta, dtype=torch.int32)

    def _pad(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        pads = np.asarray(_ints(args[1])).reshape(-1, 2)
        return F.pad(args[0], [int(v) for pair in pads[::-1] for v in pair])

    # reductions -----------------------------------------------------------------------------------
    def _reduce(self, op: TFLiteOp, args: list[torch.Tensor],
                fn: Callable[[torch.Tensor, list[int], bool], torch.Tensor]) -> torch.Tensor:
        x, axes = args[0], sorted({_axis(a, args[0].dim()) for a in _ints(args[1])})
        keep = bool(op.options.get("KeepDims"))
        if not axes:
            return x
        return fn(x, axes, keep)

    def _reduce_min(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        return self._reduce(op, args, lambda x, axes, keep: torch.amin(x, dim=axes, keepdim=keep))

    def _reduce_max(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        return self._reduce(op, args, lambda x, axes, keep: torch.amax(x, dim=axes, keepdim=keep))

    def _mean(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        return self._reduce(op, args, lambda x, axes, keep: torch.mean(x, dim=axes, keepdim=keep))

    def _reduce_prod(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        def prod(x: torch.Tensor, axes: list[int], keep: bool) -> torch.Tensor:
            for axis in reversed(axes):
                x = torch.prod(x, dim=axis, keepdim=keep)
            return x.to(args[0].dtype)
        return self._reduce(op, args, prod)

    # spectra, layers ------------------------------------------------------------------------------
    def _rfft2d(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        # TFLite's RFFT2D (Ooura's fft2d) computes in double precision: so does this, else the float32
        # rounding noise of near-empty bins (digital silence) is magnified by a following power law (BirdNET's)
        height, width = _ints(args[1])
        return torch.fft.rfft2(args[0].double(), s=(height, width), dim=(-2, -1)).to(torch.complex64)

    def _fully_connected(self, op: TFLiteOp, args: list[torch.Tensor | None]) -> torch.Tensor:
        x, weight, bias = (args + [None])[:3]
        x, weight = cast(torch.Tensor, x), cast(torch.Tensor, weight)  # required inputs (only the bias is optional)
        out = F.linear(x.reshape(-1, weight.shape[1]), weight, bias)
        if op.options.get("KeepNumDims"):
            out = out.reshape(list(x.shape[:-1]) + [weight.shape[0]])
        return _activation(out, op.options.get("FusedActivationFunction"))

    def _conv(self, op: TFLiteOp, args: list[torch.Tensor | None], layout: str) -> torch.Tensor:
        """CONV_2D (``layout`` "conv") or DEPTHWISE_CONV_2D ("depthwise": one group per input channel)."""
        x, bias = cast(torch.Tensor, args[0]), args[2] if len(args) > 2 else None  # args[1]: None (weight, own layout)
        weight = self._float(op.inputs[1], layout)
        o = op.options
        x = _pad_nhwc(x, o, (weight.shape[2], weight.shape[3]))
        out = F.conv2d(x.permute(0, 3, 1, 2), weight, bias, stride=(o["StrideH"], o["StrideW"]),
                       dilation=(o.get("DilationHFactor") or 1, o.get("DilationWFactor") or 1),
                       groups=x.shape[3] if layout == "depthwise" else 1)
        return _activation(out.permute(0, 2, 3, 1), o.get("FusedActivationFunction"))

    def _conv_2d(self, op: TFLiteOp, args: list[torch.Tensor | None]) -> torch.Tensor:
        return self._conv(op, args, "conv")

    def _depthwise_conv_2d(self, op: TFLiteOp, args: list[torch.Tensor | None]) -> torch.Tensor:
        return self._conv(op, args, "depthwise")

    def _pool(self, op: TFLiteOp, args: list[torch.Tensor], kind: str) -> torch.Tensor:
        x, o = args[0], op.options
        kernel, stride = (o["FilterHeight"], o["FilterWidth"]), (o["StrideH"], o["StrideW"])
        if kind == "max":
            padded = _pad_nhwc(x, o, kernel, value=-math.inf).permute(0, 3, 1, 2)
            out = F.max_pool2d(padded, kernel, stride)
        else:  # TFLite averages over the window's valid (unpadded) cells only
            padded = _pad_nhwc(x, o, kernel).permute(0, 3, 1, 2)
            out = F.avg_pool2d(padded, kernel, stride)
            if o.get("Padding", 1) == 0:
                ones = _pad_nhwc(torch.ones_like(x[:1, ..., :1]), o, kernel).permute(0, 3, 1, 2)
                out = out / F.avg_pool2d(ones, kernel, stride)
        return _activation(out.permute(0, 2, 3, 1), o.get("FusedActivationFunction"))

    def _average_pool_2d(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        return self._pool(op, args, "avg")

    def _max_pool_2d(self, op: TFLiteOp, args: list[torch.Tensor]) -> torch.Tensor:
        return self._pool(op, args, "max")
