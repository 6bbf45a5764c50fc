"""Small real images for the camera-sticker attack, from the photos that ship with scikit-image.

Needs scikit-image (``pip install -e ".[faces]"``); nothing is downloaded.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F


def _skimage_data() -> ModuleType:
    try:
        from skimage import data
    except ImportError as error:
        raise ImportError("The sample images come with scikit-image: pip install -e \".[faces]\"") from error
    return data


def photo_crops(count: int = 8, size: int = 64) -> torch.Tensor:
    """``[count, 3, size, size]`` RGB in [0, 1]: square crops (half the short side) of scikit-image's
    astronaut, coffee, chelsea and rocket photos, taken in turn from the top-left and bottom-right corners."""
    from skimage.transform import resize
    data = _skimage_data()
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)].astype(np.float32) / 255
        h, w = photo.shape[:2]
        side = min(h, w) // 2
        y, x = (i // len(photos)) * (h - side), (i // len(photos)) * (w - side)
        crop = resize(photo[y:y + side, x:x + side], (size, size), anti_aliasing=True)
        crops.append(torch.from_numpy(crop).permute(2, 0, 1))
    return torch.stack(crops).float()


def lfw_faces(size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-image's ``lfw_subset`` faces (the first 100; 25×25 grey) as RGB ``[50, 3, size, size]`` in
    [0, 1], split ``(even-numbered, odd-numbered)``: one half to learn a sticker on, one held out."""
    grey = torch.from_numpy(_skimage_data().lfw_subset()[:100]).float()[:, None]
    rgb = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1).repeat(1, 3, 1, 1)
    return rgb[0::2], rgb[1::2]
