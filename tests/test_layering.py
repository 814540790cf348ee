"""The package layering of DESIGN.md, checked on the import graph (every import statement, including the ones
inside functions), not on strings: data flows manifests -> curation -> shards -> training -> inference, and the
shard contract (``shards``) and media I/O (``media``) sit below everything that reads or writes shards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("devices", "manifests", "media", "shards", "curation", "training", "inference", "vidrd")
# package -> packages it must never import (directly or inside a function)
FORBIDDEN = {
    "devices": {"manifests", "media", "shards", "curation", "training", "inference", "vidrd"},
    "manifests": {"media", "shards", "curation", "training", "inference", "vidrd"},
    "media": {"manifests", "shards", "curation", "training", "inference", "vidrd"},
    "shards": {"curation", "training", "inference", "vidrd"},
    "curation": {"training", "inference", "vidrd"},
    "training": {"curation", "inference", "vidrd"},
    "inference": {"curation", "vidrd"},
}


def imports_of(path: Path) -> set[str]:
    """Top-level package names that ``path`` imports (absolute imports; relative ones stay in the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            edges[str(f.relative_to(ROOT))] = imports_of(f) & set(PACKAGES)
    return edges


@pytest.mark.parametrize("pkg", sorted(FORBIDDEN))
def test_no_import_against_the_flow(pkg):
    bad = {f: sorted(deps & FORBIDDEN[pkg]) for f, deps in graph().items() if f.startswith(pkg + "/")}
    assert not {f: d for f, d in bad.items() if d}, f"{pkg} imports a later or unrelated layer"


def test_the_checker_sees_function_level_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def late():\n    from curation.stage import Rejected\n    import training.data\n")
    assert imports_of(f) == {"curation", "training"}


def test_every_package_is_checked():
    assert all((ROOT / p / "__init__.py").exists() for p in PACKAGES)
    assert sum(1 for f in graph() if f.startswith(("shards/", "media/"))) >= 4


def test_test_modules_do_not_import_each_other():
    tests = ROOT / "tests"
    bad = {}
    for f in tests.glob("test_*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests.test_"):
                bad[f.name] = node.module
    assert not bad, f"shared test helpers belong in tests/helpers.py: {bad}"


def prints_in(path: Path) -> list[int]:
    """Lines of ``path`` that call the built-in ``print``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [n.lineno for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"]  # fmt: skip


def is_command(path: Path) -> bool:
    """A module whose job is a command's output: a CLI module, the ``vidrd`` package, the shard inspection
    commands, or a script run as ``python -m``."""
    rel = path.relative_to(ROOT).as_posix()
    return (rel.endswith("cli.py") or rel.startswith("vidrd/") or rel == "curation/inspect/commands.py"
            or '__name__ == "__main__"' in path.read_text())  # fmt: skip


def test_library_code_logs_and_only_commands_print():
    printing = {
        str(f.relative_to(ROOT)): prints_in(f)
        for pkg in PACKAGES
        for f in (ROOT / pkg).rglob("*.py")
        if not is_command(f)
    }
    assert not {f: lines for f, lines in printing.items() if lines}, "library modules log (logging.getLogger)"


def test_the_print_check_sees_a_print(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    x = 1\n    print(x)\n")
    assert prints_in(f) == [3]
