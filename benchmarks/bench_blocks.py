"""Light cones in one process per block vs one process each (`cosmo-sbi simulate`).

    python benchmarks/bench_blocks.py [--count 100] [--grid 128]

Prints the wall time of both, the simulation time the processes logged, and the overhead
per light cone (wall minus simulation: start-up, config, design, writing) of each.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SIMULATED = re.compile(r"halos in ([0-9.]+) s")


def run(command: list[str]) -> tuple[float, float]:
    """(wall [s], sum of logged simulation times [s]) of one `cosmo-sbi` command."""
    start = time.perf_counter()
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    return wall, sum(float(seconds) for seconds in SIMULATED.findall(result.stderr))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="light cones")
    parser.add_argument("--grid", type=int, default=128, help="simulator.embedded.grid_size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        overlay = work / "overlay.yaml"
        overlay.write_text(yaml.safe_dump({
            "design": {"fiducial": {"n_simulations": args.count}},
            "simulator": {"embedded": {"grid_size": args.grid}}}))
        cli = [sys.executable, "-m", "cosmo_sbi"]
        config = ["--config", str(REPO / "config.yaml"), "--config", str(overlay)]
        design = work / "fiducial.ecsv"
        subprocess.run([*cli, "design", *config, "--set", "fiducial", "--output", str(design)],
                       check=True)
        ids = [f"{index:04d}" for index in range(args.count)]
        simulate = [*cli, "simulate", *config, "--design", str(design)]
        print(f"{args.count} light cones at {args.grid}^3; load average "
              f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        single_wall = single_sim = 0.0
        for sim_id in ids:
            wall, sim = run([*simulate, "--id", sim_id, "--output", str(work / f"s{sim_id}.h5")])
            single_wall, single_sim = single_wall + wall, single_sim + sim
        block_wall, block_sim = run([*simulate, "--id", *ids, "--output",
                                     *(str(work / f"b{sim_id}.h5") for sim_id in ids)])
        for label, wall, sim in (("one process each", single_wall, single_sim),
                                 ("one block", block_wall, block_sim)):
            print(f"{label:<17} wall {wall:7.1f} s  simulation {sim:7.1f} s  overhead per "
                  f"light cone {(wall - sim) / args.count:5.2f} s")
        print(f"ratio of walls (one each / block): {single_wall / block_wall:.2f}")


if __name__ == "__main__":
    main()
