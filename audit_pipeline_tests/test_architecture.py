"""Imports only go down (pyproject.toml's import-linter contracts), and the check does catch an upward import."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
LAYERS = next(c for c in CONFIG["contracts"] if c["type"] == "layers")


def _layers() -> list[grimp.Layer]:
    return [grimp.Layer(*(name.strip() for name in layer.split("|"))) for layer in LAYERS["layers"]]


def _graph() -> grimp.ImportGraph:
    graph = grimp.build_graph("audit_pipeline", cache_dir=None, exclude_type_checking_imports=True)
    for ignored in LAYERS.get("ignore_imports", []):
        importer, imported = (part.strip() for part in ignored.split("->"))
        graph.remove_import(importer=importer, imported=imported)
    return graph


def test_the_import_contracts_are_kept():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_layers_as_configured_hold():
    assert _graph().find_illegal_dependencies_for_layers(layers=_layers(), containers=set(LAYERS["containers"])) == set()


def test_an_upward_import_breaks_the_layers():
    graph = _graph()
    graph.add_import(
        importer="audit_pipeline.core.schema", imported="audit_pipeline.cli.app", line_number=1, line_contents="from audit_pipeline.cli import app"
    )
    broken = graph.find_illegal_dependencies_for_layers(layers=_layers(), containers=set(LAYERS["containers"]))
    assert {(d.importer, d.imported) for d in broken} == {("audit_pipeline.core", "audit_pipeline.cli")}


def test_every_package_has_an_init_so_the_contracts_see_it():
    """A folder without ``__init__.py`` is a namespace package, which the import graph leaves out unchecked."""
    package = REPO / "audit_pipeline"
    missing = [
        str(d.relative_to(REPO))
        for d in package.rglob("*")
        if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py")) and not (d / "__init__.py").exists()
    ]
    assert not missing, f"add an __init__.py to {missing}"
