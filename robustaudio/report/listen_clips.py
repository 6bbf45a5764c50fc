"""Which clips to listen to: the attack condition that teaches the most (:func:`teaching_condition`) and
the clips chosen in it (:func:`choose_clips`, at most :data:`MAX_EXAMPLES`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

MAX_EXAMPLES = 6


def teaching_condition(card: dict, records: pd.DataFrame) -> dict | None:
    """The fixed-budget attack condition whose attacked clips are most evenly split into broken and robust
    (ties: the larger budget)."""
    best, best_key = None, None
    for c in card["conditions"]:
        if c.get("kind") == "noise":
            continue
        rows = records[(records["condition"] == c["condition"]) & (records["attacked"] == True)]  # noqa: E712
        broken = int((rows["success"] == True).sum())  # noqa: E712
        key = (min(broken, len(rows) - broken), len(rows), c["eps"] or 0, -(c["snr_db"] or 0))
        if len(rows) and (best_key is None or key > best_key):
            best, best_key = c, key
    return best


def choose_clips(records: pd.DataFrame, condition: str, count: int = MAX_EXAMPLES) -> list[tuple[pd.Series, str]]:
    """Clips to teach with: the one broken by the quietest perturbation, the one that stays the most confident,
    then one per class not yet shown (broken and robust in turn), up to ``count``."""
    rows = records[(records["condition"] == condition) & (records["attacked"] == True)].copy()  # noqa: E712
    rows["snr"] = pd.to_numeric(rows["snr_db"], errors="coerce").fillna(-np.inf)
    rows["score"] = pd.to_numeric(rows["adv_score"], errors="coerce").fillna(-np.inf)
    broken = rows[rows["success"] == True].sort_values("snr", ascending=False, kind="stable")  # noqa: E712
    robust = rows[rows["success"] != True].sort_values("score", ascending=False, kind="stable")  # noqa: E712
    chosen: list[tuple[pd.Series, str]] = []
    seen: set[str] = set()

    def take(row: pd.Series, why: str) -> None:
        chosen.append((row, why))
        seen.add(row["clip_id"])

    if len(broken):
        take(broken.iloc[0], "broken by the quietest perturbation")
    if len(robust):
        take(robust.iloc[0], "still robust: the most confident under attack")
    labels = sorted(set(rows["label"]) - {row["label"] for row, _ in chosen})
    turn = 0
    while len(chosen) < count and labels:
        for label in list(labels):
            if len(chosen) >= count:
                break
            order = [(broken, "broken"), (robust, "robust")]
            pools = order[turn % 2:] + order[:turn % 2]
            for pool, kind in pools:
                left = pool[(pool["label"] == label) & ~pool["clip_id"].isin(seen)]
                if len(left):
                    take(left.iloc[0], f"{kind}, for class {label}")
                    turn += 1
                    break
            labels.remove(label)
    for pool, kind in ((broken, "broken"), (robust, "robust")):  # fewer classes than examples: fill up
        for _, row in pool.iterrows():
            if len(chosen) >= count:
                break
            if row["clip_id"] not in seen:
                take(row, kind)
    return chosen
