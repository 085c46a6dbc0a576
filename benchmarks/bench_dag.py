"""Snakemake's own cost: wall and CPU time of a dry run (`snakemake -n`) of the whole
paper-scale DAG (config.yaml) at 1100 and 10,000 simulations, and its CPU per job.

    python benchmarks/bench_dag.py [--counts 1100 10000] [--block-size 10]
                                   [--repository PATH_TO_ANOTHER_CHECKOUT]

``--repository`` measures another checkout (its Snakefile and package), e.g. the commit
before blocks, for a before/after comparison on the same machine state.
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


def dry_run(repository: Path, overlay: dict) -> tuple[float, float, int]:
    """(wall [s], CPU [s], planned jobs) of `snakemake -n` in a fresh folder."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "overlay.yaml"
        path.write_text(yaml.safe_dump(overlay))
        command = [sys.executable, "-m", "snakemake", "-n", "--cores", "2", "-s",
                   str(repository / "Snakefile"), "--directory", folder,
                   "--configfile", str(path)]
        env = {**os.environ, "PYTHONPATH": str(repository)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(command, check=True, capture_output=True, text=True, env=env,
                                cwd=repository)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    jobs = int(re.findall(r"^total\s+(\d+)$", result.stdout, re.M)[-1])
    return wall, cpu, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1100, 10000],
                        help="simulations in all (100 of them fiducial)")
    parser.add_argument("--block-size", type=int, default=None,
                        help="simulator.block_size (default: the checkout's config)")
    parser.add_argument("--repository", type=Path, default=REPO)
    args = parser.parse_args()
    print(f"{args.repository}: load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for count in args.counts:
        overlay: dict = {"design": {"latin_hypercube": {"n_simulations": count - 100},
                                    "fiducial": {"n_simulations": 100}}}
        if args.block_size is not None:
            overlay["simulator"] = {"block_size": args.block_size}
        wall, cpu, jobs = dry_run(args.repository, overlay)
        print(f"{count:>6} simulations: {jobs:>6} jobs, dry run {wall:6.1f} s wall, "
              f"{cpu:6.1f} s CPU, {1e3 * cpu / jobs:6.2f} ms CPU per job")


if __name__ == "__main__":
    main()
