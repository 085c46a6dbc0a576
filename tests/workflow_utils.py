"""Run the real Snakemake workflow in a temporary folder (helpers for workflow tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from cosmo_sbi.config import deep_merge
from tests.conftest import REPO

TINY_PRESET = REPO / "config" / "tiny.yaml"
TINY_OVERLAY: dict = deep_merge(yaml.safe_load(TINY_PRESET.read_text()), {
    "design": {"fiducial": {"n_simulations": 2}, "derivatives": {"n_seeds": 0}},
    "simulator": {"embedded": {"grid_size": 32}},
    "histogram": {"bins": [8, 8, 8]},
    "posterior": {"methods": []},
})
"""The CI preset config/tiny.yaml (small networks, one epoch) with 4 + 2 light cones, no
Fisher derivative set and no posteriors (an edited prior box can leave one validation
cosmology, too few for the NPE), a 32^3 simulation grid (L = 1500 Mpc/h, so the default cone still
fits) and 8^3 histograms: the workflow tests of the simulation and histogram stages take
seconds instead of minutes (the Fisher stage has its own workflow test)."""


def snakemake_env() -> dict[str, str]:
    """Environment whose PATH finds this interpreter's `cosmo-sbi` and `snakemake`."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def write_overlay(folder: Path, overlay: dict, name: str = "overlay.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(overlay))
    return path


def run_snakemake(
    workdir: Path, overlay: Path, *extra: str, check: bool = True,
    env_extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``snakemake`` on the repository's Snakefile in ``workdir`` with ``overlay``."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--configfile", str(overlay), "--cores", "2",
               *extra]
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**snakemake_env(), **(env_extra or {})}, cwd=workdir)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def modification_times(folder: Path) -> dict[str, int]:
    """mtime [ns] of every file under ``folder``, keyed by relative path."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in folder.rglob("*") if p.is_file()}
