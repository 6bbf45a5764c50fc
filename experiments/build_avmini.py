"""Build the bundled audio-visual mini dataset ``avmini`` from minievents audio and public-domain photos.

    python experiments/build_avmini.py          # writes robustaudio/data/bundled/avmini/

Recipe (deterministic; a clip's random draws are seeded by its id):

1. Four audio events from the bundled ``minievents`` set (speech, music, engine, footsteps) and four
   visual scenes, each one public-domain / CC0 photo shipped with scikit-image: person
   (``astronaut``), cafe (``coffee``), rocket (``rocket``), cat (``chelsea``).
2. Six audio-visual classes ``<event>+<scene>`` chained so that each modality alone is ambiguous
   between some classes and the pair is not::

       speech+person  speech+cafe  music+cafe  engine+rocket  footsteps+rocket  footsteps+cat
       \\___ same audio ___/ \\_ same video _/              \\_ same video _/ \\__ same audio __/

   Audio tells speech+person from speech+cafe apart not at all (the same clips), video tells
   speech+cafe from music+cafe apart not at all (the same scene): an audio-only model can reach
   at most 4/6 accuracy, a video-only model 4/6, a fused model 1.
3. Every minievents clip of an event becomes one AV clip in each class with that event (same
   split as the audio clip; its ``id`` is ``<class>/<audio file stem>``), paired with a new video.
4. A video is a 4-frame camera pan over its scene's photo: a square crop of 55–95 % of a quadrant's
   side, moving by up to 40 % of the quadrant and zooming by up to ±10 % from frame to frame,
   each frame resized to 32 × 32 with anti-aliasing. Train videos come from the photo's top-left
   and bottom-right quadrants, test videos from the other two, so no test frame shares a
   pixel with a training frame.

Audio is not copied: ``metadata.csv`` points at ``../minievents/clips/...``. Frames are stored as
one PNG strip per clip (``frames/<class>/<stem>.png``, 128 × 32).
"""

from __future__ import annotations

import argparse
import csv
import zlib
from pathlib import Path

import numpy as np
import skimage
from skimage import data as skdata
from skimage.transform import resize

from robustaudio.data.av import save_frames
from robustaudio.data.datasets import BUNDLED_ROOT

EVENTS = ("speech", "music", "engine", "footsteps")
SCENES = {"person": "astronaut", "cafe": "coffee", "rocket": "rocket", "cat": "chelsea"}
CLASSES = (("speech", "person"), ("speech", "cafe"), ("music", "cafe"),
           ("engine", "rocket"), ("footsteps", "rocket"), ("footsteps", "cat"))
FRAMES, SIZE = 4, 32
QUADRANTS = {"train": ((0, 0), (1, 1)), "test": ((0, 1), (1, 0))}
SEED = 0


def pan(photo: np.ndarray, split: str, rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """A ``[FRAMES, 3, SIZE, SIZE]`` pan in [0, 1] inside one quadrant of ``split``; and its box
    ``[y0, x0, side0, y1, x1, side1]`` in photo pixels (first and last frame)."""
    height, width = photo.shape[:2]
    qh, qw = height // 2, width // 2
    row, col = QUADRANTS[split][rng.integers(2)]
    top, left = row * qh, col * qw
    side0 = rng.uniform(0.55, 0.95) * min(qh, qw)
    side1 = float(np.clip(side0 * rng.uniform(0.9, 1.1), 0.5 * min(qh, qw), min(qh, qw)))
    y0, x0 = rng.uniform(0, qh - side0), rng.uniform(0, qw - side0)
    y1 = float(np.clip(y0 + rng.uniform(-0.4, 0.4) * qh, 0, qh - side1))
    x1 = float(np.clip(x0 + rng.uniform(-0.4, 0.4) * qw, 0, qw - side1))
    frames = []
    for t in np.linspace(0, 1, FRAMES):
        side = side0 + t * (side1 - side0)
        y, x = top + y0 + t * (y1 - y0), left + x0 + t * (x1 - x0)
        crop = photo[int(round(y)):int(round(y + side)), int(round(x)):int(round(x + side))]
        frames.append(resize(crop, (SIZE, SIZE), anti_aliasing=True).transpose(2, 0, 1))
    box = [top + y0, left + x0, side0, top + y1, left + x1, side1]
    return np.stack(frames).astype(np.float32), [round(v, 1) for v in box]


README = """# avmini: a bundled audio-visual mini dataset

Six audio-visual event classes in which **each modality alone is ambiguous** between some classes and
the pair is not, so that fusion can beat both single-modality models. Built by
`python experiments/build_avmini.py` (deterministic; the recipe is in its docstring).

| class | audio event | scene (photo) | train | test |
|---|---|---|---|---|
{table}

- Same audio: `speech+person` / `speech+cafe` and `footsteps+rocket` / `footsteps+cat` (the very same
  clips). Same scene: `speech+cafe` / `music+cafe` and `engine+rocket` / `footsteps+rocket`.
  An audio-only model can reach at most 4/6 accuracy, a video-only model 4/6, a fused model 1.
- Audio: 1 s, 16 kHz clips of the bundled `minievents` set, referenced (not copied) by `path`
  (`../minievents/clips/...`); the split is the audio clip's (minievents splits by source recording).
  Every clip of an event is used once in each class with that event.
- Video: 4 frames of 32 × 32 RGB per clip, a camera pan (crop 55–95 % of a quadrant's side, moving up to
  40 % of the quadrant, zooming ±10 %) over the scene's photo, stored as one PNG strip
  `frames/<class>/<stem>.png` (128 × 32). Train pans stay inside the photo's top-left and bottom-right
  quadrants, test pans inside the other two: no test frame shares a pixel with a training frame.
- `metadata.csv`: `id` (`<class>/<audio stem>`: unique, as one audio file serves two classes), `path`
  (audio), `video` (frame strip), `label`, `split`, `audio_event`, `scene`, `photo`, `pan`
  (`y0 x0 side0 y1 x1 side1`, photo pixels, first and last frame).
- In batches the video is `[B, 4, 3, 32, 32]` float32 in [0, 1] (`robustaudio.data.av`).

## Attribution

- Audio: see `../minievents/ATTRIBUTION.md` (sources, licences, split by source recording).
- Photos, all shipped with scikit-image {skimage} (`skimage.data`):
  `astronaut` (Eileen Collins, NASA; public domain), `coffee` (Rachel Michetti, courtesy of Pikolo
  Espresso Bar; CC0), `rocket` (DSCOVR launch on Falcon 9, SpaceX; released into the public domain),
  `chelsea` (Stéfan van der Walt; CC0).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=BUNDLED_ROOT / "avmini")
    args = parser.parse_args()
    source = BUNDLED_ROOT / "minievents"
    rows = list(csv.DictReader(open(source / "metadata.csv")))
    photos = {scene: getattr(skdata, name)().astype(np.float32) / 255.0 for scene, name in SCENES.items()}
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    written, counts = [], {}
    for event, scene in CLASSES:
        label = f"{event}+{scene}"
        for row in sorted((r for r in rows if r["label"] == event), key=lambda r: r["path"]):
            stem = Path(row["path"]).stem
            clip_id = f"{label}/{stem}"
            rng = np.random.default_rng([SEED, zlib.crc32(clip_id.encode())])
            video, box = pan(photos[scene], row["split"], rng)
            video_path = f"frames/{label}/{stem}.png"
            save_frames(out / video_path, video)
            written.append({"id": clip_id, "path": f"../minievents/{row['path']}", "video": video_path,
                            "label": label, "split": row["split"], "audio_event": event, "scene": scene,
                            "photo": f"skimage.data.{SCENES[scene]}", "pan": " ".join(f"{v:g}" for v in box)})
            counts[(label, row["split"])] = counts.get((label, row["split"]), 0) + 1
    with open(out / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(written[0]))
        writer.writeheader()
        writer.writerows(written)
    table = "\n".join(f"| `{e}+{s}` | {e} | {s} (`{SCENES[s]}`) | {counts.get((f'{e}+{s}', 'train'), 0)} | "
                      f"{counts.get((f'{e}+{s}', 'test'), 0)} |" for e, s in CLASSES)
    (out / "README.md").write_text(README.format(table=table, skimage=skimage.__version__))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{len(written)} clips ({sum(v for (_, s), v in counts.items() if s == 'train')} train, "
          f"{sum(v for (_, s), v in counts.items() if s == 'test')} test), {size / 1e6:.2f} MB in {out}")


if __name__ == "__main__":
    main()
