"""The laptop DAG end to end, stage by stage: `snakemake --cores N --until <stage>` for each
stage in order in a fresh folder, wall and CPU time (Snakemake and its jobs) per stage and
in all, the jobs each stage ran and the load average.

    python benchmarks/bench_laptop.py [--configfile config/laptop.yaml] [--cores 2]
                                      [--directory DIR] [--repository PATH]

Every stage is its own Snakemake process, so each row includes one parse of the Snakefile;
"rest" is the default target (jobs no stage reached: none unless a stage was added), the
last row a dry run with nothing left to do: that parse alone. ``--repository``
measures another checkout (its Snakefile, package and preset) for a before/after comparison on the
same machine state; ``--directory`` keeps the outputs (a fresh temporary folder otherwise).
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

REPO = Path(__file__).resolve().parents[1]
STAGES: tuple[str, ...] = ("design", "lightcones", "histogram", "dataset", "summaries",
                           "fisher", "train", "evaluate", "posterior", "report")
"""Rule names for --until, in the order the DAG reaches them (lightcones and histogram
are the aggregate rules of the block jobs; posterior includes network_summaries)."""


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_stage(repository: Path, directory: Path, configfile: Path, cores: int,
              *args: str) -> tuple[float, float, int]:
    """(wall [s], CPU [s], jobs run) of one `snakemake` invocation."""
    command = [sys.executable, "-m", "snakemake", "--cores", str(cores), "-s",
               str(repository / "Snakefile"), "--directory", str(directory),
               "--configfile", str(configfile), *args]
    env = {**os.environ, "PYTHONPATH": str(repository)}
    cpu, start = children_cpu(), time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=repository)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)}: snakemake failed ({result.returncode}):\n"
                 f"{result.stderr[-3000:]}")
    done = re.findall(r"^(\d+) of \d+ steps \(\d+%\) done", result.stderr, re.M)
    return wall, children_cpu() - cpu, int(done[-1]) if done else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=None,
                        help="default: the measured checkout's config/laptop.yaml")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--directory", type=Path, default=None)
    parser.add_argument("--repository", type=Path, default=REPO)
    args = parser.parse_args()
    repository = args.repository.resolve()
    configfile = (args.configfile or repository / "config" / "laptop.yaml").resolve()
    print(f"{repository} ({configfile.name}, --cores {args.cores}); {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    print(f"{'stage':<12}{'jobs':>6}{'wall [s]':>10}{'CPU [s]':>10}{'load (1 min)':>14}")
    with tempfile.TemporaryDirectory() as temporary:
        directory = (args.directory or Path(temporary)).resolve()
        total_wall = total_cpu = 0.0
        total_jobs = 0
        # the default target last: any job no stage above reached (a stage added later)
        for stage in (*STAGES, "rest"):
            until = () if stage == "rest" else ("--until", stage)
            wall, cpu, jobs = run_stage(repository, directory, configfile, args.cores, *until)
            total_wall, total_cpu, total_jobs = (total_wall + wall, total_cpu + cpu,
                                                 total_jobs + jobs)
            print(f"{stage:<12}{jobs:>6}{wall:>10.1f}{cpu:>10.1f}{os.getloadavg()[0]:>14.2f}",
                  flush=True)
        print(f"{'all':<12}{total_jobs:>6}{total_wall:>10.1f}{total_cpu:>10.1f}")
        wall, cpu, _ = run_stage(repository, directory, configfile, args.cores, "-n")
        print(f"{'(dry run)':<12}{0:>6}{wall:>10.1f}{cpu:>10.1f}   one parse, nothing to do")


if __name__ == "__main__":
    main()
