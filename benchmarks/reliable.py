"""How strong and how costly the default ``reliable`` evaluation is, against PGD-10, a reference about
ten times stronger, adv_lib's APGD and ART's AutoAttack.

    python benchmarks/reliable.py [--clips 16] [--l2-eps 0.1] [--ref-budget 100] [--out benchmarks/reliable.md]
    python benchmarks/reliable.py --tune [--tune-clips 40] [--candidates "100,1,100;75,1,100"]   # train split

Clips: the first ``--clips`` clips of the test split in a seeded stratified order (classes taken in
turn, each class shuffled with seed 0), the same clips for every model and method. Robust accuracy
is over all of them: a clip the model gets wrong clean counts as not robust and is not attacked.

Methods, per model and threat (L∞ 0.002 and L2 ``--l2-eps``):

(a) PGD-10 (one random start, early stop), (b) the default ``reliable`` (``AttackSpec()``: APGD-CE,
APGD-T, Square at ``DEFAULT_STEPS`` / ``DEFAULT_QUERIES`` / ``targets``), (c) the reference:
``reliable`` with 100 steps x 5 restarts per APGD member, 9 targets and Square with 5000 queries, run
with early stop on the clips (b) left standing only, one at a time in clip order until ``--ref-budget``
seconds are spent (at least one clip). A clip (b) broke is broken (the adversarial input is checked
on our own forward pass), so the reference's robust set is (b)'s robust set ∩ the reference's robust
set on those clips: exact for a worst-case ensemble, which counts a clip robust only if every member
fails. It is compared with (b) on the clip prefix before the first standing clip it did not reach.
(d) adv_lib's ``apgd`` (CE) then ``apgd_targeted`` (targeted DLR over the same runner-up targets) on
the clips still standing, at (b)'s steps and at 100 iterations (one run when those are equal), on the
affine map of the model to [0, 1] inputs (``u = (x + 1) / 2``, ε / 2 for every norm), scored on our
forward pass; compared with (b)'s own APGD-CE + APGD-T members, timed inside (b). ART: ``AutoAttack``
called directly on a ``PyTorchClassifier`` (clip_values (-1, 1)) with APGD-CE and APGD-DLR
(untargeted) at (b)'s steps, one random start: ART's targeted mode would run every attack against all
K - 1 classes (no runner-up ranking), and its SquareAttack takes images only.

With ``--tune``: candidate settings of ``reliable`` on the TRAIN split (cnn and taltrans-mini, L∞
0.002), each against the reference run on the clips that every candidate left standing, with PGD-10
for the time ratio. The defaults in ``robustaudio/runner/spec.py`` were chosen from those tables
(kept in benchmarks/reliable.md): the cheapest setting within 1 clip of the reference on both models.
Needs ``adv-lib`` (``pip install adv-lib``; a stub stands in for its ``visdom`` import) and ART's
``multiprocess`` for AutoAttack.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
warnings.filterwarnings("ignore")

from clips import UnitInput, import_adv_lib  # noqa: E402

from robustaudio.attacks import ThreatModel, is_fooled  # noqa: E402
from robustaudio.data import AudioDataset  # noqa: E402
from robustaudio.models import load_model  # noqa: E402
from robustaudio.models.registry import BUNDLED_DIR  # noqa: E402
from robustaudio.runner.registry import budget_attack  # noqa: E402
from robustaudio.runner.spec import AttackSpec  # noqa: E402

MODELS = ("cnn", "ast", "crnn-mini", "taltrans-mini", "cnn-adversarial")
LINF_EPS = 0.002
REFERENCE = dict(steps=100, restarts=5, targets=9, queries=5000)


def load(name: str):
    if name == "cnn-adversarial":  # where studies.defenses.bundled_defended puts it
        return load_model("cnn", weights=BUNDLED_DIR / "minievents-cnn-adversarial.pt")
    return load_model(name)


def stratified_order(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Clip indices: each class shuffled (seeded), then the classes taken in turn."""
    g = torch.Generator().manual_seed(seed)
    per_class = [torch.nonzero(labels == k).flatten() for k in sorted(set(labels.tolist()))]
    per_class = [idx[torch.randperm(len(idx), generator=g)] for idx in per_class]
    order = []
    for i in range(max(len(idx) for idx in per_class)):
        order += [int(idx[i]) for idx in per_class if i < len(idx)]
    return torch.tensor(order)


def clips(model, split: str, n: int):
    """The first ``n`` clips of ``split`` in the stratified order: audio, labels, clean logits, clean-correct."""
    batch = next(AudioDataset.from_path(split=split).batches(model, 10_000))
    order = stratified_order(batch.labels)[:n]
    audio, labels = batch.audio[order], batch.labels[order]
    with torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in audio.split(32)])
    return audio, labels, logits, ~is_fooled(model, logits, labels, False)


@dataclass
class Outcome:
    """Robust clips (bool over all clips), seconds, passes."""

    robust: torch.Tensor
    seconds: float
    forwards: int = 0
    backwards: int = 0
    by: dict = field(default_factory=dict)
    broken_by: list = field(default_factory=list)  # per clip: the member that broke it, or None

    @property
    def accuracy(self) -> float:
        return float(self.robust.float().mean())


def run_spec(spec: AttackSpec, model, audio, labels, logits, attacked: torch.Tensor, threat: ThreatModel,
             seed: int = 0, attack=None) -> Outcome:
    """``spec`` (or ``attack``) at one budget on the clips ``attacked`` (bool mask), in batches of 16."""
    attack = attack or budget_attack(spec)[0]
    robust = attacked.clone()
    generator = torch.Generator().manual_seed(seed)
    forwards = backwards = 0
    by: dict[str, int] = {}
    broken_by: list[str | None] = [None] * len(audio)
    start = time.perf_counter()
    rows = torch.nonzero(attacked).flatten()
    for chunk in rows.split(16) if rows.numel() else ():
        eps = threat.budget(audio[chunk])
        result = attack(model, audio[chunk], labels[chunk], threat, eps=eps, clean_logits=logits[chunk], video=None,
                        init_delta=None, generator=generator)
        robust[chunk] = ~result.success
        forwards += int(result.forwards.sum())
        backwards += int(result.backwards.sum())
        for index, name in zip(chunk.tolist(), result.broken_by or []):
            broken_by[index] = name
            if name is not None:
                by[name] = by.get(name, 0) + 1
    return Outcome(robust, time.perf_counter() - start, forwards, backwards, by, broken_by)


def reference(model, audio, labels, logits, standing: torch.Tensor, threat: ThreatModel, seed: int = 1) -> Outcome:
    """The reference ensemble on the clips ``standing``; robust = ``standing`` ∩ its robust set."""
    return run_spec(AttackSpec("reliable", **REFERENCE), model, audio, labels, logits, standing, threat, seed)


# -- tuning on the train split -------------------------------------------------------------------

CANDIDATES = [  # (APGD steps per member, targets, Square queries)
    (10, 1, 100), (10, 3, 300), (25, 1, 300), (25, 3, 300), (25, 3, 1000), (50, 1, 300), (50, 3, 300),
    (50, 3, 1000), (100, 3, 300), (100, 9, 1000),
]


def tune(args) -> None:
    threat = ThreatModel("linf", eps=LINF_EPS)
    lines = [f"Tuning `reliable` on the TRAIN split: first {args.tune_clips} train clips in the seeded stratified "
             f"order, L∞ {LINF_EPS}, 1 thread; reference = every candidate's robust set ∩ reference "
             f"({REFERENCE}) on the clips all candidates left standing.", ""]
    print(lines[0], flush=True)
    for name in args.tune_models:
        model = load(name)
        audio, labels, logits, correct = clips(model, "train", args.tune_clips)
        pgd10 = run_spec(AttackSpec("pgd", steps=10), model, audio, labels, logits, correct, threat)
        print(f"{name}: {int(correct.sum())} clean-correct; PGD-10 robust {int(pgd10.robust.sum())} "
              f"in {pgd10.seconds:.1f} s", flush=True)
        results = {}
        for steps, targets, queries in args.candidates:
            spec = AttackSpec("reliable", steps=steps, targets=targets, queries=queries)
            results[(steps, targets, queries)] = out = run_spec(spec, model, audio, labels, logits, correct, threat)
            print(f"  {steps:4d} steps {targets} targets {queries:5d} queries: robust {int(out.robust.sum()):3d} "
                  f"in {out.seconds:6.1f} s ({out.seconds / pgd10.seconds:4.1f}x PGD-10), passes "
                  f"{out.forwards}/{out.backwards}, broken by {out.by}", flush=True)
        standing = torch.stack([o.robust for o in results.values()]).all(0)
        if args.skip_reference:
            standing = torch.zeros_like(standing)
        ref = reference(model, audio, labels, logits, standing, threat)
        print(f"  reference on {int(standing.sum())} clips all candidates left: robust {int(ref.robust.sum())} "
              f"in {ref.seconds:.1f} s", flush=True)
        lines += [f"### {name} (train, {int(correct.sum())}/{len(correct)} clean-correct)", "",
                  f"PGD-10: robust {int(pgd10.robust.sum())} in {pgd10.seconds:.1f} s; reference: robust "
                  f"{int(ref.robust.sum())} (run on the {int(standing.sum())} clips no candidate broke, "
                  f"{ref.seconds:.0f} s)", "",
                  "| steps | targets | queries | robust | clips above reference | s | x PGD-10 | fwd / bwd |",
                  "|---|---|---|---|---|---|---|---|"]
        for (steps, targets, queries), out in results.items():
            lines.append(f"| {steps} | {targets} | {queries} | {int(out.robust.sum())} | "
                         f"{int(out.robust.sum()) - int(ref.robust.sum())} | {out.seconds:.1f} | "
                         f"{out.seconds / pgd10.seconds:.1f} | {out.forwards} / {out.backwards} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.tune_out:
        with open(args.tune_out, "w") as f:
            f.write(text + "\n")


# -- the benchmark on the test split --------------------------------------------------------------

def adv_lib_apgd():
    """adv_lib's APGD and APGD-T."""
    import_adv_lib()
    from adv_lib.attacks.auto_pgd import apgd, apgd_targeted

    return apgd, apgd_targeted


def score(model, adversarial, audio, labels, attacked, threat, eps) -> torch.Tensor:
    """Robust clips (bool, all clips) from a library's output on ``attacked``: our forward, inside the ball only."""
    with torch.no_grad():
        out = torch.cat([model(chunk) for chunk in adversarial.split(32)])
    fooled = is_fooled(model, out, labels[attacked], False)
    inside = threat.norms(adversarial - audio[attacked]) <= eps * (1 + 1e-4)
    inside &= (adversarial >= -1).all(1) & (adversarial <= 1).all(1)
    robust = attacked.clone()
    robust[attacked] = ~(fooled & inside)
    return robust


def run_adv_lib(model, audio, labels, attacked, threat, eps: float, steps: int, targets: int) -> Outcome:
    """adv_lib's APGD-CE, then APGD-T (targeted DLR, ``targets`` runner-ups) on the clips still standing."""
    apgd, apgd_targeted = adv_lib_apgd()
    unit = UnitInput(model).eval()
    norm = {"linf": float("inf"), "l2": 2.0}[threat.norm]
    x, y = audio[attacked], labels[attacked]
    torch.manual_seed(0)
    start = time.perf_counter()
    u = apgd(unit, (x + 1) / 2, y, eps=eps / 2, norm=norm, n_iter=steps, loss_function="ce")
    adversarial = 2 * u - 1
    with torch.no_grad():
        standing = ~is_fooled(model, model(adversarial), y, False)
    if standing.any():
        u = apgd_targeted(unit, (x[standing] + 1) / 2, y[standing], eps=eps / 2, norm=norm, n_iter=steps,
                          num_targets=targets)
        adversarial[standing] = 2 * u - 1
    seconds = time.perf_counter() - start
    return Outcome(score(model, adversarial.detach(), audio, labels, attacked, threat, eps), seconds)


def run_art(model, audio, labels, attacked, threat, eps: float, steps: int) -> Outcome:
    """ART's AutoAttack, called directly: APGD-CE and APGD-DLR (untargeted), ``steps`` iterations, one start."""
    from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    norm = {"linf": np.inf, "l2": 2}[threat.norm]
    x, y = audio[attacked].numpy(), labels[attacked].numpy()
    start = time.perf_counter()
    classifier = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                   nb_classes=model.num_classes, clip_values=(-1.0, 1.0), device_type="cpu")
    members = [AutoProjectedGradientDescent(classifier, norm=norm, eps=eps, eps_step=2 * eps, max_iter=steps,
                                            targeted=False, nb_random_init=1, batch_size=len(x), loss_type=loss,
                                            verbose=False)
               for loss in ("cross_entropy", "difference_logits_ratio")]
    attack = AutoAttack(classifier, norm=norm, eps=eps, eps_step=2 * eps, attacks=members, batch_size=len(x),
                        targeted=False)
    np.random.seed(0)
    adversarial = torch.from_numpy(attack.generate(x, y)).float()
    seconds = time.perf_counter() - start
    return Outcome(score(model, adversarial, audio, labels, attacked, threat, eps), seconds)


def timed_reliable(spec: AttackSpec, seconds: dict):
    """``reliable`` at ``spec``, built as the registry builds it (APGD-CE, APGD-T, Square through
    :func:`ensemble`, one generator: the same attack, tests/test_reliable.py checks it), with each
    member's time added up in ``seconds``: APGD-CE + APGD-T is the like-for-like match for adv_lib."""
    from robustaudio.attacks.ensemble import ensemble

    def timed(name):
        member = budget_attack(replace(spec, name=name))[0]

        def run(*args, **kwargs):
            start = time.perf_counter()
            result = member(*args, **kwargs)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
            return result
        return run

    members = [(name, timed(name)) for name in ("apgd-ce", "apgd-t", "square")]

    def attack(model, audio, labels, threat, **kwargs):
        return ensemble(members, model, audio, labels, threat, **kwargs)
    return attack


def run_default(model, audio, labels, logits, attacked, threat) -> tuple[Outcome, float]:
    """(b): the default ``reliable``; also the seconds its APGD-CE and APGD-T members took."""
    seconds: dict[str, float] = {}
    outcome = run_spec(AttackSpec(), model, audio, labels, logits, attacked, threat,
                       attack=timed_reliable(AttackSpec(), seconds))
    return outcome, seconds.get("apgd-ce", 0.0) + seconds.get("apgd-t", 0.0)


def budgeted_reference(model, audio, labels, logits, default: Outcome, threat, budget_s: float
                       ) -> tuple[Outcome, int]:
    """The reference on the clips the default left standing, one at a time in clip order, until
    ``budget_s`` seconds are spent (at least one clip).

    Returns the reference's robust set (over the clips it ran on) and ``n``: the comparison holds on
    the first ``n`` clips, the prefix before the first standing clip it did not reach (all clips if
    it reached every one).
    """
    standing = torch.nonzero(default.robust).flatten().tolist()
    robust = torch.zeros_like(default.robust)
    seconds, n = 0.0, len(audio)
    for k, index in enumerate(standing):
        if k > 0 and seconds >= budget_s:
            n = index
            break
        one = torch.zeros_like(default.robust)
        one[index] = True
        out = reference(model, audio, labels, logits, one, threat, seed=1 + index)
        robust[index] = out.robust[index]
        seconds += out.seconds
    return Outcome(robust, seconds), n


HEADER = ("| model | threat | clean | (a) PGD-10 | (b) default | (c) reference | (d) adv_lib same | adv_lib 100 it "
          "| ours APGD-CE+T | ART AutoAttack | default / PGD-10 time | default vs reference | ours vs adv_lib "
          "(same) | ART vs ours |")


def fmt(outcome: Outcome, n: int | None = None) -> str:
    robust = outcome.robust if n is None else outcome.robust[:n]
    return f"{float(robust.float().mean()):.3f} ({int(robust.sum())}), {outcome.seconds:.1f} s"


def benchmark(args) -> None:
    default = AttackSpec()
    threats = [ThreatModel("linf", eps=LINF_EPS), ThreatModel("l2", eps=args.l2_eps)]
    started = time.perf_counter()
    notes = [
        "# benchmarks/reliable.py: the default `reliable` against PGD-10, a reference, adv_lib and ART", "",
        f"Clips: the first {args.clips} test clips in the seeded stratified order (same clips for every model and "
        f"method; {'all' if args.clips >= 105 else 'a subset of the'} 105 test clips). Robust accuracy over all "
        f"of them, robust clips in brackets; clean errors count as not robust. 1 thread, a shared 2-core machine: "
        f"times are noisy, ratios within one row were measured minutes apart.",
        f"Default `reliable` (AttackSpec()): {default.steps} APGD steps per member x {default.restarts} restart, "
        f"{default.targets} APGD-T targets, Square {default.queries} queries. Reference: {REFERENCE} (APGD-CE + "
        f"APGD-T + Square, early stop), run only on the clips (b) left standing, one at a time in clip order "
        f"until {args.ref_budget:.0f} s per model and threat are spent (at least one clip); its robust set = (b)'s "
        f"∩ the reference's on those clips (exact for a worst-case ensemble), compared with (b) on the clip "
        f"prefix before the first standing clip it did not reach ('on the first n clips'). Its time = (b)'s + "
        f"the reference's own.",
        "adv_lib: apgd (CE) then apgd_targeted (same targets) on the clips still standing, on u = (x + 1) / 2 "
        "with ε / 2, no early stop inside a run (the library's behaviour), scored on our forward pass. ART: "
        "AutoAttack with APGD-CE + APGD-DLR (untargeted; ART's targeted mode runs every attack against all "
        "K - 1 classes, and its SquareAttack takes images only), same steps, 1 random start, scored on our "
        "forward pass. 'ours APGD-CE+T': (b)'s first two members (timed inside (b); robust = what they left), "
        "the like-for-like match for adv_lib.", "",
        HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
    rows = []

    def write(extra: list[str] = ()) -> None:
        text = "\n".join(notes + rows + list(extra))
        if args.out:
            with open(args.out, "w") as f:
                f.write(text + "\n")

    for name in args.models:
        model = load(name)
        audio, labels, logits, correct = clips(model, "test", args.clips)
        for threat in threats:
            t0 = time.perf_counter()
            eps = float(threat.eps)
            pgd10 = run_spec(AttackSpec("pgd", steps=10), model, audio, labels, logits, correct, threat)
            ours, apgd_seconds = run_default(model, audio, labels, logits, correct, threat)
            by_square = torch.tensor([name == "square" for name in ours.broken_by])
            ours_apgd = Outcome(ours.robust | by_square, apgd_seconds)  # what APGD-CE + APGD-T left
            ref, n = budgeted_reference(model, audio, labels, logits, ours, threat, args.ref_budget)
            ref_robust = ours.robust.clone()
            ref_robust[:n] &= ref.robust[:n] | ~ours.robust[:n]
            ref_out = Outcome(ref_robust, ours.seconds + ref.seconds)
            same = run_adv_lib(model, audio, labels, correct, threat, eps, default.steps, default.targets)
            long = (same if default.steps == 100 else  # the same run when (b) has 100 steps already
                    run_adv_lib(model, audio, labels, correct, threat, eps, 100, default.targets))
            art = run_art(model, audio, labels, correct, threat, eps, default.steps)
            apart = int(ours.robust[:n].sum()) - int(ref_robust[:n].sum())
            ran_on = int(ours.robust[:n].sum())
            row = (f"| {name} | {threat.describe()} | {float(correct.float().mean()):.3f} | {fmt(pgd10)} | "
                   f"{fmt(ours)} | {fmt(ref_out, n)} on the first {n} clips (reference run on {ran_on}: "
                   f"{ref.seconds:.0f} s) | {fmt(same)} | {fmt(long)} | {fmt(ours_apgd)} | {fmt(art)} | "
                   f"{ours.seconds / max(pgd10.seconds, 1e-9):.1f}x | {apart} clip{'' if apart == 1 else 's'} "
                   f"apart ({ran_on} vs {int(ref_robust[:n].sum())} on {n}) | time "
                   f"{ours_apgd.seconds / max(same.seconds, 1e-9):.2f}x, robust {int(ours_apgd.robust.sum())} vs "
                   f"{int(same.robust.sum())} | robust {int(art.robust.sum())} vs {int(ours_apgd.robust.sum())}, "
                   f"time {art.seconds / max(ours_apgd.seconds, 1e-9):.2f}x |")
            rows.append(row)
            print(row, f"[{time.perf_counter() - t0:.0f} s; total {time.perf_counter() - started:.0f} s]", flush=True)
            write()
    write(["", f"Total wall time: {time.perf_counter() - started:.0f} s."])
    print(f"Total wall time: {time.perf_counter() - started:.0f} s.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=105)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--l2-eps", type=float, default=0.1)
    parser.add_argument("--ref-budget", type=float, default=200.0,
                        help="seconds per model and threat for the reference (at least one standing clip)")
    parser.add_argument("--out", default="benchmarks/reliable.md")
    parser.add_argument("--reference", default=None, help="'steps,restarts,targets,queries' (smoke tests only)")
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--tune-clips", type=int, default=40)
    parser.add_argument("--tune-models", nargs="+", default=["cnn", "taltrans-mini"])
    parser.add_argument("--tune-out", default=None)
    parser.add_argument("--skip-reference", action="store_true", help="tuning: candidates only")
    parser.add_argument("--candidates", default=CANDIDATES, help="'steps,targets,queries;...' (default: CANDIDATES)",
                        type=lambda text: [tuple(int(v) for v in c.split(",")) for c in text.split(";")])
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.reference:
        REFERENCE.update(zip(("steps", "restarts", "targets", "queries"), map(int, args.reference.split(","))))
    if args.tune:
        tune(args)
    else:
        benchmark(args)


if __name__ == "__main__":
    main()
