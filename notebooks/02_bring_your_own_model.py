# %% [markdown]
# # Bring your own model: a Python class, TorchScript, ONNX, Hugging Face
#
# robustaudio attacks any model behind its `Classifier` interface: waveform `[B, T]` in `[-1, 1]` → logits
# `[B, K]`. This notebook wraps models four ways and checks each wrapped model against the original: same
# logits, same gradients, so the same attack results. About a minute on a 2-core CPU.

# %%
import json
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from robustaudio.attacks import ThreatModel, pgd
from robustaudio.data import AudioDataset
from robustaudio.models import Classifier, load_model
from robustaudio.models.frontends import LogMel

torch.set_num_threads(2)
work = Path(tempfile.mkdtemp())
data = AudioDataset.from_path(split="test")  # the bundled minievents clips (10 classes, 16 kHz, 1 s)

# %% [markdown]
# ## 1. Your own `nn.Module`, as a Classifier
#
# Subclass `Classifier` and split the forward pass in three stages: `features` (the front end, inside the
# graph so waveform attacks get exact gradients), `embeddings` (one latent per modality) and `head`. The
# feature-domain attack, the latent metrics (density, convexity) and mixup on latents need nothing else.

# %%
class TinyTagger(Classifier):
    sample_rate = 16000
    clip_seconds = 1.0

    def __init__(self, labels):
        super().__init__()
        self.labels = tuple(labels)
        self.front_end = LogMel(sample_rate=16000, n_mels=32)
        self.encoder = nn.Sequential(nn.Conv1d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten())
        self.classifier = nn.Linear(64, len(self.labels))

    def features(self, audio):                       # [B, T] -> [B, 32 mels, frames]
        return self.front_end(audio)

    def embeddings(self, features, video=None):      # -> {"audio": [B, 64]}
        return {"audio": self.encoder(features)}

    def head(self, embeddings):                      # -> [B, K] logits
        return self.classifier(embeddings["audio"])

torch.manual_seed(0)
mine = TinyTagger(data.label_names).eval()
batch = next(data.batches(mine, 8))
print(mine(batch.audio).shape, {k: v.shape for k, v in mine.embeddings(mine.features(batch.audio)).items()})

# %% [markdown]
# It is untrained, so attacking it means little; the point is the contract. From the command line, a module
# like this is reached with `--model python:my_models.py:make_tagger`.
#
# ## 2. TorchScript
#
# A scripted or traced module is a function from waveforms to logits; what robustaudio also needs (sample
# rate, labels, multi-label or not, clip length) comes from a sidecar JSON next to the file. Here the bundled
# CNN is traced, saved, loaded back with `torchscript:` and attacked like the original.

# %%
cnn = load_model("cnn")
spec = {"sample_rate": cnn.sample_rate, "labels": list(cnn.labels), "multilabel": False,
        "clip_seconds": cnn.clip_seconds}
with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream; still the common export
    torch.jit.trace(cnn, torch.zeros(2, cnn.clip_samples)).save(str(work / "cnn.pt"))
    (work / "cnn.pt.json").write_text(json.dumps(spec))
    scripted = load_model(f"torchscript:{work / 'cnn.pt'}")

batch = next(data.batches(cnn, 32))
with torch.no_grad():
    print("max |logit difference|:", float((scripted(batch.audio) - cnn(batch.audio)).abs().max()))

threat = ThreatModel("linf", eps=0.002)
for name, model in (("bundled cnn", cnn), ("torchscript copy", scripted)):
    result = pgd(model, batch.audio, batch.labels, threat, steps=10, generator=torch.Generator().manual_seed(0))
    print(f"{name:17s} attack success on 32 clips: {result.success.float().mean():.3f}")

# %% [markdown]
# ## 3. ONNX
#
# `onnx:FILE` converts the graph back to torch with onnx2torch, so attacks get gradients; if conversion fails
# it runs onnxruntime without gradients (a warning says so) and only black-box attacks apply. A waveform CNN
# from the thesis zoo (M5) exports and converts exactly. (The bundled log-mel CNN does not export: torch's ONNX
# exporter has no complex STFT; use TorchScript for such models.)

# %%
from robustaudio.models.zoo import M5

torch.manual_seed(0)
m5 = M5(labels=("yes", "no", "up", "down")).eval()
audio = 0.1 * torch.randn(2, m5.clip_samples)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    torch.onnx.export(m5, (audio,), str(work / "m5.onnx"), input_names=["audio"], output_names=["logits"],
                      dynamic_axes={"audio": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
                      do_constant_folding=False)  # folded BatchNorms trip onnx2torch 1.5 (the loader's warning says so)
(work / "m5.onnx.json").write_text(json.dumps({"sample_rate": m5.sample_rate, "labels": list(m5.labels),
                                                "clip_seconds": m5.clip_seconds}))
converted = load_model(f"onnx:{work / 'm5.onnx'}")
x = audio.clone().requires_grad_(True)
y = audio.clone().requires_grad_(True)
m5(x)[:, 0].sum().backward()
converted(y)[:, 0].sum().backward()
with torch.no_grad():
    print("max |logit difference|:", float((m5(audio) - converted(audio)).abs().max()))
print("max |gradient difference|:", float((x.grad - y.grad).abs().max()))

# %% [markdown]
# ## 4. A Hugging Face audio classifier
#
# `hf:DIR` loads an `AutoModelForAudioClassification` directory and rebuilds its feature extractor as an
# in-graph torch front end. A real checkpoint (e.g. an AudioSet AST) is a directory saved with
# `save_pretrained`; here a tiny randomly initialised AST stands in for one, to show that the wrapped model
# computes what transformers computes.

# %%
import transformers

labels = {0: "bird", 1: "dog", 2: "siren"}
config = transformers.ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                num_mel_bins=32, max_length=100, id2label=labels,
                                label2id={v: k for k, v in labels.items()})
torch.manual_seed(0)
reference = transformers.ASTForAudioClassification(config).eval()
extractor = transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=100)
reference.save_pretrained(work / "tiny-ast")
extractor.save_pretrained(work / "tiny-ast")

wrapped = load_model(f"hf:{work / 'tiny-ast'}")
clip = 0.1 * torch.randn(1, 16000)
with torch.no_grad():
    expected = reference(**extractor(clip[0].numpy(), sampling_rate=16000, return_tensors="pt")).logits
    print(wrapped.labels, "max |logit difference|:", float((wrapped(clip) - expected).abs().max()))

# %% [markdown]
# Every wrapped model above works with every command: `robustaudio attack --model torchscript:cnn.pt --data
# clips/ --eps 0.002`, `--model onnx:m5.onnx --attack square` (black-box), `--model hf:./tiny-ast`.
