"""Build the notebooks from their sources and execute them, keeping outputs and figures.

Each notebook's source is a plain Python file in jupytext's percent format (``NN_name.py``: ``# %%``
starts a code cell, ``# %% [markdown]`` a text cell), so it reads and diffs as code; the ``.ipynb``
beside it is built from it. Usage: ``python notebooks/build.py [NN_name.py ...]`` (default: all).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def sources() -> list[Path]:
    return sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))


def load(source: Path) -> nbformat.NotebookNode:
    """The notebook of a percent-format source, with a python3 kernel and no outputs."""
    notebook = jupytext.read(source, fmt="py:percent")
    notebook.metadata["kernelspec"] = KERNEL
    notebook.metadata.pop("jupytext", None)
    return notebook


def execute(notebook: nbformat.NotebookNode, timeout: int = 900) -> nbformat.NotebookNode:
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    return notebook


def main(names: list[str]) -> None:
    for source in [HERE / n for n in names] or sources():
        start = time.perf_counter()
        notebook = execute(load(source))
        nbformat.write(notebook, source.with_suffix(".ipynb"))
        print(f"{source.with_suffix('.ipynb').name}: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
