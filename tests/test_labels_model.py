"""Robustness without ground truth: `--labels model` takes the model's clean decisions as the labels."""

import torch
from conftest import LinearClassifier

from robustaudio.attacks import ThreatModel
from robustaudio.data import AudioDataset
from robustaudio.report import read_records
from robustaudio.runner import AttackSpec, RunOptions, run_attack


class Tagger(LinearClassifier):
    multilabel = True
    threshold = 0.5


def test_labels_from_a_multilabel_model_are_its_own_tags(tmp_path, write_dataset):
    # The data's labels ("field", "night") are unknown to the model: they are never read.
    root = write_dataset(labels=("field", "night"), per_label=4)
    g = torch.Generator().manual_seed(0)
    model = Tagger(torch.randn(3, 16000, generator=g) * 0.02, torch.tensor([0.5, -0.5, 0.0]),
                   labels=["wren", "owl", "wind"])
    out = run_attack(model, "tagger", AudioDataset.from_path(root), [ThreatModel("linf", eps=0.01)], tmp_path / "run",
                     AttackSpec("pgd", steps=5),
                     RunOptions(batch_size=4, sanity=False, labels_from="model"))
    records = read_records(out)
    assert len(records) == 8
    assert (records["label"] == records["clean_pred"]).all()
    detected = records["clean_pred"] != ""
    assert records.loc[detected, "clean_correct"].all() and records.loc[detected, "attacked"].all()
    assert not records.loc[~detected, "attacked"].any()  # nothing to switch off
    flipped = records.loc[detected, "success"]
    assert (records.loc[detected, "adv_correct"] == ~flipped.astype(bool)).all()


def test_labels_from_a_single_label_model(tmp_path, write_dataset):
    root = write_dataset(labels=("a", "b"), per_label=3)
    g = torch.Generator().manual_seed(1)
    model = LinearClassifier(torch.randn(4, 16000, generator=g) * 0.02, torch.zeros(4), labels=["w", "x", "y", "z"])
    out = run_attack(model, "lin", AudioDataset.from_path(root), [ThreatModel("l2", eps=0.5)], tmp_path / "run",
                     AttackSpec("pgd", steps=3),
                     RunOptions(batch_size=3, sanity=False, labels_from="model"))
    records = read_records(out)
    assert (records["label"] == records["clean_pred"]).all() and records["clean_correct"].all()
    assert records["label"].isin(["w", "x", "y", "z"]).all()
