"""Rebuild the bundled ``noises`` set: a few seconds each of real recorded background noise.

    python experiments/build_noises.py [--out robustaudio/data/bundled/noises]
                                       [--cache /tmp/noises_cache]
                                       [--minievents robustaudio/data/bundled/minievents]

Used by ``robustaudio.metrics.corruptions.background_noise`` (mixed into clips at a given SNR).

Sources. Debian ``main`` packages fetched with ``apt-get download`` and unpacked with ``dpkg -x``
(no root, nothing installed), reusing ``build_minievents.fetch_package``. Two games whose
copyright files (DEP-5) credit each sound to its recordist and licence:

- supertuxkart-data: rain, restaurant babble, a cheering crowd, a car engine
- redeclipse-data:   wind, distant traffic, a low hum

None of these packages is used by ``minievents``, and ``verify`` checks more than the package
names: no noise recordist is a ``minievents`` source (recordists recur across packages) and no
1 s window of a noise correlates with any ``minievents`` clip (games reuse recordings).

Recipe (deterministic for given package versions):

1. Decode, downmix, resample to 16 kHz and low-pass at 7 kHz (``build_minievents.to_16k_lowpassed``):
   the band of ``minievents``, so the noise adds no energy where the clips have none.
2. Keep the most stationary ``WINDOW_SECONDS`` window (the whole file when shorter): the window
   whose 100 ms frame levels vary least (standard deviation in dB), searched in 0.1 s steps.
   A background noise should be a texture, not an event.
3. Normalise to -20 dBFS RMS, peak at most 0.95 (``build_minievents.normalise``; the level is
   irrelevant to the corruption, which rescales the noise to the asked SNR).
4. Write FLAC (PCM 16-bit) to ``clips/<name>/<name>.flac`` (the layout ``setup.cfg``'s package
   data already ships), ``metadata.csv``, ``ATTRIBUTION.md``, ``VERSIONS.txt`` and the packages'
   copyright files (which hold the CC-BY-3.0 and CC-BY-SA-3.0 texts) in ``LICENSES/``.

Needs ``apt-get`` and ``dpkg`` (Debian/Ubuntu with Debian ``main`` reachable) and numpy, scipy,
soundfile. No torch.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_minievents import (
    RATE,
    Package,
    dbfs,
    debian_copyright_stanzas,
    fetch_package,
    normalise,
    recordist,
    stanza_for,
    to_16k_lowpassed,
)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "robustaudio" / "data" / "bundled" / "noises"
DEFAULT_MINIEVENTS = DEFAULT_OUT.parent / "minievents"
DEFAULT_CACHE = Path("/tmp/noises_cache")

WINDOW_SECONDS = 5.0
FRAME_SECONDS = 0.1          # level frames for the stationarity measure
STEP_SECONDS = 0.1           # window search step
SILENCE_DBFS = -50.0         # windows quieter than this are never chosen
MAX_TOTAL_BYTES = 2_000_000  # the whole directory, licences included
MAX_SIMILARITY = 0.5         # windowed normalised cross-correlation with any minievents clip

GAME_DIRS = {  # where each package installs its data: DEP-5 paths are relative to these
    "supertuxkart-data": "usr/share/games/supertuxkart",
    "redeclipse-data": "usr/share/games/redeclipse",
}


@dataclass(frozen=True)
class NoiseSource:
    name: str           # file stem and the ``noise=`` argument of background_noise
    category: str
    package: str
    upstream_path: str  # relative to GAME_DIRS[package], as in the DEP-5 copyright file
    recordists: tuple[str, ...]  # names in the credit, checked against minievents' sources
    description: str


NOISES = (
    NoiseSource("rain", "rain", "supertuxkart-data", "data/sfx/rain.ogg",
                ("Mike Koenig", "Dawid Gan", "deveee"), "steady rain (soundbible.com recording)"),
    NoiseSource("wind", "wind", "redeclipse-data", "data/sounds/ambience/wind.ogg",
                ("Batuhan Bozkurt",), "wind (freesound.org #17735)"),
    NoiseSource("babble", "crowd", "supertuxkart-data", "data/sfx/lenautile_restaurant.ogg",
                ("Alcappuccino",), "restaurant babble: many voices, cutlery (freesound.org #263528)"),
    NoiseSource("cheering", "crowd", "supertuxkart-data", "data/sfx/goal_scored.ogg",
                ("jordiroquer",), "a cheering crowd (freesound.org #148153)"),
    NoiseSource("traffic", "traffic", "redeclipse-data", "data/sounds/ambience/distant_cars.ogg",
                ("fresco", "WIM"), "distant road traffic (freesound.org #34522, #34523, #26173)"),
    NoiseSource("engine", "engine", "supertuxkart-data", "data/sfx/engine_small.ogg",
                ("qubodup", "Ivan Gabovitch"), "an idling car engine loop (opengameart.org)"),
    NoiseSource("hum", "hum", "redeclipse-data", "data/sounds/ambience/hum.ogg",
                ("Therac-25",), "a low electrical/machine hum (freesound.org #25322)"),
)

METADATA_COLUMNS = ("path", "name", "category", "package", "original_path", "original_sample_rate",
                    "window_start_s", "duration_s", "licence", "credit", "description")


# ---------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------


def dep5_paragraph(copyright_file: Path, upstream_path: str) -> str:
    """The raw text of the last ``Files:`` paragraph matching ``upstream_path`` (DEP-5 rule)."""
    found = ""
    for paragraph in re.split(r"\n\s*\n", copyright_file.read_text(errors="replace")):
        files = re.match(r"Files:(.*?)(?=\n\S|\Z)", paragraph, flags=re.DOTALL)
        if files and any(fnmatch.fnmatch(upstream_path, p) for p in files.group(1).split()):
            found = paragraph.strip()
    if not found:
        raise SystemExit(f"{copyright_file}: no Files paragraph covers {upstream_path}")
    return found


def credit_line(paragraph: str) -> str:
    """'Copyright: ... Comment: ...' of a DEP-5 paragraph folded onto one line."""
    fields = re.findall(r"^(Copyright|Comment):(.*(?:\n[ \t].*)*)", paragraph, flags=re.MULTILINE)
    return " ".join(f"{name}: {' '.join(value.split())}" for name, value in fields)


# ---------------------------------------------------------------------------------------------
# Signal
# ---------------------------------------------------------------------------------------------


def most_stationary_window(x: np.ndarray, seconds: float) -> tuple[int, np.ndarray]:
    """(start, window) of ``seconds`` whose 100 ms frame levels vary least; all of ``x`` if shorter."""
    length, frame = int(seconds * RATE), int(FRAME_SECONDS * RATE)
    if len(x) <= length:
        return 0, x
    levels = np.array([dbfs(x[i:i + frame]) for i in range(0, len(x) - frame + 1, frame)])
    per_window = length // frame
    best, best_cost = 0, np.inf
    for start in range(0, len(x) - length + 1, int(STEP_SECONDS * RATE)):
        first = start // frame
        window_levels = levels[first:first + per_window]
        if dbfs(x[start:start + length]) < SILENCE_DBFS:
            continue
        cost = float(np.std(window_levels))
        if cost < best_cost:
            best, best_cost = start, cost
    return best, x[best:best + length]


def windowed_similarity(short: np.ndarray, long: np.ndarray) -> float:
    """Max over lags of the normalised cross-correlation of ``short`` with same-length windows of ``long``.

    Unlike a whole-signal normalisation this is 1.0 when ``short`` is an exact excerpt of ``long``.
    """
    if len(long) < len(short):
        short, long = long, short
    n = len(short)
    size = 1 << int(np.ceil(np.log2(len(long) + n)))
    corr = np.fft.irfft(np.fft.rfft(long, size) * np.conj(np.fft.rfft(short, size)), size)
    corr = corr[: len(long) - n + 1]                    # lags where short lies inside long
    energy = np.concatenate([[0.0], np.cumsum(long ** 2)])
    window_norm = np.sqrt(np.maximum(energy[n:] - energy[:-n], 1e-20))
    return float(np.max(np.abs(corr) / (window_norm * np.linalg.norm(short) + 1e-12)))


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


@dataclass
class Built:
    source: NoiseSource
    package: Package
    audio: np.ndarray
    original_rate: int
    window_start_s: float
    licence: str
    credit: str

    @property
    def path(self) -> str:
        return f"clips/{self.source.name}/{self.source.name}.flac"

    @property
    def original_path(self) -> str:
        return f"{GAME_DIRS[self.source.package]}/{self.source.upstream_path}"


def build_one(source: NoiseSource, package: Package) -> Built:
    original = package.root / GAME_DIRS[source.package] / source.upstream_path
    data, rate = soundfile.read(str(original), dtype="float64", always_2d=True)
    start, window = most_stationary_window(to_16k_lowpassed(data.mean(axis=1), rate), WINDOW_SECONDS)
    audio = normalise(window)
    audio = (np.round(audio * 32767) / 32767).astype(np.float32)  # what the FLAC will hold
    stanza = stanza_for(debian_copyright_stanzas(package.copyright()), source.upstream_path)
    if stanza is None:
        raise SystemExit(f"{source.package}: no licence stanza for {source.upstream_path}")
    credit = credit_line(dep5_paragraph(package.copyright(), source.upstream_path))
    return Built(source, package, audio, int(rate), round(start / RATE, 2), stanza.licence, credit)


def write_set(out: Path, built: list[Built]) -> None:
    if (out / "clips").exists():
        shutil.rmtree(out / "clips")
    for item in built:
        path = out / item.path
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(path), item.audio, RATE, subtype="PCM_16")
    with open(out / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(METADATA_COLUMNS)
        for item in built:
            writer.writerow([item.path, item.source.name, item.source.category, item.source.package,
                             item.original_path, item.original_rate, item.window_start_s,
                             round(len(item.audio) / RATE, 2), item.licence, item.credit,
                             item.source.description])
    licences = out / "LICENSES"
    if licences.exists():
        shutil.rmtree(licences)
    licences.mkdir(parents=True)
    packages = {item.package.name: item.package for item in built}
    for name, package in packages.items():
        shutil.copyfile(package.copyright(), licences / f"{name}.copyright")
    shutil.copyfile("/usr/share/common-licenses/CC0-1.0", licences / "CC0-1.0")
    (out / "VERSIONS.txt").write_text("".join(f"{n} {p.version}\n" for n, p in packages.items()))
    write_attribution(out, built, packages)


def write_attribution(out: Path, built: list[Built], packages: dict[str, Package]) -> None:
    audio_kb = sum((out / b.path).stat().st_size for b in built) / 1e3
    rows = "\n".join(
        f"| `{b.source.name}` | {b.source.description} | {b.package.name} | `{b.original_path}` | "
        f"{b.licence} | {len(b.audio) / RATE:.2f} s from {b.window_start_s:g} s, "
        f"{(out / b.path).stat().st_size / 1e3:.0f} kB |" for b in built)
    credits = "\n".join(f"- `{b.source.name}`: {b.credit}" for b in built)
    versions = ", ".join(f"{n} {p.version}" for n, p in packages.items())
    text = f"""# noises: real background recordings for `background_noise`

{len(built)} recordings of real background noise, 16 kHz mono FLAC (PCM 16-bit), {audio_kb:.0f} kB of
audio. Built by `experiments/build_noises.py` from Debian `main` packages ({versions}); each
file's package, original path, licence and credit are also in `metadata.csv`.

| name | what | package | original path | licence | excerpt, size |
|---|---|---|---|---|---|
{rows}

## Credits (from the packages' DEP-5 copyright files)

{credits}

## Licences

The files are excerpts of the recordings above, resampled to 16 kHz, low-passed at 7 kHz and
level-normalised; the licence of each original applies to its excerpt. CC-BY-3.0 and
CC-BY-SA-3.0 require the credit above to be kept; CC-BY-SA-3.0 is share-alike (a modified
version must carry the same licence). `engine` is offered as "CC-BY-SA-3.0 or GPL-3 or GPL-2" and
is used here under CC-BY-SA-3.0. Full texts: CC-BY-3.0 and CC-BY-SA-3.0 are inside
`LICENSES/supertuxkart-data.copyright` and `LICENSES/redeclipse-data.copyright`, CC0 in
`LICENSES/CC0-1.0`. Redistribution of this directory must keep this file, `LICENSES/` and
`metadata.csv`.

## How it is made, and what was checked

Each recording is downmixed, resampled to 16 kHz and low-passed at 7 kHz (the band of
`minievents`), cut to its most stationary {WINDOW_SECONDS:g} s (the window whose 100 ms levels vary
least; shorter files are kept whole) and normalised to -20 dBFS RMS with the peak limited to 0.95.

None of these sources is used by `minievents`: different packages, no credited recordist that
is a `minievents` source, and no 1 s window of any noise with a normalised cross-correlation of
{MAX_SIMILARITY} or more with any `minievents` clip (games reuse recordings across packages).

Caveats: `rain` resembles the `minievents` class `water` (which includes rain) and `engine` /
`traffic` the class `engine`, so at low SNR these noises can pull predictions towards those
classes; `babble` contains unintelligible speech (class `speech`). Whether `wind` and `hum` are
field recordings or synthesised is not stated by the packages; their freesound.org pages are
cited by number.
"""
    (out / "ATTRIBUTION.md").write_text(text)


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def verify(out: Path, minievents: Path) -> None:
    """Re-read what was written and fail loudly on any broken promise."""
    with open(out / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(NOISES) and len({r["name"] for r in rows}) == len(rows)
    noises = {}
    for row in rows:
        audio, rate = soundfile.read(str(out / row["path"]), dtype="float64")
        assert rate == RATE and audio.ndim == 1 and len(audio) >= RATE, row["path"]
        assert np.isfinite(audio).all() and dbfs(audio) > SILENCE_DBFS, row["path"]
        noises[row["name"]] = audio
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    assert total < MAX_TOTAL_BYTES, f"{out} holds {total} bytes (limit {MAX_TOTAL_BYTES})"

    with open(minievents / "metadata.csv", newline="") as handle:
        events = list(csv.DictReader(handle))
    used = {(r["package"], r["original_path"]) for r in events}
    overlap = [r["name"] for r in rows if (r["package"], r["original_path"]) in used]
    assert not overlap, f"noises also used in minievents: {overlap}"
    event_packages = {r["package"] for r in events}
    assert not event_packages & {r["package"] for r in rows}, "a noise package is used by minievents"
    event_sources = {r["source"] for r in events}
    shared = [(s.name, who) for s in NOISES for who in s.recordists if recordist(who) in event_sources]
    assert not shared, f"noise recordists that are minievents sources: {shared}"

    worst = {name: 0.0 for name in noises}
    for row in events:
        clip, _ = soundfile.read(str(minievents / row["path"]), dtype="float64")
        for name, noise in noises.items():
            worst[name] = max(worst[name], windowed_similarity(clip, noise))
    too_close = {n: round(s, 3) for n, s in worst.items() if s >= MAX_SIMILARITY}
    assert not too_close, f"noises that correlate with a minievents clip: {too_close}"
    print(f"verified {len(rows)} noises in {out} ({total / 1e6:.2f} MB with licences); highest "
          f"similarity to a minievents clip: " + ", ".join(f"{n} {s:.2f}" for n, s in worst.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="download/unpack cache (default /tmp/noises_cache)")
    parser.add_argument("--minievents", type=Path, default=DEFAULT_MINIEVENTS,
                        help="the minievents set the noises must not overlap")
    args = parser.parse_args(argv)
    missing = [tool for tool in ("apt-get", "dpkg", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"build_noises.py needs {', '.join(missing)} on PATH to fetch and unpack "
                         f"the Debian packages the noises come from.")
    packages = {name: fetch_package(name, args.cache) for name in GAME_DIRS}
    built = [build_one(source, packages[source.package]) for source in NOISES]
    args.out.mkdir(parents=True, exist_ok=True)
    write_set(args.out, built)
    verify(args.out, args.minievents)


if __name__ == "__main__":
    sys.exit(main())
