"""Start-up cost per `cosmo-sbi` subcommand: `--help` wall time, and the wall and CPU
time of a fresh interpreter importing what the stage runs on (best of a few; on a loaded
machine the CPU time is the steadier figure).

    PYTHONPATH=. python benchmarks/bench_startup.py [--repeats 3]

Every block job pays the stage's import once; `--help` imports only the CLI.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

# the module each subcommand's handler imports (cosmo_sbi/cli.py)
STAGE_MODULES = {
    "design": "cosmo_sbi.design",
    "simulate": "cosmo_sbi.simulators.embedded",
    "pinocchio-setup": "cosmo_sbi.simulators.pinocchio",
    "histogram": "cosmo_sbi.histogram",
    "dataset": "cosmo_sbi.dataset",
    "train": "cosmo_sbi.train",
    "evaluate": "cosmo_sbi.evaluate",
    "report": "cosmo_sbi.report",
}
IMPORT = "import cosmo_sbi.cli, cosmo_sbi.config, {module}"


def best_times(command: list[str], repeats: int) -> tuple[float, float]:
    """Minimum wall and CPU (user + system) time [s] of running ``command``."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        # from outside any checkout: PYTHONPATH (or the installation) picks the package
        subprocess.run(command, check=True, capture_output=True, cwd=tempfile.gettempdir())
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    bare, _ = best_times([sys.executable, "-c", "pass"], args.repeats)
    print(f"{'stage':<16} {'--help wall':>11} {'import wall':>11} {'import CPU':>10}   "
          f"[s] (bare python: {bare:.2f} s)")
    for stage, module in STAGE_MODULES.items():
        helped, _ = best_times([sys.executable, "-m", "cosmo_sbi", stage, "--help"],
                               args.repeats)
        wall, cpu = best_times([sys.executable, "-c", IMPORT.format(module=module)],
                               args.repeats)
        print(f"{stage:<16} {helped:>11.2f} {wall:>11.2f} {cpu:>10.2f}")


if __name__ == "__main__":
    main()
