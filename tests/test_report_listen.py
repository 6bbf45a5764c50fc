"""Listen and look: the recomputed adversarial examples of attack reports (robustaudio.report.listen)."""

import base64
import io
import re
import wave

import pandas as pd
import torch
from conftest import LinearClassifier

from robustaudio.attacks import ThreatModel
from robustaudio.data import AudioDataset
from robustaudio.report import build_report
from robustaudio.report.listen import AUDIO_CAP_BYTES, MAX_EXAMPLES, amplification, choose_clips, wav_bytes
from robustaudio.runner import AttackSpec, RunOptions, run_attack


def test_attack_report_embeds_recomputed_examples_to_listen_to(attack_run):
    html = (attack_run / "report.html").read_text()
    assert "Recomputed for this report" in html and f"{AUDIO_CAP_BYTES / 1e6:g} MB" in html
    audio = re.findall(r"<audio controls[^>]*src='data:audio/wav;base64,([^']+)'", html)
    examples = html.count("<div class='example'>")
    assert 2 <= examples <= MAX_EXAMPLES and len(audio) == 3 * examples
    assert sum(len(base64.b64decode(a)) for a in audio) <= AUDIO_CAP_BYTES
    with wave.open(io.BytesIO(base64.b64decode(audio[0]))) as handle:
        assert handle.getsampwidth() == 2 and handle.getnchannels() == 1 and handle.getframerate() == 16000
        assert handle.getnframes() == 16000
    assert re.search(r"δ amplified ×\d+", html) and html.count("data:image/jpeg;base64,") == examples
    markdown = (attack_run / "report.md").read_text()
    assert "[clean](listen/01-clean.wav)" in markdown and (attack_run / "listen" / "01-delta.wav").is_file()
    assert (attack_run / "figures" / "listen_01.jpg").is_file()
    assert "Broken by the quietest perturbation" in html and "Still robust" in html


def test_examples_teach_extremes_then_one_per_class():
    records = pd.DataFrame({
        "clip_id": list("abcdefgh"), "label": ["x", "x", "y", "y", "z", "z", "w", "w"], "condition": ["c"] * 8,
        "attacked": [True] * 8, "success": [True, False, True, False, True, False, True, True],
        "snr_db": [40, 30, 45, 30, 35, 30, 50, 20], "adv_score": [0.1, 0.9, 0.2, 0.99, 0.1, 0.5, 0.1, 0.1]})
    chosen = choose_clips(records, "c", count=5)
    assert [row["clip_id"] for row, _ in chosen][:2] == ["g", "d"]  # quietest fooling δ; most confident robust
    assert {row["label"] for row, _ in chosen} == {"w", "x", "y", "z"} and len(chosen) == 5


def test_amplification_and_wav():
    assert amplification(0.001) == 500 and amplification(0.6) == 1 and amplification(0.0) == 1
    data = wav_bytes(torch.linspace(-2, 2, 100).numpy(), 8000)
    with wave.open(io.BytesIO(data)) as handle:
        frames = handle.readframes(100)
    assert int.from_bytes(frames[:2], "little", signed=True) == -32767  # clipped to full scale


def test_examples_are_skipped_with_a_reason(tmp_path, write_dataset):
    labels = ["bird", "dog"]
    root = write_dataset(labels=labels, root=tmp_path / "data")
    g = torch.Generator().manual_seed(0)
    model = LinearClassifier(torch.randn(2, 16000, generator=g) * 0.05, torch.zeros(2), labels=labels)
    pgd, options = AttackSpec("pgd", steps=2), RunOptions(batch_size=4, sanity=False)
    out = run_attack(model, "linear-test", AudioDataset.from_path(root), [ThreatModel("linf", eps=0.001)],
                     tmp_path / "unknown", pgd, options)
    build_report(out)
    assert "No examples to listen to: the model 'linear-test' could not be loaded here" in (out / "report.md").read_text()
    # A model that a registered name loads, but not the one the run used: the clean scores tell them apart.
    out = run_attack(model, "cnn", AudioDataset.from_path(root), [ThreatModel("linf", eps=0.001)], tmp_path / "other",
                     pgd, options)
    build_report(out)
    markdown = (out / "report.md").read_text()
    assert "No examples to listen to: the model loaded as 'cnn' has other labels than the run's model" in markdown
    from robustaudio.models import load_model
    cnn_labels = list(load_model("cnn").labels)
    root = write_dataset(labels=["bird", "speech"], root=tmp_path / "data2")
    bias = torch.zeros(10)
    bias[cnn_labels.index("bird")] = 0.5  # right on the bird clips: they are attacked
    impostor = LinearClassifier(torch.randn(10, 16000, generator=g) * 0.001, bias, labels=cnn_labels)
    out = run_attack(impostor, "cnn", AudioDataset.from_path(root), [ThreatModel("linf", eps=0.001)],
                     tmp_path / "impostor", pgd, options)
    build_report(out)
    assert "does not reproduce the run's clean scores" in (out / "report.md").read_text()
    out = run_attack(impostor, "linear-test", AudioDataset.from_path(root), [ThreatModel("linf", eps=0.001)],
                     tmp_path / "off", pgd, options)
    build_report(out, listen_examples=False)
    assert "Listen and look" not in (out / "report.md").read_text()



def test_a_report_refusing_pickled_weights_says_how_to_allow_them(tmp_path, write_dataset):
    """The loader's fix was cut off at its first sentence, so the report never said --trust-checkpoint."""
    import argparse
    import json

    labels = ["bird", "dog"]
    root = write_dataset(labels=labels, root=tmp_path / "data")
    g = torch.Generator().manual_seed(0)
    model = LinearClassifier(torch.randn(2, 16000, generator=g) * 0.05, torch.zeros(2), labels=labels)
    out = run_attack(model, "cnn", AudioDataset.from_path(root), [ThreatModel("linf", eps=0.001)], tmp_path / "run",
                     AttackSpec("pgd", steps=2), RunOptions(batch_size=4, sanity=False))
    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict": {}, "extra": argparse.Namespace(a=1)}, pickled)
    meta = json.loads((out / "run.json").read_text())
    meta["settings"]["weights"] = str(pickled)
    (out / "run.json").write_text(json.dumps(meta))
    build_report(out)
    markdown = (out / "report.md").read_text()
    assert "holds pickled Python objects" in markdown
    assert "To allow it: `robustaudio report RUN_DIR --trust-checkpoint`" in markdown
