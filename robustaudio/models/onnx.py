"""An ONNX file as a robustaudio :class:`~robustaudio.models.base.Classifier`, run by onnxruntime.

Forward only: what a black-box attacker sees (gradient attacks raise
:class:`~robustaudio.models.base.GradientUnavailableError` naming the black-box alternative).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .base import ModelError, WholeModel, refuse_gradients


def _onnxruntime_errors() -> tuple[type[BaseException], ...]:
    """The exceptions onnxruntime raises for files it cannot load (they derive from Exception only)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NotImplemented",
             "RuntimeException", "NoModel", "EPFail")
    return tuple(getattr(state, name) for name in names if hasattr(state, name)) + (RuntimeError, ValueError)


def _parse_labels(text: str) -> tuple[str, ...]:
    """Labels from ONNX metadata: a JSON list or comma-separated names."""
    try:
        parsed = json.loads(text)
        if isinstance(parsed, list):
            return tuple(str(label) for label in parsed)
    except json.JSONDecodeError:
        pass
    return tuple(label.strip() for label in text.split(",") if label.strip())


class OnnxClassifier(WholeModel):
    """A robustaudio :class:`Classifier` around an ONNX file, run by onnxruntime on the CPU.

    Input: waveform ``[B, T]`` float32 in [-1, 1] at ``sample_rate`` Hz; output: logits ``[B, K]``.
    Forward only: there are no gradients (gradient attacks raise :class:`GradientUnavailableError`
    and name the black-box alternative), and the internal stages are not exposed, so
    ``features`` is the identity on the waveform and ``embeddings``/``head`` raise (feature-domain
    attacks and latent metrics need a torch model).

    Settings not given by the caller are read from the file's ``metadata_props``, keys ``labels``
    (JSON list or comma-separated), ``sample_rate``, ``multilabel`` (true/false), ``clip_seconds``;
    labels otherwise default to ``class0..``, sized by the model's output, and ``clip_seconds`` to
    the input's fixed length if it has one.

    Args:
        path: the ``.onnx`` file.
        providers: onnxruntime execution providers (default CPU).
    """

    def __init__(self, path: str | Path, *, labels: list[str] | tuple[str, ...] | None = None,
                 sample_rate: int | None = None, multilabel: bool | None = None,
                 clip_seconds: float | None = None, providers: list[str] | None = None):
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"ONNX model file {self.path} does not exist: check the path, or export a torch "
                             f"model with torch.onnx.export(model, example_audio, '{self.path}').")
        try:
            import onnxruntime
        except ImportError as error:
            raise ModelError(f"Loading {self.path} needs onnxruntime: pip install onnxruntime.") from error
        try:
            self.session = onnxruntime.InferenceSession(str(self.path),
                                                        providers=providers or ["CPUExecutionProvider"])
        except _onnxruntime_errors() as error:
            raise ModelError(f"ONNX model file {self.path} could not be loaded ({type(error).__name__}: "
                             f"{str(error).strip()[:300]}). Is it an .onnx file? Re-export it with "
                             f"torch.onnx.export, and check it with onnx.checker.check_model.") from error
        metadata = self.session.get_modelmeta().custom_metadata_map
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.fixed_batch = model_input.shape[0] if isinstance(model_input.shape[0], int) else None
        self.fixed_length = (model_input.shape[-1] if len(model_input.shape) >= 2
                             and isinstance(model_input.shape[-1], int) else None)

        self.sample_rate = int(sample_rate if sample_rate is not None else metadata.get("sample_rate", 16000))
        self.multilabel = bool(multilabel if multilabel is not None
                               else metadata.get("multilabel", "false").strip().lower() in ("1", "true", "yes"))
        if clip_seconds is None:
            clip_seconds = (float(metadata["clip_seconds"]) if "clip_seconds" in metadata
                            else self.fixed_length / self.sample_rate if self.fixed_length else 1.0)
        self.clip_seconds = float(clip_seconds)
        if labels is None and "labels" in metadata:
            labels = _parse_labels(metadata["labels"])
        if labels is None:
            classes = self.session.get_outputs()[0].shape[-1]
            if not isinstance(classes, int):
                with torch.no_grad():
                    classes = self.forward(torch.zeros(1, self.clip_samples)).shape[-1]
            labels = [f"class{k}" for k in range(classes)]
        self.labels = tuple(labels)

    def _run(self, audio: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: audio})[0]

    def forward(self, audio: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        refuse_gradients(audio, f"OnnxClassifier({self.path.name})")
        if video is not None:
            raise ModelError(f"{self.path}: OnnxClassifier takes audio only.")
        if self.fixed_length is not None and audio.shape[-1] != self.fixed_length:
            raise ModelError(f"{self.path} expects clips of {self.fixed_length} samples, got {audio.shape[-1]}: "
                             f"crop or pad the audio to {self.clip_seconds:g} s.")
        batch = audio.detach().cpu().numpy().astype(np.float32, copy=False)
        if self.fixed_batch is None or self.fixed_batch == batch.shape[0]:
            logits = self._run(batch)
        elif self.fixed_batch == 1:  # exported with a fixed batch of one: run clip by clip
            logits = np.concatenate([self._run(batch[i:i + 1]) for i in range(batch.shape[0])])
        else:
            raise ModelError(f"{self.path} was exported with a fixed batch of {self.fixed_batch}, got "
                             f"{batch.shape[0]}: re-export with dynamic_axes={{'{self.input_name}': {{0: 'batch'}}}}.")
        return torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)).to(audio.device)

    stage_hint = ("only forward(audio) is available: attack the waveform domain, or load the torch model "
                  "for feature-domain attacks and latent metrics")

    def describe_source(self) -> str:
        return f"OnnxClassifier({self.path.name})"

    def forward_features(self, features: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward(features, video)
