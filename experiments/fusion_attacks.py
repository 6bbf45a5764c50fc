"""Audio-visual fusion under attack on the bundled avmini data: the comparison, and the theorem re-checked.

    python experiments/fusion_attacks.py                  # hours on 2 busy cores; resumes
    python experiments/fusion_attacks.py --out runs/fusion-compare

1. Runs (or reads back) exactly what
   ``robustaudio compare --models av-early av-mid av-late av-superlate audio-only video-only`` runs
   (clean, natural noise, per-clip PGD on the audio, the video and both, L∞ and L2, minimal L∞ ε per
   modality, density/convexity, sharpness) into ``--out``.
2. Re-checks every theorem case of the comparison (a clip that ``audio-only`` and a fused model both
   get right, where the fused model's minimal audio ε is below ``audio-only``'s): an audio-only PGD on
   the fused model at that ε (50 steps, 3 restarts) must flip it, the same perturbed audio must leave
   ``audio-only`` right, and a much stronger PGD on ``audio-only`` at that ε (200 steps, 5 restarts)
   must fail to flip it; a case passing all three is "confirmed" (evidence that the fused model
   falls inside the audio model's own radius; PGD bounds the radius from above only).
3. Writes ``experiments/fusion_attacks.{json,md}``: the fusion tables and the re-check.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from robustaudio.attacks import ThreatModel, pgd
from robustaudio.attacks.criteria import is_correct
from robustaudio.data import AudioDataset
from robustaudio.models import load_model
from robustaudio.report.document import document_markdown
from robustaudio.report.fusion import fusion_sections
from robustaudio.runner import RunOptions, noise_suite
from robustaudio.studies.compare import AUDIO_EPS, VIDEO_EPS, FusionPlan, run_comparison

MODELS = ("av-early", "av-mid", "av-late", "av-superlate", "audio-only", "video-only")
HERE = Path(__file__).parent


def clip_inputs(dataset: AudioDataset, model, clip_id: str) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    one = AudioDataset(dataset.root, [c for c in dataset.clips if c.id == clip_id])
    batch = next(one.batches(model, 1))
    return batch.audio, batch.video, batch.labels


def recheck(comparison: dict, dataset: AudioDataset, seed: int) -> dict:
    """Re-attack every theorem case; see the module docstring."""
    out = {}
    for norm, check in comparison["fusion"]["theorem"].items():
        reference = load_model(check["reference"])
        for name in check["models"]:
            model = load_model(name)
            cases = theorem_cases(comparison["out"], name, check["reference"], norm,
                                  comparison["fusion"]["plan"]["main_norm"])
            results = []
            for clip_id, eps_fused, eps_audio in cases:
                audio, video, labels = clip_inputs(dataset, model, clip_id)
                threat = ThreatModel(norm, eps=eps_fused)
                g = torch.Generator().manual_seed(seed)
                on_fused = pgd(model, audio, labels, threat, video=video, steps=50, restarts=3, generator=g)
                with torch.no_grad():
                    audio_model_right = bool(is_correct(reference, reference(on_fused.adversarial), labels))
                strong = pgd(reference, audio, labels, threat, steps=200, restarts=5, generator=g)
                results.append({"clip_id": clip_id, "eps_fused": eps_fused, "eps_audio": eps_audio,
                                "fused_flipped": bool(on_fused.success), "audio_model_right_on_it": audio_model_right,
                                "strong_pgd_on_audio_model_failed": not bool(strong.success),
                                "confirmed": bool(on_fused.success) and audio_model_right and not bool(strong.success)})
                print(f"{name} {clip_id}: {results[-1]}", flush=True)
            out[f"{name} ({norm})"] = {"cases": len(results), "confirmed": sum(r["confirmed"] for r in results),
                                       "clips": results}
    return out


def theorem_cases(out: Path, name: str, reference: str, norm: str, main: str) -> list[tuple[str, float, float]]:
    """(clip, ε_fused, ε_audio) of every case, as :func:`robustaudio.report.fusion.theorem_check` counts them."""
    from robustaudio.report.fusion import _minimal_records

    audio, fused = _minimal_records(out, reference, norm, main), _minimal_records(out, name, norm, main)
    both = audio.merge(fused, on="clip_id", suffixes=("_audio", "_fused"))
    both = both[both["correct_audio"] & both["correct_fused"]]
    cases = both[both["eps_fused"].apply(lambda e: e != float("inf")) & (both["eps_fused"] < both["eps_audio"])]
    return [(r.clip_id, float(r.eps_fused), float(r.eps_audio)) for r in cases.itertuples()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/fusion-compare"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = AudioDataset.from_path("avmini", split="test")
    loaders = {name: (lambda name=name: load_model(name)) for name in MODELS}
    # The CLI's defaults (robustaudio compare --models ...), so a CLI run in --out is read back, not redone.
    comparison = run_comparison(loaders, dataset, args.out, norm="linf", eps=AUDIO_EPS["linf"],
                                corruptions=noise_suite(), steps=10,
                                options=RunOptions(batch_size=16, seed=args.seed),
                                fusion=FusionPlan(minimal_norms=("linf",), video_eps=dict(VIDEO_EPS)))
    comparison["out"] = args.out
    checked = recheck(comparison, dataset, args.seed)
    del comparison["out"]
    (HERE / "fusion_attacks.json").write_text(json.dumps({"fusion": comparison["fusion"], "recheck": checked},
                                                         indent=2))
    lines = [f"data: avmini test split ({comparison['clips']} clips), seed {args.seed}, PGD 10 steps",
             f"written by `python experiments/fusion_attacks.py` from {args.out} (compare.html there has the figures)"]
    for key, r in checked.items():
        lines.append(f"theorem re-check, {key}: {r['confirmed']} of {r['cases']} cases confirmed (fused flipped at "
                     f"ε_fused by a 50-step × 3 PGD, audio-only right on that audio, a 200-step × 5 PGD on audio-only "
                     f"at ε_fused fails)")
    (HERE / "fusion_attacks.md").write_text(document_markdown("Audio-visual fusion under attack (measured)", lines,
                                                              fusion_sections(comparison["fusion"]), [], []))
    print((HERE / "fusion_attacks.md").read_text())


if __name__ == "__main__":
    main()
