"""Halo mass functions (Tinker et al. 2008; Watson et al. 2013, FoF and M_200m) and the
large-scale bias (Tinker et al. 2010), evaluated by colossus on the project's own sigma(M).

colossus supplies the fitting functions f(sigma) and b(nu) (``massFunction(..., q_in =
'sigma', q_out = 'f')``, ``haloBiasFromNu``); sigma(M, z) and its slope come from
:mod:`cosmo_sbi.cosmology` (Eisenstein & Hu 1998 P(k) and the w0-wa growth factor), so
every model sees the same linear field as the simulators. colossus is told the same flat
w0-wa background (no radiation) for the Omega_m(z) and density thresholds some fits use.
dn/dlnM = f(sigma) rho_m / M |d ln sigma / d ln M|.

Masses are in the model's definition (:data:`MASS_FUNCTIONS`) [Msun/h], number densities
comoving [(Mpc/h)^-3]. sigma(M) at z = 0 and its slope are tabulated once per cosmology
(cubic spline in ln M over ``MASS_TABLE_RANGE``) and scaled by D1(z); colossus is called
once per redshift. A call on 100 redshifts x 100 masses takes ~1.1 ms (mass function) and
~0.8 ms (bias) after the first (benchmarks/bench_halos.py, best of 20, loaded 2 cores).

Broadcasting: ``mass`` and ``z`` are crossed, the result has shape ``z.shape + mass.shape``
(a (Z,) redshift array and an (M,) mass array give (Z, M); scalars drop their axis).

Calibrated ranges (a ``UserWarning`` naming the value is raised outside them; the fit is
then extrapolated): Tinker et al. fitted 10^11 <= M <= 10^15 Msun/h and 0 <= z <= 2.5 in
flat LCDM simulations with Omega_m of about 0.2-0.3 (Watson et al.: a similar range). The
cosmology dependence is carried by sigma(M, z) (the fits are nearly universal in sigma),
so we warn only for Omega_m outside [0.2, 0.4], which includes the project's prior
(0.25-0.40) and Planck's 0.315 without pretending the upper part was simulated. Dark
energy (w0, wa) likewise enters only through sigma(M, z), the growth factor and
Omega_m(z), and is not checked.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
from colossus.cosmology import cosmology as colossus_cosmology
from colossus.lss import bias as colossus_bias
from colossus.lss import mass_function as colossus_mass_function
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

MASS_FUNCTIONS: dict[str, tuple[str, str]] = {
    "tinker08": ("tinker08", "200m"),
    "watson13_fof": ("watson13", "fof"),
    "watson13_200m": ("watson13", "200m"),
}
"""``simulator.embedded.mass_function`` choices: (colossus model, mass definition)."""
BIAS_MASS_DEFINITION = "200m"
"""Tinker et al. (2010) is fitted to spherical-overdensity halos; FoF (linking length 0.2)
masses are close to M_200m, so every mass function uses the bias of M_200m halos."""


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
            warnings.warn(f"halo fits extrapolated: {name} {given}, calibrated range "
                          f"[{low:g}, {high:g}]", UserWarning, stacklevel=4)


@lru_cache(maxsize=64)
def _colossus_cosmology(cosmo: Cosmology) -> colossus_cosmology.Cosmology:
    """The same flat w0-wa background in colossus (no radiation, nothing written to disk)."""
    return colossus_cosmology.Cosmology(
        name="cosmo_sbi", flat=True, H0=100.0 * cosmo.h, Om0=cosmo.Omega_m, Ob0=cosmo.Omega_b,
        sigma8=cosmo.sigma_8, ns=cosmo.n_s, Tcmb0=cosmo.T_cmb, relspecies=False,
        de_model="w0wa", w0=cosmo.w0, wa=cosmo.wa, persistence="")


def _per_redshift(cosmo: Cosmology, function, sigma: np.ndarray, z: ArrayLike) -> np.ndarray:
    """``function(sigma_z, z)`` for each redshift of ``z`` (colossus's fits take a scalar
    z), with colossus set to ``cosmo``; sigma has shape z.shape + mass shape."""
    colossus_cosmology.setCurrent(_colossus_cosmology(cosmo))
    z = np.asarray(z, dtype=np.float64)
    flat = sigma.reshape((z.size, -1))
    result = np.stack([function(row, float(redshift)) for row, redshift in zip(flat, z.ravel(),
                                                                                strict=True)])
    return result.reshape(sigma.shape)


def dndlnm(cosmo: Cosmology, mass: ArrayLike, z: ArrayLike,
           model: str = "tinker08") -> np.ndarray:
    """Mass function dn/dlnM [(Mpc/h)^-3] of ``model`` (a :data:`MASS_FUNCTIONS` key), in
    its mass definition.

    mass [Msun/h], z: any shapes; result shape z.shape + mass.shape (see module docstring).
    """
    if model not in MASS_FUNCTIONS:
        raise ValueError(f"simulator.embedded.mass_function: expected one of "
                         f"{sorted(MASS_FUNCTIONS)}, got {model!r}")
    name, mdef = MASS_FUNCTIONS[model]
    sigma, slope, mass = _sigma_and_slope(cosmo, mass, z)
    multiplicity = _per_redshift(cosmo, lambda s, redshift: colossus_mass_function.massFunction(
        s, redshift, q_in="sigma", q_out="f", mdef=mdef, model=name), sigma, z)
    return multiplicity * cosmo.mean_matter_density / mass * np.abs(slope)


def tinker08_dndlnm(cosmo: Cosmology, mass: ArrayLike, z: ArrayLike) -> np.ndarray:
    """Tinker et al. (2008) mass function dn/dlnM [(Mpc/h)^-3] of M_200m, with z evolution."""
    return dndlnm(cosmo, mass, z, "tinker08")


def tinker10_bias(cosmo: Cosmology, mass: ArrayLike, z: ArrayLike) -> np.ndarray:
    """Tinker et al. (2010) large-scale (Eulerian, linear) halo bias of M_200m halos,
    b(nu = delta_c / sigma) with delta_c = :data:`DELTA_COLLAPSE`.

    mass [Msun/h], z: any shapes; result shape z.shape + mass.shape (see module docstring).
    """
    sigma, _, _ = _sigma_and_slope(cosmo, mass, z)
    return _per_redshift(cosmo, lambda s, redshift: colossus_bias.haloBiasFromNu(
        DELTA_COLLAPSE / s, z=redshift, mdef=BIAS_MASS_DEFINITION, model="tinker10"), sigma, z)
