"""``sample`` mode: halos drawn cell by cell from a fitted mass function
(``simulator.embedded.mass_function``: Tinker et al. 2008 by default, times the fitted
PINOCCHIO ratio when ``mass_function_ratio`` is set) with a Lagrangian-bias weight, so
the mean mass function is exact and the large-scale bias is r times Tinker et al. (2010)'s
(r = ``simulator.embedded.bias_ratio``, 1 by default).

For a Lagrangian cell of volume V at light-cone redshift z, the mean number of halos in
the mass bin b is

    lambda_b = V n_b(z) exp(a_b delta_b - a_b^2 sigma_b^2 / 2),   a_b = (r b_T10(M_b, z) - 1) D1(z),

with n_b the bin integral of dn/dlnM, delta_b the z = 0 linear overdensity smoothed by a
Gaussian of radius R_b and sigma_b^2 its exact grid variance. The weight has mean 1 over
the Gaussian field and its cross-correlation with any Gaussian mode is a_b times the
covariance, so the Lagrangian bias is r b_T10 - 1 on scales k << 1 / R_b and the Eulerian
bias is r b_T10 after the 2LPT displacement. R_b is the smallest radius of the ladder
(1, 2, 4, 8) x the 2LPT smoothing for which the weight's variance exp(a_b^2 sigma_b^2) - 1
times the mean number of halos above M_b per cell stays below ``MAX_OVERDISPERSION``:
the cell counts of rare massive halos are then Poisson to within that fraction instead of
piling up in a few cells, and the smoothing costs bias only at k > 1 / R_b.

Cheap sampling: the cell total lambda = sum_b lambda_b comes from bilinear tables in
(z, delta_R), one per radius; one Poisson count per cell (inverse CDF of a hashed
uniform, so counts respond smoothly to parameter changes at fixed seed); then, for the
occupied cells only, a bin by inverse CDF over the lambda_b and a mass inside the bin from
the log-linear interpolation of dn/dlnM between the 0.05-dex nodes. Every random number is
a hash of (seed, stream, cell, halo rank in the cell): the output is bit-identical for the
same seed and config.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from cosmo_sbi import halos
from cosmo_sbi.cosmology import Cosmology
from cosmo_sbi.mass_calibration import MassFunctionRatio
from cosmo_sbi.simulators.embedded.initial_conditions import hashed_uniform

MASS_STEP_DEX = 0.05
"""Width of the mass bins; dn/dlnM is taken log-linear between nodes, which integrates
Tinker08 to -2e-4 at 1e13, -8e-4 at 1e14 and -4e-3 at 1e15 Msun/h (z = 0.8)."""
MAX_OVERDISPERSION = 0.1
"""Largest excess of the cell-count variance over Poisson from the lognormal bias weight
(see the module docstring)."""
BIAS_RADIUS_FACTORS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
"""Bias-field radii in units of the 2LPT smoothing radius."""
MAXIMUM_MASS_MSUN_H = 1e16
"""Upper end of the sampled mass range (n(> 1e16) is ~1e-12 of n(> 1e13) at z > 0.28)."""
_REDSHIFT_NODES = 96
_DELTA_NODES = 1024
_HALO_CHUNK = 1 << 15
MAX_CELL_RATE = 500.0
"""Largest mean halo number per cell: exp(-rate) must not underflow in the sampler."""

STREAM_COUNT, STREAM_BIN, STREAM_IN_BIN, STREAM_OFFSET = 1, 2, 3, 4
"""Hash streams of the random numbers: cell count, mass bin, mass in bin, offset (3)."""


@dataclass(frozen=True)
class BinnedMassFunction:
    """Per-cell halo rates on a uniform redshift grid (linear interpolation in z), for
    cells of a fixed volume: ln lambda_b = ln_base_b(z) + a_b(z) delta_f(b), with
    ln_base_b = ln(V n_b) - a_b^2 sigma_b^2 / 2; plus the in-bin slopes and the
    bias-field radius of each bin."""

    z_start: float
    z_step: float
    ln_mass_edges: np.ndarray  # (B + 1,) ln M [Msun/h]
    ln_base: np.ndarray  # (Z, B) float32, see above
    bias_coefficient: np.ndarray  # (Z, B) float32, a_b = (r b_T10 - 1) D1(z) at the log centre
    slope: np.ndarray  # (Z, B) d ln(dn/dlnM) / d ln M inside each bin
    radii: tuple[float, ...]  # (F,) bias-field smoothing radii in use [Mpc/h], ascending
    field_of_bin: np.ndarray  # (B,) index into ``radii``

    @classmethod
    def build(cls, cosmo: Cosmology, min_mass: float, z_min: float, z_max: float,
              radii: tuple[float, ...], variances: tuple[float, ...],
              cell_volume: float, mass_function: str = "tinker08",
              ratio: MassFunctionRatio | None = None,
              bias_ratio: float = 1.0) -> BinnedMassFunction:
        """Tabulate for masses above ``min_mass`` [Msun/h] and ``z_min <= z <= z_max``;
        ``radii`` [Mpc/h] (ascending) with the grid ``variances`` of the bias fields, for
        cells of ``cell_volume`` [(Mpc/h)^3]; dn/dlnM of ``mass_function`` (a
        halos.MASS_FUNCTIONS key) times ``ratio`` (if any); Eulerian bias ``bias_ratio``
        times Tinker10's."""
        if min_mass < halos.CALIBRATED_MASS_MSUN_H[0]:
            warnings.warn(
                f"simulator.embedded.lowest_halo_mass_msun_h = {min_mass:g} is below the lowest "
                f"mass of the fits ({halos.CALIBRATED_MASS_MSUN_H[0]:g} Msun/h): the mass "
                "function and bias are extrapolated", UserWarning, stacklevel=2)
        if min_mass >= MAXIMUM_MASS_MSUN_H:
            raise ValueError(f"simulator.embedded.lowest_halo_mass_msun_h = {min_mass:g}: "
                             f"expected < {MAXIMUM_MASS_MSUN_H:g} Msun/h")
        count = math.ceil(math.log10(MAXIMUM_MASS_MSUN_H / min_mass) / MASS_STEP_DEX)
        ln_edges = math.log(min_mass) + np.arange(count + 1) * (MASS_STEP_DEX * math.log(10))
        z = np.linspace(z_min, z_max, _REDSHIFT_NODES)
        centres = np.exp(0.5 * (ln_edges[1:] + ln_edges[:-1]))
        with warnings.catch_warnings():
            # Only the rare tail above the calibrated 1e15 Msun/h is extrapolated here; the
            # lower end is checked above, Omega_m and z still warn.
            warnings.filterwarnings("ignore", message="halo fits extrapolated: mass")
            nodes = halos.dndlnm(cosmo, np.exp(ln_edges), z, mass_function)  # (Z, B + 1)
            if ratio is not None:
                nodes = nodes * ratio(np.exp(ln_edges), z)
            lagrangian_bias = bias_ratio * halos.tinker10_bias(cosmo, centres, z) - 1.0
        step = ln_edges[1] - ln_edges[0]
        log_ratio = np.log(nodes[:, 1:] / nodes[:, :-1])
        # Integral of a log-linear function over the bin; the limit is y0 * step.
        safe = np.where(np.abs(log_ratio) > 1e-12, log_ratio, 1.0)
        density = np.where(np.abs(log_ratio) > 1e-12,
                           step * (nodes[:, 1:] - nodes[:, :-1]) / safe, step * nodes[:, :-1])
        coefficient = lagrangian_bias * cosmo.growth_factor(z)[:, None]
        variances = np.asarray(variances, dtype=np.float64)
        per_cell_above = cell_volume * np.cumsum(density[:, ::-1], axis=1)[:, ::-1]
        with np.errstate(over="ignore"):  # inf for huge biases: that smoothing is rejected
            excess = np.max(per_cell_above[:, :, None] * np.expm1(
                coefficient[:, :, None] ** 2 * variances[None, None, :]), axis=0)
        within = excess <= MAX_OVERDISPERSION
        choice = np.where(within.any(axis=1), np.argmax(within, axis=1), len(radii) - 1)
        used = np.unique(choice)
        ln_base = np.log(cell_volume * density) - 0.5 * coefficient**2 * variances[choice]
        return cls(z_start=float(z[0]), z_step=float(z[1] - z[0]), ln_mass_edges=ln_edges,
                   ln_base=ln_base.astype(np.float32),
                   bias_coefficient=coefficient.astype(np.float32), slope=log_ratio / step,
                   radii=tuple(float(radii[index]) for index in used),
                   field_of_bin=np.searchsorted(used, choice))

    def _node(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        position = np.clip((np.asarray(z, dtype=np.float64) - self.z_start) / self.z_step, 0.0,
                           self.ln_base.shape[0] - 1.000001)
        index = position.astype(np.int64)
        return index, (position - index).astype(np.float32)[:, None]

    def rates(self, z: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """lambda_b (N, B) float32: mean halo numbers per mass bin of cells at redshifts
        ``z`` (N,) with overdensities ``delta`` (N, F) in the bias fields (z = 0)."""
        index, weight = self._node(z)
        ln_rate = self.ln_base[index] * (1.0 - weight) + self.ln_base[index + 1] * weight
        coefficient = (self.bias_coefficient[index] * (1.0 - weight)
                       + self.bias_coefficient[index + 1] * weight)
        ln_rate += coefficient * np.asarray(delta, dtype=np.float32)[:, self.field_of_bin]
        return np.exp(ln_rate)

    def slope_at(self, z: np.ndarray, bins: np.ndarray) -> np.ndarray:
        """In-bin slope of dn/dlnM (N,) of bins ``bins`` (N,) at redshifts ``z`` (N,)."""
        index, weight = self._node(z)
        return (self.slope[index, bins] * (1.0 - weight[:, 0])
                + self.slope[index + 1, bins] * weight[:, 0])


@dataclass(frozen=True)
class CellRateTable:
    """ln(sum of lambda_b over the bins of one bias field) on a uniform (z, delta) grid,
    interpolated bilinearly (relative error < 1e-4 for the grids used)."""

    z_start: float
    z_step: float
    delta_start: float
    delta_step: float
    ln_rate: np.ndarray  # (Z, D)

    @classmethod
    def build(cls, mass_function: BinnedMassFunction, field: int,
              delta_range: tuple[float, float]) -> CellRateTable:
        low, high = delta_range
        delta = np.linspace(low, high if high > low else low + 1.0, _DELTA_NODES)
        bins = mass_function.field_of_bin == field
        ln_base = mass_function.ln_base[:, bins].astype(np.float64)
        coefficient = mass_function.bias_coefficient[:, bins].astype(np.float64)
        rates = np.exp(ln_base[:, None, :] + coefficient[:, None, :] * delta[None, :, None])
        return cls(z_start=mass_function.z_start, z_step=mass_function.z_step,
                   delta_start=float(delta[0]), delta_step=float(delta[1] - delta[0]),
                   ln_rate=np.log(rates.sum(axis=-1)))

    def __call__(self, z: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """The rate of cells at (z, delta), each (N,)."""
        shape = self.ln_rate.shape
        zi = np.clip((z - self.z_start) / self.z_step, 0.0, shape[0] - 1.000001)
        di = np.clip((delta - self.delta_start) / self.delta_step, 0.0, shape[1] - 1.000001)
        z_index, d_index = zi.astype(np.int64), di.astype(np.int64)
        wz, wd = zi - z_index, di - d_index
        flat = self.ln_rate.ravel()
        base = z_index * shape[1] + d_index
        ln_rate = ((1 - wz) * ((1 - wd) * flat.take(base) + wd * flat.take(base + 1))
                   + wz * ((1 - wd) * flat.take(base + shape[1])
                           + wd * flat.take(base + shape[1] + 1)))
        return np.exp(ln_rate)


def poisson_inverse_cdf(uniform: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Poisson variates (int64) with means ``rate`` by inverting the CDF at ``uniform``.

    Vectorised over cells; the loop runs once per count value (a few dozen at most).
    """
    rate = np.asarray(rate, dtype=np.float64)
    count = np.zeros(rate.shape, dtype=np.int64)
    term = np.exp(-rate)
    cdf = term.copy()
    active = np.flatnonzero(uniform > cdf)
    value = 0
    while active.size:
        value += 1
        term[active] *= rate[active] / value
        cdf[active] += term[active]
        count[active] = value
        active = active[(uniform[active] > cdf[active]) & (term[active] > 0.0)]
    return count


class HaloSampler:
    """Draws the halos of cone cells, chunk by chunk (the result does not depend on the
    chunking: every random number is keyed by cell and rank)."""

    def __init__(self, mass_function: BinnedMassFunction, delta_ranges: np.ndarray,
                 seed: int) -> None:
        """``delta_ranges`` (F, 2): min and max of each bias field over all cells."""
        self.mass_function = mass_function
        self.seed = seed
        self.tables = [CellRateTable.build(mass_function, field, tuple(delta_ranges[field]))
                       for field in range(len(mass_function.radii))]
        largest = sum(float(np.exp(table.ln_rate.max())) for table in self.tables)
        if largest > MAX_CELL_RATE:
            raise ValueError(
                f"sample mode: up to {largest:.0f} halos per cell expected above "
                "simulator.embedded.lowest_halo_mass_msun_h = "
                f"{np.exp(mass_function.ln_mass_edges[0]):g}; the per-cell Poisson sampler "
                f"needs < {MAX_CELL_RATE:g}: raise "
                "lowest_halo_mass_msun_h or simulator.embedded.grid_size")

    def __call__(self, cells: np.ndarray, z: np.ndarray,
                 delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Halos of the cells ``cells`` (N,) (flat indices: the keys of the random
        streams) at light-cone redshift ``z`` (N,) with z = 0 overdensity ``delta`` (N, F)
        in each bias field. Returns (index into the inputs (H,), mass [Msun/h] (H,),
        offset in cell units (H, 3) in [-1/2, 1/2))."""
        redshift = z.astype(np.float64)
        rate = sum(table(redshift, delta[:, field].astype(np.float64))
                   for field, table in enumerate(self.tables))
        counts = poisson_inverse_cdf(hashed_uniform(self.seed, STREAM_COUNT, cells), rate)
        owner = np.repeat(np.arange(len(cells)), counts)
        rank = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
        keys = (cells[owner], rank)
        mass = np.empty(len(owner), dtype=np.float64)
        for start in range(0, len(owner), _HALO_CHUNK):
            part = slice(start, start + _HALO_CHUNK)
            mass[part] = self._masses(redshift[owner[part]], delta[owner[part]],
                                      keys[0][part], keys[1][part])
        offset = np.stack([hashed_uniform(self.seed, STREAM_OFFSET + axis, *keys)
                           for axis in range(3)], axis=-1) - 0.5
        return owner, mass, offset

    def _masses(self, z: np.ndarray, delta: np.ndarray, cells: np.ndarray,
                rank: np.ndarray) -> np.ndarray:
        """Masses [Msun/h] of halos in cells at ``z`` with overdensities ``delta``: a bin by
        inverse CDF over lambda_b, then the log-linear dn/dlnM inside the bin."""
        mass_function = self.mass_function
        cumulative = np.cumsum(mass_function.rates(z, delta), axis=1, dtype=np.float64)
        target = hashed_uniform(self.seed, STREAM_BIN, cells, rank) * cumulative[:, -1]
        chosen = np.minimum(np.sum(cumulative < target[:, None], axis=1),
                            cumulative.shape[1] - 1)
        slope = mass_function.slope_at(z, chosen)
        fraction = hashed_uniform(self.seed, STREAM_IN_BIN, cells, rank)
        step = mass_function.ln_mass_edges[1] - mass_function.ln_mass_edges[0]
        # Inverse CDF of dn/dlnM ~ exp(slope x) on 0 <= x < step.
        flat = np.abs(slope * step) < 1e-8
        safe = np.where(flat, 1.0, slope)
        inside = np.where(flat, fraction * step,
                          np.log1p(fraction * np.expm1(safe * step)) / safe)
        return np.exp(mass_function.ln_mass_edges[chosen] + inside)
