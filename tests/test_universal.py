"""Universal perturbation: reaches the analytic optimum of a linear model; projections; CLI run."""

import json

import pytest
import torch
from click.testing import CliRunner
from conftest import LinearClassifier

from robustaudio.attacks import ThreatModel, lp_norm, project_universal, universal_perturbation
from robustaudio.cli import main
from robustaudio.report import read_records


def one_class_linear(n=64, dim=100, seed=0):
    """All clips class 0 with margin w·x + b > 0: the best universal L∞ δ is -ε·sign(w)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, generator=g)
    model = LinearClassifier(torch.stack([w, torch.zeros(dim)]), torch.tensor([0.0, 0.0]))
    audio = torch.rand(n, dim, generator=g) * 0.2 - 0.1
    audio = audio * torch.sign(audio @ w).unsqueeze(1)  # w·x > 0 for every clip: class 0
    return model, audio, torch.zeros(n, dtype=torch.long), w


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_universal_perturbation_finds_the_optimal_direction(norm):
    model, audio, labels, w = one_class_linear()
    learn, held_out = (audio[:32], labels[:32]), (audio[32:], labels[32:])
    margins = held_out[0] @ w
    eps = float(margins.median() / (w.norm(p=1) if norm == "linf" else w.norm()))
    threat = ThreatModel(norm, eps=eps)
    result = universal_perturbation(model, [learn], threat, epochs=30, rel_step_size=0.1)
    assert float(lp_norm(result.delta[None].double(), norm)) <= eps  # exactly
    optimum = -eps * (torch.sign(w) if norm == "linf" else w / w.norm())
    fooled = (((held_out[0] + result.delta) @ w) < 0).float().mean()
    best = (((held_out[0] + optimum) @ w) < 0).float().mean()
    assert abs(float(fooled - best)) <= 1 / 32  # the median margin: about half the held-out clips
    assert result.history[-1]["fooling_rate"] >= result.history[0]["fooling_rate"]


def test_per_frame_projection_rescales_each_frame_when_the_clip_exceeds_eps():
    threat = ThreatModel("l2", eps=1.0, domain="feature", bounds=None)
    delta = torch.randn(8, 20) * 3
    projected = project_universal(delta, threat, 1.0, "per-frame")
    assert torch.allclose(projected.norm(dim=0), torch.ones(20), atol=1e-5)
    small = torch.randn(8, 20) * 1e-3
    assert torch.equal(project_universal(small, threat, 1.0, "per-frame"), small)
    wave = project_universal(torch.randn(1000) * 3, ThreatModel("l2", eps=0.5), 0.5, "per-frame", frame_length=100)
    assert torch.allclose(wave.view(10, 100).norm(dim=1), torch.full((10,), 0.5), atol=1e-5)
    ball = project_universal(delta, threat, 1.0, "ball")
    assert float(ball.norm()) == pytest.approx(1.0, rel=1e-5)


def test_universal_needs_an_absolute_budget():
    model, audio, labels, _ = one_class_linear()
    with pytest.raises(ValueError, match="absolute budget"):
        universal_perturbation(model, [(audio, labels)], ThreatModel("l2", snr_db=30))


def test_cli_learns_on_train_evaluates_on_test_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["attack", "--universal", "--eps", "0.01", "--epochs", "2", "--limit", "8", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    (condition,) = card["conditions"]
    assert condition["attack"] == "universal" and card["clips"] == 8
    assert (out / "universal-linf-waveform-eps=0.01.wav").is_file()
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings["universal_from"].endswith("minievents") and settings["universal_clips"] == 205
    delta = torch.load(out / "universal.pt", weights_only=True)["linf-waveform-eps=0.01"]
    assert float(delta.abs().max()) <= 0.01 * (1 + 1e-6) and float(delta.abs().max()) > 0
    before = read_records(out).drop(columns="seconds")
    (out / "records.jsonl").write_text("")  # lose the records, keep the learned δ: not relearned
    assert CliRunner().invoke(main, args).exit_code == 0
    assert read_records(out).drop(columns="seconds").equals(before)
