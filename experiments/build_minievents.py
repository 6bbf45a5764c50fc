"""Rebuild the bundled ``minievents`` dataset: 10 sound-event classes of real, labelled recordings.

    python experiments/build_minievents.py [--seed 0] [--out robustaudio/data/bundled/minievents]
                                           [--cache /tmp/minievents_cache]

Sources. Everything comes from Debian ``main`` packages fetched with ``apt-get download`` and
unpacked with ``dpkg -x`` (no root, nothing installed), plus speech synthesised with the
``espeak-ng`` command-line program:

- speech     real speakers (ktuberling-data: one speaker per language; tuxpaint-stamps-default:
             the spoken stamp descriptions, one narrator per language) and espeak-ng voices
             (accent + voice variant, varied phrases, speed and pitch)
- bird       tuxpaint-stamps-default, qabcs-data, scratch, sonic-pi-samples, openttd-opensfx
- livestock  cattle, horse, donkey, sheep, goat, pig: tuxpaint, qabcs, openttd
- music      melodic instruments (no drums): qabcs-data, tuxpaint, scratch, sonic-pi-samples
- kick, snare, cymbal (hi-hats, crash, ride, splash, china)
             hydrogen-drumkits (class from the instrument names in each kit's ``drumkit.xml``),
             sonic-pi-samples, scratch, tuxpaint, qabcs
- engine     vehicles (trains, planes, helicopters, buses, trucks, tractor, excavator, drone):
             openttd-opensfx, qabcs-data
- water      running water, streams, a waterfall, rain, bubbles, splashes, drops: minetest-data,
             scratch, openarena-data, hedgewars-data, supertux-data, openttd-opensfx
- footsteps  minetest-data (one source per ground material), openarena-data, hedgewars-data,
             scratch

A *source* (the unit of the train/test split) is one recording, or the numbered takes of one
sound (``Droplet1..3``), or one speaker / espeak-ng voice, or one recordist where the credits
name one: a drum kit's author, or the freesound.org user credited for a sonic-pi sample, an
openttd sound or a sample in the freesound-built Audiophob kit (the same users' packs appear in
several packages and classes).

Recipe (deterministic for a given seed and package versions):

1. Skip files recorded below 22.05 kHz (their band ends under 7 kHz), decode, downmix, resample
   to 16 kHz (``scipy.signal.resample_poly``) and low-pass at 7 kHz (8th-order Butterworth, zero
   phase): every clip then has the same 7 kHz band, so no class can be told apart by its sources'
   bandwidth; the original rate is kept in ``metadata.csv``.
2. Cut up to 3 non-overlapping 1.0 s windows with the most energy per recording (1 for speech);
   a second or third window is kept only within 6 dB of the first and never when near silent
   (below -50 dBFS). Sounds shorter than 1 s are centred and zero-padded.
3. Normalise each clip to -20 dBFS RMS with the peak limited to 0.95 (level is no cue).
4. Remove duplicates within each class: identical audio, and near-identical content (games and
   educational packages reuse the same recordings): maximum normalised cross-correlation of the
   first windows >= 0.8 keeps only the first recording in package order.
5. Per class, take clips round-robin over a seeded shuffle of the sources (every source's first
   clip before anyone's second), at most 3 per source and 34 per class.
6. Split by source, never by clip: sources that occur in several classes (drum recordists) are
   split first, as a whole; then each class adds test sources until about 30% of its clips and at least
   3 of its sources are in ``test``. No source occurs in both splits.
7. Write FLAC (PCM 16-bit) clips to ``clips/<label>/<label>-<hash>.flac``, ``metadata.csv``,
   ``ATTRIBUTION.md``, ``VERSIONS.txt`` and the packages' copyright files in ``LICENSES/``.

Needs ``apt-get`` and ``dpkg`` (Debian/Ubuntu with Debian ``main`` reachable), ``espeak-ng``, and
Python with numpy, scipy and soundfile. No torch.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import io
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
from scipy import signal

RATE = 16000
CLIP_SAMPLES = RATE  # 1.0 s
LOWPASS_HZ = 7000.0
TARGET_DBFS = -20.0
PEAK_LIMIT = 0.95
SILENCE_DBFS = -50.0         # a window quieter than this (before normalising) is skipped
EXTRA_WINDOW_DB = 6.0        # later windows must be within this of the loudest one
MAX_WINDOWS = 3
MAX_CLIPS_PER_CLASS = 34
MAX_CLIPS_PER_SOURCE = 3     # per class, for sources with several recordings (a recordist, Droplet1..3)
TEST_FRACTION = 0.3
MIN_TEST_SOURCES = 3
DUPLICATE_SIMILARITY = 0.8
MAX_SECONDS_READ = 30.0      # longer files are truncated before windowing
MIN_ORIGINAL_RATE = 22050    # lower rates cannot fill the common 7 kHz band

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "robustaudio" / "data" / "bundled" / "minievents"
DEFAULT_CACHE = Path("/tmp/minievents_cache")

# Package order is also the preference order when near-duplicates are removed.
PACKAGES = (
    "hydrogen-drumkits", "sonic-pi-samples", "openttd-opensfx", "tuxpaint-stamps-default",
    "qabcs-data", "scratch", "minetest-data", "openarena-data", "hedgewars-data", "supertux-data",
    "ktuberling-data",
)

# ---------------------------------------------------------------------------------------------
# Which files go into which class (paths relative to each package's data directory).
# ---------------------------------------------------------------------------------------------

TUXPAINT_DIR = "usr/share/tuxpaint/stamps"
TUXPAINT = {
    "bird": [f"animals/birds/{n}.ogg" for n in (
        "blackbird", "crow", "cuckoo", "drake", "duck", "gander", "hen", "heron_greatblue_flying",
        "lark", "nandou", "owl", "penguin", "quetzal", "rooster", "seagull", "tucan", "turkey",
        "vulture")],
    "livestock": [f"animals/mammals/{n}.ogg" for n in (
        "bovines/bull", "bovines/cow", "bovines/cow_white", "bovines/goat", "bovines/ram",
        "bovines/sheep", "bovines/sheep_lamb", "equines/donkey", "equines/horse", "pig",
        "pig_golden", "pig_golden2")],
    "music": ["hobbies/music/string/cello.ogg", "hobbies/music/string/violin.ogg",
              "hobbies/music/wind/bassoon.ogg"],
    "cymbal": ["hobbies/music/percussion/cymbal_crash.ogg"],
}

QABCS_DIR = "usr/share/qabcs/abcs/all/noises"
QABCS = {label: [f"{name}.ogg" for name in names] for label, names in {
    "bird": ["albatross", "bird", "booby", "crow", "duck", "eagle-owl", "emu", "flamingo", "goose",
             "guinea_fowl", "heron", "iora", "owl", "pelican", "pheasant", "quail", "quetzal",
             "rooster", "sparrow", "stork", "vulture", "wood_grouse"],
    "livestock": ["calf", "cow", "foal", "horse", "pig", "sheep", "yak"],
    "music": ["accordion", "bagpipes", "cello", "clarinet", "dulzaina", "electric_guitar", "erhu",
              "flute", "gamba", "grand_piano", "guitar", "hand_organ", "hang", "harmonica", "harp",
              "lute", "natural_horn", "ney", "oboe", "organ", "piano", "quena", "rabel", "recorder",
              "rozhok", "saxophone", "squeezebox", "topshuur", "trumpet", "ukulele", "violin",
              "washint", "western_concert_flute", "xun", "xylophone", "yangqin", "yueqin",
              "zhaleyka", "zither", "zurna"],
    "kick": ["bass_drum"],
    "cymbal": ["cymbals"],
    "engine": ["airplane", "excavator", "helicopter", "quadrocopter", "tractor", "train"],
}.items()}

SCRATCH_DIR = "usr/share/scratch/Media/Sounds"
SCRATCH = {
    "bird": ["Animal/Bird.wav", "Animal/Duck.wav", "Animal/Goose.wav", "Animal/Owl.wav",
             "Animal/Rooster.wav"],
    "livestock": ["Animal/Horse.wav"],
    "music": ["Instruments/AfroString.wav", "Instruments/Chord.wav", "Instruments/Dijjeridoo.mp3",
              "Instruments/GuitarStrum.wav", "Instruments/StringAccent.wav",
              "Instruments/StringPluck.wav", "Instruments/Tambura.wav", "Instruments/Trumpet1.wav",
              "Instruments/Trumpet2.wav"],
    "cymbal": ["Percussion/CymbalCrash.wav", "Percussion/RideCymbal.wav"],
    "engine": ["Effects/CarPassing.wav", "Effects/MotorcyclePassing.wav"],
    "water": ["Effects/Bubbles.wav", "Effects/Plunge.wav", "Effects/Ripples.wav",
              "Effects/WaterDrop.mp3", "Effects/WaterRunning.mp3"],
    "footsteps": ["Human/Footsteps-1.wav", "Human/Footsteps-2.mp3"],
}

SONIC_PI_DIR = "usr/share/sonic-pi/samples"
SONIC_PI = {
    "kick": ["bd_808", "bd_ada", "bd_boom", "bd_fat", "bd_gas", "bd_haus", "bd_klub", "bd_mehackit",
             "bd_pure", "bd_sone", "bd_tek", "bd_zome", "bd_zum", "drum_bass_hard",
             "drum_bass_soft", "drum_heavy_kick", "elec_hollow_kick", "elec_soft_kick"],
    "snare": ["sn_dolf", "sn_dub", "sn_generic", "sn_zome", "drum_snare_hard", "drum_snare_soft",
              "elec_snare", "elec_hi_snare", "elec_lo_snare", "elec_mid_snare", "elec_filt_snare"],
    "cymbal": ["drum_cymbal_closed", "drum_cymbal_hard", "drum_cymbal_open", "drum_cymbal_pedal",
               "drum_cymbal_soft", "drum_splash_hard", "drum_splash_soft", "elec_cymbal"],
    "music": ["guit_e_fifths", "guit_e_slide", "guit_em9", "guit_harmonics", "ambi_piano"],
    "bird": ["misc_crow"],
}

MINETEST_DIR = "usr/share/games/minetest/games/minetest_game/mods"
MINETEST_FOOTSTEPS = ("dirt", "glass", "grass", "gravel", "hard", "ice", "metal", "sand", "snow",
                      "wood")
MINETEST_WATER = ("default/sounds/default_water_footstep.*.ogg",
                  "env_sounds/sounds/env_sounds_water.*.ogg")

HEDGEWARS_DIR = "usr/share/games/hedgewars/Data/Sounds"
HEDGEWARS = {
    "water": ["Droplet1.ogg", "Droplet2.ogg", "Droplet3.ogg", "splash.ogg", "planewater.ogg"],
    "footsteps": ["steps.ogg"],
}

SUPERTUX_DIR = "usr/share/games/supertux2/sounds"
SUPERTUX = {"water": ["rain.wav", "splash.wav", "splash.ogg", "waterfall.wav"]}

OPENARENA_PAK = "usr/share/games/openarena/baseoa/pak0.pk3"
OPENARENA = {
    "footsteps": ["sound/player/footsteps/boot", "sound/player/footsteps/clank",
                  "sound/player/footsteps/flesh", "sound/player/footsteps/mech",
                  "sound/player/footsteps/step"],
    "water": ["sound/player/footsteps/splash", "sound/world/waterfall", "sound/player/watr_in",
              "sound/player/watr_out", "sound/player/watr_un"],
}

OPENTTD_CAT = "usr/share/games/openttd/baseset/opensfx/opensfx.cat"
OPENTTD = {  # sound titles as they appear in the catalogue's credit lines
    "engine": ["Steam train station departure", "Steam engine going in tunnel",
               "Propeller plane start", "Early jet take off",
               "Diesel/electric train station departure", "Helicopter",
               "Truck/old bus start, pull away", "Modern bus start", "Old bus start",
               "Mach 1+ Jet take off", "Modern jet take off", "Maglev train station departure",
               "Toyland: Propeller plane take off", "Monorail train station departure"],
    "livestock": ["Sheep", "Cow", "Horse"],
    "bird": ["Tropical: Bird (1)", "Tropical: Bird (2)"],
    "water": ["Toyland: Bubble generated"],
}

KTUBERLING_DIR = "usr/share/ktuberling/sounds"
TUXPAINT_DESC_MIN_FILES = 50    # languages with fewer spoken descriptions are skipped

DRUM_CLASSES = {  # hydrogen instrument name (lower case) -> class; first match wins
    "kick": r"kick|bass ?drum|\bbd\b",
    "snare": r"snare|\bsd\b",
    "cymbal": r"crash|ride|china|splash|cymbal|hi-?hat|\bhh\b|\bhat\b",
}
NOT_A_DRUM_CLASS = r"tom|shake|clap|conga|bongo|cowbell|tambourine|triangle"  # file-name veto
MAX_INSTRUMENTS_PER_KIT = 3

ESPEAK_VOICES = (  # (language, variant): 8 English accents and 6 other languages
    ("en-us", "m3"), ("en-us", "f2"), ("en-gb", "m1"), ("en-gb", "f4"), ("en-gb-scotland", "m7"),
    ("en-gb-x-rp", "klatt2"), ("en-gb-x-gbclan", "m5"), ("en-gb-x-gbcwmd", "f5"),
    ("en-029", "m2"), ("en-us-nyc", "f3"), ("de", "m4"), ("fr", "f1"), ("es", "m6"),
    ("it", "f5"), ("pt-br", "m2"), ("nl", "klatt4"),
)
ESPEAK_PHRASES = {
    "en": ["open the window please", "the weather is lovely today", "where did you put my keys",
           "seven hundred and twelve", "turn left at the station", "good morning everybody",
           "I would like a cup of tea", "the meeting starts at noon"],
    "de": ["guten Morgen zusammen", "wo ist der Bahnhof", "das Wetter ist heute schön"],
    "fr": ["bonjour tout le monde", "ou est la gare", "il fait beau aujourd'hui"],
    "es": ["buenos dias a todos", "donde esta la estacion", "hace buen tiempo hoy"],
    "it": ["buongiorno a tutti", "dove si trova la stazione", "oggi fa bel tempo"],
    "pt": ["bom dia a todos", "onde fica a estacao", "hoje o tempo esta bom"],
    "nl": ["goedemorgen allemaal", "waar is het station", "het weer is mooi vandaag"],
}

CLASSES = ("speech", "bird", "livestock", "music", "kick", "snare", "cymbal", "engine", "water",
           "footsteps")

# ---------------------------------------------------------------------------------------------
# Data types
# ---------------------------------------------------------------------------------------------


@dataclass
class Recording:
    """One source file (or archive member) with its label and provenance."""

    label: str
    source: str                     # split unit: recording, speaker, voice or recordist
    package: str
    original_path: str
    licence: str
    read: Callable[[], tuple[np.ndarray, int]] = field(repr=False)


@dataclass
class Clip:
    recording: Recording
    audio: np.ndarray               # float32, CLIP_SAMPLES, normalised
    original_rate: int
    window_start_s: float
    split: str = ""

    @property
    def label(self) -> str:
        return self.recording.label

    @property
    def source(self) -> str:
        return self.recording.source


@dataclass
class Package:
    name: str
    root: Path
    version: str

    def copyright(self) -> Path:
        return self.root / "usr/share/doc" / self.name / "copyright"


# ---------------------------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------------------------


def require_tools() -> None:
    missing = [tool for tool in ("apt-get", "dpkg", "dpkg-deb", "espeak-ng")
               if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"build_minievents.py needs {', '.join(missing)} on PATH: apt-get and dpkg(-deb) to fetch "
            f"and unpack the Debian packages the set is built from, espeak-ng "
            f"(`apt-get install espeak-ng`) for the synthetic voices.")


def fetch_package(name: str, cache: Path) -> Package:
    """``apt-get download`` the package into ``cache`` (once) and unpack it with ``dpkg -x``."""
    debs_dir = cache / "debs"
    debs_dir.mkdir(parents=True, exist_ok=True)
    debs = sorted(debs_dir.glob(f"{name}_*.deb"))
    if not debs:
        print(f"downloading {name} ...", flush=True)
        result = subprocess.run(["apt-get", "download", name], cwd=debs_dir, capture_output=True,
                                text=True)
        debs = sorted(debs_dir.glob(f"{name}_*.deb"))
        if result.returncode != 0 or not debs:
            raise SystemExit(f"`apt-get download {name}` failed (is Debian main reachable? try "
                             f"`apt-get update`):\n{result.stderr.strip()}")
    deb = debs[-1]
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True,
                             text=True, check=True).stdout.strip()
    root = cache / "unpacked" / name
    if not (root / "usr").exists():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return Package(name, root, version)


def espeak_version() -> str:
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    match = re.search(r"text-to-speech:\s*(\S+)", out)
    return match.group(1) if match else out.strip()


# ---------------------------------------------------------------------------------------------
# Readers and licences
# ---------------------------------------------------------------------------------------------


def file_reader(path: Path) -> Callable[[], tuple[np.ndarray, int]]:
    def read() -> tuple[np.ndarray, int]:
        info = soundfile.info(str(path))
        frames = int(min(info.frames, MAX_SECONDS_READ * info.samplerate))
        data, rate = soundfile.read(str(path), frames=frames, dtype="float64", always_2d=True)
        return data.mean(axis=1), rate
    return read


def bytes_reader(payload: bytes) -> Callable[[], tuple[np.ndarray, int]]:
    def read() -> tuple[np.ndarray, int]:
        data, rate = soundfile.read(io.BytesIO(payload), dtype="float64", always_2d=True)
        data = data[: int(MAX_SECONDS_READ * rate)]
        return data.mean(axis=1), rate
    return read


@dataclass
class Stanza:
    """One ``Files:`` stanza of a machine-readable (DEP-5) Debian copyright file."""

    patterns: list[str]
    licence: str
    holder: str          # first copyright holder, without years and e-mail address


def debian_copyright_stanzas(path: Path) -> list[Stanza]:
    stanzas: list[Stanza] = []
    patterns: list[str] | None = None
    holder, field_name = "", ""
    for line in path.read_text(errors="replace").splitlines():
        if line and not line[0].isspace():
            field_name = line.split(":", 1)[0]
        if line.startswith("Files:"):
            patterns, holder = line.split(":", 1)[1].split(), ""
        elif field_name == "Files" and line.startswith(" ") and patterns is not None:
            patterns.extend(line.split())
        elif line.startswith("Copyright:") and patterns is not None:
            holder = clean_holder(line.split(":", 1)[1])
        elif line.startswith("License:") and patterns is not None:
            stanzas.append(Stanza(patterns, line.split(":", 1)[1].strip(), holder))
            patterns = None
    return stanzas


def clean_holder(text: str) -> str:
    """'2013 EKVelika' -> 'EKVelika'; 'Artemiy Pavlov (Artemio) <a@b>' -> 'Artemiy Pavlov (Artemio)'."""
    text = re.sub(r"<[^>]*>", "", text)
    text = re.sub(r"^(copyright\s*)?(\(c\)\s*)?[\d\s,-]+", "", text.strip(), flags=re.I)
    return text.strip(" ,")


def stanza_for(stanzas: list[Stanza], upstream_path: str) -> Stanza | None:
    """The last stanza whose pattern matches ``upstream_path`` (DEP-5 semantics)."""
    result = None
    for stanza in stanzas:
        if any(fnmatch.fnmatch(upstream_path, p) for p in stanza.patterns):
            result = stanza
    return result


def licence_for(stanzas: list[Stanza], upstream_path: str, default: str) -> str:
    stanza = stanza_for(stanzas, upstream_path)
    return stanza.licence if stanza else default


def recordist(name: str) -> str:
    """Source id for everything recorded by one person (freesound user, kit author): the same
    recordist's drum kit or sample pack often appears in several packages and classes."""
    return "recordist:" + re.sub(r"\s+", " ", name.strip().lower())


def relpath(package: Package, path: Path) -> str:
    return str(path.relative_to(package.root))


# ---------------------------------------------------------------------------------------------
# Candidate recordings, one function per package
# ---------------------------------------------------------------------------------------------


def hydrogen_recordings(pkg: Package) -> list[Recording]:
    """Drum hits labelled by instrument name; source = the kit's author, or for kits assembled
    from freesound.org samples (``12345__user__name.wav``) the freesound user."""
    kits_dir = pkg.root / "usr/share/hydrogen/data/drumkits"
    stanzas = debian_copyright_stanzas(pkg.copyright())
    recordings = []
    for xml in sorted(kits_dir.glob("*/drumkit.xml")):
        kit = xml.parent.name
        stanza = kit_stanza(stanzas, kit)
        taken: dict[str, int] = defaultdict(int)
        for name, filename in kit_instruments(xml):
            label = next((c for c, rx in DRUM_CLASSES.items() if re.search(rx, name)), None)
            path = xml.parent / filename
            if (label is None or taken[label] >= MAX_INSTRUMENTS_PER_KIT or not path.is_file()
                    or re.search(NOT_A_DRUM_CLASS, filename.lower())):
                continue
            taken[label] += 1
            freesound = re.match(r"\d+__(.+?)__", filename)
            author = freesound.group(1) if freesound else (stanza.holder if stanza else kit)
            recordings.append(Recording(label, recordist(author), pkg.name, relpath(pkg, path),
                                        stanza.licence if stanza else "GPL-2+", file_reader(path)))
    return recordings


def kit_instruments(xml: Path) -> list[tuple[str, str]]:
    """(lower-case instrument name, sample file of its last, usually loudest, layer)."""
    tree = ET.parse(xml).getroot()
    match = re.match(r"\{.*\}", tree.tag)
    ns = match.group(0) if match else ""
    result = []
    for instrument in tree.iter(ns + "instrument"):
        name = (instrument.findtext(ns + "name") or "").lower()
        files = [f.text for f in instrument.iter(ns + "filename") if f.text and "empty" not in f.text]
        if files:
            result.append((name, files[-1]))
    return result


def kit_stanza(stanzas: list[Stanza], kit: str) -> Stanza | None:
    """The copyright stanza of a kit directory (``circAfrique v4``: ``drumkits/circAfrique.h2drumkit``)."""
    result = None
    for stanza in stanzas:
        for pattern in stanza.patterns:
            stem = pattern.removeprefix("drumkits/").removesuffix(".h2drumkit")
            if pattern.startswith("drumkits/") and (fnmatch.fnmatch(kit, stem)
                                                    or kit.startswith(stem.replace("?", " "))):
                result = stanza
    return result


def numbered_group(path: str) -> str:
    """Source id part for a file: its stem without a trailing take number (Water1, Trumpet2)."""
    return re.sub(r"[-_.]?\d+$", "", Path(path).stem)


def listed_recordings(pkg: Package, directory: str, table: dict[str, list[str]],
                      licence: Callable[[str], str],
                      group: Callable[[str], str] = numbered_group) -> list[Recording]:
    """Recordings for a ``{label: [path relative to directory]}`` table; numbered takes of one
    sound (``Droplet1..3``) and files with one stem (``splash.wav``/``splash.ogg``) share a source."""
    base = pkg.root / directory
    return [Recording(label, f"{pkg.name}:{group(p)}", pkg.name, relpath(pkg, base / p),
                      licence(f"{directory}/{p}"), file_reader(base / p))
            for label, paths in table.items() for p in paths]


def tuxpaint_recordings(pkg: Package, seed: int) -> list[Recording]:
    recordings = listed_recordings(pkg, TUXPAINT_DIR, TUXPAINT, lambda _: "GPL-2",
                                   group=lambda p: Path(p).stem)  # pig_golden2 is its own stamp
    base = pkg.root / TUXPAINT_DIR
    by_language: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(base.rglob("*_desc*.ogg")):
        match = re.search(r"_desc(?:_([a-zA-Z_]+))?\.ogg$", path.name)
        if match:
            by_language[match.group(1) or "en"].append(path)
    for language, paths in sorted(by_language.items()):
        if len(paths) >= TUXPAINT_DESC_MIN_FILES:
            path = paths[stable_index(f"{seed}:tuxpaint:{language}", len(paths))]
            recordings.append(Recording("speech", f"tuxpaint-stamps-default:narrator/{language}",
                                        pkg.name, relpath(pkg, path), "GPL-2", file_reader(path)))
    return recordings


def qabcs_recordings(pkg: Package) -> list[Recording]:
    return listed_recordings(pkg, QABCS_DIR, QABCS, lambda _: "GPL-3+",
                             group=lambda p: Path(p).stem)


def scratch_recordings(pkg: Package) -> list[Recording]:
    return listed_recordings(pkg, SCRATCH_DIR, SCRATCH, lambda _: "CC-BY-SA-3.0")  # Media/*


def hedgewars_recordings(pkg: Package) -> list[Recording]:
    stanzas = debian_copyright_stanzas(pkg.copyright())
    return listed_recordings(pkg, HEDGEWARS_DIR, HEDGEWARS, lambda path: licence_for(
        stanzas, path.replace("usr/share/games/", "share/"), "GFDL-1.3"))


def supertux_recordings(pkg: Package) -> list[Recording]:
    return listed_recordings(pkg, SUPERTUX_DIR, SUPERTUX, lambda _: "GPL-3+")  # Files: *


def sonic_pi_recordings(pkg: Package) -> list[Recording]:
    """Samples with per-file credits (mostly freesound.org users); source = the credited author."""
    base = pkg.root / SONIC_PI_DIR
    stanzas = debian_copyright_stanzas(pkg.copyright())
    recordings = []
    for label, names in SONIC_PI.items():
        for name in names:
            stanza = stanza_for(stanzas, f"etc/samples/{name}.flac")
            author = stanza.holder if stanza else "Samuel Aaron"
            recordings.append(Recording(label, recordist(author), pkg.name,
                                        relpath(pkg, base / f"{name}.flac"),
                                        stanza.licence if stanza else "MIT",
                                        file_reader(base / f"{name}.flac")))
    return recordings


def minetest_recordings(pkg: Package) -> list[Recording]:
    base = pkg.root / MINETEST_DIR
    stanzas = debian_copyright_stanzas(pkg.copyright())
    recordings = []
    globs = [("footsteps", f"default/sounds/default_{m}_footstep*.ogg") for m in MINETEST_FOOTSTEPS]
    globs += [("water", g) for g in MINETEST_WATER]
    for label, pattern in globs:
        for path in sorted(base.glob(pattern)):
            group = re.sub(r"\.\d+$", "", path.stem)
            upstream = "mtg/mods/" + str(path.relative_to(base))
            recordings.append(Recording(label, f"minetest-data:{group}", pkg.name, relpath(pkg, path),
                                        licence_for(stanzas, upstream, "CC-BY-SA-3.0"),
                                        file_reader(path)))
    return recordings


def openarena_recordings(pkg: Package) -> list[Recording]:
    pak = pkg.root / OPENARENA_PAK
    recordings = []
    with zipfile.ZipFile(pak) as archive:
        members = sorted(archive.namelist())
        for label, prefixes in OPENARENA.items():
            for prefix in prefixes:
                for member in members:
                    if re.fullmatch(re.escape(prefix) + r"\d*\.wav", member):
                        recordings.append(Recording(
                            label, f"openarena-data:{Path(prefix).name}", pkg.name,
                            f"{relpath(pkg, pak)}#{member}", "GPL-2+",
                            bytes_reader(archive.read(member))))
    return recordings


def openttd_recordings(pkg: Package) -> list[Recording]:
    cat = pkg.root / OPENTTD_CAT
    wanted = {title: label for label, titles in OPENTTD.items() for title in titles}
    recordings = []
    for index, credit, payload in openttd_catalogue(cat.read_bytes()):
        title = re.match(r'"([^"]*)"', credit)
        if title is None or title.group(1) not in wanted or not payload:
            continue
        author = re.search(r'(?:Original "[^"]+" by|By) (?:"([^"]+)"|([^".]+))', credit)
        source = (recordist(author.group(1) or author.group(2)) if author
                  else f"{pkg.name}:{title.group(1)}")
        recordings.append(Recording(
            wanted[title.group(1)], source, pkg.name,
            f"{relpath(pkg, cat)}#{index} ({title.group(1)})", openttd_licence(credit),
            bytes_reader(payload)))
    return recordings


def openttd_catalogue(data: bytes) -> Iterable[tuple[int, str, bytes]]:
    """Entries of an OpenTTD ``.cat`` sound catalogue: (index, credit line, WAV bytes)."""
    count = (struct.unpack_from("<I", data, 0)[0] & 0x7FFFFFFF) // 8
    for index in range(count):
        offset, size = struct.unpack_from("<II", data, 8 * index)
        offset &= 0x7FFFFFFF
        name_length = data[offset]
        credit = data[offset + 1: offset + 1 + name_length].rstrip(b"\0").decode("utf-8", "replace")
        yield index, credit, data[offset + 1 + name_length: offset + size]


def openttd_licence(credit: str) -> str:
    if "Creative Commons Zero" in credit:
        return "CC0-1.0"
    if "Attribution-ShareAlike 3.0" in credit:
        return "CC-BY-SA-3.0"
    if "Attribution 3.0" in credit:
        return "CC-BY-3.0"
    return "CC-BY-SA-3.0"  # the collection's licence


def ktuberling_recordings(pkg: Package, seed: int) -> list[Recording]:
    base = pkg.root / KTUBERLING_DIR
    recordings = []
    for language_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        if "@" in language_dir.name:  # Serbian script variants: the same speaker as sr
            continue
        files = sorted(language_dir.glob("*.ogg"))
        if not files:
            continue
        path = files[stable_index(f"{seed}:ktuberling:{language_dir.name}", len(files))]
        recordings.append(Recording("speech", f"ktuberling-data:speaker/{language_dir.name}",
                                    pkg.name, relpath(pkg, path), "GPL-2+", file_reader(path)))
    return recordings


def espeak_recordings(cache: Path, seed: int) -> list[Recording]:
    """Synthesise one phrase per espeak-ng voice (with seeded speed and pitch) into ``cache``."""
    out_dir = cache / "espeak"
    out_dir.mkdir(parents=True, exist_ok=True)
    recordings = []
    for language, variant in ESPEAK_VOICES:
        voice = f"{language}+{variant}"
        rng = np.random.default_rng([seed, stable_int(voice)])
        phrases = ESPEAK_PHRASES[language.split("-")[0]]
        phrase = phrases[int(rng.integers(len(phrases)))]
        speed, pitch = int(rng.integers(130, 190)), int(rng.integers(25, 75))
        path = out_dir / f"{voice}-s{speed}-p{pitch}.wav"
        command = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path),
                   phrase]
        if not path.exists():
            subprocess.run(command, check=True, capture_output=True)
        recordings.append(Recording("speech", f"espeak-ng:{voice}", "espeak-ng",
                                    " ".join(command[:-3]) + f' "{phrase}"',
                                    "none (synthetic espeak-ng output)", file_reader(path)))
    return recordings


def stable_int(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def stable_index(key: str, n: int) -> int:
    return stable_int(key) % n


# ---------------------------------------------------------------------------------------------
# Signal processing
# ---------------------------------------------------------------------------------------------


def to_16k_lowpassed(x: np.ndarray, rate: int) -> np.ndarray:
    if rate != RATE:
        g = np.gcd(int(rate), RATE)
        x = signal.resample_poly(x, RATE // g, int(rate) // g)
    sos = signal.butter(8, LOWPASS_HZ, fs=RATE, output="sos")
    if len(x) > 3 * 2 * len(sos):
        x = signal.sosfiltfilt(sos, x)
    return x


def dbfs(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(x ** 2) + 1e-20)


def loudest_windows(x: np.ndarray, max_windows: int) -> list[tuple[int, np.ndarray]]:
    """Up to ``max_windows`` non-overlapping 1 s windows with the most energy: (start, audio)."""
    if len(x) <= CLIP_SAMPLES:
        before = (CLIP_SAMPLES - len(x)) // 2
        padded = np.pad(x, (before, CLIP_SAMPLES - len(x) - before))
        return [(0, padded)] if dbfs(padded) > SILENCE_DBFS else []
    cumulative = np.concatenate([[0.0], np.cumsum(x ** 2)])
    energy = cumulative[CLIP_SAMPLES:] - cumulative[:-CLIP_SAMPLES]  # energy of each 1 s window
    available = np.ones(len(energy), dtype=bool)
    chosen: list[tuple[int, np.ndarray]] = []
    best_db = None
    while len(chosen) < max_windows and available.any():
        start = int(np.flatnonzero(available)[np.argmax(energy[available])])
        window = x[start:start + CLIP_SAMPLES]
        level = dbfs(window)
        if level < SILENCE_DBFS or (best_db is not None and level < best_db - EXTRA_WINDOW_DB):
            break
        best_db = level if best_db is None else best_db
        chosen.append((start, window))
        available[max(0, start - CLIP_SAMPLES + 1): start + CLIP_SAMPLES] = False
    return chosen


def normalise(x: np.ndarray) -> np.ndarray:
    x = x * (10 ** (TARGET_DBFS / 20) / np.sqrt(np.mean(x ** 2)))
    x = x * min(1.0, PEAK_LIMIT / np.abs(x).max())
    return x.astype(np.float32)


def recording_clips(recording: Recording) -> tuple[list[Clip], str]:
    """The recording's clips, or no clips and the reason."""
    x, rate = recording.read()
    if rate < MIN_ORIGINAL_RATE:
        return [], f"recorded at {rate} Hz (< {MIN_ORIGINAL_RATE})"
    y = to_16k_lowpassed(x, rate)
    max_windows = 1 if recording.label == "speech" else MAX_WINDOWS
    clips = []
    for start, window in loudest_windows(y, max_windows):
        audio = normalise(window)
        # round-trip through 16-bit PCM now, so hashes and checks see what is written
        audio = (np.round(audio * 32767) / 32767).astype(np.float32)
        clips.append(Clip(recording, audio, int(rate), round(start / RATE, 3)))
    return clips, "" if clips else "near silent"


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Maximum normalised cross-correlation over all lags."""
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    return float(np.abs(corr).max() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


# ---------------------------------------------------------------------------------------------
# Selection and split
# ---------------------------------------------------------------------------------------------


def deduplicate(groups: list[list[Clip]]) -> tuple[list[list[Clip]], list[str]]:
    """Drop recordings whose first clip is (nearly) identical to an earlier kept recording's."""
    kept: list[list[Clip]] = []
    log = []
    for clips in groups:
        first = clips[0]
        match = next((k for k in kept
                      if similarity(first.audio, k[0].audio) >= DUPLICATE_SIMILARITY), None)
        if match is None:
            kept.append(clips)
        else:
            log.append(f"{first.label}: {first.recording.original_path} duplicates "
                       f"{match[0].recording.original_path}")
    return kept, log


def round_robin(groups: list[list[Clip]], seed: int, label: str) -> list[Clip]:
    """Take clips over a seeded shuffle of sources, one per source per round, up to the cap."""
    by_source: dict[str, list[Clip]] = defaultdict(list)
    for clips in groups:
        by_source[clips[0].source].extend(clips)
    sources = sorted(by_source)
    order = np.random.default_rng([seed, stable_int(label)]).permutation(len(sources))
    queues = [by_source[sources[i]][:MAX_CLIPS_PER_SOURCE] for i in order]
    taken: list[Clip] = []
    for round_index in range(max(len(q) for q in queues)):
        for queue in queues:
            if round_index < len(queue) and len(taken) < MAX_CLIPS_PER_CLASS:
                taken.append(queue[round_index])
    return taken


def assign_splits(clips: list[Clip], seed: int) -> None:
    """Split by source: ~30% of each class's clips and >= 3 of its sources in test."""
    labels_of: dict[str, set[str]] = defaultdict(set)
    for clip in clips:
        labels_of[clip.source].add(clip.label)
    split: dict[str, str] = {}
    shared = sorted(s for s, labels in labels_of.items() if len(labels) > 1)
    rng = np.random.default_rng([seed, stable_int("shared")])
    for rank, i in enumerate(rng.permutation(len(shared))):
        split[shared[i]] = "test" if rank < max(1, round(TEST_FRACTION * len(shared))) else "train"
    for label in CLASSES:
        class_clips = [c for c in clips if c.label == label]
        counts: dict[str, int] = defaultdict(int)
        for clip in class_clips:
            counts[clip.source] += 1
        test_clips = sum(n for s, n in counts.items() if split.get(s) == "test")
        test_sources = sum(1 for s in counts if split.get(s) == "test")
        free = sorted(s for s in counts if s not in split)
        rng = np.random.default_rng([seed, stable_int(label)])
        for i in rng.permutation(len(free)):
            source = free[i]
            need_more = (test_clips < TEST_FRACTION * len(class_clips)
                         or test_sources < MIN_TEST_SOURCES)
            split[source] = "test" if need_more else "train"
            if need_more:
                test_clips += counts[source]
                test_sources += 1
    for clip in clips:
        clip.split = split[clip.source]


def build_clips(recordings: list[Recording], seed: int) -> tuple[list[Clip], list[str]]:
    all_clips: list[Clip] = []
    log: list[str] = []
    seen_hashes: set[bytes] = set()
    for label in CLASSES:
        groups = []
        for recording in (r for r in recordings if r.label == label):
            clips, reason = recording_clips(recording)
            if not clips:
                log.append(f"{label}: {recording.original_path} is {reason}, skipped")
                continue
            digest = hashlib.sha1(clips[0].audio.tobytes()).digest()
            if digest in seen_hashes:
                log.append(f"{label}: {recording.original_path} is an exact duplicate, skipped")
                continue
            seen_hashes.add(digest)
            groups.append(clips)
        groups, duplicates = deduplicate(groups)
        log.extend(duplicates)
        chosen = round_robin(groups, seed, label)
        all_clips.extend(chosen)
        print(f"{label:10s} {len(groups):3d} distinct recordings from "
              f"{len({g[0].source for g in groups}):3d} sources -> {len(chosen)} clips", flush=True)
    assign_splits(all_clips, seed)
    return all_clips, log


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

METADATA_COLUMNS = ("path", "label", "split", "source", "package", "original_path",
                    "original_sample_rate", "licence", "window_start_s")


def write_dataset(out: Path, clips: list[Clip]) -> None:
    clips_dir = out / "clips"
    if clips_dir.exists():
        shutil.rmtree(clips_dir)
    rows = []
    for clip in sorted(clips, key=lambda c: (CLASSES.index(c.label), c.split, c.source,
                                             c.recording.original_path, c.window_start_s)):
        digest = hashlib.sha1(clip.audio.tobytes()).hexdigest()[:10]
        relative = Path("clips") / clip.label / f"{clip.label}-{digest}.flac"
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(out / relative), clip.audio, RATE, subtype="PCM_16", format="FLAC")
        r = clip.recording
        rows.append([str(relative), r.label, clip.split, r.source, r.package, r.original_path,
                     clip.original_rate, r.licence, clip.window_start_s])
    with open(out / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(METADATA_COLUMNS)
        writer.writerows(rows)


def write_licences(out: Path, packages: dict[str, Package]) -> None:
    licences = out / "LICENSES"
    if licences.exists():
        shutil.rmtree(licences)
    licences.mkdir(parents=True)
    for name, pkg in packages.items():
        shutil.copyfile(pkg.copyright(), licences / f"{name}.copyright")
    opensfx = packages["openttd-opensfx"].root / OPENTTD_CAT
    credits = [c for _, c, payload in openttd_catalogue(opensfx.read_bytes()) if payload]
    (licences / "openttd-opensfx.sound-credits.txt").write_text(
        "Credit lines embedded in opensfx.cat (title, original recording, author, editor, licence),\n"
        "one per sound; the collection as a whole is CC-BY-SA-3.0 (see the copyright file).\n\n"
        + "\n".join(f"#{i}: {c}" for i, c in enumerate(credits)) + "\n")
    for text in ("GPL-2", "GPL-3", "GFDL-1.3", "CC0-1.0"):
        common = Path("/usr/share/common-licenses") / text
        if common.is_file():
            shutil.copyfile(common, licences / text)


def write_versions(out: Path, packages: dict[str, Package], espeak: str) -> None:
    lines = [f"{name} {pkg.version}" for name, pkg in packages.items()] + [f"espeak-ng {espeak}"]
    (out / "VERSIONS.txt").write_text("\n".join(lines) + "\n")


def class_table(clips: list[Clip]) -> str:
    lines = ["| class | train clips (sources) | test clips (sources) | packages |", "|---|---|---|---|"]
    for label in CLASSES:
        cells = []
        for split in ("train", "test"):
            chosen = [c for c in clips if c.label == label and c.split == split]
            cells.append(f"{len(chosen)} ({len({c.source for c in chosen})})")
        packages = sorted({c.recording.package for c in clips if c.label == label})
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {', '.join(packages)} |")
    total = [c for c in clips]
    lines.append(f"| **all** | {sum(c.split == 'train' for c in total)} | "
                 f"{sum(c.split == 'test' for c in total)} | |")
    return "\n".join(lines)


PACKAGE_NOTES = {
    "hydrogen-drumkits": "drum hits of its kits (kick, snare, hi-hats and cymbals), one velocity "
                         "layer per instrument; licence per kit (GPL-2, GPL-2+, GPL-2+ with "
                         "composition exception, CC-BY-3.0, CC-BY-SA-3.0, CC-BY-SA-3.0-us, CC0)",
    "sonic-pi-samples": "drum and instrument samples; per-file credits (freesound.org authors) "
                        "and licences (CC0) in the copyright file",
    "openttd-opensfx": "vehicle, farm-animal, bird and bubble sounds; each sound's credit line "
                       "(original freesound/pdsounds recording, author, editor, licence: CC0, "
                       "CC-BY-3.0 or CC-BY-SA-3.0) is in LICENSES/openttd-opensfx.sound-credits.txt; "
                       "the collection is CC-BY-SA-3.0",
    "tuxpaint-stamps-default": "animal and instrument stamp sounds, spoken stamp "
                               "descriptions (one narrator per language); GPL-2",
    "qabcs-data": "animal, instrument and vehicle noises; GPL-3+",
    "scratch": "Scratch 1.4 media library sounds (Media/*: CC-BY-SA-3.0, (c) MIT)",
    "minetest-data": "footstep and water sounds of minetest_game; CC-BY-SA-3.0 (authors listed "
                     "in the copyright file)",
    "hedgewars-data": "water drops, splashes and footsteps; GFDL-1.3 (Sounds/*), CC-BY-SA-3.0 "
                      "(Droplet*.ogg)",
    "supertux-data": "rain, splash and waterfall sounds; GPL-3+",
    "openarena-data": "footstep and water sounds from pak0.pk3; GPL-2+",
    "ktuberling-data": "spoken words, one speaker per language; GPL-2+",
}


def write_attribution(out: Path, clips: list[Clip], packages: dict[str, Package], espeak: str,
                      seed: int) -> None:
    size_mb = sum(f.stat().st_size for f in (out / "clips").rglob("*.flac")) / 1e6
    n_speech = len({c.source for c in clips if c.label == "speech"})
    n_espeak = len({c.source for c in clips if c.recording.package == "espeak-ng"})
    used = sorted({c.recording.package for c in clips})
    package_lines = [f"- **{name}** {packages[name].version}: {PACKAGE_NOTES[name]}. "
                     f"Copyright file: `LICENSES/{name}.copyright`."
                     for name in packages if name in used]
    text = f"""# minievents: sources, licences, recipe

A small sound-event classification set of **real recordings** (plus espeak-ng voices in the speech
class): {len(CLASSES)} classes, {len(clips)} one-second clips at 16 kHz mono (FLAC, PCM 16-bit),
{size_mb:.1f} MB of audio. Built by `experiments/build_minievents.py --seed {seed}` from Debian `main`
packages (versions in `VERSIONS.txt`). Every clip's source id, package, original path, original
sample rate and licence are in `metadata.csv`.

{class_table(clips)}

Classes: `speech` (real speakers and synthetic voices), `bird` (wild birds and poultry),
`livestock` (cattle, horse, donkey, sheep, goat, pig), `music` (melodic instruments, no drums),
`kick`, `snare`, `cymbal` (hi-hats, crash, ride, splash, china), `engine` (trains, planes,
helicopters, buses, trucks, tractor, excavator, drone), `water` (streams, running water, a
waterfall, rain, bubbles, splashes, drops), `footsteps`.

## Packages and licences

{chr(10).join(package_lines)}
- **espeak-ng** {espeak} (program GPL-3+): synthetic speech, one phrase per voice (accent +
  variant); the generated audio is program output, not a copy of espeak-ng, and carries no
  licence of its own (`licence` column: `none (synthetic espeak-ng output)`).

The clips are excerpts of the files named in `original_path`, resampled, low-passed and
level-normalised; the licences of those files apply to them (several are copyleft: GPL-2/GPL-3,
GFDL-1.3 and CC-BY-SA-3.0 share-alike; the CC-BY ones require attribution, given here and in
`LICENSES/`). Redistribution of this directory must keep this file, `LICENSES/` and
`metadata.csv`. Full texts: `LICENSES/GPL-2`, `LICENSES/GPL-3`, `LICENSES/GFDL-1.3`,
`LICENSES/CC0-1.0`; the CC-BY-3.0 and CC-BY-SA-3.0 texts are inside the copyright files (e.g.
`LICENSES/scratch.copyright`, `LICENSES/hydrogen-drumkits.copyright`). The licences are those the
Debian copyright files state; qabcs-data, tuxpaint-stamps-default, ktuberling-data and supertux-data use
blanket statements (`Files: *`) that give no per-sound credit, so the original recordists of those
sounds are not known from the package.

## How it is made

Files recorded below 22.05 kHz are skipped (their band would end under 7 kHz). Each remaining
recording (22.05 to 96 kHz) is downmixed, resampled to 16 kHz and low-passed at 7 kHz, so every
clip has the same band and no class can be told apart by its sources' bandwidth. It is then cut
into up to 3 non-overlapping 1 s windows with the most energy (1 for speech; later windows only
within 6 dB of the loudest and never below -50 dBFS; shorter sounds are centred and zero-padded),
and each clip is normalised to -20 dBFS RMS with the peak limited to 0.95. Duplicates are removed
within each class (identical audio, or maximum normalised cross-correlation >= 0.8, since games
reuse recordings). Clips are taken round-robin over a seeded shuffle of the sources, at most
{MAX_CLIPS_PER_SOURCE} per source and {MAX_CLIPS_PER_CLASS} per class. The split is by `source` (a
recording, a speaker or voice, the numbered takes of one sound such as `Droplet1..3`, or a
recordist: a drum kit's author or the freesound.org user credited for a sample, since their packs
recur across packages and classes): about 30% of each class's clips and at least 3 of its sources
are in `test`, and no source is in both splits.

Caveats: the peak limit leaves very impulsive clips (footsteps, snares, cymbals) below -20 dBFS
RMS (down to about -32 dBFS), so level is not fully uninformative; one speaker per language is
assumed for ktuberling and for the tuxpaint descriptions (different languages may share a
speaker); {n_espeak} of the {n_speech} speech sources are espeak-ng voices; the drum classes come
from a limited number of kits and sample packs, so a model can partly learn their character;
several packages ship edited versions of the same freesound recordings, and only near-identical
copies are detected; the test split is small (about 10 clips per class), so per-class test
accuracies are coarse.
"""
    (out / "ATTRIBUTION.md").write_text(text)


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def verify(out: Path) -> None:
    """Re-read what was written and fail loudly on any broken promise."""
    with open(out / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    splits_of: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        audio, rate = soundfile.read(str(out / row["path"]), dtype="float32")
        assert rate == RATE and audio.ndim == 1 and len(audio) == CLIP_SAMPLES, row["path"]
        assert np.isfinite(audio).all() and np.abs(audio).max() > 0.01, row["path"]
        splits_of[row["source"]].add(row["split"])
    leaked = [s for s, splits in splits_of.items() if len(splits) > 1]
    assert not leaked, f"sources in both splits: {leaked}"
    for label in CLASSES:
        test_sources = {r["source"] for r in rows if r["label"] == label and r["split"] == "test"}
        assert len(test_sources) >= MIN_TEST_SOURCES, f"{label}: {len(test_sources)} test sources"
    print(f"verified {len(rows)} clips in {out}")


# ---------------------------------------------------------------------------------------------


def collect_recordings(packages: dict[str, Package], cache: Path, seed: int) -> list[Recording]:
    collectors: dict[str, Callable[[Package], list[Recording]]] = {
        "hydrogen-drumkits": hydrogen_recordings,
        "sonic-pi-samples": sonic_pi_recordings,
        "openttd-opensfx": openttd_recordings,
        "tuxpaint-stamps-default": lambda p: tuxpaint_recordings(p, seed),
        "qabcs-data": qabcs_recordings,
        "scratch": scratch_recordings,
        "minetest-data": minetest_recordings,
        "hedgewars-data": hedgewars_recordings,
        "supertux-data": supertux_recordings,
        "openarena-data": openarena_recordings,
        "ktuberling-data": lambda p: ktuberling_recordings(p, seed),
    }
    recordings = [r for name in PACKAGES for r in collectors[name](packages[name])]
    return recordings + espeak_recordings(cache, seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="selection and split seed (default 0)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="download/unpack/synthesis cache (default /tmp/minievents_cache)")
    args = parser.parse_args(argv)
    require_tools()
    packages = {name: fetch_package(name, args.cache) for name in PACKAGES}
    espeak = espeak_version()
    recordings = collect_recordings(packages, args.cache, args.seed)
    clips, log = build_clips(recordings, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_dataset(args.out, clips)
    write_licences(args.out, packages)
    write_versions(args.out, packages, espeak)
    write_attribution(args.out, clips, packages, espeak, args.seed)
    (args.cache / "build_log.txt").write_text("\n".join(log) + "\n")
    print(f"{len(log)} recordings dropped (low rate, near silent or duplicate): see "
          f"{args.cache / 'build_log.txt'}")
    verify(args.out)


if __name__ == "__main__":
    sys.exit(main())
