"""The main jobs on a GPU, in fp32 and bf16: throughput against the model's bare passes, results against the CPU.

    python benchmarks/gpu.py [--clips 32] [--batch 16] [--steps 10] [--cpu-clips 2] [--device cuda]
    python benchmarks/gpu.py --smoke      # a tiny run of every code path on the CPU (no figures to read)

Without a GPU (``torch.cuda.is_available()`` false) it prints so and exits 0: nothing is measured.

Model: a full-size AST-base (``robustaudio.models.zoo.ast_full.AudioSpectrogramTransformer``:
128 x 1024 fbank, 1212 patches, 12 blocks of 768) with random weights (seed 0) and the bundled
data's ten labels, single-label (argmax; CERTIFY certifies one top class); the bundled test clips (1 s)
padded to its 10 s. Labels are the model's own
clean decisions (``labels_from="model"``), so every clip is attacked. Reference: the model's bare
bf16 forward+backward (input gradient, weights frozen, cross-entropy) and bare bf16 forward, in
clip-passes per second, timed in the same process.

Jobs, each in fp32 and bf16 (``AttackSpec(precision=...)``, autocast for the passes):

1. PGD-``steps`` (L∞ 0.002, no early stop: a fixed amount of work) on ``--batch`` clips: its
   passes at the bare rates / its wall time. Target (bf16) >= 0.80 of the bare bf16 passes.
2. The main job: ``run_attack`` with the default ``AttackSpec()`` (the reliable ensemble: APGD-CE,
   APGD-T, Square) on ``--clips`` clips, sanity probes off; its recorded passes (forwards,
   backwards per clip) at the bare rates / its wall time.
3. An ε curve: ``run_attack`` with ``AttackSpec("pgd")`` over L∞ {0.0005, 0.001, 0.002, 0.004}.
4. CERTIFY: the bundled cnn with the bundled ``minievents-logmel`` denoiser (σ 0.25, feature domain),
   and the AST itself without one, against forward-only passes of the same noisy batches
   (``benchmarks/certify.py``). Target >= 0.95.
5. One jam epoch (``robustaudio.attacks.jamming.jam``; the cnn as a "speech" detector, its train
   utterances, four optimisation rooms; one epoch = ceil(utterances / batch) Adam steps).

Checks against the CPU on ``--cpu-clips`` clips: AST clean logits (fp32 and bf16 on the GPU vs fp32
on the CPU), its input gradient (cosine), the reliable ensemble on the cnn (decisions and
broken clips), CERTIFY with the denoiser (same predictions, counts within sampling error: the GPU
draws its own noise stream) and the jam epoch's first losses (the jam's draws come from a CPU
generator, so they match).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))
NO_GPU = ("No GPU here (torch.cuda.is_available() is False): nothing measured. Run this on a machine with a CUDA "
          "GPU (or --smoke for a tiny CPU run of the code paths).")
if __name__ == "__main__" and "--smoke" not in sys.argv and not torch.cuda.is_available():
    print(NO_GPU)  # before the imports below, which take seconds
    sys.exit(0)

from robustaudio.attacks import ThreatModel, pgd  # noqa: E402
from robustaudio.data import AudioDataset  # noqa: E402
from robustaudio.models import frozen, load_model  # noqa: E402
from robustaudio.models.zoo.ast_full import AudioSpectrogramTransformer  # noqa: E402
from robustaudio.runner.devices import precision_context  # noqa: E402

PRECISIONS = ("fp32", "bf16")
CURVE = (0.0005, 0.001, 0.002, 0.004)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def section(title: str):
    """Run a section, print its failure instead of stopping the script."""

    def wrap(function):
        def run(*args, **kwargs):
            print(f"\n== {title}", flush=True)
            try:
                return function(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - a benchmark reports what broke and goes on
                print(f"   FAILED: {type(error).__name__}: {error}")
                traceback.print_exc(limit=4)
                return None

        return run

    return wrap


def build_ast(labels, smoke: bool) -> AudioSpectrogramTransformer:
    torch.manual_seed(0)
    if smoke:
        model = AudioSpectrogramTransformer(labels, dim=32, depth=1, heads=2, clip_seconds=1.0, target_frames=128)
    else:
        model = AudioSpectrogramTransformer(labels)
    model.multilabel = False  # AudioSet's AST is multi-label; here one decision over the data's ten classes
    return model


def clips_for(model, count: int, device: torch.device) -> torch.Tensor:
    batch = next(AudioDataset.from_path(split="test").batches(model, count))
    return batch.audio[:count].to(device)


def bare_rates(model, audio: torch.Tensor, labels: torch.Tensor, precision: str, iters: int) -> dict:
    """Bare clip-passes per second: forward+backward (input gradient, weights frozen) and forward only."""
    device = audio.device
    rates = {}
    def forward_backward():
        x = audio.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(x).float(), labels), x)

    def forward():
        with torch.no_grad():
            model(audio)

    with frozen(model), precision_context(precision, device):
        for kind, one in (("fb", forward_backward), ("f", forward)):
            for _ in range(2):
                one()
            sync(device)
            start = time.perf_counter()
            for _ in range(iters):
                one()
            sync(device)
            rates[kind] = iters * len(audio) / (time.perf_counter() - start)
    return rates


def ideal_seconds(forwards: int, backwards: int, rates: dict) -> float:
    """Time the bare passes would take: ``backwards`` forward+backward passes and the other forwards."""
    return backwards / rates["fb"] + max(forwards - backwards, 0) / rates["f"]


def fraction_line(name: str, wall: float, forwards: int, backwards: int, same: dict, bf16: dict) -> str:
    return (f"   {name:34s} {wall:7.2f} s  {forwards} fwd / {backwards} bwd clip-passes   "
            f"{ideal_seconds(forwards, backwards, bf16) / wall:5.2f} of bare bf16,  "
            f"{ideal_seconds(forwards, backwards, same) / wall:5.2f} of bare same-precision")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--iters", type=int, default=10, help="timed iterations of the bare passes")
    parser.add_argument("--cpu-clips", type=int, default=2)
    parser.add_argument("--certify-n", type=int, default=2000)
    parser.add_argument("--certify-batch", type=int, default=500)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: the code paths, not figures")
    args = parser.parse_args()

    if args.smoke:
        device = torch.device("cpu")
        torch.set_num_threads(1)
        args.clips, args.batch, args.steps, args.iters, args.cpu_clips = 2, 2, 2, 1, 1
        args.certify_n, args.certify_batch = 20, 10
        print("SMOKE RUN on the CPU: tiny model and sizes; the figures mean nothing.")
    else:
        if not torch.cuda.is_available():
            print(NO_GPU)
            return
        device = torch.device(args.device)
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 in the comparisons
        torch.backends.cudnn.allow_tf32 = False
        print(f"device {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    cpu = torch.device("cpu")
    dataset = AudioDataset.from_path(split="test")
    labels_names = dataset.label_names
    ast = build_ast(labels_names, args.smoke).to(device).eval()
    audio = clips_for(ast, args.batch, device)
    with torch.no_grad():
        labels = ast(audio).argmax(-1)
    print(f"AST: {sum(p.numel() for p in ast.parameters()) / 1e6:.1f}M parameters, input "
          f"{tuple(ast.features(audio[:1]).shape[1:])}, batch {len(audio)}")
    rates = {}
    for precision in PRECISIONS:
        rates[precision] = bare_rates(ast, audio, labels, precision, args.iters)
        print(f"   bare {precision}: {rates[precision]['fb']:8.1f} fwd+bwd clip-passes/s, "
              f"{rates[precision]['f']:8.1f} fwd clip-passes/s")

    run_pgd(ast, audio, labels, args.steps, rates)
    run_main_job(ast, dataset, device, args.clips, args.batch, rates)
    run_curve(ast, dataset, device, args.clips, args.batch, args.steps, rates)
    run_certify(ast, device, args.certify_n, args.certify_batch, args.smoke)
    run_jam(device, args.batch, args.smoke)
    run_cpu_checks(ast, device, cpu, args.cpu_clips, args.smoke)


@section("1. PGD (L∞ 0.002, no early stop) on the AST")
def run_pgd(ast, audio, labels, steps, rates):
    device = audio.device
    threat = ThreatModel("linf", eps=0.002)
    for precision in PRECISIONS:
        with torch.no_grad():
            clean_logits = ast(audio)
        runs = []
        for _ in range(2):  # the first run warms up
            sync(device)
            start = time.perf_counter()
            with precision_context(precision, device):
                result = pgd(ast, audio, labels, threat, steps=steps, early_stop=False, clean_logits=clean_logits,
                             generator=torch.Generator().manual_seed(0))
            sync(device)
            runs.append(time.perf_counter() - start)
        print(fraction_line(f"PGD-{steps} {precision}", runs[-1], int(result.forwards.sum()),
                            int(result.backwards.sum()), rates[precision], rates["bf16"]))
    print("   target: PGD bf16 >= 0.80 of bare bf16")


def _records_passes(run_dir: Path) -> tuple[int, int, float]:
    from robustaudio.report import read_records

    records = read_records(run_dir)
    robust = float(records["adv_correct"].fillna(False).astype(bool).mean()) if "adv_correct" in records else math.nan
    return int(records["forwards"].sum()), int(records["backwards"].sum()), robust


@section("2. The main job: run_attack with the default AttackSpec() (reliable ensemble), L∞ 0.002")
def run_main_job(ast, dataset, device, clips, batch, rates):
    from robustaudio.runner import AttackSpec, RunOptions, run_attack

    for precision in PRECISIONS:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            run_attack(ast, "ast-base-random", dataset, [ThreatModel("linf", eps=0.002)], Path(folder) / "run",
                       AttackSpec(precision=precision),
                       RunOptions(batch_size=batch, device=device, limit=clips, sanity=False, labels_from="model"))
            sync(device)
            wall = time.perf_counter() - start
            forwards, backwards, robust = _records_passes(Path(folder) / "run")
        print(fraction_line(f"reliable {precision} ({clips} clips)", wall, forwards, backwards, rates[precision],
                            rates["bf16"]) + f"   robust {robust:.2f}")


@section(f"3. ε curve: run_attack with AttackSpec('pgd') over L∞ {CURVE}")
def run_curve(ast, dataset, device, clips, batch, steps, rates):
    from robustaudio.runner import AttackSpec, RunOptions, run_attack

    for precision in PRECISIONS:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            run_attack(ast, "ast-base-random", dataset, [ThreatModel("linf", eps=e) for e in CURVE],
                       Path(folder) / "run", AttackSpec("pgd", steps=steps, precision=precision),
                       RunOptions(batch_size=batch, device=device, limit=clips, sanity=False, labels_from="model"))
            sync(device)
            wall = time.perf_counter() - start
            forwards, backwards, robust = _records_passes(Path(folder) / "run")
        print(fraction_line(f"ε curve {precision} ({clips} clips)", wall, forwards, backwards, rates[precision],
                            rates["bf16"]) + f"   robust (all ε) {robust:.2f}")


@section("4. CERTIFY against forward-only passes of the same noisy batches")
def run_certify(ast, device, n, batch, smoke):
    from certify import first_clips, measure

    from robustaudio.defenses.denoiser import load_denoiser
    from robustaudio.defenses.smoothing import Smooth

    cnn = load_model("cnn", device=device).eval()
    denoiser = load_denoiser("minievents-logmel", device=device)
    setups = [("cnn + minievents-logmel denoiser", Smooth(cnn, 0.25, domain="feature", denoiser=denoiser),
               first_clips(cnn, 4 if not smoke else 1, device), n, batch),
              ("AST, no denoiser", Smooth(ast, 0.25, domain="feature"), first_clips(ast, 2 if not smoke else 1, device),
               max(n // 10, 20), max(batch // 10, 10))]
    for name, smooth, clips, count, size in setups:
        for precision in PRECISIONS:
            result = measure(smooth, clips, 50 if not smoke else 10, count, size, rounds=1, precision=precision)
            print(f"   {name:32s} {precision}: CERTIFY {result['samples_per_s']:9.1f} noisy copies/s, forward-only "
                  f"{result['forward_samples_per_s']:9.1f}/s, ratio {result['ratio']:.3f} (n={count}, batch {size}, "
                  f"{len(clips)} clips)")
    print("   target: >= 0.95")


def _move(value, device):
    """A dataclass of tensors (utterances, rooms) with every tensor field on ``device``."""
    changes = {f.name: getattr(value, f.name).to(device) for f in dataclasses.fields(value)
               if isinstance(getattr(value, f.name), torch.Tensor)}
    return dataclasses.replace(value, **changes)


def jam_epoch(device, precision: str, batch: int, smoke: bool, steps: int | None = None):
    from robustaudio.acoustics.scenes import EOTConfig, make_rooms
    from robustaudio.attacks.jamming import Detector, jam, load_utterances
    from robustaudio.attacks.music import KarplusStrong

    detector = Detector(load_model("cnn", device=device).eval(), "speech")
    utterances, _ = load_utterances(None, "speech", 16000, "train")
    if smoke:
        utterances = utterances.subset(torch.arange(4))
    config = EOTConfig(scene_seconds=1.0)
    rooms = make_rooms("optimisation", 4 if not smoke else 1, 0, config.rt60)
    synth = KarplusStrong(seconds=1.0, seed=0).to(device)
    steps = steps or math.ceil(len(utterances) / batch)
    sync(device)
    start = time.perf_counter()
    with precision_context(precision, device):
        result = jam(synth, detector, _move(utterances, device), _move(rooms, device), config, steps=steps,
                     batch_size=batch, seed=0, log_every=1)
    sync(device)
    return result, time.perf_counter() - start, steps, len(utterances)


@section("5. One jam epoch (cnn 'speech' detector, train utterances)")
def run_jam(device, batch, smoke):
    for precision in PRECISIONS:
        result, wall, steps, count = jam_epoch(device, precision, batch, smoke)
        print(f"   jam {precision}: {steps} steps x {batch} scenes ({count} utterances) in {wall:.2f} s "
              f"({steps * batch / wall:.1f} scenes/s); loss {result.history[0]['loss']:.3f} -> "
              f"{result.history[-1]['loss']:.3f}")


@section("6. Results against the CPU")
def run_cpu_checks(ast, device, cpu, count, smoke):
    from robustaudio.defenses.denoiser import load_denoiser
    from robustaudio.defenses.smoothing import Smooth, certify_clips
    from robustaudio.runner import AttackSpec, RunOptions, run_attack

    # AST: clean logits and input gradients
    audio = clips_for(ast, count, device)
    ast_cpu = build_ast(ast.labels, smoke).eval()
    ast_cpu.load_state_dict(ast.state_dict())
    x_cpu = audio.cpu().requires_grad_(True)
    logits_cpu = ast_cpu(x_cpu)
    labels = logits_cpu.argmax(-1).detach()
    grad_cpu, = torch.autograd.grad(F.cross_entropy(logits_cpu, labels), x_cpu)
    for precision in PRECISIONS:
        x = audio.clone().requires_grad_(True)
        with frozen(ast), precision_context(precision, device):
            logits = ast(x).float()
            grad, = torch.autograd.grad(F.cross_entropy(logits, labels.to(device)), x)
        difference = float((logits.detach().cpu() - logits_cpu.detach()).abs().max())
        cosine = float(F.cosine_similarity(grad.cpu().flatten(1), grad_cpu.flatten(1)).min())
        same = bool((logits.argmax(-1).cpu() == labels).all())
        print(f"   AST {precision} vs CPU fp32: max |Δlogit| {difference:.2e}, same decisions {same}, "
              f"gradient cosine (worst clip) {cosine:.4f}")

    # the reliable ensemble on the cnn, CPU vs device
    dataset = AudioDataset.from_path(split="test")
    outcomes = {}
    for name, where, precision in (("cpu fp32", cpu, "fp32"), ("device fp32", device, "fp32"),
                                   ("device bf16", device, "bf16")):
        from robustaudio.report import read_records

        with tempfile.TemporaryDirectory() as folder:
            model = load_model("cnn", device=where).eval()
            run_attack(model, "cnn", dataset, [ThreatModel("linf", eps=0.002)], Path(folder) / "run",
                       AttackSpec(precision=precision),
                       RunOptions(batch_size=count, device=where, limit=count, sanity=False))
            records = read_records(Path(folder) / "run")
            outcomes[name] = (list(records["clean_pred"]), list(records["adv_correct"]), list(records["linf"]))
    reference = outcomes["cpu fp32"]
    for name, (clean, robust, _) in outcomes.items():
        print(f"   cnn reliable {name:12s}: clean {clean}, still correct {robust}; same clean decisions as the CPU "
              f"{clean == reference[0]}, same broken clips {robust == reference[1]}")

    # CERTIFY with the denoiser, CPU vs device
    clips = []
    model_cpu = load_model("cnn").eval()
    batch = next(dataset.batches(model_cpu, count))
    for clip_id, clip, label in zip(batch.ids, batch.audio, batch.labels.tolist()):
        clips.append((clip_id, clip, label))
    n = 200 if smoke else 4000
    rows = {}
    for name, where in (("cpu", cpu), ("device", device)):
        smooth = Smooth(load_model("cnn", device=where).eval(), 0.25, domain="feature",
                        denoiser=load_denoiser("minievents-logmel", device=where))
        rows[name] = certify_clips(smooth, [(i, a.to(where), y) for i, a, y in clips], n0=20, n=n, alpha=0.001,
                                   batch_size=min(n, 1000), seed=0)
    for ours, theirs in zip(rows["device"], rows["cpu"]):
        p = max(min(theirs["count"] / n, 1 - 1 / n), 1 / n)
        within = abs(ours["count"] - theirs["count"]) <= 5 * math.sqrt(2 * n * p * (1 - p)) + 1
        print(f"   CERTIFY {ours['clip_id']}: device {ours['prediction']} r={ours['radius']:.3f} "
              f"(count {ours['count']}), CPU {theirs['prediction']} r={theirs['radius']:.3f} "
              f"(count {theirs['count']}); "
              f"same prediction {ours['prediction'] == theirs['prediction']}, counts within sampling error {within}")

    # jam: the first steps' losses (draws from the same CPU generator)
    steps = 2
    losses = {}
    for name, where, precision in (("cpu fp32", cpu, "fp32"), ("device fp32", device, "fp32"),
                                   ("device bf16", device, "bf16")):
        result, _, _, _ = jam_epoch(where, precision, 4, smoke, steps=steps)
        losses[name] = [round(h["loss"], 4) for h in result.history]
    print(f"   jam, first {steps} losses: {losses}")


if __name__ == "__main__":
    main()
