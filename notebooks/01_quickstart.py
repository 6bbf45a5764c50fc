# %% [markdown]
# # Quick start: attack a model, read the report
#
# The bundled default model (`cnn`, a log-mel CNN trained on the bundled `minievents` set) is attacked with L∞ PGD
# at three budgets in one ε-curve run; everything in the report is computed from `records.jsonl`. Runs in about half a
# minute on a 2-core CPU.

# %%
import tempfile
from pathlib import Path

import torch
from IPython.display import Image, display

from robustaudio.attacks import ThreatModel, pgd
from robustaudio.data import AudioDataset
from robustaudio.models import load_model
from robustaudio.report import build_report, read_records
from robustaudio.runner import AttackSpec, RunOptions, run_attack

torch.set_num_threads(2)

# %% [markdown]
# ## 1. A model behind the Classifier interface
#
# Waveform `[B, T]` in `[-1, 1]` at `sample_rate` Hz → logits; the log-mel front end is inside the graph.

# %%
model = load_model('cnn')
print(model.sample_rate, model.clip_seconds, model.labels)
data = AudioDataset.from_path(split='test')
batch = next(data.batches(model, 8))
with torch.no_grad():
    print('predicted', [model.labels[k] for k in model(batch.audio).argmax(-1)])
print('true     ', batch.label_names)

# %% [markdown]
# ## 2. One attack, as a plain function over tensors

# %%
threat = ThreatModel('linf', eps=0.002)  # sample units, full scale = 1
result = pgd(model, batch.audio, batch.labels, threat, steps=10, generator=torch.Generator().manual_seed(0))
print('fooled:', result.success.tolist())
print('max |δ|:', float(result.perturbation.abs().max()))
print('forward / backward passes per clip:', result.forwards.tolist(), result.backwards.tolist())

# %% [markdown]
# ## 3. A whole run: records, card, report
#
# The same as `robustaudio attack --norm linf --eps 0.0005 0.001 0.002 --limit 48`.

# %%
out = Path(tempfile.mkdtemp()) / 'quickstart'
threats = [ThreatModel('linf', eps=e) for e in (0.0005, 0.001, 0.002)]
run_attack(model, 'cnn', data, threats, out, AttackSpec("pgd", steps=10), RunOptions(limit=48))
card = build_report(out)
print('clean accuracy', round(card['clean_accuracy']['value'], 3))
for c in card['conditions']:
    print(c['condition'], 'robust accuracy', round(c['robust_accuracy']['value'], 3), c['robust_accuracy']['ci95'])
print('sanity flags:', card['flags'] or 'none')

# %%
display(Image(filename=str(out / 'figures' / 'accuracy_vs_budget.png')))

# %%
records = read_records(out)
records[['clip_id', 'condition', 'clean_pred', 'adv_pred', 'success', 'snr_db', 'carried']].head(8)

# %% [markdown]
# `report.html` in the run directory is self-contained (figures inline): open it in a browser. The sanity checks at
# its end say whether the numbers can be trusted; a flag comes with its fix.
