"""Query-based jamming: NES over the synthesiser against a detector's scores alone, with counted queries."""

from __future__ import annotations

import pytest
import torch
from test_jam import FAST, BandEnergy, tone_utterances

from robustaudio.acoustics.scenes import JamError, make_rooms, render, sample_transforms
from robustaudio.attacks.jamming import Detector
from robustaudio.attacks.music import KarplusStrong
from robustaudio.attacks.query_jam import QuerySettings, query_jam, score_loss

pytest.importorskip("pyroomacoustics")


class SteppedBandEnergy(BandEnergy):
    """BandEnergy scored on 8 consecutive chunks: a streaming black box with one logit per step (no gradients)."""

    def step_logits(self, audio):
        with torch.no_grad():
            spectrum = torch.fft.rfft(audio.reshape(len(audio), 8, -1)).abs().pow(2)   # [B, 8, F]
            cut = audio.shape[1] // 8 // 16                                          # the 1 kHz bin
            z = torch.log(spectrum[..., :cut].sum(-1) + 1e-6) - torch.log(spectrum[..., cut:].sum(-1) + 1e-6)
            return torch.stack([-z / 2, z / 2], dim=-1)


class StepsOnly:
    """A streaming black box: step scores and clip scores, every scored scene counted once."""

    def __init__(self, detector):
        self.detector, self.sample_rate, self.threshold, self.queries = detector, detector.sample_rate, 0.5, 0

    def step_scores(self, audio):
        self.queries += len(audio)
        return self.detector.step_scores(audio)

    def scores(self, audio):
        return self.step_scores(audio).amax(dim=1)


class ScoresOnly:
    """The detector as a black box: scores only (no margins, no gradients), every scored scene counted."""

    def __init__(self, detector):
        self.detector, self.sample_rate, self.threshold, self.queries = detector, detector.sample_rate, 0.5, 0

    def scores(self, audio):
        self.queries += len(audio)
        with torch.no_grad():
            return self.detector.scores(audio).detach()


def mean_loss(detector, synth, speech, rooms):
    transforms = sample_transforms(len(speech), rooms, FAST.fixed_level(), torch.Generator().manual_seed(9),
                                   loop_samples=synth.length)
    with torch.no_grad():
        return float(score_loss(detector.scores(render(speech, synth(), transforms, rooms, FAST))).mean())


def test_nes_lowers_a_black_box_score_within_its_query_budget():
    """The tiny band-energy detector (it fires on low-band scenes): NES on its scores alone lowers the loss on
    fixed scenes it never optimised on, never spends more than the budget, and counts what the box counted."""
    speech, rooms = tone_utterances(4), make_rooms("optimisation", 2, 0, FAST.rt60)
    box = ScoresOnly(Detector(BandEnergy(), "tone"))
    synth = KarplusStrong(seconds=0.5, seed=0)
    before = mean_loss(box.detector, synth, speech, rooms)
    settings = QuerySettings(queries=1_000, population=8, batch_size=4, sigma=0.1, lr=0.05, snapshots=(64, 500))
    result = query_jam(synth, box, speech, rooms, FAST, settings, seed=0)
    after = mean_loss(box.detector, synth, speech, rooms)
    assert after < 0.8 * before, (before, after)
    assert result.queries == box.queries <= 1_000 and result.queries % 32 == 0
    assert set(result.snapshots) == {64, 500, result.queries}
    assert [e["queries"] for e in result.history] == list(range(32, result.queries + 1, 32))
    torch.testing.assert_close(result.music, synth().detach())


def test_nes_searches_only_the_parameters_named():
    """parameters=("gains", "damping_logit"): the excitations (the strings' timbre) stay exactly at their start
    while the melody moves."""
    speech, rooms = tone_utterances(4), make_rooms("optimisation", 2, 0, FAST.rt60)
    synth = KarplusStrong(seconds=0.5, seed=0)
    start = {name: p.detach().clone() for name, p in synth.named_parameters()}
    settings = QuerySettings(queries=256, population=8, batch_size=4, sigma=0.1, lr=0.05, snapshots=(),
                             parameters=("gains", "damping_logit"))
    query_jam(synth, ScoresOnly(Detector(BandEnergy(), "tone")), speech, rooms, FAST, settings, seed=0)
    torch.testing.assert_close(synth.excitation.detach(), start["excitation"], rtol=0, atol=0)
    assert not torch.equal(synth.gains.detach(), start["gains"])
    with pytest.raises(JamError, match="parameters must name"):
        QuerySettings(parameters=("timbre",))


def test_query_settings_refuse_what_cannot_run():
    with pytest.raises(JamError, match="even"):
        QuerySettings(population=5)
    with pytest.raises(JamError, match="does not cover one step"):
        QuerySettings(queries=10, population=4, batch_size=4)


def test_step_loss_counts_firing_steps_and_is_the_clip_loss_for_one_step():
    """softplus(logsumexp_s logit s): one step is the clip loss; at the same (saturated) clip score, a scene
    firing on three steps costs more than one firing on one step, and both more than a scene that never fires."""
    clip = torch.tensor([0.9, 0.3])
    torch.testing.assert_close(score_loss(clip.unsqueeze(1)), score_loss(clip))
    steps = torch.tensor([[0.99, 0.99, 0.99, 0.01], [0.99, 0.01, 0.01, 0.01], [0.2, 0.01, 0.01, 0.01]])
    loss = score_loss(steps)
    assert loss[0] > loss[1] + 0.5 > loss[2] + 0.5


def test_nes_on_step_feedback_lowers_the_stepped_loss_and_refuses_a_clip_only_box():
    speech, rooms = tone_utterances(4), make_rooms("optimisation", 2, 0, FAST.rt60)
    detector = Detector(SteppedBandEnergy(), "tone")
    assert detector.step_scores(torch.randn(2, 16000)).shape == (2, 8)
    box = StepsOnly(detector)
    synth = KarplusStrong(seconds=0.5, seed=0)
    transforms = sample_transforms(len(speech), rooms, FAST.fixed_level(), torch.Generator().manual_seed(9),
                                   loop_samples=synth.length)

    def loss() -> float:
        with torch.no_grad():
            return float(score_loss(detector.step_scores(render(speech, synth(), transforms, rooms, FAST))).mean())

    before = loss()
    settings = QuerySettings(queries=2_000, population=8, batch_size=4, sigma=0.1, lr=0.05, snapshots=(),
                             feedback="steps")
    result = query_jam(synth, box, speech, rooms, FAST, settings, seed=0)
    after = loss()
    assert after < 0.85 * before, (before, after)  # 0.75 of it here; a wrong-signed step raises the loss
    assert result.queries == box.queries <= 2_000
    with pytest.raises(JamError, match="step_scores"):
        query_jam(synth, ScoresOnly(detector), speech, rooms, FAST, settings, seed=0)
    with pytest.raises(JamError, match="feedback must be"):
        QuerySettings(feedback="frames")
