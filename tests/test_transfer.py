"""--transfer-to: a second model scores the adversarial waveforms made against the first."""

import pytest
import torch
from click.testing import CliRunner

from robustaudio.attacks import ThreatModel
from robustaudio.cli import main
from robustaudio.data import AudioDataset
from robustaudio.metrics.transfer import TransferTarget
from robustaudio.models import ModelError, load_model
from robustaudio.models.base import WholeModel
from robustaudio.report import build_report, read_records
from robustaudio.runner import AttackSpec, RunOptions, run_attack


class Reordered(WholeModel):
    """``model`` with its labels (and logits) in reverse order: the same decisions, other indices."""

    def __init__(self, model, sample_rate=None):
        super().__init__()
        self.inner, self.labels = model, tuple(reversed(model.labels))
        self.sample_rate, self.clip_seconds = sample_rate or model.sample_rate, model.clip_seconds

    def forward_features(self, features, video=None):
        return self.inner(features).flip(-1)


@pytest.fixture(scope="module")
def cnn():
    return load_model("cnn")


def test_transfer_to_the_same_model_reproduces_its_decisions(cnn, tmp_path):
    # The same network with its labels reordered: matched by name, every fooled clip transfers.
    run = run_attack(cnn, "cnn", AudioDataset.from_path(split="test"), [ThreatModel("linf", eps=0.002)],
                     tmp_path / "run", AttackSpec("pgd", steps=5), RunOptions(limit=12, sanity=False),
                     transfer=TransferTarget(Reordered(cnn), "cnn-reordered", cnn))
    records = read_records(run)
    assert (records["transfer_model"] == "cnn-reordered").all()
    assert records["transfer_clean_correct"].tolist() == records["clean_correct"].tolist()
    assert records["transfer_adv_correct"].tolist() == records["adv_correct"].tolist()
    assert records["transfer_adv_pred"].tolist() == records["adv_pred"].tolist()
    transfer = build_report(run)["conditions"][0]["transfer"]
    assert records["success"].any() and transfer["transfer_rate"]["value"] == 1.0
    assert "Transfer to cnn-reordered" in (run / "report.md").read_text()


def test_runs_without_transfer_leave_the_fields_empty(cnn, tmp_path):
    run = run_attack(cnn, "cnn", AudioDataset.from_path(split="test"), [ThreatModel("linf", eps=0.001)],
                     tmp_path / "run", AttackSpec("pgd", steps=2), RunOptions(limit=4, sanity=False))
    assert read_records(run)["transfer_model"].isna().all()
    assert "transfer" not in build_report(run)["conditions"][0]


def test_target_must_share_labels_and_sample_rate(cnn):
    wake = load_model("openwakeword:alexa")
    with pytest.raises(ModelError, match="has no label"):
        TransferTarget(wake, "openwakeword:alexa", cnn)
    with pytest.raises(ModelError, match="8000 Hz"):
        TransferTarget(Reordered(cnn, sample_rate=8000), "slow", cnn)


def test_target_labels_map_multilabel_rows_by_name(cnn):
    target = TransferTarget(Reordered(cnn), "r", cnn)
    labels = torch.zeros(2, len(cnn.labels))
    labels[0, 0] = labels[1, 3] = 1
    mapped = target.target_labels(labels)
    last = len(cnn.labels) - 1
    assert mapped[0, last] == 1 and mapped[1, last - 3] == 1 and mapped.sum() == 2


def test_cli_refuses_transfer_of_feature_perturbations(tmp_path):
    result = CliRunner().invoke(main, ["attack", "--eps", "1", "--domain", "feature", "--transfer-to", "ast",
                                       "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "cannot be played to another model" in result.output
