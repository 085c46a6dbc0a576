"""Two-point summary time per 64^3 histogram: cosmo_sbi.summaries against a naive version
(np.fft, np.histogram per multipole, geometry recomputed per call) in the same run.

Prints seconds per histogram for both, their ratio and the machine load. Target: <= 0.5 s
per histogram on 2 cores.

    python benchmarks/bench_summaries.py [--repeats 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from scipy.special import eval_legendre
from timing import best_seconds

from cosmo_sbi.summaries import SummarySettings, solid_angle_fractions, two_point_summaries

SETTINGS = SummarySettings(n_z_bins=16, k_edges=tuple(np.linspace(0.1, 3.1, 16)),
                           multipoles=(0, 2))
DEC_DEG = (-20.0, 20.0)


def naive(counts: np.ndarray) -> np.ndarray:
    """The same estimator written plainly: full complex FFT, np.histogram per multipole."""
    values = counts.astype(np.float64)
    per_slice = values.sum(axis=(0, 1))
    nbar = solid_angle_fractions(values.shape[:2], DEC_DEG)[:, :, None] * per_slice
    shape = tuple(2 * n for n in values.shape)
    power = np.abs(np.fft.fftn(values - nbar, s=shape)) ** 2
    k_axes = np.meshgrid(*[2 * np.pi * np.fft.fftfreq(n) for n in shape], indexing="ij")
    k = np.sqrt(sum(axis**2 for axis in k_axes))
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(k > 0, k_axes[2] / k, 0.0)
    modes = np.histogram(k, SETTINGS.k_edges)[0]
    excess = power - per_slice.sum()
    out = [np.histogram(k, SETTINGS.k_edges,
                        weights=(2 * ell + 1) * eval_legendre(ell, mu) * excess)[0] / modes
           for ell in SETTINGS.multipoles]
    return np.concatenate([[per_slice.sum()], per_slice.reshape(SETTINGS.n_z_bins, -1).sum(1),
                           np.ravel(out) / np.sum(nbar**2)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="FFT threads")
    args = parser.parse_args()
    counts = np.random.default_rng(0).poisson(5.0, (64, 64, 64)).astype(np.uint32)

    def ours() -> np.ndarray:
        return two_point_summaries(counts, SETTINGS, DEC_DEG, workers=args.workers)

    np.testing.assert_allclose(ours(), naive(counts), rtol=1e-6, atol=1e-9)
    t_ours = best_seconds(ours, args.repeats)
    t_naive = best_seconds(lambda: naive(counts), max(1, args.repeats // 2))
    print(f"64^3 histogram, best of {args.repeats}, load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    print(f"naive (np.fft, np.histogram): {t_naive:.3f} s/histogram")
    print(f"cosmo_sbi.summaries ({args.workers} threads): {t_ours:.3f} s/histogram "
          f"(target <= 0.5 s)")
    print(f"speed-up ratio: {t_naive / t_ours:.1f}x")


if __name__ == "__main__":
    main()
