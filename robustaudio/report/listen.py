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

This module recomputes the attack examples (:func:`recompute`); the clip choice lives in
:mod:`.listen_clips`, the records and audio encoding in :mod:`.listen_audio`, the HTML and Markdown in
:mod:`.listen_render` and the randomized-smoothing examples in :mod:`.listen_smoothing`, all importable
from here as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from . import style
from .headline import budget_text, evaluation_text
from .listen_audio import (  # noqa: F401
    AMPLIFY_PEAK,
    AUDIO_CAP_BYTES,
    LISTEN_DIR,
    Example,
    Listen,
    _keep_audio,
    amplification,
    wav_bytes,
)
from .listen_clips import MAX_EXAMPLES, choose_clips, teaching_condition  # noqa: F401
from .listen_render import TITLE, clear, listen_html, listen_markdown, write_figures  # noqa: F401
from .listen_smoothing import smoothing_examples  # noqa: F401

if TYPE_CHECKING:
    from ..attacks.threat import ThreatModel
    from ..models.base import Classifier
    from ..runner.spec import AttackSpec


def _threat_for(settings: dict, condition: dict, label: str, sample_rate: int) -> ThreatModel | str:
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


def recompute(run_dir: Path, card: dict, records: pd.DataFrame, trust_checkpoint: bool = False) -> Listen:
    """Choose the clips, attack them again with the run's settings, and render each example.

    The model is loaded from what ``run.json`` names, which is data: a ``python:`` model (code) is run, and
    pickled weights are read, only with ``trust_checkpoint``."""
    settings = card["settings"]
    condition = teaching_condition(card, records)
    reason = skip_reason(card, condition)
    if reason:
        return Listen(f"No examples to listen to: {reason}.", [])
    assert condition is not None
    if "python:" in str(settings["model"]) and not trust_checkpoint:  # also inside labelmap:MAP:python:...
        return Listen(f"No examples to listen to: the run's model {settings['model']!r} is Python code, which the "
                      f"report runs only when you trust it: `robustaudio report RUN_DIR --trust-checkpoint`.", [])
    try:
        from ..models import load_model  # noqa: PLC0415 (the models only when examples are made)
        model = load_model(settings["model"], weights=settings.get("weights"), device="cpu",
                           trust_checkpoint=trust_checkpoint).eval()
    except Exception as error:  # any loader failure only costs the section
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        fix = (" To allow it: `robustaudio report RUN_DIR --trust-checkpoint`, for files you trust."
               if "--trust-checkpoint" in first and not trust_checkpoint else "")
        return Listen(f"No examples to listen to: the model {settings['model']!r} could not be loaded here "
                      f"({first.split('. ')[0][:200]}).{fix}", [])
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


def _attack_examples(run_dir: Path, card: dict, condition: dict, model: Classifier, spec: AttackSpec,
                     threat: ThreatModel, chosen: list[tuple[pd.Series, str]]) -> Listen:
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
    examples: list[Example] = []
    used, left_out = 0, 0
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
        assert top is not None  # set by the loop above over the same clips
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
