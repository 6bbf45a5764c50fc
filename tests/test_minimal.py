"""Minimal ε: the search lands within 5% of the known minimal budget of a linear model."""

import pytest
import torch
from conftest import binary_linear

from robustaudio.attacks import ThreatModel, lp_norm
from robustaudio.attacks.minimal import minimal_eps


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_minimal_eps_is_within_5_percent_of_the_true_one(norm):
    model, audio, labels, minimal = binary_linear()
    # a start far from the answer: the bracket has to grow by several factors of 4
    start = {"linf": 1e-5, "l2": 1e-4, "l1": 1e-3}[norm]
    result = minimal_eps(model, audio, labels, ThreatModel(norm, eps=start), steps=20,
                         generator=torch.Generator().manual_seed(0))
    assert result.success.all()
    ratio = result.found_norm / minimal[norm]
    assert torch.all(ratio >= 1 - 1e-3), "nothing below the true minimum can fool a linear model"
    assert torch.all(ratio <= 1.05), ratio
    realised = lp_norm(result.adversarial - result.clean, norm)
    assert torch.allclose(realised, result.found_norm, rtol=1e-4)
    assert torch.all(result.lower <= minimal[norm] * 1.01)  # PGD failed only below it (or within 1%)


def test_clean_errors_cost_nothing_and_unbreakable_clips_are_inf():
    model, audio, labels, _ = binary_linear()
    wrong = 1 - labels
    result = minimal_eps(model, audio, wrong, ThreatModel("linf", eps=1e-3), steps=5)
    assert torch.all(result.found_norm == 0) and torch.all(result.backwards == 0)
    constant = binary_linear()[0]
    with torch.no_grad():
        constant.linear.weight.zero_()
        constant.linear.bias.copy_(torch.tensor([1.0, 0.0]))  # always class 0, whatever the input
    zeros = torch.zeros(len(audio), dtype=torch.long)
    result = minimal_eps(constant, audio, zeros, ThreatModel("linf", eps=1e-3), steps=3, search_steps=2)
    assert not result.success.any() and torch.isinf(result.found_norm).all()
