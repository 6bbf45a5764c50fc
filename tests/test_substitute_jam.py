"""Query-based jamming through a substitute fitted to a black box's answers; the streaming DS-CNN it fits."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from test_jam import FAST, tone_utterances
from test_query_jam import SteppedBandEnergy, StepsOnly

from robustaudio.acoustics.augmentation import Augmentation
from robustaudio.acoustics.scenes import JamError, make_rooms, render, sample_transforms
from robustaudio.attacks.jamming import Detector, jam, load_utterances, render_augmented
from robustaudio.attacks.music import KarplusStrong
from robustaudio.attacks.query_jam import query_jam, score_loss
from robustaudio.attacks.substitute_jam import SubstituteSettings, substitute_jam
from robustaudio.data.datasets import bundled_path
from robustaudio.models import load_model
from robustaudio.models.zoo.stream_dscnn import StreamDSCNN

pytest.importorskip("pyroomacoustics")


def twin_box():
    """Scenes of 1.5 s, six bundled "alexa" clips, two optimisation rooms, and microWakeWord alexa's float twin as a
    streaming black box (step scores only, every scene counted)."""
    pytest.importorskip("pymicro_wakeword")
    pytest.importorskip("tflite")
    config = replace(FAST, scene_seconds=1.5)
    clips, _ = load_utterances(bundled_path("wakeword"), "alexa", 16000, "train")
    speech, rooms = clips.positives().subset(torch.arange(6)), make_rooms("optimisation", 2, 0, config.rt60)
    return config, speech, rooms, StepsOnly(Detector(load_model("microwakeword-float:alexa", pad_after=0.0), "alexa"))


def test_stream_dscnn_is_causal_and_scores_the_steps_asked_for():
    torch.manual_seed(0)
    model = StreamDSCNN(channels=8, blocks=3).eval()
    audio = 0.1 * torch.randn(2, model.frames_for_steps(40))
    with torch.no_grad():
        margins = model.step_margins(audio)
        changed = audio.clone()
        changed[:, model.frames_for_steps(25):] = 0.3 * torch.randn(2, changed.shape[1] - model.frames_for_steps(25))
        after = model.step_margins(changed)
    assert margins.shape == (2, 40)
    # step s hears frames up to 3s + 2, whose windows end at sample 480 + 160 (3s + 2): nothing later
    torch.testing.assert_close(after[:, :24], margins[:, :24])
    assert not torch.allclose(after[:, 26:], margins[:, 26:])
    assert Detector(model, "wake_word").margins(audio).shape == (2, 40)


def test_substitute_jam_lowers_the_black_box_score_within_its_budget():
    """microWakeWord alexa's float twin as the black box (only its step scores reach the attack; it is the
    device's network, so a box of the real family): three rounds of fit-and-jam lower its loss on fixed scenes
    of bundled "alexa" clips, every query the box counted is accounted for, and each round's loop is kept (one
    substitute, the last round's loop: the simplest form)."""
    config, speech, rooms, box = twin_box()
    synth = KarplusStrong(seconds=1.0, seed=0)
    transforms = sample_transforms(len(speech), rooms, config.fixed_level(), torch.Generator().manual_seed(9),
                                   loop_samples=synth.length)

    def loss() -> float:
        with torch.no_grad():
            return float(score_loss(box.detector.scores(render(speech, synth(), transforms, rooms, config))).mean())

    before = loss()
    settings = SubstituteSettings(queries=384, first_queries=256, round_queries=64, fit_steps=150, fit_batch=32,
                                  jam_steps=30, jam_batch=8, jam_lr=0.05, path_loops=2, substitutes=1, keep_best=False)
    result = substitute_jam(synth, box, speech, rooms, config, settings, seed=0,
                            substitute=StreamDSCNN("alexa", channels=16, blocks=3))
    after = loss()
    assert after < 0.8 * before, (before, after)
    assert result.queries == box.queries == 384
    assert sorted(result.snapshots) == [256, 320, 384]
    assert [entry["queries"] for entry in result.history] == [256, 320, 384]
    assert all(entry["fit_loss"] < 0.2 for entry in result.history)   # the substitute does fit the box's answers
    torch.testing.assert_close(result.music, synth().detach())


def test_settings_and_boxes_it_cannot_use_are_refused():
    with pytest.raises(JamError, match="first_queries"):
        SubstituteSettings(queries=100, first_queries=200)
    with pytest.raises(JamError, match="feedback"):
        SubstituteSettings(feedback="logits")

    class ClipOnly:
        sample_rate = 16000

        def scores(self, audio):
            return torch.zeros(len(audio))

    with pytest.raises(JamError, match="step_scores"):
        substitute_jam(KarplusStrong(seconds=0.5, seed=0), ClipOnly(), tone_utterances(2),
                       make_rooms("optimisation", 1, 0, FAST.rt60), FAST)

    class Narrowband(ClipOnly):
        sample_rate = 8000

    slow = replace(FAST, sample_rate=8000)
    with pytest.raises(JamError, match="substitute hears 16000 Hz"):
        substitute_jam(KarplusStrong(seconds=0.5, sample_rate=8000, seed=0), Narrowband(),
                       tone_utterances(2, rate=8000), make_rooms("optimisation", 1, 0, FAST.rt60, 8000), slow,
                       SubstituteSettings(feedback="clip"))


def test_no_utterance_to_jam_is_a_jam_error_not_a_crash():
    """A word with no clip left (e.g. none detected clean) used to reach torch.randint(0) and crash."""
    none = tone_utterances(2).subset(torch.zeros(2, dtype=torch.bool))
    rooms, detector = make_rooms("optimisation", 1, 0, FAST.rt60), Detector(SteppedBandEnergy(), "tone")
    calls = [lambda: jam(KarplusStrong(seconds=0.5, seed=0), detector, none, rooms, FAST, steps=1),
             lambda: query_jam(KarplusStrong(seconds=0.5, seed=0), detector, none, rooms, FAST),
             lambda: substitute_jam(KarplusStrong(seconds=0.5, seed=0), StepsOnly(detector), none, rooms, FAST)]
    for call in calls:
        with pytest.raises(JamError, match="no utterance of the target word"):
            call()


def test_an_ensemble_of_substitutes_keeps_the_loop_the_box_found_firing_least():
    """Two substitutes jammed at once, keep_best: each round's loop is judged by the box's answers to the scenes
    asked with it, the kept loop is the round's with the lowest share firing, and snapshots follow the best so far."""
    config, speech, rooms, box = twin_box()
    settings = SubstituteSettings(queries=448, first_queries=256, round_queries=64, fit_steps=100, jam_steps=15,
                                  jam_batch=8, path_loops=2, substitutes=2, keep_best=True)
    result = substitute_jam(KarplusStrong(seconds=1.0, seed=0), box, speech, rooms, config, settings, seed=0,
                            substitute=StreamDSCNN("alexa", channels=16, blocks=3))
    assert result.queries == box.queries == 448
    firing = [entry["box_firing"] for entry in result.history]
    assert [entry["queries"] for entry in result.history] == [256, 320, 384] and len(firing) == 3
    assert sorted(result.snapshots) == [320, 384, 448]
    best = min(range(3), key=lambda k: firing[k])
    torch.testing.assert_close(result.music, result.snapshots[448])
    torch.testing.assert_close(result.snapshots[[320, 384, 448][best]], result.music)


def test_a_budget_spent_before_any_round_is_judged_returns_the_loop_learned():
    """keep_best with every query spent on the first fit: no round could be judged, so the result is the loop the
    one jam learned (not the random start)."""
    config, speech, rooms, box = twin_box()
    synth = KarplusStrong(seconds=1.0, seed=0)
    settings = SubstituteSettings(queries=64, first_queries=64, fit_steps=10, jam_steps=3, jam_batch=4, substitutes=1)
    result = substitute_jam(synth, box, speech, rooms, config, settings, seed=0,
                            substitute=StreamDSCNN("alexa", channels=8, blocks=2))
    assert result.queries == box.queries == 64 and list(result.snapshots) == [64]
    assert not torch.equal(result.music, result.initial)
    torch.testing.assert_close(result.music, synth().detach())


def test_augmented_asks_put_the_questions_through_the_jams_devices():
    """augment_asks: the scenes the box is asked about are drawn with the jam's augmentation. A microphone band
    with its high corner at 1 kHz leaves the asked scenes with a small share of their energy above 2 kHz, which the
    plain asks keep; without an augmentation to draw from, augment_asks is refused in one line."""
    config, speech, rooms, _ = twin_box()

    class Recording:
        sample_rate, threshold = 16000, 0.5

        def __init__(self) -> None:
            self.asked: list[torch.Tensor] = []

        def step_scores(self, audio):
            self.asked.append(audio.clone())
            return torch.zeros(len(audio), 20)

        def scores(self, audio):
            return self.step_scores(audio).amax(dim=1)

    def high_share(augment_asks: bool) -> float:
        box = Recording()
        settings = SubstituteSettings(queries=64, first_queries=64, fit_steps=1, jam_steps=1, jam_batch=2,
                                      substitutes=1, augment_asks=augment_asks)
        muffled = Augmentation(microphone_low_hz=(50.0, 50.0), microphone_high_hz=(1000.0, 1000.0))
        substitute_jam(KarplusStrong(seconds=1.0, seed=0), box, speech, rooms, config, settings, seed=0,
                       substitute=StreamDSCNN("alexa", channels=8, blocks=2), augmentation=muffled)
        spectrum = torch.fft.rfft(torch.cat(box.asked), dim=1).abs() ** 2
        above = spectrum[:, int(2000 / 8000 * (spectrum.shape[1] - 1)):].sum()
        return float(above / spectrum.sum())

    plain, augmented = high_share(False), high_share(True)
    assert plain > 0.02 and augmented < plain / 10, (plain, augmented)
    with pytest.raises(JamError, match="pass an augmentation"):
        substitute_jam(KarplusStrong(seconds=1.0, seed=0), Recording(), speech, rooms, config,
                       SubstituteSettings(queries=64, first_queries=64, augment_asks=True))


def test_render_augmented_without_augmentation_is_render():
    config, speech, rooms, _ = twin_box()
    transforms = sample_transforms(len(speech), rooms, config, torch.Generator().manual_seed(1), loop_samples=16000)
    music = KarplusStrong(seconds=1.0, seed=0)().detach()
    plain = render(speech, music, transforms, rooms, config)
    torch.testing.assert_close(render_augmented(speech, music, transforms, rooms, config, None, torch.Generator()),
                               plain)
    changed = render_augmented(speech, music, transforms, rooms, config, Augmentation(),
                               torch.Generator().manual_seed(2))
    assert changed.shape == plain.shape and not torch.allclose(changed, plain)


def test_device_bands_are_applied_with_their_probability():
    """device_probability: each band is applied to a scene with that chance; at 0 (talker changes off) the scene
    is exactly `render`'s, at 0.5 some scenes keep full-band music and no microphone; gradients reach the music."""
    config, speech, rooms, _ = twin_box()
    transforms = sample_transforms(len(speech), rooms, config, torch.Generator().manual_seed(1), loop_samples=16000)
    music = KarplusStrong(seconds=1.0, seed=0)().detach().requires_grad_(True)
    plain = render(speech, music, transforms, rooms, config).detach()
    no_talker = Augmentation(speed=(1.0, 1.0), pitch_semitones=(0.0, 0.0), formant=(1.0, 1.0), eq_db=0.0)

    def scenes(probability: float, seed: int) -> torch.Tensor:
        return render_augmented(speech, music, transforms, rooms, config,
                                replace(no_talker, device_probability=probability), torch.Generator().manual_seed(seed))

    torch.testing.assert_close(scenes(0.0, 2).detach(), plain)
    assert not any(torch.allclose(a, b, atol=1e-6) for a, b in zip(scenes(1.0, 2).detach(), plain, strict=True))
    some = scenes(0.5, 5)
    same = [torch.allclose(a, b, atol=1e-6) for a, b in zip(some.detach(), plain, strict=True)]
    assert any(same) and not all(same)
    some.pow(2).sum().backward()
    assert music.grad is not None and music.grad.abs().sum() > 0
    with pytest.raises(JamError, match="device_probability"):
        Augmentation(device_probability=1.5)
