"""The real DAG from design to histograms: wall and CPU of `snakemake --cores N histogram`
for a preset's Latin-hypercube + fiducial light cones, and light cones per minute.

    python benchmarks/bench_dag_real.py [--configfile config/seed.yaml] [--cores 2]
                                        [--limit 100] [--block-size 1] [--directory DIR]

``--limit`` keeps the preset's grid but only that many simulations in all (100 fiducial at
most, the rest Latin-hypercube), for a quick run or a one-job-per-light-cone baseline
(``--block-size 1``) at an affordable count. ``--directory`` keeps the outputs (a later
`snakemake --directory DIR ...` resumes from them); a fresh temporary folder otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def overlay_for(configfile: Path, limit: int | None, block_size: int | None) -> dict:
    """The preset, cut to ``limit`` simulations and given ``block_size`` where asked."""
    overlay = yaml.safe_load(configfile.read_text()) or {}
    design = overlay.setdefault("design", {})
    design["derivatives"] = {"n_seeds": 0}  # Latin hypercube + fiducial only
    if limit is not None:
        n_fiducial = min(100, limit // 11)
        design["fiducial"] = {**design.get("fiducial", {}), "n_simulations": n_fiducial}
        design["latin_hypercube"] = {**design.get("latin_hypercube", {}),
                                     "n_simulations": limit - n_fiducial}
        overlay["posterior"] = {**overlay.get("posterior", {}), "methods": []}
    if block_size is not None:
        overlay.setdefault("simulator", {})["block_size"] = block_size
    return overlay


def run_histograms(directory: Path, overlay: dict, cores: int) -> tuple[float, float, int]:
    """(wall [s], CPU of Snakemake and its jobs [s], jobs run) of the histogram target."""
    path = directory / "bench-overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    command = [sys.executable, "-m", "snakemake", "histogram", "--cores", str(cores), "-s",
               str(REPO / "Snakefile"), "--directory", str(directory), "--configfile",
               str(path)]
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if result.returncode != 0:
        sys.exit(f"snakemake failed ({result.returncode}):\n{result.stderr[-3000:]}")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    done = re.findall(r"(\d+) of (\d+) steps \(100%\) done", result.stderr)
    return wall, cpu, int(done[-1][0]) if done else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=REPO / "config" / "seed.yaml")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="simulations in all")
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--directory", type=Path, default=None)
    args = parser.parse_args()
    overlay = overlay_for(args.configfile, args.limit, args.block_size)
    n_cones = sum(overlay["design"][name]["n_simulations"]
                  for name in ("latin_hypercube", "fiducial"))
    print(f"{args.configfile.name}: {n_cones} light cones, block size "
          f"{overlay.get('simulator', {}).get('block_size', 'default')}, {args.cores} cores, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.directory or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        wall, cpu, jobs = run_histograms(directory.resolve(), overlay, args.cores)
    print(f"{jobs} jobs in {wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU: "
          f"{60 * n_cones / wall:.0f} light cones + histograms per minute, "
          f"{wall / n_cones:.2f} s wall per light cone; load average after "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
