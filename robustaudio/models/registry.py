"""Model names -> Classifiers, and the checkpoint format.

A checkpoint is a plain dict ``{"arch": str, "config": dict, "state_dict": dict}`` saved with
``torch.save`` and always read with ``torch.load(weights_only=True)``; a file that needs pickle is
refused unless the caller passes ``trust_checkpoint=True`` (``--trust-checkpoint``).
"""

from __future__ import annotations

import difflib
import inspect
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from ..records import save_torch_atomic
from .ast import SmallAST
from .base import Classifier, ModelError
from .cnn import LogMelCNN
from .fusion import FUSION_MODELS
from .loaders import load_prefixed, split_prefix
from .sidecar import with_weights_sidecar
from .zoo import ZOO

BUNDLED_DIR = Path(__file__).parent / "bundled"

ARCHITECTURES: dict[str, Callable[..., Classifier]] = {
    "logmel-cnn": LogMelCNN,
    "small-ast": SmallAST,
    **ZOO,  # the thesis architectures (untrained; give --weights)
    **FUSION_MODELS,  # audio-visual fusions and baselines (models/fusion.py)
}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    arch: str
    description: str
    checkpoint: str | None  # file name in models/bundled/, or None when weights must be given
    data: str = "minievents"  # the bundled dataset it was trained on (the default --data)

    def card(self) -> dict:
        """The bundled model card (training settings, clean accuracy), or {} if none."""
        if self.checkpoint is None:
            return {}
        path = BUNDLED_DIR / Path(self.checkpoint).with_suffix(".json").name
        return json.loads(path.read_text()) if path.exists() else {}


MODELS: dict[str, ModelEntry] = {
    "cnn": ModelEntry("cnn", "logmel-cnn",
                      "log-mel CNN trained on the bundled minievents set (the default)",
                      "minievents-cnn.pt"),
    "ast": ModelEntry("ast", "small-ast",
                      "small AST (fbank patches, ViT) trained on the bundled minievents set",
                      "minievents-ast.pt"),
    "crnn-mini": ModelEntry("crnn-mini", "crnn",
                            "small CRNN/TALNet (thesis ch. 4, linear-softmax MIL pooling) trained on minievents",
                            "minievents-crnn-mini.pt"),
    "taltrans-mini": ModelEntry("taltrans-mini", "tal-trans",
                                "small CNN+Transformer (TAL-trans, thesis 6.3) trained on minievents",
                                "minievents-taltrans-mini.pt"),
    # Audio-visual fusion at four depths and the two baselines, trained on the bundled avmini set
    # (experiments/train_fusion.py); inputs: audio [B, T] and video [B, 4, 3, 32, 32].
    **{name: ModelEntry(name, arch, description, f"avmini-{name}.pt", data="avmini") for name, arch, description in (
        ("av-early", "fusion-early", "audio-visual, early fusion (video rows under the log-mel, one conv stack)"),
        ("av-mid", "fusion-mid", "audio-visual, mid fusion (per-segment conv features ⊕ frame embeddings)"),
        ("av-late", "fusion-late", "audio-visual, late fusion (linear W_a·h_A + W_v·h_V, attention pooling)"),
        ("av-superlate", "fusion-superlate", "audio-visual, super-late fusion (0.6·p_audio-only + 0.4·p_video-only)"),
        ("audio-only", "fusion-audio", "avmini baseline on audio alone (the av-* audio branch)"),
        ("video-only", "fusion-video", "avmini baseline on video alone (the av-* video branch)"),
    )},
}
DEFAULT_MODEL = "cnn"


def unknown_model_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(MODELS) + list(ARCHITECTURES), n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (f"Unknown model {name!r}.{hint} Known models: {', '.join(MODELS)}; architectures (with --weights): "
            f"{', '.join(ARCHITECTURES)}; or a prefix: hf:DIR, torchscript:FILE, onnx:FILE, "
            f"python:MODULE:FACTORY, openwakeword:NAME, microwakeword:NAME, yamnet[:POOLING], labelmap:MAP:MODEL, "
            f"image:NAME (run `robustaudio models` to list them).")


def save_checkpoint(path: str | Path, arch: str, config: dict, model: torch.nn.Module) -> None:
    """Write a weights-only-loadable checkpoint (tensors and plain Python values only)."""
    save_torch_atomic(path, {"arch": arch, "config": config, "state_dict": model.state_dict()})


def load_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> dict:
    """Read a checkpoint dict; pickled objects are refused unless ``trust_checkpoint``."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Checkpoint {str(path)!r} does not exist: check the --weights path.")
    try:
        with warnings.catch_warnings():  # torch's two-line notice on old pickle protocols: not the user's to fix here
            warnings.filterwarnings("ignore", message=r".*pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError ...
        if not trust_checkpoint and "weights_only" in str(error):
            raise ModelError(
                f"Checkpoint {str(path)!r} holds pickled Python objects, which can run arbitrary code "
                f"when loaded. Re-save it as a state dict, or pass --trust-checkpoint if you trust "
                f"its source.") from error
        raise ModelError(f"Checkpoint {str(path)!r} could not be read ({type(error).__name__}: "
                         f"{error}). Is it a torch checkpoint, and complete?") from error


def _one_line(error: Exception, limit: int) -> str:
    """An error's message on one line (torch's load_state_dict errors span several)."""
    return " ".join(str(error).split())[:limit]


def construct(arch: str, config: object, source: str, *, bare: bool = False) -> Classifier:
    """``ARCHITECTURES[arch](**config)``, or a one-line :class:`ModelError` saying which keys the
    architecture takes when ``config`` is not a dict, has keys it does not know, or lacks one it needs
    (``bare``: the weights came as a bare state dict, which carries no config)."""
    if not isinstance(config, dict):
        raise ModelError(f"{source}: its 'config' is a {type(config).__name__}, not a dict of {arch!r} constructor "
                         f"arguments; re-save it with robustaudio.models.save_checkpoint(path, arch, config, model).")
    parameters = inspect.signature(ARCHITECTURES[arch]).parameters.values()
    accepted = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    required = [p.name for p in parameters if p.name in accepted and p.default is p.empty]
    keys = ", ".join(accepted)
    if not any(p.kind == p.VAR_KEYWORD for p in parameters):
        unknown = sorted(map(str, set(config) - set(accepted)))
        if unknown:
            raise ModelError(f"{source}: config key(s) {', '.join(map(repr, unknown))} unknown to architecture "
                             f"{arch!r}, which takes: {keys}.")
    missing = [name for name in required if name not in config]
    if missing and bare:
        raise ModelError(f"{source} is a bare state dict, which carries no config, and architecture {arch!r} needs "
                         f"{', '.join(missing)} (it takes: {keys}): save a robustaudio checkpoint with "
                         f"robustaudio.models.save_checkpoint(path, {arch!r}, {{'labels': [...]}}, model), or pass "
                         f"{', '.join(f'{name}=...' for name in missing)} to load_model.")
    if missing:
        raise ModelError(f"{source}: its config lacks {', '.join(missing)}, which architecture {arch!r} needs (it "
                         f"takes: {keys}); re-save it with robustaudio.models.save_checkpoint.")
    try:
        return ARCHITECTURES[arch](**config)
    except (TypeError, ValueError) as error:
        raise ModelError(f"{source}: its config does not fit architecture {arch!r} "
                         f"({_one_line(error, 300)}); it takes: {keys}.") from error


def build_from_checkpoint(checkpoint: dict, source: str = "checkpoint") -> Classifier:
    if not isinstance(checkpoint, dict) or not {"arch", "config", "state_dict"} <= set(checkpoint):
        raise ModelError(f"{source} is not a robustaudio checkpoint (a dict with 'arch', 'config' and "
                         f"'state_dict'); save it with robustaudio.models.save_checkpoint.")
    arch = checkpoint["arch"]
    if arch not in ARCHITECTURES:
        raise ModelError(f"{source} names architecture {arch!r}, unknown here; known: "
                         f"{', '.join(ARCHITECTURES)}.")
    model = construct(arch, checkpoint["config"], source)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise ModelError(f"{source} does not fit architecture {arch!r}: {_one_line(error, 600)}") from error
    return model


def checkpoint_state_dict(checkpoint: dict) -> dict:
    """The state dict in a published checkpoint: unwraps ``{"model": ...}`` (PANNs) or ``{"state_dict": ...}``
    and strips the ``module.`` prefix of ``nn.DataParallel`` saves (AST)."""
    for key in ("model", "state_dict"):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    prefix = "module."
    if checkpoint and all(isinstance(key, str) and key.startswith(prefix) for key in checkpoint):
        checkpoint = {key[len(prefix):]: value for key, value in checkpoint.items()}
    return checkpoint


def load_architecture(arch: str, weights: str | Path, trust_checkpoint: bool = False, **config: Any) -> Classifier:
    """A zoo architecture with weights from a robustaudio checkpoint or a published state dict.

    ``config`` (e.g. ``labels=[...]`` for a fine-tuned class count) goes to the constructor for
    published state dicts; a robustaudio checkpoint carries its own config.
    """
    source = f"Weights file {str(weights)!r}"
    checkpoint = load_checkpoint(weights, trust_checkpoint)
    if not isinstance(checkpoint, dict):
        raise ModelError(f"{source} holds a {type(checkpoint).__name__}, not a state dict or checkpoint dict.")
    if {"arch", "config", "state_dict"} <= set(checkpoint):
        model = build_from_checkpoint(checkpoint, source)
        if model.__class__ is not ARCHITECTURES[arch]:
            raise ModelError(f"{source} holds a {checkpoint['arch']!r} model, not {arch!r}.")
        return model
    state_dict = checkpoint_state_dict(checkpoint)
    if not state_dict or not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise ModelError(f"{source} is neither a robustaudio checkpoint nor a state dict of tensors "
                         f"(top-level keys: {', '.join(map(str, list(checkpoint)[:8]))}).")
    model = with_weights_sidecar(weights, arch, ARCHITECTURES[arch], config,  # + labels, rate, config in FILE.json
                                 lambda given: construct(arch, given, source, bare=True))
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise ModelError(f"{source} does not fit architecture {arch!r}: {_one_line(error, 600)} (a different class "
                         f"count needs labels=[...] with one name per class).") from error
    return model


def load_model(name: str, weights: str | Path | None = None, *, trust_checkpoint: bool = False,
               device: str | torch.device = "cpu", **options: Any) -> Classifier:
    """A Classifier in eval mode on ``device``.

    Args:
        name: a registered name (``robustaudio models`` lists them); a zoo architecture
            (``cnn14``, ``ast-base``, ...) with ``weights``; or a prefixed external model
            (``hf:DIR``, ``torchscript:FILE``, ``onnx:FILE``, ``python:MODULE:FACTORY``,
            ``openwakeword:NAME``; see :mod:`robustaudio.models.loaders`).
        weights: a checkpoint file replacing the bundled weights; for an architecture, a robustaudio
            checkpoint or the published layout (PANNs ``{"model": ...}``, AST with ``module.`` keys).
        trust_checkpoint: allow pickled checkpoints (only for files from a trusted source); for ``hf:DIR``,
            ``.bin`` weights that hold pickled objects (the folder's code is never run).
        options: for prefixed models, ``labels`` / ``sample_rate`` / ``multilabel`` / ``clip_seconds``
            (overriding a sidecar JSON) or loader settings; for an architecture, constructor config.
    """

    if split_prefix(name) is not None:
        if weights is not None:
            raise ModelError(f"--weights does not apply to {name!r}, which loads its own weights; use it with "
                             f"a model or architecture name.")
        # .bin weights that hold pickled objects, also behind a label map (labelmap:MAP:hf:DIR)
        if trust_checkpoint and cast("tuple[str, str]", split_prefix(name))[0] in ("hf", "labelmap"):
            options = {**options, "trust_checkpoint": True}
        return load_prefixed(name, **options).to(device).eval()
    if name not in MODELS:
        if name in ARCHITECTURES:
            if weights is None:
                raise ModelError(f"Architecture {name!r} has no bundled weights: pass --weights FILE (a "
                                 f"robustaudio checkpoint or the published state dict).")
            return load_architecture(name, weights, trust_checkpoint, **options).to(device).eval()
        raise ModelError(unknown_model_message(name))
    if options:
        raise ModelError(f"Model {name!r} takes no options ({', '.join(options)}).")
    entry = MODELS[name]
    if weights is not None:
        path, source = Path(weights), f"Weights file {str(weights)!r}"
    elif entry.checkpoint is not None:
        path, source = BUNDLED_DIR / entry.checkpoint, f"bundled checkpoint of {name!r}"
        if not path.is_file():
            raise ModelError(f"The {source} is missing ({path}); rebuild it with "
                             f"`python experiments/train_bundled.py` or pass --weights.")
    else:
        raise ModelError(f"Model {name!r} ships no weights: pass --weights FILE.")
    model = build_from_checkpoint(load_checkpoint(path, trust_checkpoint), source)
    if model.__class__ is not ARCHITECTURES[entry.arch]:
        raise ModelError(f"{source} holds a {model.__class__.__name__}, not the {entry.arch!r} of "
                         f"model {name!r}.")
    return model.to(device).eval()
