"""Cost of the linear-theory tables and of the Tinker mass function/bias per light cone.

Prints, for fresh cosmologies: the first call (growth ODE + sigma(M) table) and then the
per-call time of tinker08_dndlnm and tinker10_bias on the embedded simulator's typical
~100 redshifts x ~100 masses, against a direct (untabulated) sigma integration of the same
grid. Target: a tabulated call takes < 5 ms.

    python benchmarks/bench_halos.py [--redshifts 100] [--masses 100] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from timing import best_seconds

from cosmo_sbi.cosmology import Cosmology
from cosmo_sbi.halos import tinker08_dndlnm, tinker10_bias


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redshifts", type=int, default=100)
    parser.add_argument("--masses", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # masses above 1e15 are outside Tinker's calibration
    z = np.linspace(0.28, 0.82, args.redshifts)
    masses = np.logspace(12.5, 15.5, args.masses)
    for omega_m in (0.25, 0.3133, 0.40):
        cosmo = Cosmology(Omega_m=omega_m, sigma_8=0.81, w0=-1.0, wa=0.0, n_s=0.965, h=0.674)
        start = time.perf_counter()
        tinker08_dndlnm(cosmo, masses, z)
        first = time.perf_counter() - start
        mass_function = best_seconds(lambda c=cosmo: tinker08_dndlnm(c, masses, z),
                                     args.repeats)
        bias = best_seconds(lambda c=cosmo: tinker10_bias(c, masses, z), args.repeats)
        direct = best_seconds(lambda c=cosmo: c.sigma_r_with_slope(c.lagrangian_radius(masses)),
                              max(1, args.repeats // 10))
        print(f"Omega_m {omega_m:.4f}: first call (tables) {first * 1e3:7.1f} ms; "
              f"tinker08 {mass_function * 1e3:.3f} ms, tinker10 {bias * 1e3:.3f} ms per "
              f"{args.redshifts}x{args.masses} grid; direct sigma integration "
              f"{direct * 1e3:.1f} ms ({direct / mass_function:.0f}x the tabulated call)")


if __name__ == "__main__":
    main()
