"""The thesis model zoo: contract, gradients, parameter counts, published checkpoint layouts, MIL poolings."""

import json
import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from robustaudio.models.base import frozen
from robustaudio.models.zoo import ZOO, AST64x400, AudioSpectrogramTransformer, Cnn14, load_published_ast
from robustaudio.models.zoo.pooling import MIL_POOLINGS, MILHead, make_pooling, probabilities_to_logits

DATA = Path(__file__).parent / "data"

# id, zoo name, config overrides, expected (sample rate, clip samples, classes, multilabel), slow.
# Cases run at the thesis input size, except that the models too slow for CI on a CPU run at full
# size under `slow` ("-full") and in a reduced config unmarked ("-reduced").
CASES = [
    ("m3", "m3", {}, (8000, 32000, 10, False), False),
    ("m5", "m5", {}, (8000, 32000, 10, False), False),
    ("m11", "m11", {}, (8000, 32000, 10, False), False),
    ("m18", "m18", {}, (8000, 32000, 10, False), False),
    ("m34-res", "m34-res", {}, (8000, 32000, 10, False), False),
    ("crnn", "crnn", {}, (16000, 160000, 527, True), False),
    ("tal-trans", "tal-trans", {}, (16000, 160000, 527, True), False),
    ("resnet50-att", "resnet50-att", {}, (16000, 160000, 527, True), False),
    ("conformer-full", "conformer", {}, (16000, 160000, 527, True), True),
    ("conformer-reduced", "conformer", {"layers": 2}, (16000, 160000, 527, True), False),
    ("cnn14-full", "cnn14", {}, (32000, 320000, 527, True), True),
    ("cnn14-reduced", "cnn14", {"clip_seconds": 1.0}, (32000, 32000, 527, True), False),
    ("ast-base-full", "ast-base", {}, (16000, 160000, 527, True), True),
    ("ast-base-reduced", "ast-base", {"depth": 1, "target_frames": 128, "clip_seconds": 1.0},
     (16000, 16000, 527, True), False),
    ("ast-64x400-full", "ast-64x400", {}, (16000, 160000, 527, True), True),
    ("ast-64x400-reduced", "ast-64x400", {"depth": 2}, (16000, 160000, 527, True), False),
    ("dscnn-mfcc", "dscnn", {}, (16000, 16000, 2, False), False),
    ("dscnn-logmel", "dscnn", {"feature_kind": "logmel"}, (16000, 16000, 2, False), False),
]


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c[-1] else c for c in CASES],
                         ids=[c[0] for c in CASES])
def test_forward_backward_and_contract(case):
    _, name, config, (sample_rate, clip_samples, classes, multilabel), _ = case
    torch.manual_seed(0)
    with frozen(ZOO[name](**config)) as model:  # as attacks run it: eval mode, no weight gradients
        _check_forward_backward_and_contract(model, sample_rate, clip_samples, classes, multilabel)


def _check_forward_backward_and_contract(model, sample_rate, clip_samples, classes, multilabel):
    assert (model.sample_rate, model.clip_samples, model.num_classes, model.multilabel) == (
        sample_rate, clip_samples, classes, multilabel)
    assert model.bounds == (-1.0, 1.0) and model.modalities == ("audio",)
    audio = (torch.rand(2, model.clip_samples) * 0.2 - 0.1).requires_grad_(True)
    features = model.features(audio)
    assert features.dim() == 3 and features.shape[0] == 2
    embeddings = model.embeddings(features)
    assert set(embeddings) == {"audio"} and embeddings["audio"].dim() == 2
    logits = model.head(embeddings)
    assert logits.shape == (2, classes) and torch.isfinite(logits).all()
    with torch.no_grad():
        assert torch.allclose(model(audio), logits, atol=1e-4)
    grad, = torch.autograd.grad(logits[:, 0].sum(), audio)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0, "the front end must be in the graph"


def test_checkpoint_round_trip_through_config():
    """A zoo model rebuilds from the registry's {"arch", "config", "state_dict"} format with identical outputs."""
    for name, config in [("m3", {"labels": ["a", "b"]}), ("dscnn", {"labels": ["x", "y", "z"]}),
                         ("ast-base", {"labels": ["a"], "depth": 1, "target_frames": 128, "clip_seconds": 1.0})]:
        torch.manual_seed(0)
        original = ZOO[name](**config).eval()
        rebuilt = ZOO[name](**config)
        rebuilt.load_state_dict(original.state_dict())
        audio = torch.rand(2, original.clip_samples) * 0.2 - 0.1
        with torch.no_grad():
            assert torch.equal(original(audio), rebuilt.eval()(audio)), name


# Table 3.1, transcribed: (first-layer channels, [(channels, repeats), ...] of 3-sample layers, residual)
TABLE_3_1 = {
    "m3": (0.2e6, 256, [(256, 1)], False),
    "m5": (0.5e6, 128, [(128, 1), (256, 1), (512, 1)], False),
    "m11": (1.8e6, 64, [(64, 2), (128, 2), (256, 3), (512, 2)], False),
    "m18": (3.7e6, 64, [(64, 4), (128, 4), (256, 4), (512, 4)], False),
    "m34-res": (4.0e6, 48, [(48, 3), (96, 4), (192, 6), (384, 3)], True),
}


def _table_3_1_count(first: int, rows: list[tuple[int, int]], residual: bool, classes: int = 10) -> int:
    """Weights of the table's layers: bias-free convolutions, batch norm scale + shift, final linear layer."""
    count = 80 * first + 2 * first
    c_in = first
    for channels, repeats in rows:
        for _ in range(repeats):
            convs = [(c_in, channels), (channels, channels)] if residual else [(c_in, channels)]
            count += sum(3 * a * b + 2 * b for a, b in convs)
            if residual and c_in != channels:  # 1x1 projection shortcut + its batch norm
                count += c_in * channels + 2 * channels
            c_in = channels
    return count + c_in * classes + classes


@pytest.mark.parametrize("name", sorted(TABLE_3_1))
def test_waveform_cnn_parameter_counts_match_table_3_1(name):
    printed, first, rows, residual = TABLE_3_1[name]
    count = sum(p.numel() for p in ZOO[name]().parameters())
    assert count == _table_3_1_count(first, rows, residual)
    # The printed sizes are rounded down: Table 3.1's own layer list gives M3 0.221M and M5 0.558M
    # (M5's convolution weights alone are 0.551M), so those two are 10-12% above the printed 0.2M / 0.5M.
    tolerance = 0.12 if name in ("m3", "m5") else 0.10
    assert abs(count - printed) <= tolerance * printed, f"{name}: {count} parameters vs {printed:.1e}"


def _published_state_dict(path: Path, replace: dict[str, list[int]] | None = None) -> dict[str, torch.Tensor]:
    keys = json.loads(path.read_text())["keys"]
    keys.update(replace or {})
    # a distinct constant per tensor: cheap for 88M values, and shows which tensor landed where
    return {key: torch.full(shape, index, dtype=torch.long if key.endswith("num_batches_tracked") else torch.float32)
            for index, (key, shape) in enumerate(keys.items())}


def _shapes(state_dict):
    return {key: list(value.shape) for key, value in state_dict.items()}


def test_cnn14_loads_published_layout_strictly():
    state_dict = _published_state_dict(DATA / "cnn14_keys.json")
    model = Cnn14()
    assert _shapes(model.state_dict()) == _shapes(state_dict)
    result = model.load_state_dict(state_dict, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # the loaded mel filter bank is the one the front end uses
    assert torch.equal(model.front_end.mel.mel_scale.fb, state_dict["logmel_extractor.melW"])


def test_cnn14_front_end_equals_torchlibrosa_conv_stft():
    """The published conv-STFT kernels + melW + power_to_db give the torchaudio front end's features."""
    torch.manual_seed(0)
    model = Cnn14(clip_seconds=0.5)
    audio = torch.rand(2, model.clip_samples) * 0.2 - 0.1
    padded = F.pad(audio.unsqueeze(1), (512, 512), mode="reflect")
    stft = model.spectrogram_extractor.stft
    real = F.conv1d(padded, stft.conv_real.weight, stride=320)
    imaginary = F.conv1d(padded, stft.conv_imag.weight, stride=320)
    power = real ** 2 + imaginary ** 2                                   # [B, 513, frames]
    mel = torch.einsum("bft,fm->bmt", power, model.logmel_extractor.melW)
    expected = 10 * torch.log10(mel.clamp_min(1e-10))
    assert torch.allclose(model.features(audio), expected, atol=1e-3)


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_ast_loads_published_layout_with_or_without_module_prefix(prefix):
    state_dict = _published_state_dict(DATA / "ast_keys.json")
    state_dict = {prefix + key.removeprefix("module."): value for key, value in state_dict.items()}
    model = AudioSpectrogramTransformer()
    assert _shapes(model.state_dict()) == {key.removeprefix(prefix): shape
                                           for key, shape in _shapes(state_dict).items()}
    load_published_ast(model, state_dict)
    assert torch.equal(model.v.pos_embed, state_dict[prefix + "v.pos_embed"])


def test_ast_64x400_shares_the_published_key_names():
    # 5 x 39 = 195 patches + 2 tokens (thesis Table 6.3, 64 x 400 at stride 10)
    state_dict = _published_state_dict(DATA / "ast_keys.json", {"module.v.pos_embed": [1, 197, 768]})
    load_published_ast(AST64x400(), state_dict)
    with pytest.raises(RuntimeError, match="pos_embed"):
        load_published_ast(AST64x400(), _published_state_dict(DATA / "ast_keys.json"))


# ---- MIL poolings: frame probabilities [B=1, frames=3, K=2] ----
FRAMES = torch.tensor([[[0.2, 0.5], [0.6, 0.5], [0.2, 0.5]]])


@pytest.mark.parametrize("name, expected", [
    ("max", [0.6, 0.5]),
    ("average", [1.0 / 3.0, 0.5]),
    ("linear_softmax", [(0.04 + 0.36 + 0.04) / 1.0, 0.75 / 1.5]),
    ("exponential_softmax", [(2 * 0.2 * math.exp(0.2) + 0.6 * math.exp(0.6)) / (2 * math.exp(0.2) + math.exp(0.6)),
                             0.5]),
])
def test_mil_pooling_hand_computed(name, expected):
    pooled = make_pooling(name, embed_dim=1, num_classes=2)(FRAMES)
    assert torch.allclose(pooled, torch.tensor([expected]), atol=1e-6)


def test_attention_pooling_hand_computed():
    pooling = make_pooling("attention", embed_dim=1, num_classes=2)
    with torch.no_grad():
        pooling.attention.weight.fill_(1.0)
        pooling.attention.bias.zero_()
    embeddings = torch.log(torch.tensor([[[1.0], [2.0], [1.0]]]))  # weights softmax(log w) = (0.25, 0.5, 0.25)
    pooled = pooling(FRAMES, embeddings)
    assert torch.allclose(pooled, torch.tensor([[0.25 * 0.2 + 0.5 * 0.6 + 0.25 * 0.2, 0.5]]), atol=1e-6)


def test_every_pooling_is_registered_and_mil_head_returns_clip_logits():
    assert set(MIL_POOLINGS) == {"max", "average", "linear_softmax", "exponential_softmax", "attention"}
    torch.manual_seed(0)
    frames = torch.randn(2, 7, 5)
    for name in MIL_POOLINGS:
        head = MILHead(embed_dim=5, num_classes=3, pooling=name)
        probabilities = head.frame_probabilities(frames)
        expected = head.pooling(probabilities, frames)
        assert torch.allclose(torch.sigmoid(head(frames)), expected, atol=1e-5), name
    p = torch.tensor([0.0, 0.3, 1.0])
    assert torch.isfinite(probabilities_to_logits(p)).all()
    assert torch.allclose(torch.sigmoid(probabilities_to_logits(p))[1], p[1])
