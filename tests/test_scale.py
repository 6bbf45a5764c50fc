"""Scale-out and determinism: a two-worker Ray run writes the records of a single-process run."""

import pytest
import torch

from robustaudio.attacks import ThreatModel
from robustaudio.data import AudioDataset
from robustaudio.models import load_model
from robustaudio.report import read_records
from robustaudio.runner import AttackSpec, RunOptions, run_attack


def records(out, precision="fp32", **options):
    """The bundled default on 12 test clips (Ray workers must import the model's class: no test-local models)."""
    threats = [ThreatModel("linf", eps=0.0005), ThreatModel("linf", eps=0.002), ThreatModel("l2", snr_db=30)]
    run_attack(load_model("cnn"), "cnn", AudioDataset.from_path(split="test"), threats, out, AttackSpec("pgd", steps=2, precision=precision),
               RunOptions(batch_size=4, seed=5, limit=12, **options))
    return read_records(out).drop(columns="seconds")  # wall time is the one field allowed to differ


def test_two_runs_with_one_seed_are_identical(tmp_path):
    assert records(tmp_path / "a").equals(records(tmp_path / "b"))


def test_a_two_worker_ray_run_equals_the_single_process_run(tmp_path):
    """Bit for bit at the workers' one intra-op thread: with two, torch's float32 sums round differently (an
    L2 PGD row of this run differed in its 7th digit), so it relies on conftest's one thread for the
    whole suite, not on the order in which other test modules happen to set it."""
    assert torch.get_num_threads() == 1
    pytest.importorskip("ray")
    single = records(tmp_path / "single")
    sharded = records(tmp_path / "ray", ray_address="local", workers=2)
    assert sharded.equals(single)
    assert (tmp_path / "ray" / "sanity.json").read_text() == (tmp_path / "single" / "sanity.json").read_text()


# slow (about 25 s): bf16 is for GPUs; CPU autocast is checked with -m slow
@pytest.mark.slow
def test_bf16_autocast_stays_within_tolerance_of_fp32(tmp_path):
    fp32 = records(tmp_path / "fp32")
    bf16 = records(tmp_path / "bf16", precision="bf16")
    assert (bf16["clean_correct"] == fp32["clean_correct"]).all()  # clean decisions stay in float32
    for condition in fp32["condition"].unique():
        a = fp32[fp32["condition"] == condition]["adv_correct"].sum()
        b = bf16[bf16["condition"] == condition]["adv_correct"].sum()
        assert abs(int(a) - int(b)) <= 2, (condition, a, b)  # of 12 clips
    eps = bf16["eps_setting"]
    linf = bf16[eps.notna()]
    assert (linf["linf"] <= linf["eps_setting"]).all()  # exactly, under bf16 too: projections stay in float32


def test_resuming_with_another_eps_is_refused(tmp_path):
    import json

    from click.testing import CliRunner

    from robustaudio.cli import main

    out = tmp_path / "run"
    first = CliRunner().invoke(main, ["attack", "--eps", "0.002", "--limit", "4", "--steps", "1", "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert isinstance(json.loads((out / "run.json").read_text())["command"], list)  # argv, for the record
    second = CliRunner().invoke(main, ["attack", "--eps", "0.005", "--limit", "4", "--steps", "1", "--out", str(out)])
    assert second.exit_code != 0
    assert "other settings (differs in: threats)" in second.output and "--restart" in second.output


def test_a_run_refused_before_any_batch_does_not_block_the_corrected_command(tmp_path):
    """An L2 budget that contains the whole box is refused at the first batch, after run.json was written;
    the corrected command then runs instead of asking for --restart (nothing of the refused run is lost)."""
    from click.testing import CliRunner

    from robustaudio.cli import main

    out = tmp_path / "run"
    refused = CliRunner().invoke(main, ["attack", "--norm", "l2", "--eps", "1e9", "--limit", "2", "--steps", "1",
                                        "--no-sanity", "--out", str(out)])
    assert refused.exit_code != 0 and "enough to turn" in refused.output
    fixed = CliRunner().invoke(main, ["attack", "--norm", "l2", "--eps", "0.5", "--limit", "2", "--steps", "1",
                                      "--no-sanity", "--out", str(out)])
    assert fixed.exit_code == 0, fixed.output
