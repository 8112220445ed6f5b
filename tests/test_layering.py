"""The write side stands alone: episodes/ imports neither projections, admin nor flask.

Checked on the syntax tree, so an import hidden inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "episodes": {"projections", "admin", "flask"},
    "projections": {"admin", "flask"},
}


def imported_top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_point_one_way(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_top_level_names(path) & FORBIDDEN[package])
        for path in files
    }
    offenders = {path: names for path, names in offenders.items() if names}
    assert offenders == {}, f"{package}/ must not import {sorted(FORBIDDEN[package])}"


def test_the_check_sees_a_forbidden_import(tmp_path):
    # Check the checker itself: a nested import of flask is found.
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from flask import Flask\n    import admin.views\n")
    assert imported_top_level_names(module) == {"flask", "admin"}


def test_no_unused_or_undefined_names_and_sorted_imports():
    # Pyflakes-class errors (unused imports, undefined names) and import order, by ruff.
    import shutil
    import subprocess
    import sys

    ruff = Path(sys.executable).parent / "ruff"
    executable = str(ruff) if ruff.exists() else shutil.which("ruff")
    assert executable, "ruff is part of the dev extra"
    result = subprocess.run(
        [executable, "check", "--select", "F,I", "episodes", "projections", "admin", "tests"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
