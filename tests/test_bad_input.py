"""Bad input gets a clear error naming the problem and the fix, or a recorded warning."""

import json
from pathlib import Path

import click
import numpy as np
import pytest
import soundfile
import torch
from click.testing import CliRunner

from robustaudio.cli import main
from robustaudio.cli.common import LIST_OPTIONS
from robustaudio.data import AudioError, load_audio
from robustaudio.models import ModelError, load_model, save_checkpoint
from robustaudio.models.cnn import LogMelCNN
from robustaudio.report import read_warnings


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def test_unknown_model_suggests_close_names():
    result = invoke("attack", "--model", "cnm", "--eps", "0.002")
    assert result.exit_code != 0
    assert "Unknown model 'cnm'" in result.output and "Did you mean 'cnn'" in result.output
    with pytest.raises(ModelError, match="robustaudio models"):
        load_model("resnet-9000")


def test_missing_data_path_names_the_path(tmp_path):
    result = invoke("attack", "--data", tmp_path / "nowhere", "--eps", "0.002")
    assert result.exit_code != 0 and "does not exist" in result.output and "nowhere" in result.output


@pytest.mark.parametrize("eps, message", [("0", "must be a finite number > 0"), ("-0.01", "> 0"),
                                          ("1.5", "half the input range"), ("nan", "not a finite number")])
def test_impossible_eps_is_refused_before_any_work(tmp_path, eps, message):
    result = invoke("attack", "--eps", eps, "--out", tmp_path / "run")
    assert result.exit_code != 0 and message in result.output
    assert not (tmp_path / "run").exists()


def test_no_budget_is_a_usage_error():
    result = invoke("attack", "--norm", "l2")
    assert result.exit_code == 2 and "--eps" in result.output


def test_an_out_folder_that_cannot_be_made_is_one_line_naming_it(tmp_path):
    (tmp_path / "a_file").write_text("")
    result = invoke("attack", "--eps", "0.002", "--limit", "2", "--out", tmp_path / "a_file" / "run")
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: Cannot create the folder") and str(tmp_path / "a_file" / "run") in error
    assert "choose a writable --out" in error


def test_a_full_disk_while_writing_the_report_is_one_line_and_keeps_the_records(tmp_path, monkeypatch):
    """The attack is done and its records written when the report meets a full disk: one line, and the same
    command then only writes the report (every batch is read back, none recomputed)."""
    import errno

    from robustaudio import records
    from robustaudio.report import read_records

    def full_disk(path, *args, **kwargs):  # the report is written atomically: through a temporary file
        if Path(path).name.startswith(".report.html."):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return open(path, *args, **kwargs)

    out = tmp_path / "run"
    command = ("attack", "--eps", "0.002", "--steps", "2", "--limit", "4", "--no-sanity", "--out", out)
    monkeypatch.setattr(records, "open", full_disk, raising=False)
    result = invoke(*command)
    monkeypatch.undo()
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = result.output.strip().splitlines()[-1]
    assert f"No space left to write report.html in {out}" in error
    assert "free space and rerun the same command (finished batches are kept" in error
    rows = read_records(out)
    assert len(rows) > 0 and not (out / "report.html").exists()
    again = invoke(*command)
    assert again.exit_code == 0, again.output
    assert (out / "report.html").is_file()
    assert read_records(out).drop(columns="seconds").equals(rows.drop(columns="seconds"))


def test_a_full_disk_in_a_command_that_keeps_no_partial_results_says_so():
    import errno

    from robustaudio.records import describe_os_error
    full = OSError(errno.ENOSPC, "No space left on device", "/runs/jam/report.html")
    assert describe_os_error(full, resumable=False) == ("No space left on device: /runs/jam/report.html: free space "
                                                        "and rerun the same command (this command keeps no partial "
                                                        "results).")
    assert "finished batches are kept" in describe_os_error(full, resumable=True)
    assert "choose a writable --out" in describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/x"),
                                                          resumable=True)
    from robustaudio.records import RunDirectoryError
    named = RunDirectoryError("No space left to write records.jsonl in /runs/a: free space and rerun.", errno.ENOSPC)
    assert describe_os_error(named, resumable=True) == ("No space left to write records.jsonl in /runs/a: free space "
                                                        "and rerun (finished batches are kept, so only what is "
                                                        "missing is redone).")
    assert describe_os_error(named, resumable=False).endswith("(this command keeps no partial results).")
    unnamed = OSError(errno.ENOSPC, "No space left on device")  # before: "No space left on device:: free ..."
    assert describe_os_error(unnamed, resumable=False).startswith("No space left on device: free space")


def test_corrupt_file_is_named():
    path = Path(__file__).parent / "data" / "corrupt.wav"
    with pytest.raises(AudioError, match="cannot be decoded") as info:
        load_audio(path, 16000)
    assert "corrupt.wav" in str(info.value)


def test_silent_and_nan_clips_are_refused(tmp_path):
    soundfile.write(tmp_path / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    noisy = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    noisy[100] = np.nan
    soundfile.write(tmp_path / "nan.wav", noisy, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="silent"):
        load_audio(tmp_path / "silent.wav", 16000)
    with pytest.raises(AudioError, match="NaN/Inf"):
        load_audio(tmp_path / "nan.wav", 16000)


def test_other_sample_rate_is_resampled_and_said(tmp_path):
    t = np.arange(22050) / 22050
    soundfile.write(tmp_path / "tone.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050)
    audio, notes = load_audio(tmp_path / "tone.wav", 16000, clip_samples=16000)
    assert audio.shape == (16000,) and any("resampled from 22050 Hz" in n for n in notes)
    spectrum = np.abs(np.fft.rfft(audio.numpy()))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins: the tone stays at 440 Hz


def test_bad_clips_in_a_dataset_are_skipped_and_recorded(tmp_path, write_dataset):
    from robustaudio.attacks import ThreatModel
    from robustaudio.data import AudioDataset
    from robustaudio.runner import AttackSpec, RunOptions, run_attack

    root = write_dataset(labels=("bird", "dog"), per_label=2)
    soundfile.write(root / "dog" / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    (root / "bird" / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wav")
    soundfile.write(root / "bird" / "slow.wav",
                    (0.3 * np.sin(np.arange(8000) / 3)).astype(np.float32), 8000)
    torch.manual_seed(0)
    model = LogMelCNN(labels=["bird", "dog"]).eval()
    out = run_attack(model, "cnn-random", AudioDataset.from_path(root), [ThreatModel("linf", eps=0.001)],
                     tmp_path / "run", AttackSpec("pgd", steps=1), RunOptions(batch_size=3))
    warnings = read_warnings(out)
    skipped = {w["clip_id"] for w in warnings if w["kind"] == "skipped"}
    assert skipped == {"dog/silent.wav", "bird/broken.wav"}
    assert any(w["kind"] == "note" and "resampled from 8000 Hz" in w["message"] for w in warnings)
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {r["clip_id"] for r in records} == {"bird/bird0.wav", "bird/bird1.wav", "bird/slow.wav",
                                               "dog/dog0.wav", "dog/dog1.wav"}


def test_a_clip_with_several_labels_is_refused_for_a_single_label_model(tmp_path, write_dataset):
    """A metadata row 'bird;dog' was scored against 'bird' alone by the single-label cnn, silently."""
    root = write_dataset(labels=("bird", "dog"), per_label=1)
    (root / "metadata.csv").write_text("path,label\nbird/bird0.wav,bird;dog\ndog/dog0.wav,dog\n")
    result = invoke("attack", "--data", root, "--eps", "0.002", "--limit", "2", "--out", tmp_path / "run")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "1 clip(s) have several labels (first: bird/bird0.wav, bird;dog)" in result.output
    assert "single-label" in result.output and not (tmp_path / "run" / "records.jsonl").exists()


def test_unknown_labels_in_the_data_are_named(tmp_path, write_dataset):
    root = write_dataset(labels=("bird", "spaceship"), per_label=1)
    result = invoke("attack", "--data", root, "--eps", "0.002", "--out", tmp_path / "run")
    assert result.exit_code != 0 and "'spaceship'" in result.output and "model's labels" in result.output


@pytest.mark.parametrize("args", [
    ("jam", "--lr", "nan"), ("jam", "--notes-per-second", "nan"), ("jam", "--scene-seconds", "inf"),
    ("sticker", "--lr", "nan"), ("train", "--weight-decay", "nan"), ("train-denoiser", "--lr", "inf"),
    ("attack", "--snr-db", "nan"), ("certify", "--sigma", "inf")])
def test_nan_and_inf_numbers_are_usage_errors(args):
    """click's float options let nan and inf through to a traceback deep in the run; every float option
    refuses them up front."""
    result = invoke(*args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"Invalid value for '{args[1]}'" in result.output and "is not a finite number" in result.output


@pytest.mark.parametrize("command", ["attack", "noise", "compare", "certify", "defend", "train", "train-denoiser",
                                     "jam", "sticker"])
@pytest.mark.parametrize("seed", ["-1", "99999999999999999999"])
def test_a_seed_the_generators_cannot_take_is_a_usage_error(command, seed):
    """numpy's generator refuses a negative seed and one past 64 bits: --seed -1 ran the whole attack (or jam, or
    training) and then lost its report (or card) to a traceback."""
    result = invoke(command, "--seed", seed)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "Invalid value for '--seed'" in result.output and "0<=x<=4294967295" in result.output


def test_every_option_that_takes_several_values_takes_them_after_one_flag():
    """The docs say options that take several values accept them after one flag; certify/defend --sigma, defend
    --defenses, compare --video-eps and jam --levels (negative numbers) did not."""
    from robustaudio.cli.common import expand_value_lists

    assert expand_value_lists(["certify", "--sigma", "0.25", "0.5", "--n", "10"]) == [
        "certify", "--sigma", "0.25", "--sigma", "0.5", "--n", "10"]
    assert expand_value_lists(["jam", "--levels", "-14", "-12", "--level-floor", "0.7"]) == [
        "jam", "--levels", "-14", "--levels", "-12", "--level-floor", "0.7"]
    assert expand_value_lists(["defend", "--defenses", "none", "mixup", "--sigma", "0"]) == [
        "defend", "--defenses", "none", "--defenses", "mixup", "--sigma", "0"]
    for command in ("attack", "noise", "compare", "certify", "defend", "train", "jam"):
        several = [p.opts[0] for p in main.commands[command].params if isinstance(p, click.Option) and p.multiple]
        assert set(several) <= set(LIST_OPTIONS), (command, set(several) - set(LIST_OPTIONS))


def test_help_shows_no_empty_range():
    """click described a float option with no bounds as "[x<=None]"."""
    for command in ("attack", "certify", "defend", "jam"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "None]" not in result.output and "x<=None" not in result.output


def test_an_unknown_device_is_a_usage_error():
    result = invoke("attack", "--eps", "0.002", "--device", "banana")
    assert result.exit_code == 2 and "'banana' is not a device" in result.output and "Traceback" not in result.output


def test_train_checks_its_out_before_training(tmp_path):
    """An --out that cannot be written stops train and train-denoiser at once, in one line (before, the model
    was trained and then lost to a traceback)."""
    (tmp_path / "a_file").write_text("")
    for command in ("train", "train-denoiser"):
        result = invoke(command, "--epochs", "1", "--out", tmp_path / "a_file" / "m.pt")
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert "Training" not in result.output
        assert result.output.strip().splitlines()[-1].startswith(f"Error: Cannot create the folder {tmp_path}")


def test_pickled_checkpoints_need_trust(tmp_path):
    model = LogMelCNN(labels=["bird", "dog"])
    path = tmp_path / "pickled.pt"
    torch.save({"arch": "logmel-cnn", "config": {"labels": ["bird", "dog"]},
                "state_dict": model.state_dict(), "extra": Path("not/a/tensor")}, path)
    with pytest.raises(ModelError, match="--trust-checkpoint"):
        load_model("cnn", weights=path)
    assert isinstance(load_model("cnn", weights=path, trust_checkpoint=True), LogMelCNN)
    save_checkpoint(tmp_path / "safe.pt", "logmel-cnn", {"labels": ["bird", "dog"]}, model)
    assert load_model("cnn", weights=tmp_path / "safe.pt").labels == ("bird", "dog")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "safe.pt").read_bytes()[:1000])
    with pytest.raises(ModelError, match="could not be read"):
        load_model("cnn", weights=tmp_path / "truncated.pt")
    result = invoke("attack", "--weights", tmp_path / "missing.pt", "--eps", "0.002")
    assert result.exit_code != 0 and "does not exist" in result.output


def test_train_denoiser_without_diffusers_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now raises ImportError
    monkeypatch.setitem(sys.modules, "diffusers.training_utils", None)
    result = invoke("train-denoiser", "--epochs", "1", "--out", tmp_path / "d.pt")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "pip install 'robustaudio[diffusion]'" in result.output.strip().splitlines()[-1]


def test_certify_says_which_clips_it_skipped(tmp_path, write_dataset):
    """Unusable clips are skipped by certify as by attack: said on stderr and kept in warnings.jsonl (before,
    silently); data with no usable clip is a one-line error, not 'certified accuracy nan'."""
    root = write_dataset(labels=("bird", "speech"), per_label=1)
    soundfile.write(root / "speech" / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    out = tmp_path / "cert"
    result = invoke("certify", "--sigma", "0.25", "--n0", "2", "--n", "4", "--data", root, "--out", out)
    assert result.exit_code == 0, result.output
    assert "1 clip(s) skipped" in result.output and str(out / "warnings.jsonl") in result.output
    assert [w["clip_id"] for w in read_warnings(out) if w["kind"] == "skipped"] == ["speech/silent.wav"]
    bad = tmp_path / "bad"
    (bad / "speech").mkdir(parents=True)
    soundfile.write(bad / "speech" / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    result = invoke("certify", "--sigma", "0.25", "--n0", "2", "--n", "4", "--data", bad, "--out", tmp_path / "c2")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: No usable clip to certify")


def test_certify_restart_discards_the_certificates_of_another_run_and_a_resume_counts_what_it_kept(tmp_path):
    """The refusal and Ctrl-C's line said to pass --restart, which certify (and defend, compare) did not have."""
    args = ("certify", "--sigma", "0.25", "--n0", "2", "--n", "4", "--out", tmp_path / "c")
    assert invoke(*args, "--limit", "2").exit_code == 0
    result = invoke(*args, "--limit", "3")
    assert result.exit_code == 1 and "--restart to discard them" in result.output, result.output
    result = invoke(*args, "--limit", "3", "--restart")
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "c" / "sigma-0.25-plain.jsonl").read_text().splitlines()) == 3
    result = invoke(*args, "--limit", "3")
    assert result.exit_code == 0 and "3/3 clips" in result.output and "(3 from the records)" in result.output
    for command in ("attack", "noise", "compare", "certify", "defend"):  # the commands whose messages name it
        assert "--restart" in [o for p in main.commands[command].params for o in p.opts], command


def test_certify_checks_alpha_and_sample_counts_before_any_work(tmp_path):
    result = invoke("certify", "--sigma", "0.25", "--n0", "50", "--n", "10", "--out", tmp_path / "c")
    assert result.exit_code == 1 and "selection samples exceed" in result.output
    assert "CERTIFY" not in result.output and not (tmp_path / "c").exists()


def test_defend_checks_its_denoiser_and_certification_before_the_attack_rows(tmp_path):
    """A missing denoiser or an impossible certification setting stops defend at once (before, after the
    table's attack rows had run); --purify-sigma is named."""
    for args, message in ((("--denoiser", str(tmp_path / "nosuch.pt")), "neither a file nor a bundled denoiser"),
                          (("--sigma", "-1"), "sigma must be"), (("--alpha", "5"), "alpha must be in")):
        result = invoke("defend", "--limit", "2", "--steps", "1", *args, "--out", tmp_path / "d")
        assert result.exit_code == 1 and message in result.output, result.output
        assert not (tmp_path / "d" / "attacks").exists()
    result = invoke("defend", "--purify-sigma", "-1")
    assert result.exit_code == 2 and "--purify-sigma" in result.output


@pytest.mark.parametrize("args, message", [
    (("--attack", "pgd", "--queries", "50"), "--queries sets Square's query budget"),
    (("--attack", "pgd", "--targets", "3"), "--targets sets APGD-T's runner-up classes"),
    (("--epochs", "3"), "--epochs belongs to --universal"),
    (("--projection", "per-frame"), "--projection belongs to --universal"),
    (("--attack", "square", "--steps", "5"), "--steps does not apply to --attack square"),
    (("--workers", "2"), "--workers sizes the local Ray cluster"),
])
def test_options_the_attack_would_ignore_are_refused(args, message):
    """An option that would be silently ignored reads as if it had done something (--walk-steps without
    --minimal was already refused; these were not)."""
    result = invoke("attack", "--eps", "0.002", *args)
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize("args, message", [
    (("attack", "--eps", "0.002", "--attack", "square", "--restarts", "3"), "--restarts does not apply to --attack square"),
    (("attack", "--eps", "0.002", "--backend", "foolbox", "--attack", "pgd", "--restarts", "3"),
     "--restarts does not apply to library attacks"),
    (("train", "--method", "plain", "--mixup-alpha", "0.5"), "--mixup-alpha belongs to --method mixup"),
    (("train", "--method", "mixup", "--adv-eps", "0.01"), "--adv-eps belongs to --method adversarial"),
    (("train", "--method", "adversarial", "--noise-sigma", "0.3"), "--noise-sigma belongs to --method noise"),
    (("defend", "--defenses", "none", "--defenses", "mixup", "--eot", "3"), "--eot sets the purification row"),
    (("defend", "--defenses", "none", "--sigma", "0", "--denoiser", "x.pt"), "--denoiser serves purification"),
    (("defend", "--sigma", "0", "--n", "5"), "--n sets the certification, which --sigma 0 skips"),
    (("defend", "--sigma", "0", "--certify-limit", "2"), "--certify-limit sets the certification"),
    (("jam", "--levels", "-20"), "--levels are the levels --level-split tries"),
    (("jam", "--level-floor", "0.9"), "--level-floor is the F1 --level-split keeps"),
    (("jam", "--query-method", "substitute"), "--query-method belongs to --queries"),
    (("jam", "--query-feedback", "clip"), "--query-feedback belongs to --queries"),
    (("jam", "--queries", "200", "--lr", "0.3"), "--lr sets gradient optimisation, which --queries (NES) does not"),
    (("jam", "--queries", "200", "--steps", "7"), "--steps sets gradient optimisation"),
])
def test_options_other_commands_would_ignore_are_refused(args, message):
    """Each of these ran to the end and some were recorded in the card as if used (train's settings listed the
    mixup α of a plain run; jam's card the --lr 0.3 NES never used)."""
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_compare_refuses_video_budgets_for_data_without_video():
    result = invoke("compare", "--models", "cnn", "--video-eps", "0.01")
    assert result.exit_code == 2 and "--video-eps sets the video budgets of audio-visual data" in result.output


def test_report_of_a_run_with_no_finished_batch_says_so(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"settings": {"model": "cnn"}}))
    (tmp_path / "records.jsonl").write_text("")
    result = invoke("report", tmp_path)
    assert result.exit_code == 1 and "holds no finished batch yet" in result.output, result.output


def test_report_on_another_commands_folder_says_which_command_rewrites_it(tmp_path):
    """A certify, defend, compare, sticker or jam folder has no run.json; report said only 'pass the --out of an
    earlier robustaudio attack'."""
    for marker, command in (("defenses.json", "certify"), ("summary.json", "defend"), ("card.json", "jam")):
        folder = tmp_path / command
        folder.mkdir()
        (folder / marker).write_text("{}")
        result = invoke("report", folder)
        assert result.exit_code == 1 and f"was made by `robustaudio {command}`" in result.output, result.output


def test_an_empty_label_folder_layout_names_no_split(tmp_path):
    (tmp_path / "bird").mkdir()
    result = invoke("attack", "--eps", "0.002", "--data", tmp_path, "--out", tmp_path / "run")
    assert result.exit_code == 1 and "No audio clips found under" in result.output, result.output


def test_an_attack_of_zero_steps_is_a_usage_error():
    """--steps 0 ran no gradient step (a random start at most) and reported it as the attack's robust accuracy."""
    result = invoke("attack", "--eps", "0.002", "--attack", "pgd", "--steps", "0")
    assert result.exit_code == 2 and "Invalid value for '--steps'" in result.output


def test_a_model_that_detaches_its_input_is_one_line_naming_the_black_box_attack(tmp_path):
    """A python: model whose forward leaves torch (here .detach()) gave 'element 0 of tensors does not require grad'
    in a traceback."""
    (tmp_path / "detached.py").write_text(
        "import torch\n"
        "from robustaudio.models import load_model\n"
        "class Detached(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.inner = load_model('cnn')\n"
        "        self.sample_rate, self.labels = self.inner.sample_rate, self.inner.labels\n"
        "        self.clip_seconds = self.inner.clip_seconds\n"
        "    def forward(self, audio):\n"
        "        return self.inner(audio.detach())\n"
        "def build():\n"
        "    return Detached()\n")
    result = invoke("attack", "--model", f"python:{tmp_path / 'detached.py'}:build", "--eps", "0.002", "--attack",
                    "pgd", "--steps", "1", "--limit", "2", "--no-sanity", "--out", tmp_path / "run")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "gives no gradient" in result.output and "--attack square" in result.output
