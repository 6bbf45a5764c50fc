"""Issue 21's scoreboard at a glance: every reading as a point (random-music F1, adversarial F1).

Usage::

    python experiments/jam_scoreboard.py            # writes experiments/jam_scoreboard.png

It reads the three tables of ``experiments/jam_scoreboard.md`` (the page stays the one place the numbers
live) and draws one panel per bullet. A bullet is met where a point lies in the shaded corner: random music
at the same level keeps F1 >= 0.70 (right of the dashed line) and the adversarial music is at or under the
bullet's bound (below the dotted line). Filled markers are blind readings; hollow ones were tuned on the
speech they were scored on, or heard it (development engines, follow-ups, second looks). Where a row gives
several optimiser seeds ("a / b"), each is a point joined by a vertical line. Rows that could not be read
(no random-music number) are left out, and so are rows whose adversarial cell holds no number.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from robustaudio.report import style

HERE = Path(__file__).resolve().parent
RANDOM_FLOOR = 0.70
PANELS = (  # (table heading starts with, panel title, bound on the adversarial F1, adversarial column)
    ("## Held-out engine", "held-out engine (openWakeWord)", 0.15, "adversarial"),
    ("## Transfer", "transfer (microWakeWord, never queried)", 0.50, "masking loop"),
    ("## Query", "query (microWakeWord, 20,000 queries)", 0.15, "query loop"),
)
NUMBER = re.compile(r"(?<![\w.−-])(\d\.\d+)")


@dataclass(frozen=True)
class Reading:
    """One scoreboard row: the set scored, whether it was blind, random-music F1 and the adversarial F1s."""

    label: str
    blind: bool
    random: float
    adversarial: tuple[float, ...]


def numbers(cell: str) -> list[float]:
    """The F1 values of a cell, before any parenthesis (which holds seeds not counted or an aside)."""
    return [float(x) for x in NUMBER.findall(cell.split("(")[0])]


def short_label(scored_on: str, word: str) -> str:
    """``"recorded people (...)"`` → ``"recorded people"``, plus the word where the table has one."""
    name = re.sub(r"\*\*|\(.*?\)|`", "", scored_on).split(",")[0].strip()
    return f"{name} · {word}" if word else name


def read_tables(text: str) -> dict[str, list[Reading]]:
    """The readings of each of :data:`PANELS`' tables in ``jam_scoreboard.md``'s ``text``."""
    out: dict[str, list[Reading]] = {}
    for heading, _, _, column in PANELS:
        block = text.split(heading, 1)[1].split("\n## ", 1)[0]
        rows = [line for line in block.splitlines() if line.startswith("|")]
        header = [c.strip() for c in rows[0].strip("|").split("|")]
        readings = []
        for line in rows[2:]:
            cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=False))
            random, adversarial = numbers(cells.get("random", "")), numbers(cells.get(column, ""))
            if not random or not adversarial:
                continue
            word = "hey_jarvis" if "hey_jarvis" in cells.get("word, level", "") else (
                "alexa" if "alexa" in cells.get("word, level", "") else "")
            blind = cells["how"].strip().startswith("blind")
            names = re.sub(r"\(.*?\)", "", cells["scored on"]).split(" / ")
            if len(names) == len(random) == len(adversarial) > 1:  # "flite / Festival": one set per number
                readings += [Reading(short_label(n, word), blind, r, (a,))
                             for n, r, a in zip(names, random, adversarial, strict=True)]
            else:
                readings.append(Reading(short_label(cells["scored on"], word), blind, random[0], tuple(adversarial)))
        out[heading] = readings
    return out


def place_labels(points: list[tuple[float, float, str]], char_width: float = 0.0105,
                 height: float = 0.036) -> list[tuple[float, float]]:
    """Label positions (data units) that do not overlap: each starts right of its point and moves up
    (then down) in steps of ``height`` until its box is free. ``points``: ``(x, y, text)``."""
    placed: list[tuple[float, float, float]] = []  # x0, x1, y of labels already set
    out = []
    for x, y, text in points:
        x0, x1 = x + 0.008, x + 0.008 + char_width * len(text)
        for k in range(40):
            ty = y + (k + 1) // 2 * height * (1 if k % 2 else -1)
            if not any(a < x1 and x0 < b and abs(ty - c) < height for a, b, c in placed):
                break
        placed.append((x0, x1, ty))
        out.append((x0, ty))
    return out


def draw(tables: dict[str, list[Reading]], path: Path) -> None:
    """One panel per bullet; the met corner shaded; blind readings filled, the others hollow."""
    fig, axes = style.figure(1, 3, width=14.0, height=5.6, sharey=True)
    for ax, (heading, title, bound, _) in zip(axes.flat, PANELS, strict=True):
        ax.fill_between([RANDOM_FLOOR, 1.1], -0.08, bound, color=style.SERIES[2], alpha=0.12, zorder=0)
        ax.axvline(RANDOM_FLOOR, color=style.CLEAN, linestyle="--", linewidth=1)
        ax.axhline(bound, color=style.CLEAN, linestyle=":", linewidth=1)
        readings = sorted(tables[heading], key=lambda r: min(r.adversarial))
        spots = place_labels([(r.random, min(r.adversarial), r.label) for r in readings])
        for reading, (lx, ly) in zip(readings, spots, strict=True):
            colour = style.ROBUST if reading.blind else style.CLEAN
            ys = reading.adversarial
            if len(ys) > 1:
                ax.plot([reading.random] * 2, [min(ys), max(ys)], color=colour, linewidth=1)
            ax.scatter([reading.random] * len(ys), ys, s=28, zorder=3, edgecolors=colour,
                       facecolors=colour if reading.blind else "white")
            ax.annotate(reading.label, (reading.random, min(ys)), xytext=(lx, ly), textcoords="data",
                        fontsize=6.5, color=colour, va="center",
                        arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 0.4, "alpha": 0.6})
        ax.set_xlim(0.3, 1.1)
        ax.set_ylim(-0.08, 1.02)
        ax.set_title(f"{title}\nmet in the shaded corner (F1 ≤ {bound:.2f}, random ≥ {RANDOM_FLOOR:.2f})")
        ax.set_xlabel("random music F1 at the same level (control)")
    axes[0, 0].set_ylabel("adversarial music F1 (filled: blind; hollow: tuned on it or heard it)")
    style.finish(fig)
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--board", type=Path, default=HERE / "jam_scoreboard.md")
    parser.add_argument("--out", type=Path, default=HERE / "jam_scoreboard.png")
    args = parser.parse_args()
    tables = read_tables(args.board.read_text())
    for heading, readings in tables.items():
        print(heading.lstrip("# "))
        for r in readings:
            how = "blind" if r.blind else "not blind"
            adversarial = " / ".join(f"{a:.3f}" for a in r.adversarial)
            print(f"  {r.label:45s} {how:9s} random {r.random:.3f}  adversarial {adversarial}")
    draw(tables, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
