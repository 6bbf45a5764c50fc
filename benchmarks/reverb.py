"""Time the reverb corruption against a Gaussian-noise severity on the same bundled clips, in one process.

    python benchmarks/reverb.py [--model cnn] [--clips 16] [--rounds 5] [--device cpu]

Each measurement is what ``robustaudio.runner.noise_batch`` times for one severity: the corruption
on the batch (a seeded CPU generator, as the runner passes) and the model's forward pass on the
result, divided by the number of clips. ``corrupt`` is the corruption alone. Reverb is timed per
severity twice: ``cold``, the first call after the room caches are emptied (it simulates the rooms
the batch picks: the image-source simulation is the cost), and ``warm``, the median of ``rounds``
later calls (the rooms are cached; only the batched FFT convolution is left). The Gaussian
severity (SNR 20 dB) is the median of ``rounds`` calls, interleaved with the warm reverb calls so
that machine noise hits both alike. Target: warm reverb per clip <= 3x the Gaussian severity per clip.

(Before the whole bank was simulated ahead of the warm rounds, a warm round could still simulate a room
the cold batch had not picked, which put room simulation into some "warm" medians: at RT60 1 s that read
as 15x on a loaded machine.)
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

warnings.filterwarnings("ignore")

from robustaudio.acoustics import ROOM_BANK, bank_responses, clear_room_cache  # noqa: E402
from robustaudio.data import AudioDataset  # noqa: E402
from robustaudio.metrics.corruptions import CORRUPTIONS  # noqa: E402
from robustaudio.models import load_model  # noqa: E402

GAUSSIAN_SNR_DB = 20.0


def timed(model, corruption, audio, severity, seed=0):
    """(seconds for corruption + forward, seconds for the corruption alone), for the whole batch."""
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with torch.no_grad():
        corrupted = corruption(audio, severity, generator, sample_rate=model.sample_rate)
        middle = time.perf_counter()
        model(corrupted)
    end = time.perf_counter()
    return end - start, middle - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    model = load_model(args.model).to(device).eval()
    dataset = AudioDataset.from_path("minievents", split="test")
    audio = next(iter(dataset.batches(model, args.clips))).audio.to(device)
    n = len(audio)
    gaussian, reverb = CORRUPTIONS["gaussian_snr"], CORRUPTIONS["reverb"]

    timed(model, gaussian, audio, GAUSSIAN_SNR_DB)  # warm-up: first forward, allocator, imports
    clear_room_cache()
    cold = {severity: timed(model, reverb, audio, severity) for severity in reverb.severities}
    # Warm means every room of the bank is simulated: a batch picks its rooms from the whole bank by its
    # seed, so without this the "warm" rounds would still simulate the rooms the cold batch missed.
    bank_seconds = {}
    for severity in reverb.severities:
        start = time.perf_counter()
        bank_responses(severity, range(ROOM_BANK), sample_rate=model.sample_rate)
        bank_seconds[severity] = time.perf_counter() - start
    base, warm = [], {severity: [] for severity in reverb.severities}
    for seed in range(1, args.rounds + 1):  # interleaved, so that machine noise hits every column alike
        base.append(timed(model, gaussian, audio, GAUSSIAN_SNR_DB, seed))
        for severity in reverb.severities:
            warm[severity].append(timed(model, reverb, audio, severity, seed))
    g_total = statistics.median(t for t, _ in base) / n
    g_corrupt = statistics.median(c for _, c in base) / n

    print(f"model {args.model} on {device}, {n} bundled minievents test clips of {audio.shape[1]} samples, "
          f"torch threads {torch.get_num_threads()}")
    print(f"gaussian_snr {GAUSSIAN_SNR_DB:g} dB: {g_total * 1e3:8.2f} ms/clip "
          f"(corruption alone {g_corrupt * 1e3:.2f} ms/clip)")
    print(f"{'reverb RT60':>11s}  {'cold ms/clip':>12s} {'ratio':>8s}  {'warm ms/clip':>12s} {'ratio':>6s}  "
          f"{'warm corrupt ms/clip':>20s}")
    worst = 0.0
    for severity in reverb.severities:
        w_total = statistics.median(t for t, _ in warm[severity]) / n
        w_corrupt = statistics.median(c for _, c in warm[severity]) / n
        worst = max(worst, w_total / g_total)
        print(f"{severity:>9.1f} s  {cold[severity][0] / n * 1e3:12.2f} {cold[severity][0] / n / g_total:7.1f}x  "
              f"{w_total * 1e3:12.2f} {w_total / g_total:5.2f}x  {w_corrupt * 1e3:20.2f}")
    print(f"worst warm ratio {worst:.2f}x (target <= 3x)")
    print("one-time cost per process, the rest of each bank of " + str(ROOM_BANK) + " rooms after the cold batch: "
          + ", ".join(f"RT60 {k:g} s {v:.1f} s" for k, v in bank_seconds.items()))


if __name__ == "__main__":
    main()
