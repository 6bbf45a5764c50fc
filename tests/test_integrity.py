"""Run directories survive a full disk, a read-only folder and power loss; loaders never run a
folder's code; bad metadata, checkpoints and labels get one-line errors."""

import errno
import json
import os
import shutil

import pandas as pd
import pytest
import torch
from conftest import LinearClassifier

from robustaudio import records as records_module
from robustaudio.attacks import ThreatModel
from robustaudio.data import AudioDataset
from robustaudio.records import RECORDS_FILE, WARNINGS_FILE, RunDirectoryError
from robustaudio.report import build_report, read_records, read_warnings
from robustaudio.runner import RunOptions, run_attack

TIMING = ["seconds"]


def tone_model(seed=0):
    g = torch.Generator().manual_seed(seed)
    return LinearClassifier(torch.randn(2, 16000, generator=g) * 0.05, torch.zeros(2), labels=["bird", "dog"])


def pgd(steps=2):
    """run_attack's arguments for PGD with ``steps`` steps."""
    try:
        from robustaudio.runner import AttackSpec
    except ImportError:  # the runner before it took an AttackSpec
        return {"steps": steps}
    return {"spec": AttackSpec("pgd", steps=steps)}


def run(root, out):
    threats = [ThreatModel("linf", eps=e) for e in (0.0005, 0.002)] + [ThreatModel("l2", snr_db=30.0)]
    return run_attack(tone_model(), "linear", AudioDataset.from_path(root), threats, out,
                      options=RunOptions(batch_size=2, seed=7), **pgd())


class FailingFile:
    """A file whose writes stop after ``budget`` bytes (what fits is written, then the error), as a
    full disk does."""

    def __init__(self, file, budget, error):
        self.file, self.budget, self.error = file, budget, error

    def write(self, data):
        if len(data) > self.budget[0]:
            self.file.write(data[:self.budget[0]])
            self.file.flush()
            self.budget[0] = 0
            raise self.error
        self.budget[0] -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def fail_writes(monkeypatch, name, budget, error):
    """Writes to ``name`` files of a run directory fail after ``budget`` bytes in all."""
    left = [budget]

    def failing_open(path, *args, **kwargs):
        file = open(path, *args, **kwargs)
        return FailingFile(file, left, error) if str(path).endswith(name) else file

    monkeypatch.setattr(records_module, "open", failing_open, raising=False)


def no_space():
    return OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_mid_batch_loses_no_rows_on_resume(tmp_path, write_dataset, monkeypatch):
    root = write_dataset(per_label=4)
    full = read_records(run(root, tmp_path / "full"))
    lines = (tmp_path / "full" / RECORDS_FILE).read_bytes().splitlines(keepends=True)
    per_batch = len(full) // full["batch"].nunique()
    budget = sum(map(len, lines[:per_batch])) + sum(map(len, lines[per_batch:2 * per_batch - 1]))
    fail_writes(monkeypatch, RECORDS_FILE, budget, no_space())  # all of batch 0, all but one row of batch 1
    with pytest.raises(OSError) as info:
        run(root, tmp_path / "resumed")
    monkeypatch.undo()
    assert sorted(read_records(tmp_path / "resumed")["batch"].unique()) == [0]
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "resumed") in message
    assert "free space and rerun the same command" in message
    resumed = read_records(run(root, tmp_path / "resumed"))
    assert len(resumed) == len(full) and not resumed.duplicated(["clip_id", "condition"]).any()
    pd.testing.assert_frame_equal(full.drop(columns=TIMING), resumed.drop(columns=TIMING))


def test_power_loss_after_part_of_a_batch_redoes_that_batch(tmp_path, write_dataset):
    """Complete lines of an incomplete batch (no rollback ran) are ignored and replaced."""
    root = write_dataset(per_label=4)
    full = read_records(run(root, tmp_path / "full"))
    per_batch = len(full) // full["batch"].nunique()
    lost = tmp_path / "lost"
    lost.mkdir()
    shutil.copy(tmp_path / "full" / "run.json", lost / "run.json")
    lines = (tmp_path / "full" / RECORDS_FILE).read_bytes().splitlines(keepends=True)
    (lost / RECORDS_FILE).write_bytes(b"".join(lines[:2 * per_batch - 2]) + lines[2 * per_batch - 2][:40])
    partial = read_records(lost)
    assert sorted(partial["batch"].unique()) == [0] and len(partial) == per_batch
    assert list(partial.columns) == list(full.columns)
    resumed = read_records(run(root, lost))
    assert not resumed.duplicated(["clip_id", "condition"]).any()
    pd.testing.assert_frame_equal(full.drop(columns=TIMING), resumed.drop(columns=TIMING))


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_unwritable_run_directory_is_one_line(tmp_path, write_dataset, monkeypatch, code):
    root = write_dataset()
    fail_writes(monkeypatch, RECORDS_FILE, 0, OSError(code, "nope"))
    with pytest.raises(RunDirectoryError) as info:
        run(root, tmp_path / "run")
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "run") in message and "choose a writable --out" in message
    assert isinstance(info.value, OSError) and info.value.errno == code


def test_disk_full_while_writing_warnings_is_one_line(tmp_path, monkeypatch):
    fail_writes(monkeypatch, WARNINGS_FILE, 10, no_space())
    with pytest.raises(RunDirectoryError, match="free space and rerun the same command"):
        records_module.append_warnings(tmp_path, [{"clip_id": "a.wav", "kind": "note", "message": "m"}])


def test_partial_last_line_of_warnings_is_ignored_and_replaced(tmp_path, write_dataset):
    from click.testing import CliRunner

    from robustaudio.cli import main

    out = run(write_dataset(), tmp_path / "run")
    with open(out / WARNINGS_FILE, "a") as f:
        f.write('{"clip_id": "bird/bird0.wav", "kind": "skip')
    assert read_warnings(out) == []
    result = CliRunner().invoke(main, ["report", str(out)])
    assert result.exit_code == 0, result.output
    entry = {"clip_id": "dog/dog0.wav", "kind": "note", "message": "resampled"}
    records_module.append_warnings(out, [entry])
    assert read_warnings(out) == [entry]


def test_run_json_is_replaced_atomically(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    records_module.write_json_atomic(path, {"settings": {"seed": 1}})
    before = path.read_text()
    assert json.loads(before) == {"settings": {"seed": 1}}
    fail_writes(monkeypatch, ".tmp", 5, no_space())
    with pytest.raises(RunDirectoryError, match="free space"):
        records_module.write_json_atomic(path, {"settings": {"seed": 2, "more": "x" * 100}})
    assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["run.json"]
    monkeypatch.undo()
    records_module.write_json_atomic(path, {"settings": {"seed": 2}})
    assert records_module.read_run_json(tmp_path) == {"settings": {"seed": 2}}


def test_full_disk_while_the_report_is_rewritten_keeps_the_old_card_and_report(tmp_path, write_dataset, monkeypatch):
    """card.json and report.html are replaced whole or not at all (before, a full disk left them cut off)."""
    out = run(write_dataset(), tmp_path / "run")
    build_report(out)
    before = {name: (out / name).read_bytes() for name in ("card.json", "report.md", "report.html")}
    fail_writes(monkeypatch, ".tmp", 200, no_space())  # every atomic write's temporary file: 200 bytes fit
    with pytest.raises(RunDirectoryError, match="free space"):
        build_report(out)
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    assert build_report(out)["clips"] == json.loads(before["card.json"])["clips"]


def test_report_runs_no_python_model_named_in_run_json_without_trust(tmp_path, write_dataset):
    """run.json is data: a run folder from elsewhere that names ``python:evil.py:build`` must not run that code
    when its report is rebuilt, unless the user passes --trust-checkpoint (before, it ran)."""
    from click.testing import CliRunner

    from robustaudio.cli import main

    out = run(write_dataset(), tmp_path / "run")
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
                                      "def build():\n    raise SystemExit(3)\n")
    meta = json.loads((out / "run.json").read_text())
    meta["settings"]["model"] = f"python:{tmp_path / 'evil.py'}:build"
    (out / "run.json").write_text(json.dumps(meta))
    result = CliRunner().invoke(main, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    assert "--trust-checkpoint" in (out / "report.md").read_text()
    CliRunner().invoke(main, ["report", str(out), "--trust-checkpoint"])
    assert marker.exists()  # trusted: the code is run (and its failure only costs the examples section)


def test_corrupt_run_json_is_a_one_line_error(tmp_path, write_dataset):
    out = run(write_dataset(), tmp_path / "run")
    (out / "run.json").write_text((out / "run.json").read_text()[:30])
    with pytest.raises(RunDirectoryError) as info:
        build_report(out)
    message = str(info.value)
    assert "\n" not in message and f"run.json in {out} is unreadable" in message and "--restart" in message
    with pytest.raises(RunDirectoryError, match="not a run directory"):
        records_module.read_run_json(tmp_path)


# ---- hf: never runs a folder's code ----------------------------------------------------------------

def save_tiny_wav2vec2(directory):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4),
                                         conv_kernel=(10, 4), num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=2, classifier_proj_size=8, num_labels=2)
    model = transformers.Wav2Vec2ForSequenceClassification(config).eval()
    model.save_pretrained(directory)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(directory)
    return model


@pytest.mark.parametrize("config_file, auto_class", [("config.json", "AutoModelForAudioClassification"),
                                                      ("preprocessor_config.json", "AutoFeatureExtractor")])
def test_hf_folder_with_custom_code_is_refused_and_never_run(tmp_path, config_file, auto_class):
    from robustaudio.models import ModelError, load_model

    directory = tmp_path / "custom"
    save_tiny_wav2vec2(directory)
    ran = tmp_path / "ran"
    (directory / "custom_code.py").write_text(f"open({str(ran)!r}, 'w').write('ran')\n")
    config = json.loads((directory / config_file).read_text())
    config["auto_map"] = {auto_class: "custom_code.Custom", "AutoConfig": "custom_code.CustomConfig"}
    (directory / config_file).write_text(json.dumps(config))
    with pytest.raises(ModelError) as info:
        load_model(f"hf:{directory}")
    message = str(info.value)
    assert "\n" not in message and "auto_map" in message and config_file in message and "python:" in message
    assert not ran.exists()


def test_hf_weights_needing_pickle_are_refused_unless_trusted(tmp_path):
    from pathlib import Path

    from robustaudio.models import ModelError, load_model

    directory = tmp_path / "bin"
    model = save_tiny_wav2vec2(directory)
    (directory / "model.safetensors").unlink()
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
    assert load_model(f"hf:{directory}").labels == ("LABEL_0", "LABEL_1")  # tensors only: read weights-only
    torch.save({**model.state_dict(), "note": Path("not/a/tensor")}, directory / "pytorch_model.bin")
    with pytest.raises(ModelError) as info:
        load_model(f"hf:{directory}")
    message = str(info.value)
    assert "\n" not in message and "pytorch_model.bin" in message
    assert "safetensors" in message and "--trust-checkpoint" in message
    assert load_model(f"hf:{directory}", trust_checkpoint=True).labels == ("LABEL_0", "LABEL_1")


# ---- metadata.csv ---------------------------------------------------------------------------------

def write_metadata(root, rows, write_dataset):
    write_dataset(root=root)
    lines = "".join(f"{path},{label},{split}\n" for path, label, split in rows)
    (root / "metadata.csv").write_text("path,label,split\n" + lines)
    return root


def test_empty_label_in_metadata_names_the_file_and_line(tmp_path, write_dataset):
    from robustaudio.data import DatasetError

    root = write_metadata(tmp_path / "data", [("bird/bird0.wav", "bird", "test"), ("dog/dog0.wav", "", "test"),
                                              ("dog/dog1.wav", "dog", "test")], write_dataset)
    with pytest.raises(DatasetError) as info:
        AudioDataset.from_path(root)
    message = str(info.value)
    assert "\n" not in message and str(root / "metadata.csv") in message
    assert "line 3" in message and "dog/dog0.wav" in message and "empty label" in message


def test_missing_split_lists_the_splits_there_are(tmp_path, write_dataset):
    from robustaudio.data import DatasetError

    root = write_metadata(tmp_path / "data", [("bird/bird0.wav", "bird", "eval"), ("dog/dog0.wav", "dog", "train")],
                          write_dataset)
    with pytest.raises(DatasetError) as info:
        AudioDataset.from_path(root, split="test")
    message = str(info.value)
    assert "\n" not in message and "split 'test' not in" in message and "it has: eval, train" in message
    assert "use --split eval" in message
    assert len(AudioDataset.from_path(root, split="eval")) == 1


# ---- checkpoints ----------------------------------------------------------------------------------

def one_line_model_error(*args, **kwargs):
    from robustaudio.models import ModelError, load_model

    with pytest.raises(ModelError) as info:
        load_model(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_checkpoint_config_that_does_not_fit_is_a_one_line_error(tmp_path):
    from robustaudio.models.cnn import LogMelCNN

    state = LogMelCNN(labels=["bird", "dog"]).state_dict()
    torch.save({"arch": "logmel-cnn", "config": {"labels": ["bird", "dog"], "n_mel": 64}, "state_dict": state},
               tmp_path / "unknown.pt")
    for name in ("cnn", "logmel-cnn"):
        message = one_line_model_error(name, weights=tmp_path / "unknown.pt")
        assert "'n_mel'" in message and "n_mels" in message and "labels" in message
    torch.save({"arch": "logmel-cnn", "config": ["bird", "dog"], "state_dict": state}, tmp_path / "list.pt")
    message = one_line_model_error("cnn", weights=tmp_path / "list.pt")
    assert "config" in message and "dict" in message and "list" in message and "save_checkpoint" in message


def test_bare_state_dict_for_an_architecture_says_what_it_needs(tmp_path):
    from robustaudio.models import load_model
    from robustaudio.models.cnn import LogMelCNN

    torch.save(LogMelCNN(labels=["bird", "dog"]).state_dict(), tmp_path / "bare.pt")
    message = one_line_model_error("logmel-cnn", weights=tmp_path / "bare.pt")
    assert "state dict" in message and "labels" in message and "save_checkpoint" in message
    assert load_model("logmel-cnn", weights=tmp_path / "bare.pt", labels=["bird", "dog"]).labels == ("bird", "dog")
    message = one_line_model_error("logmel-cnn", weights=tmp_path / "bare.pt", labels=["bird", "dog"], n_mel=64)
    assert "'n_mel'" in message and "n_mels" in message
    assert "does not fit architecture 'm3'" in one_line_model_error("m3", weights=tmp_path / "bare.pt")


# ---- library backends with nothing to attack --------------------------------------------------------

@pytest.mark.parametrize("backend, attack", [("art", "pgd"), ("foolbox", "pgd"), ("foolbox", "fmn")])
def test_backends_with_no_clip_to_attack_return_the_clean_batch(backend, attack):
    pytest.importorskip({"art": "art", "foolbox": "foolbox"}[backend])
    from conftest import binary_linear

    from robustaudio.attacks.backends import backend_attack

    model, audio, labels, _ = binary_linear()
    threat = ThreatModel("l2", eps=0.1)
    fooled = backend_attack(model, audio, 1 - labels, threat, backend=backend, attack=attack, steps=2)
    assert fooled.success.all() and torch.equal(fooled.adversarial, audio)
    assert fooled.forwards.tolist() == [1] * len(audio) and not fooled.backwards.any()
    empty = backend_attack(model, audio[:0], labels[:0], threat, backend=backend, attack=attack, steps=2)
    assert empty.adversarial.shape == (0, audio.shape[1]) and empty.success.shape == (0,)
    assert empty.forwards.shape == (0,) and empty.logits.shape == (0, 2)


def test_foolbox_minimal_norms_with_no_clip_to_attack():
    pytest.importorskip("foolbox")
    from conftest import binary_linear

    from robustaudio.attacks.backends import foolbox_minimal_norms

    model, audio, labels, _ = binary_linear()
    threat = ThreatModel("l2", eps=0.1)
    assert torch.equal(foolbox_minimal_norms(model, audio, 1 - labels, threat, steps=2), torch.zeros(len(audio)))
    assert foolbox_minimal_norms(model, audio[:0], labels[:0], threat, steps=2).shape == (0,)


# ---- reports --------------------------------------------------------------------------------------

def markdown_table_rows(markdown):
    """The cells of every table line, split on unescaped pipes."""
    import re

    return [re.split(r"(?<!\\)\|", line.strip())[1:-1] for line in markdown.splitlines() if line.startswith("|")]


def test_report_escapes_pipes_and_html_in_labels(tmp_path, write_dataset):
    from robustaudio.report.document import document_html, document_markdown

    labels = ["x|y", "<script>"]
    root = write_dataset(labels=labels)
    g = torch.Generator().manual_seed(0)
    model = LinearClassifier(torch.randn(2, 16000, generator=g) * 0.05, torch.zeros(2), labels=labels)
    out = run_attack(model, "linear", AudioDataset.from_path(root), [ThreatModel("linf", eps=0.001)], tmp_path / "run",
                     options=RunOptions(batch_size=4, sanity=False), **pgd())
    build_report(out)
    markdown = (out / "report.md").read_text()
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown and "x\\|y" in markdown
    html = (out / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html and "x|y" in html
    sections = [("Jamming", ["scene", "max |Δlogit|"], [["a|b", "1 & <b>2</b>"], ["c\\", "multi\nline"]], "")]
    markdown = document_markdown("t", [], sections, [], [])
    rows = markdown_table_rows(markdown)
    assert rows and all(len(cells) == 2 for cells in rows)
    assert "max \\|Δlogit\\|" in markdown and "1 &amp; &lt;b&gt;2&lt;/b&gt;" in markdown
    assert "<b>" not in document_html("t", [], sections, [], [])


BLOCK = "raise ImportError('not installed in this test')\n"


@pytest.mark.parametrize("args, extra", [
    (["noise", "--model", "cnn", "--corruption", "reverb", "--limit", "2"], "rooms"),
    (["noise", "--model", "cnn", "--corruption", "gaussian_snr", "--limit", "2", "--ray", "local"], "scale"),
    (["attack", "--eps", "0.002", "--steps", "1", "--limit", "2", "--ray", "local"], "scale"),
    (["jam", "--steps", "1"], "rooms"),
])
def test_missing_extra_stops_before_any_work(tmp_path, args, extra):
    """A real process without pyroomacoustics or Ray: one line that names the extra (quoted for zsh), no
    traceback, and no run directory (before the fix: a 68-line traceback, or files left after the probes)."""
    import os
    import subprocess
    import sys

    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for module in ("pyroomacoustics", "ray"):
        (blocked / f"{module}.py").write_text(BLOCK)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "robustaudio.cli", *args, "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr  # one line
    assert f"pip install 'robustaudio[{extra}]'" in done.stderr
    assert not out.exists()


def test_absolute_and_relative_budgets_in_one_run_report(tmp_path, write_dataset):
    """--eps and --snr-db together (the README's "and/or"): the card says None, not NaN, for the budget a
    condition does not have, so the ε-curve figure does not mix them (before: a NaN axis-limit traceback)."""
    threats = [ThreatModel("linf", eps=0.002), ThreatModel("linf", snr_db=40.0)]
    out = run_attack(tone_model(), "linear", AudioDataset.from_path(write_dataset()), threats, tmp_path / "run",
                     options=RunOptions(batch_size=4, sanity=False), **pgd())
    card = build_report(out)
    budgets = {c["condition"]: (c["eps"], c["snr_db"]) for c in card["conditions"]}
    assert sorted(budgets.values(), key=str) == sorted([(0.002, None), (None, 40.0)], key=str)
    assert (out / "report.html").is_file()


def test_a_python_model_named_on_the_attack_command_gets_its_examples(tmp_path):
    """Naming python:FILE:FACTORY on the command line is consent to run it: the attack's own report may load it
    again for the examples (only a report rebuilt from run.json alone asks for --trust-checkpoint)."""
    from click.testing import CliRunner

    from robustaudio.cli import main

    (tmp_path / "mine.py").write_text("from robustaudio.models import load_model\n"
                                      "def build():\n    return load_model('cnn')\n")  # the bundled weights
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["attack", "--model", f"python:{tmp_path / 'mine.py'}:build", "--attack", "pgd",
                                       "--steps", "1", "--eps", "0.002", "--limit", "2", "--no-sanity",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    assert "only when you trust it" not in report and "No examples to listen to" not in report


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_report_into_an_unwritable_run_folder_names_a_fix_report_has(tmp_path, write_dataset, monkeypatch, code):
    """`report` writes into RUN_DIR and has no --out: its one line says to copy the run, not to pick an --out."""
    from click.testing import CliRunner

    from robustaudio.cli import main

    out = run(write_dataset(), tmp_path / "run")

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(records_module.tempfile, "mkstemp", refuse)
    result = CliRunner().invoke(main, ["report", str(out)])
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line and "--out" not in line
    assert f"Cannot write the report into {out}" in line and f"cp -r {out} COPY" in line


@pytest.mark.parametrize("field", ["carried", "eps_setting", "clip_id"])
def test_report_on_records_that_lack_a_field_is_one_line(tmp_path, write_dataset, field):
    """Records without a field every version writes (hand-edited, another tool's) stopped `report` with a KeyError
    traceback; now one line names the field and the fix."""
    from click.testing import CliRunner

    from robustaudio.cli import main

    out = run(write_dataset(), tmp_path / "run")
    rows = [json.loads(line) for line in (out / RECORDS_FILE).read_text().splitlines()]
    (out / RECORDS_FILE).write_text("".join(json.dumps({k: v for k, v in r.items() if k != field}) + "\n"
                                            for r in rows))
    result = CliRunner().invoke(main, ["report", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"lacks the field(s) {field} that every version of robustaudio writes" in result.output


def test_report_of_a_half_written_run_says_so_on_the_console(tmp_path, write_dataset):
    """The console printed a half-written run's numbers as if it were complete (only report.md said otherwise)."""
    from click.testing import CliRunner

    from robustaudio.cli import main

    out = run(write_dataset(per_label=4), tmp_path / "run")
    lines = (out / RECORDS_FILE).read_bytes().splitlines(keepends=True)
    (out / RECORDS_FILE).write_bytes(b"".join(lines[:len(lines) // 2]))
    result = CliRunner().invoke(main, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert "incomplete: 4 of 8 clips have records" in result.output and "(it resumes)" in result.output


def test_report_never_writes_or_deletes_through_a_linked_listen_folder(tmp_path, write_dataset):
    """A copied run folder whose listen/ and figures/ were links: report deleted the .wav files of the folder they
    pointed at and wrote its own there. Now one line, and the other folder is untouched."""
    from click.testing import CliRunner

    from robustaudio.cli import main

    out = run(write_dataset(), tmp_path / "run")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.wav").write_bytes(b"RIFF")
    for name in ("listen", "figures"):
        shutil.rmtree(out / name, ignore_errors=True)
        (out / name).symlink_to(victim)
    result = CliRunner().invoke(main, ["report", str(out)])
    assert result.exit_code == 1 and "is a link" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in victim.iterdir()) == ["precious.wav"]


def test_crafted_or_cut_off_files_in_model_and_run_paths_are_one_line(tmp_path):
    """Each of these reached a traceback (and the bad TFLite file a segfault): a pickled or cut-off universal.pt, a
    cut-off cached compare metrics file, a garbage microWakeWord .tflite, a cut-off openWakeWord head, a garbage
    TorchScript file for sticker."""
    import argparse

    from robustaudio.models import ModelError, load_model
    from robustaudio.models.microwakeword import check_tflite
    from robustaudio.report.compare import _read
    from robustaudio.runner import RunSettingsError
    from robustaudio.runner.universal import learn_universal

    for name, write in (("pickled", lambda p: torch.save({"x": argparse.Namespace(a=1)}, p)),
                        ("cut", lambda p: p.write_bytes(b"PK\x03\x04 cut off"))):
        run_dir = tmp_path / name
        run_dir.mkdir()
        write(run_dir / "universal.pt")
        with pytest.raises(RunSettingsError, match="is not a universal perturbation this run wrote"):
            learn_universal(None, None, [], run_dir, batch_size=1, device="cpu", options={})
    (tmp_path / "metrics.json").write_text('{"density": ')
    with pytest.raises(RunDirectoryError, match="is unreadable"):
        _read(tmp_path / "metrics.json")
    (tmp_path / "mww.json").write_text(json.dumps({"model": "mww.tflite"}))
    (tmp_path / "mww.tflite").write_text("not a flatbuffer")
    with pytest.raises(ModelError, match="is not a TFLite model"):
        check_tflite(tmp_path / "mww.json")
    (tmp_path / "head.onnx").write_bytes(b"\x08\x07\x12\x03cut")
    with pytest.raises(ModelError) as info:
        load_model(f"openwakeword:{tmp_path / 'head.onnx'}")
    assert "\n" not in str(info.value)


def test_sticker_names_a_garbage_torchscript_file(tmp_path):
    from click.testing import CliRunner

    from robustaudio.cli import main

    (tmp_path / "garbage.pt").write_text("not an archive")
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    result = CliRunner().invoke(main, ["sticker", "--model", f"torchscript:{tmp_path / 'garbage.pt'}", "--images",
                                       str(tmp_path / "imgs"), "--source", "a", "--target", "b", "--labels", "a,b"])
    assert result.exit_code == 1 and "could not be loaded" in result.output and "Traceback" not in result.output
