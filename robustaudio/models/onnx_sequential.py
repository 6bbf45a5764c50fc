"""Rebuild a *chain* ONNX graph (each node feeds the next) as an ``nn.Sequential`` with the file's weights.

For small, known graphs such as openWakeWord's embedding model and heads or YAMNet's MobileNet,
where a generic converter either fails (an ``If`` node, a dynamic ``Clip``) or gives an opaque
module. Reading the weights needs only the ``onnx`` package. Supported ops: ``Reshape`` (constant
shape; ``0`` copies the input's dimension, as ONNX's default ``allowzero=0``), ``Conv`` (1-D/2-D;
asymmetric pads, e.g. TensorFlow's ``SAME``, become a zero-padding layer before the convolution),
``MaxPool``, ``GlobalAveragePool``, ``LeakyRelu``, ``Relu``, ``Max`` with a scalar constant,
``Flatten``, ``Gemm`` (``x @ W.T + b``), and the 9-node pattern that ONNX exports of
``nn.LayerNorm`` decompose into. The chain stops at a final ``Sigmoid`` / ``Softmax``, which is
returned by name so that callers can work with the logits before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    import onnx

LAYER_NORM_OPS = ("ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul", "Add")
TERMINAL_OPS = ("Sigmoid", "Softmax")


class OnnxGraphError(ValueError):
    """The graph is not a chain of supported ops; the message names the node."""


class Reshape(nn.Module):
    """ONNX ``Reshape`` to a constant shape; a ``0`` entry keeps the input's size in that dimension."""

    def __init__(self, shape: list[int]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(tuple(x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)))


class GlobalAveragePool(nn.Module):
    """ONNX ``GlobalAveragePool``: ``[B, C, *spatial]`` -> ``[B, C, 1, ...]`` (the mean over every spatial axis)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


class ClampMin(nn.Module):
    """ONNX ``Max(x, c)`` with a scalar constant ``c``."""

    def __init__(self, value: float):
        super().__init__()
        self.value = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(self.value)


@dataclass
class Chain:
    """The rebuilt layers and the terminal activation they feed (``None``, ``"Sigmoid"`` or ``"Softmax"``)."""

    layers: nn.Sequential
    terminal: str | None


def graph_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers and ``Constant`` node outputs of an ``onnx.GraphProto``, by name (numpy arrays)."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _attributes(node: onnx.NodeProto) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _tensor(values: dict[str, np.ndarray], name: str) -> torch.Tensor:
    return torch.from_numpy(np.array(values[name], dtype=np.float32))


def _symmetric_padding(node: onnx.NodeProto, pads: list[int] | None, dims: int) -> tuple[int, ...]:
    pads = list(pads or [0] * 2 * dims)
    if pads[:dims] != pads[dims:]:
        raise OnnxGraphError(f"{node.op_type} node {node.name!r} has asymmetric pads {pads}: not supported.")
    return tuple(pads[:dims])


def _conv(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> nn.Module:
    attributes = _attributes(node)
    weight = _tensor(values, node.input[1])
    dims = weight.dim() - 2
    if attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise OnnxGraphError(f"Conv node {node.name!r} uses auto_pad: not supported.")
    # Any: torch's stubs take fixed-length size tuples; these are dims long, known at run time
    conv_class: Any = {1: nn.Conv1d, 2: nn.Conv2d}.get(dims)
    if conv_class is None:
        raise OnnxGraphError(f"Conv node {node.name!r} is {dims}-D: only 1-D and 2-D are supported.")
    pads = list(attributes.get("pads") or [0] * 2 * dims)
    symmetric = pads[:dims] == pads[dims:]
    bias = len(node.input) > 2 and node.input[2] != ""
    conv = conv_class(weight.shape[1] * attributes.get("group", 1), weight.shape[0], tuple(weight.shape[2:]),
                      stride=tuple(attributes.get("strides", [1] * dims)),
                      padding=tuple(pads[:dims]) if symmetric else 0,
                      dilation=tuple(attributes.get("dilations", [1] * dims)),
                      groups=attributes.get("group", 1), bias=bias)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias:
            conv.bias.copy_(_tensor(values, node.input[2]))
    if symmetric:
        return conv
    # ONNX pads are [begin_1, .., begin_n, end_1, .., end_n]; ZeroPad takes (begin_n, end_n, .., begin_1, end_1)
    padding: Any = tuple(p for axis in reversed(range(dims)) for p in (pads[axis], pads[dims + axis]))
    return nn.Sequential({1: nn.ZeroPad1d, 2: nn.ZeroPad2d}[dims](padding), conv)


def _max_pool(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> nn.Module:
    attributes = _attributes(node)
    kernel = attributes["kernel_shape"]
    if len(kernel) != 2 or attributes.get("ceil_mode", 0) or attributes.get("dilations", [1, 1]) != [1, 1]:
        raise OnnxGraphError(f"MaxPool node {node.name!r}: only plain 2-D pooling is supported.")
    return nn.MaxPool2d(tuple(kernel), stride=tuple(attributes.get("strides", kernel)),
                        padding=_symmetric_padding(node, attributes.get("pads"), 2))


def _gemm(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> nn.Module:
    attributes = _attributes(node)
    if attributes.get("transA", 0) or not attributes.get("transB", 0) or \
            attributes.get("alpha", 1.0) != 1.0 or attributes.get("beta", 1.0) != 1.0:
        raise OnnxGraphError(f"Gemm node {node.name!r}: only x @ W.T + b (transB=1, alpha=beta=1) is supported.")
    weight = _tensor(values, node.input[1])
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=len(node.input) > 2)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if len(node.input) > 2:
            linear.bias.copy_(_tensor(values, node.input[2]))
    return linear


def _layer_norm(nodes: Sequence[onnx.NodeProto], values: dict[str, np.ndarray]) -> nn.Module:
    """``nn.LayerNorm`` from its exported form ``(x - mean) / sqrt(var + eps) * weight + bias``."""
    add_eps, mul, add_bias = nodes[4], nodes[7], nodes[8]
    weight = _tensor(values, mul.input[1])
    norm = nn.LayerNorm(weight.shape[0], eps=float(values[add_eps.input[1]]))
    with torch.no_grad():
        norm.weight.copy_(weight)
        norm.bias.copy_(_tensor(values, add_bias.input[1]))
    return norm


def _single(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> nn.Module:
    op = node.op_type
    if op == "Conv":
        return _conv(node, values)
    if op == "MaxPool":
        return _max_pool(node, values)
    if op == "Gemm":
        return _gemm(node, values)
    if op == "GlobalAveragePool":
        return GlobalAveragePool()
    if op == "Relu":
        return nn.ReLU()
    if op == "LeakyRelu":
        return nn.LeakyReLU(_attributes(node).get("alpha", 0.01))
    if op == "Flatten":
        if _attributes(node).get("axis", 1) != 1:
            raise OnnxGraphError(f"Flatten node {node.name!r}: only axis=1 is supported.")
        return nn.Flatten()
    if op == "Reshape":
        return Reshape(values[node.input[1]].tolist())
    if op == "Max" and len(node.input) == 2 and node.input[1] in values and values[node.input[1]].size == 1:
        return ClampMin(values[node.input[1]].item())
    raise OnnxGraphError(f"Node {node.name!r} ({op}) is not supported by the chain rebuilder.")


def chain_from_nodes(nodes: Iterable[onnx.NodeProto], values: dict[str, np.ndarray]) -> Chain:
    """Rebuild ``nodes`` (``Constant`` nodes skipped) as layers, stopping at a terminal Sigmoid/Softmax.

    Raises :class:`OnnxGraphError` if a node does not take the previous node's output.
    """
    nodes = [node for node in nodes if node.op_type != "Constant"]
    layers: list[nn.Module] = []
    previous: str | None = None
    i = 0
    while i < len(nodes):
        node = nodes[i]
        if previous is not None and node.input[0] != previous:
            raise OnnxGraphError(f"Node {node.name!r} ({node.op_type}) does not take the previous node's "
                                 f"output: the graph is not a chain.")
        if node.op_type in TERMINAL_OPS:
            return Chain(nn.Sequential(*layers), node.op_type)
        if tuple(n.op_type for n in nodes[i:i + len(LAYER_NORM_OPS)]) == LAYER_NORM_OPS:
            layers.append(_layer_norm(nodes[i:i + len(LAYER_NORM_OPS)], values))
            i += len(LAYER_NORM_OPS)
        else:
            layers.append(_single(node, values))
            i += 1
        previous = nodes[i - 1].output[0]
    return Chain(nn.Sequential(*layers), None)
