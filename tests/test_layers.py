"""Layers only point down: no module imports a package of a layer above its own (lazy imports included)."""

import ast
from pathlib import Path

import robustaudio

ROOT = Path(robustaudio.__file__).parent
# Lowest first. Modules of one layer may import each other. extras: optional imports; stats: bootstrap intervals;
# records: the records schema and every crash-safe file write (rows, JSON, reports, audio, checkpoints), which
# imports nothing of robustaudio, so that data, models and defenses write through it too; acoustics: rooms and
# mixing (jamming and the noise suite); studies: protocols of several runs and their reports; __main__:
# `python -m robustaudio`, the command.
LAYERS = ["extras", "stats", "records", "data", "models", "acoustics", "attacks", "metrics", "defenses", "runner",
          "report", "studies", "cli", "__main__"]


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return LAYERS.index(parts[1])


def imports(path: Path, module: str) -> list[tuple[str, int]]:
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            target = ".".join(p for p in (base, node.module or "") if p)
            names = [target] if node.module else [f"{target}.{alias.name}" for alias in node.names]
            found += [(name, node.lineno) for name in names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return [(name, line) for name, line in found if name.startswith("robustaudio")]


def test_every_import_points_down():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(("robustaudio", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
        own = layer_of(module)
        for target, line in imports(path, module):
            other = layer_of(target)
            if own is not None and other is not None and other > own:
                upward.append(f"{module}:{line} imports {target} ({LAYERS[own]} -> {LAYERS[other]})")
    assert not upward, "\n".join(upward)


def test_every_module_has_a_layer():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in ROOT.glob("*.py")} - {"__init__"}
    assert packages | modules <= set(LAYERS) | {"__init__"}, sorted((packages | modules) - set(LAYERS))


def test_layering_check_sees_an_upward_import(tmp_path):
    fake = tmp_path / "x.py"
    fake.write_text("import torch\nfrom ..runner import run_attack\nfrom ..report import records\n")
    found = imports(fake, "robustaudio.models.x")
    assert found == [("robustaudio.runner", 2), ("robustaudio.report", 3)]
    assert layer_of("robustaudio.records") < layer_of("robustaudio.runner") < layer_of("robustaudio.report")
