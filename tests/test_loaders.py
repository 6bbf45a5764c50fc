"""Models from outside robustaudio: hf:, torchscript:, onnx:, python:, openwakeword: and --weights for the zoo."""

import json
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from torch import nn

from robustaudio.attacks import ThreatModel, pgd
from robustaudio.models import ModelError, load_model, save_checkpoint
from robustaudio.models.loaders import LoaderWarning, WrappedModule, describe_loaders
from robustaudio.models.zoo import M3, M5

DATA = Path(__file__).parent / "data"


def input_gradient(model, audio: torch.Tensor, logit: int = 0) -> torch.Tensor:
    audio = audio.clone().requires_grad_(True)
    grad, = torch.autograd.grad(model(audio)[:, logit].sum(), audio)
    return grad


def assert_useful_gradient(grad: torch.Tensor) -> None:
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


class TinyWaveformNet(nn.Module):
    """waveform [B, 800] -> framed energies -> 3 logits: small enough to script, export and convert."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, kernel_size=16, stride=8)
        self.linear = nn.Linear(4, 3)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(audio.unsqueeze(1)))
        return self.linear(x.mean(dim=-1))


SPEC = {"sample_rate": 8000, "labels": ["yes", "no", "maybe"], "multilabel": False, "clip_seconds": 0.1}


def tiny_net() -> TinyWaveformNet:
    torch.manual_seed(0)
    return TinyWaveformNet().eval()


# ---- hf: ------------------------------------------------------------------------------------------

def save_tiny_ast(directory: Path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    labels = {0: "bird", 1: "dog", 2: "siren"}
    config = transformers.ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                    num_mel_bins=32, max_length=100, id2label=labels,
                                    label2id={v: k for k, v in labels.items()})
    model = transformers.ASTForAudioClassification(config).eval()
    extractor = transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=100)
    model.save_pretrained(directory)
    extractor.save_pretrained(directory)
    return model, extractor


def test_hf_ast_matches_transformers_and_is_attackable(tmp_path):
    reference, extractor = save_tiny_ast(tmp_path)
    model = load_model(f"hf:{tmp_path}")
    assert model.labels == ("bird", "dog", "siren") and model.sample_rate == 16000 and not model.multilabel
    generator = torch.Generator().manual_seed(1)
    for samples in (16000, 20000):  # 98 fbank frames padded to max_length 100; 123 cropped to 100
        audio = 0.1 * torch.randn(1, samples, generator=generator)
        inputs = extractor(audio[0].numpy(), sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            expected = reference(**inputs).logits
            assert torch.allclose(model(audio), expected, atol=1e-4)
    audio = 0.1 * torch.randn(2, model.clip_samples, generator=generator)
    assert_useful_gradient(input_gradient(model, audio))
    assert model.embeddings(model.features(audio))["audio"].shape == (2, 32)
    labels = model(audio).argmax(-1).detach()
    result = pgd(model, audio, labels, ThreatModel("linf", eps=0.002), steps=1,
                 generator=torch.Generator().manual_seed(0))
    assert result.perturbation.abs().max() <= 0.002 + 1e-6


def test_hf_wav2vec2_normalisation_matches_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4),
                                         conv_kernel=(10, 4), num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=2, classifier_proj_size=8, num_labels=2,
                                         problem_type="multi_label_classification")
    reference = transformers.Wav2Vec2ForSequenceClassification(config).eval()
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)
    reference.save_pretrained(tmp_path / "w2v")
    extractor.save_pretrained(tmp_path / "w2v")
    model = load_model(f"hf:{tmp_path / 'w2v'}")
    assert model.multilabel and model.clip_seconds == 1.0
    (tmp_path / "w2v.json").write_text(json.dumps({"multilabel": False, "labels": ["on", "off"]}))
    assert load_model(f"hf:{tmp_path / 'w2v'}/").labels == ("on", "off")  # the sidecar DIR.json
    audio = 0.1 * torch.randn(1, 8000) + 0.05
    inputs = extractor(audio[0].numpy(), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(audio), reference(**inputs).logits, atol=1e-4)
    assert_useful_gradient(input_gradient(model, audio))


def test_hf_directory_errors_name_the_fix(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        load_model(f"hf:{tmp_path}")


# ---- torchscript: ---------------------------------------------------------------------------------

def test_torchscript_with_sidecar(tmp_path):
    net = tiny_net()
    path = tmp_path / "kws.pt"
    torch.jit.script(net).save(str(path))
    (tmp_path / "kws.pt.json").write_text(json.dumps(SPEC))
    model = load_model(f"torchscript:{path}")
    assert isinstance(model, WrappedModule)
    assert model.labels == ("yes", "no", "maybe") and model.sample_rate == 8000 and model.clip_samples == 800
    audio = 0.1 * torch.randn(3, 800)
    with torch.no_grad():
        assert torch.allclose(model(audio), net(audio), atol=1e-6)
    assert_useful_gradient(input_gradient(model, audio))
    with pytest.raises(NotImplementedError, match="waveform"):
        model.embeddings(model.features(audio))
    override = load_model(f"torchscript:{path}", labels=["a", "b", "c"])
    assert override.labels == ("a", "b", "c")


def test_torchscript_errors_name_the_file(tmp_path):
    with pytest.raises(ModelError, match="missing.pt"):
        load_model(f"torchscript:{tmp_path / 'missing.pt'}")
    (tmp_path / "junk.pt").write_bytes(b"not an archive")
    with pytest.raises(ModelError, match="junk.pt.*could not be loaded"):
        load_model(f"torchscript:{tmp_path / 'junk.pt'}")
    torch.jit.script(tiny_net()).save(str(tmp_path / "k.pt"))
    (tmp_path / "k.json").write_text(json.dumps({"labels": ["only-one"]}))  # the suffix-replaced sidecar
    with pytest.raises(ModelError, match="3 logits but 1 labels"):
        load_model(f"torchscript:{tmp_path / 'k.pt'}")
    (tmp_path / "k.json").write_text(json.dumps({"label": ["typo"]}))
    with pytest.raises(ModelError, match="unknown key"):
        load_model(f"torchscript:{tmp_path / 'k.pt'}")


# ---- onnx: ----------------------------------------------------------------------------------------

def export_onnx(path: Path) -> TinyWaveformNet:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx2torch")
    net = tiny_net()
    torch.onnx.export(net, (torch.zeros(2, 800),), str(path), input_names=["audio"], output_names=["logits"],
                      dynamic_axes={"audio": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    path.with_name(path.name + ".json").write_text(json.dumps(SPEC))
    return net


def test_onnx_converts_with_gradients(tmp_path):
    path = tmp_path / "kws.onnx"
    net = export_onnx(path)
    model = load_model(f"onnx:{path}")
    assert isinstance(model, WrappedModule) and model.labels == ("yes", "no", "maybe")
    audio = 0.1 * torch.randn(4, 800)
    with torch.no_grad():
        assert torch.allclose(model(audio), net(audio), atol=1e-5)
    assert_useful_gradient(input_gradient(model, audio, logit=1))


def test_onnx_falls_back_to_onnxruntime_when_conversion_fails(tmp_path, monkeypatch):
    path = tmp_path / "kws.onnx"
    net = export_onnx(path)
    import onnx2torch

    def refuse(*args, **kwargs):
        raise NotImplementedError("Converter is not implemented (OperationDescription(op_type='Clip'))")

    monkeypatch.setattr(onnx2torch, "convert", refuse)
    with pytest.warns(LoaderWarning, match="black-box") as caught:
        model = load_model(f"onnx:{path}")
    assert "torch.onnx.export(model, audio, 'kws.onnx', opset_version=17" in str(caught[0].message)
    assert not isinstance(model, WrappedModule) and model.labels == ("yes", "no", "maybe")
    audio = 0.1 * torch.randn(2, 800)
    with torch.no_grad():
        assert torch.allclose(model(audio), net(audio), atol=1e-5)


class ConvMeanReshape(nn.Module):
    """conv -> ReLU -> mean and max over time -> reshape -> linear: ReduceMean-18 and Reshape-19 at opset 18+."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, kernel_size=16, stride=8)
        self.linear = nn.Linear(8, 3)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(audio.unsqueeze(1)))
        pooled = torch.stack([x.mean(dim=-1), x.amax(dim=-1)], dim=1)
        return self.linear(pooled.reshape(audio.shape[0], -1))


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_onnx_from_torch_default_exporter_is_attacked_white_box(tmp_path, exporter):
    """torch.onnx.export's default opset (18+: ReduceMean takes axes as an input, Reshape-19, and the dynamo
    exporter's allowzero=1) converts to torch: gradients flow, and PGD finds what it finds on the torch model."""
    import warnings as warnings_module

    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx2torch")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    net = ConvMeanReshape().eval()
    path = tmp_path / "kws.onnx"
    options = (dict(dynamo=False, dynamic_axes={"audio": {0: "batch"}, "logits": {0: "batch"}})
               if exporter == "torchscript" else dict(dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},)))
    with warnings_module.catch_warnings():
        warnings_module.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(net, (torch.zeros(2, 800),), str(path), input_names=["audio"], output_names=["logits"],
                          **options)
    exported = onnx.load(str(path))
    assert min(o.version for o in exported.opset_import if o.domain in ("", "ai.onnx")) >= 18
    assert {"ReduceMean", "Reshape"} <= {node.op_type for node in exported.graph.node}
    path.with_name(path.name + ".json").write_text(json.dumps(SPEC))
    with warnings_module.catch_warnings():
        warnings_module.simplefilter("error", LoaderWarning)  # no fallback to black-box
        model = load_model(f"onnx:{path}")
    assert isinstance(model, WrappedModule)
    reference = WrappedModule(net, "torch", model.labels, model.sample_rate, model.multilabel, model.clip_seconds)
    audio = 0.1 * torch.randn(6, 800, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(model(audio), net(audio), atol=1e-5)
    assert_useful_gradient(input_gradient(model, audio, logit=2))
    assert torch.allclose(input_gradient(model, audio, logit=2), input_gradient(reference, audio, logit=2), atol=1e-5)
    labels = net(audio).argmax(-1).detach()
    results = [pgd(m, audio, labels, ThreatModel("l2", eps=0.5), steps=5, generator=torch.Generator().manual_seed(0))
               for m in (model, reference)]
    assert torch.equal(results[0].success, results[1].success)
    assert torch.allclose(results[0].adversarial, results[1].adversarial, atol=1e-4)


def test_opset_18_reductions_match_onnxruntime(tmp_path):
    """ReduceX-18 (axes as a constant input, as a graph input, or none with noop_with_empty_axes) converted
    by robustaudio's converters gives onnxruntime's values."""
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    onnx2torch = pytest.importorskip("onnx2torch")
    from onnx import TensorProto, helper

    from robustaudio.models.onnx import REDUCTIONS, register_converters

    register_converters()
    nodes, outputs = [], []
    for i, op in enumerate(sorted(REDUCTIONS)):
        keep = i % 2
        nodes.append(helper.make_node(op, ["x", "axes"], [f"y{i}"], keepdims=keep))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None))
    nodes.append(helper.make_node("ReduceMean", ["x", "runtime_axes"], ["dynamic"], keepdims=0))
    nodes.append(helper.make_node("ReduceMax", ["x"], ["everything"], keepdims=0))
    nodes.append(helper.make_node("ReduceSumSquare", ["x"], ["unchanged"], noop_with_empty_axes=1))
    outputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
                for name in ("dynamic", "everything", "unchanged")]
    graph = helper.make_graph(nodes, "reductions",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4]),
                               helper.make_tensor_value_info("runtime_axes", TensorProto.INT64, [2])],
                              outputs, initializer=[helper.make_tensor("axes", TensorProto.INT64, [2], [2, 0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(tmp_path / "reduce.onnx"))
    x = np.random.default_rng(0).uniform(0.5, 2.0, (2, 3, 4)).astype(np.float32)
    axes = np.array([-1, 1], dtype=np.int64)
    expected = onnxruntime.InferenceSession(str(tmp_path / "reduce.onnx")).run(None, {"x": x, "runtime_axes": axes})
    converted = onnx2torch.convert(model)
    ours = converted(torch.from_numpy(x), torch.from_numpy(axes))
    for mine, theirs in zip(ours, expected):
        assert mine.shape == theirs.shape and np.allclose(mine.numpy(), theirs, rtol=1e-5, atol=1e-6)


def test_corrupt_onnx_file_is_named(tmp_path):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ModelError, match="broken.onnx"):
        load_model(f"onnx:{path}")
    with pytest.raises(ModelError, match="does not exist"):
        load_model(f"onnx:{tmp_path / 'nothing.onnx'}")


# ---- python: --------------------------------------------------------------------------------------

FACTORY_MODULE = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(800, 2)

    def forward(self, audio):
        return self.linear(audio)


def build():
    torch.manual_seed(0)
    return Net()


def not_a_model():
    return 42
'''


def test_python_factory_with_sidecar(tmp_path, monkeypatch):
    (tmp_path / "my_kws_models.py").write_text(textwrap.dedent(FACTORY_MODULE))
    (tmp_path / "my_kws_models.py.json").write_text(json.dumps({"sample_rate": 8000, "labels": ["on", "off"],
                                                                 "clip_seconds": 0.1}))
    monkeypatch.syspath_prepend(str(tmp_path))
    model = load_model("python:my_kws_models:build")
    assert model.labels == ("on", "off") and model.clip_samples == 800
    assert_useful_gradient(input_gradient(model, 0.1 * torch.randn(2, 800)))
    by_path = load_model(f"python:{tmp_path / 'my_kws_models.py'}:build")
    assert by_path.labels == ("on", "off")
    with pytest.raises(ModelError, match="returned a int"):
        load_model("python:my_kws_models:not_a_model")
    with pytest.raises(ModelError, match="no callable 'missing'.*build"):
        load_model("python:my_kws_models:missing")
    with pytest.raises(ModelError, match="Could not import 'no_such_module_xyz'"):
        load_model("python:no_such_module_xyz:build")
    with pytest.raises(ModelError, match="MODULE:FACTORY"):
        load_model("python:just_a_module")
    sys.modules.pop("my_kws_models", None)


def test_python_factory_returning_a_classifier_is_used_as_is(tmp_path, monkeypatch):
    (tmp_path / "my_zoo_factory.py").write_text(
        "from robustaudio.models.zoo import M3\n\ndef build():\n    return M3(labels=['a', 'b'])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = load_model("python:my_zoo_factory:build")
    assert isinstance(model, M3) and model.labels == ("a", "b") and not model.training
    sys.modules.pop("my_zoo_factory", None)


# ---- --weights for zoo architectures --------------------------------------------------------------

@pytest.mark.parametrize("layout", ["robustaudio", "panns", "dataparallel", "plain"])
def test_zoo_weights_in_published_and_robustaudio_layouts(tmp_path, layout):
    torch.manual_seed(0)
    source = M3(labels=["a", "b"]).eval()
    state = source.state_dict()
    path = tmp_path / "weights.pt"
    if layout == "robustaudio":
        save_checkpoint(path, "m3", {"labels": ["a", "b"]}, source)
    else:
        saved = {"module." + k: v for k, v in state.items()} if layout == "dataparallel" else state
        torch.save({"model": saved, "iteration": 1000} if layout == "panns" else saved, path)
    model = load_model("m3", weights=path, labels=["a", "b"]) if layout != "robustaudio" else \
        load_model("m3", weights=path)
    audio = 0.1 * torch.randn(2, source.clip_samples)
    with torch.no_grad():
        assert torch.allclose(model(audio), source(audio))


def test_zoo_weights_errors(tmp_path):
    with pytest.raises(ModelError, match="--weights"):
        load_model("m3")
    torch.save(M3().state_dict(), tmp_path / "ten.pt")  # 10 classes
    with pytest.raises(ModelError, match="labels=\\[...\\]"):
        load_model("m3", weights=tmp_path / "ten.pt", labels=["a", "b"])
    save_checkpoint(tmp_path / "m5.pt", "m5", {}, M5())
    with pytest.raises(ModelError, match="not 'm3'"):
        load_model("m3", weights=tmp_path / "m5.pt")
    with pytest.raises(ModelError, match="--weights does not apply"):
        load_model("openwakeword:alexa", weights=tmp_path / "ten.pt")


def test_zoo_plain_state_dict_takes_its_sidecar(tmp_path):
    """--model ARCH --weights FILE.pt with FILE.json: labels, rate, clip length and config keys."""
    torch.manual_seed(0)
    source = M3(labels=["yes", "no"], sample_rate=16000, clip_seconds=1.0, standardise=False).eval()
    path = tmp_path / "plain_state_dict.pt"
    torch.save(source.state_dict(), path)
    with pytest.raises(ModelError, match="labels"):  # 10 UrbanSound8K classes by default: the head does not fit
        load_model("m3", weights=path)
    (tmp_path / "plain_state_dict.json").write_text(json.dumps(
        {"labels": ["yes", "no"], "sample_rate": 16000, "clip_seconds": 1.0, "multilabel": True, "standardise": False}))
    model = load_model("m3", weights=path)
    assert model.labels == ("yes", "no") and model.sample_rate == 16000 and model.clip_samples == 16000
    assert model.multilabel and not model.standardise  # multilabel is no M3 argument: set on the model
    audio = 0.1 * torch.randn(2, 16000)
    with torch.no_grad():
        assert torch.allclose(model(audio), source(audio))
    assert load_model("m3", weights=path, labels=["a", "b"]).labels == ("a", "b")  # arguments win
    (tmp_path / "plain_state_dict.json").write_text(json.dumps({"labels": ["yes", "no"], "n_mels": 40}))
    with pytest.raises(ModelError, match="unknown key.*n_mels.*standardise"):
        load_model("m3", weights=path)


def test_sidecar_sample_rate_that_disagrees_with_the_model_is_refused(tmp_path):
    from robustaudio.models.zoo import DSCNN

    torch.save(DSCNN(labels=["a", "b"]).state_dict(), tmp_path / "kws.pt")  # DSCNN runs at 16 kHz only
    (tmp_path / "kws.json").write_text(json.dumps({"labels": ["a", "b"], "sample_rate": 44100}))
    with pytest.raises(ModelError, match=r"kws.json says sample_rate 44100 but architecture 'dscnn' runs at 16000"):
        load_model("dscnn", weights=tmp_path / "kws.pt")
    (tmp_path / "kws.json").write_text(json.dumps({"labels": ["a", "b"], "sample_rate": 16000}))
    assert load_model("dscnn", weights=tmp_path / "kws.pt").sample_rate == 16000

    net = tiny_net()
    net.sample_rate = 8000  # a module that says its rate
    torch.jit.script(net).save(str(tmp_path / "ts.pt"))
    (tmp_path / "ts.pt.json").write_text(json.dumps({**SPEC, "sample_rate": 16000}))
    with pytest.raises(ModelError, match="says sample_rate 16000 but the module") as caught:
        load_model(f"torchscript:{tmp_path / 'ts.pt'}")
    assert "\n" not in str(caught.value)

    save_tiny_ast(tmp_path / "ast")
    (tmp_path / "ast.json").write_text(json.dumps({"sample_rate": 44100}))
    with pytest.raises(ModelError, match="ast.json says sample_rate 44100 but its feature extractor runs at 16000"):
        load_model(f"hf:{tmp_path / 'ast'}")
    with pytest.raises(ModelError, match="sample_rate 22050 given"):
        load_model(f"hf:{tmp_path / 'ast'}", sample_rate=22050)


class WritesMarker:
    """Unpickling this runs ``Path.touch(marker)``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_code_running_checkpoint_is_refused_without_trust(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": M3().state_dict(), "payload": WritesMarker(marker)}, path, pickle_protocol=2)
    with pytest.raises(ModelError, match="--trust-checkpoint"):
        load_model("m3", weights=path)
    assert not marker.exists()
    assert isinstance(load_model("m3", weights=path, trust_checkpoint=True), M3)
    assert marker.exists(), "the payload is real: trusting the file runs it"


@pytest.mark.slow
@pytest.mark.parametrize("arch, layout", [("cnn14", "panns"), ("ast-base", "dataparallel")])
def test_full_size_published_layouts(tmp_path, arch, layout):
    from robustaudio.models import ARCHITECTURES

    source = ARCHITECTURES[arch]().eval()
    state = source.state_dict()
    path = tmp_path / "published.pth"
    torch.save({"model": state} if layout == "panns" else {"module." + k: v for k, v in state.items()}, path)
    del state
    model = load_model(arch, weights=path)
    audio = 0.1 * torch.randn(1, source.clip_samples)
    with torch.no_grad():
        assert torch.allclose(model(audio), source(audio), atol=1e-5)


# ---- openwakeword: --------------------------------------------------------------------------------

WAKEWORD_CLIPS = sorted((DATA / "wakeword").glob("*.flac"))


@pytest.fixture(scope="module")
def openwakeword_reference():
    """openWakeWord's own streaming scorer (onnxruntime on the three ONNX files)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model_module = pytest.importorskip("openwakeword.model", reason="needs openwakeword 0.5.1 (--no-deps), tqdm, "
                                                                    "scikit-learn")
    from robustaudio.models.wakeword import available_models

    detectors = {}

    def scores(name: str, clip: np.ndarray) -> np.ndarray:
        """Per-80-ms scores of ``predict_clip`` with 2 s of padding, which also flushes the previous clip."""
        if name not in detectors:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                detectors[name] = model_module.Model(wakeword_models=[str(available_models()[name])],
                                                     inference_framework="onnx")
        return np.array([list(p.values())[0] for p in detectors[name].predict_clip(clip, padding=2)])

    return scores


@pytest.mark.parametrize("name", ["alexa", "hey_jarvis"])
def test_openwakeword_matches_openwakeword(name, openwakeword_reference):
    model = load_model(f"openwakeword:{name}")
    assert model.labels == (f"not-{name}", name) and not model.multilabel
    fired = []
    for path in WAKEWORD_CLIPS:
        clip, _ = soundfile.read(path, dtype="int16")
        expected = openwakeword_reference(name, clip)[8 + model.window:]  # windows with a full context
        audio = torch.from_numpy(clip.astype(np.float32) / 32768)[None]
        with torch.no_grad():
            ours = model.window_probabilities(audio)[0, :, 1].numpy()
            clip_score = torch.softmax(model(audio), -1)[0, 1].item()
        count = min(len(expected), len(ours))
        assert count >= 10 and np.abs(ours[:count] - expected[:count]).max() <= 1e-4, path.name
        assert clip_score == pytest.approx(ours.max(), abs=1e-6)
        fired.append(clip_score > 0.5)
    assert fired == [name in path.name for path in WAKEWORD_CLIPS]  # each clip fires its own detector only


def test_openwakeword_gradients_and_deactivation_goal():
    pytest.importorskip("onnx")
    model = load_model("openwakeword:alexa")
    clip, _ = soundfile.read(DATA / "wakeword" / "alexa-en_m8.flac", dtype="float32")
    audio = torch.nn.functional.pad(torch.from_numpy(clip), (0, model.clip_samples - len(clip)))[None]
    grad = input_gradient(model, audio, logit=1)
    assert_useful_gradient(grad)
    logits = model(audio)
    assert torch.allclose(logits[:, 0], -logits[:, 1]) and model.predict(logits).item() == 1
    step = audio - 0.002 * input_gradient(model, audio, logit=1).sign()  # one FGSM step against "alexa"
    with torch.no_grad():
        assert model(step)[0, 1] < logits[0, 1]


def test_openwakeword_unknown_name():
    pytest.importorskip("onnx")
    with pytest.raises(ModelError, match="alexa"):
        load_model("openwakeword:hey_siri")


def test_describe_loaders_has_a_line_per_prefix():
    lines = describe_loaders()
    for prefix in ("hf:", "torchscript:", "onnx:", "python:", "openwakeword:", "--weights"):
        assert any(prefix in line for line in lines), prefix
