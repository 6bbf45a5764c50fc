"""Sphinx configuration: the user guide (Markdown, via MyST) and an API reference generated from
the docstrings (autodoc + autosummary, Google-style sections via napoleon).

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (warnings are errors)."""

import pkgutil
from pathlib import Path

import robustaudio

project = "robustaudio"
author = "the robustaudio developers"
release = robustaudio.__version__
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
# Packages re-export their modules' names in __all__; document each object once, where it is defined.
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True,
                           "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_mock_imports = ["diffusers", "onnxruntime", "ray", "pyroomacoustics", "transformers", "foolbox", "art"]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
myst_heading_anchors = 3
html_theme = "alabaster"
html_title = f"robustaudio {release}"


def write_api_pages(root: Path = Path(__file__).parent / "_api") -> None:
    """One page per module of the package, each an ``automodule``. Generated rather than listed so a
    new module is documented without editing the docs; written by hand rather than by autosummary
    because packages re-export functions named like their modules (``attacks.pgd``)."""
    root.mkdir(exist_ok=True)
    names = ["robustaudio"] + sorted(m.name for m in pkgutil.walk_packages(robustaudio.__path__, "robustaudio.")
                                     if not m.name.endswith("__main__"))
    for name in names:
        page = f"{name}\n{'=' * len(name)}\n\n.. automodule:: {name}\n"
        path = root / f"{name}.rst"
        if not path.is_file() or path.read_text() != page:  # unchanged pages keep Sphinx's cache valid
            path.write_text(page)
    index = "API reference\n=============\n\nGenerated from the docstrings: one page per module.\n\n" \
            ".. toctree::\n   :maxdepth: 1\n\n" + "".join(f"   _api/{name}\n" for name in names)
    (root.parent / "api.rst").write_text(index)


write_api_pages()
