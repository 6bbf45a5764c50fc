"""Adversarial music (issue 5): the synthesiser, the transforms, the room split, the jam and its report."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from click.testing import CliRunner

from robustaudio.acoustics.mixing import snr_db
from robustaudio.acoustics.scenes import (
    EOTConfig,
    JamError,
    Utterances,
    ensure_disjoint,
    make_rooms,
    render,
    render_parts,
    room_split,
    sample_transforms,
)
from robustaudio.attacks import jamming
from robustaudio.attacks.jamming import Detector, jam, jam_loss, load_utterances
from robustaudio.attacks.music import PEAK, KarplusStrong, MusicError, pluck
from robustaudio.data.datasets import bundled_path
from robustaudio.metrics.jamming import evaluate
from robustaudio.models import load_model
from robustaudio.stats import detection_metrics

pytest.importorskip("pyroomacoustics")

FAST = EOTConfig(music_db=-10.0, jitter_db=5.0, scene_seconds=1.0, rt60=(0.15, 0.2))


def tone_utterances(count: int = 4, seconds: float = 0.4, rate: int = 16000) -> Utterances:
    t = torch.arange(int(seconds * rate)) / rate
    waves = [0.5 * torch.sin(2 * math.pi * (300 + 100 * k) * t) * torch.hann_window(len(t)) for k in range(count)]
    return Utterances.from_waveforms([f"tone{k}" for k in range(count)], waves, [k % 2 for k in range(count)], rate)


# ---- the synthesiser ------------------------------------------------------------------------------


def test_pluck_is_the_karplus_strong_recursion_played_in_a_loop():
    """The frequency-domain loop equals the time-domain recursion y[n] = e[n] + ρ/2 (y[n-P] + y[n-P-1])
    run over many repetitions of the plucks (its periodic steady state)."""
    g = torch.Generator().manual_seed(0)
    length, periods, onsets = 300, torch.tensor([17, 29]), torch.tensor([0, 140])
    excitation = torch.randn(2, 29, generator=g, dtype=torch.float64)
    damping = torch.tensor([0.9, 0.95], dtype=torch.float64)
    gains = torch.tensor([[1.0, 0.4], [0.0, 0.8]], dtype=torch.float64)
    expected = np.zeros(length)
    for k in range(2):
        e = np.zeros(length)
        for m in range(2):
            for j in range(int(periods[k])):
                e[(int(onsets[m]) + j) % length] += float(gains[m, k] * excitation[k, j])
        x = np.tile(e, 80)
        y = np.zeros_like(x)
        p, rho = int(periods[k]), float(damping[k])
        for n in range(len(x)):
            y[n] = x[n] + rho / 2 * ((y[n - p] if n >= p else 0.0) + (y[n - p - 1] if n > p else 0.0))
        expected += y[-length:]
    loop = pluck(excitation, damping, gains, periods, onsets, length)
    np.testing.assert_allclose(loop.numpy(), expected, atol=1e-9)


def test_synthesiser_is_differentiable_gradcheck_on_a_short_note():
    excitation = torch.randn(1, 12, dtype=torch.float64, requires_grad=True)
    damping = torch.tensor([0.93], dtype=torch.float64, requires_grad=True)
    gains = torch.tensor([[0.7]], dtype=torch.float64, requires_grad=True)
    periods, onsets = torch.tensor([12]), torch.tensor([5])
    assert torch.autograd.gradcheck(lambda e, d, a: pluck(e, d, a, periods, onsets, 64), (excitation, damping, gains))


def test_synthesiser_loudness_and_gradients_reach_every_parameter():
    synth = KarplusStrong(seconds=1.0, level_db=-20.0, seed=3)
    music = synth()
    assert music.shape == (16000,)
    assert float(20 * torch.log10(music.detach().pow(2).mean().sqrt())) == pytest.approx(-20.0, abs=1e-3)
    assert float(music.detach().abs().max()) <= PEAK + 1e-6
    # the total energy is fixed by the normalisation; how it is spread over the loop is not
    (music[:4000].pow(2).sum() - music[4000:].pow(2).sum()).backward()
    for name, parameter in synth.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    loud = KarplusStrong(seconds=1.0, level_db=0.0, seed=3)()  # a 0 dBFS RMS would clip: the peak sets the gain
    assert float(loud.detach().abs().max()) == pytest.approx(PEAK, abs=1e-5)
    assert float(20 * torch.log10(loud.detach().pow(2).mean().sqrt())) < 0.0
    with pytest.raises(MusicError, match="outside"):
        KarplusStrong(level_db=6.0)
    with pytest.raises(MusicError, match="scale"):
        KarplusStrong(scale="dorian-ish")


# ---- transforms and rooms -------------------------------------------------------------------------


def test_scene_levels_follow_the_transforms():
    rooms = make_rooms("optimisation", 2, 0, FAST.rt60)
    speech = tone_utterances(4)
    transforms = sample_transforms(4, rooms, FAST, torch.Generator().manual_seed(1), loop_samples=8000)
    music = KarplusStrong(seconds=0.5, seed=0)()
    parts = render_parts(speech, music, transforms, rooms, FAST)
    span = parts["span"]
    music_level = -snr_db(parts["speech"] * span, parts["music"] * span)
    noise_snr = snr_db(parts["speech"] * span, parts["noise"] * span)
    torch.testing.assert_close(music_level, transforms.music_db, atol=1e-3, rtol=0)
    torch.testing.assert_close(noise_snr, transforms.noise_snr_db, atol=1e-3, rtol=0)
    assert ((transforms.music_db >= -15) & (transforms.music_db <= -5)).all()
    clean = render_parts(speech, None, transforms, rooms, FAST)
    assert clean["music"].abs().max() == 0
    torch.testing.assert_close(clean["speech"], parts["speech"])


def test_transforms_and_scenes_are_reproducible_by_seed():
    rooms = make_rooms("optimisation", 2, 0, FAST.rt60)
    again = make_rooms.__wrapped__("optimisation", 2, 0, FAST.rt60)  # simulated anew, not from the cache
    torch.testing.assert_close(rooms.speech_rirs, again.speech_rirs)
    torch.testing.assert_close(rooms.music_rirs, again.music_rirs)
    speech, music = tone_utterances(3), KarplusStrong(seconds=0.5, seed=0)().detach()

    def scenes(seed):
        transforms = sample_transforms(3, rooms, FAST, torch.Generator().manual_seed(seed), loop_samples=8000)
        return transforms, render(speech, music, transforms, rooms, FAST)

    (first, a), (second, b), (_, c) = scenes(5), scenes(5), scenes(6)
    assert first.rows() == second.rows()
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("loop_seconds", [4.0, 0.05])  # a loop longer / shorter than the rooms' decay
def test_the_gradient_to_the_music_is_the_same_on_every_run(loop_seconds):
    """Many scenes of one room read the loop at many offsets. The loop's gradient used to come through advanced
    indexing, whose CPU backward adds repeated indices in a thread-dependent order: a jam with one seed learned a
    different loop from run to run (openWakeWord, 20 steps: final loss 2.04, then 2.16, in one process)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the CI machine's cores; the order of the adds only varies with threads
    rooms = make_rooms("optimisation", 2, 0, FAST.rt60)
    speech = tone_utterances(32)
    transforms = sample_transforms(32, rooms, FAST, torch.Generator().manual_seed(3),
                                   loop_samples=int(loop_seconds * 16000))
    loop = KarplusStrong(seconds=loop_seconds, seed=0)().detach()
    weights = torch.randn(32, 16000, generator=torch.Generator().manual_seed(4))  # a 1 s scene (FAST)
    gradients = []
    try:
        for _ in range(12):
            music = loop.clone().requires_grad_(True)
            heard = render_parts(speech, music, transforms, rooms, FAST)["music"]
            (heard * weights[:, : heard.shape[1]]).sum().backward()
            gradients.append(music.grad)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(gradients[0], g) for g in gradients[1:])


def test_held_out_rooms_are_disjoint_and_never_seen_in_optimisation(monkeypatch):
    optimisation, held_out = room_split(FAST, optimisation=2, held_out=2, seed=0)
    assert not set(optimisation.rooms) & set(held_out.rooms)
    assert all(not torch.equal(a, b) for a in optimisation.speech_rirs for b in held_out.speech_rirs)
    seen = []
    real_sample = jamming.sample_transforms

    def spy(count, rooms, *args, **kwargs):
        seen.append(rooms)
        return real_sample(count, rooms, *args, **kwargs)

    monkeypatch.setattr(jamming, "sample_transforms", spy)
    detector = Detector(BandEnergy(), "tone")
    result = jam(KarplusStrong(seconds=0.5, seed=0), detector, tone_utterances(2), optimisation, FAST, steps=3,
                 batch_size=2, seed=0)
    assert seen and all(rooms is optimisation for rooms in seen)
    assert result.rooms_seen <= set(range(len(optimisation)))


def test_every_room_overlap_check_names_both_streams_and_the_fix():
    optimisation, held_out = room_split(FAST, optimisation=2, held_out=2, seed=0)
    pick = make_rooms("pick", 2, 0, FAST.rt60)
    ensure_disjoint(pick, optimisation, held_out, fix="unused")  # three streams, no room in common
    with pytest.raises(JamError, match=r"^2 pick room\(s\) of seed 0 are also pick rooms of seed 0: use another"):
        ensure_disjoint(pick, optimisation, make_rooms("pick", 3, 0, FAST.rt60), fix="use another seed.")
    # the restarts' pick refuses rooms it would share with the rooms the loops learned in
    from robustaudio.runner.jam import _keep_least_visible
    with pytest.raises(JamError, match="picked in rooms of their own"):
        _keep_least_visible([], tone_utterances(1), FAST, rooms=2, seed=0, avoid=(optimisation, pick))


# ---- detectors, the objective, the jam ------------------------------------------------------------


class BandEnergy(torch.nn.Module):
    """A tiny detector of class "tone": its logit falls with the energy above 1 kHz relative to below."""

    sample_rate, labels, multilabel, clip_seconds, threshold = 16000, ("other", "tone"), False, 1.0, 0.5

    def forward(self, audio, video=None):
        spectrum = torch.fft.rfft(audio).abs().pow(2)
        low, high = spectrum[:, :1000].sum(1), spectrum[:, 1000:].sum(1)
        z = torch.log(low + 1e-6) - torch.log(high + 1e-6)
        return torch.stack([-z / 2, z / 2], dim=1)


def test_detector_margins_for_single_label_classifiers_and_errors():
    model = BandEnergy()
    detector = Detector(model, "tone")
    audio = torch.randn(3, 16000) * 0.1
    margins = detector.margins(audio)
    assert margins.shape == (3, 1)
    torch.testing.assert_close(detector.scores(audio), torch.softmax(model(audio), -1)[:, 1])
    with pytest.raises(JamError, match="no class 'siren'.*other, tone"):
        Detector(model, "siren")
    assert jam_loss(torch.tensor([[-50.0, -60.0]])) < 1e-10 < float(jam_loss(torch.tensor([[2.0, -3.0]])))


def test_openwakeword_detector_scores_are_the_models_wake_word_scores():
    pytest.importorskip("onnx")
    model = load_model("openwakeword:alexa", pad_before=0.0, pad_after=0.0)
    detector = Detector(model, "alexa")
    audio = torch.randn(2, 48000) * 0.01
    torch.testing.assert_close(detector.scores(audio), torch.softmax(model(audio), -1)[:, 1])
    assert detector.margins(audio).shape == (2, 13)  # one per 80 ms window with a full 2 s context


def _short_jam(detector, speech, steps: int, batch_size: int):
    """Loss on fixed scenes of the optimisation rooms before and after a short jam, and the result."""
    rooms = make_rooms("optimisation", 2, 0, FAST.rt60)
    config = FAST
    synth = KarplusStrong(seconds=0.5, seed=0)
    transforms = sample_transforms(len(speech), rooms, config.fixed_level(), torch.Generator().manual_seed(9),
                                   loop_samples=synth.length)

    def loss() -> float:
        with torch.no_grad():
            return float(jam_loss(detector.margins(render(speech, synth(), transforms, rooms, config))))

    before = loss()
    result = jam(synth, detector, speech, rooms, config, steps=steps, batch_size=batch_size, lr=0.05, seed=0)
    return before, loss(), result, synth


def test_a_short_jam_on_a_small_model_lowers_its_score():
    """A tiny detector (low-band vs high-band energy): a few Adam steps on the music lower its loss on
    fixed scenes, and the loop keeps the synthesiser's level."""
    before, after, result, synth = _short_jam(Detector(BandEnergy(), "tone"), tone_utterances(4), 8, 4)
    assert after < 0.8 * before
    rms_db = float(20 * torch.log10(result.music.pow(2).mean().sqrt()))  # the level, or less where the peak binds
    assert rms_db == pytest.approx(synth.level_db, abs=1e-3) or (
        rms_db < synth.level_db and float(result.music.abs().max()) == pytest.approx(PEAK, abs=1e-5))
    assert result.history[-1]["step"] == 8


@pytest.mark.slow
def test_a_short_jam_lowers_the_bundled_cnn_speech_score():
    detector = Detector(load_model("cnn"), "speech")
    clips, _ = load_utterances(None, "speech", 16000, "train")
    before, after, _, _ = _short_jam(detector, clips.positives().subset(torch.arange(6)), 12, 6)
    assert after < 0.8 * before


@pytest.mark.slow
def test_a_short_jam_lowers_openwakeword_alexa_scores():
    pytest.importorskip("onnx")
    detector = Detector(load_model("openwakeword:alexa", pad_before=0.0, pad_after=0.0), "alexa")
    clips, _ = load_utterances(bundled_path("wakeword"), "alexa", 16000, "train")
    config = replace(FAST, scene_seconds=3.0)
    rooms = make_rooms("optimisation", 2, 0, config.rt60)
    speech = clips.positives().subset(torch.arange(8))
    synth = KarplusStrong(seconds=2.0, seed=0)
    transforms = sample_transforms(8, rooms, config.fixed_level(), torch.Generator().manual_seed(9),
                                   loop_samples=synth.length)

    def loss() -> float:
        with torch.no_grad():
            return float(jam_loss(detector.margins(render(speech, synth(), transforms, rooms, config))))

    before = loss()
    jam(synth, detector, speech, rooms, config, steps=20, batch_size=8, lr=0.05, seed=0)
    assert loss() < 0.8 * before


def test_detection_metrics_count_f1_tpr_fpr():
    labels = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    fired = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    metrics = detection_metrics(labels, fired, n_resamples=200)
    assert (metrics["tp"], metrics["fp"], metrics["fn"], metrics["tn"]) == (3, 1, 1, 5)
    assert metrics["tpr"]["value"] == pytest.approx(0.75)
    assert metrics["fpr"]["value"] == pytest.approx(1 / 6)
    assert metrics["f1"]["value"] == pytest.approx(6 / 8)
    assert metrics["f1"]["ci95"][0] <= 0.75 <= metrics["f1"]["ci95"][1]


def test_evaluation_pairs_scenes_across_conditions_and_detectors():
    rooms = {"optimisation": make_rooms("optimisation", 2, 0, FAST.rt60),
             "held-out": make_rooms("held-out", 2, 0, FAST.rt60)}
    loops = torch.stack([KarplusStrong(seconds=0.5, seed=k)() for k in range(2)]).detach()
    detector = Detector(BandEnergy(), "tone")
    rows = evaluate({"a": detector, "b": detector}, tone_utterances(2), rooms, FAST,
                    {"clean": None, "random": loops}, draws=2, seed=0)
    assert len(rows) == 2 * 2 * 2 * 2 * 2  # detectors x room sets x conditions x clips x draws
    keyed = {(r["detector"], r["rooms"], r["condition"], r["clip_id"], r["draw"]): r for r in rows}
    for (name, rooms_name, condition, clip, draw), row in keyed.items():
        other = keyed[("a", rooms_name, "clean", clip, draw)]
        assert (row["room"], row["noise_snr_db"], row["music_offset"]) == (other["room"], other["noise_snr_db"],
                                                                            other["music_offset"])
        assert row["music_db"] == FAST.music_db  # evaluation plays the music at exactly the set level
        assert keyed[("b", rooms_name, condition, clip, draw)]["score"] == row["score"] if name == "a" else True


def test_bad_inputs_name_the_problem():
    with pytest.raises(JamError, match="Music level 40"):
        EOTConfig(music_db=40.0)
    with pytest.raises(JamError, match="silent"):
        Utterances.from_waveforms(["quiet"], [torch.zeros(8000)], [1], 16000)
    with pytest.raises(JamError, match="No clip labelled 'alexa'"):
        load_utterances(None, "alexa", 16000, "train")


# ---- the command ----------------------------------------------------------------------------------


@pytest.fixture
def few_minievents(tmp_path):
    """Six bundled minievents clips: 2 speech to optimise on; 2 speech and 2 others to evaluate."""
    table = pd.read_csv(bundled_path() / "metadata.csv")
    speech = table["label"] == "speech"
    rows = pd.concat([table[speech & (table["split"] == "train")].head(2), table[speech & (table["split"] == "test")].head(2),
                      table[~speech & (table["split"] == "test")].head(2)])
    rows = rows.assign(path=[str(bundled_path() / p) for p in rows["path"]])[["path", "label", "split"]]
    rows.to_csv(tmp_path / "metadata.csv", index=False)
    return tmp_path


def test_cli_jam_writes_card_music_and_report(tmp_path, few_minievents):
    from robustaudio.cli import main

    out = tmp_path / "jam"
    result = CliRunner().invoke(main, ["jam", "--model", "cnn", "--target", "speech", "--music-db", "-10",
                                       "--data", str(few_minievents),
                                       "--steps", "2", "--batch-size", "2", "--rooms", "1", "--held-out-rooms", "1",
                                       "--draws", "1", "--random-pieces", "1", "--loop-seconds", "1",
                                       "--rt60", "0.15", "0.2", "--scene-seeds", "1", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["music_db"] == -10 and card["target"] == "speech"
    assert {r["condition"] for r in card["seed_summary"]} == {"clean", "random", "adversarial"}
    assert all(r["voices"] == 4 for r in card["seed_summary"])  # each clip its own voice without a voice column
    assert "over 2 scene seeds" in (out / "report.md").read_text()
    assert {(s["rooms"], s["condition"]) for s in card["detection"]} == {
        (r, c) for r in ("optimisation", "held-out") for c in ("clean", "random", "adversarial")}
    music, rate = soundfile.read(out / "music_adversarial.wav")
    assert rate == 16000 and len(music) == 16000
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "spectrograms" in html.lower()
    assert card["clips"]["test_positives"] == 2 and card["clips"]["test_negatives"] == 2
    assert (out / "scenes.jsonl").read_text().count("\n") == sum(s["scenes"] for s in card["detection"])
    from robustaudio.report.jam import jam_headline  # the console names the report's flags (two steps cannot finish)
    flagged = [flag.name for flag in jam_headline(card).flags]
    assert "unfinished optimisation" in flagged
    assert f"flags: {', '.join(flagged)} (the report's first lines give each one's fix)" in result.output


def test_cli_jam_with_no_target_clip_in_the_learning_split_names_the_splits_and_the_fix(tmp_path, few_minievents):
    """A recordings folder whose clips are all of one split (a fresh test set): one line naming the option whose split
    is empty, where the target's clips are, and the two ways out; nothing is written."""
    from robustaudio.cli import main

    table = pd.read_csv(few_minievents / "metadata.csv")
    table["split"], table["engine"], table["voice"] = "fresh", "e1", ["a", "b", "c", "d", "e", "f"]
    table.to_csv(few_minievents / "metadata.csv", index=False)
    result = CliRunner().invoke(main, ["jam", "--model", "cnn", "--target", "speech", "--data", str(few_minievents),
                                       "--out", str(tmp_path / "jam")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = result.output.strip().splitlines()[-1]
    assert "No 'speech' clip to optimise on" in error and "--learn-split 'train' has none" in error
    assert "split(s) fresh of engine(s) e1" in error and "--evaluate-engine" in error
    assert not (tmp_path / "jam" / "card.json").exists()


def test_cli_jam_evaluates_on_an_engine_it_never_learned_from(tmp_path, few_minievents):
    """--evaluate-engine: learning uses the other engine's clips only, the headline and the per-voice and
    per-engine tables only the named engine's voices."""
    from robustaudio.cli import main

    table = pd.read_csv(few_minievents / "metadata.csv")
    table["engine"] = ["e1", "e1", "e2", "e2", "e2", "e2"]
    table["voice"] = ["a", "b", "c", "d", "c", "d"]
    table.to_csv(few_minievents / "metadata.csv", index=False)
    out = tmp_path / "jam"
    result = CliRunner().invoke(main, ["jam", "--model", "cnn", "--target", "speech", "--data", str(few_minievents),
                                       "--steps", "2", "--batch-size", "2", "--rooms", "1", "--held-out-rooms", "1",
                                       "--draws", "1", "--random-pieces", "1", "--loop-seconds", "1", "--rt60",
                                       "0.15", "0.2", "--scene-seeds", "1", "--evaluate-engine", "e2",
                                       "--notes-per-second", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["synthesiser"]["notes"] == 8 and card["settings"]["notes_per_second"] == 8.0
    assert "8 notes in a 1 s loop (8 per second; the random music on the same grid)" in (out / "report.md").read_text()
    assert card["clips"]["learn_positives_given"] == 2  # the two e1 clips, whatever their split
    assert {r["group"] for r in card["engine_summary"]} == {"e2"}
    assert {r["voice"] for r in card["voice_table"]} <= {"e2:c", "e2:d"}
    assert all(r["voices"] == 2 for r in card["seed_summary"])  # clusters are voices, not clips
    assert "engine(s) never learned from: e2" in (out / "report.md").read_text()
    assert "music level given, not chosen" in (out / "report.md").read_text()  # the default --music-db
    wrong = CliRunner().invoke(main, ["jam", "--model", "cnn", "--target", "speech", "--data", str(few_minievents),
                                      "--evaluate-engine", "e9", "--out", str(tmp_path / "x")])
    assert wrong.exit_code == 1 and "e9" in wrong.output and "e1, e2" in wrong.output


def test_cli_jam_chooses_the_level_on_other_voices_of_the_evaluated_engine(tmp_path, few_minievents):
    """--evaluate-engine with --level-split: the evaluated engine's clips of that split choose the level (random
    music only) and are not evaluated; the record and the report say so; a voice on both sides is refused."""
    from robustaudio.cli import main

    table = pd.read_csv(few_minievents / "metadata.csv")
    table["engine"] = ["e1", "e1", "e2", "e2", "e2", "e2"]
    table["voice"] = ["a", "b", "c", "d", "c", "d"]
    bundled = pd.read_csv(bundled_path() / "metadata.csv")
    speech = bundled["label"] == "speech"
    extra = pd.concat([bundled[speech & (bundled["split"] == "train")].iloc[2:4],
                       bundled[~speech & (bundled["split"] == "train")].head(2)])
    extra = extra.assign(path=[str(bundled_path() / p) for p in extra["path"]], split="calibrate", engine="e2",
                         voice=["g", "h", "g", "h"])[["path", "label", "split", "engine", "voice"]]
    pd.concat([table, extra], ignore_index=True).to_csv(few_minievents / "metadata.csv", index=False)
    common = ["jam", "--model", "cnn", "--target", "speech", "--data", str(few_minievents), "--steps", "2",
              "--batch-size", "2", "--rooms", "1", "--held-out-rooms", "1", "--draws", "1", "--random-pieces", "1",
              "--loop-seconds", "1", "--rt60", "0.15", "0.2", "--scene-seeds", "1", "--evaluate-engine", "e2",
              "--level-split", "calibrate", "--levels", "-40", "--levels", "10", "--level-floor", "0.5"]
    out = tmp_path / "jam"
    result = CliRunner().invoke(main, [*common, "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    choice = card["settings"]["level_choice"]
    assert choice["engines"] == ["e2"] and choice["evaluated_engines"] == ["e2"]
    assert choice["positives"] + choice["negatives"] >= 1  # the calibration clips the detector handles dry
    assert card["clips"]["test_positives_given"] == int((table["engine"].eq("e2") & table["label"].eq("speech")).sum())
    assert {r["voice"] for r in card["voice_table"]} <= {"e2:c", "e2:d"}  # g and h only chose the level
    report = (out / "report.md").read_text()
    assert "other voices of the evaluated engine(s) e2, which heard random music only" in report
    assert "music level chosen on other voices of the evaluated engine(s) e2 (random music only)" in report
    shared = pd.read_csv(few_minievents / "metadata.csv")
    shared.loc[shared["split"].eq("calibrate"), "voice"] = "c"  # a calibration voice that is also evaluated
    shared.to_csv(few_minievents / "metadata.csv", index=False)
    refused = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "x")])
    assert refused.exit_code == 1 and "also evaluated on" in refused.output and "Traceback" not in refused.output


def test_cli_jams_openwakeword_and_refuses_a_scene_shorter_than_its_context_in_one_line(tmp_path):
    """The canonical jam (`robustaudio jam --model openwakeword:alexa`) runs end to end: the gradient probe that tells
    a black box from a white box is as long as a scene (a 0.1 s probe made openWakeWord, which needs ~2 s of
    context, fail with a traceback before anything ran). A scene shorter than the context is one line."""
    from robustaudio.cli import main
    from robustaudio.data.datasets import bundled_path

    table = pd.read_csv(bundled_path("wakeword") / "metadata.csv")
    few = pd.concat([table[(table["label"] == "alexa") & (table["split"] == "train")].head(2),
                     table[(table["label"] == "alexa") & (table["split"] == "test")].head(2),
                     table[(table["label"] == "not-wake") & (table["split"] == "test")].head(2)])
    few = few.assign(path=[str(bundled_path("wakeword") / p) for p in few["path"]])[["path", "label", "split"]]
    few.to_csv(tmp_path / "metadata.csv", index=False)
    common = ["jam", "--model", "openwakeword:alexa", "--data", str(tmp_path), "--music-db", "-10", "--steps", "1",
              "--batch-size", "2", "--rooms", "1", "--held-out-rooms", "1", "--draws", "1", "--random-pieces", "1",
              "--loop-seconds", "1", "--scene-seeds", "1"]
    out = tmp_path / "jam"
    result = CliRunner().invoke(main, [*common, "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["target"] == "alexa" and card["settings"]["eot"]["scene_seconds"] == 3.0
    short = CliRunner().invoke(main, [*common, "--scene-seconds", "1", "--out", str(tmp_path / "short")])
    assert short.exit_code == 1 and "needs at least" in short.output and "Traceback" not in short.output
    assert len(short.output.strip().splitlines()) == 1


def test_cli_jam_refuses_bad_settings(tmp_path):
    from robustaudio.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["jam", "--model", "cnn", "--target", "siren", "--out", str(tmp_path / "a")])
    assert result.exit_code != 0 and "no class 'siren'" in result.output
    result = runner.invoke(main, ["jam", "--model", "cnn", "--out", str(tmp_path / "b")])
    assert result.exit_code != 0 and "--target" in result.output
    result = runner.invoke(main, ["jam", "--model", "cnn", "--target", "speech", "--music-db", "60",
                                  "--out", str(tmp_path / "c")])
    assert result.exit_code != 0 and "Music level 60" in result.output
    result = runner.invoke(main, ["jam", "--model", "no-such-model", "--out", str(tmp_path / "d")])
    assert result.exit_code != 0 and "Unknown model" in result.output
    result = runner.invoke(main, ["jam", "--model", "cnn", "--target", "speech", "--notes-per-second", "64",
                                  "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "--notes-per-second" in result.output and "Traceback" not in result.output


def test_music_through_the_room_is_the_loops_steady_state():
    """music_part's circular convolution per room (one FFT of the loop) equals playing the loop out and
    convolving each scene's stretch linearly with the room response (the former rendering), and the
    cached speech spectra give the linear convolution of the dry utterance."""
    import torchaudio

    rooms = make_rooms("optimisation", 3, 0, FAST.rt60)
    speech = tone_utterances(6)
    generator = torch.Generator().manual_seed(3)
    synth = KarplusStrong(seconds=0.5, seed=0)
    transforms = sample_transforms(6, rooms, FAST, generator, loop_samples=synth.length)
    parts = render_parts(speech, synth(), transforms, rooms, FAST)
    length, history = FAST.scene_samples, rooms.music_rirs.shape[1]
    for music in (synth().detach(), torch.stack([KarplusStrong(seconds=0.5, seed=k)() for k in range(6)]).detach()):
        index = (transforms.music_offset.unsqueeze(1) - history + torch.arange(length + history)) % synth.length
        played = music[index] if music.dim() == 1 else torch.gather(music, 1, index)
        heard = torchaudio.functional.fftconvolve(played, rooms.music_rirs[transforms.room])[:, history:history + length]
        got = render_parts(speech, music, transforms, rooms, FAST)["music"]
        reference = heard * (got.norm(dim=1, keepdim=True) / heard.norm(dim=1, keepdim=True))  # same level rule
        torch.testing.assert_close(got, reference, atol=1e-5, rtol=1e-4)
    dry = torch.zeros(6, length)
    for b in range(6):
        end, size = int(transforms.speech_end[b]), int(speech.lengths[b])
        start = max(0, end - size)
        dry[b, start:end] = speech.audio[b, size - (end - start):size]
    wet = torchaudio.functional.fftconvolve(dry, rooms.speech_rirs[transforms.room])[:, :length]
    scale = parts["speech"].norm(dim=1, keepdim=True) / wet.norm(dim=1, keepdim=True)
    torch.testing.assert_close(parts["speech"], wet * scale, atol=1e-5, rtol=1e-4)


def test_a_silent_loop_adds_nothing_and_no_nan():
    """A scene whose loop is all zeros (e.g. a 'no music' row in a batch of loops) is speech and noise only;
    before the fix its level gain was inf and the scene NaN."""
    rooms = make_rooms("optimisation", 2, 0, FAST.rt60)
    speech = tone_utterances(2)
    transforms = sample_transforms(2, rooms, FAST, torch.Generator().manual_seed(0), loop_samples=8000)
    loops = torch.stack([torch.zeros(8000), KarplusStrong(seconds=0.5, seed=0)().detach()])
    parts = render_parts(speech, loops, transforms, rooms, FAST)
    assert torch.isfinite(parts["music"]).all() and float(parts["music"][0].abs().max()) == 0.0
    assert float(parts["music"][1].abs().max()) > 0
    torch.testing.assert_close(render(speech, loops, transforms, rooms, FAST)[0],
                               (parts["speech"][0] + parts["noise"][0]).clamp(-1, 1))


def test_cli_jam_chooses_the_music_level_on_its_own_split(tmp_path, few_minievents):
    """--level-split: the level is the loudest of --levels whose random-music F1 (mean over the scene seeds)
    on that split's clips stays >= --level-floor; it is recorded and reported; it may not be the evaluation
    split nor come with --music-db."""
    from robustaudio.cli import main

    table = pd.read_csv(bundled_path() / "metadata.csv")
    speech = table["label"] == "speech"
    extra = pd.concat([table[speech & (table["split"] == "train")].iloc[2:4],
                       table[~speech & (table["split"] == "train")].head(2)])
    extra = extra.assign(path=[str(bundled_path() / p) for p in extra["path"]], split="validation")
    pd.concat([pd.read_csv(few_minievents / "metadata.csv"), extra[["path", "label", "split"]]]).to_csv(
        few_minievents / "metadata.csv", index=False)
    common = ["jam", "--model", "cnn", "--target", "speech", "--data", str(few_minievents), "--steps", "2",
              "--batch-size", "2", "--rooms", "1", "--held-out-rooms", "1", "--draws", "1", "--random-pieces", "1",
              "--loop-seconds", "1", "--rt60", "0.15", "0.2", "--scene-seeds", "1"]
    out = tmp_path / "jam"
    result = CliRunner().invoke(main, [*common, "--level-split", "validation", "--levels", "-40", "--levels", "10",
                                       "--level-floor", "0.6", "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    choice = card["settings"]["level_choice"]
    means = {float(level): entry["mean"] for level, entry in choice["random_f1"].items()}
    assert set(means) == {-40.0, 10.0} and choice["split"] == "validation" and choice["scene_seeds"] == [1001]
    assert card["music_db"] == choice["chosen_db"] == max(level for level, m in means.items() if m >= 0.6)
    assert means[-40.0] > means[10.0]  # music 10 dB above the speech jams more than music 40 dB below it
    assert "music level chosen on split 'validation'" in (out / "report.md").read_text()
    for wrong in (["--level-split", "validation", "--music-db", "-10"], ["--level-split", "test"],
                  ["--level-by", "engine"]):
        refused = CliRunner().invoke(main, [*common, *wrong, "--out", str(tmp_path / "x")])
        assert refused.exit_code == 2 and "--level-split" in refused.output
    # groups need to know each clip's engine or voice: this set has no such columns
    refused = CliRunner().invoke(main, [*common, "--level-split", "validation", "--level-by", "voice", "--out",
                                        str(tmp_path / "y")])
    assert refused.exit_code == 1 and "--level-by voice needs a metadata.csv with engine and voice" in refused.output
    assert "Traceback" not in refused.output


def test_cli_jam_level_by_engine_keeps_the_floor_for_every_engine(tmp_path, few_minievents):
    """--level-by engine: the record has each engine's mean F1 per level, the chosen level keeps the floor for
    every engine at once, and the report names the weakest."""
    from robustaudio.cli import main

    table = pd.read_csv(bundled_path() / "metadata.csv")
    speech = table["label"] == "speech"
    extra = pd.concat([table[speech & (table["split"] == "train")].iloc[2:6],
                       table[~speech & (table["split"] == "train")].head(2)])
    extra = extra.assign(path=[str(bundled_path() / p) for p in extra["path"]], split="validation")
    own = pd.read_csv(few_minievents / "metadata.csv")
    both = pd.concat([own, extra[["path", "label", "split"]]], ignore_index=True)
    both["engine"] = ["e1" if k % 2 else "e2" for k in range(len(both))]
    both["voice"] = [f"v{k}" for k in range(len(both))]
    both.to_csv(few_minievents / "metadata.csv", index=False)
    out = tmp_path / "jam"
    result = CliRunner().invoke(main, [
        "jam", "--model", "cnn", "--target", "speech", "--data", str(few_minievents), "--steps", "2",
        "--batch-size", "2", "--rooms", "1", "--held-out-rooms", "1", "--draws", "1", "--random-pieces", "1",
        "--loop-seconds", "1", "--rt60", "0.15", "0.2", "--scene-seeds", "1", "--level-split", "validation",
        "--levels", "-40", "--levels", "10", "--level-floor", "0.5", "--level-by", "engine", "--out", str(out)])
    assert result.exit_code == 0, result.output
    choice = json.loads((out / "card.json").read_text())["settings"]["level_choice"]
    assert choice["by"] == "engine" and set(choice["groups"]) <= {"e1", "e2"} and choice["groups"]
    chosen = f"{choice['chosen_db']:g}"
    assert all(means[chosen] >= 0.5 for means in choice["groups"].values())
    louder = [lvl for lvl in ("-40", "10") if float(lvl) > choice["chosen_db"]]
    assert all(any(means[lvl] < 0.5 for means in choice["groups"].values()) for lvl in louder)
    assert "the floor held for every engine" in (out / "report.md").read_text()


def tiny_query_jam(data, out) -> list[str]:
    """A jam of the bundled CNN's "speech" as small as it gets: one room each side, one scene seed and draw."""
    return ["jam", "--model", "cnn", "--target", "speech", "--music-db", "-10", "--data", str(data), "--rooms", "1",
            "--held-out-rooms", "1", "--draws", "1", "--random-pieces", "1", "--loop-seconds", "1", "--rt60", "0.15",
            "0.2", "--scene-seeds", "1", "--out", str(out)]


def test_cli_jam_by_queries_counts_them_and_draws_f1_against_queries(tmp_path, few_minievents):
    """--queries: the loop is searched on the detector's scores (NES), every scored scene counted within the
    budget; the card and report give the F1 of the loop at 0 queries, at each snapshot and at the end."""
    from robustaudio.cli import main

    out = tmp_path / "jam"
    result = CliRunner().invoke(main, [*tiny_query_jam(few_minievents, out), "--queries", "400"])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    query = card["settings"]["query"]
    assert query["feedback"] == "clip"  # a whole-clip classifier: its steps are the clip
    per_step = query["population"] * query["batch_size"]
    assert query["used"] == (400 // per_step) * per_step == card["history"][-1]["queries"]
    assert query["selection_queries"] == card["clips"]["learn_positives_given"] > 0
    assert [h["queries"] for h in card["history"]] == list(range(per_step, query["used"] + 1, per_step))
    curve = card["query_curve"]
    assert [c["queries"] for c in curve] == sorted({0, 40, 100, 200, query["used"]})
    assert all(c["scenes"] == 4 and 0 <= c["f1"] <= 1 for c in curve)
    report = (out / "report.md").read_text()
    assert "F1 against queries" in report and "query-based (black box)" in report
    assert (out / "figures" / "queries.png").is_file()


def test_cli_jam_asks_for_queries_when_the_detector_gives_no_gradients(tmp_path):
    pytest.importorskip("pymicro_wakeword")
    from robustaudio.cli import main

    result = CliRunner().invoke(main, ["jam", "--model", "microwakeword:alexa", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "gives no gradients" in result.output and "--queries 20000" in result.output
    assert len(result.output.strip().splitlines()) == 1
    short = CliRunner().invoke(main, ["jam", "--model", "microwakeword:alexa", "--queries", "10",
                                      "--out", str(tmp_path / "y")])
    assert short.exit_code == 1 and "does not cover one step" in short.output


def test_measured_recipes_follow_the_measured_setting_and_yield_to_the_caller():
    """The substitute search runs as measured (augmented, device bands on half the scenes, 64 rooms, 200 steps per
    round's jam, as jam_query.md ran it: the CLI jammed 300), the masking objective augmented for 2000 steps, other
    jams plain for 300 steps in 16 rooms; given values win; the library gives what the CLI runs (it calls the same
    function)."""
    from robustaudio.runner.jam import measured_recipe

    substitute = measured_recipe("substitute")
    assert (substitute.augment, substitute.optimisation_rooms, substitute.steps) == (True, 64, 200)
    assert substitute.augmentation is not None and substitute.augmentation.device_probability == 0.5
    masking = measured_recipe("masking")
    assert (masking.augment, masking.optimisation_rooms, masking.steps) == (True, 16, 2000)
    assert masking.augmentation is not None and masking.augmentation.device_probability == 1.0
    for kind in ("detector", "nes"):
        plain = measured_recipe(kind)
        assert (plain.augment, plain.augmentation, plain.optimisation_rooms, plain.steps) == (False, None, 16, 300)
    assert measured_recipe("substitute", augment=False, rooms=8, steps=300) == measured_recipe("detector", rooms=8)
    given = measured_recipe("detector", augment=True, rooms=32, steps=7)
    assert (given.augment, given.optimisation_rooms, given.steps) == (True, 32, 7)
    assert given.augmentation is not None and given.augmentation.device_probability == 1.0
    assert measured_recipe("masking", augment=False).augmentation is None
    with pytest.raises(JamError, match="Unknown kind of jam 'pgd'"):
        measured_recipe("pgd")


def test_substitute_schedule_scales_the_measured_one_to_the_budget():
    """At 20,000 queries the schedule is jam_query.md's (4,000 before the first fit, eight rounds of 2,000, 600
    fitting steps: the class defaults); smaller budgets keep its shape, with fewer fitting steps; the CLI asks the
    library for it."""
    from robustaudio.attacks.substitute_jam import SubstituteSettings
    from robustaudio.cli.jam import _query_settings

    measured = SubstituteSettings.for_budget(20_000)
    assert measured == SubstituteSettings()
    assert measured.planned_steps == 9
    small = SubstituteSettings.for_budget(1_000, augment_asks=True)
    assert (small.first_queries, small.round_queries, small.fit_steps, small.planned_steps) == (200, 100, 250, 9)
    assert small.augment_asks and small.jam_steps == 200
    assert SubstituteSettings.for_budget(100).fit_steps == 40

    class Box:  # a streaming black box: _query_settings only reads these
        windowed, stepped = False, True

    cli = _query_settings("microwakeword:alexa", Box(), 20_000, "steps", "substitute", (200, 16, 0.05), True)
    assert cli == SubstituteSettings(augment_asks=True)


# slow (about 25 s): the substitute jam itself is tested in tests/test_substitute_jam.py
@pytest.mark.slow
def test_cli_jam_by_substitute_counts_rounds_and_queries(tmp_path, few_minievents):
    """--query-method substitute: the loop comes from rounds of fit-and-jam on the detector's answers; every
    query the detector answered is counted within the budget, and the curve has one point per round."""
    from robustaudio.cli import main

    out = tmp_path / "jam"
    result = CliRunner().invoke(main, [*tiny_query_jam(few_minievents, out), "--queries", "90", "--query-method",
                                       "substitute", "--steps", "3", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    query = card["settings"]["query"]
    assert query["method"] == "substitute" and query["feedback"] == "clip"
    assert (query["first_queries"], query["round_queries"], query["jam_steps"], query["fit_steps"]) == (18, 9, 3, 40)
    assert (query["substitutes"], query["keep_best"], query["augment_asks"]) == (3, True, True)
    assert card["settings"]["augmentation"] is not None  # on by default for the substitute: its jams and its asks
    assert card["settings"]["augmentation"]["device_probability"] == 0.5  # as measured on held-out engines
    # each round is judged by the answers to its own scenes: the last round ends where the budget does
    assert query["used"] == 90 and [h["queries"] for h in card["history"]] == list(range(18, 82, 9))
    # the dry check choosing the clips to learn from asks the box too: one query per learning clip, said apart
    assert query["selection_queries"] == card["clips"]["learn_positives_given"] > 0
    assert all(0 <= h["box_firing"] <= 1 for h in card["history"])
    assert [c["queries"] for c in card["query_curve"]] == [0, *range(27, 91, 9)]
    assert "round 8: fitted on 81 answers" in result.output
    report = (out / "report.md").read_text()
    assert "3 substitute(s) fitted to the detector's clip scores" in report
    assert f"(+{query['selection_queries']} dry queries choosing the clips to learn from)" in report
    assert "the loop the detector's answers found firing least" in report


def test_cli_jam_masking_objective_reads_no_detector_while_learning(tmp_path, few_minievents, monkeypatch):
    """--objective masking: the loop is learned on the front end alone (the detector is never called while
    learning, and every positive is learned from), then scored as any jam; the report says how it was found."""
    from robustaudio.attacks import masking_jam as masking
    from robustaudio.cli import main

    calls = {"margins": 0}
    original = masking.masking_jam

    def counting(*args, **kwargs):
        before = Detector.margins
        def margins(self, audio):  # noqa: E306
            calls["margins"] += 1
            return before(self, audio)
        monkeypatch.setattr(Detector, "margins", margins)
        try:
            return original(*args, **kwargs)
        finally:
            monkeypatch.setattr(Detector, "margins", before)

    monkeypatch.setattr("robustaudio.runner.jam.masking_jam", counting)
    out = tmp_path / "jam"
    result = CliRunner().invoke(main, ["jam", "--model", "cnn", "--target", "speech", "--music-db", "-10",
                                       "--data", str(few_minievents), "--objective", "masking",
                                       "--steps", "3", "--batch-size", "2", "--rooms", "1", "--held-out-rooms", "1",
                                       "--draws", "1", "--random-pieces", "1", "--loop-seconds", "1",
                                       "--rt60", "0.15", "0.2", "--scene-seeds", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert calls["margins"] == 0
    card = json.loads((out / "card.json").read_text())
    assert card["settings"]["objective"] == "masking"
    assert card["settings"]["augmentation"] is not None  # the measured setting: augmented unless told otherwise
    assert card["clips"]["learn_positives"] == card["clips"]["learn_positives_given"] == 2
    assert [h["step"] for h in card["history"]] == [1, 3] and all("visibility" in h for h in card["history"])
    assert "step 3: speech visibility" in result.output
    report = (out / "report.md").read_text()
    assert "masking objective (no detector read" in report and "masking objective, no detector read: 3 steps" in report
    assert "(all: the masking objective asks the detector nothing)" in report
    assert (out / "figures" / "optimisation.png").is_file()
    refused = CliRunner().invoke(main, ["jam", "--model", "cnn", "--target", "speech", "--objective", "masking",
                                        "--queries", "100", "--out", str(tmp_path / "q")])
    assert refused.exit_code == 2 and "drop --queries" in refused.output and "Traceback" not in refused.output


def test_cli_jam_masking_restarts_keep_the_loop_that_hides_the_word_best(tmp_path, few_minievents):
    """--restarts 2: two masking loops (seeds 2 and 3), the one with the lower visibility in the "pick" rooms is
    kept, and it is the loop the run scores and saves; the report says so. --restarts without the masking
    objective is refused in one line."""
    from robustaudio.acoustics.scenes import make_rooms
    from robustaudio.attacks.masking_jam import mean_visibility
    from robustaudio.cli import main

    out = tmp_path / "jam"
    result = CliRunner().invoke(main, ["jam", "--model", "cnn", "--target", "speech", "--music-db", "-10",
                                       "--data", str(few_minievents), "--objective", "masking", "--restarts", "2",
                                       "--steps", "2", "--batch-size", "2", "--rooms", "1", "--held-out-rooms", "1",
                                       "--draws", "1", "--random-pieces", "1", "--loop-seconds", "1",
                                       "--rt60", "0.15", "0.2", "--scene-seeds", "1", "--seed", "2",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    record = card["settings"]["restarts"]
    assert record["seeds"] == [2, 3] and record["rooms"] == 1
    assert record["kept"] == min((0, 1), key=record["visibility"].__getitem__) == 1  # not simply the first loop
    assert record["visibility"][0] != record["visibility"][1]
    # the kept loop is the one scored: its visibility, read again in the same rooms, is the record's
    music, rate = soundfile.read(out / "music_adversarial.wav", dtype="float32")
    config = EOTConfig(music_db=-10.0, jitter_db=3.0, rt60=(0.15, 0.2), scene_seconds=1.0)
    learn = load_utterances(few_minievents, "speech", 16000, "train")[0].positives()
    rooms = make_rooms("pick", 1, 2, (0.15, 0.2), 16000)
    again = mean_visibility(torch.as_tensor(music), learn, rooms, config, seed=2)
    assert again == pytest.approx(min(record["visibility"]), abs=2e-3)  # the WAV is 16-bit
    assert "best of 2 loops by the word's visibility in 1 rooms of their own" in (out / "report.md").read_text()
    refused = CliRunner().invoke(main, ["jam", "--model", "cnn", "--target", "speech", "--restarts", "2",
                                        "--out", str(tmp_path / "r")])
    assert refused.exit_code == 2 and "--objective masking" in refused.output and "Traceback" not in refused.output
    from robustaudio.runner.jam import LearnSettings, jam_and_evaluate
    for objective, restarts in (("detector", 2), ("masking", 0)):
        with pytest.raises(JamError, match="restarts"):
            jam_and_evaluate(None, None, None, EOTConfig(), LearnSettings(objective=objective, restarts=restarts))
