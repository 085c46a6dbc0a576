"""Start-up cost per `cosmo-sbi` subcommand: `--help` wall time and the import time of
the modules the stage runs on (each in a fresh interpreter, best of a few).

    python benchmarks/bench_startup.py [--repeats 3]

Every block job pays the stage's import once; `--help` imports only the CLI.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
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
IMPORT_TIMER = ("import time; start = time.perf_counter(); import cosmo_sbi.cli, cosmo_sbi.config, "
                "{module}; print(time.perf_counter() - start)")


def best_wall(command: list[str], repeats: int) -> float:
    """Minimum wall time [s] of running ``command`` ``repeats`` times."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        timings.append(time.perf_counter() - start)
    return min(timings)


def best_import(module: str, repeats: int) -> float:
    """Minimum time [s] to import the CLI, the config loader and ``module``."""
    return min(float(subprocess.run([sys.executable, "-c", IMPORT_TIMER.format(module=module)],
                                    check=True, capture_output=True, text=True).stdout)
               for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    bare = best_wall([sys.executable, "-c", "pass"], args.repeats)
    print(f"{'stage':<16} {'--help [s]':>10} {'imports [s]':>11}   (bare python: {bare:.2f} s)")
    for stage, module in STAGE_MODULES.items():
        helped = best_wall([sys.executable, "-m", "cosmo_sbi", stage, "--help"], args.repeats)
        imported = best_import(module, args.repeats)
        print(f"{stage:<16} {helped:>10.2f} {imported:>11.2f}")


if __name__ == "__main__":
    main()
