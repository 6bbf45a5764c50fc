"""Compare models side by side: clean, natural noise, adversarial, latent metrics, sharpness.

``run_comparison`` runs, for each model, into ``OUT/<model>/``: an attack run (PGD ε curve),
a noise run (every corruption at every severity) and ``metrics.json`` (density, convexity per
modality, m-sharpness and adaptive sharpness). Every part is resumable: finished runs are read
back, not recomputed. The comparison itself (table, rank correlations, figures) is built from
those files only, by :func:`robustaudio.report.compare.build_comparison`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from .attacks import ThreatModel
from .data import AudioDataset
from .metrics.latent import latent_metrics
from .metrics.sharpness import sharpness
from .report.card import json_safe
from .report.records import file_safe
from .report.compare import build_comparison
from .report.render import build_report
from .metrics.corruptions import Corruption
from .runner import noise_suite, run_attack, run_noise

METRICS_FILE = "metrics.json"


def model_metrics(model, dataset: AudioDataset, *, batch_size: int, seed: int,
                  device: str | torch.device) -> dict:
    """Density and convexity per modality, m-sharpness and adaptive sharpness, with their settings."""
    batches = [b for b in dataset.batches(model, batch_size) if b.ids]
    return {
        "latent": latent_metrics(model, batches, seed=seed, k=3, device=device),
        "sharpness": sharpness(model, batches, device=device),
        "adaptive_sharpness": sharpness(model, batches, adaptive=True, device=device),
        "note": "density and convexity are our re-implementation of the thesis's definitions (specs §3); "
                "k = 3 neighbours (the bundled test split has about 10 clips per class)",
    }


def run_comparison(models: dict[str, Callable[[], torch.nn.Module]], dataset: AudioDataset, out: str | Path, *,
                   norm: str = "linf", eps: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.005),
                   corruptions: dict[str, Corruption] | None = None, steps: int = 10, batch_size: int = 16,
                   seed: int = 0, device: str | torch.device = "cpu", limit: int | None = None,
                   table_eps: float | None = None, table_level: int | None = None,
                   ray_address: str | None = None, workers: int | None = None,
                   progress: Callable[[str], None] = print) -> dict:
    """Run every part for every model (``name -> loader``) and build the comparison in ``out``.

    Args:
        corruptions: name -> Corruption (:func:`~robustaudio.runner.noise_suite`); default: all.
        table_eps: the ε of the table's robust-accuracy column (default: the middle of ``eps``).
        table_level: the index into each corruption's severities for the table (default: middle).
    """
    out = Path(out)
    corruptions = corruptions if corruptions is not None else noise_suite()
    for name, load in models.items():
        progress(f"[{name}] loading")
        model = load().to(device).eval()
        model_dir = out / file_safe(name)
        progress(f"[{name}] PGD {norm} ε curve {list(eps)}")
        threats = [ThreatModel(norm, eps=e) for e in eps]
        attack_dir = run_attack(model, name, dataset, threats, model_dir / "attack", steps=steps,
                                batch_size=batch_size, seed=seed, device=device, limit=limit,
                                ray_address=ray_address, workers=workers)
        build_report(attack_dir)
        progress(f"[{name}] natural noise: {', '.join(corruptions)}")
        noise_dir = run_noise(model, name, dataset, corruptions, model_dir / "noise", batch_size=batch_size,
                              seed=seed, device=device, limit=limit, ray_address=ray_address, workers=workers)
        build_report(noise_dir)
        metrics_path = model_dir / METRICS_FILE
        if not metrics_path.exists():
            progress(f"[{name}] density, convexity, sharpness")
            subset = dataset if limit is None else AudioDataset(dataset.root, dataset.clips[:limit])
            metrics = model_metrics(model, subset, batch_size=batch_size, seed=seed, device=device)
            metrics["parameters"] = sum(p.numel() for p in model.parameters())
            metrics_path.write_text(json.dumps(json_safe(metrics), indent=2))
    return build_comparison(out, list(models), table_eps=table_eps if table_eps is not None else eps[len(eps) // 2],
                            table_level=table_level)
