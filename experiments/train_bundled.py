"""Train the bundled default checkpoints on the bundled minievents set, reproducibly.

    python experiments/train_bundled.py                 # both models
    python experiments/train_bundled.py --models cnn    # one

Writes ``robustaudio/models/bundled/minievents-<name>.pt`` (a weights-only checkpoint) and
``minievents-<name>.json`` (the model card: settings, seed, clean train/test accuracy, time).
Training is on the ``train`` split only; the card's accuracy is on the held-out ``test`` split,
whose sources (recordings, voices, kits) never occur in training. Augmentation: random gain
(±6 dB), time shift (±0.15 s, zero fill) and white noise at 20–50 dB SNR.
Same seed, same machine type and thread count -> same weights. The loop is ``robustaudio train``'s
(:func:`robustaudio.defenses.training.train_classifier`, method ``plain``), which draws the same
random numbers as the loop these checkpoints were first trained with.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from robustaudio.data import AudioDataset
from robustaudio.defenses.training import TrainSettings, augment, train_classifier  # noqa: F401  augment: for train_fusion.py
from robustaudio.models.registry import BUNDLED_DIR, MODELS

RECIPES = {
    "cnn": {"epochs": 40, "lr": 2e-3, "weight_decay": 1e-4, "batch_size": 32, "config": {}},
    "ast": {"epochs": 80, "lr": 5e-4, "weight_decay": 5e-2, "batch_size": 32, "config": {}},
    # Thesis taggers (ch. 4 and 6) shrunk for 1 s clips and 205 training clips; their MIL clip
    # logits are trained as single-label logits (multilabel=False, see FrameMILClassifier).
    "crnn-mini": {"epochs": 40, "lr": 2e-3, "weight_decay": 1e-4, "batch_size": 32,
                  "config": {"embedding_size": 256, "pooling": "linear_softmax", "clip_seconds": 1.0,
                             "multilabel": False}},
    "taltrans-mini": {"epochs": 60, "lr": 1e-3, "weight_decay": 1e-2, "batch_size": 32,
                      "config": {"embedding_size": 256, "model_dim": 128, "layers": 2, "heads": 4,
                                 "ffn_dim": 256, "pooling": "linear_softmax", "clip_seconds": 1.0,
                                 "multilabel": False}},
}


def train(name: str, seed: int, data: Path | None) -> dict:
    """Train one bundled model with the shared loop (robustaudio.defenses.training) and write its checkpoint
    and card into the package."""
    recipe = RECIPES[name]
    settings = TrainSettings(method="plain", epochs=recipe["epochs"], lr=recipe["lr"],
                             weight_decay=recipe["weight_decay"], batch_size=recipe["batch_size"], seed=seed)
    result = train_classifier(MODELS[name].arch, recipe["config"], AudioDataset.from_path(data), settings,
                              name=name, log=lambda line: print(line, flush=True))
    card = result.save(BUNDLED_DIR / MODELS[name].checkpoint, recipe=recipe, script="experiments/train_bundled.py")
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None, help="dataset dir (default: bundled minievents)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    for name in args.models:
        card = train(name, args.seed, args.data)
        print(json.dumps({k: card[k] for k in ("model", "test_accuracy", "test_accuracy_ci95",
                                                "train_accuracy", "parameters", "training_seconds")}))


if __name__ == "__main__":
    main()
