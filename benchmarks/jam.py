"""Jamming throughput: scenes per second while optimising and while evaluating, openWakeWord alexa.

    python benchmarks/jam.py [--steps 8] [--batch-size 16] [--threads 1]

``optimise``: :func:`robustaudio.attacks.jamming.jam` steps (render the scenes with the current loop,
forward and backward through the detector, one Adam step), after two warm-up steps. ``evaluate``:
:func:`~robustaudio.metrics.jamming.evaluate` on the bundled test clips in one room set, three music
conditions (clean, random, adversarial), scenes counted once per condition. ``render`` is the scene
rendering alone (speech + music + noise at the microphone) for one optimisation batch, and
``forward`` the detector's forward pass alone on the same batch, so each phase can be read as a
ratio to the model's own cost (``optimise`` per scene / ``forward`` per scene, and so on).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

warnings.filterwarnings("ignore")

from robustaudio.acoustics.scenes import EOTConfig, render, room_split, sample_transforms  # noqa: E402
from robustaudio.attacks.jamming import Detector, jam, load_utterances  # noqa: E402
from robustaudio.attacks.music import KarplusStrong  # noqa: E402
from robustaudio.data.datasets import BUNDLED_ROOT  # noqa: E402
from robustaudio.metrics.jamming import evaluate  # noqa: E402
from robustaudio.models import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    detector = Detector(load_model("openwakeword:alexa", pad_before=0.0, pad_after=0.0), "alexa")
    config = EOTConfig(music_db=-10.0, jitter_db=3.0, scene_seconds=3.0)
    learn, _ = load_utterances(BUNDLED_ROOT / "wakeword", "alexa", 16000, "train")
    test, _ = load_utterances(BUNDLED_ROOT / "wakeword", "alexa", 16000, "test")
    optimisation, held_out = room_split(config, 16, 16, 0)
    synth = KarplusStrong(4.0, 16000, seed=0)
    positives = learn.positives()
    jam(synth, detector, positives, optimisation, config, steps=2, batch_size=args.batch_size)  # warm-up

    transforms = sample_transforms(args.batch_size, optimisation, config, torch.Generator().manual_seed(1),
                                   loop_samples=synth.length)
    speech = positives.subset(torch.arange(args.batch_size) % len(positives))
    renders, forwards = [], []
    for _ in range(args.rounds):
        with torch.no_grad():
            music = synth()
            start = time.perf_counter()
            scenes = render(speech, music, transforms, optimisation, config)
            renders.append(time.perf_counter() - start)
            start = time.perf_counter()
            detector.margins(scenes)
            forwards.append(time.perf_counter() - start)
    start = time.perf_counter()
    jam(synth, detector, positives, optimisation, config, steps=args.steps, batch_size=args.batch_size)
    optimise = args.steps * args.batch_size / (time.perf_counter() - start)
    with torch.no_grad():
        musics = {"clean": None, "random": KarplusStrong(4.0, 16000, seed=7)(), "adversarial": synth()}
    subset = test.subset(torch.arange(min(len(test), 48)))
    start = time.perf_counter()
    rows = evaluate({"target": detector}, subset, {"held-out": held_out}, config, musics, draws=1, seed=0)
    evaluation = len(rows) / (time.perf_counter() - start)
    render_s = statistics.median(renders) / args.batch_size
    forward_s = statistics.median(forwards) / args.batch_size
    print(f"threads {args.threads}, batch {args.batch_size}, 3 s scenes")
    print(f"optimise: {optimise:.1f} scenes/s ({1 / optimise / forward_s:.2f}x the forward pass per scene)")
    print(f"evaluate: {evaluation:.1f} scenes/s ({1 / evaluation / forward_s:.2f}x the forward pass per scene)")
    print(f"render alone: {1 / render_s:.1f} scenes/s ({render_s / forward_s:.2f}x the forward pass per scene)")
    print(f"forward alone: {1 / forward_s:.1f} scenes/s")


if __name__ == "__main__":
    main()
