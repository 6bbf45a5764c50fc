"""Sidecar JSON files and model specs: labels, sample rate, clip length (and, for a zoo architecture's
plain state dict, its constructor keys) given next to a weights file, checked against what the model
itself declares."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from torch import nn

from .base import Classifier, ModelError

SPEC_KEYS = {"sample_rate": int, "labels": list, "multilabel": bool, "clip_seconds": float}
DEFAULT_SPEC = {"sample_rate": 16000, "multilabel": False, "clip_seconds": 1.0}



def sidecar_path(path: Path) -> Path | None:
    """``FILE.json`` or, failing that, ``FILE`` with its suffix replaced by ``.json``; None if neither exists."""
    for candidate in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if candidate.is_file() and candidate != path:
            return candidate
    return None


def _sidecar_object(sidecar: Path) -> dict:
    try:
        spec = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"Sidecar {sidecar} is not valid JSON ({error}); it should look like "
                         f'{{"sample_rate": 16000, "labels": ["yes", "no"], "multilabel": false}}.') from error
    if not isinstance(spec, dict):
        raise ModelError(f"Sidecar {sidecar} must hold a JSON object with keys {', '.join(SPEC_KEYS)}.")
    return spec


def read_sidecar(path: Path) -> dict:
    """The sidecar's settings for model file ``path`` ({} if there is none), checked for known keys and types."""
    sidecar = sidecar_path(path)
    if sidecar is None:
        return {}
    return check_spec(_sidecar_object(sidecar), f"Sidecar {sidecar}")


def refuse_rate_conflict(path: Path, sidecar: dict, declared: int | None, what: str) -> None:
    """A one-line :class:`ModelError` if the sidecar of ``path`` gives a sample rate other than the
    ``declared`` one of the model (``what`` names where that comes from): audio is resampled to the
    model's rate, so a wrong one would feed it wrongly resampled audio without a word."""
    given = sidecar.get("sample_rate")
    if given is not None and declared is not None and int(given) != int(declared):
        raise ModelError(f"Sidecar {sidecar_path(path)} says sample_rate {given} but {what} runs at {declared} Hz: "
                         f"fix or remove sample_rate in the sidecar (audio is resampled to the model's rate).")


def check_spec(spec: dict, source: str) -> dict:
    """Coerce and check spec values (``labels`` a list of strings, ``sample_rate`` > 0, ...)."""
    unknown = set(spec) - set(SPEC_KEYS)
    if unknown:
        raise ModelError(f"{source} has unknown key(s) {sorted(unknown)}; known: {', '.join(SPEC_KEYS)}.")
    checked: dict[str, Any] = {}
    for key, value in spec.items():
        if value is None:
            continue
        kind = SPEC_KEYS[key]
        if kind is list:
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ModelError(f"{source}: labels must be a list of names, got {value!r}.")
            checked[key] = tuple(value)
        elif kind is bool:
            if not isinstance(value, bool):
                raise ModelError(f"{source}: multilabel must be true or false, got {value!r}.")
            checked[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ModelError(f"{source}: {key} must be a positive number, got {value!r}.")
            checked[key] = kind(value)
    return checked


def resolve_spec(*sources: dict) -> dict:
    """Merge spec dicts, earlier sources winning; missing keys take :data:`DEFAULT_SPEC` (labels stay unset)."""
    spec = dict(DEFAULT_SPEC)
    for source in reversed(sources):
        spec.update({key: value for key, value in source.items() if value is not None})
    return spec


def module_spec(module: nn.Module) -> dict:
    """Spec values a module declares as attributes (``labels``, ``sample_rate``, ...)."""
    found = {key: getattr(module, key) for key in SPEC_KEYS
             if isinstance(getattr(module, key, None), (int, float, bool, list, tuple))}
    if "labels" in found:
        found["labels"] = list(found["labels"])
    try:
        return check_spec(found, type(module).__name__)
    except ModelError:
        return {}  # attributes that merely share a name: ignore them


# -- a Classifier around an opaque waveform -> logits module ------------------------------------


def constructor_keys(architecture: Callable) -> set[str]:
    """The keyword arguments an architecture's constructor takes by name, following ``**config`` to the
    base classes it passes on to."""
    keys: set[str] = set()
    for cls in (architecture.__mro__ if isinstance(architecture, type) else (architecture,)):
        init = cast(Any, cls).__init__ if isinstance(cls, type) else cls
        if init is object.__init__ or init is nn.Module.__init__:
            break
        parameters = inspect.signature(init).parameters.values()
        keys |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return keys


def with_weights_sidecar(weights: str | Path, arch: str, architecture: Callable, config: dict,
                         build: Callable[[dict], Classifier]) -> Classifier:
    """``build(config)`` for a bare state dict of a zoo architecture, completed by the weights' sidecar.

    The sidecar (``FILE.json`` or ``FILE`` with ``.json`` for its suffix, as for ``torchscript:``) holds
    the spec keys (``labels``, ``sample_rate``, ``multilabel``, ``clip_seconds``) and any constructor
    argument of the architecture (``n_mels``, ``pooling``, ...). What the constructor takes goes to it
    (``config``, from ``load_model`` arguments, wins); spec keys it does not take are set on the model,
    except ``sample_rate``, which must then equal the architecture's own (else a one-line
    :class:`ModelError`: the audio would be resampled to a rate the model does not run at).
    """
    path = Path(weights)
    sidecar = sidecar_path(path)
    if sidecar is None:
        return build(config)
    values = _sidecar_object(sidecar)
    accepted = constructor_keys(architecture)
    unknown = sorted(set(values) - set(SPEC_KEYS) - accepted)
    if unknown:
        raise ModelError(f"Sidecar {sidecar} has unknown key(s) {unknown}; for architecture {arch!r} it takes "
                         f"{', '.join(SPEC_KEYS)} and its config keys: {', '.join(sorted(accepted - set(SPEC_KEYS)))}.")
    spec = check_spec({k: v for k, v in values.items() if k in SPEC_KEYS}, f"Sidecar {sidecar}")
    given = {k: (list(spec[k]) if k == "labels" else spec.get(k, v)) for k, v in values.items() if k in accepted}
    model = build({**given, **config})
    for key, value in spec.items():
        if key in accepted or key in config:
            continue
        if key == "sample_rate":
            refuse_rate_conflict(path, spec, model.sample_rate, f"architecture {arch!r}")
        else:
            setattr(model, key, value)
    return model
