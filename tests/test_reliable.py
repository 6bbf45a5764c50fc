"""The reliable ensemble: a clip is robust only if every member fails (its robust set is the intersection of
the members' robust sets), ``broken_by`` names the member, pass counts add up; and every attack at one
budget stays inside ε, the box, the mask and the band, whatever the warm start."""

import hashlib

import hypothesis.strategies as st
import torch
from conftest import LinearClassifier
from hypothesis import HealthCheck, given, settings
from test_threat import assert_inside

from robustaudio.attacks import AttackResult, ThreatModel
from robustaudio.attacks.ensemble import ensemble
from robustaudio.runner.registry import budget_attack
from robustaudio.runner.spec import AttackSpec

MEMBERS = [("apgd-ce", AttackSpec("apgd-ce", steps=2)), ("apgd-t", AttackSpec("apgd-t", steps=3, targets=2)),
           ("square", AttackSpec("square", queries=60))]  # few steps: each member leaves clips to the next


class Tricky(LinearClassifier):
    """Linear logits, with two kinds of clips that defeat one member each (chosen by the first sample):
    saturated logits (x 1e4), where cross-entropy's gradient is exactly 0 but DLR's is not, and clips
    with no gradient at all, which only the gradient-free Square can break."""

    def head(self, embeddings):
        x = embeddings["audio"]
        first = x[:, :1].detach()
        out = self.linear(torch.where(first > 0.2, x.detach(), x))
        return torch.where((first > -0.2) & (first <= 0.2), 1e4 * out, out)


def linear_problem(seed=0, clips=24, dim=64, classes=4, model_class=LinearClassifier):
    g = torch.Generator().manual_seed(seed)
    model = model_class(torch.randn(classes, dim, generator=g), torch.zeros(classes)).eval()
    audio = (torch.rand(clips, dim, generator=g) * 2 - 1) * 0.5
    with torch.no_grad():
        logits = model(audio)
    return model, audio, logits.argmax(1), logits, g  # clean-correct by construction


def clip_seed(clip: torch.Tensor) -> int:
    return int.from_bytes(hashlib.sha256(clip.numpy().tobytes()).digest()[:4], "little")


def per_clip(attack):
    """``attack`` clip by clip, each with a generator seeded by the clip itself: a clip's outcome then does
    not depend on which clips share its batch or on the generator's state, so the member is
    deterministic per clip and the ensemble's member sees exactly what the member alone sees."""
    def run(model, audio, labels, threat, *, eps, clean_logits, video, init_delta, generator):
        parts = [attack(model, audio[i:i + 1], labels[i:i + 1], threat, eps=eps[i:i + 1],
                        clean_logits=clean_logits[i:i + 1], video=None, init_delta=None,
                        generator=torch.Generator().manual_seed(clip_seed(audio[i])))
                 for i in range(len(audio))]
        return AttackResult(**{name: torch.cat([getattr(p, name) for p in parts])
                               for name in ("adversarial", "clean", "success", "logits", "budget", "forwards",
                                            "backwards")})
    return run


def test_robust_set_is_the_intersection_of_the_members_and_broken_by_names_the_member():
    model, audio, labels, logits, g = linear_problem(model_class=Tricky)
    threat = ThreatModel("linf", eps=0.01)
    eps = torch.logspace(-3, -1, len(audio))[torch.randperm(len(audio), generator=g)]  # hopeless to easy
    members = [(name, per_clip(budget_attack(spec)[0])) for name, spec in MEMBERS]
    common = dict(eps=eps, clean_logits=logits, video=None, init_delta=None, generator=g)
    alone = {name: member(model, audio, labels, threat, **common) for name, member in members}
    result = ensemble(members, model, audio, labels, threat, **common)

    robust = torch.stack([~r.success for r in alone.values()]).all(0)
    assert torch.equal(~result.success, robust)
    assert 0 < int(robust.sum()) < len(audio)
    expected, forwards, backwards = [], torch.zeros_like(result.forwards), torch.zeros_like(result.backwards)
    for i in range(len(audio)):
        breaker = next((name for name, r in alone.items() if r.success[i]), None)
        expected.append(breaker)
        for name, r in alone.items():  # the members that ran on clip i: up to the one that broke it
            forwards[i] += r.forwards[i]
            backwards[i] += r.backwards[i]
            if name == breaker:
                break
    assert result.broken_by == expected
    assert {name for name in expected if name} == {"apgd-ce", "apgd-t", "square"}  # each member breaks some
    assert torch.equal(result.forwards, forwards) and torch.equal(result.backwards, backwards)
    # The fooling point of each broken clip is the breaker's, and it does fool the model.
    fooled = model(result.adversarial).argmax(1) != labels
    assert torch.equal(fooled, result.success)
    for i, name in enumerate(expected):
        if name:
            assert torch.equal(result.adversarial[i], alone[name].adversarial[i])
    assert_inside(threat, audio, result.adversarial, eps)


def test_reliable_is_apgd_ce_then_apgd_t_then_square():
    model, audio, labels, logits, _ = linear_problem(1, clips=12)
    threat = ThreatModel("l2", eps=0.3)
    spec = AttackSpec("reliable", steps=3, targets=2, queries=40)
    members = [(name, budget_attack(AttackSpec(name, steps=3, targets=2, queries=40))[0])
               for name in ("apgd-ce", "apgd-t", "square")]
    eps = threat.budget(audio)
    reliable = budget_attack(spec)[0](model, audio, labels, threat, eps=eps, clean_logits=logits, video=None,
                                      init_delta=None, generator=torch.Generator().manual_seed(3))
    by_hand = ensemble(members, model, audio, labels, threat, eps=eps, clean_logits=logits,
                       generator=torch.Generator().manual_seed(3))
    assert torch.equal(reliable.success, by_hand.success) and reliable.broken_by == by_hand.broken_by
    assert torch.equal(reliable.adversarial, by_hand.adversarial)
    assert torch.equal(reliable.forwards, by_hand.forwards) and torch.equal(reliable.backwards, by_hand.backwards)


def test_default_reliable_settings_are_the_tuned_ones():
    from robustaudio.runner.spec import DEFAULT_QUERIES, DEFAULT_STEPS

    spec = AttackSpec()
    assert spec.name == "reliable" and spec.backend == "native"
    assert spec.steps == DEFAULT_STEPS["reliable"] and spec.queries == DEFAULT_QUERIES["reliable"]
    assert spec.targets >= 1 and spec.restarts >= 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["reliable", "apgd-ce", "apgd-t", "square", "pgd"]),
       norm=st.sampled_from(["linf", "l2", "l1"]), masked=st.booleans(), band=st.booleans(),
       warm=st.booleans(), seed=st.integers(0, 2**16))
def test_every_attack_at_one_budget_stays_inside_the_threat_model(name, norm, masked, band, warm, seed):
    if name == "square" and norm == "l1":
        norm = "linf"  # Square serves L∞ and L2 (reliable leaves it out for L1)
    g = torch.Generator().manual_seed(seed)
    dim, clips = 160, 4
    model = LinearClassifier(torch.randn(4, dim, generator=g), torch.zeros(4)).eval()
    audio = (torch.rand(clips, dim, generator=g) * 2 - 1) * 0.99  # near the box edges, so the box binds
    with torch.no_grad():
        logits = model(audio)
    labels = logits.argmax(-1)
    mask = (torch.rand(dim, generator=g) > 0.5).float() if masked else None
    threat = ThreatModel(norm, eps=0.1, mask=mask, band_hz=(1000.0, 4000.0) if band else None,
                         sample_rate=16000 if band else None)
    scale = {"linf": 0.05, "l2": 0.5, "l1": 3.0}[norm]
    eps = scale * (0.1 + torch.rand(clips, generator=g))  # per-sample budgets
    far = 100 * torch.randn(clips, dim, generator=g) if warm else None  # a warm start far outside the ball
    attack, _ = budget_attack(AttackSpec(name, steps=3, targets=2, queries=20))
    result = attack(model, audio, labels, threat, eps=eps, clean_logits=logits, video=None, init_delta=far,
                    generator=g)
    assert torch.equal(result.budget, eps)
    assert_inside(threat, audio, result.adversarial, eps)
    with torch.no_grad():
        assert torch.equal(result.success, model(result.adversarial).argmax(-1) != labels)
