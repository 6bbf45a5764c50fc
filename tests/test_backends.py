"""Foolbox and ART attacks through robustaudio: inside ε and [-1, 1], scored and counted by us."""

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from conftest import LinearClassifier
from hypothesis import HealthCheck, given, settings
from test_threat import assert_inside  # ε up to float32 rounding (relative 1e-5 + one ulp per sample); box exact

from robustaudio.attacks import ThreatModel, lp_norm
from robustaudio.attacks.backends import BackendError, backend_attack, foolbox_minimal_norms, to_art, to_foolbox
from robustaudio.attacks.square import square_attack

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

# Few steps and few queries: the properties checked do not depend on how strong the attack is.
CHEAP = {
    ("foolbox", "hsj"): dict(steps=2, initial_gradient_eval_steps=10, max_gradient_eval_steps=20),
    ("art", "hsj"): dict(steps=2, max_eval=20, init_eval=5, init_size=10),
}
EPS_ATTACKS = [("foolbox", "pgd"), ("foolbox", "fmn"), ("foolbox", "hsj"), ("art", "pgd"), ("art", "apgd"),
               ("art", "hsj"), ("native", "square")]


def linear_problem(seed: int, clips: int = 4, samples: int = 400, scale: float = 0.05):
    """A linear model on [clips, samples] clips in [-1, 1], labelled with its own predictions."""
    g = torch.Generator().manual_seed(seed)
    model = LinearClassifier(torch.randn(3, samples, generator=g) * scale, torch.zeros(3)).eval()
    audio = torch.rand(clips, samples, generator=g) * 2 - 1
    return model, audio, model(audio).argmax(1).detach(), g


def run(backend, attack, model, audio, labels, threat, generator, **kwargs):
    if backend == "native":
        return square_attack(model, audio, labels, threat, queries=30, generator=generator, **kwargs)
    options = dict(steps=3) | CHEAP.get((backend, attack), {}) | kwargs
    return backend_attack(model, audio, labels, threat, backend=backend, attack=attack, generator=generator,
                          **options)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(combo=st.sampled_from(EPS_ATTACKS), norm=st.sampled_from(["linf", "l2"]), budget=st.floats(1e-3, 0.3),
       near_edge=st.floats(0, 1e-3), seed=st.integers(0, 2**16))
def test_eps_and_bounds_are_never_exceeded(combo, norm, budget, near_edge, seed):
    backend, attack = combo
    model, audio, labels, g = linear_problem(seed, clips=3, samples=64, scale=0.3)
    audio[:, :8] = torch.sign(audio[:, :8]) * (1 - near_edge)  # samples at or next to ±1
    threat = ThreatModel(norm, eps=budget * {"linf": 1, "l2": 5}[norm])
    result = run(backend, attack, model, audio, labels, threat, g)
    assert_inside(threat, audio, result.adversarial, result.budget)
    # About half the samples are negative; a [0, 1] clamp anywhere would leave none.
    assert (result.adversarial < 0).float().mean() > 0.3
    assert torch.equal(result.success, model.predict(model(result.adversarial)) != labels)


def test_foolbox_hsj_keeps_the_negative_half_of_the_box():
    model, audio, labels, g = linear_problem(0)
    threat = ThreatModel("l2", eps=2.0)
    result = backend_attack(model, audio, labels, threat, backend="foolbox", attack="hsj", steps=3, generator=g,
                            initial_gradient_eval_steps=20, max_gradient_eval_steps=50)
    assert result.success.float().mean() >= 0.5
    assert result.adversarial.min() >= -1 and result.adversarial.max() <= 1
    assert result.adversarial.min() < -0.9  # near the bottom of the box, not clamped at 0
    same_sign = ((result.adversarial < 0) == (audio < 0)).float().mean()
    assert same_sign > 0.95, same_sign
    assert torch.all(lp_norm(result.adversarial.double() - audio.double(), "l2") <= 2.0)  # exactly


def test_deepfool_steps_are_not_scaled_by_the_box_width():
    """On a linear model a DeepFool step lands on the boundary: both libraries must give the
    closed-form minimal L2 distance times their 1.02 overshoot, a little more where the box clips a
    step (ART by itself would give 2x on [-1, 1])."""
    model, audio, labels, g = linear_problem(0, clips=6)
    weight, logits = model.linear.weight, model(audio).detach()
    exact = torch.stack([min((logits[i, labels[i]] - logits[i, k]) / (weight[labels[i]] - weight[k]).norm()
                             for k in range(3) if k != labels[i]) for i in range(6)]).detach()
    for backend in ("art", "foolbox"):
        result = backend_attack(model, audio, labels, ThreatModel("l2", eps=5.0), backend=backend,
                                attack="deepfool", steps=10, generator=g)
        assert result.success.all()
        ratio = lp_norm(result.perturbation, "l2") / exact
        assert torch.all((ratio >= 1.0) & (ratio <= 1.06)), (backend, ratio)


def test_fmn_minimal_norms_are_at_least_the_closed_form_and_inf_or_zero_when_due():
    model, audio, labels, g = linear_problem(0, clips=5)
    weight, logits = model.linear.weight, model(audio).detach()
    exact = torch.stack([min((logits[i, labels[i]] - logits[i, k]) / (weight[labels[i]] - weight[k]).norm(p=1)
                             for k in range(3) if k != labels[i]) for i in range(5)]).detach()
    labels = labels.clone()
    labels[0] = (labels[0] + 1) % 3  # wrong already: minimal norm 0
    norms = foolbox_minimal_norms(model, audio, labels, ThreatModel("linf", eps=0.01), steps=50, generator=g)
    assert norms[0] == 0
    assert torch.all(norms[1:] >= exact[1:] * (1 - 1e-4))
    assert torch.all(norms[1:] <= exact[1:] * 1.2)
    # Steps too small for FMN to find anything: inf, not a made-up norm.
    far = foolbox_minimal_norms(model, audio[1:], labels[1:], ThreatModel("linf", eps=0.01), steps=1,
                                generator=g, max_stepsize=1e-6)
    assert torch.all(torch.isinf(far))


def test_counts_are_the_passes_each_clip_took_part_in():
    model, audio, labels, g = linear_problem(0)
    labels = labels.clone()
    labels[0] = (labels[0] + 1) % 3  # fooled when clean: one scoring forward, nothing else
    result = backend_attack(model, audio, labels, ThreatModel("linf", eps=0.001), backend="foolbox",
                            attack="pgd", steps=4, generator=g)
    # foolbox PGD: one forward+backward per step; ours: one clean and one final forward.
    assert result.forwards.tolist() == [1, 6, 6, 6]
    assert result.backwards.tolist() == [0, 4, 4, 4]


def test_same_generator_same_result():
    model, audio, labels, _ = linear_problem(0)
    threat = ThreatModel("l2", eps=0.2)
    for backend in ("foolbox", "art"):
        a, b = (backend_attack(model, audio, labels, threat, backend=backend, attack="pgd", steps=3,
                               generator=torch.Generator().manual_seed(7)) for _ in range(2))
        assert torch.equal(a.adversarial, b.adversarial), backend


def test_per_clip_budgets_from_an_snr():
    model, audio, labels, g = linear_problem(0)
    audio = audio * torch.tensor([[0.1], [0.3], [0.5], [1.0]])
    threat = ThreatModel("l2", snr_db=20.0)
    for backend in ("foolbox", "art"):
        result = backend_attack(model, audio, labels, threat, backend=backend, attack="pgd", steps=3, generator=g)
        assert_inside(threat, audio, result.adversarial, result.budget)
        assert len(set(result.budget.tolist())) == 4


def test_multilabel_art_pgd_deactivates_and_foolbox_refuses():
    model, audio, _, g = linear_problem(0)
    model.multilabel = True
    labels = (model(audio) > 0).float().detach()
    threat = ThreatModel("linf", eps=0.1)
    result = backend_attack(model, audio, labels, threat, backend="art", attack="pgd", steps=10, generator=g)
    assert_inside(threat, audio, result.adversarial, result.budget)
    assert result.success.all()  # every true label switched off
    with pytest.raises(NotImplementedError, match="native pgd or square_attack"):
        backend_attack(model, audio, labels, threat, backend="foolbox", attack="pgd", steps=3)
    with pytest.raises(NotImplementedError, match="attack='pgd'"):
        backend_attack(model, audio, labels, threat, backend="art", attack="apgd", steps=3)


def test_feature_domain_without_bounds():
    model, audio, labels, g = linear_problem(0)
    threat = ThreatModel("l2", eps=0.5, domain="feature", bounds=None)
    for backend in ("foolbox", "art"):
        result = backend_attack(model, audio, labels, threat, backend=backend, attack="pgd", steps=3, generator=g)
        assert torch.all(lp_norm(result.adversarial.double() - result.clean.double(), "l2") <= 0.5)  # exactly
    with pytest.raises(BackendError, match="finite box"):
        backend_attack(model, audio, labels, threat, backend="art", attack="hsj", steps=3)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(backend="cleverhans", attack="pgd"), BackendError, "foolbox: pgd, fmn, deepfool, cw, hsj, boundary"),
    (dict(backend="foolbox", attack="apgd"), BackendError, "valid: pgd, fmn"),
    (dict(backend="art", attack="square"), BackendError, "native robustaudio.attacks.square.square_attack"),
    (dict(backend="foolbox", attack="cw"), BackendError, "serves the norms l2, not linf"),
    (dict(backend="art", attack="deepfool", targeted=True), BackendError, "untargeted only"),
])
def test_unknown_or_impossible_requests_say_what_is_valid(kwargs, error, message):
    model, audio, labels, _ = linear_problem(0)
    if kwargs["backend"] == "art" and kwargs["attack"] == "deepfool":
        threat = ThreatModel("l2", eps=0.1)
    else:
        threat = ThreatModel("linf", eps=0.01)
    with pytest.raises(error, match=message):
        backend_attack(model, audio, labels, threat, steps=3, **kwargs)


def test_adapters_compute_the_model():
    model, audio, _, _ = linear_problem(0)
    art_model = to_art(model)
    assert art_model.clip_values.tolist() == [-1.0, 1.0] and art_model.input_shape == (400,)
    assert np.allclose(art_model.predict(audio.numpy()), model(audio).detach().numpy(), atol=1e-6)
    fmodel = to_foolbox(model)
    assert tuple(fmodel.bounds) == (-1.0, 1.0)
    assert torch.allclose(fmodel(audio), model(audio))
    features = to_art(model, "feature")
    assert features.clip_values is None and features.input_shape == (400,)
    assert tuple(to_foolbox(model, "feature").bounds) == (-float("inf"), float("inf"))


@pytest.mark.parametrize("backend, attack, norm", [
    ("foolbox", "cw", "l2"), ("foolbox", "boundary", "l2"), ("foolbox", "deepfool", "linf"),
    ("foolbox", "fmn", "l1"), ("art", "pgd", "l1"),
    pytest.param("art", "cw", "linf", marks=pytest.mark.slow),  # 5-7 s each on 2 cores
    pytest.param("art", "cw", "l2", marks=pytest.mark.slow),
])
def test_remaining_attacks_run_inside_the_threat_model(backend, attack, norm):
    model, audio, labels, g = linear_problem(0)
    threat = ThreatModel(norm, eps={"linf": 0.05, "l2": 1.0, "l1": 10.0}[norm])
    result = backend_attack(model, audio, labels, threat, backend=backend, attack=attack, steps=20, generator=g)
    assert_inside(threat, audio, result.adversarial, result.budget)
    assert (result.adversarial < 0).float().mean() > 0.3


@pytest.mark.parametrize("backend, attack, norm, expected", [
    ("art", "apgd", "linf", {"max_iter": 100, "nb_random_init": 5, "eps_step/eps": 2.0}),  # AutoAttack's APGD
    ("art", "pgd", "l2", {"max_iter": 100, "num_random_init": 0}),
    ("art", "cw", "l2", {"binary_search_steps": 10, "max_iter": 10}),
    ("art", "deepfool", "l2", {"max_iter": 100, "epsilon": 0.02}),
    ("art", "hsj", "linf", {"max_iter": 50, "max_eval": 10000}),
    ("foolbox", "pgd", "linf", {"steps": 40, "random_start": True}),
    ("foolbox", "pgd", "l2", {"steps": 50, "rel_stepsize": 0.025}),
    ("foolbox", "fmn", "l2", {"steps": 100}),
    ("foolbox", "cw", "l2", {"binary_search_steps": 9, "steps": 10000, "abort_early": True}),
    ("foolbox", "deepfool", "linf", {"steps": 50, "overshoot": 0.02, "candidates": 10}),
    ("foolbox", "hsj", "l2", {"steps": 64}),
    ("foolbox", "boundary", "l2", {"steps": 25000}),
])
def test_without_steps_library_attacks_use_their_authors_settings(backend, attack, norm, expected):
    from robustaudio.attacks.backends import library_settings

    settings = library_settings(backend, attack, norm)
    assert settings == settings | expected, settings
    given = library_settings(backend, attack, norm, steps=7)
    assert given[{"art": "max_iter", "foolbox": "steps"}[backend]] == 7  # the user's steps are kept
    if (backend, attack) == ("art", "apgd"):
        assert given["nb_random_init"] == 1
    assert library_settings(backend, attack, norm, steps=7, gamma=0.3)["gamma"] == 0.3  # options win


def test_backend_attack_without_steps_runs_the_authors_iterations():
    model, audio, labels, g = linear_problem(0)
    threat = ThreatModel("linf", eps=1e-6)  # nothing is fooled: every iteration runs
    result = backend_attack(model, audio, labels, threat, backend="foolbox", attack="pgd", generator=g)
    assert result.backwards.tolist() == [40] * 4  # foolbox's LinfPGD: 40 steps
    result = backend_attack(model, audio, labels, threat, backend="art", attack="apgd", generator=g)
    assert result.backwards.min() >= 5 * 100  # ART's APGD: 5 random starts x 100 iterations
    result = backend_attack(model, audio, labels, threat, backend="art", attack="apgd", steps=3, generator=g)
    assert result.backwards.max() <= 2 * 3  # the user's steps, one start
    assert_inside(threat, audio, result.adversarial, result.budget)


def test_spec_leaves_library_steps_to_the_library():
    from robustaudio.runner.spec import DEFAULT_STEPS, AttackSpec

    assert AttackSpec("apgd", backend="art").steps is None  # backend_attack(steps=None): the authors' settings
    assert AttackSpec("apgd", backend="art", steps=12).steps == 12
    assert AttackSpec("pgd").steps == 10 and AttackSpec().steps == DEFAULT_STEPS["reliable"]
