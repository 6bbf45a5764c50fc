"""Minimal ε per clip: robustaudio's search against FMN (foolbox at its defaults, foolbox tuned to audio, adv_lib).

    python benchmarks/minimal.py [--norms linf l2] [--tune-clips 6] [--clips 8] [--stage all]
    python benchmarks/minimal.py --norms linf --stage tune --tuned /tmp/fmn.json   # the sweep (train split)
    python benchmarks/minimal.py --norms linf --stage test --tuned /tmp/fmn.json   # the comparison (test split)
    python benchmarks/minimal.py --stage walk                                     # walk length (train split)

(On a shared 2-core machine one norm's sweep, or one norm's comparison, takes about five minutes:
run them one at a time; ``--tuned`` collects the sweep's choices of every norm.)

Model: the bundled ``cnn``; clips: clean-correct clips, labels taken in turn (dataset order within a
label); TUNING clips from the train split, reported clips from the test split. Every method sees the
same clips; a clip a method does not break counts as ε = ∞ (medians are over all clips, found or not).
Every adversarial input is checked on our own forward pass.

Methods:

- ours: :func:`robustaudio.attacks.minimal_eps` as ``robustaudio attack --minimal`` runs it
  (``AttackSpec("minimal")``: PGD-10 per budget tried, 10 bisection steps, rel_tol 0.01, start at
  ``DEFAULT_START``: L∞ 1e-3, L2 0.1, then the 40-step boundary walk);
- foolbox FMN at its defaults (100 steps, ``max_stepsize`` 1.0: a step size for images in [0, 1]);
- foolbox FMN tuned: ``max_stepsize`` in {1 (the default), 0.1, 0.01, 0.001} x ``steps`` in {50, 100,
  200} swept on the TUNING clips (step sizes at 100 steps, then step counts at the best step size: a
  coordinate search, 6 runs instead of the 12 of the grid); the setting with the smallest tuning
  median (ties: the fastest) is reported on the test clips;
- adv_lib FMN (``adv_lib.attacks.fmn``) on the model mapped to inputs in [0, 1] (``u = (x + 1) / 2``,
  so norms ×2 on the way back and step sizes ÷2 on the way in) at the tuned setting, and at its own
  defaults (10 steps, ``α_init`` 1);
- at matched time, both ways: foolbox FMN at the tuned step size with its steps cut to our search's
  time, and our search with more PGD steps per budget (``AttackSpec("minimal", steps=...)``) up to the tuned
  FMN's time, or more boundary-walk steps (``refine_steps``) up to the tuned FMN's time (the cost of a walk
  step measured in the same run: our default search with and without its 40 walk steps).

foolbox 3.3.4's L2 FMN does not shrink its perturbation (its projection computes min(1, ‖δ‖/‖δ‖);
see ../shared/specs/real_models.md): its L2 rows are printed as measured. Wall times are of one run
each on whatever else the machine is doing; ratios are taken within one run of this script.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
import warnings
from pathlib import Path

import torch

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
warnings.filterwarnings("ignore")

from clips import UnitInput, import_adv_lib  # noqa: E402

from robustaudio.attacks import ThreatModel, is_fooled, minimal_eps  # noqa: E402
from robustaudio.attacks.backends import foolbox_minimal_norms  # noqa: E402
from robustaudio.attacks.minimal import DEFAULT_START, MinimalResult  # noqa: E402
from robustaudio.attacks.threat import lp_norm  # noqa: E402
from robustaudio.data import AudioDataset  # noqa: E402
from robustaudio.models import frozen, load_model  # noqa: E402
from robustaudio.runner.spec import AttackSpec  # noqa: E402

STEP_SIZES = (1.0, 1e-1, 1e-2, 1e-3)  # 1.0: foolbox's default
STEP_COUNTS = (50, 100, 200)


def clips(model, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` clean-correct clips of ``split``, labels taken in turn (audio ``[n, T]``, labels ``[n]``)."""
    batch = next(AudioDataset.from_path(split=split).batches(model, 10_000))
    with torch.no_grad():
        correct = model(batch.audio).argmax(-1) == batch.labels
    by_label: dict[int, list[int]] = {}
    for i in torch.nonzero(correct).flatten().tolist():
        by_label.setdefault(int(batch.labels[i]), []).append(i)
    order, queues = [], [list(v) for _, v in sorted(by_label.items())]
    while len(order) < n and any(queues):
        for queue in queues:
            if queue and len(order) < n:
                order.append(queue.pop(0))
    index = torch.tensor(sorted(order))
    return batch.audio[index], batch.labels[index]


def median(norms: torch.Tensor) -> float:
    return statistics.median(float(v) for v in norms)  # inf counts: a clip not broken


def timed(run):
    start = time.perf_counter()
    out = run()
    return out, time.perf_counter() - start


def ours(model, audio, labels, norm: str, steps: int | None = None, walk: int | None = None) -> MinimalResult:
    spec = AttackSpec("minimal", steps=steps)
    threat = ThreatModel(norm, eps=DEFAULT_START[norm])
    options = dict(spec.options) | ({"refine_steps": walk} if walk is not None else {})
    result = minimal_eps(model, audio, labels, threat, steps=spec.steps, generator=torch.Generator().manual_seed(0),
                         **options)
    return result


def passes(result: MinimalResult) -> float:
    """Mean forward + backward passes per clip of one search."""
    return float((result.forwards + result.backwards).float().mean())


def foolbox_fmn(model, audio, labels, norm: str, steps: int = 100, max_stepsize: float | None = None):
    options = {} if max_stepsize is None else {"max_stepsize": max_stepsize}
    return foolbox_minimal_norms(model, audio, labels, ThreatModel(norm, eps=DEFAULT_START[norm]), steps=steps,
                                 generator=torch.Generator().manual_seed(0), **options)


def _adv_lib():
    import_adv_lib()
    from adv_lib.attacks import fmn

    return fmn


def adv_lib_fmn(model, audio, labels, norm: str, steps: int = 10, step_size: float | None = None):
    """adv_lib's FMN; ``step_size`` in waveform units (÷2 in u units); norms measured on the waveform."""
    fmn = _adv_lib()
    options = {} if step_size is None else {"α_init": step_size / 2}
    with frozen(model):
        u = (audio + 1) / 2
        adversarial_u = fmn(UnitInput(model), u, labels, norm=math.inf if norm == "linf" else 2, steps=steps,
                            **options)
        adversarial = (2 * adversarial_u - 1).clamp(-1, 1)
        with torch.no_grad():
            fooled = is_fooled(model, model(adversarial), labels, False)
    norms = lp_norm(adversarial - audio, norm)
    return torch.where(fooled, norms, torch.full_like(norms, math.inf))


def tune(model, norms, n: int, out: Path | None) -> dict:
    audio, labels = clips(model, "train", n)
    print(f"TUNING: {len(audio)} clean-correct train clips; foolbox FMN max_stepsize x steps (coordinate search)")
    chosen = {norm: tune_norm(model, audio, labels, norm) for norm in norms}
    if out is not None:
        earlier = json.loads(out.read_text()) if out.exists() else {}
        out.write_text(json.dumps({**earlier, **chosen}, indent=2))
    return chosen


def tune_norm(model, audio, labels, norm: str) -> dict:
    tried = {}

    def trial(size, steps):
        found, seconds = timed(lambda: foolbox_fmn(model, audio, labels, norm, steps, size))
        tried[(size, steps)] = (median(found), seconds, int(torch.isfinite(found).sum()))
        m, s, f = tried[(size, steps)]
        print(f"   {norm:4s} max_stepsize {size:g}, {steps:3d} steps: median {m:.3g}  {s:6.1f} s  "
              f"found {f}/{len(audio)}", flush=True)

    for size in STEP_SIZES:
        trial(size, 100)
    best_size = min(STEP_SIZES, key=lambda s: (tried[(s, 100)][0], tried[(s, 100)][1]))
    for steps in STEP_COUNTS:
        if (best_size, steps) not in tried:
            trial(best_size, steps)
    (size, steps), (m, s, _) = min(tried.items(), key=lambda kv: (kv[1][0], kv[1][1]))
    print(f"   {norm}: best max_stepsize {size:g}, {steps} steps (tuning median {m:.3g})")
    return {"max_stepsize": size, "steps": steps, "tuning_median": m, "tuning_seconds": s}


def compare(model, norms, n: int, chosen: dict) -> None:
    audio, labels = clips(model, "test", n)
    print(f"\nTEST: {len(audio)} clean-correct test clips, cnn, {torch.get_num_threads()} thread(s); "
          f"median minimal ε (∞ where not broken), wall time of one run")
    for norm in norms:
        compare_norm(model, audio, labels, norm, chosen[norm]["max_stepsize"], chosen[norm]["steps"])


def compare_norm(model, audio, labels, norm: str, size: float, steps: int) -> None:
    results = {}
    searches: dict[str, MinimalResult] = {}  # our rows' whole results (pass counts)

    def row(name, run):
        out, seconds = timed(run)
        if isinstance(out, MinimalResult):
            searches[name] = out
        found = out.found_norm if isinstance(out, MinimalResult) else out
        results[name] = (median(found), seconds, found)
        print(f"   {name:44s} median {results[name][0]:.3g}  {seconds:7.1f} s  "
              f"found {int(torch.isfinite(found).sum())}/{len(audio)}", flush=True)

    print(f"\n {norm}:")
    row("ours: minimal_eps (AttackSpec('minimal'))", lambda: ours(model, audio, labels, norm))
    our_passes = passes(searches["ours: minimal_eps (AttackSpec('minimal'))"])
    row("foolbox FMN, defaults (100 steps, 1.0)", lambda: foolbox_fmn(model, audio, labels, norm))
    row(f"foolbox FMN, tuned ({steps} steps, {size:g})", lambda: foolbox_fmn(model, audio, labels, norm, steps, size))
    row(f"adv_lib FMN, tuned ({steps} steps, {size:g})", lambda: adv_lib_fmn(model, audio, labels, norm, steps, size))
    row("adv_lib FMN, defaults (10 steps, α 1)", lambda: adv_lib_fmn(model, audio, labels, norm))
    # Matched time, both ways: FMN (tuned step size) cut to our time, and our search given more PGD
    # steps per budget tried, up to the tuned FMN's time.
    names = list(results)
    t_ours, t_tuned = results[names[0]][1], results[names[2]][1]
    fewer = max(10, round(steps * t_ours / t_tuned))
    more = max(10, round(AttackSpec("minimal").steps * t_tuned / t_ours))
    row(f"foolbox FMN, tuned size, {fewer} steps (our time)",
        lambda: foolbox_fmn(model, audio, labels, norm, fewer, size))
    row(f"ours with {more} PGD steps (tuned FMN's time)", lambda: ours(model, audio, labels, norm, more))
    # more boundary-walk steps instead, up to the tuned FMN's time: the cost of one walk step is measured (our
    # default run minus the same search without its 40 walk steps); aim 5% under, as wall times wobble
    _, t_search = timed(lambda: ours(model, audio, labels, norm, walk=0))
    per_step = max(t_ours - t_search, 1e-6) / 40
    walk = max(40, 40 + math.floor(0.95 * (t_tuned - t_ours) / per_step))
    print(f"   (our search without the walk: {t_search:.1f} s, so {1000 * per_step:.0f} ms per walk step; default "
          f"run {our_passes:.0f} passes per clip against FMN's {2 * steps})", flush=True)
    row(f"ours with {walk} walk steps (tuned FMN's time)", lambda: ours(model, audio, labels, norm, walk=walk))
    names = list(results)
    pairs = [(names[0], names[2]), (names[0], names[3]), (names[0], names[1]), (names[0], names[5]),
             (names[6], names[2]), (names[7], names[2]), (names[7], names[3])]
    for mine, other in pairs:
        (m_a, t_a, e_a), (m, t, e) = results[mine], results[other]
        ratio = m_a / m if math.isfinite(m) and m > 0 else float("nan")
        print(f"   {mine.split(':')[0].split(' (')[0]:30s} / {other.split(' (')[0]:38s}: median {ratio:.3f}, "
              f"time {t_a / t:.2f}x; smaller on {int((e_a < e).sum())}, larger on {int((e_a > e).sum())} "
              f"of {len(audio)} clips")
    print("   target: ours / best tuned FMN median <= 1 at time <= 1")


def walk_sweep(model, norms, n: int) -> None:
    """Our search with 40, 80, 120, 160 boundary-walk steps on ``n`` train clips: median and passes per clip."""
    audio, labels = clips(model, "train", n)
    print(f"WALK SWEEP: {len(audio)} clean-correct train clips")
    for norm in norms:
        for walk in (40, 80, 120, 160):
            result, seconds = timed(lambda w=walk, p=norm: ours(model, audio, labels, p, walk=w))
            print(f"   {norm:4s} {walk:3d} walk steps: median {median(result.found_norm):.3g}  "
                  f"{passes(result):.0f} passes per clip  {seconds:6.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--norms", nargs="+", default=["linf", "l2"], choices=["linf", "l2"])
    parser.add_argument("--tune-clips", type=int, default=6)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--stage", choices=["all", "tune", "test", "walk"], default="all",
                        help="walk: our search at 40-160 boundary-walk steps on the train clips")
    parser.add_argument("--tuned", type=Path, default=None, help="JSON of the sweep's choice (written by tune, "
                        "read by test)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model("cnn").eval()
    if args.stage == "walk":
        walk_sweep(model, args.norms, args.clips)
        return
    if args.stage in ("all", "tune"):
        chosen = tune(model, args.norms, args.tune_clips, args.tuned)
    else:
        if args.tuned is None or not args.tuned.exists():
            parser.error("--stage test needs --tuned FILE written by --stage tune")
        chosen = json.loads(args.tuned.read_text())
    if args.stage in ("all", "test"):
        compare(model, args.norms, args.clips, chosen)


if __name__ == "__main__":
    main()
