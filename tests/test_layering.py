"""The house's layering, read from the source (nothing is imported): the library never imports the experiment
layer or the command line; the experiment layer never imports argparse or the command line; and no error
outside the command line names a --flag (the library and the pipelines name Python parameters)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "spgd"
FRONTS = ("cli", "app", "__main__.py")  # the command line (python -m spgd, a web app): they may import anything
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")


def _module(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path) -> set[str]:
    """Every module `path` imports, as absolute names (relative imports resolved, `from . import x` as .x)."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            out.update([name] if node.module else (f"{name}.{a.name}" for a in node.names))
    return out


def _room(path: Path, root: Path) -> str:
    rel = path.relative_to(root).parts
    return rel[0] if len(rel) > 1 or rel[0] == "__main__.py" else "library"


def layering_violations(root: Path = SRC) -> list[str]:
    """One line per forbidden import or flag-naming error under `root` (the spgd package)."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        room = _room(path, root)
        if room in FRONTS:
            continue
        imports = _imports(path, root)
        name = path.relative_to(root.parent)
        for imp in sorted(imports):
            if imp == "spgd.cli" or imp.startswith("spgd.cli."):
                bad.append(f"{name} imports {imp} (only the command line knows the command line)")
            elif room != "experiment" and (imp == "spgd.experiment" or imp.startswith("spgd.experiment.")):
                bad.append(f"{name} imports {imp} (the library never imports the experiment layer)")
            elif room == "experiment" and imp == "argparse":
                bad.append(f"{name} imports argparse (pipelines take typed plans)")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for const in ast.walk(node.exc):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str) and FLAG.search(const.value):
                        bad.append(f"{name}:{node.lineno} raises an error naming {FLAG.search(const.value).group()}")
    return bad


def test_the_layers_hold():
    assert layering_violations() == []


@pytest.mark.parametrize("room,line,what", [
    ("operators/extra.py", "from ..experiment.runs import new_run_dir", "never imports the experiment layer"),
    ("samplers/extra.py", "import spgd.cli.options", "only the command line"),
    ("experiment/extra.py", "import argparse", "imports argparse"),
    ("experiment/extra.py", "from ..cli import main", "only the command line"),
    ("training/extra.py", 'raise ValueError("--steps must be >= 1")', "naming --steps"),
])
def test_a_forbidden_import_is_caught(tmp_path, room, line, what):
    """The check itself: a copy of the package with one forbidden line fails it."""
    import shutil

    root = tmp_path / "spgd"
    shutil.copytree(SRC, root, ignore=shutil.ignore_patterns("*.pt", "*.png", "__pycache__"))
    (root / room).write_text(line + "\n")
    found = layering_violations(root)
    assert len(found) == 1 and what in found[0], found
