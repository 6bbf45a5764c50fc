"""Model names -> Classifiers, and the checkpoint format.

A checkpoint is a plain dict ``{"arch": str, "config": dict, "state_dict": dict}`` saved with
``torch.save`` and always read with ``torch.load(weights_only=True)``; a file that needs pickle is
refused unless the caller passes ``trust_checkpoint=True`` (``--trust-checkpoint``).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .ast import SmallAST
from .base import Classifier
from .cnn import LogMelCNN
from .zoo import ZOO

BUNDLED_DIR = Path(__file__).parent / "bundled"

ARCHITECTURES: dict[str, Callable[..., Classifier]] = {
    "logmel-cnn": LogMelCNN,
    "small-ast": SmallAST,
    **ZOO,  # the thesis architectures (untrained; give --weights)
}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    arch: str
    description: str
    checkpoint: str | None  # file name in models/bundled/, or None when weights must be given

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
}
DEFAULT_MODEL = "cnn"


class ModelError(ValueError):
    """A model name, checkpoint or weights file that cannot be used; the message says the fix."""


def unknown_model_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(MODELS), n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (f"Unknown model {name!r}.{hint} Known models: {', '.join(MODELS)} "
            f"(run `robustaudio models` to list them).")


def save_checkpoint(path: str | Path, arch: str, config: dict, model: torch.nn.Module) -> None:
    """Write a weights-only-loadable checkpoint (tensors and plain Python values only)."""
    torch.save({"arch": arch, "config": config, "state_dict": model.state_dict()}, path)


def load_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> dict:
    """Read a checkpoint dict; pickled objects are refused unless ``trust_checkpoint``."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Checkpoint {str(path)!r} does not exist: check the --weights path.")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError ...
        if not trust_checkpoint and "weights_only" in str(error):
            raise ModelError(
                f"Checkpoint {str(path)!r} holds pickled Python objects, which can run arbitrary code "
                f"when loaded. Re-save it as a state dict, or pass --trust-checkpoint if you trust "
                f"its source.") from error
        raise ModelError(f"Checkpoint {str(path)!r} could not be read ({type(error).__name__}: "
                         f"{error}). Is it a torch checkpoint, and complete?") from error


def build_from_checkpoint(checkpoint: dict, source: str = "checkpoint") -> Classifier:
    if not isinstance(checkpoint, dict) or not {"arch", "config", "state_dict"} <= set(checkpoint):
        raise ModelError(f"{source} is not a robustaudio checkpoint (a dict with 'arch', 'config' and "
                         f"'state_dict'); save it with robustaudio.models.save_checkpoint.")
    arch = checkpoint["arch"]
    if arch not in ARCHITECTURES:
        raise ModelError(f"{source} names architecture {arch!r}, unknown here; known: "
                         f"{', '.join(ARCHITECTURES)}.")
    model = ARCHITECTURES[arch](**checkpoint["config"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise ModelError(f"{source} does not fit architecture {arch!r}: {error}") from error
    return model


def load_model(name: str, weights: str | Path | None = None, device: str | torch.device = "cpu",
               trust_checkpoint: bool = False) -> Classifier:
    """A Classifier in eval mode on ``device``.

    Args:
        name: a registered name (``robustaudio models`` lists them).
        weights: a checkpoint file replacing the bundled weights.
        trust_checkpoint: allow pickled checkpoints (only for files from a trusted source).
    """
    if name not in MODELS:
        raise ModelError(unknown_model_message(name))
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
