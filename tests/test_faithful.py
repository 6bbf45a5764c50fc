"""A user's Hugging Face model is attacked as it runs in deployment: ``hf:DIR`` gives the logits and the
decisions of ``feature_extractor(...)`` then ``model(...)``, for clips shorter than, as long as and
longer than what the model reads, through robustaudio's own data loading."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from robustaudio.attacks import ThreatModel, pgd
from robustaudio.data import AudioDataset
from robustaudio.data.audio import fit_clip_to_data, summarize_notes
from robustaudio.models import load_model

transformers = pytest.importorskip("transformers")

RATE = 16000
AST_FRAMES = 150  # max_length: 1.515 s of audio, more than the 1 s clips
AST_COVERED = (AST_FRAMES - 1) * 160 + 400  # the samples that give exactly AST_FRAMES fbank frames
LABELS = ("bird", "dog", "rain", "siren")
TOLERANCE = 1e-4




def label_config() -> dict:
    return {"id2label": dict(enumerate(LABELS)), "label2id": {name: i for i, name in enumerate(LABELS)}}


@pytest.fixture(scope="module")
def ast_dir(tmp_path_factory):
    """A tiny random AST saved as a user would: model and feature extractor via save_pretrained."""
    directory = tmp_path_factory.mktemp("ast")
    torch.manual_seed(0)
    config = transformers.ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                    num_mel_bins=32, max_length=AST_FRAMES, initializer_range=0.5, **label_config())
    transformers.ASTForAudioClassification(config).eval().save_pretrained(directory)
    transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=AST_FRAMES).save_pretrained(directory)
    return directory


def save_wav2vec2(directory, layer_norm: bool):
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4),
                                         conv_kernel=(10, 4), num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=2, classifier_proj_size=8,
                                         feat_extract_norm="layer" if layer_norm else "group",
                                         initializer_range=0.5, **label_config())
    transformers.Wav2Vec2ForSequenceClassification(config).eval().save_pretrained(directory)
    # wav2vec2-large style models take an attention mask; base style models do not
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True,
                                          return_attention_mask=layer_norm).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def w2v_dir(tmp_path_factory):
    return save_wav2vec2(tmp_path_factory.mktemp("w2v"), layer_norm=False)


def reference(directory):
    """transformers' own pipeline for the folder: extractor then model, one clip at a time."""
    model = transformers.AutoModelForAudioClassification.from_pretrained(str(directory)).eval()
    extractor = transformers.AutoFeatureExtractor.from_pretrained(str(directory))

    def logits(clips) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([model(**extractor(np.asarray(torch.as_tensor(clip).detach(), dtype=np.float32),
                                                sampling_rate=RATE,
                                                return_tensors="pt")).logits for clip in clips])
    return logits


def write_clips(root, samples: int, count: int = 4, seed: int = 1) -> list[np.ndarray]:
    """``count`` clips of ``samples`` samples as float WAVs in class folders; returns what the files hold."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / RATE
    clips = []
    for i in range(count):
        clip = (0.3 * rng.uniform(0.2, 1) * np.sin(2 * np.pi * rng.uniform(100, 4000) * t)
                + 0.05 * rng.standard_normal(samples)).astype(np.float32)
        folder = root / LABELS[i % len(LABELS)]
        folder.mkdir(parents=True, exist_ok=True)
        soundfile.write(folder / f"clip{i}.wav", clip, RATE, subtype="FLOAT")
        clips.append(soundfile.read(folder / f"clip{i}.wav", dtype="float32")[0])
    return clips


def load_batch(model, root):
    """The clips as robustaudio's data loader gives them to ``model``, after fitting its clip length to the
    data; and, per row, the index of the clip in :func:`write_clips`' list."""
    dataset = AudioDataset.from_path(root)
    fit_clip_to_data(model, [clip.path for clip in dataset.clips])
    batch = next(dataset.batches(model, batch_size=len(dataset)))
    return batch, [int(Path(clip_id).stem.removeprefix("clip")) for clip_id in batch.ids]


@pytest.mark.parametrize("samples, frames", [(RATE, 98), (AST_COVERED, AST_FRAMES), (2 * RATE, 198)],
                         ids=["shorter", "equal", "longer"])
def test_ast_logits_match_transformers(ast_dir, tmp_path, samples, frames):
    model = load_model(f"hf:{ast_dir}")
    assert model.clip_seconds_from_data and model.max_clip_seconds == pytest.approx(AST_COVERED / RATE)
    clips = write_clips(tmp_path / "data", samples)
    batch, order = load_batch(model, tmp_path / "data")
    assert model.clip_samples == min(samples, AST_COVERED)  # no waveform padding; longer clips cut where HF stops
    assert 1 + (batch.audio.shape[1] - 400) // 160 == min(frames, AST_FRAMES)
    with torch.no_grad():
        ours = model(batch.audio)
    expected = reference(ast_dir)([clips[i] for i in order])
    assert (ours - expected).abs().max() <= TOLERANCE
    assert torch.equal(ours.argmax(-1), expected.argmax(-1))


@pytest.mark.parametrize("extractor", [dict(do_normalize=False), dict(mean=-2.0, std=3.0, padding_value=-1.0)],
                         ids=["raw", "own-statistics"])
def test_ast_padding_and_normalisation_follow_the_extractor(ast_dir, tmp_path, extractor):
    """Frames are padded with a raw 0 (the extractor's ZeroPad2d, whatever padding_value says), then normalised."""
    directory = tmp_path / "ast"
    transformers.ASTForAudioClassification.from_pretrained(str(ast_dir)).save_pretrained(directory)
    transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=AST_FRAMES, **extractor).save_pretrained(directory)
    model = load_model(f"hf:{directory}")
    clips = write_clips(tmp_path / "data", RATE // 2, count=2)
    batch, order = load_batch(model, tmp_path / "data")
    with torch.no_grad():
        ours = model(batch.audio)
    assert (ours - reference(directory)([clips[i] for i in order])).abs().max() <= TOLERANCE


@pytest.mark.parametrize("samples", [RATE // 2, RATE, 3 * RATE // 2], ids=["shorter", "equal", "longer"])
@pytest.mark.parametrize("layer_norm", [False, True], ids=["base", "attention-mask"])
def test_wav2vec2_logits_match_transformers(w2v_dir, tmp_path, samples, layer_norm):
    directory = w2v_dir if not layer_norm else save_wav2vec2(tmp_path / "w2v-large", layer_norm=True)
    model = load_model(f"hf:{directory}")
    assert model.clip_seconds == 1.0 and model.max_clip_seconds is None  # 1 s until the data says otherwise
    clips = write_clips(tmp_path / "data", samples)
    batch, order = load_batch(model, tmp_path / "data")
    assert model.clip_samples == samples
    with torch.no_grad():
        ours = model(batch.audio)
    expected = reference(directory)([clips[i] for i in order])
    assert (ours - expected).abs().max() <= TOLERANCE


def test_clip_length_given_by_the_user_is_kept(ast_dir, tmp_path):
    model = load_model(f"hf:{ast_dir}", clip_seconds=0.5)
    assert not model.clip_seconds_from_data
    write_clips(tmp_path, RATE)
    assert fit_clip_to_data(model, sorted(tmp_path.rglob("*.wav"))) is None
    assert model.clip_seconds == 0.5


@pytest.mark.parametrize("kind", ["ast", "w2v"])
def test_attack_decisions_match_transformers(ast_dir, w2v_dir, tmp_path, kind):
    """PGD's adversarial audio, scored by transformers' pipeline, gets robustaudio's decisions clip by clip."""
    directory = ast_dir if kind == "ast" else w2v_dir
    model = load_model(f"hf:{directory}")
    write_clips(tmp_path / "data", RATE, count=8, seed=2)
    batch, _ = load_batch(model, tmp_path / "data")
    hf = reference(directory)
    clean = hf(batch.audio)
    labels = clean.argmax(-1)  # attack the clean decisions: robust accuracy = clips whose decision holds
    result = pgd(model, batch.audio, labels, ThreatModel("linf", eps=0.002), steps=5,
                 generator=torch.Generator().manual_seed(0))
    ours = model.predict(result.logits)
    theirs = hf(result.adversarial).argmax(-1)
    assert torch.equal(ours, theirs)
    robust = (ours == labels).float().mean()
    assert robust == (theirs == labels).float().mean()
    assert 0 < robust < 1, "the budget should break some clips and not others"


def test_reading_notes_are_counted(ast_dir, tmp_path):
    model = load_model(f"hf:{ast_dir}", clip_seconds=1.0)
    write_clips(tmp_path / "data", RATE // 2, count=3)
    soundfile.write(tmp_path / "data" / "bird" / "long.wav", 0.1 * np.ones(RATE * 3, dtype=np.float32), 8000)
    batch = next(AudioDataset.from_path(tmp_path / "data").batches(model, batch_size=8))
    line = summarize_notes(w["message"] for w in batch.warnings if w["kind"] == "note")
    assert line == ("resampled 1 clip from 8000 Hz to 16000 Hz; padded 3 clips shorter than 1 s with zeros at the "
                    "end; cropped 1 clip longer than 1 s (the start kept)")
