"""Listen and look: a few attacked clips, chosen to teach, as audio players and spectrograms.

The runner stores no adversarial audio, so the report recomputes it: the chosen clips (at most
:data:`MAX_EXAMPLES`) are attacked again with the run's settings (attack, steps, restarts, queries,
budget, seed) by the library (:func:`robustaudio.runner.registry.budget_attack`), on their own. A clip
attacked alone draws other random starts than in its batch, so a recomputed outcome can differ from the
record; each example gives both. The model is loaded by the name in ``run.json``; it must reproduce
the records' clean scores, else the section is skipped (a run made with a model object that the name does
not load). Skipped too, with a sentence: perturbations in the feature or video domain, masked threat
models, minimal-ε and universal runs, and models that cannot be loaded.

Each example: clean, adversarial and δ amplified ×N as 16-bit PCM WAV players (base64 data URIs, at most
:data:`AUDIO_CAP_BYTES` of audio in all; the Markdown links the same files under ``listen/``), and one
figure of the three spectrograms on one colour scale.
"""

from __future__ import annotations

import base64
import html
import io
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import style
from .document import markdown_text
from .headline import budget_text, evaluation_text

MAX_EXAMPLES = 6
AUDIO_CAP_BYTES = 2_000_000  # WAV bytes embedded in report.html, all examples together
LISTEN_DIR = "listen"
AMPLIFY_PEAK = 0.5  # δ is amplified (1-2-5 steps) until its peak reaches at most this much of full scale


@dataclass
class Example:
    clip_id: str
    label: str
    why: str              # why this clip was chosen
    recorded: str         # the record's outcome
    recomputed: str       # the recomputed outcome
    snr_db: float | None  # of the recomputed perturbation
    amplify: int
    wavs: dict[str, bytes]  # clean / adversarial / delta -> WAV bytes
    figure: bytes           # JPEG of the three spectrograms
    captions: dict[str, str] | None = None  # wav key -> player caption (default: the attack's three)


@dataclass
class Listen:
    """The section: ``intro`` (or the reason it is skipped), the examples, and what the cap left out."""

    intro: str
    examples: list[Example]
    left_out: int = 0


# ---- which clips ----------------------------------------------------------------------------------

def teaching_condition(card: dict, records: pd.DataFrame) -> dict | None:
    """The fixed-budget attack condition whose attacked clips are most evenly split into broken and robust
    (ties: the larger budget)."""
    best, best_key = None, None
    for c in card["conditions"]:
        if c.get("kind") == "noise":
            continue
        rows = records[(records["condition"] == c["condition"]) & (records["attacked"] == True)]  # noqa: E712
        broken = int((rows["success"] == True).sum())  # noqa: E712
        key = (min(broken, len(rows) - broken), len(rows), c["eps"] or 0, -(c["snr_db"] or 0))
        if len(rows) and (best_key is None or key > best_key):
            best, best_key = c, key
    return best


def choose_clips(records: pd.DataFrame, condition: str, count: int = MAX_EXAMPLES) -> list[tuple[pd.Series, str]]:
    """Clips to teach with: the one broken by the quietest perturbation, the one that stays the most confident,
    then one per class not yet shown (broken and robust in turn), up to ``count``."""
    rows = records[(records["condition"] == condition) & (records["attacked"] == True)].copy()  # noqa: E712
    rows["snr"] = pd.to_numeric(rows["snr_db"], errors="coerce").fillna(-np.inf)
    rows["score"] = pd.to_numeric(rows["adv_score"], errors="coerce").fillna(-np.inf)
    broken = rows[rows["success"] == True].sort_values("snr", ascending=False, kind="stable")  # noqa: E712
    robust = rows[rows["success"] != True].sort_values("score", ascending=False, kind="stable")  # noqa: E712
    chosen: list[tuple[pd.Series, str]] = []
    seen: set[str] = set()

    def take(row: pd.Series, why: str) -> None:
        chosen.append((row, why))
        seen.add(row["clip_id"])

    if len(broken):
        take(broken.iloc[0], "broken by the quietest perturbation")
    if len(robust):
        take(robust.iloc[0], "still robust: the most confident under attack")
    labels = sorted(set(rows["label"]) - {row["label"] for row, _ in chosen})
    turn = 0
    while len(chosen) < count and labels:
        for label in list(labels):
            if len(chosen) >= count:
                break
            order = [(broken, "broken"), (robust, "robust")]
            pools = order[turn % 2:] + order[:turn % 2]
            for pool, kind in pools:
                left = pool[(pool["label"] == label) & ~pool["clip_id"].isin(seen)]
                if len(left):
                    take(left.iloc[0], f"{kind}, for class {label}")
                    turn += 1
                    break
            labels.remove(label)
    for pool, kind in ((broken, "broken"), (robust, "robust")):  # fewer classes than examples: fill up
        for _, row in pool.iterrows():
            if len(chosen) >= count:
                break
            if row["clip_id"] not in seen:
                take(row, kind)
    return chosen


# ---- recomputing ------------------------------------------------------------------------------------

def _threat_for(settings: dict, condition: dict, label: str, sample_rate: int):
    """The run's ThreatModel of ``condition`` (matched by its condition name), or a reason string."""
    from ..attacks.threat import ThreatModel

    for t in settings.get("threats", []):
        if t.get("masked"):
            continue
        threat = ThreatModel(t["norm"], eps=t.get("eps"), snr_db=t.get("snr_db"), domain=t.get("domain", "waveform"),
                             bounds=tuple(t["bounds"]) if t.get("bounds") is not None else None,
                             band_hz=tuple(t["band_hz"]) if t.get("band_hz") else None,
                             sample_rate=sample_rate if t.get("band_hz") else None,
                             modality=t.get("modality", "audio"), restriction=t.get("restriction"))
        if f"{label}-{threat.describe()}" == condition["condition"]:
            return threat
    return "its threat model is restricted by a mask that run.json does not store"


def skip_reason(card: dict, condition: dict | None) -> str | None:
    settings = card["settings"]
    if condition is None:
        return "no clip was attacked at a fixed budget"
    if settings.get("attack") in ("minimal", "universal"):
        return f"{settings['attack']} runs are not shown here"
    if condition["domain"] != "waveform":
        return (f"the perturbation lives in the {condition['domain']} domain, which cannot be played back as "
                f"audio")
    return None


def recompute(run_dir: Path, card: dict, records: pd.DataFrame) -> Listen:
    """Choose the clips, attack them again with the run's settings, and render each example."""
    settings = card["settings"]
    condition = teaching_condition(card, records)
    reason = skip_reason(card, condition)
    if reason:
        return Listen(f"No examples to listen to: {reason}.", [])
    assert condition is not None
    try:
        from ..models import load_model  # noqa: PLC0415 (the models only when examples are made)
        model = load_model(settings["model"], weights=settings.get("weights"), device="cpu").eval()
    except Exception as error:  # any loader failure only costs the section
        first = str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else type(error).__name__
        return Listen(f"No examples to listen to: the model {settings['model']!r} could not be loaded here "
                      f"({first[:200]}).", [])
    if "video" in getattr(model, "modalities", ("audio",)):
        return Listen("No examples to listen to: the model takes video too, which this section does not show.", [])
    from ..runner.spec import AttackSpec
    spec = AttackSpec(settings["attack"], backend=settings.get("backend", "native"), steps=settings.get("steps"),
                      restarts=settings.get("restarts", 1), queries=settings.get("queries"),
                      targets=settings.get("targets", 3))
    threat = _threat_for(settings, condition, spec.label, model.sample_rate)
    if isinstance(threat, str):
        return Listen(f"No examples to listen to: {threat}.", [])
    chosen = choose_clips(records, condition["condition"])
    try:
        if settings.get("labels") and list(model.labels) != list(settings["labels"]):
            raise _Mismatch(f"the model loaded as {settings['model']!r} has other labels than the run's model")
        return _attack_examples(run_dir, card, condition, model, spec, threat, chosen)
    except _Mismatch as error:
        return Listen(f"No examples to listen to: {error}.", [])
    except Exception as error:  # the examples are an extra: their failure must not cost the report
        return Listen(f"No examples to listen to: recomputing them failed ({type(error).__name__}: "
                      f"{str(error).strip()[:200]}).", [])


class _Mismatch(Exception):
    pass


def _attack_examples(run_dir: Path, card: dict, condition: dict, model, spec, threat, chosen) -> Listen:
    from ..attacks.criteria import decision_names, is_correct
    from ..data.datasets import AudioDataset
    from ..runner.registry import budget_attack
    from ..runner.rows import true_scores

    settings = card["settings"]
    dataset = AudioDataset.from_path(settings["data"])
    by_id = {c.id: c for c in dataset.clips}
    missing = [row["clip_id"] for row, _ in chosen if row["clip_id"] not in by_id]
    if missing:
        raise _Mismatch(f"the clip {missing[0]!r} is no longer in {settings['data']}")
    subset = AudioDataset(dataset.root, [by_id[row["clip_id"]] for row, _ in chosen])
    batch = next(subset.batches(model, len(chosen)))
    if len(batch.ids) != len(chosen):
        raise _Mismatch("a chosen clip could not be read again")
    with torch.no_grad():
        clean_logits = model(batch.audio)
    scores = true_scores(model, clean_logits, batch.labels)
    recorded = np.array([float(row["clean_score"]) for row, _ in chosen])
    if not np.allclose(scores.numpy(), recorded, atol=2e-3):
        raise _Mismatch(f"the model loaded as {settings['model']!r} does not reproduce the run's clean scores "
                        f"(a run made with another model under that name)")
    clean, _ = threat.view(model, batch.audio)
    attack, _ = budget_attack(spec)
    generator = torch.Generator().manual_seed(int(settings.get("seed", 0)))
    result = attack(model, batch.audio, batch.labels, threat, eps=threat.budget(clean.detach()),
                    clean_logits=clean_logits, video=None, init_delta=None, generator=generator)
    adversarial = result.adversarial.detach()
    with torch.no_grad():
        adv_logits = model(adversarial)
    fooled = ~is_correct(model, adv_logits, batch.labels)
    predicted = decision_names(model, model.predict(adv_logits))
    rate = model.sample_rate
    folder = run_dir / LISTEN_DIR
    folder.mkdir(exist_ok=True)
    top = None
    spectra = []
    for i in range(len(chosen)):
        x, a = batch.audio[i].numpy(), adversarial[i].numpy()
        spectra.append({"clean": style.power_db(x, rate), "adversarial": style.power_db(a, rate),
                        "δ": style.power_db(a - x, rate)})
        top = max(top or -np.inf, float(spectra[-1]["clean"].max()), float(spectra[-1]["adversarial"].max()))
    examples, used, left_out = [], 0, 0
    for i, (row, why) in enumerate(chosen):
        x, a = batch.audio[i].numpy(), adversarial[i].numpy()
        delta = a - x
        amplify = amplification(float(np.abs(delta).max()))
        wavs = {"clean": wav_bytes(x, rate), "adversarial": wav_bytes(a, rate),
                "delta": wav_bytes(delta * amplify, rate)}
        if not _keep_audio(wavs, folder, len(examples) + 1, used):
            left_out += 1
            continue
        used += sum(len(w) for w in wavs.values())
        power = float(np.sum(x.astype(np.float64) ** 2))
        noise = float(np.sum(delta.astype(np.float64) ** 2))
        snr = 10 * np.log10(power / noise) if noise > 0 and power > 0 else None
        was = (f"fooled (→ {row['adv_pred']})" if row["success"] is True else "robust") + (
            f", broken by {row['broken_by']}" if isinstance(row.get("broken_by"), str) else "")
        now = f"fooled (→ {predicted[i]})" if bool(fooled[i]) else f"robust (still {predicted[i]})"
        figure = style.spectrogram_figure(spectra[i], rate, top, amplify)
        examples.append(Example(row["clip_id"], row["label"], why, was, now, snr, amplify, wavs,
                                style.jpeg(figure)))
    intro = (f"Recomputed for this report: the run stores no adversarial audio, so these {len(chosen)} clips were "
             f"attacked again on their own with the run's settings ({evaluation_text(settings)}, "
             f"{budget_text(condition)}, seed {settings.get('seed', 0)}; the budget where broken and robust clips are "
             f"most evenly split). Alone, a clip draws other random starts than in its batch: each example gives "
             f"the record's outcome and the recomputed one. Audio: 16-bit WAV at {rate} Hz, the perturbation δ "
             f"amplified ×N to be heard; at most {AUDIO_CAP_BYTES / 1e6:g} MB of audio is embedded. Spectrograms: "
             f"dB re full scale, one colour scale for all.")
    return Listen(intro, examples, left_out)


def _keep_audio(wavs: dict[str, bytes], folder: Path, number: int, used: int) -> bool:
    """Write example ``number``'s WAVs as ``folder/NN-<name>.wav`` unless they would take the embedded audio
    past :data:`AUDIO_CAP_BYTES` (``used`` so far); says whether they were kept."""
    if used + sum(len(w) for w in wavs.values()) > AUDIO_CAP_BYTES:
        return False
    for name, data in wavs.items():
        (folder / f"{number:02d}-{name}.wav").write_bytes(data)
    return True


def amplification(peak: float, target: float = AMPLIFY_PEAK) -> int:
    """The largest of 1, 2, 5, 10, 20, ... with ``N · peak <= target`` (1 for a silent δ)."""
    if peak <= 0 or not np.isfinite(peak):
        return 1
    best = 1
    for exponent in range(0, 9):
        for mantissa in (1, 2, 5):
            n = mantissa * 10 ** exponent
            if n * peak <= target:
                best = n
    return best


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """Mono 16-bit PCM WAV of ``samples`` in [-1, 1] (clipped)."""
    pcm = (np.clip(np.asarray(samples, dtype=np.float64), -1, 1) * 32767).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(int(rate))
        handle.writeframes(pcm.tobytes())
    return buffer.getvalue()


# ---- rendering --------------------------------------------------------------------------------------

TITLE = "Listen and look: examples"


def _players(example: Example) -> dict[str, str]:
    return example.captions or {"clean": "clean", "adversarial": "adversarial",
                                "delta": f"δ amplified ×{example.amplify}"}


def _caption(example: Example) -> str:
    if example.captions is not None:  # not an attack: the why says it all
        return example.why
    snr = f"; recomputed δ at SNR {example.snr_db:.0f} dB" if example.snr_db is not None else ""
    why = example.why[:1].upper() + example.why[1:]
    return f"{why}. Record: {example.recorded}. Recomputed: {example.recomputed}{snr}."


def listen_html(listen: Listen | None) -> list[str]:
    if listen is None:
        return []
    e = html.escape
    parts = [f"<h2>{e(TITLE)}</h2>", f"<p>{e(listen.intro)}</p>"]
    for n, example in enumerate(listen.examples, 1):
        players = "".join(
            f"<figure><figcaption>{e(name)}</figcaption><audio controls preload='auto' "
            f"src='data:audio/wav;base64,{base64.b64encode(example.wavs[key]).decode('ascii')}'></audio></figure>"
            for key, name in _players(example).items())
        image = base64.b64encode(example.figure).decode("ascii")
        parts.append(f"<div class='example'><h3>{n}. {e(example.label)}: {e(example.clip_id)}</h3>"
                     f"<p>{e(_caption(example))}</p><div class='players'>{players}</div>"
                     f"<img alt='spectrograms of example {n}' src='data:image/jpeg;base64,{image}'></div>")
    if listen.left_out:
        parts.append(f"<p>{listen.left_out} more example(s) left out: the embedded audio would pass "
                     f"{AUDIO_CAP_BYTES / 1e6:g} MB.</p>")
    return parts


def listen_markdown(listen: Listen | None) -> list[str]:
    if listen is None:
        return []
    t = markdown_text
    out = [f"## {TITLE}", "", t(listen.intro), ""]
    for n, example in enumerate(listen.examples, 1):
        files = ", ".join(f"[{name}]({LISTEN_DIR}/{n:02d}-{key}.wav)" for key, name in _players(example).items())
        out += [f"### {n}. {t(example.label)}: {t(example.clip_id)}", "", t(_caption(example)), "",
                f"Listen: {files}", "", f"![spectrograms of example {n}](figures/listen_{n:02d}.jpg)", ""]
    if listen.left_out:
        out += [f"{listen.left_out} more example(s) left out: the embedded audio would pass "
                f"{AUDIO_CAP_BYTES / 1e6:g} MB.", ""]
    return out


# ---- randomized smoothing ------------------------------------------------------------------------------

def smoothing_examples(smooth, clips: list, rows: list[dict], out: Path, seed: int = 0,
                       count: int = 3) -> Listen:
    """What the smoothed classifier hears: for up to ``count`` certified clips (the largest radius, the
    smallest, an abstention or error where there is one), the clean clip, one noisy copy ``x + σε`` and,
    with a denoiser, what it makes of that copy; spectrograms of all on one colour scale.

    ``clips``: ``(clip_id, audio [T], label index)`` as certified; ``rows``: their certificates. In the
    feature domain the noisy and denoised inputs are log-mel features, not sound: only the clean clip is
    played, and the figure shows the features.
    """
    by_id = {clip_id: (audio, label) for clip_id, audio, label in clips}
    rows = [r for r in rows if r["clip_id"] in by_id]
    if not rows:
        return Listen("No certified clip to show.", [])
    ranked = sorted(rows, key=lambda r: -(r["radius"] if r["prediction"] is not None and r["correct"] else -1.0))
    chosen = [(ranked[0], "the largest certified radius")]
    failed = [r for r in rows if r["prediction"] is None or not r["correct"]]
    if failed and failed[0] is not ranked[0]:
        chosen.append((failed[0], "abstained" if failed[0]["prediction"] is None else "certified wrong or not at all"))
    for r in ranked[1:]:
        if len(chosen) >= count:
            break
        if all(r is not c for c, _ in chosen):
            chosen.append((r, "another certified clip"))
    rate = int(smooth.model.sample_rate)
    denoised_name = "denoised" if smooth.denoiser is not None else None
    generator = torch.Generator(device=smooth.device).manual_seed(seed)
    folder = out / LISTEN_DIR
    folder.mkdir(parents=True, exist_ok=True)
    examples, used, left_out = [], 0, 0
    for row, why in chosen[:count]:
        audio, _ = by_id[row["clip_id"]]
        x = smooth.clean_input(audio)
        with torch.no_grad():
            noisy = x + smooth.sigma * torch.randn(x.shape, generator=generator, device=x.device)
            inputs = {"clean": x, "noisy": noisy}
            if smooth.denoiser is not None:
                inputs["denoised"] = smooth.denoiser.denoise(noisy.unsqueeze(0), smooth.sigma)[0]
        arrays = {name: value.detach().float().cpu().numpy() for name, value in inputs.items()}
        outcome = (f"certified {row['prediction']} at radius {row['radius']:.3g}" if row["prediction"] is not None
                   else "abstained")
        label_text = f"label {row['label']}; {outcome} (σ = {smooth.sigma:g}, {smooth.domain})"
        if smooth.domain == "waveform":
            spectra = {name: style.power_db(a, rate) for name, a in arrays.items()}
            top = max(float(p.max()) for p in spectra.values())
            figure = style.spectrogram_figure(spectra, rate, top)
            wavs = {name: wav_bytes(a, rate) for name, a in arrays.items()}
            captions = {"clean": "clean", "noisy": f"noisy (x + {smooth.sigma:g}·ε, clipped to full scale)"}
            if denoised_name:
                captions["denoised"] = "denoised"
        else:
            figure = style.feature_figure(arrays)
            wavs = {"clean": wav_bytes(audio.detach().cpu().numpy(), rate)}
            captions = {"clean": "clean (the noise is added to its log-mel features, which cannot be played)"}
        if not _keep_audio(wavs, folder, len(examples) + 1, used):
            left_out += 1
            continue
        used += sum(len(w) for w in wavs.values())
        examples.append(Example(row["clip_id"], row["label"], f"{why[:1].upper() + why[1:]}: {label_text}.",
                                outcome, outcome, None, 1, wavs, style.jpeg(figure), captions))
    intro = (f"What the smoothed classifier hears: each clip clean, one of the noisy copies it votes over"
             f"{' and what the denoiser makes of it' if denoised_name else ''}. Audio: 16-bit WAV at {rate} Hz; "
             f"at most {AUDIO_CAP_BYTES / 1e6:g} MB is embedded. Spectrograms: one colour scale per clip.")
    return Listen(intro, examples, left_out)


def clear(run_dir: Path, figures_dir: Path) -> None:
    """Remove the examples of an earlier rendering (their number or choice may change)."""
    for path in [*(run_dir / LISTEN_DIR).glob("*.wav"), *figures_dir.glob("listen_*.jpg")]:
        path.unlink()


def write_figures(listen: Listen | None, figures_dir: Path) -> None:
    for n, example in enumerate(listen.examples if listen else [], 1):
        (figures_dir / f"listen_{n:02d}.jpg").write_bytes(example.figure)
