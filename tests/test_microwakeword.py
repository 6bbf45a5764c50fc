"""microWakeWord (pymicro-wakeword) as a black-box Classifier: detection, query counting, black-box attacks."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from robustaudio.attacks import ThreatModel, pgd
from robustaudio.attacks.counting import QueryCounter
from robustaudio.attacks.square import square_attack
from robustaudio.models import ModelError, load_model
from robustaudio.models.base import GradientUnavailableError

pytest.importorskip("pymicro_wakeword", reason="microWakeWord needs pip install pymicro-wakeword==2.5.0")

WAKEWORD = Path(__file__).parent / "data" / "wakeword"  # espeak-ng clips, see its README.md


def clips(*names: str, seconds: float = 2.0) -> torch.Tensor:
    """The named test clips, zero-padded to ``seconds`` at 16 kHz: ``[len(names), T]``."""
    out = []
    for name in names:
        clip, rate = soundfile.read(WAKEWORD / f"{name}.flac", dtype="float32")
        assert rate == 16000
        out.append(torch.nn.functional.pad(torch.from_numpy(clip), (0, int(seconds * rate) - len(clip))))
    return torch.stack(out)


@pytest.fixture(scope="module")
def alexa():
    return load_model("microwakeword:alexa")


def test_detects_tts_alexa_and_not_a_plain_phrase(alexa):
    audio = clips("alexa-en_m8", "hello_there-en", "hey_jarvis-en_gb_rp")
    p = alexa.probabilities(audio)
    assert p[0] >= 0.9 and p[1] <= 0.1 and p[2] <= 0.1
    assert alexa.labels == ("not-alexa", "alexa") and not alexa.multilabel and alexa.cutoff == 0.9
    logits = alexa(audio)
    assert alexa.predict(logits).tolist() == [1, 0, 0]
    # the softmax of the logits is the probability rescaled so that 0.5 is the device's cutoff
    assert torch.allclose(logits[:, 0], -logits[:, 1])
    assert ((alexa.scores(logits)[:, 1] > 0.5) == (p > alexa.cutoff)).all()


def test_scores_do_not_depend_on_the_batch_or_earlier_clips(alexa):
    audio = clips("hello_there-en", "alexa-en_m8")
    together = alexa.probabilities(audio)
    alone = torch.cat([alexa.probabilities(audio[i:i + 1]) for i in (0, 1)])
    assert torch.equal(together, alone)
    copy = pickle.loads(pickle.dumps(alexa))  # the TFLite interpreter is rebuilt, not copied
    assert torch.equal(copy.probabilities(audio), together)


def test_step_logits_are_the_stream_and_the_clip_is_their_highest_step(alexa):
    """step_logits: one row per 30 ms step of the stream (2 s clip + 1 s padding); the clip's logits are the
    highest step's, and a Detector's clip score is the maximum of its step scores (as the device decides)."""
    from robustaudio.attacks.jamming import Detector

    audio = clips("alexa-en_m8", "hello_there-en")
    steps = alexa.step_logits(audio)
    assert steps.shape[0] == 2 and steps.shape[2] == 2 and 90 <= steps.shape[1] <= 100
    torch.testing.assert_close(steps.amax(dim=1)[:, 1], alexa(audio)[:, 1])
    assert (steps[0, :, 1] > 0).sum() >= 1 and (steps[1, :, 1] > 0).sum() == 0  # alexa fires on some steps only
    detector = Detector(alexa, "alexa")
    step_scores = detector.step_scores(audio)
    torch.testing.assert_close(step_scores.amax(dim=1), detector.scores(audio))
    assert detector.scores(audio).gt(0.5).tolist() == [True, False]


def test_queries_are_counted_and_gradients_refused(alexa):
    audio = clips("alexa-en_m8", "hello_there-en")
    alexa.reset_queries()
    alexa(audio)
    assert alexa.queries == 2
    counter = QueryCounter(alexa, reference=audio)
    counter(audio)
    counter(audio[:1] + 0.001)
    assert counter.counts.tolist() == [2, 1] and counter.total == 3 and alexa.queries == 5
    with pytest.raises(GradientUnavailableError, match="--attack square"):
        pgd(alexa, audio, torch.tensor([1, 0]), ThreatModel("linf", eps=0.01), steps=2)
    with pytest.raises(NotImplementedError, match="black-box attack"):
        alexa.embeddings(audio)


def test_square_attack_runs_against_it_within_its_query_budget(alexa):
    audio = clips("alexa-en_m8")
    counter = QueryCounter(alexa, reference=audio)
    threat = ThreatModel("linf", eps=0.05)
    result = square_attack(counter, audio, torch.tensor([1]), threat, queries=12,
                           generator=torch.Generator().manual_seed(0))
    assert int(result.forwards[0]) <= 12 and torch.equal(result.forwards, counter.counts)
    assert (result.adversarial - audio).abs().max() <= 0.05 + 1e-6
    with torch.no_grad():
        recomputed = alexa(result.adversarial)
    assert torch.allclose(recomputed, result.logits) and torch.equal(result.success, alexa.predict(recomputed) == 0)


def test_hey_jarvis_and_bad_input():
    jarvis = load_model("microwakeword:hey_jarvis")
    assert jarvis.labels == ("not-hey_jarvis", "hey_jarvis") and jarvis.cutoff == 0.97
    with pytest.raises(ModelError, match="alexa"):
        load_model("microwakeword:hey_siri")
    with pytest.raises(ModelError, match="16000 Hz only"):
        load_model("microwakeword:alexa", sample_rate=8000)
    with pytest.raises(ModelError, match="pad_after"):
        load_model("microwakeword:alexa", threshold=0.5)
    with pytest.raises(ModelError, match=r"audio \[B, T\]"):
        jarvis(torch.zeros(16000))
    assert np.isfinite(jarvis(torch.zeros(1, 16000)).numpy()).all()
