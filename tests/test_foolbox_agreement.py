"""Native PGD agrees with foolbox's LinfPGD and L2PGD on the bundled model and clips."""

import pytest

from robustaudio.attacks import ThreatModel, is_correct, pgd
from robustaudio.data import AudioDataset
from robustaudio.models import load_model

STEPS = 10


@pytest.fixture(scope="module")
def setup():
    model = load_model("cnn")
    batch = next(AudioDataset.from_path(split="test").batches(model, 128))
    return model, batch.audio, batch.labels


@pytest.mark.parametrize("norm, eps", [("linf", 0.0005), ("l2", 0.05)])
def test_native_pgd_matches_foolbox(setup, norm, eps, two_threads):
    import foolbox as fb

    model, audio, labels = setup
    native = pgd(model, audio, labels, ThreatModel(norm, eps=eps), steps=STEPS, random_start=False)
    native_acc = float(is_correct(model, native.logits, labels).float().mean())

    attack = {"linf": fb.attacks.LinfPGD, "l2": fb.attacks.L2PGD}[norm](
        rel_stepsize=2.5 / STEPS, steps=STEPS, random_start=False)
    fmodel = fb.PyTorchModel(model.eval(), bounds=model.bounds)
    _, clipped, fooled = attack(fmodel, audio, labels, epsilons=eps)
    foolbox_acc = float((~fooled).float().mean())
    assert ThreatModel(norm, eps=eps).norms(clipped - audio).max() <= eps * (1 + 1e-5) + 1e-6

    clean_acc = float(is_correct(model, model(audio), labels).float().mean())
    assert native_acc < clean_acc - 0.1, "the budget must be large enough for the comparison to mean something"
    assert abs(native_acc - foolbox_acc) <= 0.03, (native_acc, foolbox_acc)
