"""Labelled audio datasets and batching.

Two layouts are read:

- a directory with ``metadata.csv`` holding at least ``path`` (relative to the directory) and
  ``label`` (several labels separated by ``;`` for multi-label data), optionally ``split``;
- a directory of class folders, ``DIR/<label>/<file>.wav|flac|ogg``.

The bundled set, ``minievents``, lives in ``robustaudio/data/bundled/minievents`` (see its
ATTRIBUTION.md); ``bundled_path()`` finds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pandas as pd
import torch

from .audio import AudioError, load_audio

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
BUNDLED_ROOT = Path(__file__).parent / "bundled"
DEFAULT_DATASET = "minievents"


class DatasetError(ValueError):
    """A dataset that cannot be read; the message says why and what to do."""


def bundled_path(name: str = DEFAULT_DATASET) -> Path:
    path = BUNDLED_ROOT / name
    if not (path / "metadata.csv").is_file():
        raise DatasetError(f"The bundled dataset {name!r} is missing at {path}; rebuild it with "
                           f"`python experiments/build_minievents.py` or pass --data PATH.")
    return path


@dataclass(frozen=True)
class Clip:
    id: str            # stable identifier: the path relative to the dataset root
    path: Path
    labels: tuple[str, ...]
    split: str | None = None


@dataclass
class Batch:
    """``audio`` ``[B, T]`` float32 in [-1, 1]; ``labels`` ``[B]`` (single-label) or ``[B, K]`` 0/1."""

    ids: list[str]
    audio: torch.Tensor
    labels: torch.Tensor
    label_names: list[str]
    index: int                           # batch number in the dataset order
    # {"clip_id", "kind": "skipped" | "note", "message"}: unusable clips, and changes such as resampling
    warnings: list[dict] = field(default_factory=list)


class AudioDataset:
    """A list of labelled clips read lazily; ``batches(model, ...)`` yields model-ready batches."""

    def __init__(self, root: str | Path, clips: list[Clip]):
        self.root = Path(root)
        self.clips = clips

    @classmethod
    def from_path(cls, root: str | Path | None = None, split: str | None = None) -> "AudioDataset":
        """Read a dataset directory (``None``: the bundled default); ``split`` filters the rows."""
        root = bundled_path() if root is None else Path(root)
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
            clips = [c for c in clips if c.split == split]
        if not clips:
            where = f" in split {split!r}" if split else ""
            raise DatasetError(f"No audio clips found{where} under {root}. Expected metadata.csv "
                               f"(columns path,label[,split]) or folders DIR/<label>/*.wav|flac|ogg.")
        return cls(root, clips)

    @staticmethod
    def _read_csv(root: Path, csv: Path) -> list[Clip]:
        table = pd.read_csv(csv, dtype=str, keep_default_na=False)
        missing = {"path", "label"} - set(table.columns)
        if missing:
            raise DatasetError(f"{csv} lacks column(s) {sorted(missing)}; it needs path,label[,split].")
        return [Clip(id=row.path, path=root / row.path,
                     labels=tuple(l.strip() for l in row.label.split(";") if l.strip()),
                     split=getattr(row, "split", None) or None)
                for row in table.itertuples(index=False)]

    @staticmethod
    def _read_folders(root: Path) -> list[Clip]:
        return [Clip(id=str(p.relative_to(root)), path=p, labels=(p.parent.name,))
                for p in sorted(root.glob("*/*")) if p.suffix.lower() in AUDIO_SUFFIXES]

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def label_names(self) -> list[str]:
        return sorted({l for c in self.clips for l in c.labels})

    def check_labels(self, model_labels: tuple[str, ...]) -> None:
        unknown = sorted(set(self.label_names) - set(model_labels))
        if unknown:
            raise DatasetError(
                f"The data has label(s) the model does not know: {', '.join(map(repr, unknown[:10]))}"
                f"{' ...' if len(unknown) > 10 else ''}. The model's labels are: "
                f"{', '.join(model_labels[:20])}{' ...' if len(model_labels) > 20 else ''}. Rename "
                f"them in metadata.csv, or use a model trained on these labels.")

    def batches(self, model, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
        """Yield batches in dataset order, loaded for ``model`` (its rate and clip length).

        Unusable clips (corrupt, silent, NaN) are skipped and reported in ``Batch.warnings``;
        the batch index depends only on the dataset order, so runs resume batch by batch.
        """
        self.check_labels(model.labels)
        index_of = {name: i for i, name in enumerate(model.labels)}
        clips = self.clips[:limit] if limit else self.clips
        for start in range(0, len(clips), batch_size):
            chunk = clips[start:start + batch_size]
            audio, labels, ids, names, warnings = [], [], [], [], []
            for clip in chunk:
                try:
                    waveform, notes = load_audio(clip.path, model.sample_rate, model.clip_samples)
                except AudioError as error:
                    warnings.append({"clip_id": clip.id, "kind": "skipped", "message": str(error)})
                    continue
                audio.append(waveform)
                warnings.extend({"clip_id": clip.id, "kind": "note", "message": n} for n in notes)
                ids.append(clip.id)
                names.append(";".join(clip.labels))
                if model.multilabel:
                    target = torch.zeros(len(model.labels))
                    target[[index_of[l] for l in clip.labels]] = 1.0
                    labels.append(target)
                else:
                    labels.append(torch.tensor(index_of[clip.labels[0]]))
            yield Batch(ids=ids, audio=torch.stack(audio) if audio else torch.empty(0, model.clip_samples),
                        labels=torch.stack(labels) if labels else torch.empty(0, dtype=torch.long),
                        label_names=names, index=start // batch_size, warnings=warnings)
