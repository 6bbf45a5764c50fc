"""Time native PGD against a bare forward+backward loop, ART and foolbox, in one process.

    python benchmarks/pgd.py [--model cnn] [--clips 32] [--steps 10] [--rounds 3] [--device cpu]

All four do the same number of gradient steps
on the same model, clean-correct clips and ε (L∞ 0.002, random start). The bare loop does exactly
the passes native PGD reports in its counts (``steps`` forward+backward, then one forward to score
the last iterate; the clean logits come from the caller, as in the runner), so its ratio is the
cost of PGD's own work: random start, projection, best-iterate bookkeeping. Native PGD runs twice:
with early stop off (the bare loop's passes) and on (the default, fooled clips leave the batch).
Rounds are interleaved so that machine noise hits every method alike; the median per method is reported,
as a ratio to the bare loop measured in the same run. Targets: native (no early stop) <= 1.05x
the bare loop, and faster than both libraries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
warnings.filterwarnings("ignore")

from clips import clean_correct_clips  # noqa: E402

from robustaudio.attacks import ThreatModel, pgd  # noqa: E402
from robustaudio.models import frozen, load_model  # noqa: E402


def bare_loop(model, audio, labels, steps):
    """The passes PGD counts and nothing else: ``steps`` forward+backward, one last forward."""
    with frozen(model):
        x = audio.clone()
        for _ in range(steps):
            x.requires_grad_(True)
            grad, = torch.autograd.grad(F.cross_entropy(model(x), labels), x)
            x = x.detach() + 1e-4 * grad.sign()
        with torch.no_grad():
            model(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--eps", type=float, default=0.002)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = load_model(args.model, device=device)
    # Clean-correct clips only: PGD does not attack clips that are wrong already, the bare loop
    # would, and the comparison must be of the same work.
    audio, labels, clean_logits = clean_correct_clips(model, args.clips, device)  # as the runner hands pgd()
    threat = ThreatModel("linf", eps=args.eps)
    rel = 2.5 / args.steps

    import foolbox as fb
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    fmodel = fb.PyTorchModel(model, bounds=model.bounds, device=device)
    fb_attack = fb.attacks.LinfPGD(rel_stepsize=rel, steps=args.steps, random_start=True)
    art_model = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(audio.shape[1:]),
                                  nb_classes=model.num_classes, clip_values=model.bounds,
                                  device_type="gpu" if device.type == "cuda" else "cpu")
    art_attack = ProjectedGradientDescent(art_model, norm=np.inf, eps=args.eps, eps_step=rel * args.eps,
                                          max_iter=args.steps, num_random_init=1, batch_size=len(audio),
                                          verbose=False)
    audio_np, labels_np = audio.cpu().numpy(), labels.cpu().numpy()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    methods = {
        "bare forward+backward loop": lambda: bare_loop(model, audio, labels, args.steps),
        "native PGD (no early stop)": lambda: pgd(model, audio, labels, threat, steps=args.steps,
                                                  early_stop=False, generator=torch.Generator().manual_seed(0),
                                                  clean_logits=clean_logits),
        "native PGD (early stop)": lambda: pgd(model, audio, labels, threat, steps=args.steps,
                                               generator=torch.Generator().manual_seed(0),
                                               clean_logits=clean_logits),
        "foolbox LinfPGD": lambda: fb_attack(fmodel, audio, labels, epsilons=args.eps),
        "ART ProjectedGradientDescent": lambda: art_attack.generate(audio_np, labels_np),
    }
    for run in methods.values():  # warm-up
        run()
    counts = methods["native PGD (no early stop)"]()
    passes = (int(counts.forwards.max()), int(counts.backwards.max()))
    assert passes == (args.steps + 1, args.steps), f"native PGD did {passes}, the bare loop assumes otherwise"
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.rounds):
        for name, run in methods.items():
            sync()
            start = time.perf_counter()
            run()
            sync()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["bare forward+backward loop"])
    print(f"model {args.model}, {len(audio)} clips of {audio.shape[1]} samples, {args.steps} steps, "
          f"L∞ ε={args.eps}, device {device}, {torch.get_num_threads()} threads, median of {args.rounds}; "
          f"passes per clip: {passes[0]} forward, {passes[1]} backward")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:32s} {median:8.3f} s   {median / base:5.2f}x bare loop")


if __name__ == "__main__":
    main()
