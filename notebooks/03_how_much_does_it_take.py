# %% [markdown]
# # How much does it take? ε curves, minimal ε, and the sanity flags
#
# "Robust accuracy 0.6 at ε = 0.001" answers one question; a user usually wants the whole curve, and the
# smallest perturbation that breaks each clip ("how much does it take to deactivate it"). This notebook runs
# both on the bundled CNN and shows what the sanity flags mean. About a minute on a 2-core CPU.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from robustaudio.attacks import ThreatModel, minimal_eps, pgd_curve
from robustaudio.data import AudioDataset
from robustaudio.metrics.potency import accuracy_from_minimal_eps, eps_at_chance, median_with_ci
from robustaudio.models import load_model
from robustaudio.report import build_report
from robustaudio.runner import AttackSpec, RunOptions, run_attack

torch.set_num_threads(2)
model = load_model("cnn")
data = AudioDataset.from_path(split="test")
batch = next(data.batches(model, 32))
print(len(batch.ids), "clips;", model.num_classes, "classes")

# %% [markdown]
# ## 1. An ε curve in one run
#
# `pgd_curve` attacks from the largest budget down: a clip that resists a large ε is robust at every smaller
# one (no need to attack it again), and a clip broken at ε starts the next smaller budget from its projected
# perturbation. Same answers as separate PGD runs, at about half the cost.

# %%
budgets = [0.0002, 0.0005, 0.001, 0.002, 0.005]
results = pgd_curve(model, batch.audio, batch.labels, [ThreatModel("linf", eps=e) for e in budgets],
                    steps=10, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    clean_correct = model(batch.audio).argmax(-1) == batch.labels
robust = [float((clean_correct & ~r.success).float().mean()) for r in results]
for e, a in zip(budgets, robust):
    print(f"L∞ ε = {e:<7g} robust accuracy {a:.3f}")

# %% [markdown]
# ## 2. Minimal ε per clip
#
# `minimal_eps` brackets each clip's smallest successful L∞ budget by bisection over PGD. Its empirical CDF is
# the whole accuracy-vs-ε curve; the median (with a bootstrap interval) and the ε at which accuracy reaches
# chance summarise it in two numbers.

# %%
found = minimal_eps(model, batch.audio, batch.labels, ThreatModel("linf", eps=0.001), steps=10, search_steps=6,
                    generator=torch.Generator().manual_seed(0))
minimal = found.found_norm[clean_correct].numpy()  # clean errors need no perturbation; inf = not found
median, low, high = median_with_ci(minimal)
n_clips = len(batch.ids)
print(f"{int(np.isfinite(minimal).sum())} of {len(minimal)} clean-correct clips broken; median minimal ε "
      f"{median:.4g} [{low:.4g}, {high:.4g}]; ε at chance {eps_at_chance(minimal, n_clips, 1 / model.num_classes):.4g}")

grid, accuracy = accuracy_from_minimal_eps(minimal, n_clips)
fig, ax = plt.subplots(figsize=(5, 3))
ax.step(grid, accuracy, where="post", label="from minimal ε (per clip)")
ax.plot(budgets, robust, "o", label="PGD ε curve")
ax.axhline(1 / model.num_classes, color="grey", ls=":", label="chance")
ax.set(xscale="log", xlabel="L∞ ε (waveform, full scale 1)", ylabel="accuracy")
ax.legend()
fig.tight_layout()

# %% [markdown]
# The two agree: the minimal-ε curve lies at or below the PGD points (bisection spends more PGD runs per clip).
#
# ## 3. What the sanity flags mean
#
# Every attack run ends with checks that catch the usual ways a robustness number is wrong. A run with too few
# PGD steps is the commonest: robustaudio re-attacks a few probe clips with 40 steps and 2 restarts, and flags
# the run when that finds clearly more adversarial examples.

# %%
out = Path(tempfile.mkdtemp())
run_attack(model, "cnn", data, [ThreatModel("linf", eps=0.001)], out / "weak", AttackSpec("pgd", steps=2),
           RunOptions(limit=16))
card = build_report(out / "weak")
print("robust accuracy with 2 steps:", round(card["conditions"][0]["robust_accuracy"]["value"], 3))
for check in card["checks"]:
    if check["flagged"]:
        print(f"FLAG {check['name']}: {check['seen']}\n  why it matters: {check['reason']}\n  fix: {check['fix']}")

# %% [markdown]
# The flag gives what was measured and the fix. With more steps the number drops, which is why the
# flag exists: an unconverged attack overstates robustness.

# %%
run_attack(model, "cnn", data, [ThreatModel("linf", eps=0.001)], out / "strong",
           AttackSpec("pgd", steps=20, restarts=2), RunOptions(limit=16, sanity=False))
strong = build_report(out / "strong")
print("robust accuracy with 20 steps x 2 restarts:", round(strong["conditions"][0]["robust_accuracy"]["value"], 3))
