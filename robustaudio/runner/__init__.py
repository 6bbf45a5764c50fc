"""Run an attack or the noise suite over a dataset into a run directory, batch by batch, resumably.

A run directory holds ``run.json`` (settings, seed, versions, command), ``records.jsonl`` (one row
per clip and condition, see :mod:`robustaudio.records`) and ``warnings.jsonl`` (skipped
clips, resampling). Rerunning the same settings into the same directory skips finished batches;
different settings are refused unless ``restart=True``.

Parts: :mod:`.spec` (what attack, :class:`AttackSpec`), :mod:`.registry` (attacks by name),
:mod:`.attack` (attack runs), :mod:`.noise` (natural-noise runs), :mod:`.rows` (records of a batch),
:mod:`.universal`, :mod:`.scale` (the batch loop, Ray), :mod:`.files` (the run directory),
:mod:`.devices` (device and precision).
"""

from ..attacks.joint import JointThreat
from .attack import SANITY_CLIPS, RunOptions, attack_batch, check_modalities, probe_batch, run_attack
from .devices import PRECISIONS, precision_context, to_device
from .files import RUN_FILE, UNIVERSAL_FILE, RunSettingsError, open_run
from .noise import hash_name, noise_batch, noise_suite, run_noise
from .registry import ATTACKS, budget_attack
from .rows import ConditionRows
from .scale import run_batches
from .spec import AttackSpec
from .universal import apply_universal, learn_universal

__all__ = ["AttackSpec", "RunOptions", "ATTACKS", "budget_attack", "run_attack", "run_noise", "attack_batch",
           "noise_batch", "probe_batch", "check_modalities", "noise_suite", "hash_name", "ConditionRows", "run_batches",
           "open_run", "RUN_FILE", "UNIVERSAL_FILE", "RunSettingsError", "JointThreat", "SANITY_CLIPS",
           "PRECISIONS", "precision_context", "to_device", "apply_universal", "learn_universal"]
