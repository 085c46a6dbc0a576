"""Run the real Snakemake workflow in a temporary folder (helpers for workflow tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO

# A tiny embedded-simulator configuration: a handful of light cones on a 32^3 grid
# (L = 1500 Mpc/h, so the default cone still fits), an 8^3 histogram and the small
# networks (the paper CNN needs a grid of at least 32, checked at DAG start).
TINY_OVERLAY: dict = {
    "design": {"latin_hypercube": {"n_simulations": 4}, "fiducial": {"n_simulations": 2}},
    "simulator": {"embedded": {"grid_size": 32}},
    "histogram": {"bins": [8, 8, 8]},
    "models": {"cnn": {"preset": "small"}, "vit": {"preset": "small"}},
}


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
