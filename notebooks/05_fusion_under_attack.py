# %% [markdown]
# # Fusion under attack: early, mid, late and super-late fusion vs modality-wise attacks
#
# Thesis chapters 10–11 ask whether an audio-visual model is more robust than its single-modality parts.
# This notebook attacks the bundled `avmini` models (the four fusion depths and the audio-only / video-only
# baselines) on the audio, on the video and on both, checks the thesis theorem on single clips, and measures
# the latent density and convexity of each modality. Small settings (24 test clips for the attack table, PGD-10, a
# coarse minimal-ε search) keep it to a few minutes on a 2-core CPU; every number below is from these settings.
# `robustaudio compare --models av-early av-mid av-late av-superlate audio-only video-only` runs the full protocol
# (all 64 test clips, ε curves in L∞ and L2 for each modality, minimal ε per modality, the theorem check), and
# `experiments/fusion_attacks.py` adds a stronger re-check of every theorem case.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.patches import Patch

from robustaudio.attacks import ThreatModel, minimal_eps, pgd, pgd_joint
from robustaudio.data import AudioDataset
from robustaudio.metrics.latent import latent_metrics
from robustaudio.models import load_model

torch.set_num_threads(1)  # on a busy shared 2-core machine a second thread mostly waits
names = ["audio-only", "video-only", "av-early", "av-mid", "av-late", "av-superlate"]
models = {name: load_model(name) for name in names}
test = AudioDataset.from_path("avmini", split="test")  # 64 clips, 6 classes, 1 s of audio + 4 frames of 32×32
everything = next(test.batches(models["av-early"], 64))
print(everything.audio.shape, everything.video.shape, models["av-early"].labels)

# %% [markdown]
# ## 1. The data: each modality alone is ambiguous
#
# Each class is an (audio event, scene) pair: `speech+person` and `speech+cafe` share their audio clips,
# `speech+cafe` and `music+cafe` share their scene. So an audio-only or a video-only model can be right on at
# most 4 of 6 classes; only the pair identifies the class. The video is a camera pan over a photo, 4 frames
# per clip (test pans are in other quadrants of the photo than training pans).

# %%
labels = models["av-early"].labels
first = [everything.labels.tolist().index(k) for k in range(len(labels))]
fig, axes = plt.subplots(len(labels), 4, figsize=(5, 1.1 * len(labels)))
for row, i in enumerate(first):
    for f in range(4):
        axes[row, f].imshow(everything.video[i, f].permute(1, 2, 0).numpy())
        axes[row, f].set_xticks([])
        axes[row, f].set_yticks([])
    axes[row, 0].set_ylabel(labels[everything.labels[i]], rotation=0, ha="right", va="center", fontsize=8)
for f in range(4):
    axes[0, f].set_title(f"frame {f + 1}", fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## 2. Clean accuracy
#
# On all 64 test clips (as in the models' cards). The single-modality models sit near their 4/6 ceiling;
# every fusion depth does far better.

# %%
def accuracy(model, audio, video, labels):
    with torch.no_grad():
        return float((model(audio, video).argmax(-1) == labels).float().mean())

clean_all = {name: accuracy(m, everything.audio, everything.video, everything.labels) for name, m in models.items()}
pd.Series(clean_all, name="clean accuracy (64 test clips)").round(3).to_frame()

# %% [markdown]
# ## 3. Attacking the audio, the video, or both
#
# Untargeted PGD (10 steps, one random start) on 24 test clips, 4 per class, each modality within its own
# L∞ budget:
#
# - **audio**: ε = 0.002 on the waveform (samples, full scale 1), video held fixed: `ThreatModel("linf", eps=0.002)`;
# - **video**: ε = 16/255 on the pixels (range [0, 1]), audio held fixed: `ThreatModel(..., modality="video")`;
# - **both**: the two budgets at once, one step moving both perturbations (`pgd_joint`; `JointThreat` is the same
#   attack for `run_attack` and the command line).
#
# A model cannot be attacked through an input it does not use: that column holds its clean accuracy, marked
# "(unused)". Robust accuracy counts clips that are correct and stay correct under the attack.

# %%
subset = AudioDataset(test.root, [c for k in labels for c in [c for c in test.clips if c.labels[0] == k][:4]])
batch = next(subset.batches(models["av-early"], 64))
audio_threat = ThreatModel("linf", eps=0.002)
video_threat = ThreatModel("linf", eps=16 / 255, modality="video", bounds=(0.0, 1.0))

results, audio_attacks = {}, {}
for name, model in models.items():
    clean = accuracy(model, batch.audio, batch.video, batch.labels)
    row = {"clean": clean, "audio attacked": None, "video attacked": None, "both attacked": None}
    generator = torch.Generator().manual_seed(0)
    if "audio" in model.modalities:
        audio_attacks[name] = pgd(model, batch.audio, batch.labels, audio_threat, steps=10, video=batch.video,
                                  generator=generator)
        row["audio attacked"] = accuracy(model, audio_attacks[name].adversarial, batch.video, batch.labels)
    if "video" in model.modalities:
        attacked = pgd(model, batch.audio, batch.labels, video_threat, steps=10, video=batch.video,
                       generator=generator)
        row["video attacked"] = accuracy(model, batch.audio, attacked.adversarial, batch.labels)
    if len(model.modalities) == 2:
        joint = pgd_joint(model, batch.audio, batch.video, batch.labels, audio_threat, video_threat, steps=10,
                          generator=generator)
        row["both attacked"] = accuracy(model, joint.audio, joint.video, batch.labels)
    else:
        row["both attacked"] = row["audio attacked"] if row["audio attacked"] is not None else row["video attacked"]
    results[name] = row

table = pd.DataFrame(results).T.astype(float)
table.apply(lambda row: row.map(lambda v: f"{row['clean']:.3f} (unused)" if np.isnan(v) else f"{v:.3f}"), axis=1)

# %% [markdown]
# The fusion table of the thesis, on 24 clips (one clip is 1/24 ≈ 0.04 of accuracy: read only large gaps). At
# these budgets:
#
# - the audio attack costs the fused models little (0.83–0.92 from 0.92) while it halves the audio-only model's
#   accuracy (0.67 → 0.33);
# - the video attack costs the early, mid and late fusions much more (0.29–0.50), as it does the video-only model
#   (0.58 → 0.08); super-late fusion keeps 0.63, its video half carrying only 0.4 of the vote;
# - attacking **both** leaves the fused models 0.17–0.38, around the attacked audio-only model's 0.33: fusion
#   helped against an attacker who reaches one input, not against one who reaches both.
#
# Which modality "is weaker" depends on the two budgets chosen; the full comparison's ε curves show the whole
# range.

# %%
fig, ax = plt.subplots(figsize=(7.5, 3.2))
columns = ["clean", "audio attacked", "video attacked", "both attacked"]
filled = table[columns].apply(lambda col: col.fillna(table["clean"]))
for k, column in enumerate(columns):
    bars = ax.bar(np.arange(len(filled)) + (k - 1.5) * 0.2, filled[column], 0.2, label=column)
    for bar, unused in zip(bars, table[column].isna()):
        if unused:  # an input the model does not use: its clean accuracy, hatched
            bar.set_alpha(0.35)
            bar.set_hatch("//")
ax.set_xticks(np.arange(len(filled)), filled.index, rotation=15)
ax.set(ylim=(0, 1.02), ylabel="accuracy (24 clips)",
       title="L∞ PGD-10: audio ε = 0.002 (waveform), video ε = 16/255 (pixels)")
handles = [Patch(color=f"C{k}", label=column) for k, column in enumerate(columns)]
handles.append(Patch(facecolor="white", edgecolor="grey", hatch="//", label="input not used:\nclean accuracy"))
ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
fig.tight_layout()

# %% [markdown]
# ## 4. The theorem on single clips: an audio attack the audio model withstands can flip the fused model
#
# Thesis ch. 11 [paper]: with a linear fusion head, an attack on one modality *inside that modality's own
# robustness radius* can flip the fused prediction, so a multi-modal model is not necessarily more robust
# than its parts. `av-late` fuses linearly (`z_t = W_a a_t + W_v v_t + b` per segment, then attention pooling).
# On the test clips (all 64 here, as this part is cheaper) that both `audio-only` and `av-late` classify
# correctly, we find per clip the smallest audio-only L∞ perturbation (waveform, `minimal_eps`: PGD with bisection
# on ε) that flips each model; a clip with ε_fused < ε_audio is a case of the theorem. `robustaudio compare` checks
# it the same way (robustaudio/report/fusion.py); here the bisection is coarser (PGD-10, 4 bisection steps, 10 %
# tolerance).

# %%
audio_model, fused = models["audio-only"], models["av-late"]
with torch.no_grad():
    both_right = ((audio_model(everything.audio).argmax(-1) == everything.labels)
                  & (fused(everything.audio, everything.video).argmax(-1) == everything.labels))
rows = torch.nonzero(both_right).flatten()
audio, video, truth = everything.audio[rows], everything.video[rows], everything.labels[rows]
search = dict(steps=10, search_steps=4, rel_tol=0.1, eps_max=0.05, generator=torch.Generator().manual_seed(0))
on_audio = minimal_eps(audio_model, audio, truth, audio_threat, **search)
on_fused = minimal_eps(fused, audio, truth, audio_threat, video=video, **search)
cases = torch.isfinite(on_fused.found_norm) & (on_fused.found_norm < on_audio.found_norm)
print(f"{len(rows)} of 64 test clips correct for both models; in {int(cases.sum())} of them an audio perturbation "
      f"smaller than audio-only's minimal ε flips av-late")
pd.DataFrame({"clip": [everything.ids[i] for i in rows[cases]],
              "minimal ε audio-only": on_audio.found_norm[cases].numpy(),
              "minimal ε av-late (audio attacked)": on_fused.found_norm[cases].numpy()}).round(5)

# %% [markdown]
# Both minimal ε are upper bounds (PGD may miss a smaller perturbation), so a case is evidence, not proof. For the
# case with the largest ratio we feed the perturbed audio that flips `av-late` to the audio-only model, and
# re-attack the audio-only model at that ε with a much stronger PGD (100 steps, 3 restarts), as
# `experiments/fusion_attacks.py` re-checks every case of the full comparison.

# %%
if cases.any():
    ratio = torch.where(cases, on_audio.found_norm / on_fused.found_norm, torch.zeros_like(on_fused.found_norm))
    pick = int(torch.argmax(ratio))
    eps, adversarial = float(on_fused.found_norm[pick]), on_fused.adversarial[pick:pick + 1]
    clip_audio, clip_video, clip_label = audio[pick:pick + 1], video[pick:pick + 1], truth[pick:pick + 1]
    strong = pgd(audio_model, clip_audio, clip_label, ThreatModel("linf", eps=eps), steps=100, restarts=3,
                 generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        said = lambda m, a: labels[int(m(a, clip_video).argmax(-1))]  # noqa: E731
        print(f"clip {everything.ids[int(rows[pick])]}: audio L∞ perturbation "
              f"{float((adversarial - clip_audio).abs().max()):.5f} (audio-only's minimal ε found: "
              f"{float(on_audio.found_norm[pick]):.5f})")
        print(f"  av-late     clean: {said(fused, clip_audio):16s} perturbed audio: {said(fused, adversarial)}")
        print(f"  audio-only  clean: {said(audio_model, clip_audio):16s} perturbed audio: "
              f"{said(audio_model, adversarial):16s} PGD-100 × 3 restarts at this ε: "
              f"{'flipped' if bool(strong.success) else 'not flipped'}")

# %% [markdown]
# On that clip `av-late` changes its answer to the class with the same scene, under an audio perturbation that the
# audio-only model withstands: it keeps its answer on the very same perturbed audio, and PGD with 30 times the
# steps at that ε does not flip it either. The cafe frames cannot tell `music+cafe` from `speech+cafe`, so between
# those two classes the audio part alone decides, and on this clip `av-late`'s audio evidence is the easier one to
# overturn. The count of cases comes from a coarse search on one split; the full comparison reports the share with
# a finer search.
#
# ## 5. Latent density and convexity per modality
#
# Our re-implementation of the thesis's two proposed measures [ours, specs §3], on each modality's embedding at
# the point where it is fused (all 64 test clips, k = 5 neighbours, 10 pairs per class: small, as
# `av-early`'s head is its whole conv stack, run once per interpolation):
#
# - **density ratio** D = mean distance to the 5 nearest other-class points / to the 5 nearest same-class points
#   (L2-normalised latents). D > 1: classes form tighter groups than the gaps between them; D ≈ 1: interleaved;
# - **convexity** C = fraction of interpolations λ·z_i + (1−λ)·z_j between two clips of the same class
#   (λ = 0.1…0.9, one modality interpolated, the other held at z_i) that the head still assigns to that class.
#   Beside it, its natural reference: the anchor accuracy (λ = 1, the clips themselves).
#
# For `av-early` the audio "embedding" is the log-mel itself (fusion happens before the conv stack).

# %%
latent = {}
for name in names:
    metrics = latent_metrics(models[name], [everything], k=5, pairs_per_class=10, seed=0)
    for modality, m in metrics.items():
        latent[(name, modality)] = {"density ratio D": m["density"]["overall"],
                                    "convexity C": m["convexity"]["overall"],
                                    "anchor accuracy": m["convexity"]["anchor_accuracy"]}
pd.DataFrame(latent).T.round(3)

# %% [markdown]
# In every model the video embedding groups the six classes more tightly (D 1.6–2.5) than the audio embedding
# (D 0.75–1.13; below 1 the classes interleave), although the design is symmetric (two audio events and two scenes
# each serve two classes). Convexity is close to the anchor accuracy throughout (audio within about 0.01; video
# about 0.03 below it in the fused models): straight paths between two clips of a class seldom leave the class
# beyond what the endpoints already get wrong. With 64 clips and 10 pairs per class these are rough estimates. The
# thesis proposes weighting mixup towards classes of low density or convexity (`TrainSettings(method="mixup",
# mixup_space="latent", mixup_weighting="convexity")`; notebook 08 trains with mixup).
