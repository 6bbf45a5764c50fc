"""Scale-out and determinism: a two-worker Ray run writes the records of a single-process run."""

import pytest

from robustaudio.attacks import ThreatModel
from robustaudio.data import AudioDataset
from robustaudio.models import load_model
from robustaudio.report import read_records
from robustaudio.runner import run_attack


def records(out, **options):
    """The bundled default on 12 test clips (Ray workers must import the model's class: no test-local models)."""
    threats = [ThreatModel("linf", eps=0.0005), ThreatModel("linf", eps=0.002), ThreatModel("l2", snr_db=30)]
    run_attack(load_model("cnn"), "cnn", AudioDataset.from_path(split="test"), threats, out, steps=2, batch_size=4,
               seed=5, limit=12, **options)
    return read_records(out).drop(columns="seconds")  # wall time is the one field allowed to differ


def test_two_runs_with_one_seed_are_identical(tmp_path):
    assert records(tmp_path / "a").equals(records(tmp_path / "b"))


def test_a_two_worker_ray_run_equals_the_single_process_run(tmp_path):
    pytest.importorskip("ray")
    single = records(tmp_path / "single")
    sharded = records(tmp_path / "ray", ray_address="local", workers=2)
    assert sharded.equals(single)
    assert (tmp_path / "ray" / "sanity.json").read_text() == (tmp_path / "single" / "sanity.json").read_text()
