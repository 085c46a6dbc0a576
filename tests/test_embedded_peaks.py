"""Validation of the embedded simulator's ``peaks`` mode (peak-patch finder, no mass
function put in): its mass function against Tinker08 above the stated floor, its filter
and barrier, and the mass-cut warning.

The light cone is small so that a 256^3 grid reaches a low floor: a 560 Mpc/h box holding
the -10..10 deg window at 0.3 < z_cos < 0.5 (cell 2.2 Mpc/h, floor = a patch of 3 cells
in radius = 1.0e14 Msun/h; ~1000 halos above it).
"""

from __future__ import annotations

import numpy as np
import pytest

from cosmo_sbi.cosmology import Cosmology
from cosmo_sbi.simulators.embedded import EmbeddedSettings, simulate_halos
from cosmo_sbi.simulators.embedded.analytic import expected_halo_count
from cosmo_sbi.simulators.embedded.geometry import ConeWindow
from cosmo_sbi.simulators.embedded.peaks import (
    FLOOR_RADIUS_CELLS,
    collapse_barrier,
    floor_mass,
    smoothing_radii,
    tapered_top_hat,
)
from cosmo_sbi.simulators.embedded.simulate import mass_floor_msun_h
from tests.conftest import FIDUCIAL_PARAMETERS

FIDUCIAL = FIDUCIAL_PARAMETERS
WINDOW = ConeWindow(ra_deg=(-10.0, 10.0), dec_deg=(-10.0, 10.0), z_cos=(0.3, 0.5))


def settings(grid_size: int, box_size: float = 560.0) -> EmbeddedSettings:
    return EmbeddedSettings.from_config({"mode": "peaks", "grid_size": grid_size,
                                         "box_size_mpc_h": box_size,
                                         "lpt_smoothing_mpc_h": 6.0,
                                         "lowest_halo_mass_msun_h": 1e12})


def test_filter_radii_and_barrier() -> None:
    cosmo = Cosmology.from_params(FIDUCIAL)
    x = np.array([1e-4, 1.0, 4.4934])  # 4.4934: first zero of the top-hat
    np.testing.assert_allclose(tapered_top_hat(x), [1.0, 0.9035 * np.exp(-0.045), 0.0],
                               atol=2e-4)
    radii = smoothing_radii(2.0)
    assert radii[0] == 30.0 and radii[-1] >= 3.0 and radii[-1] < 3.0 * np.exp(0.08)
    np.testing.assert_allclose(np.diff(np.log(radii)), -0.08)
    # delta_c(z) / D(z) grows with z; at z = 0 it is 0.95 x 1.686 (1 + 0.0123 log Omega_m).
    barrier = collapse_barrier(cosmo, np.array([0.0, 0.5, 1.0]))
    assert barrier[0] == pytest.approx(0.95 * 1.68647 * (1 + 0.0123 * np.log10(0.3133)))
    assert np.all(np.diff(barrier) > 0)
    with pytest.raises(ValueError, match="grid_size"):
        smoothing_radii(25.0)


def test_floor_is_three_cells_in_radius() -> None:
    cosmo = Cosmology.from_params(FIDUCIAL)
    floor = mass_floor_msun_h(cosmo, settings(256))
    assert floor == pytest.approx(floor_mass(cosmo, 560.0 / 256))
    assert cosmo.lagrangian_radius(floor) == pytest.approx(FLOOR_RADIUS_CELLS * 560.0 / 256)


@pytest.mark.slow
def test_mass_function_within_15_percent_of_tinker08_above_the_floor() -> None:
    cosmo = Cosmology.from_params(FIDUCIAL)
    halos = simulate_halos(cosmo, 3, settings(256), WINDOW, threads=2)
    floor = mass_floor_msun_h(cosmo, settings(256))
    for low in (floor, 2 * floor):
        expected = expected_halo_count(cosmo, WINDOW, low)
        found = np.count_nonzero(halos["mass"] >= low)
        # ~960 (~230) halos expected: Poisson 3% (7%); the 15% plus 1 sigma for the
        # rarer threshold. Nothing here was fitted to Tinker08 except the barrier factor.
        assert abs(found / expected - 1.0) < 0.15 + 1.0 / np.sqrt(expected), (low, found,
                                                                             expected)
    assert np.all(WINDOW.contains(halos["ra"], halos["dec"], halos["z_cos"]))


@pytest.mark.slow
def test_counts_above_the_coarse_floor_converge_with_resolution() -> None:
    """N = 128 and 256 in a 300 Mpc/h box around a nearby wide window (-30..30 deg,
    0.01 < z < 0.1): the coarse grid's floor is 1.3e14 Msun/h with ~170 halos expected."""
    cosmo = Cosmology.from_params(FIDUCIAL)
    window = ConeWindow(ra_deg=(-30.0, 30.0), dec_deg=(-30.0, 30.0), z_cos=(0.01, 0.1))
    coarse, fine = (simulate_halos(cosmo, 3, settings(grid_size, 300.0), window, threads=2)
                    for grid_size in (128, 256))
    floor = mass_floor_msun_h(cosmo, settings(128, 300.0))
    counts = [np.count_nonzero(halos["mass"] >= floor) for halos in (coarse, fine)]
    # Same seed and box: the shared modes are identical, so the same patches collapse at
    # both resolutions and the counts differ only by peaks near the floor (measured
    # 139 vs 142). The histogram mean is these counts / 64^3, so the 5% on it is
    # 5% here.
    assert counts[0] > 100
    assert counts[0] == pytest.approx(counts[1], rel=0.05)
