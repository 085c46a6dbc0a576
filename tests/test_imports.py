"""The package's import graph: no circle, every module importable on its own, and the modules
that need no network (metrics, plots, report, the file formats, the registry, the CLI) do
not import torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "cosmo_sbi"
TORCH_FREE = ("cosmo_sbi.metrics", "cosmo_sbi.plots", "cosmo_sbi.report", "cosmo_sbi.outputs",
              "cosmo_sbi.dataset", "cosmo_sbi.histogram", "cosmo_sbi.models", "cosmo_sbi.cli",
              "cosmo_sbi.summary_table", "cosmo_sbi.models.configs",
              "cosmo_sbi.models.cnn_config", "cosmo_sbi.models.vit_config",
              "cosmo_sbi.learning_curve")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(_module_name(path) for path in PACKAGE.rglob("*.py")
                 if path.name != "__main__.py")  # __main__ runs the CLI


def _imports(path: Path) -> set[str]:
    """Package modules imported anywhere in ``path`` (top level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)  # `from pkg import submodule` imports pkg.submodule too
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES}


def import_graph() -> dict[str, set[str]]:
    """module -> package modules it imports (itself and its parent packages excluded: a
    package's __init__ runs before its submodules whatever they import)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        graph[name] = {target for target in _imports(path)
                       if target != name and not name.startswith(f"{target}.")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (a list of modules, first = last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_in_the_package():
    graph = import_graph()
    assert "cosmo_sbi.evaluate" in graph and "cosmo_sbi.metrics" in graph["cosmo_sbi.plots"]
    assert find_cycle(graph) is None


_FORK_EACH = """
import importlib, os, sys
# third-party libraries once, in the parent (speed); no module of the package
import astropy.table, h5py, matplotlib.pyplot, numpy, scipy.stats, torch, yaml
assert not any(name.startswith("cosmo_sbi") for name in sys.modules)
failures = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:  # a child with nothing of the package imported yet
        try:
            importlib.import_module(name)
        except BaseException as error:
            print(f"{name}: {type(error).__name__}: {error}", flush=True)
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1] != 0:
        failures.append(name)
sys.exit(1 if failures else 0)
"""


def test_every_module_imports_on_its_own():
    result = subprocess.run([sys.executable, "-c", _FORK_EACH, *MODULES], capture_output=True,
                            text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


def test_metrics_figures_report_formats_and_registry_do_not_import_torch():
    code = ("import importlib, sys\n"
            f"for name in {TORCH_FREE!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"
