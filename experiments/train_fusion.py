"""Train the bundled audio-visual checkpoints on the bundled avmini set, reproducibly.

    python experiments/train_fusion.py                              # all six
    python experiments/train_fusion.py --models audio-only video-only av-superlate

Writes ``robustaudio/models/bundled/avmini-<name>.pt`` (weights-only checkpoint) and ``.json``
(the card: settings, seed, clean train/test accuracy, per class, time). ``av-early``, ``av-mid``,
``av-late``, ``audio-only`` and ``video-only`` are trained end to end on the ``train`` split;
``av-superlate`` is not trained: it is ``0.6·p + 0.4·p`` of the trained ``audio-only`` and
``video-only`` models (train those first). Test accuracy is on the held-out ``test`` split (audio
from other source recordings, frames from other quadrants of the photos; see avmini's README).
Augmentation: the audio recipe of ``train_bundled.py`` (gain ±6 dB, shift ±0.15 s, noise at 20–50 dB
SNR); video: horizontal flip of the whole clip, brightness ±15 %, contrast ±15 %.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from train_bundled import augment  # the audio augmentation of the other bundled models

from robustaudio import versions
from robustaudio.data import AudioDataset
from robustaudio.metrics import mean_with_ci, per_class_mean
from robustaudio.models import save_checkpoint
from robustaudio.models.fusion import FUSION_MODELS, SuperLateFusion
from robustaudio.models.registry import BUNDLED_DIR, MODELS

DATA = "avmini"
RECIPE = {"epochs": 40, "lr": 2e-3, "weight_decay": 1e-4, "batch_size": 32, "label_smoothing": 0.05}
TRAINED = ("audio-only", "video-only", "av-early", "av-mid", "av-late")
ORDER = TRAINED + ("av-superlate",)


def load_split(dataset: AudioDataset, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(audio [N, T], video [N, F, 3, H, W], labels [N])`` of one split (loaded for a model using both)."""
    reader = FUSION_MODELS["fusion-early"](dataset.label_names)
    subset = AudioDataset(dataset.root, [c for c in dataset.clips if c.split == split])
    parts = [(b.audio, b.video, b.labels) for b in subset.batches(reader, batch_size=64)]
    return tuple(torch.cat(p) for p in zip(*parts))


def augment_video(video: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    batch = video.shape[0]
    flip = torch.rand(batch, generator=generator) < 0.5
    video = torch.where(flip.view(-1, 1, 1, 1, 1), video.flip(-1), video)
    brightness = 1 + (torch.rand(batch, 1, 1, 1, 1, generator=generator) * 0.3 - 0.15)
    contrast = 1 + (torch.rand(batch, 1, 1, 1, 1, generator=generator) * 0.3 - 0.15)
    mean = video.mean(dim=(1, 2, 3, 4), keepdim=True)
    return ((video - mean) * contrast + mean * brightness).clamp(0, 1)


def predictions(model, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(audio[i:i + 64], video[i:i + 64]).argmax(-1) for i in range(0, len(audio), 64)])


def fit(model, train, test, seed: int, name: str) -> float:
    """Train ``model`` in place on ``train = (audio, video, labels)``; returns seconds."""
    x_audio, x_video, y = train
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    steps = RECIPE["epochs"] * -(-len(y) // RECIPE["batch_size"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=RECIPE["lr"], total_steps=steps)
    start = time.perf_counter()
    for epoch in range(RECIPE["epochs"]):
        model.train()
        order = torch.randperm(len(y), generator=generator)
        total = 0.0
        for i in range(0, len(order), RECIPE["batch_size"]):
            index = order[i:i + RECIPE["batch_size"]]
            logits = model(augment(x_audio[index], generator), augment_video(x_video[index], generator))
            loss = F.cross_entropy(logits, y[index], label_smoothing=RECIPE["label_smoothing"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        if epoch % 10 == 9 or epoch == RECIPE["epochs"] - 1:
            accuracy = (predictions(model, *test[:2]) == test[2]).float().mean()
            print(f"{name} epoch {epoch + 1}: train loss {total / len(y):.3f}, test acc {accuracy:.3f}", flush=True)
    return time.perf_counter() - start


def write_card(name: str, model, config: dict, train, test, seed: int, seconds: float, labels: list[str],
               recipe: dict) -> dict:
    entry = MODELS[name]
    checkpoint = BUNDLED_DIR / entry.checkpoint
    save_checkpoint(checkpoint, entry.arch, config, model)
    correct = (predictions(model, *test[:2]) == test[2]).float()
    mean, low, high = mean_with_ci(correct.numpy(), seed=seed)
    card = {
        "model": name, "arch": entry.arch, "fusion": model.fusion, "modalities": list(model.modalities),
        "data": DATA, "labels": labels, "train_clips": len(train[2]), "test_clips": len(test[2]),
        "train_accuracy": float((predictions(model, *train[:2]) == train[2]).float().mean()),
        "test_accuracy": mean, "test_accuracy_ci95": [low, high],
        "per_class_test_accuracy": per_class_mean(correct.numpy(), [labels[k] for k in test[2].tolist()]),
        "parameters": sum(p.numel() for p in model.parameters()), "recipe": recipe, "seed": seed,
        "training_seconds": round(seconds, 1), "checkpoint_bytes": checkpoint.stat().st_size,
        "versions": versions(), "script": "experiments/train_fusion.py",
    }
    checkpoint.with_suffix(".json").write_text(json.dumps(card, indent=2))
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(ORDER), choices=list(ORDER))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = AudioDataset.from_path(DATA)
    labels = dataset.label_names
    train, test = load_split(dataset, "train"), load_split(dataset, "test")
    probe = FUSION_MODELS["fusion-audio"](labels)
    with torch.no_grad():  # log-mel normalisation from the training clips (as the other bundled models)
        raw = torch.cat([probe.front_end.raw(train[0][i:i + 64]) for i in range(0, len(train[0]), 64)])
    base_config = {"labels": labels, "feature_mean": float(raw.mean()), "feature_std": float(raw.std())}
    for name in [m for m in ORDER if m in args.models]:
        torch.manual_seed(args.seed)
        arch = MODELS[name].arch
        if name == "av-superlate":
            baselines = [MODELS[n] for n in ("audio-only", "video-only")]
            from robustaudio.models import load_model
            audio_model, video_model = (load_model(b.name) for b in baselines)
            model = SuperLateFusion.from_baselines(audio_model, video_model, base_config).eval()
            config, seconds, recipe = {**base_config, "weights": list(model.weights)}, 0.0, {
                "built_from": ["audio-only", "video-only"], "weights": list(model.weights)}
        else:
            config = dict(base_config)
            model = FUSION_MODELS[arch](**config)
            seconds, recipe = fit(model, train, test, args.seed, name), RECIPE
        model.eval()
        card = write_card(name, model, config, train, test, args.seed, seconds, labels, recipe)
        print(json.dumps({k: card[k] for k in ("model", "test_accuracy", "test_accuracy_ci95", "train_accuracy",
                                                "parameters", "training_seconds", "checkpoint_bytes")}), flush=True)


if __name__ == "__main__":
    main()
