"""microWakeWord detectors (``pymicro-wakeword``) as black-box robustaudio Classifiers: scores only, query-counted.

``pymicro-wakeword`` 2.5.0 (Apache-2.0; ``pip install pymicro-wakeword==2.5.0``) ships Kevin
Ahrendt's microWakeWord models (``alexa``, ``hey_jarvis``, ``hey_mycroft``, ``okay_nabu``) as
int8 TFLite files with the TFLite C library, and the TFLite-Micro audio front end
(``pymicro-features``): the detector that runs on ESPHome voice devices. It is independent of
openWakeWord (other features, other network, other training data) and not differentiable, so it
is the natural *black-box* and *transfer* target: attack ``openwakeword:alexa`` with gradients,
then play the result to ``microwakeword:alexa``.

**Scoring a clip** exactly as the package streams audio: each clip (float samples in [-1, 1],
16 kHz) is converted to int16 (``round(x * 32768)``, clipped), followed by ``pad_after`` seconds
of silence so that a word at the very end is heard out, and fed to a fresh front end and a fresh
interpreter (the network keeps streaming state, so every clip starts from a reset: the scores of
a clip never depend on the clips scored before it). The front end gives 40 features every 10 ms;
the network runs every 3 feature frames (30 ms) and the detector's probability is the mean of
its last ``sliding_window_size`` (5) outputs, as ``MicroWakeWord.process_streaming_prob``
computes it. The clip's probability ``p`` is the highest such mean: the device fires when
``p > probability_cutoff`` (0.9 for alexa, 0.97 for hey_jarvis, from the model's JSON).

**Label convention** (as ``openwakeword:NAME``): single-label ``("not-<name>", "<name>")`` with
logits ``[-z/2, z/2]``, ``z = logit(p) - logit(cutoff)`` (``p`` clipped to [1e-6, 1 - 1e-6]), so
``predict`` fires exactly when the device would, and an untargeted attack on clips labelled
``<name>`` is the "deactivate" goal. :meth:`MicroWakeWord.probabilities` gives ``p`` itself.

**Black box.** Forward only: asking for an input gradient raises
:class:`~robustaudio.models.base.GradientUnavailableError` (name the ``--attack square``
alternative), and there are no internal stages (``features`` is the identity). ``queries``
counts every clip scored since construction (or :meth:`MicroWakeWord.reset_queries`); wrap the
model in :class:`~robustaudio.attacks.counting.QueryCounter` for per-clip counts in an attack.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import ModelError, WholeModel, refuse_gradients

SAMPLE_RATE = 16000
INT16_SCALE = 32768.0
PROBABILITY_CLIP = 1e-6
INSTALL_HINT = "pip install pymicro-wakeword==2.5.0 (or pip install 'robustaudio[microwakeword]')"


def check_tflite(config_path: Path) -> None:
    """Refuse, in one line, a config whose TFLite file is missing or not a TFLite flatbuffer (its bytes 4-8 say
    ``TFL3``): the TFLite runtime given a foreign file crashes the process (a segfault, not an exception)."""
    try:
        config = json.loads(Path(config_path).read_text())
        model = Path(config_path).parent / str(config["model"])
        with open(model, "rb") as handle:
            header = handle.read(8)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelError(f"microWakeWord config {str(config_path)!r} names no readable model file "
                         f"({error}).") from error
    if header[4:8] != b"TFL3":
        raise ModelError(f"{model} is not a TFLite model (no TFL3 identifier): give the .tflite file the config was "
                         f"written for.")


def cutoff_logits(p: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``[..., 2]`` logits ``[-z/2, z/2]``, ``z = logit(p) - logit(cutoff)``, for probabilities ``p`` (clipped to
    [1e-6, 1 - 1e-6]): the label convention of every microWakeWord wrapper (fires exactly when ``p > cutoff``)."""
    p = p.clamp(PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    z = torch.log(p) - torch.log1p(-p) - math.log(cutoff / (1 - cutoff))
    return torch.stack([-z / 2, z / 2], dim=-1)


def models_dir() -> Path:
    """``pymicro_wakeword/models`` of the installed wheel (found without importing the package)."""
    spec = importlib.util.find_spec("pymicro_wakeword")
    folder = Path(spec.origin).parent / "models" if spec and spec.origin else None
    if folder is None or not folder.is_dir():
        raise ModelError(f"microWakeWord's models ship in the pymicro-wakeword wheel, which is not installed: "
                         f"{INSTALL_HINT}.")
    return folder


def available_models() -> dict[str, Path]:
    """The wheel's model configs by name (alexa, hey_jarvis, hey_mycroft, okay_nabu)."""
    return {path.stem: path for path in sorted(models_dir().glob("*.json"))
            if (path.parent / json.loads(path.read_text()).get("model", "")).is_file()}


class MicroWakeWord(WholeModel):
    """One microWakeWord detector, run by the package's TFLite interpreter (see the module docstring).

    Input ``[B, T]`` float32 waveforms in [-1, 1] at 16 kHz; output logits ``[B, 2]``
    (``("not-<name>", "<name>")``), no gradients.

    Args:
        config: the model's JSON file in the wheel (``models/alexa.json``).
        pad_after: seconds of silence streamed after each clip.
        clip_seconds: the clip length data loaders crop or pad to.
    """

    stage_hint = ("microWakeWord runs whole in TFLite: attack the waveform with a black-box attack "
                  "(--attack square) or transfer perturbations made on another model")

    def __init__(self, config: str | Path, pad_after: float = 1.0, clip_seconds: float = 2.0):
        super().__init__()
        if pad_after < 0 or not clip_seconds > 0:
            raise ModelError(f"pad_after must be >= 0 and clip_seconds > 0, got {pad_after}, {clip_seconds}.")
        self.config_path = Path(config)
        self._open()
        self.name = self.config_path.stem
        self.wake_word = self.detector.wake_word
        self.cutoff = float(self.detector.probability_cutoff)
        self.labels = (f"not-{self.name}", self.name)
        self.sample_rate = SAMPLE_RATE
        self.multilabel = False
        self.clip_seconds = float(clip_seconds)
        self.pad_after = int(round(pad_after * SAMPLE_RATE))
        self.queries = 0

    def describe_source(self) -> str:
        return f"microwakeword:{self.name}"

    def reset_queries(self) -> None:
        self.queries = 0

    def step_probabilities(self, clip: np.ndarray) -> np.ndarray:
        """The detector's probability every 30 ms ``[S]`` for one clip ``[T]`` (float in [-1, 1]).

        The package answers every 10 ms feature frame, with a 0.0 filler on the frames where the network
        does not run (it runs every ``stride`` = 3 frames); only the network's steps are kept. Steps
        before the first full sliding window are 0, as the package returns them.
        """
        pcm = np.clip(np.round(np.asarray(clip, dtype=np.float64) * INT16_SCALE), -32768, 32767).astype(np.int16)
        pcm = np.concatenate([pcm, np.zeros(self.pad_after, dtype=np.int16)])
        self.detector.reset()
        self.front_end.reset()
        steps = [self.detector.process_streaming_prob(features)
                 for features in self.front_end.process_streaming(pcm.tobytes())]
        self.queries += 1
        stride = int(self.detector.stride)
        return np.array(steps[stride - 1::stride], dtype=np.float64)

    def probabilities(self, audio: torch.Tensor) -> torch.Tensor:
        """The clip probability ``p`` ``[B]``: the highest sliding-window mean over the clip (and its padding)."""
        refuse_gradients(audio, self.describe_source())
        if audio.dim() != 2:
            raise ModelError(f"{self.describe_source()} takes audio [B, T], got shape {tuple(audio.shape)}.")
        clips = audio.detach().cpu().numpy()
        return torch.tensor([float(self.step_probabilities(clip).max(initial=0.0)) for clip in clips],
                            dtype=torch.float32, device=audio.device)

    def step_logits(self, audio: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, S, 2]`` of every 30 ms step (the label convention of :meth:`forward`, from each step's
        sliding-window probability; clips of one batch have one length, so one ``S``). The clip's logits are
        those of its highest step: what a streaming caller of the package sees, step by step."""
        refuse_gradients(audio, self.describe_source())
        if audio.dim() != 2:
            raise ModelError(f"{self.describe_source()} takes audio [B, T], got shape {tuple(audio.shape)}.")
        steps = torch.tensor(np.stack([self.step_probabilities(clip) for clip in audio.detach().cpu().numpy()]))
        return self._logits(steps).to(audio.device)

    def forward(self, audio: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        if video is not None:
            raise ModelError(f"{self.describe_source()} takes audio only.")
        return self._logits(self.probabilities(audio))

    def _logits(self, p: torch.Tensor) -> torch.Tensor:
        return cutoff_logits(p.double(), self.cutoff).float()

    def forward_features(self, features: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward(features, video)

    def _open(self) -> None:
        """Load the TFLite interpreter and the front end (C objects: rebuilt, not copied, when pickled)."""
        try:
            from pymicro_wakeword import MicroWakeWord as Detector
            from pymicro_wakeword import MicroWakeWordFeatures
        except ImportError as error:
            raise ModelError(f"microWakeWord needs pymicro-wakeword and pymicro-features ({error}): "
                             f"{INSTALL_HINT}.") from error
        check_tflite(self.config_path)
        self.detector = Detector.from_config(self.config_path)
        self.front_end = MicroWakeWordFeatures()

    def __getstate__(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key not in ("detector", "front_end")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()


def model_config(name: str, prefix: str, options: dict) -> Path:
    """The JSON config for ``PREFIX:NAME`` (a model of the wheel, or a path to a ``.json``), after checking
    ``options`` (``pad_after``, ``clip_seconds``; ``sample_rate``, removed from them, must be 16000)."""
    rate = options.pop("sample_rate", SAMPLE_RATE)
    if rate != SAMPLE_RATE:
        raise ModelError(f"microWakeWord runs at {SAMPLE_RATE} Hz only, not {rate}: leave sample_rate unset "
                         f"(robustaudio resamples clips to the model's rate when it reads them).")
    unknown = set(options) - {"pad_after", "clip_seconds"}
    if unknown:
        raise ModelError(f"{prefix}: takes pad_after and clip_seconds, not {', '.join(sorted(unknown))}.")
    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        return path
    models = available_models()
    if name not in models:
        raise ModelError(f"No microWakeWord model {name!r}; the installed pymicro-wakeword has: "
                         f"{', '.join(models)}. A custom model can be given as {prefix}:/path/to/model.json.")
    return models[name]


def load_microwakeword(name: str, **options: Any) -> MicroWakeWord:
    """``microwakeword:NAME`` (a model of the wheel, e.g. ``alexa``) or ``microwakeword:/path/model.json``.

    Options: ``pad_after``, ``clip_seconds``; ``sample_rate`` must be 16000 (the models' rate).
    """
    return MicroWakeWord(model_config(name, "microwakeword", options), **options)
