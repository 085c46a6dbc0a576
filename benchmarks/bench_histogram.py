"""Histogram throughput: cosmo_sbi's index arithmetic + bincount against np.histogramdd.

Prints halos per second for both on the same halos (the default 64^3 binning) and their
ratio, measured in the same run. Target: ratio >= 10.

    python benchmarks/bench_histogram.py [--halos 2000000] [--repeats 5]
"""

from __future__ import annotations

import argparse

import numpy as np
from timing import best_seconds

from cosmo_sbi.histogram import Binning, histogram_counts

BINNING = Binning((64, 64, 64), (-20.0, 20.0), (-20.0, 20.0), (0.3, 0.8), 1e13)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--halos", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    # a light cone's float32 fields, 10% of the halos outside the window
    ra, dec = (rng.uniform(-22, 22, args.halos).astype(np.float32) for _ in range(2))
    z_obs = rng.uniform(0.28, 0.82, args.halos).astype(np.float32)

    def ours() -> np.ndarray:
        return histogram_counts(ra, dec, z_obs, BINNING)

    def reference() -> np.ndarray:
        return np.histogramdd(np.c_[ra, dec, z_obs].astype(np.float64), bins=BINNING.edges())[0]

    np.testing.assert_array_equal(ours(), reference())
    t_ours, t_ref = best_seconds(ours, args.repeats), best_seconds(reference, args.repeats)
    print(f"halos: {args.halos:,}, binning 64^3, best of {args.repeats}")
    print(f"np.histogramdd      : {args.halos / t_ref / 1e6:8.2f} M halos/s ({t_ref:.3f} s)")
    print(f"cosmo_sbi.histogram : {args.halos / t_ours / 1e6:8.2f} M halos/s ({t_ours:.3f} s)")
    print(f"speed-up ratio      : {t_ref / t_ours:8.2f}x (target >= 10x)")


if __name__ == "__main__":
    main()
