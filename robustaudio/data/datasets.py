"""Labelled audio datasets and batching.

Two layouts are read:

- a directory with ``metadata.csv`` holding at least ``path`` (relative to the directory) and
  ``label`` (several labels separated by ``;`` for multi-label data), optionally ``split``;
- a directory of class folders, ``DIR/<label>/<file>.wav|flac|ogg``.

Audio-visual data add a ``video`` column to ``metadata.csv`` (a frame strip per clip, see
:mod:`robustaudio.data.av`) and may give an ``id`` column (clips sharing an audio file need
distinct ids); batches then carry ``video`` ``[B, F, 3, H, W]`` for models that use it.

The bundled sets live in ``robustaudio/data/bundled/``: ``minievents`` (audio, see its
ATTRIBUTION.md) and ``avmini`` (audio-visual, see its README.md); ``bundled_path(name)`` finds them.
"""

from __future__ import annotations

import difflib
import hashlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from .audio import AudioError, LoadsClips, load_audio
from .av import VideoError, load_frames

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
BUNDLED_ROOT = Path(__file__).parent / "bundled"
DEFAULT_DATASET = "minievents"
BUILD_SCRIPTS = {"minievents": "experiments/build_minievents.py", "avmini": "experiments/build_avmini.py"}


LIMIT_SEED = 0  # the seed of the --limit sample: fixed, so every run with the same --limit sees the same clips


def _draw(seed: int, key: str) -> bytes:
    """A stable pseudo-random sort key (no process salt, no library version in it)."""
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()


def limited(clips: list[Clip], limit: int | None, seed: int = LIMIT_SEED) -> list[Clip]:
    """``limit`` clips drawn from ``clips``, stratified over labels, in dataset order.

    Each label (the clip's label set, for multi-label data) gets its share of ``limit`` in proportion
    to its clips (largest remainders, ties by a seeded draw); within a label the clips are taken in a
    seeded random order. The draw hashes ``seed`` with the clip id, so it depends on nothing else: a
    clip's place does not move when others are added, and the same ``limit`` picks the same clips on
    every machine. ``None``, 0 or a limit of at least ``len(clips)``: every clip.
    """
    if not limit or limit >= len(clips):
        return list(clips)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, clip in enumerate(clips):
        groups[";".join(sorted(clip.labels))].append(i)
    shares = {key: limit * len(members) / len(clips) for key, members in groups.items()}
    counts = {key: int(share) for key, share in shares.items()}
    by_remainder = sorted(groups, key=lambda key: (-(shares[key] - counts[key]), _draw(seed, "label:" + key)))
    for key in by_remainder[:limit - sum(counts.values())]:
        counts[key] += 1
    chosen = []
    for key, members in groups.items():
        chosen += sorted(members, key=lambda i: _draw(seed, clips[i].id))[:counts[key]]
    return [clips[i] for i in sorted(chosen)]


class DatasetError(ValueError):
    """A dataset that cannot be read; the message says why and what to do."""


def bundled_path(name: str = DEFAULT_DATASET) -> Path:
    path = BUNDLED_ROOT / name
    if not (path / "metadata.csv").is_file():
        build = BUILD_SCRIPTS.get(name)
        fix = f"rebuild it with `python {build}`" if build else f"bundled sets: {', '.join(BUILD_SCRIPTS)}"
        raise DatasetError(f"The bundled dataset {name!r} is missing at {path}; {fix}, or pass --data PATH.")
    return path


HELD_OUT_SPLITS = ("test", "eval", "evaluation", "val", "valid", "validation", "dev", "testing")


def suggest_split(asked: str, found: list[str]) -> str:
    """The split to propose instead of ``asked``: a close spelling, else a held-out one, else the first."""
    close = difflib.get_close_matches(asked, found, n=1, cutoff=0.6)
    held_out = [name for name in found if name.lower() in HELD_OUT_SPLITS]
    return (close or held_out or found)[0]


@dataclass(frozen=True)
class Clip:
    id: str            # stable identifier: the path relative to the dataset root
    path: Path
    labels: tuple[str, ...]
    split: str | None = None
    video: Path | None = None  # frame strip of an audio-visual clip


@dataclass
class Batch:
    """``audio`` ``[B, T]`` float32 in [-1, 1]; ``labels`` ``[B]`` (single-label) or ``[B, K]`` 0/1;
    ``video`` ``[B, F, 3, H, W]`` in [0, 1] for audio-visual data and a model that uses video, else None."""

    ids: list[str]
    audio: torch.Tensor
    labels: torch.Tensor
    label_names: list[str]
    index: int                           # batch number in the dataset order
    # {"clip_id", "kind": "skipped" | "note", "message"}: unusable clips, and changes such as resampling
    warnings: list[dict] = field(default_factory=list)
    video: torch.Tensor | None = None


class AudioDataset:
    """A list of labelled clips read lazily; ``batches(model, ...)`` yields model-ready batches."""

    def __init__(self, root: str | Path, clips: list[Clip]):
        self.root = Path(root)
        self.clips = clips

    @classmethod
    def from_path(cls, root: str | Path | None = None, split: str | None = None) -> AudioDataset:
        """Read a dataset directory (``None``: the bundled default; the name of a bundled set, e.g.
        ``"avmini"``, that set); ``split`` filters the rows."""
        if root is None or (isinstance(root, str) and root in BUILD_SCRIPTS and not Path(root).exists()):
            root = bundled_path(root or DEFAULT_DATASET)
        root = Path(root)
        if not root.exists():
            raise DatasetError(f"Data path {str(root)!r} does not exist. Pass --data with a directory "
                               f"holding metadata.csv or one folder per label, or omit --data for "
                               f"the bundled set.")
        if not root.is_dir():
            raise DatasetError(f"Data path {str(root)!r} is a file; pass its directory (with "
                               f"metadata.csv or one folder per label).")
        csv = root / "metadata.csv"
        clips = cls._read_csv(root, csv) if csv.is_file() else cls._read_folders(root)
        if split is not None and any(c.split is not None for c in clips):
            found = sorted({c.split for c in clips if c.split is not None})
            if split not in found:
                raise DatasetError(f"Data split {split!r} not in {csv}; it has: {', '.join(found)}; use --split "
                                   f"{suggest_split(split, found)}.")
            clips = [c for c in clips if c.split == split]
        if not clips:
            where = f" in split {split!r}" if split and csv.is_file() else ""  # label folders have no splits
            raise DatasetError(f"No audio clips found{where} under {root}. Expected metadata.csv "
                               f"(columns path,label[,split]) or folders DIR/<label>/*.wav|flac|ogg.")
        return cls(root, clips)

    @staticmethod
    def _read_csv(root: Path, csv: Path) -> list[Clip]:
        table = pd.read_csv(csv, dtype=str, keep_default_na=False)
        missing = {"path", "label"} - set(table.columns)
        if missing:
            raise DatasetError(f"{csv} lacks column(s) {sorted(missing)}; it needs path,label[,split].")
        clips = [Clip(id=getattr(row, "id", None) or row.path, path=root / row.path,
                      labels=tuple(name.strip() for name in row.label.split(";") if name.strip()),
                      split=getattr(row, "split", None) or None,
                      video=root / row.video if getattr(row, "video", None) else None)
                 for row in table.itertuples(index=False)]
        unlabelled = [i for i, c in enumerate(clips) if not c.labels]
        if unlabelled:  # line numbers as an editor shows them: the header is line 1
            first = unlabelled[0]
            more = f" (and {len(unlabelled) - 1} more)" if len(unlabelled) > 1 else ""
            raise DatasetError(f"{csv} line {first + 2} ({clips[first].id}) has an empty label{more}: give each "
                               f"clip its label (several separated by ';'), or remove the line.")
        if "video" in table.columns and any(c.video is None for c in clips):
            no_video = [c.id for c in clips if c.video is None]
            raise DatasetError(f"{csv} has a video column but {len(no_video)} row(s) without a video (e.g. "
                               f"{no_video[0]!r}); give every clip a frame strip or drop the column.")
        duplicated = pd.Series([c.id for c in clips]).duplicated()
        if duplicated.any():
            raise DatasetError(f"{csv} lists clip {clips[int(duplicated.idxmax())].id!r} twice; clips that share "
                               f"an audio file need an id column with distinct ids.")
        return clips

    @staticmethod
    def _read_folders(root: Path) -> list[Clip]:
        return [Clip(id=str(p.relative_to(root)), path=p, labels=(p.parent.name,))
                for p in sorted(root.glob("*/*")) if p.suffix.lower() in AUDIO_SUFFIXES]

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def has_video(self) -> bool:
        return bool(self.clips) and self.clips[0].video is not None

    @property
    def label_names(self) -> list[str]:
        return sorted({name for c in self.clips for name in c.labels})

    def check_labels(self, model_labels: tuple[str, ...], multilabel: bool = False) -> None:
        """Refuse labels the model does not know, and, for a single-label model (``multilabel`` false), clips
        with several labels (it would be scored against the first alone)."""
        if not multilabel:
            several = next((clip for clip in self.clips if len(clip.labels) > 1), None)
            if several is not None:
                count = sum(len(clip.labels) > 1 for clip in self.clips)
                raise DatasetError(
                    f"{count} clip(s) have several labels (first: {several.id}, {';'.join(several.labels)}), but the "
                    f"model is single-label and would be scored against the first label alone: give each clip one "
                    f"label in metadata.csv, or use a multi-label model.")
        unknown = sorted(set(self.label_names) - set(model_labels))
        if unknown:
            raise DatasetError(
                f"The data has label(s) the model does not know: {', '.join(map(repr, unknown[:10]))}"
                f"{' ...' if len(unknown) > 10 else ''}. The model's labels are: "
                f"{', '.join(model_labels[:20])}{' ...' if len(model_labels) > 20 else ''}. Rename "
                f"them in metadata.csv, or use a model trained on these labels.")

    def batches(self, model: LoadsClips, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
        """Yield batches in dataset order, loaded for ``model`` (its rate and clip length).

        ``limit``: only that many clips, a seeded sample stratified over labels (:func:`limited`).

        Unusable clips (corrupt, silent, NaN) are skipped and reported in ``Batch.warnings``;
        the batch index depends only on the dataset order, so runs resume batch by batch.
        """
        self.check_labels(model.labels, model.multilabel)
        with_video = "video" in getattr(model, "modalities", ("audio",))
        if with_video and not self.has_video:
            raise DatasetError(f"The model uses video but the data under {self.root} has none: use an "
                               f"audio-visual dataset (metadata.csv with a video column), e.g. --data avmini.")
        index_of = {name: i for i, name in enumerate(model.labels)}
        clips = limited(self.clips, limit)
        for start in range(0, len(clips), batch_size):
            chunk = clips[start:start + batch_size]
            audio, labels, ids, names, warnings, videos = [], [], [], [], [], []
            for clip in chunk:
                try:
                    waveform, notes = load_audio(clip.path, model.sample_rate, model.clip_samples)
                    if with_video:
                        assert clip.video is not None  # has_video: every clip of a video dataset has one
                        videos.append(load_frames(clip.video, getattr(model, "frames", None)))
                except (AudioError, VideoError) as error:
                    warnings.append({"clip_id": clip.id, "kind": "skipped", "message": str(error)})
                    continue
                audio.append(waveform)
                warnings.extend({"clip_id": clip.id, "kind": "note", "message": n} for n in notes)
                ids.append(clip.id)
                names.append(";".join(clip.labels))
                if model.multilabel:
                    target = torch.zeros(len(model.labels))
                    target[[index_of[name] for name in clip.labels]] = 1.0
                    labels.append(target)
                else:
                    labels.append(torch.tensor(index_of[clip.labels[0]]))
            yield Batch(ids=ids, audio=torch.stack(audio) if audio else torch.empty(0, model.clip_samples),
                        labels=torch.stack(labels) if labels else torch.empty(0, dtype=torch.long),
                        label_names=names, index=start // batch_size, warnings=warnings,
                        video=(torch.stack(videos) if videos else None) if with_video else None)
