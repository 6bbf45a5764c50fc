"""Audio-visual fusion: shapes and gradients per modality, the bundled avmini set and checkpoints,
modality-wise attacks through the runner, the comparison's fusion table, and the thesis theorem
(an audio attack inside the audio model's own radius flips a linearly fused model) exactly."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import AudioVisualLinear, LinearClassifier

from robustaudio.attacks import ThreatModel, minimal_eps
from robustaudio.data import AudioDataset
from robustaudio.data.av import load_frames, save_frames
from robustaudio.models import load_model
from robustaudio.models.fusion import FUSION_MODELS, SuperLateFusion
from robustaudio.models.registry import MODELS
from robustaudio.report import build_report, read_records
from robustaudio.runner import AttackSpec, JointThreat, RunOptions, RunSettingsError, run_attack
from robustaudio.studies.compare import FusionPlan, run_comparison

TINY = dict(clip_seconds=0.25, n_mels=16, frames=2, frame_size=16, audio_channels=(4, 8), video_channels=(4, 8),
            video_dim=8)
LABELS = ["a", "b", "c"]


def tiny(arch: str, seed: int = 0, **config):
    torch.manual_seed(seed)
    return FUSION_MODELS[arch](LABELS, **{**TINY, **config}).eval()


def inputs(batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4000, generator=g) * 0.1, torch.rand(batch, 2, 3, 16, 16, generator=g)


@pytest.mark.parametrize("arch", list(FUSION_MODELS))
def test_shapes_stages_and_gradients_per_modality(arch):
    model = tiny(arch)
    audio, video = inputs()
    audio.requires_grad_(True)
    video.requires_grad_(True)
    logits = model(audio, video)
    assert logits.shape == (3, 3) and torch.isfinite(logits).all()
    embeddings = model.embeddings(model.features(audio), video)
    assert set(embeddings) == set(model.modalities)
    assert all(z.dim() == 2 and z.shape[0] == 3 for z in embeddings.values())  # [B, D] for the latent metrics
    torch.testing.assert_close(model.head(embeddings), logits)
    grad_audio, grad_video = torch.autograd.grad(logits[:, 0].sum(), (audio, video), allow_unused=True)
    for modality, grad in (("audio", grad_audio), ("video", grad_video)):
        if modality in model.modalities:
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, modality
        else:
            assert grad is None or grad.abs().sum() == 0, modality  # an unused input cannot move the logits
    # each sample's logits depend on its own inputs only (no mixing across the batch)
    grad_rows = torch.autograd.grad(model(audio, video)[0].sum(), audio if "audio" in model.modalities else video)[0]
    assert grad_rows[1:].abs().sum() == 0


def test_video_as_precomputed_frame_embeddings():
    model = tiny("fusion-late", video_input="embeddings", video_embedding_dim=12)
    audio, _ = inputs()
    video = torch.randn(3, 2, 12, requires_grad=True)
    logits = model(audio, video)
    assert logits.shape == (3, 3)
    assert torch.autograd.grad(logits.sum(), video)[0].abs().sum() > 0


def test_bad_video_is_refused_with_the_expected_shape():
    model = tiny("fusion-mid")
    audio, video = inputs()
    with pytest.raises(ValueError, match=r"\[B, 2, 3, 16, 16\]"):
        model(audio, video[:, :, :, :8])
    with pytest.raises(ValueError, match="uses video"):
        model(audio)
    assert tiny("fusion-audio")(audio).shape == (3, 3)  # the audio baseline needs no video


def test_superlate_mixes_the_two_baselines_probabilities():
    audio_model, video_model = tiny("fusion-audio", seed=1), tiny("fusion-video", seed=2)
    model = SuperLateFusion.from_baselines(audio_model, video_model, {"labels": LABELS, **TINY}).eval()
    audio, video = inputs()
    mixed = 0.6 * torch.softmax(audio_model(audio), -1) + 0.4 * torch.softmax(video_model(audio, video), -1)
    torch.testing.assert_close(torch.softmax(model(audio, video), -1), mixed)
    with pytest.raises(ValueError, match="summing to 1"):
        SuperLateFusion(LABELS, weights=(0.6, 0.6), **TINY)


def test_theorem_audio_attack_inside_the_audio_radius_flips_the_linear_fusion():
    """Linear fusion z = A·audio + V·video (two classes). The audio model z_A = A·audio has L2 radius
    m_A / ‖a_0 − a_1‖ at a clip; video that mildly favours the wrong class (m_V < 0 < m_A + m_V)
    shrinks the fused model's audio radius to (m_A + m_V) / ‖a_0 − a_1‖: an audio-only perturbation
    inside the audio model's radius flips the fused model and leaves the audio model right."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 50, generator=g)
    v = torch.tensor([[0.0], [1.0]])  # video votes for class 1 by its value
    fused, audio_model = AudioVisualLinear(a, v), LinearClassifier(a, torch.zeros(2))
    audio = torch.rand(1, 50, generator=g) * 0.1 - 0.05
    direction = a[0] - a[1]
    audio = audio + (0.3 - float(audio[0] @ direction)) / float(direction @ direction) * direction  # m_A = 0.3
    video = torch.tensor([[0.2]])  # m_V = -0.2: the fused margin is 0.1
    labels = torch.tensor([0])
    radius_audio, radius_fused = 0.3 / direction.norm(), 0.1 / direction.norm()
    threat = ThreatModel("l2", eps=0.01, bounds=None)
    found_fused = minimal_eps(fused, audio, labels, threat, video=video, steps=20, rel_tol=0.001)
    found_audio = minimal_eps(audio_model, audio, labels, threat, steps=20, rel_tol=0.001)
    assert float(found_fused.found_norm) == pytest.approx(float(radius_fused), rel=0.02)
    assert float(found_audio.found_norm) == pytest.approx(float(radius_audio), rel=0.02)
    assert float(found_fused.found_norm) < float(radius_audio)  # inside the audio model's own radius ...
    adversarial = found_fused.adversarial
    assert fused(adversarial, video).argmax(-1).item() == 1  # ... it flips the fused model
    assert audio_model(adversarial).argmax(-1).item() == 0  # and not the audio model


def test_bundled_avmini_design_and_checkpoints():
    root = Path(__file__).parents[1] / "robustaudio" / "data" / "bundled" / "avmini"
    rows = list(csv.DictReader(open(root / "metadata.csv")))
    by_class = {}
    for r in rows:
        by_class.setdefault(r["label"], {"audio": set(), "scene": set()})
        by_class[r["label"]]["audio"].add(r["path"])
        by_class[r["label"]]["scene"].add(r["scene"])
    shared_audio = {frozenset((x,
                               y)) for x in by_class for y in by_class if x < y and by_class[x]["audio"] & by_class[y]["audio"]}
    shared_scene = {frozenset((x,
                               y)) for x in by_class for y in by_class if x < y and by_class[x]["scene"] & by_class[y]["scene"]}
    assert shared_audio == {frozenset(("speech+person", "speech+cafe")), frozenset(("footsteps+rocket",
                                                                                    "footsteps+cat"))}
    assert shared_scene == {frozenset(("speech+cafe", "music+cafe")), frozenset(("engine+rocket", "footsteps+rocket"))}
    assert len({r["id"] for r in rows}) == len(rows) and {r["split"] for r in rows} == {"train", "test"}
    assert load_frames(root / rows[0]["video"]).shape == (4, 3, 32, 32)
    cards = {name: MODELS[name].card() for name in MODELS if MODELS[name].data == "avmini"}
    assert set(cards) == {"av-early", "av-mid", "av-late", "av-superlate", "audio-only", "video-only"}
    best_single = max(cards["audio-only"]["test_accuracy"], cards["video-only"]["test_accuracy"])
    assert best_single <= 4 / 6 + 1e-9  # each modality alone is ambiguous by construction
    assert all(cards[f"av-{f}"]["test_accuracy"] > best_single + 0.15 for f in ("early", "mid", "late", "superlate"))
    model = load_model("av-late")
    batch = next(AudioDataset.from_path("avmini", split="test").batches(model, 16))
    assert batch.video.shape == (16, 4, 3, 32, 32) and model(batch.audio, batch.video).shape == (16, 6)
    assert next(AudioDataset.from_path("avmini", split="test").batches(load_model("audio-only"), 4)).video is None


def write_av_dataset(root: Path, per_class: int = 2, seconds: float = 0.25) -> Path:
    """Tiny AV data for TINY models: label c's audio is a tone, its video a colour."""
    rng = np.random.default_rng(0)
    t = np.arange(int(16000 * seconds)) / 16000
    rows = []
    root.mkdir()
    for k, label in enumerate(LABELS):
        for i in range(per_class):
            audio = 0.3 * np.sin(2 * np.pi * (300 + 500 * k) * t) + 0.01 * rng.standard_normal(t.size)
            soundfile.write(root / f"{label}{i}.wav", audio.astype(np.float32), 16000)
            video = np.clip(rng.uniform(0.3, 0.5, (2, 3, 16, 16)) + 0.4 * (np.arange(3) == k)[None, :, None, None], 0,
                            1)
            save_frames(root / f"{label}{i}.png", torch.from_numpy(video).float())
            rows.append([f"{label}{i}", f"{label}{i}.wav", f"{label}{i}.png", label])
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "path", "video", "label"])
        writer.writerows(rows)
    return root


def test_runner_attacks_audio_video_and_both(tmp_path):
    data = AudioDataset.from_path(write_av_dataset(tmp_path / "av"))
    model = tiny("fusion-late")
    video_threat = ThreatModel("linf", eps=0.05, modality="video", bounds=(0.0, 1.0))
    threats = [ThreatModel("linf", eps=0.01), video_threat, JointThreat(ThreatModel("linf", eps=0.01), video_threat)]
    run = run_attack(model, "late", data, threats, tmp_path / "run", AttackSpec("pgd", steps=2),
                     RunOptions(batch_size=4, sanity=False))
    records = read_records(run)
    assert set(records["domain"]) == {"waveform", "video", "waveform+video"}
    attacked = records[records["attacked"] == True]  # noqa: E712
    for domain, eps in (("waveform", 0.01), ("video", 0.05), ("waveform+video", 0.01)):
        assert (attacked[attacked["domain"] == domain]["linf"] <= eps + 1e-6).all()
    card = build_report(run)
    assert {c["domain"] for c in card["conditions"]} == {"waveform", "video", "waveform+video"}
    with pytest.raises(RunSettingsError, match="does not use"):
        run_attack(tiny("fusion-audio"), "audio", data, [video_threat], tmp_path / "bad", AttackSpec("pgd", steps=1))
    minimal = run_attack(model, "late", data, [video_threat], tmp_path / "minimal",
                         AttackSpec("minimal", steps=2, options={"eps_max": 0.5, "search_steps": 2}),
                         RunOptions(sanity=False))
    assert build_report(minimal)["minimal"][0]["condition"] == "minimal-linf-video"


def test_comparison_writes_the_fusion_table_and_the_theorem_check(tmp_path):
    data = AudioDataset.from_path(write_av_dataset(tmp_path / "av"))
    models = {"late": lambda: tiny("fusion-late"), "audio": lambda: tiny("fusion-audio", seed=1),
              "video": lambda: tiny("fusion-video", seed=2)}
    plan = FusionPlan(norms=("linf",), audio_eps={"linf": (0.005, 0.01)}, video_eps={"linf": (0.02, 0.05)},
                      minimal_cap=4, search_steps=2)
    from robustaudio.runner import noise_suite
    comparison = run_comparison(models, data, tmp_path / "cmp", eps=(0.005, 0.01),
                                corruptions=noise_suite(["gaussian_snr"]),
                                steps=1, options=RunOptions(batch_size=8), fusion=plan,
                                progress=lambda _: None)
    fusion = comparison["fusion"]
    assert fusion["plan"]["norms"] == ["linf"] and fusion["plan"]["table_eps"]["linf"] == {"audio": 0.01, "video": 0.05}
    linf = {name: fusion["models"][name]["linf"] for name in models}
    assert linf["late"]["modalities"] == ["audio",
                                          "video"] and linf["audio"]["video"] is None and linf["video"]["audio"] is None
    for row in linf.values():
        for key in ("audio", "video", "both"):
            assert row[key] is None or 0 <= row[key] <= row["clean"]
    assert linf["late"]["minimal_audio"]["attacked"] >= 1 and linf["audio"]["minimal_video"] is None
    assert set(fusion["theorem"]["linf"]["models"]) == {"late"} and fusion["theorem"]["linf"]["reference"] == "audio"
    check = fusion["theorem"]["linf"]["models"]["late"]
    assert 0 <= check["cases"] <= check["clips_correct_for_both"] <= 6
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    assert "Audio-visual fusion under attack (linf)" in markdown and "(unused)" in markdown and "Theorem check" in markdown
    assert comparison["models"]["video"]["robust_accuracy"] is None  # no audio attack on a model without audio
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["fusion"]["models"].keys() == models.keys()


def test_attack_command_defaults_to_the_data_a_bundled_model_was_trained_on(tmp_path):
    """`robustaudio attack --model av-late` needs no --data: the av-* models read the bundled avmini set."""
    from click.testing import CliRunner

    from robustaudio.cli import main
    result = CliRunner().invoke(main, ["attack", "--model", "av-late", "--eps", "0.002", "--steps", "1", "--limit", "2",
                                       "--no-sanity", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["settings"]["data"].endswith("avmini")
