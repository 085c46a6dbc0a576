"""Halo mass function (Tinker et al. 2008) and large-scale bias (Tinker et al. 2010).

Masses are M_200m [Msun/h] (200 times the mean matter density), number densities comoving
[(Mpc/h)^-3]. sigma(M) at z = 0 and its slope are tabulated once per cosmology (cubic
spline in ln M over ``MASS_TABLE_RANGE``) and scaled by D1(z), so a call on ~100 redshifts x
~100 masses costs well under a millisecond after the first (see benchmarks/bench_halos.py).

Broadcasting: ``mass`` and ``z`` are crossed, the result has shape ``z.shape + mass.shape``
(a (Z,) redshift array and an (M,) mass array give (Z, M); scalars drop their axis).

Calibrated ranges (a ``UserWarning`` naming the value is raised outside them; the fit is
then extrapolated): Tinker et al. fitted 10^11 <= M <= 10^15 Msun/h and 0 <= z <= 2.5 in
flat LCDM simulations with Omega_m of about 0.2-0.3. The cosmology dependence is carried by
sigma(M, z) (the fits are nearly universal in sigma), so we warn only for Omega_m outside
[0.2, 0.4], which includes the project's prior (0.25-0.40) and Planck's 0.315 without
pretending the upper part was simulated by Tinker et al. Dark energy (w0, wa) likewise
enters only through sigma(M, z) and the growth factor and is not checked.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike
from scipy.interpolate import CubicSpline

from cosmo_sbi.cosmology import Cosmology

DELTA_MEAN = 200.0
"""Halo overdensity with respect to the mean matter density (M_200m)."""
DELTA_COLLAPSE = 1.68647
"""Linear collapse threshold delta_c = 3/20 (12 pi)^(2/3) (as colossus)."""

CALIBRATED_MASS_MSUN_H = (1e11, 1e15)
CALIBRATED_REDSHIFT = (0.0, 2.5)
CALIBRATED_OMEGA_M = (0.2, 0.4)
MASS_TABLE_RANGE = (1e6, 1e17)
"""Masses [Msun/h] accepted by the mass function and bias (extent of the sigma(M) table)."""
_MASS_TABLE_NODES = 441  # 40 per decade: spline error in ln sigma ~1e-7

# Tinker et al. (2008), Table 2 at Delta = 200, and the redshift evolution of eqs. 5-8.
_TINKER08_A0, _TINKER08_a0, _TINKER08_b0, _TINKER08_c = 0.186, 1.47, 2.57, 1.19
_TINKER08_ALPHA = 10.0 ** (-((0.75 / math.log10(DELTA_MEAN / 75.0)) ** 1.2))


def lagrangian_radius(cosmo: Cosmology, mass: ArrayLike) -> np.ndarray:
    """Radius [Mpc/h] of the sphere holding ``mass`` [Msun/h] at the mean matter density."""
    return cosmo.lagrangian_radius(mass)


@lru_cache(maxsize=64)
def _sigma_table(cosmo: Cosmology) -> CubicSpline:
    """Spline in ln M [Msun/h] of (ln sigma(M, z = 0), d ln sigma / d ln M)."""
    ln_mass = np.linspace(math.log(MASS_TABLE_RANGE[0]), math.log(MASS_TABLE_RANGE[1]),
                          _MASS_TABLE_NODES)
    radius = cosmo.lagrangian_radius(np.exp(ln_mass))
    sigma, dlnsigma_dlnr = cosmo.sigma_r_with_slope(radius)
    slope = dlnsigma_dlnr / 3.0  # R ~ M^(1/3)
    return CubicSpline(ln_mass, np.stack([np.log(sigma), slope]), axis=1)


def _sigma_and_slope(cosmo: Cosmology, mass: ArrayLike,
                     z: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sigma(M, z) with shape z.shape + mass.shape, d ln sigma / d ln M (mass.shape), mass."""
    mass = np.asarray(mass, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    low, high = MASS_TABLE_RANGE
    if np.any(~(mass >= low) | ~(mass <= high)):
        raise ValueError(f"mass must lie in [{low:g}, {high:g}] Msun/h, got values from "
                         f"{np.min(mass):g} to {np.max(mass):g} (NaN if any is NaN)")
    ln_sigma, slope = _sigma_table(cosmo)(np.log(mass))
    growth = cosmo.growth_factor(z)  # validates z
    sigma = growth[(...,) + (None,) * mass.ndim] * np.exp(ln_sigma)
    _warn_outside_calibration(cosmo, mass, z)
    return sigma, slope, mass


def _warn_outside_calibration(cosmo: Cosmology, mass: np.ndarray, z: np.ndarray) -> None:
    checks = [("mass [Msun/h]", mass, CALIBRATED_MASS_MSUN_H),
              ("redshift z", z, CALIBRATED_REDSHIFT),
              ("Omega_m", np.asarray(cosmo.Omega_m), CALIBRATED_OMEGA_M)]
    for name, values, (low, high) in checks:
        smallest, largest = values.min(), values.max()
        if smallest < low or largest > high:
            given = f"= {smallest:g}" if smallest == largest else f"spans {smallest:g}-{largest:g}"
            warnings.warn(f"Tinker fits extrapolated: {name} {given}, calibrated range "
                          f"[{low:g}, {high:g}]", UserWarning, stacklevel=4)


def tinker08_dndlnm(cosmo: Cosmology, mass: ArrayLike, z: ArrayLike) -> np.ndarray:
    """Tinker et al. (2008) mass function dn/dlnM [(Mpc/h)^-3] of M_200m, with z evolution.

    mass [Msun/h], z: any shapes; result shape z.shape + mass.shape (see module docstring).
    """
    sigma, slope, mass = _sigma_and_slope(cosmo, mass, z)
    zp1 = (1.0 + np.asarray(z, dtype=np.float64))[(...,) + (None,) * mass.ndim]
    amplitude = _TINKER08_A0 * zp1**-0.14
    slope_a = _TINKER08_a0 * zp1**-0.06
    scale_b = _TINKER08_b0 * zp1**-_TINKER08_ALPHA
    multiplicity = amplitude * ((sigma / scale_b) ** -slope_a + 1.0) * np.exp(
        -_TINKER08_c / sigma**2)
    return multiplicity * cosmo.mean_matter_density / mass * np.abs(slope)


def tinker10_bias(cosmo: Cosmology, mass: ArrayLike, z: ArrayLike) -> np.ndarray:
    """Tinker et al. (2010) large-scale (Eulerian, linear) halo bias of M_200m halos.

    mass [Msun/h], z: any shapes; result shape z.shape + mass.shape (see module docstring).
    """
    sigma, _, _ = _sigma_and_slope(cosmo, mass, z)
    nu = DELTA_COLLAPSE / sigma
    y = math.log10(DELTA_MEAN)
    cutoff = math.exp(-((4.0 / y) ** 4))
    big_a, small_a = 1.0 + 0.24 * y * cutoff, 0.44 * y - 0.88
    big_b, small_b = 0.183, 1.5
    big_c, small_c = 0.019 + 0.107 * y + 0.19 * cutoff, 2.4
    return (1.0 - big_a * nu**small_a / (nu**small_a + DELTA_COLLAPSE**small_a)
            + big_b * nu**small_b + big_c * nu**small_c)
