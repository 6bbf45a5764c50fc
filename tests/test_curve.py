"""The ε curve from one run against separate runs per budget, on the bundled default model."""

import pytest
import torch

from robustaudio.attacks import ThreatModel, pgd, pgd_curve
from robustaudio.data import AudioDataset
from robustaudio.models import load_model


@pytest.fixture(scope="module")
def clean_correct_clips():
    model = load_model("cnn")
    batch = next(AudioDataset.from_path(split="test").batches(model, 48))
    with torch.no_grad():
        correct = model(batch.audio).argmax(-1) == batch.labels
    return model, batch.audio[correct][:24], batch.labels[correct][:24]


@pytest.mark.parametrize("norm,budgets", [("linf", (0.0002, 0.0005, 0.001, 0.002)),
                                          pytest.param("l2", (0.02, 0.05, 0.1, 0.2), marks=pytest.mark.slow)])
def test_curve_matches_separate_runs_within_one_clip(clean_correct_clips, norm, budgets):
    model, audio, labels = clean_correct_clips
    threats = [ThreatModel(norm, eps=e) for e in budgets]
    curve = pgd_curve(model, audio, labels, threats, steps=10,
                      generator=torch.Generator().manual_seed(0))
    fooled_curve = [int(r.success.sum()) for r in curve]
    fooled_separate = [int(pgd(model, audio, labels, t, steps=10,
                               generator=torch.Generator().manual_seed(0)).success.sum())
                       for t in threats]
    assert fooled_curve == sorted(fooled_curve)  # monotone by construction
    # Never weaker than separate runs by more than one clip. It may be stronger: the warm start
    # from the larger budget's adversarial finds some that a random start does not.
    assert all(c >= s - 1 for c, s in zip(fooled_curve, fooled_separate)), (fooled_curve, fooled_separate)
    assert fooled_curve[-1] == fooled_separate[-1]  # the largest budget is a plain PGD run
    assert 0 < fooled_curve[-1] < len(audio)
    ulp = torch.finfo(torch.float32).eps * float(audio.abs().max())  # float32 rounding of clean + δ
    for threat, result in zip(threats, curve):
        slack = ulp * (1 if norm == "linf" else audio.shape[1] ** 0.5)
        assert (threat.norms(result.perturbation) <= threat.eps * (1 + 1e-5) + slack).all()
    # the work saved: clips that resisted the largest budget never took a backward pass again
    resisted = ~curve[-1].success
    for result in curve[:-1]:
        assert (result.backwards[resisted] == 0).all() and result.carried[resisted].all()


def test_curve_refuses_threat_models_of_different_norms(clean_correct_clips):
    model, audio, labels = clean_correct_clips
    with pytest.raises(ValueError, match="budget only"):
        pgd_curve(model, audio[:2], labels[:2], [ThreatModel("linf", eps=0.001), ThreatModel("l2", eps=0.1)])
