"""Camera-sticker optics: the dot model, the fit recovering known optics from synthetic photos, universal
targeted stickers beating random dots on held-out images, model adapters, and the sticker command."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from robustaudio.attacks.sticker import (
    DotOptics,
    Sticker,
    StickerError,
    apply_sticker,
    fit_dot_optics,
    grid_centres,
    image_target,
    optimise_sticker,
    random_dot_control,
    sticker_success,
    synthetic_photos,
    visual_branch_target,
)
from robustaudio.cli import main
from robustaudio.data.av import save_frames
from robustaudio.models.fusion import AudioOnly, VideoOnly

COLOURS = ("red", "green", "blue")


class MeanColour(nn.Module):
    """Classifies an image [B, 3, H, W] by which channel has the largest mean (logits = 20 · channel means)."""

    labels = COLOURS

    def forward(self, images):
        return 20 * images.mean(dim=(-1, -2))


def tinted(colour: int, n: int, seed: int, size: int = 24) -> torch.Tensor:
    """``n`` noisy images dominated by channel ``colour``, [n, 3, size, size] in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=g) * 0.35
    images[:, colour] += 0.35
    return images


def test_dot_profile_centre_edge_and_colour_map():
    optics = DotOptics(alpha_max=0.8, radius=0.2, beta=2.0, colour_matrix=((0.5, 0, 0), (0, 1, 0), (0, 0, 1)),
                       colour_offset=(0.1, 0.0, 0.0))
    image = torch.full((3, 21, 41), 0.5)  # non-square: distances in units of the larger side (41 px)
    centre = torch.tensor([[20.5 / 41, 10.5 / 21]])  # the middle pixel
    out = apply_sticker(image, centre, torch.tensor([[1.0, 0.0, 1.0]]), optics)
    seen = torch.tensor([0.6, 0.0, 1.0])  # A γ + b
    torch.testing.assert_close(out[:, 10, 20], 0.2 * 0.5 + 0.8 * seen)
    torch.testing.assert_close(out[:, 0, 0], torch.full((3,), 0.5), atol=1e-4, rtol=0)  # far outside the dot
    at_radius = out[1, 10, 20 + round(0.2 * 41)]  # green channel one radius to the right: α = 0.8 · e^-1
    assert float(at_radius) == pytest.approx(0.5 * (1 - 0.8 * np.exp(-1)), abs=0.02)
    assert grid_centres(9).tolist()[:3] == [[0.25, 0.25], [0.5, 0.25], [0.75, 0.25]]
    assert apply_sticker(torch.rand(2, 4, 3, 8, 8), grid_centres(9), torch.rand(9, 3), DotOptics()).shape == (2, 4, 3, 8, 8)


def test_fit_recovers_known_optics_from_synthetic_photos():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(8, 3, 32, 32, generator=g) * 0.9 + 0.05  # varied scenes behind the dots identify α_max
    true = DotOptics(alpha_max=0.7, radius=0.12, beta=1.5, colour_matrix=((0.8, 0.1, 0.0), (0.05, 0.9, 0.05), (0.0, 0.1, 0.7)),
                     colour_offset=(0.05, 0.02, 0.1))
    printed_centres = grid_centres(9)
    real_centres = printed_centres + 0.02 * torch.randn(9, 2, generator=g)  # placed slightly off
    colours = torch.rand(9, 3, generator=g)
    photos = synthetic_photos(clean, real_centres, colours, true, noise=0.01, generator=g)
    fit = fit_dot_optics(clean, photos, printed_centres, colours, steps=300)
    assert fit.optics.alpha_max == pytest.approx(0.7, abs=0.02)
    assert fit.optics.radius == pytest.approx(0.12, rel=0.03)
    assert fit.optics.beta == pytest.approx(1.5, abs=0.1)
    np.testing.assert_allclose(fit.optics.colour_matrix, true.colour_matrix, atol=0.02)
    np.testing.assert_allclose(fit.optics.colour_offset, true.colour_offset, atol=0.02)
    assert (fit.centres - real_centres).abs().max() < 0.01
    assert fit.rmse == pytest.approx(0.01, abs=0.003)  # down to the photo noise


def test_universal_targeted_sticker_beats_random_dots_on_held_out_images():
    model = MeanColour()
    learn = image_target(model, tinted(0, 16, seed=1), COLOURS)
    held = image_target(model, tinted(0, 16, seed=2), COLOURS)
    optics = DotOptics(alpha_max=0.9, radius=0.2, beta=2.0)
    result = optimise_sticker(learn, "red", "blue", optics=optics, epochs=25, lr=0.05,
                              generator=torch.Generator().manual_seed(0))
    assert result.history[result.best_epoch]["targeted_success"] == max(h["targeted_success"] for h in result.history)
    success = sticker_success(held, result.sticker, "red", "blue")
    control = random_dot_control(held, "red", "blue", dots=9, optics=optics, draws=10,
                                 generator=torch.Generator().manual_seed(1))
    assert success["clean_accuracy"] == 1.0 and success["clean_targeted"] == 0.0
    assert success["targeted"] >= 0.9 > control["targeted_mean"] + 0.5
    assert result.sticker.colours[:, 2].mean() > 0.8  # it learned blue dots


def test_model_adapters_refuse_what_they_cannot_attack():
    with pytest.raises(StickerError, match=r"\[B, 3, H, W\]"):
        image_target(MeanColour(), torch.rand(2, 8, 8), COLOURS)
    with pytest.raises(StickerError, match="logits \\[B, 2\\]"):
        image_target(MeanColour(), torch.rand(2, 3, 8, 8), ["red", "green"])
    with pytest.raises(StickerError, match="Unknown target class 'purple'"):
        optimise_sticker(image_target(MeanColour(), torch.rand(2, 3, 8, 8), COLOURS), "red", "purple")
    tiny = dict(clip_seconds=0.25, n_mels=16, frames=2, frame_size=16, audio_channels=(4,), video_channels=(4,),
                video_dim=4)
    audio, video = torch.zeros(2, 4000), torch.rand(2, 2, 3, 16, 16)
    with pytest.raises(StickerError, match="no visual branch"):
        visual_branch_target(AudioOnly(["a", "b"], **tiny).eval(), audio, video)
    with pytest.raises(StickerError, match="frame embeddings"):
        visual_branch_target(VideoOnly(["a", "b"], video_input="embeddings", video_embedding_dim=5, **tiny).eval(),
                             audio,
                             torch.rand(2, 2, 5))
    target = visual_branch_target(VideoOnly(["a", "b"], **tiny).eval(), audio, video)
    assert target.logits(Sticker.random(9, DotOptics())(video), torch.arange(2)).shape == (2, 2)


def test_sticker_command_on_an_image_classifier(tmp_path):
    from PIL import Image

    (tmp_path / "colours.py").write_text(
        "import torch\nclass MeanColour(torch.nn.Module):\n    labels = ('red', 'green', 'blue')\n"
        "    def forward(self, x):\n        return 20 * x.mean(dim=(-1, -2))\ndef build():\n    return MeanColour()\n")
    for name, colour in (("red", 0), ("green", 1)):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i, image in enumerate(tinted(colour, 8, seed=colour)):
            Image.fromarray((image.permute(1,
                                           2,
                                           0).numpy() * 255).astype(np.uint8)).save(tmp_path / "images" / name / f"{i}.png")
    model = f"python:{tmp_path / 'colours.py'}:build"
    args = ["sticker", "--model", model, "--images", str(tmp_path / "images"), "--source", "red", "--target", "blue",
            "--radius", "0.2", "--epochs", "15", "--lr", "0.05", "--controls", "5", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "sticker.json").read_text())
    assert summary["held_out"]["items"] == 4 and summary["settings"]["learn_items"] == 4
    assert summary["held_out"]["targeted"] > summary["random_dots"]["targeted_mean"]
    assert len(summary["sticker"]["centres"]) == 9 and (tmp_path / "out" / "sticker.png").stat().st_size > 1000
    bad = CliRunner().invoke(main, args[:-8] + ["--target", "purple", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "Unknown class 'purple' for --target" in bad.output and "red, green, blue" in bad.output
    audio_model = CliRunner().invoke(main, ["sticker", "--model", "cnn", "--source", "bird", "--target", "dog"])
    assert audio_model.exit_code != 0 and "no visual branch" in audio_model.output and "av-late" in audio_model.output
    no_images = CliRunner().invoke(main, ["sticker", "--model", model, "--source", "red", "--target", "blue"])
    assert no_images.exit_code != 0 and "--images DIR" in no_images.output


def test_sticker_command_fits_the_optics_to_calibration_photos(tmp_path):
    from PIL import Image

    g = torch.Generator().manual_seed(3)
    clean = torch.rand(4, 3, 24, 24, generator=g)
    true = DotOptics(alpha_max=0.6, radius=0.15, beta=2.0)
    centres, colours = grid_centres(4), torch.rand(4, 3, generator=g)
    photos = synthetic_photos(clean, centres, colours, true, noise=0.0)
    for folder, images in (("clean", clean), ("photos", photos)):
        (tmp_path / "cal" / folder).mkdir(parents=True)
        for i, image in enumerate(images):
            Image.fromarray((image.permute(1,
                                           2,
                                           0).numpy() * 255).round().astype(np.uint8)).save(tmp_path / "cal" / folder / f"{i}.png")
    (tmp_path / "cal" / "dots.json").write_text(json.dumps({"centres": centres.tolist(), "colours": colours.tolist()}))
    (tmp_path / "m.py").write_text(
        "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        return 20 * x.mean(dim=(-1, -2))\n"
        "def build():\n    return M()\n")
    (tmp_path / "images" / "red").mkdir(parents=True)
    for i, image in enumerate(tinted(0, 4, seed=0)):
        Image.fromarray((image.permute(1,
                                       2,
                                       0).numpy() * 255).astype(np.uint8)).save(tmp_path / "images" / "red" / f"{i}.png")
    result = CliRunner().invoke(main, ["sticker", "--model", f"python:{tmp_path / 'm.py'}:build", "--labels",
                                       "red,green,blue",
                                       "--images", str(tmp_path / "images"), "--source", "red", "--target", "green",
                                       "--calibration", str(tmp_path / "cal"), "--epochs", "2", "--controls", "2",
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    optics = json.loads((tmp_path / "out" / "sticker.json").read_text())["sticker"]["optics"]
    assert optics["alpha_max"] == pytest.approx(0.6, abs=0.05) and optics["radius"] == pytest.approx(0.15, rel=0.1)


def test_av_model_sticker_covers_every_frame(tmp_path):
    tiny = dict(clip_seconds=0.25, n_mels=16, frames=2, frame_size=16, audio_channels=(4,), video_channels=(4,),
                video_dim=4)
    model = VideoOnly(["a", "b"], **tiny).eval()
    video = torch.rand(3, 2, 3, 16, 16)
    target = visual_branch_target(model, torch.zeros(3, 4000), video)
    sticker = Sticker(grid_centres(9), torch.zeros(9, 3), DotOptics())
    stuck = sticker(target.images)
    changed = (stuck - video).abs().amax(dim=(2, 3, 4))  # [clips, frames]
    assert (changed > 0.3).all()  # the lens sticker is on every frame of every clip
    save_frames(tmp_path / "s.png", stuck[0])  # and renders as a frame strip


def test_sample_images_are_real_photos_and_a_disjoint_face_split():
    from robustaudio.data.images import lfw_faces, photo_crops
    crops = photo_crops(count=6, size=32)
    assert crops.shape == (6, 3, 32, 32) and crops.min() >= 0 and crops.max() <= 1
    assert not torch.allclose(crops[0], crops[4])  # the same photo, the other corner
    learn, held = lfw_faces(size=24)
    assert learn.shape == held.shape == (50, 3, 24, 24)
    assert torch.equal(learn[:, 0], learn[:, 2])  # grey faces repeated over RGB
    assert not any(torch.equal(a, b) for a in learn[:5] for b in held)
