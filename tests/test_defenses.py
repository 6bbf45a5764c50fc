"""Training defenses: mixup plans, latent mixup on an audio-visual toy, adversarial training on a synthetic task."""

import json
from dataclasses import asdict

import pytest
import torch
from click.testing import CliRunner
from conftest import AudioVisualLinear, LinearClassifier

from robustaudio.attacks import ThreatModel, pgd
from robustaudio.cli import main
from robustaudio.data import AudioDataset
from robustaudio.defenses import training
from robustaudio.defenses.mixup import class_weights, draw_plan
from robustaudio.defenses.training import Split, TrainingError, TrainSettings, fit, recipe_for
from robustaudio.models import load_model
from robustaudio.studies.defenses import bundled_defended, defense_settings


def test_mixup_targets_sum_to_one_and_mix_inputs_with_the_same_lambda_and_partner():
    labels = torch.tensor([0, 1, 2, 2, 1, 0, 3, 3])
    plan = draw_plan(labels, 4, alpha=0.4, generator=torch.Generator().manual_seed(0))
    assert 0.0 <= plan.lam <= 1.0 and sorted(plan.partner.tolist()) == list(range(8))  # a permutation
    assert torch.allclose(plan.targets.sum(dim=1), torch.ones(8))
    one_hot = torch.eye(4)[labels]
    assert torch.allclose(plan.targets, plan.lam * one_hot + (1 - plan.lam) * one_hot[plan.partner])
    x = torch.randn(8, 5)
    assert torch.allclose(plan.apply(x), plan.lam * x + (1 - plan.lam) * x[plan.partner])
    mixed = plan.apply({"audio": x, "video": 2 * x})
    assert torch.allclose(mixed["video"], 2 * mixed["audio"])
    multilabel = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0]]).float()
    plan = draw_plan(multilabel, 3, alpha=0.2, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(plan.targets, plan.lam * multilabel + (1 - plan.lam) * multilabel[plan.partner])
    with pytest.raises(ValueError, match="alpha must be > 0"):
        draw_plan(labels, 4, alpha=0.0, generator=torch.Generator())


def test_weighted_mixup_draws_partners_from_weak_classes_more_often():
    metrics = {"convexity": {"per_class": {"a": 1.0, "b": 0.2}}, "density": {"per_class": {"a": 2.0, "b": 0.5}}}
    weights = class_weights(metrics, ["a", "b"], by="convexity", floor=0.1)
    assert weights[1] > 10 * weights[0]  # need 0 vs 0.8: only the floor keeps class a in play
    both = class_weights(metrics, ["a", "b"], by="both")
    assert both[1] > both[0]
    labels = torch.tensor([0] * 50 + [1] * 50)
    plan = draw_plan(labels, 2, 0.2, torch.Generator().manual_seed(0), class_weights=weights)
    assert (labels[plan.partner] == 1).float().mean() > 0.85
    assert torch.allclose(plan.targets.sum(dim=1), torch.ones(100))


def toy_audio_visual(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    audio, video = torch.randn(n, 8, generator=g) * 0.2, torch.randn(n, 4, generator=g)
    labels = ((audio[:, 0] / 0.2 + video[:, 0]) > 0).long()
    model = AudioVisualLinear(torch.randn(2, 8, generator=g) * 0.01, torch.randn(2, 4, generator=g) * 0.01)
    return model, Split(audio, labels, video)


def test_mixup_is_drawn_once_per_batch_and_latent_mixup_mixes_every_modality(monkeypatch):
    torch.manual_seed(0)
    model, data = toy_audio_visual()
    plans, seen = [], []
    real_draw, real_head, real_embeddings = training.draw_plan, model.head, model.embeddings

    def spy_draw(*args, **kwargs):
        plans.append(real_draw(*args, **kwargs))
        return plans[-1]

    def spy_embeddings(features, video=None):
        out = real_embeddings(features, video)
        seen.append({"embeddings": {k: v.detach().clone() for k, v in out.items()}})
        return out

    def spy_head(embeddings):
        seen[-1]["head_input"] = {k: v.detach().clone() for k, v in embeddings.items()}
        return real_head(embeddings)

    monkeypatch.setattr(training, "draw_plan", spy_draw)
    monkeypatch.setattr(model, "embeddings", spy_embeddings)
    monkeypatch.setattr(model, "head", spy_head)
    settings = TrainSettings(method="mixup", mixup_space="latent", mixup_alpha=0.4, epochs=3, batch_size=32,
                             lr=0.05, augment=False)
    fit(model, data, settings)
    assert len(plans) == 3 * 3  # 96 clips / 32 per batch, 3 epochs: one plan per batch
    assert len({round(p.lam, 6) for p in plans}) == len(plans)
    for plan, call in zip(plans, seen):
        for modality in ("audio", "video"):
            assert torch.allclose(call["head_input"][modality], plan.apply(call["embeddings"][modality]), atol=1e-6)


def test_latent_mixup_trains_an_audio_visual_model_with_video_in_each_batch():
    torch.manual_seed(0)
    model, data = toy_audio_visual()
    fit(model, data, TrainSettings(method="mixup", mixup_space="latent", epochs=30, batch_size=16, lr=0.05,
                                   augment=False, label_smoothing=0.0))
    accuracy = float(training.correct(model, data).mean())
    assert accuracy > 0.9
    assert model.V.weight.abs().max() > 0.1  # the video head learned: video went through the loop


def robust_feature_task(n, seed):
    """Tsipras et al. (2019)-style data: x_0 = ±0.5 agrees with the label 95% of the time (robust at ε = 0.1);
    50 weak features ±0.05 + N(0, 0.1²) are together near-perfectly predictive but each flips at ε = 0.1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    sign = (2 * y - 1).float()
    robust = sign * 0.5 * torch.where(torch.rand(n, generator=g) < 0.95, 1.0, -1.0)
    weak = sign[:, None] * 0.05 + 0.1 * torch.randn(n, 50, generator=g)
    return torch.cat([robust[:, None], weak], dim=1), y


def robust_accuracy(model, x, y, eps):
    result = pgd(model, x, y, ThreatModel("linf", eps=eps), steps=20, generator=torch.Generator().manual_seed(0))
    return float((model.predict(result.logits) == y).float().mean())


def test_adversarial_training_raises_robust_accuracy_on_a_synthetic_task():
    x, y = robust_feature_task(512, seed=0)
    x_test, y_test = robust_feature_task(512, seed=1)
    results = {}
    for method in ("plain", "adversarial"):
        torch.manual_seed(0)
        model = LinearClassifier(torch.zeros(2, 51), torch.zeros(2))
        settings = TrainSettings(method=method, epochs=15, batch_size=64, lr=0.05, augment=False, label_smoothing=0.0,
                                 adv_eps=0.1, adv_steps=5)
        fit(model, Split(x, y), settings)
        with torch.no_grad():
            clean = float((model(x_test).argmax(-1) == y_test).float().mean())
        results[method] = (clean, robust_accuracy(model, x_test, y_test, 0.1))
    assert results["plain"][0] > 0.97 and results["plain"][1] < 0.3  # accurate but not robust
    assert results["adversarial"][1] > 0.85  # relies on the robust feature
    assert results["adversarial"][1] > results["plain"][1] + 0.5


def test_noise_training_adds_gaussian_noise_in_the_chosen_domain(monkeypatch):
    model, data = toy_audio_visual(32)
    inputs = []
    real = model.forward_features

    def spy(features, video=None):
        inputs.append(features.detach().clone())
        return real(features, video)

    monkeypatch.setattr(model, "forward_features", spy)
    fit(model, data, TrainSettings(method="noise", noise_sigma=0.5, noise_domain="feature", epochs=1, batch_size=32,
                                   augment=False))
    residual = inputs[0] - data.audio[torch.randperm(32, generator=torch.Generator().manual_seed(0))]
    assert residual.std() == pytest.approx(0.5, rel=0.15)


@pytest.mark.parametrize("settings, message", [
    (TrainSettings(method="magic"), "Unknown training method"),
    (TrainSettings(method="mixup", mixup_alpha=0.0), "mixup alpha must be > 0"),
    (TrainSettings(method="noise", noise_sigma=0.0), "noise sigma must be > 0"),
    (TrainSettings(method="adversarial", adv_eps=1.5), "half the input range"),
    (TrainSettings(method="mixup", mixup_space="pixels"), "Unknown mixup space"),
])
def test_bad_training_settings_name_the_problem(settings, message):
    with pytest.raises(Exception, match=message):
        settings.check()


def test_train_command_writes_a_checkpoint_and_card_and_refuses_bad_input(tmp_path, write_dataset):
    root = write_dataset(labels=("bird", "dog"), per_label=4)
    rows = ["path,label,split"] + [f"{label}/{label}{i}.wav,{label},{'train' if i < 3 else 'test'}"
                                   for label in ("bird", "dog") for i in range(4)]
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "mixup.pt"
    result = CliRunner().invoke(main, ["train", "--model", "cnn", "--method", "mixup", "--epochs", "2", "--data",
                                       str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["method"] == "mixup" and card["settings"]["mixup_alpha"] == 0.2 and card["seed"] == 0
    assert card["train_clips"] == 6 and card["test_clips"] == 2 and 0 <= card["test_accuracy"] <= 1
    assert card["training_seconds"] > 0 and card["labels"] == ["bird", "dog"]
    from robustaudio.models import load_model
    assert load_model("logmel-cnn", weights=out).labels == ("bird", "dog")
    result = CliRunner().invoke(main, ["train", "--model", "cnnn", "--data", str(root), "--out", str(out)])
    assert result.exit_code != 0 and "Unknown model 'cnnn'" in result.output and "Did you mean" in result.output
    (root / "metadata.csv").unlink()  # label folders only: no split to test on
    result = CliRunner().invoke(main, ["train", "--model", "cnn", "--data", str(root), "--out", str(out)])
    assert result.exit_code != 0 and "split" in result.output
    with pytest.raises(TrainingError, match="Unknown architecture"):
        training.train_classifier("nope", {}, None, TrainSettings())


@pytest.mark.parametrize("defense", ["mixup", "mixup-latent", "adversarial"])
def test_bundled_defended_checkpoints_reproduce_their_cards(defense):
    """`robustaudio defend` reuses these instead of retraining, so they must be what their cards say."""
    path = bundled_defended("cnn", defense)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["defense"] == defense
    _, _, base = recipe_for("cnn")
    assert card["settings"] == asdict(defense_settings(defense, base, ThreatModel("linf", eps=0.002)))
    model = load_model("cnn", weights=str(path))
    correct = []
    with torch.no_grad():
        for batch in AudioDataset.from_path(None, split="test").batches(model, 64):
            correct.append(model(batch.audio).argmax(-1) == batch.labels)
    assert float(torch.cat(correct).float().mean()) == pytest.approx(card["test_accuracy"], abs=1e-6)
