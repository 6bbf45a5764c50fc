"""CERTIFY's throughput against forward-only passes over the same noisy batches, plain and denoised.

    python benchmarks/certify.py [--clips 2] [--n0 10] [--n 400] [--batch 100] [--sigma 0.25] [--device cpu]
                                 [--denoiser minievents-logmel] [--precision fp32] [--rounds 1]

Model: the bundled ``cnn``, smoothed in its normalised log-mel (``feature``) domain at ``--sigma``,
without and with the bundled diffusion denoiser (one-shot denoising, Carlini et al. 2023).
CERTIFY is :func:`robustaudio.defenses.certify_clips` on the first ``--clips`` test clips (all of it:
noise draws, counting, the Clopper–Pearson bound, per-clip bookkeeping). The baseline is the same
sequence of batch sizes (``n0`` then ``n`` noisy copies per clip, ``--batch`` at a time) through
the same forward pass (denoiser, then classifier, argmax) on one noisy batch drawn beforehand:
the passes CERTIFY cannot avoid. The ratio is forward-only time / CERTIFY time (CERTIFY's
throughput as a fraction of the bare passes'); target ≥ 0.95. Rounds are interleaved and the
median per method is reported; GPU timings are synchronised.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
warnings.filterwarnings("ignore")

from robustaudio.data import AudioDataset  # noqa: E402
from robustaudio.defenses.denoiser import load_denoiser  # noqa: E402
from robustaudio.defenses.smoothing import Smooth, certify_clips  # noqa: E402
from robustaudio.models import frozen, load_model  # noqa: E402
from robustaudio.runner.devices import precision_context  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch_sizes(n0: int, n: int, batch: int) -> list[int]:
    """The batch sizes CERTIFY runs for one clip: ``n0`` then ``n`` copies, ``batch`` at a time."""
    return [min(batch, total - start) for total in (n0, n) for start in range(0, total, batch)]


def forward_only(smooth: Smooth, clips, n0: int, n: int, batch: int, precision: str) -> float:
    """Seconds for CERTIFY's passes alone: the same batch sizes on one pre-drawn noisy batch per clip."""
    device = smooth.device
    noisy = []
    for _, audio, _ in clips:
        x = smooth.clean_input(audio).float()
        noisy.append(x + smooth.sigma * torch.randn(batch, *x.shape, device=device))
    sync(device)
    start = time.perf_counter()
    with frozen(smooth.model), torch.no_grad(), precision_context(precision, device):
        for x in noisy:
            for size in batch_sizes(n0, n, batch):
                smooth.base_logits(x[:size]).argmax(dim=1)
    sync(device)
    return time.perf_counter() - start


def certify_time(smooth: Smooth, clips, n0: int, n: int, batch: int, precision: str) -> tuple[float, list[dict]]:
    device = smooth.device
    sync(device)
    start = time.perf_counter()
    with precision_context(precision, device):
        rows = certify_clips(smooth, clips, n0=n0, n=n, alpha=0.001, batch_size=batch, seed=0)
    sync(device)
    return time.perf_counter() - start, rows


def measure(smooth: Smooth, clips, n0: int, n: int, batch: int, rounds: int = 1, precision: str = "fp32") -> dict:
    """Median seconds of CERTIFY and of the forward-only passes (interleaved rounds), their ratio, the rows."""
    forward_only(smooth, clips[:1], min(n0, batch), min(n0, batch), batch, precision)  # warm-up
    bare, full, rows = [], [], []
    for _ in range(rounds):
        bare.append(forward_only(smooth, clips, n0, n, batch, precision))
        seconds, rows = certify_time(smooth, clips, n0, n, batch, precision)
        full.append(seconds)
    samples = len(clips) * (n0 + n)
    b, f = statistics.median(bare), statistics.median(full)
    return {"forward_only_s": b, "certify_s": f, "ratio": b / f, "samples_per_s": samples / f,
            "forward_samples_per_s": samples / b, "rows": rows}


def first_clips(model, count: int, device: torch.device):
    batch = next(AudioDataset.from_path(split="test").batches(model, count))
    return [(clip_id, audio.to(device), label)
            for clip_id, audio, label in zip(batch.ids, batch.audio, batch.labels.tolist())][:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--n0", type=int, default=10)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--denoiser", default="minievents-logmel", help="'' to skip the denoised run")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = load_model("cnn", device=device).eval()
    clips = first_clips(model, args.clips, device)
    setups = [("plain", None)] + ([("denoised", load_denoiser(args.denoiser, device=device))] if args.denoiser else [])
    print(f"cnn, feature domain σ={args.sigma:g}, {len(clips)} test clips, n0={args.n0}, n={args.n}, batch "
          f"{args.batch}, {args.precision}, device {device}, {torch.get_num_threads()} thread(s), "
          f"{args.rounds} round(s)")
    for name, den in setups:
        smooth = Smooth(model, args.sigma, domain="feature", denoiser=den)
        result = measure(smooth, clips, args.n0, args.n, args.batch, args.rounds, args.precision)
        print(f"  {name:8s}  CERTIFY {result['certify_s']:7.2f} s ({result['samples_per_s']:8.1f} noisy copies/s)  "
              f"forward-only {result['forward_only_s']:7.2f} s ({result['forward_samples_per_s']:8.1f}/s)  "
              f"ratio {result['ratio']:.3f}  (target >= 0.95)   certified: "
              f"{[round(r['radius'], 3) if r['prediction'] is not None else 'abstain' for r in result['rows']]}")


if __name__ == "__main__":
    main()
