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
