"""What attack a run makes, in one small value: :class:`AttackSpec`.

The CLI and the library build one and hand it to :func:`~robustaudio.runner.run_attack`; its
:meth:`AttackSpec.settings` go into ``run.json`` (resume refuses other settings) and its fields into
every row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .devices import PRECISIONS

MODES = ("minimal", "universal")  # not attacks at a budget: a search per clip, one δ for all clips
# Gradient steps per restart when --steps is not given. "reliable": per APGD member; its steps, queries and the
# ``targets`` default were chosen on the TRAIN split (benchmarks/reliable.py --tune: cnn and taltrans-mini, L∞
# 0.002, 40 clips each): the cheapest setting within 1 clip of a reference ~10x stronger. 100 APGD steps (50
# and 75 left 2-4 clips more standing on taltrans-mini), 1 APGD-T target and 100 Square queries (more targets
# and queries broke no further clip). The library backends run at their authors' recommended settings.
DEFAULT_STEPS = {"pgd": 10, "minimal": 10, "universal": 10, "reliable": 100, "apgd-ce": 100, "apgd-t": 100}
DEFAULT_QUERIES = {"reliable": 100, "square": 1000}


@dataclass(frozen=True)
class AttackSpec:
    """The attack of a run and its settings.

    Args:
        name: an attack of :data:`~robustaudio.runner.registry.ATTACKS` (``pgd``, ``square``, ...),
            a library attack with ``backend`` ``art`` / ``foolbox``, or a mode: ``minimal`` (the
            minimal ε per clip, by PGD bisection) or ``universal`` (one δ learned for all clips).
        backend: ``native`` (robustaudio's own), ``art`` or ``foolbox``.
        steps: gradient steps per restart (per budget tried, for ``minimal``; per APGD member for
            ``reliable``); ``None``: :data:`DEFAULT_STEPS`.
        restarts: random restarts.
        queries: query budget per clip of score-based attacks (square, the ensemble's Square);
            ``None``: :data:`DEFAULT_QUERIES`.
        targets: runner-up classes APGD-T aims at in turn.
        precision: ``fp32``, or ``bf16`` autocast for the attack's passes.
        options: mode settings: ``minimal`` takes ``eps_max``, ``search_steps``, ``rel_tol``, ``refine_steps``
            (the boundary walk, ``--walk-steps``);
            ``universal`` takes ``epochs``, ``projection``, ``frame_length``.
    """

    name: str = "reliable"
    backend: str = "native"
    steps: int | None = None
    restarts: int = 1
    queries: int | None = None
    targets: int = 1  # chosen on the train split with DEFAULT_STEPS['reliable'] (see there)
    precision: str = "fp32"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.steps is None and self.backend == "native" and self.name != "square":  # library attacks: None =
            # their authors' settings; Square takes no gradient steps (its records say None, not a made-up 10)
            object.__setattr__(self, "steps", DEFAULT_STEPS.get(self.name, 10))
        if self.queries is None:
            object.__setattr__(self, "queries", DEFAULT_QUERIES.get(self.name, 1000))
        if self.gradient_steps < 0 or self.restarts < 1 or self.query_budget < 1:
            raise ValueError(f"steps must be >= 0, restarts >= 1 and queries >= 1, got steps={self.steps}, "
                             f"restarts={self.restarts}, queries={self.queries}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"Unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}.")
        if self.backend != "native" and self.name in MODES:
            raise ValueError(f"--{self.name} runs native attacks; leave --backend native "
                             f"(foolbox's minimal-norm attack is --backend foolbox --attack fmn).")

    @property
    def gradient_steps(self) -> int:
        """``steps`` as native attacks run them (a library attack given none: its default count, 10 for probes)."""
        return self.steps if self.steps is not None else DEFAULT_STEPS.get(self.name, 10)

    @property
    def query_budget(self) -> int:
        """``queries`` resolved (:data:`DEFAULT_QUERIES`)."""
        return self.queries if self.queries is not None else DEFAULT_QUERIES.get(self.name, 1000)

    @property
    def label(self) -> str:
        """The attack's name in condition names and default run folders (``art-apgd``, ``pgd``)."""
        return self.name if self.backend == "native" else f"{self.backend}-{self.name}"

    @property
    def kind(self) -> str:
        """The records' ``kind``: ``minimal`` for the minimal-ε search, else ``attack``."""
        return "minimal" if self.name == "minimal" else "attack"

    def settings(self) -> dict[str, Any]:
        """The fields of ``run.json``'s settings that this spec decides."""
        return {
            "attack": self.name, "backend": self.backend,
            **({"queries": self.queries} if self.name in ("square", "reliable") else {}),
            **({"targets": self.targets} if self.name in ("reliable", "apgd-t") else {}),
            **({"precision": self.precision} if self.precision != "fp32" else {}),
            **({"minimal_options": dict(self.options)} if self.name == "minimal" and self.options else {}),
            "steps": self.steps, "restarts": self.restarts,
        }
