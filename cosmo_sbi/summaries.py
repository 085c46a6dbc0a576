"""Two-point summaries of one halo-count histogram: the classical baseline of the networks.

From the counts ``c`` (D_ra, D_dec, D_z) on the (RA, DEC, z_obs) grid the networks see:

- ``N_total``: the total count;
- ``nz_<j>``: the redshift distribution, counts summed over RA and DEC and over groups of
  D_z / ``n_z_bins`` adjacent z bins (``summaries.n_z_bins``: null keeps every z bin;
  otherwise it must divide D_z);
- ``P<l>_k<i>``: the power-spectrum multipoles l in ``summaries.multipoles`` (0, 2, ...) of
  the count overdensity, with the line of sight along the z_obs (last) axis.

Units and estimator. Everything is in grid units: one cell has unit volume and k is in
radians per cell (Nyquist = pi), so the summaries need no fiducial cosmology (at the
default window one cell is about 16 Mpc/h on a side at the fiducial cosmology, so
k = 0.1 rad/cell is about 0.006 h/Mpc). The random field is the expected count per cell
without clustering, ``nbar[i, j, k] = n(z_k) * Omega_ij / sum(Omega)``: the count of each
z slice spread over the slice in proportion to the cells' solid angle (RA bins of equal
width, DEC bins weighted by sin(dec_upper) - sin(dec_lower)), so the evolution of n(z) and
the cos(DEC) cell volumes are not power. The FKP-style field ``F = c - nbar`` is
zero-padded to at least 2 D - 1 cells per axis before the FFT, so |F(k)|^2 is the Fourier
transform of the non-periodic pair sum (no wrap-around across the box faces). Then

    P_l(k) = (2 l + 1) < (|F(k)|^2 - S) L_l(mu) >_bin / I,   S = sum(nbar), I = sum(nbar^2),

the Poisson shot noise S subtracted mode by mode (which removes it from the monopole and
its discrete-shell residue from the higher multipoles), mu = k_z / |k|, averaged over the
modes in linear k bins of ``summaries.k_bin_width`` fundamentals k_f = 2 pi / D (D the
smallest histogram axis) from k_f up to Nyquist (:func:`k_range`; 12 bins of
0.245 rad/cell on 64^3). Purely radial modes (k_RA = k_DEC = 0) are absorbed by n(z), as in
a survey with a radial selection function: the lowest k bin loses a few per cent of its
power, mostly at mu ~ 1 (a negative P2 there).

Known answers (tests/test_summaries.py): a Poisson field without clustering gives P0, P2
within 2% of shot noise of zero; white Gaussian power is recovered within 10%; a plane
wave peaks in its k bin with P2 / P0 = 5 L2(mu); the padded |F|^2 transforms back to the
direct non-periodic pair sum.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.special import eval_legendre

from cosmo_sbi.config import Config
from cosmo_sbi.dataset import checked_histogram, read_dataset
from cosmo_sbi.summary_table import SummaryTable, write_summary_table


class SummaryError(ValueError):
    """A histogram cannot be summarised; the message names its source and the problem."""


@dataclass(frozen=True)
class SummarySettings:
    """Binning of the two-point summaries: ``n_z_bins`` groups of z bins, the k bin edges
    (n_k_bins + 1,) in rad/cell, the multipoles."""

    n_z_bins: int
    k_edges: tuple[float, ...]
    multipoles: tuple[int, ...]

    @classmethod
    def from_config(cls, config: Config, section: str = "summaries") -> SummarySettings:
        """The binning of ``config[section]`` ('summaries', or 'fisher' for its coarse
        compression) for the histogram.bins grid; k range as in :func:`k_range`."""
        bins = config["histogram"]["bins"]
        settings = config[section]
        k_min, k_max, width = k_range(bins, config["summaries"]["k_bin_width"])
        n_k_bins = settings.get("n_k_bins") or max(1, int(round((k_max - k_min) / width)))
        return cls(n_z_bins=settings["n_z_bins"] or bins[2],
                   k_edges=tuple(np.linspace(k_min, k_max, n_k_bins + 1).tolist()),
                   multipoles=tuple(int(ell) for ell in settings["multipoles"]))

    @property
    def n_k_bins(self) -> int:
        return len(self.k_edges) - 1

    def feature_names(self, total: bool = True) -> list[str]:
        """Names of the K = [1 +] n_z_bins + n_k_bins * len(multipoles) summaries, in order
        (``total`` False: without N_total, which is the sum of n(z))."""
        return (["N_total"] * total + [f"nz_{j:02d}" for j in range(self.n_z_bins)]
                + [f"P{ell}_k{i:02d}" for ell in self.multipoles for i in range(self.n_k_bins)])


def k_range(bins: Sequence[int], width_fundamentals: float) -> tuple[float, float, float]:
    """(k_min, k_max, bin width) in rad/cell: from the fundamental k_f = 2 pi / D (D the
    smallest histogram axis) to the last edge below Nyquist (pi), bins of
    ``width_fundamentals`` k_f: 12 bins of 0.245 rad/cell on a 64^3 grid."""
    fundamental = 2 * np.pi / min(bins)
    width = width_fundamentals * fundamental
    n_bins = max(1, int(np.floor((np.pi - fundamental) / width + 1e-9)))
    return fundamental, fundamental + n_bins * width, width


def solid_angle_fractions(shape: tuple[int, int], dec_deg: Sequence[float] | None) -> np.ndarray:
    """Fraction (D_ra, D_dec) of the window's solid angle in each (RA, DEC) cell.

    RA bins have equal width; DEC bins of equal width in degrees span sin(dec) intervals.
    ``dec_deg`` None: every cell gets the same fraction.
    """
    n_ra, n_dec = shape
    if dec_deg is None:
        weights = np.ones(n_dec)
    else:
        edges = np.radians(np.linspace(dec_deg[0], dec_deg[1], n_dec + 1))
        weights = np.diff(np.sin(edges))
    return np.broadcast_to(weights / (n_ra * weights.sum()), (n_ra, n_dec))


@functools.lru_cache(maxsize=8)
def _mode_binning(shape: tuple[int, ...], padded: tuple[int, ...], k_edges: tuple[float, ...],
                  multipoles: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the rfftn grid of ``padded``: flat indices of the modes inside the k range,
    their bin index, and the weights (n_multipoles, n_modes) that turn a bincount over the
    selected modes into the bin average of (2 l + 1) L_l(mu) |F|^2 (a mode and its
    conjugate counted twice, except on the k_z = 0 and Nyquist planes)."""
    del shape  # part of the cache key only
    axes = [2 * np.pi * np.fft.fftfreq(n) for n in padded[:-1]]
    axes.append(2 * np.pi * np.fft.rfftfreq(padded[-1]))
    squares = [axis**2 for axis in axes]
    k2 = squares[0][:, None, None] + squares[1][None, :, None] + squares[2][None, None, :]
    k = np.sqrt(k2).ravel()
    edges = np.asarray(k_edges)
    inside = np.flatnonzero((k >= edges[0]) & (k < edges[-1]))
    bins = np.searchsorted(edges, k[inside], side="right") - 1
    half = np.full(len(axes[-1]), 2.0)
    half[0] = 1.0
    if padded[-1] % 2 == 0:
        half[-1] = 1.0
    multiplicity = np.broadcast_to(half, k2.shape).ravel()[inside]
    counts = np.bincount(bins, weights=multiplicity, minlength=len(edges) - 1)
    if np.any(counts == 0):
        empty = np.flatnonzero(counts == 0)
        raise SummaryError(f"summaries: k bins {empty.tolist()} hold no Fourier mode of the "
                           f"padded {padded} grid; expected wider bins (summaries.k_bin_width, "
                           "fisher.n_k_bins)")
    mu = np.broadcast_to(axes[-1], k2.shape).ravel()[inside] / k[inside]
    weights = np.stack([(2 * ell + 1) * eval_legendre(ell, mu) * multiplicity / counts[bins]
                        for ell in multipoles])
    return inside, bins, weights


def padded_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """FFT-friendly sizes >= 2 D - 1 per axis: no pair of cells wraps around."""
    return tuple(scipy.fft.next_fast_len(2 * int(n) - 1, real=True) for n in shape)


def padded_power(field: np.ndarray, workers: int = 1, pad: bool = True) -> np.ndarray:
    """|F(k)|^2 on the rfftn grid of the zero-padded ``field`` (``pad`` False: periodic)."""
    shape = padded_shape(field.shape) if pad else field.shape
    transform = scipy.fft.rfftn(field, s=shape, workers=workers)
    return transform.real**2 + transform.imag**2


def power_multipoles(field: np.ndarray, k_edges: np.ndarray, multipoles: Sequence[int],
                     shot_noise: float, normalisation: float, workers: int = 1,
                     pad: bool = True) -> np.ndarray:
    """Binned multipoles (n_multipoles, n_k_bins) of a field (D_ra, D_dec, D_z), grid units.

    P_l(k) = (2 l + 1) < (|F|^2 - shot_noise) L_l(mu) >_bin / normalisation.
    """
    power = padded_power(field, workers, pad)
    shape = padded_shape(field.shape) if pad else field.shape
    inside, bins, weights = _mode_binning(field.shape, shape, tuple(map(float, k_edges)),
                                          tuple(multipoles))
    selected = power.ravel()[inside] - shot_noise
    n_bins = len(k_edges) - 1
    return np.stack([np.bincount(bins, weights=selected * weight, minlength=n_bins)
                     for weight in weights]) / normalisation


def check_counts(counts: np.ndarray, source: str,
                 bins: Sequence[int] | None = None) -> np.ndarray:
    """Counts as float64 (D_ra, D_dec, D_z); SummaryError naming ``source`` if unusable.

    ``bins``: the expected shape (histogram.bins); None accepts any 3-axis shape.
    """
    counts = np.asarray(counts)
    if counts.ndim != 3 or (bins is not None and counts.shape != tuple(bins)):
        expected = tuple(bins) if bins is not None else "(D_ra, D_dec, D_z)"
        raise SummaryError(f"{source}: counts have shape {counts.shape}; expected "
                           f"{expected} (histogram.bins)")
    values = counts.astype(np.float64)
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise SummaryError(f"{source}: counts contain NaN, inf or negative values; expected "
                           "finite counts >= 0")
    if values.sum() == 0:
        raise SummaryError(f"{source}: the histogram is empty; expected halos")
    return values


def two_point_summaries(counts: np.ndarray, settings: SummarySettings,
                        dec_deg: Sequence[float] | None = None, source: str = "counts",
                        workers: int = 1, total: bool = True) -> np.ndarray:
    """The K summaries of :meth:`SummarySettings.feature_names` (same ``total``) of one
    histogram (D_ra, D_dec, D_z), float64; ``dec_deg`` the window's DEC range [deg]."""
    values = check_counts(counts, source)
    n_ra, n_dec, n_z = values.shape
    if n_z % settings.n_z_bins:
        raise SummaryError(f"{source}: summaries.n_z_bins = {settings.n_z_bins} does not "
                           f"divide the {n_z} redshift bins")
    per_slice = values.sum(axis=(0, 1))
    nbar = solid_angle_fractions((n_ra, n_dec), dec_deg)[:, :, None] * per_slice
    shot_noise = float(per_slice.sum())
    normalisation = float(np.sum(nbar**2))
    multipoles = power_multipoles(values - nbar, np.asarray(settings.k_edges), settings.multipoles,
                                  shot_noise, normalisation, workers)
    n_z_grouped = per_slice.reshape(settings.n_z_bins, -1).sum(axis=1)
    parts = [[shot_noise]] * total + [n_z_grouped, multipoles.ravel()]
    return np.concatenate(parts)


def summary_workers() -> int:
    """FFT threads: the job's OMP_NUM_THREADS (Snakemake sets it from threads:), else 1."""
    return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))


def summarise_histograms(config: Config, paths: Sequence[str | os.PathLike[str]],
                         expected_set: str, settings: SummarySettings, total: bool = True,
                         workers: int = 1) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Summaries (N, K), parameters theta (N, 6) and sim ids of the histogram files
    ``paths`` of one set; the checks of dataset.checked_histogram name a bad file."""
    rows, thetas, ids = [], [], []
    for path in paths:
        counts, theta, attrs = checked_histogram(path, config, expected_set)
        rows.append(two_point_summaries(counts, settings, config["histogram"]["dec_deg"],
                                        source=str(path), workers=workers, total=total))
        thetas.append(theta)
        ids.append(str(attrs["sim_id"]))
    width = len(settings.feature_names(total))
    return (np.asarray(rows, dtype=np.float64).reshape(-1, width),
            np.asarray(thetas, dtype=np.float64).reshape(-1, 6), ids)


def build_two_point_table(config: Config, dataset: str | os.PathLike[str],
                          histograms: Mapping[str, Sequence[str | os.PathLike[str]]],
                          output: str | os.PathLike[str], workers: int = 1) -> None:
    """Write the two-point SummaryTable ``output``: one row per simulation of ``dataset``
    (dataset.h5), in its order, from ``histograms`` {set name: histogram files}."""
    settings = SummarySettings.from_config(config)
    data = read_dataset(dataset)
    order = list(zip(data.sets, data.ids, strict=True))
    splits, theta = data.splits, data.theta
    found: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, str]] = {}
    for set_name, paths in histograms.items():
        x, thetas, ids = summarise_histograms(config, paths, set_name, settings,
                                              workers=workers)
        found.update({(set_name, sim_id): (row, row_theta, str(path)) for row, row_theta,
                      sim_id, path in zip(x, thetas, ids, paths, strict=True)})
    missing = [f"{s}/{i}" for s, i in order if (s, i) not in found]
    extra = sorted(f"{s}/{i}" for s, i in set(found) - set(order))
    if missing or extra:
        raise SummaryError(f"{dataset}: its simulations and the histograms differ: no "
                           f"histogram for {missing[:5]}, not in the dataset {extra[:5]}; "
                           "expected the same simulations (rerun the dataset stage)")
    for (set_name, sim_id), row_theta in zip(order, theta, strict=True):
        if not np.allclose(found[set_name, sim_id][1], row_theta, rtol=1e-12, atol=0):
            raise SummaryError(f"{found[set_name, sim_id][2]}: parameters differ from "
                               f"{dataset} row {set_name}/{sim_id}; expected the same")
    x = np.stack([found[key][0] for key in order])
    table = SummaryTable(x, settings.feature_names(), theta, [i for _, i in order],
                         [s for s, _ in order], splits,
                         {"kind": "two_point", "k_edges_rad_per_cell": list(settings.k_edges),
                          "units": "N_total, nz: counts; P: cell^3 (grid units), k in "
                                   "rad/cell, line of sight along z_obs",
                          "summaries": dict(config["summaries"])})
    write_summary_table(output, table)
