"""Local Hugging Face audio classifiers (``hf:DIR``) behind the :class:`Classifier` interface.

``DIR`` holds what ``save_pretrained`` writes for a model and its feature extractor (``config.json``,
weights, ``preprocessor_config.json``). transformers is imported lazily (``pip install transformers``);
nothing is downloaded and the folder's code is never run: every transformers call passes
``trust_remote_code=False``, a folder whose ``config.json`` or ``preprocessor_config.json`` has an
``auto_map`` (custom code) is refused, and ``.bin`` weights are read with ``weights_only=True``
unless ``trust_checkpoint`` (``--trust-checkpoint``). The feature extractor, which works in numpy
outside the graph, is replaced by an equivalent torch front end so that gradients reach the waveform:

- ``ASTFeatureExtractor``: Kaldi fbank (torchaudio, 25 ms Hanning frames, 10 ms shift, no dither)
  with the extractor's ``num_mel_bins``; normalised ``(x - mean) / (2 std)`` when ``do_normalize``;
  cropped or padded to ``max_length`` FRAMES (padding with a raw 0, as the extractor pads before
  normalising, whatever its ``padding_value``), so a clip shorter than ``max_length`` frames is
  padded in the feature domain exactly where transformers pads it.
- ``Wav2Vec2FeatureExtractor`` (wav2vec2, HuBERT, WavLM ...): per-clip zero mean, unit variance
  ``(x - mean) / sqrt(var + 1e-7)`` over the whole clip when ``do_normalize``, as the extractor
  does for one clip or a batch of equal-length clips (no padding, so no attention mask is needed).

Measured against ``feature_extractor(...)`` then ``model(...)``: ``max |Δlogit|`` below 1e-6 for clips
shorter than, as long as and longer than ``max_length`` (tests/test_faithful.py).

**The clip length.** Both front ends take waveforms of any length, and transformers' output depends
on the clip's own length: zero samples appended to the waveform are not what the extractor pads (for
AST, silent frames of log 1.2e-7 instead of frame padding; for wav2vec2, zeros in the mean and
variance), and an attack would spend its budget on a stretch the deployed model never hears. So,
unless ``clip_seconds`` is given (argument or sidecar), the model is marked
``clip_seconds_from_data`` and :func:`robustaudio.data.audio.fit_clip_to_data` sets ``clip_seconds``
to the data's longest clip, capped at ``max_clip_seconds`` (AST: what ``max_length`` frames cover,
10.255 s for 1024, beyond which transformers drops the frames; wav2vec2: no cap). Until then
``clip_seconds`` is that cap for AST and 1 s for wav2vec2.

Stages: ``features`` is the front end's output; ``embeddings`` runs the model and returns the input of
its ``classifier`` module (AST: the mean of the [CLS] and distillation tokens; wav2vec2: the pooled
projection), captured with a forward pre-hook; ``head`` is ``classifier``. Labels come from
``config.id2label``; ``multilabel`` is True when ``config.problem_type`` is
``"multi_label_classification"`` or the model has a single logit, else False (transformers'
audio-classification pipeline then applies a softmax too). ``labels``, ``multilabel`` and
``clip_seconds`` can be overridden by ``load_model`` arguments or a sidecar ``DIR.json`` (e.g.
``{"multilabel": true}`` for an AudioSet AST saved without ``problem_type``).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from .base import Classifier, ModelError
from .frontends import KaldiFbank

if TYPE_CHECKING:
    from transformers.feature_extraction_utils import FeatureExtractionMixin

FBANK_SHIFT_S = 0.010   # Kaldi fbank as the AST extractor calls it: 25 ms frames every 10 ms
FBANK_LENGTH_S = 0.025
VARIANCE_FLOOR = 1e-7   # transformers' zero_mean_unit_var_norm
DEFAULT_CLIP_SECONDS = 1.0  # wav2vec2 until the data says otherwise


class FixedFrames(nn.Module):
    """Crop or pad ``[B, F, frames]`` to ``frames`` along the last axis, padding with ``value``."""

    def __init__(self, frames: int, value: float):
        super().__init__()
        self.frames = frames
        self.value = value

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        missing = self.frames - features.shape[-1]
        return features[..., : self.frames] if missing <= 0 else F.pad(features, (0, missing), value=self.value)


class ZeroMeanUnitVariance(nn.Module):
    """Per-clip ``(x - mean) / sqrt(var + 1e-7)`` (population variance): ``[B, T]`` -> ``[B, 1, T]``."""

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        mean = audio.mean(dim=-1, keepdim=True)
        variance = audio.var(dim=-1, unbiased=False, keepdim=True)
        return ((audio - mean) / torch.sqrt(variance + VARIANCE_FLOOR)).unsqueeze(1)


class HuggingFaceClassifier(Classifier):
    """A transformers ``*ForAudioClassification`` model with a torch front end (see the module docstring).

    Args:
        model: the transformers model (eval mode); must have a ``classifier`` submodule.
        front_end: waveform ``[B, T]`` -> features ``[B, F, frames]``.
        model_input: features -> the model's ``input_values`` (AST: fixed frames, ``[B, frames, F]``).
    """

    def __init__(self, model: nn.Module, front_end: nn.Module, model_input: nn.Module, labels: tuple[str, ...],
                 sample_rate: int, multilabel: bool, clip_seconds: float, *, clip_seconds_from_data: bool = False,
                 max_clip_seconds: float | None = None):
        super().__init__()
        if not isinstance(getattr(model, "classifier", None), nn.Module):
            raise ModelError(f"{type(model).__name__} has no `classifier` module: only *ForAudioClassification "
                             f"and *ForSequenceClassification audio models are supported.")
        self.model = model
        self.front_end = front_end
        self.model_input = model_input
        self.labels = labels
        self.sample_rate = sample_rate
        self.multilabel = multilabel
        self.clip_seconds = clip_seconds
        self.clip_seconds_from_data = clip_seconds_from_data  # see the module docstring
        self.max_clip_seconds = max_clip_seconds

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        return self.front_end(audio)

    def embeddings(self, features: torch.Tensor, video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        captured: list[torch.Tensor] = []
        classifier = cast(nn.Module, self.model.classifier)
        hook = classifier.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
        try:
            self.model(input_values=self.model_input(features))
        finally:
            hook.remove()
        return {"audio": captured[0]}

    def head(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        return cast(nn.Module, self.model.classifier)(embeddings["audio"])


class ToASTInput(nn.Module):
    """``[B, F, frames]`` -> AST's ``input_values`` ``[B, max_length, F]``."""

    def __init__(self, frames: int, padding_value: float):
        super().__init__()
        self.fit = FixedFrames(frames, padding_value)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fit(features).transpose(1, 2)


class Squeeze(nn.Module):
    """``[B, 1, T]`` -> ``[B, T]``."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.squeeze(1)


def covered_seconds(frames: int) -> float:
    """The waveform length whose Kaldi fbank has exactly ``frames`` frames (25 ms + 10 ms per further frame)."""
    return (frames - 1) * FBANK_SHIFT_S + FBANK_LENGTH_S


def front_end_for(extractor: FeatureExtractionMixin) -> tuple[nn.Module, nn.Module, float | None]:
    """(front end, model input, the longest useful clip in seconds or None) equivalent to a transformers
    feature extractor."""
    from transformers import ASTFeatureExtractor, Wav2Vec2FeatureExtractor

    if isinstance(extractor, ASTFeatureExtractor):
        # transformers: fbank, ZeroPad2d / crop to max_length frames (a raw 0, not padding_value), then
        # (x - mean) / (2 std) over the padded frames too
        mean, scale = (extractor.mean, 2 * extractor.std) if extractor.do_normalize else (0.0, 1.0)
        front_end: nn.Module = KaldiFbank(sample_rate=extractor.sampling_rate, n_mels=extractor.num_mel_bins, mean=mean,
                                          std=scale, frame_shift_ms=1000 * FBANK_SHIFT_S,
                                          frame_length_ms=1000 * FBANK_LENGTH_S)
        return front_end, ToASTInput(extractor.max_length, (0.0 - mean) / scale), covered_seconds(extractor.max_length)
    if isinstance(extractor, Wav2Vec2FeatureExtractor):
        front_end = ZeroMeanUnitVariance() if extractor.do_normalize else nn.Unflatten(1, (1, -1))
        return front_end, Squeeze(), None
    raise ModelError(f"Feature extractor {type(extractor).__name__} is not supported yet: hf: handles "
                     f"ASTFeatureExtractor and Wav2Vec2FeatureExtractor (wav2vec2, HuBERT, WavLM).")


CODE_CONFIGS = ("config.json", "preprocessor_config.json")  # the files transformers reads an auto_map from


def refuse_custom_code(path: Path) -> None:
    """Raise :class:`ModelError` if the folder asks transformers to import its own code (``auto_map``)."""
    for name in CODE_CONFIGS:
        try:
            config = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # missing or unreadable: transformers says so when it loads
            continue
        if isinstance(config, dict) and config.get("auto_map"):
            raise ModelError(f"{str(path)!r} contains custom code (auto_map in {name}); robustaudio does not run a "
                             f"model folder's code. Wrap the model yourself and load it with python:FILE.py:FACTORY "
                             f"(which runs the code you name), or save it as a built-in transformers architecture.")


def _trusted_bin_weights(path: Path) -> dict | None:
    """The tensors of the folder's ``.bin`` weights, fully unpickled (``--trust-checkpoint``), when it
    has no safetensors; else None."""
    files = sorted(path.glob("pytorch_model*.bin"))
    if not files or any(path.glob("*.safetensors")):
        return None
    state_dict = {}
    for file in files:
        state_dict.update(torch.load(file, map_location="cpu", weights_only=False))
    return {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}


def _one_line(error: Exception, limit: int = 300) -> str:
    return " ".join(str(error).split())[:limit]


def load_huggingface(directory: str, labels: list[str] | tuple[str, ...] | None = None,
                     multilabel: bool | None = None, clip_seconds: float | None = None,
                     trust_checkpoint: bool = False, sample_rate: int | None = None,
                     **unknown: object) -> HuggingFaceClassifier:
    """``hf:DIR``: a saved transformers audio classifier and its feature extractor, read offline.

    ``labels`` / ``multilabel`` / ``clip_seconds`` override what the directory says (without
    ``clip_seconds`` the clip length follows the data, see the module docstring). ``sample_rate``
    may only repeat the feature extractor's ``sampling_rate``: another rate raises :class:`ModelError`
    (the model cannot run at it, and audio resampled to it would be wrong). ``trust_checkpoint`` lets
    ``.bin`` weights that hold pickled Python objects be unpickled (safetensors and tensor-only
    ``.bin`` files never need it); custom code is refused regardless.
    """
    if unknown:
        raise ModelError(f"hf: takes labels, multilabel, clip_seconds and sample_rate, not {', '.join(unknown)}.")
    path = Path(directory)
    if not (path / "config.json").is_file():
        raise ModelError(f"{str(path)!r} is not a Hugging Face model directory (no config.json): give the folder "
                         f"that model.save_pretrained() and feature_extractor.save_pretrained() wrote.")
    refuse_custom_code(path)
    try:
        from transformers import (
            MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING,
            AutoConfig,
            AutoFeatureExtractor,
            AutoModelForAudioClassification,
        )
    except ImportError as error:
        raise ModelError("hf: models need transformers: pip install transformers (or robustaudio[hf]).") from error
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the CLI's output
    offline: dict[str, Any] = dict(local_files_only=True, trust_remote_code=False)
    try:
        trusted = _trusted_bin_weights(path) if trust_checkpoint else None
        if trusted is None:
            model = AutoModelForAudioClassification.from_pretrained(str(path), **offline).eval()
        else:  # transformers refuses state_dict with a folder and reads .bin files weights-only
            config = AutoConfig.from_pretrained(str(path), **offline)
            model_class = cast(Any, MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING[type(config)])  # stubs: a tuple
            model = model_class.from_pretrained(None, config=config, state_dict=trusted).eval()
        extractor = AutoFeatureExtractor.from_pretrained(str(path), **offline)
    except pickle.UnpicklingError as error:  # weights_only refused what the .bin holds
        weights = ", ".join(sorted(p.name for p in path.glob("*.bin"))) or "its .bin weights"
        raise ModelError(f"{str(path)!r}: {weights} holds pickled Python objects, which can run code when "
                         f"loaded. Convert the weights to safetensors (model.save_pretrained(DIR) writes "
                         f"model.safetensors), or pass --trust-checkpoint if you trust their source.") from error
    except (OSError, ValueError, KeyError, RuntimeError, EOFError) as error:  # e.g. a truncated .bin
        raise ModelError(f"transformers could not load {str(path)!r} ({type(error).__name__}: "
                         f"{_one_line(error)}). It needs config.json, the weights and "
                         f"preprocessor_config.json of an audio-classification model.") from error
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    config = model.config
    if config.problem_type == "regression":
        raise ModelError(f"{str(path)!r} is a regression model; robustaudio attacks classifiers.")
    rate = int(extractor.sampling_rate)
    if sample_rate is not None and int(sample_rate) != rate:
        raise ModelError(f"sample_rate {sample_rate} given for {str(path)!r}, whose feature extractor runs at {rate} "
                         f"Hz: remove sample_rate or set it to {rate} (audio is resampled to the model's rate).")
    front_end, model_input, longest = front_end_for(extractor)
    id2label = {int(k): v for k, v in config.id2label.items()}
    found_labels = tuple(id2label[k] for k in sorted(id2label))
    if labels is not None and len(labels) != len(found_labels):
        raise ModelError(f"{len(labels)} labels given for a model with {len(found_labels)} outputs.")
    if multilabel is None:
        multilabel = config.problem_type == "multi_label_classification" or len(found_labels) == 1
    return HuggingFaceClassifier(model, front_end, model_input, tuple(labels or found_labels), rate, bool(multilabel),
                                 float(clip_seconds or longest or DEFAULT_CLIP_SECONDS),
                                 clip_seconds_from_data=clip_seconds is None, max_clip_seconds=longest).eval()
