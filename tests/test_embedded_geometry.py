"""Light-cone geometry of the embedded simulator and its input checks: box size, memory,
redshift iteration, and clear errors or warnings for bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cosmo_sbi.config import load_config
from cosmo_sbi.cosmology import Cosmology
from cosmo_sbi.lightcone import radec_from_cartesian
from cosmo_sbi.simulators.embedded.geometry import (
    ConeWindow,
    RedshiftTables,
    box_origin,
    candidate_cells,
    cell_positions,
    displace_to_lightcone,
)
from cosmo_sbi.simulators.embedded.initial_conditions import linear_density_modes
from cosmo_sbi.simulators.embedded.lpt import lpt_fields_at, smoothing_kernel
from cosmo_sbi.simulators.embedded.simulate import (
    EmbeddedSettings,
    check_memory,
    reach_margin,
    required_memory_bytes,
    simulate_halos,
)
from tests.conftest import FIDUCIAL_PARAMETERS

FIDUCIAL = FIDUCIAL_PARAMETERS


@pytest.fixture(scope="module")
def window() -> ConeWindow:
    return ConeWindow.from_config(load_config(["config.yaml"]))


def settings(**changes: object) -> EmbeddedSettings:
    section = {"mode": "sample", "grid_size": 64, "box_size_mpc_h": 1500.0,
               "lpt_smoothing_mpc_h": 6.0, "lowest_halo_mass_msun_h": 1e13}
    return EmbeddedSettings.from_config({**section, **changes})


def test_bounding_box_matches_the_cone_formulas(window: ConeWindow) -> None:
    cosmo = Cosmology.from_params(FIDUCIAL)
    chi_min, chi_max = window.distance_range(cosmo)
    lower, upper = window.bounding_box(cosmo)
    corner = math.cos(math.radians(20.0)) ** 2
    # Depth chi_max - cos^2(20 deg) chi_min, width 2 sin(20 deg) chi_max (exact extremes;
    # the boundary sampling resolves them to 1e-5 relative).
    np.testing.assert_allclose(upper - lower,
                               [chi_max - corner * chi_min,
                                2 * math.sin(math.radians(20)) * chi_max,
                                2 * math.sin(math.radians(20)) * chi_max], rtol=1e-5)
    # The default 1500 Mpc/h box holds the cone even at the prior's deepest corner.
    deep = Cosmology.from_params({**FIDUCIAL, "Omega_m": 0.25, "w0": -1.3, "wa": -0.3})
    assert np.all(np.diff(window.bounding_box(deep), axis=0) < 1500.0)


def test_box_too_small_names_the_size_needed(window: ConeWindow) -> None:
    cosmo = Cosmology.from_params(FIDUCIAL)
    needed = np.max(np.diff(window.bounding_box(cosmo), axis=0))
    with pytest.raises(ValueError, match=rf"box_size_mpc_h >= {needed:.0f}"):
        box_origin(window, cosmo, 1000.0)


def test_lightcone_redshift_is_consistent_with_position(window: ConeWindow) -> None:
    cosmo = Cosmology.from_params(FIDUCIAL)
    tables = RedshiftTables.build(cosmo, 0.2, 0.9)
    origin = box_origin(window, cosmo, 1500.0)
    rng = np.random.default_rng(0)
    lagrangian = np.column_stack([rng.uniform(900, 1800, 1000), rng.uniform(-300, 300, 1000),
                                  rng.uniform(-300, 300, 1000)])
    psi1 = rng.normal(0, 5, (1000, 3))
    psi2 = rng.normal(0, 1, (1000, 3))
    position, redshift = displace_to_lightcone(lagrangian, psi1, psi2, tables, origin, 1500.0)
    d1, d2, _, _ = cosmo.growth(redshift)
    # x = q + D1(z) psi1 + D2(z) psi2 with chi(z) = |x|: the iteration tolerance is 1e-6 in
    # z, i.e. ~3e-3 Mpc/h in distance, and D1 changes by ~1e-6 over it.
    np.testing.assert_allclose(position, lagrangian + d1[:, None] * psi1 + d2[:, None] * psi2,
                               atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(position, axis=1),
                               cosmo.comoving_distance(redshift), atol=1e-2)


def test_candidate_cells_include_every_cell_displaced_into_the_cone() -> None:
    """Brute force on every cell of a box that holds the cone with 0.2 Mpc/h to spare: an
    asymmetric window (RA 0..30 deg) lies along the y = 0 face, so cells just below it
    (whose unrolled image sits at the far face) are displaced through the face into the
    cone: ~440 of them here, 32 of which a test of the image alone missed."""
    cosmo = Cosmology.from_params(FIDUCIAL)
    window = ConeWindow(ra_deg=(0.0, 30.0), dec_deg=(-5.0, 5.0), z_cos=(0.1, 0.15))
    lower, upper = window.bounding_box(cosmo)
    box_size, grid_size = float(np.max(upper - lower)) + 0.2, 64
    origin = box_origin(window, cosmo, box_size)
    modes = linear_density_modes(5, grid_size, box_size, cosmo.linear_power)
    modes *= smoothing_kernel(grid_size, box_size, 6.0)
    cells = np.arange(grid_size**3)
    fields = lpt_fields_at(modes, cells, box_size)
    tables = RedshiftTables.build(cosmo, 0.02, 0.3)
    lagrangian = cell_positions(cells, grid_size, box_size, origin)
    position, redshift = displace_to_lightcone(lagrangian, fields.psi1, fields.psi2, tables,
                                               origin, box_size)
    inside = window.contains(*radec_from_cartesian(position), redshift)
    d1, d2 = tables.background_at(redshift, count=2)
    through_a_face = np.any(np.abs(position - lagrangian - d1[:, None] * fields.psi1
                                   - d2[:, None] * fields.psi2) > box_size / 2, axis=1)
    assert np.count_nonzero(inside & through_a_face) > 100
    margin = reach_margin(cosmo, settings(grid_size=grid_size, box_size_mpc_h=box_size))
    candidates = candidate_cells(window, cosmo, grid_size, box_size, origin, margin)
    assert np.setdiff1d(cells[inside], candidates).size == 0


def test_memory_estimate_refuses_a_grid_that_cannot_fit() -> None:
    big = settings(grid_size=4096)
    needed = required_memory_bytes(big)
    # The estimate grows as N^3 (plus a fixed overhead).
    growth = (needed - required_memory_bytes(settings(grid_size=2048))) / (
        required_memory_bytes(settings(grid_size=2048)) - required_memory_bytes(
            settings(grid_size=1024)))
    assert growth == pytest.approx(8.0)
    with pytest.raises(MemoryError, match=r"grid_size = 4096 .* needs about .* GiB"):
        check_memory(big, available=int(needed / 2))
    check_memory(settings(grid_size=64), available=int(needed))


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="simulator.embedded.grid_size"):
        settings(grid_size=63)
    with pytest.raises(ValueError, match="simulator.embedded.mode"):
        settings(mode="nbody")


def test_too_many_halos_per_cell_is_refused() -> None:
    small = ConeWindow(ra_deg=(-2.0, 2.0), dec_deg=(-2.0, 2.0), z_cos=(0.3, 0.35))
    # 1e9 Msun/h halos in (47 Mpc/h)^3 cells: ~1e4 per cell, far beyond exp(-rate) range.
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="halos per cell"):
        simulate_halos(Cosmology.from_params(FIDUCIAL), 1,
                       settings(grid_size=32, lowest_halo_mass_msun_h=1e9), small)


def test_extrapolated_fits_warn_with_the_value(window: ConeWindow) -> None:
    small = ConeWindow(ra_deg=(-2.0, 2.0), dec_deg=(-2.0, 2.0), z_cos=(0.3, 0.35))
    # A 200 Mpc/h box holds this small cone; 6 Mpc/h cells keep 5e10 halos per cell low.
    with pytest.warns(UserWarning, match=r"lowest_halo_mass_msun_h = 5e\+10"):
        simulate_halos(Cosmology.from_params(FIDUCIAL), 1,
                       settings(grid_size=32, box_size_mpc_h=200.0,
                                lowest_halo_mass_msun_h=5e10),
                       small)
    with pytest.warns(UserWarning, match="Omega_m = 0.45"):
        simulate_halos(Cosmology.from_params({**FIDUCIAL, "Omega_m": 0.45}), 1,
                       settings(grid_size=32, box_size_mpc_h=200.0), small)


@pytest.mark.parametrize("mode", ["sample", "peaks"])
def test_a_window_without_halos_gives_an_empty_catalogue(mode: str) -> None:
    tiny = ConeWindow(ra_deg=(-0.01, 0.01), dec_deg=(-0.01, 0.01), z_cos=(0.3, 0.3001))
    halos = simulate_halos(Cosmology.from_params(FIDUCIAL), 1,
                           settings(mode=mode, grid_size=16, box_size_mpc_h=200.0), tiny)
    assert {name: values.shape for name, values in halos.items()} == {
        "ra": (0,), "dec": (0,), "z_cos": (0,), "z_obs": (0,), "mass": (0,), "pos": (0, 3),
        "vel": (0, 3)}
