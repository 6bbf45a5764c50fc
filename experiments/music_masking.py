"""Why learned jamming music does not transfer: where its energy goes and how much it moves each detector's features.

Usage::

    python experiments/music_masking.py runs/jam_alexa_m12_2000 [--voices runs/voices] [--db -12]
    python experiments/music_masking.py runs/jam_masking2000_s0 --loop masking   # a jam_surrogates.py loop

For the learned loop (``RUN/music.pt``) and the random-music condition's loops (:func:`random_loops`, scene seed 1)
it prints the share of energy per frequency band, and, with the development "alexa" clips (flite and Festival,
``--voices``) mixed digitally with each loop at ``--db`` re speech (no room, so only the music differs), the
relative change the music makes to

- openWakeWord's input features (its 32-band log-mel front end) and to its 96-d embeddings, and
- microWakeWord's input features (the TFLite-Micro front end: 40 bands, noise reduction, PCAN, log),

``||F(speech + music) - F(speech)|| / ||F(speech)||``, mean over clips, and each detector's firing rate on the
mixes. A loop that moves openWakeWord's embeddings a lot and microWakeWord's features little is targeted, not
masking.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from pymicro_features import MicroFrontend

from robustaudio.attacks.jamming import load_speech
from robustaudio.data.speech import read_speech_set
from robustaudio.metrics.jamming import random_loops
from robustaudio.models import load_model

BANDS = (0, 250, 500, 1000, 2000, 3000, 4000, 6000, 8001)


def band_shares(music: torch.Tensor, sample_rate: int = 16000) -> list[float]:
    """Share of the loop's energy in each of ``BANDS`` (Hz)."""
    spectrum = torch.stft(music.float(), 512, 256, window=torch.hann_window(512), return_complex=True).abs() ** 2
    power = spectrum.mean(dim=-1)
    power = power / power.sum()
    freqs = torch.arange(power.shape[-1]) * sample_rate / 512
    return [float(power[(freqs >= lo) & (freqs < hi)].sum()) for lo, hi in zip(BANDS[:-1], BANDS[1:])]


def micro_features(clip: np.ndarray) -> np.ndarray:
    """TFLite-Micro front-end features ``[frames, 40]`` of a float clip in [-1, 1]."""
    front_end = MicroFrontend()
    pcm = np.clip(np.round(clip * 32768), -32768, 32767).astype(np.int16).tobytes()
    frames = [front_end.process_samples(pcm[k:k + 320]).features for k in range(0, len(pcm) - len(pcm) % 320, 320)]
    return np.array([f for f in frames if f], dtype=np.float64)


def mix(speech: torch.Tensor, music: torch.Tensor, db: float) -> torch.Tensor:
    """``speech`` [T] plus ``music`` looped to its length at ``db`` re the speech's RMS."""
    loop = music.repeat(int(np.ceil(len(speech) / len(music))))[:len(speech)]
    gain = speech.pow(2).mean().sqrt() / loop.pow(2).mean().sqrt().clamp_min(1e-9) * 10 ** (db / 20)
    return speech + gain * loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--voices", type=Path, default=Path("runs/voices"))
    parser.add_argument("--db", type=float, default=-12.0)
    parser.add_argument("--loop", help="a loop of RUN/musics.pt (jam_surrogates.py's) instead of RUN/music.pt")
    args = parser.parse_args()
    learned = (torch.load(args.run / "musics.pt", weights_only=True)[args.loop] if args.loop else
               torch.load(args.run / "music.pt", weights_only=True)["music"])
    loops = {"learned": learned, **{f"random {k}": m for k, m in enumerate(random_loops(4.0, 16000)(1))}}
    print("| loop | " + " | ".join(f"{lo}-{hi - 1 if hi > 8000 else hi} Hz" for lo, hi in zip(BANDS[:-1], BANDS[1:]))
          + " |\n|---|" + "---|" * (len(BANDS) - 1))
    for name, music in loops.items():
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in band_shares(music)) + " |")

    clips = [c for c in read_speech_set(args.voices, "voices") if c.split == "evaluate" and c.label == "alexa"]
    utterances, *_ = load_speech(clips, "alexa", 16000)
    pad = torch.zeros(8000)
    speech = [torch.cat([pad, utterances.audio[i, :int(utterances.lengths[i])], pad]) for i in range(len(utterances))]
    oww = load_model("openwakeword:alexa")
    mww = load_model("microwakeword:alexa")

    def oww_parts(batch: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        width = max(len(x) for x in batch)
        audio = torch.stack([torch.nn.functional.pad(x, (0, width - len(x))) for x in batch])
        with torch.no_grad():
            features = oww.features(audio)
            return features, oww.embeddings(features)["audio"], oww(audio).argmax(-1)

    clean_f, clean_e, _ = oww_parts(speech)
    clean_m = [micro_features(x.numpy()) for x in speech]
    print(f"\n{len(speech)} development 'alexa' clips, music at {args.db:g} dB re speech, mixed digitally\n")
    print("| loop | openWakeWord features moved | openWakeWord embeddings moved | openWakeWord fires | "
          "microWakeWord features moved | microWakeWord fires |\n|---|---|---|---|---|---|")
    for name, music in loops.items():
        mixed = [mix(x, music, args.db) for x in speech]
        feats, embeds, fired = oww_parts(mixed)
        moved_f = ((feats - clean_f).flatten(1).norm(dim=1) / clean_f.flatten(1).norm(dim=1)).mean()
        moved_e = ((embeds - clean_e).norm(dim=1) / clean_e.norm(dim=1)).mean()
        moved_m = np.mean([np.linalg.norm(micro_features(m.numpy()) - c) / np.linalg.norm(c)
                           for m, c in zip(mixed, clean_m)])
        width = max(len(x) for x in mixed)
        with torch.no_grad():
            micro_fired = mww(torch.stack([torch.nn.functional.pad(x, (0, width - len(x))) for x in mixed])).argmax(-1)
        print(f"| {name} | {float(moved_f):.3f} | {float(moved_e):.3f} | {float(fired.float().mean()):.2f} | "
              f"{moved_m:.3f} | {float(micro_fired.float().mean()):.2f} |")


if __name__ == "__main__":
    main()
