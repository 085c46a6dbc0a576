"""Seconds and peak memory per light cone of the embedded simulator, per mode and grid size.

Each (mode, N) runs in a fresh process (so the peak resident memory is its own) on the
default window (-20..20 deg, 0.28 < z_cos < 0.82) in an L = 1500 Mpc/h box at the
fiducial cosmology, and prints wall seconds, CPU seconds, peak RSS, the memory estimate
used by the simulator's pre-flight check, bytes per cell and the number of halos.
Targets on a 2-core machine: sample at N = 256 in <= 10 s and <= 1 GB, N = 128 in <= 2 s;
bytes per cell roughly constant in N (memory grows as N^3).

    python benchmarks/bench_embedded.py [--modes sample peaks] [--grids 128 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def run_one(mode: str, grid_size: int, threads: int) -> dict[str, float]:
    """Simulate one light cone in this process; return its timings and peak memory."""
    from cosmo_sbi.config import load_config
    from cosmo_sbi.cosmology import Cosmology
    from cosmo_sbi.simulators.embedded import EmbeddedSettings, simulate_halos
    from cosmo_sbi.simulators.embedded.geometry import ConeWindow
    from cosmo_sbi.simulators.embedded.simulate import required_memory_bytes

    config = load_config(["config.yaml"])
    settings = EmbeddedSettings.from_config({**config["simulator"]["embedded"], "mode": mode,
                                             "grid_size": grid_size})
    cosmo = Cosmology.from_params(config["design"]["fiducial"]["parameters"])
    window = ConeWindow.from_config(config)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start_cpu, start = time.process_time(), time.perf_counter()
    halos = simulate_halos(cosmo, 12345, settings, window, threads=threads)
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"wall_s": wall, "cpu_s": cpu, "peak_gb": peak / 1e9,
            "baseline_gb": baseline / 1e9, "estimate_gb": required_memory_bytes(settings) / 1e9,
            "bytes_per_cell": (peak - baseline) / grid_size**3, "halos": len(halos["mass"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["sample", "peaks"])
    parser.add_argument("--grids", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child[0], int(args.child[1]), args.threads)))
        return
    print(f"{'mode':7s} {'N':>5s} {'wall s':>7s} {'cpu s':>7s} {'peak GB':>8s} "
          f"{'est. GB':>8s} {'B/cell':>7s} {'halos':>8s}")
    for mode in args.modes:
        for grid_size in args.grids:
            result = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(grid_size),
                 "--threads", str(args.threads)], capture_output=True, text=True, check=True)
            row = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"{mode:7s} {grid_size:5d} {row['wall_s']:7.2f} {row['cpu_s']:7.2f} "
                  f"{row['peak_gb']:8.2f} {row['estimate_gb']:8.2f} "
                  f"{row['bytes_per_cell']:7.0f} {row['halos']:8d}", flush=True)


if __name__ == "__main__":
    main()
