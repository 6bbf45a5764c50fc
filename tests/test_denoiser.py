"""Diffusion denoiser, purification wrapper, EOT, and the certify / train-denoiser / defend commands."""

import json
import math

import pytest
import torch
from click.testing import CliRunner

from robustaudio.attacks import ThreatModel
from robustaudio.cli import main
from robustaudio.data import AudioDataset
from robustaudio.defenses.denoiser import (
    BUNDLED_DENOISERS,
    Denoiser,
    DenoiserError,
    DenoiserSettings,
    front_end_signature,
    load_denoiser,
    train_denoiser,
    unet_config,
)
from robustaudio.defenses.purification import EOT, Purified
from robustaudio.defenses.smoothing import Smooth, SmoothingError
from robustaudio.models import LogMelCNN, load_model, save_checkpoint
from robustaudio.models.registry import BUNDLED_DIR
from robustaudio.report import build_report, read_records
from robustaudio.runner import AttackSpec, RunOptions, run_attack


def tiny_classifier(labels=("bird", "dog"), n_mels=16, sample_rate=16000, seed=0):
    torch.manual_seed(seed)
    return LogMelCNN(labels, sample_rate=sample_rate, n_mels=n_mels, channels=(4,), feature_mean=-6.0,
                     feature_std=5.0).eval()


def tiny_denoiser(model, domain="feature", sigma_max=1.0, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        shape = tuple(model.features(torch.zeros(1, model.clip_samples)).shape[1:]) if domain == "feature" \
            else (model.clip_samples,)
    return Denoiser(domain, shape, 1.0 if domain == "feature" else 0.1, front_end_signature(model, domain),
                    unet_config(domain, shape, (8, 8)), sigma_max=sigma_max, name="tiny").eval()


def test_timestep_is_the_first_step_whose_noise_ratio_reaches_sigma():
    denoiser = tiny_denoiser(tiny_classifier())
    denoiser.scale = 2.0
    ratios = denoiser.noise_ratios()
    previous = 0
    for sigma in (0.05, 0.25, 0.5, 1.0):
        t = denoiser.timestep(sigma)
        assert ratios[t] >= sigma / 2.0 > ratios[t - 1]
        assert t > previous
        previous = t
    with pytest.raises(DenoiserError, match="trained for σ ≤ 1"):
        denoiser.timestep(1.5)
    with pytest.raises(DenoiserError, match="sigma must be"):
        denoiser.timestep(0.0)


@pytest.mark.parametrize("domain", ["feature", "waveform"])
def test_one_shot_denoise_with_an_oracle_unet_returns_the_clean_input(domain):
    model = tiny_classifier()
    denoiser = tiny_denoiser(model, domain, sigma_max=0.5 if domain == "feature" else 0.05)
    sigma = 0.3 if domain == "feature" else 0.02
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(2, *denoiser.shape, generator=g) * denoiser.scale
    noisy = clean + sigma * torch.randn(clean.shape, generator=g)
    alphas = denoiser.scheduler.alphas_cumprod

    def oracle(z, t):  # the exact noise of z = √ᾱ·x/scale + √(1 − ᾱ)·ε
        return (z - alphas[t].sqrt() * denoiser._to_unet(clean)) / (1 - alphas[t]).sqrt()

    denoiser._epsilon = oracle
    denoised = denoiser.denoise(noisy, sigma)
    assert denoised.shape == clean.shape
    assert torch.allclose(denoised, clean, atol=1e-4 * float(clean.abs().max()))


def test_purified_classifier_is_differentiable_end_to_end_through_the_sampler():
    model = tiny_classifier()
    denoiser = tiny_denoiser(model)
    purified = Purified(model, denoiser, sigma=0.25, steps=2)
    calls = []
    denoiser.unet.register_forward_hook(lambda module, args, output: calls.append(1))
    audio = 0.1 * torch.randn(2, model.clip_samples, generator=torch.Generator().manual_seed(0))
    x = audio.clone().requires_grad_(True)

    def loss(inputs):
        torch.manual_seed(1)  # the same diffusion noise in every evaluation
        return torch.nn.functional.cross_entropy(purified(inputs), torch.tensor([0, 1]))

    value = loss(x)
    value.backward()
    assert len(calls) == 2  # two reverse steps, both in the graph
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in denoiser.unet.parameters() if p.dim() > 1)
    direction = x.grad / x.grad.norm()
    h = 1e-3
    with torch.no_grad():
        numeric = (loss(audio + h * direction) - loss(audio - h * direction)) / (2 * h)
    assert float(numeric) == pytest.approx(float(x.grad.norm()), rel=0.1)


def test_wrappers_and_frozen_leave_every_wrapped_module_in_eval_mode():
    """A metric that freezes a fresh wrapper must not switch the wrapped model's BatchNorm to training."""
    from robustaudio.models.base import frozen
    model = tiny_classifier()
    denoiser = tiny_denoiser(model)
    for wrapper in (Purified(model, denoiser), EOT(model, samples=2)):
        assert not any(module.training for module in wrapper.modules())
        with frozen(wrapper):
            pass
        assert not any(module.training for module in wrapper.modules())
    head_training = torch.nn.Sequential(model, torch.nn.Dropout()).train()
    model.eval()
    with frozen(head_training):
        assert not any(module.training for module in head_training.modules())
    assert head_training.training and head_training[1].training and not model.training


class NoisyLogits(LogMelCNN):
    """The tiny CNN with N(0, 1) noise on its logits: a random classifier with known draws."""

    def forward_features(self, features, video=None):
        logits = super().forward_features(features, video)
        return logits + torch.randn(logits.shape)


def test_eot_returns_the_log_of_the_mean_probability_over_draws():
    torch.manual_seed(0)
    model = NoisyLogits(("a", "b", "c"), n_mels=16, channels=(4,)).eval()
    audio = 0.1 * torch.randn(3, model.clip_samples)
    features = model.features(audio)
    eot = EOT(model, samples=5)
    with torch.no_grad():
        torch.manual_seed(7)
        out = eot(audio)
        torch.manual_seed(7)
        draws = model.forward_features(features.repeat_interleave(5, dim=0)).reshape(3, 5, 3)
    assert torch.allclose(out, torch.softmax(draws, -1).mean(1).log(), atol=1e-5)
    assert torch.allclose(torch.softmax(out, -1).sum(-1), torch.ones(3))
    with pytest.raises(NotImplementedError, match="no single embedding"):
        eot.embeddings(features)


def test_the_attack_runner_attacks_eot_over_a_purified_model(tmp_path, write_dataset):
    root = write_dataset(labels=("bird", "dog"), per_label=2)
    model = tiny_classifier()
    defended = EOT(Purified(model, tiny_denoiser(model), sigma=0.25, steps=2), samples=2)
    run_dir = run_attack(defended, "tiny-purified", AudioDataset.from_path(root), [ThreatModel("linf", eps=0.01)],
                         tmp_path / "run", AttackSpec("pgd", steps=2),
                         RunOptions(batch_size=4, sanity=False))
    records = read_records(run_dir)
    assert len(records) == 4 and records["condition"].unique().tolist() == ["pgd-linf-waveform-eps=0.01"]
    attacked = records[records["attacked"]]
    assert (attacked["backwards"] > 0).all()  # gradients came back through the purifier
    assert build_report(run_dir)["clips"] == 4


def test_denoisers_refuse_other_front_ends_sample_rates_domains_and_files(tmp_path):
    model = tiny_classifier()
    denoiser = tiny_denoiser(model)
    with pytest.raises(DenoiserError, match="n_mels: denoiser 16, model 32.*train-denoiser"):
        denoiser.check_compatible(tiny_classifier(n_mels=32))
    with pytest.raises(DenoiserError, match="sample_rate: denoiser 16000, model 8000"):
        denoiser.check_compatible(tiny_classifier(sample_rate=8000))
    with pytest.raises(SmoothingError, match="use --domain feature"):
        Smooth(model, 0.25, domain="waveform", denoiser=denoiser)
    with pytest.raises(DenoiserError, match="trained for σ ≤ 1"):
        Smooth(model, 2.0, denoiser=denoiser)
    classifier_file = tmp_path / "classifier.pt"
    save_checkpoint(classifier_file, "logmel-cnn", {"labels": ["a", "b"]}, model)
    with pytest.raises(DenoiserError, match="not a robustaudio denoiser checkpoint"):
        load_denoiser(classifier_file)
    with pytest.raises(DenoiserError, match="neither a file nor a bundled denoiser"):
        load_denoiser(tmp_path / "missing.pt")


def test_train_denoiser_writes_a_card_and_round_trips(tmp_path, write_dataset):
    root = write_dataset(labels=("bird", "dog"), per_label=3, seconds=0.5)
    rows = ["path,label,split"] + [f"{label}/{label}{i}.wav,{label},{'train' if i < 2 else 'test'}"
                                   for label in ("bird", "dog") for i in range(3)]
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    model = tiny_classifier()
    model.clip_seconds = 0.5
    settings = DenoiserSettings(epochs=3, batch_size=2, channels=(8, 8), sigma_max=0.5)
    denoiser, card = train_denoiser(model, AudioDataset.from_path(root), settings, model_name="tiny")
    assert card["train_clips"] == 4 and card["test_clips"] == 2 and card["t_max"] == denoiser.timestep(0.5)
    assert [row["sigma"] for row in card["test_denoising"]] == [0.125, 0.25, 0.5]
    assert all(math.isfinite(row["denoised_mse"]) for row in card["test_denoising"])
    path = tmp_path / "den.pt"
    denoiser.save(path, card)
    again = load_denoiser(path)
    x = torch.randn(2, *denoiser.shape)
    assert torch.equal(denoiser.denoise(x, 0.25, torch.Generator().manual_seed(0)),
                       again.denoise(x, 0.25, torch.Generator().manual_seed(0)))
    assert json.loads(path.with_suffix(".json").read_text())["checkpoint_bytes"] == path.stat().st_size


@pytest.mark.skipif(not (BUNDLED_DIR / BUNDLED_DENOISERS["minievents-logmel"]).is_file(),
                    reason="bundled denoiser not built")
def test_bundled_denoiser_fits_the_bundled_cnn_and_denoises():
    denoiser = load_denoiser("minievents-logmel")
    denoiser.check_compatible(load_model("cnn"))
    card = json.loads((BUNDLED_DIR / BUNDLED_DENOISERS["minievents-logmel"]).with_suffix(".json").read_text())
    assert card["checkpoint_bytes"] <= 5_000_000
    assert all(row["denoised_mse"] < 0.5 * row["noisy_mse"] for row in card["test_denoising"])


@pytest.fixture
def cnn_denoiser(tmp_path):
    """An untrained tiny denoiser that fits the bundled cnn's front end (pipelines only, not quality)."""
    cnn = load_model("cnn")
    torch.manual_seed(0)
    denoiser = Denoiser("feature", (64, 101), 1.0, front_end_signature(cnn, "feature"),
                        unet_config("feature", (64, 101), (8, 8)), name="tiny-cnn")
    path = tmp_path / "tiny-cnn.pt"
    denoiser.save(path, {"training_seconds": 1.0})
    return path


def test_certify_command_writes_rows_report_and_refuses_bad_settings(tmp_path, cnn_denoiser):
    out = tmp_path / "cert"
    args = ["certify", "--model", "cnn", "--denoiser", str(cnn_denoiser), "--sigma", "0.25", "--n0", "5", "--n",
            "20", "--limit", "2", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "sigma-0.25-denoised.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["denoiser"] == "tiny-cnn" and r["domain"] == "feature" for r in rows)
    document = json.loads((out / "defenses.json").read_text())
    assert document["certification"][0]["clips"] == 2 and (out / "figures" / "certified.png").is_file()
    for bad, message in [(["--sigma", "0"], "sigma must be a finite number > 0"),
                         (["--n0", "50"], "n0=50 selection samples exceed n=20"),
                         (["--domain", "waveform"], "use --domain feature")]:
        result = CliRunner().invoke(main, args[:-2] + bad + ["--out", str(tmp_path / "bad")])
        assert result.exit_code != 0 and message in result.output, result.output
    result = CliRunner().invoke(main, ["certify", "--model", "ast", "--denoiser", str(cnn_denoiser), "--sigma", "0.25"])
    assert result.exit_code != 0 and "front_end: denoiser 'LogMel', model 'KaldiFbank'" in result.output


def test_defend_command_writes_the_table_and_curves(tmp_path, cnn_denoiser):
    out = tmp_path / "defend"
    result = CliRunner().invoke(main, [
        "defend", "--defenses", "none", "--defenses", "purification", "--limit", "2", "--steps", "1", "--eot", "2",
        "--denoiser", str(cnn_denoiser), "--sigma", "0.25", "--n0", "4", "--n", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads((out / "defenses.json").read_text())
    assert [r["defense"] for r in document["rows"]] == ["none", "purification"]
    assert "EOT" in document["rows"][1]["attack"] and "adaptive" in document["rows"][1]["attack"]
    assert document["rows"][0]["training_seconds"] > 0 and document["rows"][1]["training_seconds"] == 1.0
    assert [c["name"] for c in document["certification"]] == ["sigma-0.25-plain", "sigma-0.25-denoised"]
    markdown = (out / "defenses.md").read_text()
    assert "Defenses at a fixed budget" in markdown and "Certified accuracy" in markdown


@pytest.mark.parametrize("damage", ["foreign class", "extra argument", "config a string", "empty weights"])
def test_a_crafted_or_damaged_denoiser_checkpoint_is_one_line_and_runs_nothing(tmp_path, damage):
    """A weights-only checkpoint chose any diffusers callable and its arguments (ModularPipeline fetched a hub repo
    named in the file); damaged configs reached tracebacks. Each is now a one-line DenoiserError."""
    checkpoint = torch.load(BUNDLED_DIR / BUNDLED_DENOISERS["minievents-logmel"], weights_only=True)
    unet = checkpoint["config"]["unet"]
    if damage == "foreign class":
        checkpoint["config"]["unet"] = {"class": "ModularPipeline",
                                        "pretrained_model_name_or_path": "attacker-org/attacker-repo"}
    elif damage == "extra argument":
        checkpoint["config"]["unet"] = {**unet, "cache_dir": "/tmp/elsewhere"}
    elif damage == "config a string":
        checkpoint["config"] = "not a mapping"
    else:
        checkpoint["state_dict"] = {}
    path = tmp_path / "crafted.pt"
    torch.save(checkpoint, path)
    with pytest.raises(DenoiserError) as info:
        load_denoiser(path)
    assert "\n" not in str(info.value) and "robustaudio" in str(info.value)
