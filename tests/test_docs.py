"""The documentation: every command has an example in docs/cli.md, and the Sphinx build (guide and
API reference from the docstrings) finishes without a warning."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from robustaudio.cli import main

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_command_is_documented_with_an_example():
    text = (DOCS / "cli.md").read_text()
    for name in main.commands:
        assert f"## `robustaudio {name}`" in text, f"docs/cli.md has no section for `robustaudio {name}`"
        assert re.search(rf"^robustaudio {re.escape(name)}\b", text, re.MULTILINE), \
            f"docs/cli.md has no example of `robustaudio {name}`"


# slow (about 45 s): the Sphinx build; run with -m slow, and by the README's docs command
@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    source = tmp_path / "docs"
    shutil.copytree(DOCS, source, ignore=shutil.ignore_patterns("_build", "_api"))
    build = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                            str(source), str(tmp_path / "html")], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    assert (tmp_path / "html" / "api.html").is_file()
    assert "robustaudio.attacks.pgd.pgd" in (tmp_path / "html" / "_api" / "robustaudio.attacks.pgd.html").read_text()
