"""`robustaudio attack`, `report` and `models` end to end on the bundled default."""

import json
import os
import signal
import subprocess
import sys
import time

from click.testing import CliRunner

from robustaudio.cli import main
from robustaudio.report import read_records


def test_attack_writes_records_card_and_reports(tmp_path):
    out = tmp_path / "run"
    args = ["attack", "--norm", "linf", "--eps", "0.0005", "--eps", "0.002", "--limit", "12", "--steps", "3",
            "--batch-size", "6", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for name in ("records.jsonl", "card.json", "report.md", "report.html", "run.json"):
        assert (out / name).is_file(), name
    card = json.loads((out / "card.json").read_text())
    assert card["clips"] == 12 and card["complete"]
    assert [c["eps"] for c in card["conditions"]] == [0.0005, 0.002]
    assert card["clean_accuracy"]["value"] >= card["conditions"][0]["robust_accuracy"]["value"] \
        >= card["conditions"][1]["robust_accuracy"]["value"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "robust accuracy" in result.output and "report.html" in result.output
    # Re-rendering from records alone gives the same card.
    (out / "card.json").unlink()
    assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0
    assert json.loads((out / "card.json").read_text()) == card


def test_eps_values_after_one_flag_form_a_curve_and_minimal_writes_its_distribution(tmp_path):
    out = tmp_path / "curve"
    result = CliRunner().invoke(main, ["attack", "--norm", "l2", "--eps", "0.05", "0.2", "1", "--limit", "6",
                                       "--steps", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert [c["eps"] for c in card["conditions"]] == [0.05, 0.2, 1.0]
    assert (out / "figures" / "accuracy_vs_budget.png").is_file()

    out = tmp_path / "minimal"
    result = CliRunner().invoke(main, ["attack", "--norm", "linf", "--minimal", "--limit", "6", "--steps", "3",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    (search,) = card["minimal"]
    assert card["conditions"] == [] and search["norm"] == "linf"
    assert search["found"] == search["attacked"] > 0
    assert 0 < search["median_eps"]["value"] < 0.05
    curve = search["accuracy_curve"]
    assert all(a >= b for (_, a), (_, b) in zip(curve, curve[1:])) and curve[-1][1] == 0
    assert (out / "figures" / "minimal_eps.png").is_file()
    assert "median minimal ε" in result.output and "minimal ε" in (out / "report.md").read_text()

    # --walk-steps sets the boundary walk: without it the same search stops at PGD's larger budgets
    out0 = tmp_path / "minimal-no-walk"
    result = CliRunner().invoke(main, ["attack", "--norm", "linf", "--minimal", "--walk-steps", "0", "--limit", "6",
                                       "--steps", "3", "--out", str(out0)])
    assert result.exit_code == 0, result.output
    walked, plain = (read_records(o).set_index("clip_id")["linf"] for o in (out, out0))
    assert (walked <= plain * (1 + 1e-6)).all() and (walked < plain).any()
    assert json.loads((out0 / "run.json").read_text())["settings"]["minimal_options"] == {"refine_steps": 0}
    result = CliRunner().invoke(main, ["attack", "--eps", "0.002", "--walk-steps", "10"])
    assert result.exit_code == 2 and "--walk-steps belongs to --minimal" in result.output


def test_library_and_black_box_attacks_run_through_the_cli(tmp_path):
    for extra, condition in [(["--backend", "foolbox", "--attack", "fmn", "--steps", "20"], "foolbox-fmn-linf-waveform-eps=0.005"),
                             (["--attack", "square", "--queries", "20"], "square-linf-waveform-eps=0.005")]:
        out = tmp_path / condition
        result = CliRunner().invoke(main, ["attack", "--eps", "0.005", "--limit", "4", "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        card = json.loads((out / "card.json").read_text())
        assert [c["condition"] for c in card["conditions"]] == [condition]
        records = read_records(out)
        assert (records["linf"] <= 0.005).all()  # exactly: the float64 norm of what the model saw
    assert records["backwards"].max() == 0 and records[records["attacked"]]["forwards"].max() <= 20
    result = CliRunner().invoke(main, ["attack", "--eps", "0.005", "--backend", "art", "--attack", "fmn"])
    assert result.exit_code != 0 and "Unknown attack 'fmn' for backend 'art'" in result.output


def test_targets_sets_how_many_runner_up_classes_apgd_t_aims_at(tmp_path):
    """AutoAttack's standard APGD-T aims at 9 runner-up classes; ours defaults to 1 (chosen on the train split) and
    --targets sets it (there was no way to from the command line)."""
    out = tmp_path / "t"
    result = CliRunner().invoke(main, ["attack", "--attack", "apgd-t", "--targets", "3", "--steps", "2", "--eps",
                                       "0.0005", "--limit", "4", "--no-sanity", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["settings"]["targets"] == 3
    assert "3 runner-up classes" in (out / "report.md").read_text()
    attacked = read_records(out).query("attacked == True and success == False")
    assert (attacked["forwards"] >= 3 * 2).all()  # every standing clip was aimed at 3 classes, 2 steps each


def test_models_lists_the_bundled_models():
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0 and "cnn" in result.output and "ast" in result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["name", "architecture", "clean", "acc.", "on", "description"]
    # columns line up whatever the name's length (before: "taltrans-mini tal-trans" pushed its row over)
    column = lines[0].index("architecture")
    for line in lines[1:11]:
        assert line[column - 2:column] == "  " and line[column] != " ", line
    assert "taltrans-mini" in result.output


def test_report_on_a_non_run_directory_says_so(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code != 0 and "not a run directory" in result.output


def test_sigkill_then_rerun_gives_identical_records(tmp_path):
    """Kill the real process mid-run with SIGKILL; the same command finishes the same records."""
    args = ["attack", "--eps", "0.002", "--limit", "24", "--steps", "4", "--batch-size", "4", "--seed", "3"]
    command = [sys.executable, "-m", "robustaudio.cli", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    records = killed / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (records.exists() and records.read_text().count("\n") >= 8):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = records.read_text().count("\n")
    assert 0 < partial < 24, "the kill must land mid-run"
    subprocess.run([*command, "--out", str(killed)], env=env, check=True, capture_output=True)
    subprocess.run([*command, "--out", str(tmp_path / "whole")], env=env, check=True, capture_output=True)
    a = read_records(killed).drop(columns=["seconds"])
    b = read_records(tmp_path / "whole").drop(columns=["seconds"])
    assert a.equals(b)


def test_help_imports_no_torch():
    """`robustaudio --help` and `<command> --help` start fast: the CLI modules import torch only to run."""
    import subprocess
    import sys

    code = ("import sys; from click.testing import CliRunner; from robustaudio.cli import main; "
            "r = CliRunner(); assert r.invoke(main, ['--help']).exit_code == 0; "
            "assert all(r.invoke(main, [c, '--help']).exit_code == 0 for c in main.commands); "
            "heavy = sorted(m for m in ('torch', 'scipy', 'matplotlib', 'pandas') if m in sys.modules); "
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_help_values_equal_their_owners():
    import importlib

    from robustaudio.cli import choices

    for copy, (module, path) in choices.OWNERS.items():
        value = importlib.import_module(module)
        for part in path.split("."):
            value = getattr(value, part)
        expected = tuple(value) if isinstance(value, dict) else value
        assert getattr(choices, copy) == expected, f"cli/choices.py {copy} differs from {module}.{path}"


def test_python_dash_m_robustaudio_is_the_command():
    done = subprocess.run([sys.executable, "-m", "robustaudio", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("Usage: robustaudio ")
