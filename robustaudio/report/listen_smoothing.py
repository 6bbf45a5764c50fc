"""What a randomized-smoothing classifier hears: clean, noisy and denoised copies of a few certified clips
(:func:`smoothing_examples`), as a listening section."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import style
from .listen_audio import AUDIO_CAP_BYTES, LISTEN_DIR, Example, Listen, _keep_audio, wav_bytes

if TYPE_CHECKING:
    from ..defenses.smoothing import Smooth


def smoothing_examples(smooth: Smooth, clips: list, rows: list[dict], out: Path, seed: int = 0,
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
    examples: list[Example] = []
    used, left_out = 0, 0
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
