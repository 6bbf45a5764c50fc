"""Compare models side by side: clean, natural noise, adversarial, latent metrics, sharpness.

``run_comparison`` runs, for each model, into ``OUT/<model>/``: an attack run (PGD ε curve),
a noise run (every corruption at every severity) and ``metrics.json`` (density, convexity per
modality, m-sharpness and adaptive sharpness). Every part is resumable: finished runs are read
back, not recomputed. The comparison itself (table, rank correlations, figures) is built from
those files only, by :func:`robustaudio.report.compare.build_comparison`.

On audio-visual data (a dataset with video) each model also gets the **modality-wise attacks** of
a :class:`FusionPlan` in ``OUT/<model>/fusion/``: per norm, PGD ε curves on the audio and on the
video, both at once (each within its own budget), and minimal ε per modality; only on the inputs
the model uses. The plan is written to ``OUT/fusion.json``; the fusion table and the check of the
thesis theorem are built from the runs by :mod:`robustaudio.report.fusion`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from ..attacks import ThreatModel
from ..data import AudioDataset
from ..data.datasets import limited
from ..metrics.corruptions import Corruption
from ..metrics.latent import latent_metrics
from ..metrics.sharpness import sharpness
from ..models.base import Classifier
from ..records import file_safe, make_folder, write_json_atomic
from ..report.card import json_safe
from ..report.compare import build_comparison
from ..report.fusion import FUSION_FILE, fusion_run
from ..report.render import build_report
from ..runner import AttackSpec, JointThreat, RunOptions, noise_suite, run_attack, run_noise
from ..runner.attack import Threat

METRICS_FILE = "metrics.json"
# Default ε curves. Audio: waveform samples (full scale 1); video: pixels in [0, 1] (16/255 = 0.063),
# chosen so that the bundled avmini models go from clean to mostly broken along each curve.
AUDIO_EPS = {"linf": (0.0005, 0.001, 0.002, 0.005), "l2": (0.05, 0.1, 0.2, 0.5), "l1": (1.0, 2.0, 5.0, 10.0)}
VIDEO_EPS = {"linf": (4 / 255, 8 / 255, 16 / 255, 32 / 255), "l2": (0.5, 1.0, 2.0, 4.0), "l1": (20.0, 50.0, 100.0,
                                                                                                200.0)}


def middle_budget(curve: tuple[float, ...]) -> float:
    """The budget of a curve that the tables show: its middle one (upper middle for even lengths)."""
    return sorted(curve)[len(curve) // 2]


@dataclass(frozen=True)
class FusionPlan:
    """The modality-wise attacks on audio-visual data.

    Per norm in ``norms``: the audio ε curve ``audio_eps[norm]`` (waveform), the video ε curve
    ``video_eps[norm]`` (pixels, bounds [0, 1]), the joint attack at the two table budgets
    (:func:`middle_budget`), and, for norms in ``minimal_norms``, the minimal ε per modality, searched
    up to ``minimal_cap`` × the curve's largest budget (a clip not flipped by then counts as not
    found) with ``search_steps`` bisections to ``rel_tol``.
    """

    norms: tuple[str, ...] = ("linf", "l2")
    audio_eps: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(AUDIO_EPS))
    video_eps: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(VIDEO_EPS))
    minimal_norms: tuple[str, ...] = ("linf",)
    minimal_cap: float = 16.0
    search_steps: int = 6
    rel_tol: float = 0.05

    def budgets(self, modality: str, norm: str) -> list[float]:
        """The ε curve of one modality and norm, smallest first (in that modality's input units)."""
        return sorted((self.audio_eps if modality == "audio" else self.video_eps)[norm])

    def threats(self, modality: str, norm: str, video_bounds: tuple[float, float] = (0.0, 1.0)) -> list[Threat]:
        """The threat models of :meth:`budgets`."""
        if modality == "audio":
            return [ThreatModel(norm, eps=e) for e in self.budgets(modality, norm)]
        return [ThreatModel(norm, eps=e, modality="video", bounds=video_bounds) for e in self.budgets(modality, norm)]

    def joint(self, norm: str, video_bounds: tuple[float, float] = (0.0, 1.0)) -> JointThreat:
        return JointThreat(ThreatModel(norm, eps=middle_budget(self.audio_eps[norm])),
                           ThreatModel(norm, eps=middle_budget(self.video_eps[norm]), modality="video",
                                       bounds=video_bounds))

    def as_dict(self) -> dict:
        plan = asdict(self)
        plan["table_eps"] = {norm: {"audio": middle_budget(self.audio_eps[norm]),
                                    "video": middle_budget(self.video_eps[norm])}
                             for norm in self.norms}
        return plan


def model_metrics(model: Classifier, dataset: AudioDataset, *, batch_size: int, seed: int,
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


def run_fusion_attacks(model: Classifier, name: str, dataset: AudioDataset, model_dir: Path, plan: FusionPlan, *,
                       main_norm: str, steps: int, options: RunOptions, progress: Callable[[str], None]) -> None:
    """The plan's runs for one model, on the inputs it uses (see :func:`robustaudio.report.fusion.fusion_run`).

    The audio curve of ``main_norm`` is the comparison's own attack run (``OUT/<model>/attack``).
    Sanity probes run with the PGD curves only (the joint and minimal runs repeat their threats).
    """
    modalities = model.modalities
    bounds = getattr(model, "video_bounds", (0.0, 1.0))
    unprobed = replace(options, sanity=False)
    pgd = AttackSpec("pgd", steps=steps)
    for norm in plan.norms:
        for modality in ("audio", "video"):
            if modality not in modalities or (modality == "audio" and norm == main_norm):
                continue
            curve = plan.threats(modality, norm, bounds)
            progress(f"[{name}] PGD on the {modality}, {norm} ε curve "
                     f"{[round(e, 5) for e in plan.budgets(modality, norm)]}")
            build_report(run_attack(model, name, dataset, curve, fusion_run(model_dir, "pgd", modality, norm), pgd,
                                    options))
        if {"audio", "video"} <= set(modalities):
            joint = plan.joint(norm, bounds)
            progress(f"[{name}] PGD on audio and video together: {joint.describe()}")
            build_report(run_attack(model, name, dataset, [joint], fusion_run(model_dir, "pgd", "both", norm), pgd,
                                    unprobed))
        if norm in plan.minimal_norms:
            for modality in ("audio", "video"):
                if modality in modalities:
                    progress(f"[{name}] minimal {norm} ε on the {modality}")
                    curve = plan.threats(modality, norm, bounds)
                    search = {"eps_max": plan.minimal_cap * plan.budgets(modality, norm)[-1],
                              "search_steps": plan.search_steps, "rel_tol": plan.rel_tol}
                    minimal = AttackSpec("minimal", steps=steps, options=search)
                    build_report(run_attack(model, name, dataset, curve[:1], fusion_run(model_dir, "minimal", modality,
                                                                                        norm),
                                            minimal, unprobed))


def run_comparison(models: dict[str, Callable[[], Classifier]], dataset: AudioDataset, out: str | Path, *,
                   norm: str = "linf", eps: tuple[float, ...] = AUDIO_EPS["linf"],
                   corruptions: dict[str, Corruption] | None = None, steps: int = 10,
                   options: RunOptions | None = None, table_eps: float | None = None, table_level: int | None = None,
                   fusion: FusionPlan | None = None, progress: Callable[[str], None] = print) -> dict:
    """Run every part for every model (``name -> loader``) and build the comparison in ``out``.

    Args:
        options: how every run executes (batch size, seed, device, ``limit`` clips, Ray), as
            :func:`~robustaudio.runner.run_attack` takes it; the model metrics use its batch size, seed,
            device and limit too.
        corruptions: name -> Corruption (:func:`~robustaudio.runner.noise_suite`); default: all.
        table_eps: the ε of the table's robust-accuracy column (default: the middle of ``eps``).
        table_level: the index into each corruption's severities for the table (default: middle).
        fusion: the modality-wise attacks on audio-visual data (default: ``FusionPlan`` with minimal ε
            in ``norm``); ``norm`` is always among its norms, with ``eps`` as its audio curve. Ignored
            without video.
    """
    out = Path(out)
    options = options or RunOptions()
    corruptions = corruptions if corruptions is not None else noise_suite()
    make_folder(out)
    if dataset.has_video:
        plan = fusion or FusionPlan(minimal_norms=(norm,))
        plan = replace(plan, norms=tuple(dict.fromkeys((norm, *plan.norms))),
                       audio_eps={**plan.audio_eps, norm: tuple(sorted(eps))})
        write_json_atomic(out / FUSION_FILE, {**plan.as_dict(), "main_norm": norm})
    else:
        (out / FUSION_FILE).unlink(missing_ok=True)
    for name, load in models.items():
        progress(f"[{name}] loading")
        model = load().to(options.device).eval()
        model_dir = out / file_safe(name)
        if "audio" in model.modalities:
            progress(f"[{name}] PGD {norm} ε curve {list(eps)}")
            threats: list[Threat] = [ThreatModel(norm, eps=e) for e in eps]
            attack_dir = run_attack(model, name, dataset, threats, model_dir / "attack", AttackSpec("pgd", steps=steps),
                                    options)
            build_report(attack_dir)
        progress(f"[{name}] natural noise: {', '.join(corruptions)}")
        noise_dir = run_noise(model, name, dataset, corruptions, model_dir / "noise", options)
        build_report(noise_dir)
        if dataset.has_video:
            run_fusion_attacks(model, name, dataset, model_dir, plan, main_norm=norm, steps=steps, options=options,
                               progress=progress)
        metrics_path = model_dir / METRICS_FILE
        if options.restart or not metrics_path.exists():
            progress(f"[{name}] density, convexity, sharpness")
            subset = (dataset if options.limit is None else
                      AudioDataset(dataset.root, limited(dataset.clips, options.limit)))
            metrics = model_metrics(model, subset, batch_size=options.batch_size, seed=options.seed,
                                    device=options.device)
            metrics["parameters"] = sum(p.numel() for p in model.parameters())
            write_json_atomic(metrics_path, json_safe(metrics))
    return build_comparison(out, list(models), table_eps=table_eps if table_eps is not None else eps[len(eps) // 2],
                            table_level=table_level)
