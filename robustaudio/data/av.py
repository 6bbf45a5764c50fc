"""Video for audio-visual datasets: frame strips on disk, video tensors in batches.

A clip's video is stored as one PNG *strip*: its ``F`` frames of ``H × W`` pixels side by side,
``W·F`` wide (``frames/<clip>.png`` in the bundled ``avmini`` set). In memory a batch's video is
float32 ``[B, F, 3, H, W]`` with pixel values in ``VIDEO_BOUNDS`` = [0, 1] (RGB, 8-bit values / 255).

A dataset declares its video in ``metadata.csv`` with a ``video`` column (the strip's path
relative to the dataset root) and, optionally, an ``id`` column: clips that share an audio file
(the same sound in two audio-visual classes) need distinct ids. Strips are read with Pillow
(a matplotlib dependency).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

VIDEO_BOUNDS = (0.0, 1.0)


class VideoError(ValueError):
    """A video file that cannot be used; the message says why."""


def load_frames(path: str | Path, frames: int | None = None) -> torch.Tensor:
    """Read a frame strip: ``[frames, 3, H, W]`` float32 in [0, 1], with ``W = width / frames``.

    ``frames=None``: square frames, ``frames = width / height``. Raises :class:`VideoError` for a
    missing or unreadable file or a width that is not ``frames`` frames of equal size.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video strip {str(path)!r} does not exist")
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # [H, W·F, 3]
    except (UnidentifiedImageError, OSError) as error:
        raise VideoError(f"video strip {str(path)!r} is not a readable image ({error})") from error
    height, width, _ = pixels.shape
    frames = width // max(height, 1) if frames is None else frames
    if frames < 1 or width % frames:
        raise VideoError(f"video strip {str(path)!r} is {width} px wide, not {frames} frames of equal width")
    strip = torch.from_numpy(pixels).permute(2, 0, 1)                     # [3, H, W·F]
    return torch.stack(strip.split(width // frames, dim=2))               # [F, 3, H, W]


def save_frames(path: str | Path, video: torch.Tensor | np.ndarray) -> None:
    """Write ``video`` ``[F, 3, H, W]`` in [0, 1] as one PNG strip ``H × (W·F)`` (8 bits per channel)."""
    from PIL import Image

    video = torch.as_tensor(video, dtype=torch.float32)
    if video.dim() != 4 or video.shape[1] != 3:
        raise VideoError(f"save_frames takes [F, 3, H, W], got {list(video.shape)}")
    strip = torch.cat(list(video.clamp(0, 1)), dim=2)                     # [3, H, W·F]
    pixels = (strip.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, optimize=True)


def check_video(video: torch.Tensor, frames: int, frame_size: int, model_name: str = "this model") -> None:
    """Raise ``ValueError`` unless ``video`` is ``[B, frames, 3, frame_size, frame_size]``."""
    expected = [frames, 3, frame_size, frame_size]
    if video.dim() != 5 or list(video.shape[1:]) != expected:
        raise ValueError(f"{model_name} takes video [B, {', '.join(map(str, expected))}] (frames × RGB × "
                         f"height × width, values in [0, 1]), got {list(video.shape)}. Resize the frames, or "
                         f"use the bundled avmini data (--data avmini).")
