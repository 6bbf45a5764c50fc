"""Rebuild the bundled ``minievents`` dataset from Debian packages (real recordings only).

    python experiments/build_minievents.py [--seed 0] [--out robustaudio/data/bundled/minievents]

Recipe (deterministic for a given seed and package versions):

- ``hydrogen-drumkits``: drum hits from 14 kits, labelled by the instrument names in each kit's
  ``drumkit.xml`` -> ``kick``, ``snare``, ``hihat``, ``cymbal`` (crash, ride, china, splash), ``tom``.
  Per kit and class at most 4 instruments, one velocity layer each (the loudest-named, i.e. the
  last listed). Source = kit.
- ``tuxpaint-stamps-default``: one sound per animal stamp -> ``bird`` (18 recordings), ``mammal``
  (40 recordings); the spoken stamp descriptions (``*_desc_<lang>.ogg``, one narrator per
  language) -> ``speech``, 3 descriptions per language. Source = recording, or language for speech.
- Each file: downmix, resample to 16 kHz, low-pass at 7 kHz (so no class is told apart by its
  source's bandwidth), cut the 1.0 s window with the most energy (zero-padded at the end when
  shorter), RMS-normalise to -20 dBFS with the peak limited to 0.95, FLAC PCM_16.
- Exact duplicate audio (same content hash) is kept once. Split by source: 30% of each class's
  sources go to ``test``, so no recording, kit or narrator is in both splits.

Needs ``apt-get`` (for ``apt-get download``) and ``dpkg``; no root is needed for unpacking.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
from scipy import signal

PACKAGES = ("hydrogen-drumkits", "tuxpaint-stamps-default")
RATE = 16000
SECONDS = 1.0
TEST_FRACTION = 0.3
DRUM_CLASSES = {  # first match wins, on the lower-cased instrument name
    "kick": r"kick|bass ?drum",
    "snare": r"snare",
    "cymbal": r"crash|ride|china|splash|cymbal",
    "hihat": r"hi-?hat|\bhh\b|\bhat\b",
    "tom": r"\btom",
}
MAX_INSTRUMENTS_PER_KIT = 4
SPEECH_PER_LANGUAGE = 3
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "robustaudio" / "data" / "bundled" / "minievents"


@dataclass
class Source:
    label: str
    source: str          # recording / kit / narrator id used for the split
    path: Path
    package: str
    licence: str
    original_path: str


def fetch(package: str, cache: Path) -> tuple[Path, str]:
    """Download and unpack a Debian package into ``cache``; returns (root, version)."""
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        if shutil.which("apt-get") is None:
            raise SystemExit("apt-get is needed to download the Debian packages this set is built from.")
        subprocess.run(["apt-get", "download", package], cwd=cache, check=True)
        debs = sorted(cache.glob(f"{package}_*.deb"))
    root = cache / package
    if not root.exists():
        subprocess.run(["dpkg", "-x", str(debs[-1]), str(root)], check=True)
    version = debs[-1].name.split("_")[1]
    return root, version


def drum_sources(root: Path) -> list[Source]:
    kits = root / "usr/share/hydrogen/data/drumkits"
    licences = kit_licences(root / "usr/share/doc/hydrogen-drumkits/copyright")
    sources = []
    for xml in sorted(kits.glob("*/drumkit.xml")):
        tree = ET.parse(xml).getroot()
        ns = re.match(r"\{.*\}", tree.tag)
        ns = ns.group(0) if ns else ""
        kit = xml.parent.name
        taken: dict[str, int] = {}
        for instrument in tree.iter(ns + "instrument"):
            name = (instrument.findtext(ns + "name") or "").lower()
            files = [f.text for f in instrument.iter(ns + "filename") if f.text and "empty" not in f.text]
            label = next((c for c, pattern in DRUM_CLASSES.items() if re.search(pattern, name)), None)
            if label is None or not files or taken.get(label, 0) >= MAX_INSTRUMENTS_PER_KIT:
                continue
            taken[label] = taken.get(label, 0) + 1
            path = xml.parent / files[-1]
            sources.append(Source(label, f"kit:{kit}", path, "hydrogen-drumkits",
                                  licences.get(kit, "GPL-2+"), str(path.relative_to(root))))
    return sources


def kit_licences(copyright_file: Path) -> dict[str, str]:
    """Kit name -> licence, from the machine-readable Debian copyright file."""
    result, files = {}, None
    for line in copyright_file.read_text(errors="replace").splitlines():
        if line.startswith("Files:"):
            files = line.split(":", 1)[1].strip()
        elif line.startswith("License:") and files and files.startswith("drumkits/"):
            kit = files.removeprefix("drumkits/").removesuffix(".h2drumkit")
            result[kit] = line.split(":", 1)[1].strip()
    return result


def tuxpaint_sources(root: Path) -> list[Source]:
    stamps = root / "usr/share/tuxpaint/stamps"
    sources = []
    for group, label in (("animals/birds", "bird"), ("animals/mammals", "mammal")):
        for path in sorted((stamps / group).rglob("*.ogg")):
            if "_desc" not in path.name:
                sources.append(Source(label, f"stamp:{path.stem}", path, "tuxpaint-stamps-default", "GPL-2",
                                      str(path.relative_to(root))))
    by_language: dict[str, list[Path]] = {}
    for path in sorted((stamps / "animals").rglob("*_desc*.ogg")):
        match = re.search(r"_desc(?:_([a-z]+))?\.ogg$", path.name)
        if match:
            by_language.setdefault(match.group(1) or "en", []).append(path)
    for language, paths in sorted(by_language.items()):
        if len(paths) < SPEECH_PER_LANGUAGE:
            continue
        picks = np.random.default_rng(len(language)).choice(len(paths), SPEECH_PER_LANGUAGE, replace=False)
        for i in sorted(picks):
            sources.append(Source("speech", f"narrator:{language}", paths[i], "tuxpaint-stamps-default",
                                  "GPL-2", str(paths[i].relative_to(root))))
    return sources


def prepare(path: Path) -> tuple[np.ndarray, int]:
    """Decode, downmix, resample to 16 kHz, low-pass at 7 kHz, cut the loudest 1 s, normalise."""
    data, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    x = data.mean(axis=1)
    if rate != RATE:
        g = np.gcd(rate, RATE)
        x = signal.resample_poly(x, RATE // g, rate // g)
    x = signal.sosfiltfilt(signal.butter(8, 7000, fs=RATE, output="sos"), x)
    n = int(RATE * SECONDS)
    if len(x) > n:
        energy = np.convolve(x ** 2, np.ones(n), mode="valid")
        start = int(np.argmax(energy))
        x = x[start:start + n]
    x = np.pad(x, (0, n - len(x)))
    rms = np.sqrt(np.mean(x ** 2))
    if rms < 1e-4:
        return np.array([]), rate
    x = x * (10 ** (-20 / 20) / rms)
    x = x * min(1.0, 0.95 / np.abs(x).max())
    return x.astype(np.float32), rate


def split_sources(sources: list[Source], seed: int) -> dict[str, str]:
    """Source id -> 'train' | 'test', 30% of each class's sources in test (at least 2)."""
    split = {}
    for label in sorted({s.label for s in sources}):
        ids = sorted({s.source for s in sources if s.label == label})
        rng = np.random.default_rng([seed, int(hashlib.md5(label.encode()).hexdigest()[:8], 16)])
        order = rng.permutation(len(ids))
        n_test = max(2, int(round(TEST_FRACTION * len(ids))))
        for rank, i in enumerate(order):
            split[(label, ids[i])] = "test" if rank < n_test else "train"
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/minievents_debs"))
    args = parser.parse_args()
    roots, versions = {}, {}
    for package in PACKAGES:
        roots[package], versions[package] = fetch(package, args.cache)
    sources = drum_sources(roots["hydrogen-drumkits"]) + tuxpaint_sources(roots["tuxpaint-stamps-default"])
    clips_dir = args.out / "clips"
    if clips_dir.exists():
        shutil.rmtree(clips_dir)
    seen, rows = set(), []
    for s in sources:
        audio, rate = prepare(s.path)
        if audio.size == 0:
            continue
        digest = hashlib.sha1(audio.tobytes()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        rows.append((s, audio, rate, digest[:10]))
    split = split_sources([r[0] for r in rows], args.seed)
    lines = ["path,label,split,source,package,original_path,original_sample_rate,licence"]
    for s, audio, rate, digest in rows:
        relative = Path("clips") / s.label / f"{s.label}-{digest}.flac"
        (args.out / relative).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(args.out / relative, audio, RATE, subtype="PCM_16")
        fields = [str(relative), s.label, split[(s.label, s.source)], s.source, s.package, s.original_path,
                  str(rate), s.licence]
        lines.append(",".join('"' + f.replace('"', '""') + '"' if "," in f else f for f in fields))
    (args.out / "metadata.csv").write_text("\n".join(lines) + "\n")
    (args.out / "VERSIONS.txt").write_text("".join(f"{p} {v}\n" for p, v in versions.items()))
    print(f"{len(rows)} clips from {len({r[0].source for r in rows})} sources -> {args.out}")


if __name__ == "__main__":
    main()
