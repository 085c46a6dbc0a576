"""Analytic light-cone predictions from the halo fits (cosmo_sbi.halos), independent of
any simulation: the expected halo count and the mean halo bias in a window."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.integrate import simpson

from cosmo_sbi import halos
from cosmo_sbi.cosmology import HUBBLE_DISTANCE_MPC_H, Cosmology
from cosmo_sbi.mass_calibration import MassFunctionRatio
from cosmo_sbi.simulators.embedded.geometry import ConeWindow

_REDSHIFT_NODES = 48
_MASS_NODES_PER_DECADE = 100


def window_solid_angle(window: ConeWindow) -> float:
    """Solid angle [sr] of the RA x DEC window: dRA (sin DEC_max - sin DEC_min)."""
    ra = np.radians(window.ra_deg)
    dec = np.radians(window.dec_deg)
    return float((ra[1] - ra[0]) * (np.sin(dec[1]) - np.sin(dec[0])))


def _redshift_quadrature(cosmo: Cosmology, window: ConeWindow) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes in z_cos and weights times dV/dz [(Mpc/h)^3] over the window."""
    nodes, weights = np.polynomial.legendre.leggauss(_REDSHIFT_NODES)
    low, high = window.z_cos
    z = 0.5 * (high - low) * nodes + 0.5 * (high + low)
    chi = cosmo.comoving_distance(z)
    volume = window_solid_angle(window) * chi**2 * HUBBLE_DISTANCE_MPC_H / cosmo.efunc(z)
    return z, 0.5 * (high - low) * weights * volume


def _mass_grid(min_mass: float, max_mass: float) -> np.ndarray:
    decades = math.log10(max_mass / min_mass)
    return np.geomspace(min_mass, max_mass, max(int(decades * _MASS_NODES_PER_DECADE), 8) + 1)


def _tinker(function, cosmo: Cosmology, mass: np.ndarray, z: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="halo fits extrapolated: mass")
        return function(cosmo, mass, z)


def expected_halo_count(cosmo: Cosmology, window: ConeWindow, min_mass: float,
                        max_mass: float = 1e16, mass_function: str = "tinker08",
                        ratio: MassFunctionRatio | None = None) -> float:
    """Mean number of halos with min_mass <= M < max_mass [Msun/h] in the window (in
    z_cos), from ``mass_function`` (Tinker et al. 2008 by default) times ``ratio``."""
    z, volume_weights = _redshift_quadrature(cosmo, window)
    mass = _mass_grid(min_mass, max_mass)
    dndlnm = _tinker(lambda c, m, zz: halos.dndlnm(c, m, zz, mass_function), cosmo, mass, z)
    if ratio is not None:
        dndlnm = dndlnm * ratio(mass, z)
    density = simpson(dndlnm, x=np.log(mass), axis=-1)
    return float(np.sum(volume_weights * density))


def mean_halo_bias(cosmo: Cosmology, window: ConeWindow, min_mass: float,
                   max_mass: float = 1e16, mass_function: str = "tinker08",
                   ratio: MassFunctionRatio | None = None) -> tuple[float, float]:
    """Tinker et al. (2010) bias of halos above ``min_mass`` in the window and the growth
    rate f, as a cross-power of the halo overdensity (n / <n>(z) - 1, unit weight per
    volume) with the linear field sees them: the number-weighted bias at each z (halos
    of ``mass_function`` times ``ratio``), averaged over z_cos with weight dV/dz D1(z)^2
    (volume times linear power). Returns (b, f).
    """
    z, volume_weights = _redshift_quadrature(cosmo, window)
    mass = _mass_grid(min_mass, max_mass)
    dndlnm = _tinker(lambda c, m, zz: halos.dndlnm(c, m, zz, mass_function), cosmo, mass, z)
    if ratio is not None:
        dndlnm = dndlnm * ratio(mass, z)
    bias = _tinker(halos.tinker10_bias, cosmo, mass, z)
    density = simpson(dndlnm, x=np.log(mass), axis=-1)
    mean_bias = simpson(dndlnm * bias, x=np.log(mass), axis=-1) / density
    growth, _, rate, _ = cosmo.growth(z)
    weight = volume_weights * growth**2
    return (float(np.sum(weight * mean_bias) / np.sum(weight)),
            float(np.sum(weight * rate) / np.sum(weight)))
