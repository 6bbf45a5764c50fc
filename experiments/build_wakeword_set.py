"""Build the bundled wake-word set ``robustaudio/data/bundled/wakeword`` (≈2 MB of FLAC).

Usage::

    pip install espeakng-loader && apt-get install flite
    python experiments/build_wakeword_set.py

Two TTS engines, several voices each, 16 kHz mono, trimmed to the speech (50 ms margins), peak 0.9:

- positives ``alexa`` and ``hey_jarvis``: eSpeak NG (through ``espeakng-loader``'s library,
  driven as in ``make_wakeword_clips.py``) in six English accents × eight voice variants (formant
  and Klatt synthesis), and flite's five voices (kal, kal16, awb, rms, slt) at two speaking rates;
- negatives ``not-wake``: everyday phrases by eSpeak NG and flite voices (no confusable words such
  as "Alexis": the set measures whether music stops a detector, not its specificity; for one
  detector the other wake word's clips are negatives too).

Split by speaker: for the positives, a voice (accent + variant, or flite voice) is either ``train``
(the utterances the jammer optimises on) or ``test`` (evaluation), never both; every negative is
``test`` (negatives are only evaluated). All clips are kept, whether or not a detector fires on
them: the jammer evaluates on the clips its detector finds when clean.
"""

from __future__ import annotations

import csv
import itertools
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile
import torch

sys.path.insert(0, str(Path(__file__).parent))
from make_wakeword_clips import Espeak, to_clip  # noqa: E402

from robustaudio.acoustics.scenes import trim_silence  # noqa: E402
from robustaudio.data.datasets import BUNDLED_ROOT  # noqa: E402

OUT = BUNDLED_ROOT / "wakeword"
RATE = 16000
WORDS = {"alexa": "alexa", "hey_jarvis": "hey jarvis"}
ESPEAK_VOICES = ("en", "en-gb-x-rp", "en-gb-x-gbclan", "en-us", "en-gb-scotland", "en-gb-x-gbcwmd")
ESPEAK_VARIANTS = ("", "m3", "f2", "Mike", "klatt", "klatt3", "michel", "Andy")
FLITE_VOICES = {"kal": "train", "kal16": "train", "rms": "train", "awb": "test", "slt": "test"}
FLITE_STRETCH = (1.0, 1.15)
NEGATIVES = ("hello there", "what time is it", "turn on the lights", "play some music", "good morning",
             "excuse me", "how are you", "set a timer", "what's the weather like", "call my sister")
NEGATIVE_VOICES = (("espeak", "en"), ("espeak", "en-us+f2"), ("flite", "slt"), ("flite", "awb"))


def flite(text: str, voice: str, stretch: float) -> tuple:
    with tempfile.NamedTemporaryFile(suffix=".wav") as handle:
        subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "-t", text,
                        "-o", handle.name], check=True)
        data, rate = soundfile.read(handle.name, dtype="int16")
    return data, rate


def main() -> None:
    espeak = Espeak()
    rows = []

    def save(label: str, name: str, samples, rate: int, split: str, engine: str, voice: str, text: str,
             setting: str) -> None:
        clip = trim_silence(torch.from_numpy(to_clip(samples, rate)), RATE, name)
        path = Path("clips") / label / f"{name}.flac"
        (OUT / path).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(OUT / path, clip.numpy(), RATE, subtype="PCM_16")
        rows.append({"path": str(path), "label": label, "split": split, "engine": engine, "voice": voice,
                     "setting": setting, "text": text})

    for label, text in WORDS.items():
        for (i, voice), (j, variant) in itertools.product(enumerate(ESPEAK_VOICES), enumerate(ESPEAK_VARIANTS)):
            full = f"{voice}+{variant}" if variant else voice
            rate = (150, 175)[(i + j) % 2]
            split = "train" if (i + j) % 2 == 0 else "test"
            save(label, f"espeak-{full.replace('+', '_')}", espeak.say(text, full, rate), espeak.rate, split,
                 "espeak-ng", full, text, f"{rate} wpm")
        for (voice, split), stretch in itertools.product(FLITE_VOICES.items(), FLITE_STRETCH):
            save(label, f"flite-{voice}-{stretch:g}", *flite(text, voice, stretch), split, "flite", voice, text,
                 f"duration_stretch {stretch:g}")
    for (k, text), (engine, voice) in itertools.product(enumerate(NEGATIVES), NEGATIVE_VOICES):
        samples, rate = (espeak.say(text, voice, 175), espeak.rate) if engine == "espeak" else flite(text, voice, 1.0)
        save("not-wake", f"{k:02d}-{engine}-{voice.replace('+', '_')}", samples, rate, "test",
             "espeak-ng" if engine == "espeak" else "flite", voice, text, "")
    with open(OUT / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} clips under {OUT}")


if __name__ == "__main__":
    main()
