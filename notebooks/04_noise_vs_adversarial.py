# %% [markdown]
# # Noise vs adversarial robustness across zoo models
#
# Thesis chapter 12 asks whether a model that resists natural noise also resists adversarial perturbations.
# `run_comparison` (the `robustaudio compare` command) runs, per model, a PGD ε curve, the natural-noise suite,
# latent density and convexity, and sharpness, then ranks the models. Here: the four bundled models on 32 test
# clips, with a few corruptions to keep it to a few minutes on a 2-core CPU.

# %%
import tempfile
from pathlib import Path

import pandas as pd
import torch
from IPython.display import Image, display

from robustaudio.data import AudioDataset
from robustaudio.models import load_model
from robustaudio.runner import RunOptions, noise_suite
from robustaudio.studies.compare import run_comparison

torch.set_num_threads(2)
names = ["cnn", "ast", "crnn-mini", "taltrans-mini"]
out = Path(tempfile.mkdtemp()) / "compare"
comparison = run_comparison({name: (lambda name=name: load_model(name)) for name in names},
                            AudioDataset.from_path(split="test"), out, norm="linf", eps=(0.0005, 0.001, 0.002),
                            corruptions=noise_suite(["gaussian_snr", "background_noise", "occlusion_periodic"]),
                            steps=5, options=RunOptions(limit=32), progress=lambda message: None)

# %%
table = pd.DataFrame(comparison["models"]).T
table[["clean_accuracy", "noise_mean", "robust_accuracy"]].astype(float).round(3)

# %% [markdown]
# `noise_mean` is the mean accuracy over the corruptions at their middle severity; `robust_accuracy` is at
# ε = 0.001 (L∞). The rank correlations say whether the orderings agree (with 4 models, only a large
# difference means anything: the p-values are printed for that reason).

# %%
for name, c in comparison["correlations"].items():
    if c["spearman"] is not None:
        print(f"{name:40s} Spearman {c['spearman']:+.2f} (p {c['spearman_p']:.2f})")

# %%
for figure in sorted((out / "figures").glob("*.png"))[:2]:
    display(Image(filename=str(figure)))
