import os

import numpy as np
import pytest
import soundfile
import torch
from hypothesis import settings
from torch import nn

from robustaudio.models import Classifier

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # foolbox imports GitPython

# Property tests draw the same examples on every run (CI must not pass or fail by chance); explore new ones
# locally with HYPOTHESIS_PROFILE=explore.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
# Every test runs at one thread, whichever modules were collected or in what order: the models here are tiny
# (a second thread only waits at barriers, badly so on a shared machine), and float results must not depend on
# the subset run (a Ray test once passed in the suite only because another module set this at import).
torch.set_num_threads(1)


class LinearClassifier(Classifier):
    """logits = x @ W.T + b on the raw waveform: minimal perturbations are known in closed form."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, labels=None):
        super().__init__()
        self.labels = tuple(labels or [f"c{k}" for k in range(weight.shape[0])])
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
        self.clip_seconds = weight.shape[1] / self.sample_rate

    def features(self, audio):
        return audio

    def embeddings(self, features, video=None):
        return {"audio": features.reshape(features.shape[0], -1)}

    def head(self, embeddings):
        return self.linear(embeddings["audio"])


def binary_linear(dim=100, seed=0):
    """Two classes, logit margin f(x) = w·x + b; minimal flips: |f|/||w||_2 (L2), |f|/||w||_1 (L∞),
    |f|/||w||_∞ (L1), as long as the box [-1, 1] does not bind."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, generator=g)
    model = LinearClassifier(torch.stack([w, torch.zeros(dim)]), torch.tensor([0.0, 0.0]))
    audio = torch.rand(16, dim, generator=g) * 0.2 - 0.1
    labels = (audio @ w < 0).long()  # class 0 when w·x > 0
    margin = (audio @ w).abs()
    dual = {"l2": w.norm(p=2), "linf": w.norm(p=1), "l1": w.abs().max()}
    return model, audio, labels, {norm: margin / d for norm, d in dual.items()}



class AudioVisualLinear(Classifier):
    """logits = A·audio + V·video; the embeddings are the raw inputs, one per modality, so each
    modality alone can move the decision. ``A`` ``[K, T]``, ``V`` ``[K, D]``."""

    modalities = ("audio", "video")

    def __init__(self, audio_weight: torch.Tensor, video_weight: torch.Tensor):
        super().__init__()
        self.labels = tuple(f"c{k}" for k in range(audio_weight.shape[0]))
        self.A = nn.Linear(audio_weight.shape[1], audio_weight.shape[0], bias=False)
        self.V = nn.Linear(video_weight.shape[1], video_weight.shape[0], bias=False)
        with torch.no_grad():
            self.A.weight.copy_(audio_weight)
            self.V.weight.copy_(video_weight)

    def features(self, audio):
        return audio

    def embeddings(self, features, video=None):
        return {"audio": features, "video": video}

    def head(self, embeddings):
        return self.A(embeddings["audio"]) + self.V(embeddings["video"])


@pytest.fixture
def two_threads():
    """Two threads for one heavy test whose assertions have tolerances (accuracies within 0.03, not bit equality):
    half its wall time on the 2-core CI machine. Always two, so its floats do not depend on the order either."""
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(1)


@pytest.fixture
def write_dataset(tmp_path):
    """Write a folder-of-labels dataset of tones; returns its root."""

    def write(labels=("bird", "dog"), per_label=2, sample_rate=16000, seconds=1.0, root=None):
        root = root or tmp_path / "data"
        rng = np.random.default_rng(0)
        t = np.arange(int(sample_rate * seconds)) / sample_rate
        for k, label in enumerate(labels):
            (root / label).mkdir(parents=True, exist_ok=True)
            for i in range(per_label):
                x = 0.3 * np.sin(2 * np.pi * (300 + 400 * k + 50 * i) * t) + 0.01 * rng.standard_normal(t.size)
                soundfile.write(root / label / f"{label}{i}.wav", x.astype(np.float32), sample_rate)
        return root

    return write


@pytest.fixture(scope="session")
def attack_run(tmp_path_factory):
    """One small PGD ε-curve run of the bundled cnn (10 clips, two budgets) whose report the report tests
    read (they only read it)."""
    from click.testing import CliRunner

    from robustaudio.cli import main

    out = tmp_path_factory.mktemp("attack-run") / "attack"
    result = CliRunner().invoke(main, ["attack", "--model", "cnn", "--attack", "pgd", "--steps", "3", "--norm", "linf",
                                       "--eps", "0.0005", "0.002", "--limit", "10", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out
