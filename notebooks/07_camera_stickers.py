# %% [markdown]
# # Camera stickers: translucent dots on the lens
#
# The threat model (thesis ch. 8; specs §1): the attacker cannot touch the pixels, only stick a transparent
# film with a few printed, translucent dots on the camera lens. Every image the camera takes is then seen
# through the same dots, so a sticker is **universal** (one for all images) and, here, **targeted** (it should
# make the classifier say a chosen class). Each dot is out of focus: a soft disc of peak opacity α_max,
# radius r (fraction of the image side) and edge exponent β, whose printed colour γ reaches the sensor as
# A γ + b. This notebook renders dots, recovers known optics from synthetic photos, and learns a small sticker
# against a real face classifier (MTCNN's O-Net), compared with random dots. A few minutes on a 2-core CPU;
# `python experiments/camera_sticker.py` runs the full experiment.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from robustaudio.attacks.sticker import (
    DotOptics,
    Sticker,
    fit_dot_optics,
    grid_centres,
    image_target,
    optimise_sticker,
    random_dot_control,
    sticker_success,
    synthetic_photos,
)
from robustaudio.data.images import lfw_faces, photo_crops
from robustaudio.models import load_model

torch.set_num_threads(2)


def show(images: torch.Tensor, titles: list[str], row_label: str | None = None, axes=None) -> None:
    for ax, image, title in zip(axes, images, titles):
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    if row_label:
        axes[0].text(-0.1, 0.5, row_label, transform=axes[0].transAxes, rotation=90, va="center", ha="right",
                     fontsize=8)

# %% [markdown]
# ## 1. What the dots look like
#
# Nine dots on the 3×3 grid with random colours, rendered over photos with the paper's optics (α_max 0.9,
# r = 25/256, β = 2) and with fainter, wider, softer dots (α_max 0.5, r 0.15, β 1).

# %%
scenes = photo_crops(count=8, size=48)  # scikit-image's colour photos, in [0, 1]
g = torch.Generator().manual_seed(0)
colours = torch.rand(9, 3, generator=g)
paper = DotOptics()
soft = DotOptics(alpha_max=0.5, radius=0.15, beta=1.0)
fig, axes = plt.subplots(3, 4, figsize=(8, 6.2))
show(scenes[:4], ["clean"] * 4, "clean", axes[0])
show(Sticker(grid_centres(9), colours, paper)(scenes[:4]), ["paper optics"] * 4, "α 0.9, r 0.098, β 2", axes[1])
show(Sticker(grid_centres(9), colours, soft)(scenes[:4]), ["faint, wide, soft"] * 4, "α 0.5, r 0.15, β 1", axes[2])
fig.tight_layout()

# %% [markdown]
# ## 2. Recovering the optics from photos
#
# A real sticker's optics are unknown: they are fitted from photos of a known printed sticker over varied
# scenes. To check the fit, we make synthetic "photos" with **known** optics (a colour cast A, b; the dots
# placed off the printed grid by ~0.02 of the image side; Gaussian pixel noise σ = 0.01) and let
# `fit_dot_optics` recover them from the printed centres and colours alone (8 photo crops of 48×48 pixels,
# 200 Adam steps; the full experiment: 64×64, 500 steps, three optics and two noise levels). Errors are absolute.

# %%
true = DotOptics(alpha_max=0.9, radius=25 / 256, beta=2.0,
                 colour_matrix=((0.85, 0.05, 0.0), (0.05, 0.8, 0.05), (0.0, 0.1, 0.7)), colour_offset=(0.05, 0.05, 0.1))
printed = grid_centres(9)
placed = printed + 0.02 * torch.randn(9, 2, generator=g)
photos = synthetic_photos(scenes, placed, colours, true, noise=0.01, generator=g)
start = time.perf_counter()
fit = fit_dot_optics(scenes, photos, printed, colours, steps=200)
got = fit.optics
print(f"fit: {time.perf_counter() - start:.0f} s, pixel RMSE {fit.rmse:.4f} (noise σ 0.01)")
print(f"{'':<18}{'true':>8}{'fitted':>8}{'|error|':>9}")
for name in ("alpha_max", "radius", "beta"):
    a, b = getattr(true, name), getattr(got, name)
    print(f"{name:<18}{a:>8.3f}{b:>8.3f}{abs(a - b):>9.4f}")
for row, fitted, truth in (("colour matrix A", got.colour_matrix, true.colour_matrix),
                           ("colour offset b", got.colour_offset, true.colour_offset)):
    print(f"{row:<18}{'':>16}{np.abs(np.array(fitted) - np.array(truth)).max():>9.4f}  (max)")
print(f"{'dot centres':<18}{'':>16}{float((fit.centres - placed).abs().max()):>9.4f}  (max, fraction of side)")

# %% [markdown]
# ## 3. A universal targeted sticker against a face classifier
#
# `image:mtcnn-onet` is the O-Net stage of the MTCNN face detector (face / not-face on 48×48 crops; weights
# from facenet-pytorch). The images are scikit-image's `lfw_subset` faces (25×25 grey, shown at 48×48 RGB).
# The sticker is learned on the even-numbered faces and measured on the **held-out** odd-numbered ones:
# face → not-face, i.e. a sticker that hides faces from the detector. Tiny settings: 8 epochs of Adam on the
# centres and colours (the full experiment: 60), 10 random stickers as the control (full: 20).

# %%
onet = load_model("image:mtcnn-onet")
even_faces, odd_faces = lfw_faces(size=48)
learn, held = image_target(onet, even_faces, onet.labels), image_target(onet, odd_faces, onet.labels)
print("classes:", onet.labels, f"; {len(learn.images)} faces to learn on, {len(held.images)} held out")

start = time.perf_counter()
result = optimise_sticker(learn, "face", "not-face", optics=paper, epochs=8, generator=torch.Generator().manual_seed(0))
print(f"optimised in {time.perf_counter() - start:.0f} s; best epoch {result.best_epoch + 1}; targeted success on the "
      "learning faces per epoch:", [round(h["targeted_success"], 2) for h in result.history])
learned = sticker_success(learn, result.sticker, "face", "not-face")
measured = sticker_success(held, result.sticker, "face", "not-face")
control = random_dot_control(held, "face", "not-face", dots=9, optics=paper, draws=10,
                             generator=torch.Generator().manual_seed(1))
print(f"held-out faces: clean accuracy (called 'face') {measured['clean_accuracy']:.2f}; "
      f"called 'not-face' clean {measured['clean_targeted']:.2f}")
print(f"  called 'not-face' through the learned sticker: {measured['targeted']:.2f} held out "
      f"({learned['targeted']:.2f} on the learning faces)")
print(f"  through random dots (same optics, 10 draws): mean {control['targeted_mean']:.2f}, "
      f"max {control['targeted_max']:.2f}")

# %% [markdown]
# Read the last three lines together: "clean" is what the classifier does without any sticker, "random dots"
# is what any nine dots of the same opacity and size do, and the learned sticker's held-out rate is the
# attack. The gap between the sticker and the random-dot control is what the optimisation bought.
#
# The learned sticker (alone, over mid-grey) and the held-out faces through it and through one random sticker:

# %%
random_sticker = Sticker.random(9, paper, torch.Generator().manual_seed(1))
with torch.no_grad():
    pred_clean = onet(held.images[:6]).argmax(-1)
    through = result.sticker(held.images[:6])
    pred_stuck = onet(through).argmax(-1)
    through_random = random_sticker(held.images[:6])
    pred_random = onet(through_random).argmax(-1)


def name(k: torch.Tensor) -> str:
    """The face model's label of class index ``k``."""
    return onet.labels[int(k)]


fig, axes = plt.subplots(3, 7, figsize=(10, 4.6))
show(result.sticker(torch.full((1, 3, 48, 48), 0.5)), ["learned sticker"], None, axes[0, :1])
show(random_sticker(torch.full((1, 3, 48, 48), 0.5)), ["random sticker"], None, axes[1, :1])
axes[2, 0].axis("off")
show(held.images[:6], [f"clean: {name(k)}" for k in pred_clean], None, axes[2, 1:])
show(through, [f"sticker: {name(k)}" for k in pred_stuck], None, axes[0, 1:])
show(through_random, [f"random: {name(k)}" for k in pred_random], None, axes[1, 1:])
fig.tight_layout()
