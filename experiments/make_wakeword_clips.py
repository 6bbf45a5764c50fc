"""Synthesise a small wake-word set with espeak-ng: DIR/<word>/*.wav and DIR/not-<word>/*.wav (16 kHz, 16-bit).

Usage::

    python experiments/make_wakeword_clips.py DIR --word alexa
    robustaudio attack --model openwakeword:alexa --data DIR --norm linf --eps 0.002

Speech comes from espeak-ng through the ``espeakng-loader`` wheel (its ``libespeak-ng.so`` and voice
data; no CLI needed), driven with ctypes. Positives say the wake word over a grid of voices and
variants (the accents and variants on which openWakeWord's alexa fires most often, per
``shared/specs/real_models.md``) and speaking rates; negatives say everyday phrases and a few
confusable words. Every clip starts with 0.3 s of silence and is resampled from espeak's 22,050 Hz.
A ``metadata.csv`` is not written: the folder names are the labels. Not every positive fires the
detector: evaluate attacks on the clips it detects when clean.
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio

SAMPLE_RATE = 16000
LEAD_SILENCE = 0.3
VOICES = ("en", "en-gb-x-rp", "en-gb-x-gbclan", "en-us")
VARIANTS = ("", "m8", "Mike", "klatt", "michel", "victor")
RATES = (150, 175)  # words per minute (espeak's default is 175)
NEGATIVES = ("hello there", "what time is it", "turn on the lights", "play some music", "good morning",
             "Alexis", "Lexus", "election", "a letter", "excuse me")
NEGATIVE_VOICES = ("en", "en-gb-x-rp", "en-us")

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_RATE = 1
CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class Espeak:
    """Minimal ctypes binding of libespeak-ng in synchronous mode: text -> int16 samples at ``rate`` Hz."""

    def __init__(self):
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = str(espeakng_loader.get_data_path()).encode()
        self.rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed with data path {data!r}")
        self.samples: list[np.ndarray] = []
        self.callback = CALLBACK(self._collect)  # keep a reference: the library calls it later
        self.lib.espeak_SetSynthCallback(self.callback)

    def _collect(self, wav, count, events) -> int:
        if count > 0:
            self.samples.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def say(self, text: str, voice: str, rate: int) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(ESPEAK_RATE, rate, 0)
        self.samples = []
        encoded = text.encode()
        self.lib.espeak_Synth(encoded, len(encoded) + 1, 0, POS_CHARACTER, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        return np.concatenate(self.samples) if self.samples else np.zeros(0, np.int16)


def to_clip(samples: np.ndarray, rate: int) -> np.ndarray:
    """int16 at ``rate`` -> float32 at 16 kHz with the lead silence, peak at most 0.9."""
    audio = torch.from_numpy(samples.astype(np.float32) / 32768.0)
    audio = torchaudio.functional.resample(audio, rate, SAMPLE_RATE)
    audio = torch.cat([torch.zeros(int(LEAD_SILENCE * SAMPLE_RATE)), audio])
    peak = float(audio.abs().max())
    return (audio * min(1.0, 0.9 / peak) if peak > 0 else audio).numpy()


def write(folder: Path, name: str, clip: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    soundfile.write(folder / f"{name}.wav", clip, SAMPLE_RATE, subtype="PCM_16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--word", default="alexa", help="the wake word as spoken (folder name: spaces -> _)")
    args = parser.parse_args()
    espeak = Espeak()
    label = args.word.replace(" ", "_")
    for voice, variant, rate in itertools.product(VOICES, VARIANTS, RATES):
        full = f"{voice}+{variant}" if variant else voice
        clip = to_clip(espeak.say(args.word, full, rate), espeak.rate)
        write(args.out / label, f"{full.replace('+', '_')}-{rate}", clip)
    for (k, phrase), voice in itertools.product(enumerate(NEGATIVES), NEGATIVE_VOICES):
        write(args.out / f"not-{label}", f"{k:02d}-{voice}", to_clip(espeak.say(phrase, voice, 175), espeak.rate))
    print(f"wrote {len(VOICES) * len(VARIANTS) * len(RATES)} '{args.word}' and "
          f"{len(NEGATIVES) * len(NEGATIVE_VOICES)} negative clips under {args.out}")


if __name__ == "__main__":
    main()
