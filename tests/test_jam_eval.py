"""Jamming measured for voices and engines it never heard: the voice-clustered bootstrap, the
evaluation over scene seeds, the level chosen over seeds, the engine split, and the talker and
device augmentations of the EOT distribution (checked on synthetic tones)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from test_jam import BandEnergy

from robustaudio.acoustics.augmentation import Augmentation, augment_utterances
from robustaudio.acoustics.mixing import AcousticsError
from robustaudio.acoustics.scenes import EOTConfig, JamError, Utterances, make_rooms
from robustaudio.acoustics.voice import (
    band_limit_gain,
    change_speed,
    device_filter,
    equalise,
    filter_gain,
    realised_speed,
    shift_pitch,
    spectral_envelope,
    time_stretch,
    warp_formants,
)
from robustaudio.attacks.jamming import Detector, jam
from robustaudio.attacks.music import KarplusStrong
from robustaudio.data.datasets import BUNDLED_ROOT
from robustaudio.data.speech import SpeechClip, SpeechSplitError, engine_split, read_speech_set, voice_split
from robustaudio.metrics.jamming import (
    choose_level,
    choose_level_every,
    evaluate_seeds,
    random_loops,
    seed_rooms,
    seed_summary,
    sweep_levels,
    sweep_levels_by,
    voice_table,
)
from robustaudio.runner.jam import ClipOrigins, LearnSettings, SceneProtocol, jam_and_evaluate
from robustaudio.stats import clustered_bootstrap, f1_from_counts, few_clusters_widening, rate_of

RATE = 16000
FAST = EOTConfig(music_db=-10.0, jitter_db=5.0, scene_seconds=1.0, rt60=(0.15, 0.2))




# ---- the clustered bootstrap ----------------------------------------------------------------------


def test_clusters_with_identical_means_give_a_zero_width_interval():
    values = np.array([0.0, 1.0, 1.0, 0.0, 0.2, 0.8])
    clusters = np.array(["a", "a", "b", "b", "c", "c"])  # every cluster's mean is 0.5, sizes equal
    out = clustered_bootstrap(values, clusters, np.mean, n_resamples=500, seed=3)
    assert out["value"] == pytest.approx(0.5)
    assert out["ci95"] == pytest.approx([0.5, 0.5])
    assert out["clusters"] == 3 and out["n"] == 6 and out["resamples"] == 500


def test_clusters_of_very_different_sizes_widen_the_interval_to_what_voices_allow():
    """One voice of 1 scene that fires, one of 99 that never does: resampling voices gives 0, 1/100 or
    1 (both draws the small voice, probability 1/4), so the 95% interval is [0, 1]; resampling scenes
    would give a narrow interval around 0.01."""
    values = np.r_[1.0, np.zeros(99)]
    clusters = np.r_[["small"], ["large"] * 99]
    out = clustered_bootstrap(values, clusters, np.mean, n_resamples=4000, seed=0, bounds=(0, 1))
    assert out["value"] == pytest.approx(0.01)
    assert out["ci95"] == pytest.approx([0.0, 1.0])
    scenes = clustered_bootstrap(values, np.arange(100), np.mean, n_resamples=4000, seed=0)  # one cluster per row
    assert scenes["ci95"][1] - scenes["ci95"][0] < 0.05


def test_clustered_interval_matches_the_hand_computed_percentiles_of_the_exact_distribution():
    """Three clusters: the resampled statistic takes the value of each of the 27 ordered draws with
    probability 1/27; with many resamples, the 25th and 75th percentiles (level 0.5) are the exact
    distribution's quantiles (neither falls on a jump of the cumulative distribution)."""
    members = {"x": [0.0, 0.0], "y": [1.0], "z": [1.0, 1.0, 1.0, 1.0]}
    values = np.concatenate(list(members.values()))
    clusters = np.concatenate([[k] * len(v) for k, v in members.items()])
    draws = [round(float(np.mean(np.concatenate([members[k] for k in draw]))), 9)
             for draw in itertools.product(members, repeat=3)]
    atoms = sorted(set(draws))                                      # 0, 0.2, 0.5, 5/7, 0.8, 1
    cdf = np.cumsum([draws.count(a) for a in atoms]) / 27         # .037 .148 .370 .593 .704 1

    def quantile(q):
        return atoms[int(np.searchsorted(cdf, q))]

    assert all(abs(c - q) > 0.02 for c in cdf for q in (0.25, 0.75))
    assert (quantile(0.25), quantile(0.75)) == (0.5, 1.0)
    out = clustered_bootstrap(values, clusters, np.mean, n_resamples=20000, seed=1, level=0.5, widen=False)
    assert out["ci95"] == pytest.approx([quantile(0.25), quantile(0.75)])
    assert out["value"] == pytest.approx(5 / 7)


def test_f1_is_computed_from_counts_pooled_over_the_clusters_drawn():
    # voice a: 3 positives, 2 detected, 1 false alarm; voice b: 1 positive missed, 1 negative quiet
    rows = np.array([[1, 1], [1, 1], [1, 0], [0, 1], [1, 0], [0, 0]], dtype=bool)
    assert f1_from_counts(rows) == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    assert math.isnan(f1_from_counts(np.zeros((3, 2), dtype=bool)))  # no positive, no detection
    # a hand check of one resample: voice a drawn twice -> counts double, F1 unchanged (pooled, not averaged)
    clusters = np.array(["a"] * 4 + ["b"] * 2)
    out = clustered_bootstrap(rows, clusters, f1_from_counts, n_resamples=300, seed=0, widen=False)
    f1_a, f1_b = f1_from_counts(rows[:4]), f1_from_counts(rows[4:])
    assert out["ci95"][0] == pytest.approx(0.0) and out["ci95"][1] == pytest.approx(f1_a)
    assert math.isnan(f1_b) is False and f1_b == 0.0
    assert rate_of(np.array([1, 0, 1, 1])) == 0.75 and math.isnan(rate_of(np.array([])))
    with pytest.raises(ValueError, match="one label per row"):
        clustered_bootstrap(rows, clusters[:3], f1_from_counts)


def test_few_voices_widen_the_interval_to_keep_its_coverage():
    """Voice-clustered 95% intervals of a rate over 6 voices (each its own TPR, 5-30 scenes): the plain percentiles
    covered the truth 85-87% of the time in simulation; widened by Student's t (few_clusters_widening), >= 90%."""
    rng = np.random.default_rng(7)
    covered = {True: 0, False: 0}
    for r in range(150):
        rates, scenes = rng.beta(1, 1, 6), rng.integers(5, 30, 6)
        values = np.concatenate([rng.random(m) < p for m, p in zip(scenes, rates)]).astype(float)
        clusters = np.repeat(np.arange(6), scenes)
        for widen in covered:
            low, high = clustered_bootstrap(values, clusters, rate_of, 300, r, bounds=(0, 1), widen=widen)["ci95"]
            covered[widen] += low <= 0.5 <= high
    assert covered[True] / 150 >= 0.90 and covered[True] > covered[False]
    assert few_clusters_widening(5) == pytest.approx(1.58, abs=0.01) and few_clusters_widening(1) == 1.0
    assert 1.0 < few_clusters_widening(42) < 1.05


def test_the_level_is_the_loudest_whose_mean_over_seeds_keeps_the_floor():
    # sweep_levels' output, {level: {seed: F1}}: a bug once averaged the seed numbers instead of the F1s
    sweep = {-14.0: {1: 0.9, 2: 0.85}, -12.0: {1: 0.8, 2: 0.7}, -10.0: {1: 0.82, 2: 0.55}, -8.0: {1: 0.5, 2: 0.4}}
    assert choose_level(sweep) == -12.0           # -10 dB: one lucky seed (0.82) but a mean of 0.685
    assert choose_level(sweep, floor=0.65) == -10.0
    with pytest.raises(JamError, match="none of the levels"):
        choose_level(sweep, floor=0.95)
    assert choose_level({-10.0: {7: 0.75, 9: 0.72}}) == -10.0  # seeds 7 and 9: numbers that are not F1s


def test_the_level_for_every_group_is_held_back_by_the_most_fragile_group():
    """--level-by: a robust population may carry the pooled mean above the floor while a fragile one falls
    below it; the level must keep the floor for each group at once."""
    robust = {-14.0: {1: 0.95, 2: 0.93}, -12.0: {1: 0.9, 2: 0.9}, -10.0: {1: 0.88, 2: 0.86}}
    fragile = {-14.0: {1: 0.78, 2: 0.74}, -12.0: {1: 0.66, 2: 0.7}, -10.0: {1: 0.5, 2: 0.55}}
    pooled = {-14.0: {1: 0.86, 2: 0.84}, -12.0: {1: 0.78, 2: 0.8}, -10.0: {1: 0.71, 2: 0.72}}
    assert choose_level(pooled) == -10.0
    assert choose_level_every({"all": pooled, "flite": robust, "festival": fragile}) == -14.0
    assert choose_level_every({"all": pooled, "flite": robust}) == -10.0
    with pytest.raises(JamError, match="for festival at none of the levels"):
        choose_level_every({"flite": robust, "festival": fragile}, floor=0.8)
    with pytest.raises(JamError, match="every group at once"):  # each group has a level, but not a common one
        choose_level_every({"a": {-14.0: {1: 0.9}, -10.0: {1: 0.5}}, "b": {-14.0: {1: 0.5}, -10.0: {1: 0.9}}})


class AlwaysFires:
    threshold = 0.5

    def scores(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.ones(audio.shape[0])


def test_each_group_is_scored_with_its_own_positives_and_every_negative():
    """sweep_levels_by: group F1 = 2TP / (2TP + FP + FN) over the group's positives and all negatives; a
    detector that always fires gives 2P / (2P + N) per group; "all" is sweep_levels' pooled sweep."""
    utterances = _tones(6)                               # labels 0, 1, 0, 1, 0, 1
    group_of = {"tone1": "a", "tone3": "a", "tone5": "b", "tone0": "a", "tone2": "c"}  # c: negatives only
    avoid = make_rooms("optimisation", 2, 0, FAST.rt60)
    kwargs = {"seeds": (1, 2), "held_out_rooms": 2, "draws": 1, "loop_seconds": 0.5, "pieces": 1, "avoid": avoid}
    by_group = sweep_levels_by(AlwaysFires(), utterances, FAST, [-10.0], group_of, **kwargs)
    assert set(by_group) == {"all", "a", "b"}           # no group of negatives only
    assert by_group["a"][-10.0] == {1: pytest.approx(4 / 7), 2: pytest.approx(4 / 7)}  # P = 2, N = 3
    assert by_group["b"][-10.0] == {1: pytest.approx(2 / 5), 2: pytest.approx(2 / 5)}  # P = 1, N = 3
    assert by_group["all"] == sweep_levels(AlwaysFires(), utterances, FAST, [-10.0], **kwargs)
    assert by_group["all"][-10.0][1] == pytest.approx(6 / 9)


# ---- splits by engine and voice -------------------------------------------------------------------


def _clip(engine: str, voice: str, speaker: str | None = None, label: str = "alexa") -> SpeechClip:
    name = f"{engine}:{voice}"
    return SpeechClip(f"set/{name}/{label}", BUNDLED_ROOT, label, engine, name, speaker or name)


def test_engine_split_never_puts_an_engine_on_both_sides():
    clips = [_clip(e, v) for e in ("espeak-ng", "flite", "festival") for v in ("a", "b")]
    learn, evaluate = engine_split(clips, ["flite", "festival"])
    assert {c.engine for c in learn} == {"espeak-ng"} and {c.engine for c in evaluate} == {"flite", "festival"}
    assert not {c.voice for c in learn} & {c.voice for c in evaluate}
    learn, evaluate = engine_split(clips, ["festival"], ["espeak-ng"])  # flite dropped, not leaked
    assert {c.engine for c in learn} == {"espeak-ng"} and {c.engine for c in evaluate} == {"festival"}
    with pytest.raises(SpeechSplitError, match="both learning and evaluation"):
        engine_split(clips, ["flite"], ["flite", "espeak-ng"])
    shared = [_clip("flite", "kal", "speaker:kal"), _clip("festival", "kal_diphone", "speaker:kal")]
    with pytest.raises(SpeechSplitError, match="speaker"):  # one recorded person behind two engines
        engine_split(shared, ["festival"], ["flite"])
    with pytest.raises(SpeechSplitError, match="speaker"):
        voice_split(shared, ["festival:kal_diphone"])


def test_engine_split_of_the_bundled_wakeword_set():
    clips = read_speech_set(BUNDLED_ROOT / "wakeword", "bundled")
    learn, evaluate = engine_split(clips, ["flite"])
    assert learn and evaluate
    assert {c.engine for c in learn} == {"espeak-ng"} and {c.engine for c in evaluate} == {"flite"}
    assert not {c.voice for c in learn} & {c.voice for c in evaluate}
    assert len(learn) + len(evaluate) == len(clips)
    test_voices = {c.voice for c in clips if c.split == "test" and c.engine == "espeak-ng" and c.label == "alexa"}
    kept, held = voice_split(learn, test_voices)
    assert {c.voice for c in held} == test_voices and not {c.voice for c in kept} & test_voices


# ---- augmentations on synthetic tones --------------------------------------------------------------


def _tone(hz: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(seconds * RATE), dtype=torch.float64) / RATE
    return torch.sin(2 * math.pi * hz * t).float()


def _peak_hz(audio: torch.Tensor) -> float:
    """The strongest frequency, interpolated between bins (parabola on the log magnitude)."""
    spectrum = torch.fft.rfft(audio * torch.hann_window(len(audio))).abs().double()
    k = int(spectrum.argmax())
    a, b, c = (float(torch.log(spectrum[i])) for i in (k - 1, k, k + 1))
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * RATE / len(audio)


def _gain_db(before: torch.Tensor, after: torch.Tensor, edge: int = 2000) -> float:
    return 20 * math.log10(float(after[edge:-edge].pow(2).mean().sqrt() / before[edge:-edge].pow(2).mean().sqrt()))


@pytest.mark.parametrize("factor", [0.85, 1.15])
def test_speed_changes_duration_and_frequency_by_the_factor(factor):
    tone = _tone(440.0)
    fast = change_speed(tone, factor)
    assert len(fast) / len(tone) == pytest.approx(1 / factor, rel=1e-3)
    assert _peak_hz(fast) == pytest.approx(440.0 * factor, rel=2e-3)
    assert change_speed(tone, 1.0) is tone
    assert realised_speed(factor) == pytest.approx(factor, abs=1 / 200)


def test_voice_transforms_refuse_factors_they_cannot_apply():
    tone = _tone(440.0)
    for transform, factor, name in ((change_speed, 5.0, "Speed"), (time_stretch, 0.1, "Stretch"),
                                    (warp_formants, 3.0, "Formant")):
        with pytest.raises(AcousticsError, match=name):
            transform(tone, factor)


def test_time_stretch_keeps_the_frequency():
    stretched = time_stretch(_tone(440.0), 1.2)
    assert len(stretched) == int(1.2 * RATE)
    assert _peak_hz(stretched) == pytest.approx(440.0, rel=2e-3)


@pytest.mark.parametrize("semitones", [-2.5, 3.0])
def test_pitch_shift_moves_the_tone_by_the_ratio_and_keeps_the_duration(semitones):
    tone = _tone(440.0)
    ratio = 2 ** (semitones / 12)
    shifted = shift_pitch(tone, ratio)
    assert shifted.shape == tone.shape
    assert _peak_hz(shifted) == pytest.approx(440.0 * ratio, rel=2e-3)


def test_eq_gain_at_the_band_matches_and_falls_off_away_from_it():
    centre_tone, far_tone = _tone(1000.0), _tone(4000.0)
    assert _gain_db(centre_tone, equalise(centre_tone, [1000.0], [6.0], [0.5])) == pytest.approx(6.0, abs=0.05)
    assert _gain_db(centre_tone, equalise(centre_tone, [1000.0], [-9.0], [0.5])) == pytest.approx(-9.0, abs=0.05)
    expected = 6.0 * math.exp(-0.5 * (2 / 0.5) ** 2)  # two octaves away
    assert _gain_db(far_tone, equalise(far_tone, [1000.0], [6.0], [0.5])) == pytest.approx(expected, abs=0.05)
    # per-row bands on a batch, and the loop version wraps around (no padding)
    batch = torch.stack([centre_tone, centre_tone])
    out = equalise(batch, [[1000.0], [1000.0]], [[3.0], [-3.0]], [[1.0], [1.0]])
    assert [_gain_db(centre_tone, row) for row in out] == pytest.approx([3.0, -3.0], abs=0.05)
    loop = equalise(centre_tone, [1000.0], [6.0], [0.5], circular=True)
    assert _gain_db(centre_tone, loop, edge=1) == pytest.approx(6.0, abs=0.05)


def test_device_band_passes_speech_and_is_3_db_down_at_its_corners():
    hz = torch.tensor([200.0, 1000.0, 4000.0])
    gain = band_limit_gain(hz, torch.tensor(200.0), torch.tensor(4000.0))
    assert (20 * torch.log10(gain)).tolist() == pytest.approx([-3.01, 0.0, -3.01], abs=0.05)
    for hz, expected in ((1000.0, 0.0), (200.0, -3.01), (50.0, -24.1)):
        tone = _tone(hz)
        assert _gain_db(tone, device_filter(tone, 200.0, 4000.0)) == pytest.approx(expected, abs=0.15)
    flat = _tone(700.0)
    torch.testing.assert_close(filter_gain(flat, lambda f: torch.ones_like(f), RATE), flat, atol=1e-5, rtol=0)


def _vowel(f0: float, formant_hz: float, seconds: float = 1.0) -> torch.Tensor:
    """A harmonic series at ``f0`` through one resonance at ``formant_hz`` (Gaussian, 150 Hz wide)."""
    t = torch.arange(int(seconds * RATE), dtype=torch.float64) / RATE
    source = sum(torch.sin(2 * math.pi * f0 * k * t) for k in range(1, int(7800 / f0)))
    return filter_gain(source.float(), lambda hz: torch.exp(-0.5 * ((hz - formant_hz) / 150) ** 2) + 0.01, RATE)


def _envelope_centroid(audio: torch.Tensor, low: float = 300.0, high: float = 2500.0) -> float:
    magnitude = torch.stft(audio, 1024, 256, window=torch.hann_window(1024), return_complex=True).abs()
    envelope = spectral_envelope(magnitude, 40).mean(-1).exp()
    hz = torch.fft.rfftfreq(1024, 1 / RATE)
    band = (hz >= low) & (hz <= high)
    weight = envelope[band] ** 2
    return float((hz[band] * weight).sum() / weight.sum())


def _pitch(audio: torch.Tensor) -> float:
    segment = audio[4000:12000].double()
    correlation = torch.fft.irfft(torch.fft.rfft(segment, n=16384).abs() ** 2)[:400]
    return RATE / (int(correlation[40:].argmax()) + 40)


@pytest.mark.parametrize("alpha", [0.88, 1.12])
def test_formant_warp_moves_the_envelope_and_keeps_the_pitch(alpha):
    vowel = _vowel(150.0, 1000.0)
    warped = warp_formants(vowel, alpha, RATE)
    assert warped.shape == vowel.shape
    assert _envelope_centroid(warped) / _envelope_centroid(vowel) == pytest.approx(alpha, rel=0.03)
    assert _pitch(warped) == pytest.approx(_pitch(vowel), rel=0.01)
    assert warp_formants(vowel, 1.0) is vowel


def test_augmented_utterances_follow_their_draws():
    tones = Utterances.from_waveforms(["a", "b", "c"], [_tone(300.0, 0.5), _tone(500.0, 0.4), _tone(700.0, 0.3)],
                                      [1, 1, 1], RATE, trim=False)
    every = Augmentation(probability=1.0, formant=(1.0, 1.0), eq_db=0.0, pitch_semitones=(0.0, 0.0))
    out, draws = augment_utterances(tones, every, torch.Generator().manual_seed(0), RATE)
    for b, draw in enumerate(draws):
        assert 0.85 <= draw["speed"] <= 1.15
        assert int(out.lengths[b]) == pytest.approx(int(tones.lengths[b]) / draw["speed"], abs=2)
        wave = out.audio[b, :int(out.lengths[b])]
        assert _peak_hz(wave) == pytest.approx((300.0, 500.0, 700.0)[b] * draw["speed"], rel=5e-3)
        assert float(wave.abs().max()) == pytest.approx(1.0, abs=1e-3)  # the peak is kept
    none = Augmentation(probability=0.0)
    same, draws = augment_utterances(tones, none, torch.Generator().manual_seed(0), RATE)
    torch.testing.assert_close(same.audio, tones.audio)
    assert all(d == {"speed": 1.0, "pitch_semitones": 0.0, "formant": 1.0, "eq_bands": 0} for d in draws)
    with pytest.raises(JamError, match="speed"):
        Augmentation(speed=(0.2, 1.0))


# ---- the jam with augmentation, the evaluation over seeds -------------------------------------------


def _tones(count: int = 4) -> Utterances:
    waves = [0.5 * _tone(300.0 + 100 * k, 0.4) * torch.hann_window(int(0.4 * RATE)) for k in range(count)]
    return Utterances.from_waveforms([f"tone{k}" for k in range(count)], waves, [k % 2 for k in range(count)], RATE)


def test_jam_with_augmentation_runs_and_leaves_the_unaugmented_draws_alone():
    detector = Detector(BandEnergy(), "tone")
    rooms = make_rooms("optimisation", 2, 0, FAST.rt60)
    plain = jam(KarplusStrong(seconds=0.5, seed=0), detector, _tones(), rooms, FAST, steps=3, batch_size=3, lr=0.05)
    again = jam(KarplusStrong(seconds=0.5, seed=0), detector, _tones(), rooms, FAST, steps=3, batch_size=3, lr=0.05)
    torch.testing.assert_close(plain.music, again.music)
    augmented = jam(KarplusStrong(seconds=0.5, seed=0), detector, _tones(), rooms, FAST, steps=3, batch_size=3,
                    lr=0.05, augmentation=Augmentation())
    assert augmented.rooms_seen == plain.rooms_seen  # same room draws: augmentation has its own generator
    assert torch.isfinite(augmented.music).all() and not torch.equal(augmented.music, plain.music)


def test_evaluation_over_seeds_uses_new_rooms_per_seed_and_summarises_by_voice():
    detector = Detector(BandEnergy(), "tone")
    utterances = _tones(4)
    voices = {"tone0": "v1", "tone1": "v1", "tone2": "v2", "tone3": "v3"}
    engines = {"tone0": "e1", "tone1": "e1", "tone2": "e1", "tone3": "e2"}
    avoid = make_rooms("optimisation", 2, 0, FAST.rt60)
    musics = {"clean": None, "random": random_loops(0.5, RATE, pieces=2)}
    rows = evaluate_seeds({"target": detector}, utterances, FAST, musics, seeds=(1, 2), held_out_rooms=2, draws=2,
                          avoid=avoid)
    assert len(rows) == 2 * 2 * 4 * 2  # seeds x conditions x clips x draws
    assert {r["seed"] for r in rows} == {1, 2}
    assert not torch.equal(random_loops(0.5, RATE, pieces=2)(1), random_loops(0.5, RATE, pieces=2)(2))
    assert make_rooms("held-out", 2, 1, FAST.rt60).rooms != make_rooms("held-out", 2, 2, FAST.rt60).rooms
    with pytest.raises(JamError, match="optimised in"):
        evaluate_seeds({"target": detector}, utterances, FAST, musics, seeds=(0,), held_out_rooms=2, draws=1,
                       avoid=make_rooms("held-out", 2, 0, FAST.rt60))
    summary = seed_summary(rows, voices, n_resamples=200)
    assert [s["condition"] for s in summary] == ["clean", "random"]
    for s in summary:
        assert s["voices"] == 3 and s["positive_voices"] == 2 and s["scenes"] == 2 * 4 * 2
        assert set(s["per_seed"]) == {1, 2}
        pooled = np.array([[r["label"], r["fired"]] for r in rows if r["condition"] == s["condition"]], dtype=bool)
        assert s["f1"]["value"] == pytest.approx(f1_from_counts(pooled), nan_ok=True)
        assert s["f1"]["clusters"] == 3
    by_engine = seed_summary(rows, voices, by=engines, n_resamples=100)
    assert {(s["group"], s["voices"]) for s in by_engine} == {("e1", 2), ("e2", 1)}
    table = voice_table(rows, voices, engines)
    assert {(t["voice"], t["condition"]) for t in table} == {(v, c) for v in ("v1", "v3") for c in ("clean", "random")}
    assert all(t["scenes"] == 2 * 2 and t["clips"] == 1 for t in table)  # one positive clip per voice


def test_jam_and_evaluate_over_scene_seeds_fills_the_seed_tables():
    detector = Detector(BandEnergy(), "tone")
    speech = _tones(4)
    voices = {"tone0": "v1", "tone1": "v1", "tone2": "v2", "tone3": "v2"}
    run = jam_and_evaluate(detector, speech, speech, FAST,
                           LearnSettings(steps=2, batch_size=2, lr=0.05, augmentation=Augmentation()),
                           SceneProtocol(optimisation_rooms=2, held_out_rooms=2, draws=1, random_pieces=2,
                                         loop_seconds=0.5, scene_seeds=(1, 2), n_resamples=50),
                           origins=ClipOrigins(voices=voices))
    kept = run.selected["test_positives"] + run.selected["test_negatives"]
    assert len(run.seed_rows) == 2 * 3 * kept  # seeds x conditions x clips (one draw)
    assert [s["condition"] for s in run.seed_summary] == ["clean", "random", "adversarial"]
    assert all(set(s["per_seed"]) == {1, 2} for s in run.seed_summary)
    assert run.settings["scene_seeds"] == [1, 2] and run.settings["augmentation"]["speed"] == [0.85, 1.15]
    assert {t["voice"] for t in run.voice_table} <= {"v1", "v2"}
    # the held-out rows are the seeds' (no extra single-draw pass over one more set of held-out rooms)
    held_out = [r for r in run.rows if r["rooms"] == "held-out"]
    assert held_out == run.seed_rows
    assert len(run.rows) == len(run.seed_rows) + 3 * kept  # + the optimisation rooms, one draw
    pooled = {s["condition"]: s["scenes"] for s in run.summary if s["rooms"] == "held-out"}
    assert pooled == {c: 2 * kept for c in ("clean", "random", "adversarial")}
    assert set(run.rooms) == {"optimisation", "held-out, seed 1", "held-out, seed 2"}
    for s in (1, 2):  # the rooms listed are the ones each seed's rows were scored in (row "room": an index)
        listed = run.rooms[f"held-out, seed {s}"]
        assert listed.seed == s and listed.rooms == seed_rooms(FAST, 2, (s,))[s].rooms
        assert {r["room"] for r in run.seed_rows if r["seed"] == s} <= set(range(len(listed.rooms)))
    plain = jam_and_evaluate(detector, speech, speech, FAST, LearnSettings(steps=1, batch_size=2),
                             SceneProtocol(optimisation_rooms=2, held_out_rooms=2, draws=1, random_pieces=2,
                                           loop_seconds=0.5))
    assert plain.seed_rows == [] and plain.settings["augmentation"] is None
    assert set(plain.rooms) == {"optimisation", "held-out"} and {r["rooms"] for r in plain.rows} == set(plain.rooms)


def test_a_level_sweep_that_keeps_no_floor_says_whether_any_level_could(monkeypatch):
    """No level keeps the floor: if the clips keep it with no music in the same rooms, the grid was too loud
    ("try quieter levels"); if they do not even then (Pico's "alexa" in rooms, experiments/jam_pico.md), the
    refusal says no level can and names the real fixes."""
    import robustaudio.runner.jam as runner
    from robustaudio.metrics.jamming import clean_f1_in_rooms

    detector = Detector(BandEnergy(), "tone")
    speech = _tones(4)
    protocol = SceneProtocol(optimisation_rooms=2, held_out_rooms=2, draws=1, random_pieces=2, loop_seconds=0.5,
                             scene_seeds=(1, 2))
    clean = clean_f1_in_rooms(detector, speech, FAST, seeds=(1001, 1002), held_out_rooms=2, draws=1)
    assert set(clean) == {1001, 1002} and all(0.0 <= v <= 1.0 for v in clean.values())
    monkeypatch.setattr(runner, "sweep_levels_by", lambda *a, **k: {"all": {-10.0: {1001: 0.2, 1002: 0.3}}})
    monkeypatch.setattr(runner, "clean_f1_in_rooms", lambda *a, **k: {1001: 0.9, 1002: 0.8})
    with pytest.raises(JamError, match="try quieter levels"):
        runner.choose_music_level(detector, speech, FAST, [-10.0], protocol, floor=0.75, seed=3)
    monkeypatch.setattr(runner, "clean_f1_in_rooms", lambda *a, **k: {1001: 0.5, 1002: 0.6})
    with pytest.raises(JamError, match=r"Even with no music the detector's F1 .* is 0\.550 .* below the floor "
                                       r"0\.75: no music level can keep it\. Choose level clips the detector "
                                       r"handles in a room, or a lower --level-floor"):
        runner.choose_music_level(detector, speech, FAST, [-10.0], protocol, floor=0.75, seed=3)


def test_the_rhythm_grid_sets_the_learned_loop_and_every_random_baseline(monkeypatch):
    """--notes-per-second: the attack and the random music it is compared with share the grid (random loops on
    a denser grid mask less, so a baseline on the default grid would be the wrong comparison)."""
    import robustaudio.metrics.jamming as jamming
    from robustaudio.runner.jam import choose_music_level

    grids = []
    real = jamming.random_loops

    def spy(*args, **kwargs):
        grids.append(kwargs.get("notes_per_second", 4.0))
        return real(*args, **kwargs)

    monkeypatch.setattr(jamming, "random_loops", spy)
    monkeypatch.setattr("robustaudio.runner.jam.random_loops", spy)
    detector = Detector(BandEnergy(), "tone")
    speech = _tones(4)
    protocol = SceneProtocol(optimisation_rooms=2, held_out_rooms=2, draws=1, random_pieces=2, loop_seconds=1.0,
                             notes_per_second=8.0, scene_seeds=(1,), n_resamples=20)
    run = jam_and_evaluate(detector, speech, speech, FAST, LearnSettings(steps=1, batch_size=2), protocol, seed=3)
    assert run.synth["notes"] == 8 and run.settings["notes_per_second"] == 8.0
    for k in range(2):  # the single-pass baseline: the synthesiser's random starts, on the same grid
        assert torch.equal(run.random_music[k], KarplusStrong(1.0, RATE, notes_per_second=8.0, seed=3 + k)())
    assert not torch.equal(run.random_music[0], KarplusStrong(1.0, RATE, seed=3)())
    choose_music_level(detector, speech, FAST, [-10.0], protocol, seed=3)
    assert grids == [8.0, 8.0]  # the scene seeds' baseline and the level sweep's
