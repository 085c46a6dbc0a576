"""Validation of the embedded simulator's ``sample`` mode on full light cones.

One module-scoped light cone (N = 128, L = 1500 Mpc/h, the default -20..20 deg window,
0.28 < z_cos < 0.82, M > 1e13 Msun/h: ~380k halos) serves the mass-function, bias and
Kaiser checks; the sample mode's mean mass function does not depend on N, and the
k < 0.1 h/Mpc clustering is resolved by a 12 Mpc/h grid. Sensitivity and resolution use
N = 64 cones at fixed seed.
"""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
from scipy.integrate import simpson

from cosmo_sbi import halos
from cosmo_sbi.config import load_config
from cosmo_sbi.cosmology import Cosmology
from cosmo_sbi.histogram import Binning, histogram_counts
from cosmo_sbi.simulators.embedded import simulate_halos, simulate_lightcone
from cosmo_sbi.simulators.embedded.analytic import expected_halo_count, mean_halo_bias
from cosmo_sbi.simulators.embedded.geometry import ConeWindow, box_origin
from cosmo_sbi.simulators.embedded.initial_conditions import linear_density_modes, to_real
from cosmo_sbi.simulators.embedded.simulate import EmbeddedSettings
from tests.conftest import FIDUCIAL_PARAMETERS

FIDUCIAL = FIDUCIAL_PARAMETERS
SEED = 20230417
MIN_MASS = 1e13
GRID, BOX = 128, 1500.0


def settings(grid_size: int = GRID) -> EmbeddedSettings:
    return EmbeddedSettings.from_config({"mode": "sample", "grid_size": grid_size,
                                         "box_size_mpc_h": BOX, "lpt_smoothing_mpc_h": 6.0,
                                         "lowest_halo_mass_msun_h": MIN_MASS})


@pytest.fixture(scope="module")
def config() -> dict:
    return load_config(["config.yaml"])


@pytest.fixture(scope="module")
def window(config: dict) -> ConeWindow:
    return ConeWindow.from_config(config)


@pytest.fixture(scope="module")
def cosmo() -> Cosmology:
    return Cosmology.from_params(FIDUCIAL)


@pytest.fixture(scope="module")
def cone(cosmo: Cosmology, window: ConeWindow) -> dict[str, np.ndarray]:
    return simulate_halos(cosmo, SEED, settings(), window, threads=2)


# ------------------------------------------------------------------ mass function
@pytest.mark.parametrize("low, high", [(1e13, 3e13), (3e13, 1e14), (1e14, 3e14), (3e14, 1e16)])
def test_mass_function_matches_tinker08_over_the_cone(cone, cosmo, window, low, high) -> None:
    expected = expected_halo_count(cosmo, window, low, high)
    found = np.count_nonzero((cone["mass"] >= low) & (cone["mass"] < high))
    # The criterion: within 3% or 3 Poisson sigma, whichever is larger. The
    # realised large-scale field adds ~0.5% (b ~ 2, sigma(1 (Gpc/h)^3) ~ 2e-3): inside.
    assert abs(found - expected) < max(0.03 * expected, 3.0 * np.sqrt(expected)), (
        found, expected)


def test_redshift_distribution_matches_tinker08(cone, cosmo, window) -> None:
    for z_low, z_high in [(0.28, 0.45), (0.45, 0.62), (0.62, 0.82)]:
        shell = ConeWindow(window.ra_deg, window.dec_deg, (z_low, z_high))
        expected = expected_halo_count(cosmo, shell, MIN_MASS)
        found = np.count_nonzero((cone["z_cos"] >= z_low) & (cone["z_cos"] < z_high))
        # ~100k halos per shell: 3% is ~10 Poisson sigma and ~3x the shell's sample variance.
        assert abs(found / expected - 1.0) < 0.03


def test_lightcone_fields_are_consistent(cone, cosmo, window) -> None:
    radius = np.linalg.norm(cone["pos"], axis=1)
    np.testing.assert_allclose(radius, cosmo.comoving_distance(cone["z_cos"]), rtol=1e-5)
    v_los = np.einsum("ij,ij->i", cone["vel"], cone["pos"]) / radius
    np.testing.assert_allclose(cone["z_obs"] - cone["z_cos"],
                               (1 + cone["z_cos"]) * v_los / 299792.458, atol=1e-9)
    assert np.all(window.contains(cone["ra"], cone["dec"], cone["z_cos"]))
    # rms line-of-sight velocity of linear theory at z ~ 0.55 with 6 Mpc/h smoothing is
    # ~250 km/s (the prototype measured 250-275); +-20% brackets it.
    assert 200.0 < np.std(v_los) < 320.0


@pytest.mark.parametrize("corner", [
    {"Omega_m": 0.25, "sigma_8": 0.75, "w0": -1.3, "wa": -0.3, "n_s": 0.90, "h": 0.60},
    {"Omega_m": 0.40, "sigma_8": 0.85, "w0": -0.7, "wa": 0.3, "n_s": 1.10, "h": 0.80},
    {"Omega_m": 0.25, "sigma_8": 0.85, "w0": -1.3, "wa": 0.3, "n_s": 1.10, "h": 0.60},
])
def test_prior_corners_run_with_the_right_mean_count(corner, window) -> None:
    """The deepest cone of the prior (first corner) still fits the 1500 Mpc/h box."""
    cosmo = Cosmology.from_params({**FIDUCIAL, **corner})
    found = len(simulate_halos(cosmo, SEED, settings(32), window)["mass"])
    expected = expected_halo_count(cosmo, window, MIN_MASS)
    # 260k-550k halos: Poisson 0.2%, large-scale variance ~0.5% (measured within 0.3%).
    assert found == pytest.approx(expected, rel=0.02)


# ------------------------------------------------------------------ clustering
def _cone_grid(cosmo: Cosmology, window: ConeWindow):
    """Mask of grid cells inside the window and their redshift, on the periodic grid."""
    origin = box_origin(window, cosmo, BOX)
    coordinates = np.arange(GRID) * (BOX / GRID)
    axes = [origin[i] + np.mod(coordinates - origin[i], BOX) for i in range(3)]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    radius = np.sqrt(x * x + y * y + z * z)
    ra = np.degrees(np.arctan2(y, x)) + 0 * z
    dec = np.degrees(np.arcsin(z / radius))
    chi_low, chi_high = window.distance_range(cosmo)
    inside = (radius >= chi_low) & (radius < chi_high)
    redshift = np.zeros(radius.shape)
    redshift[inside] = cosmo.redshift_at_distance(radius[inside])
    mask = inside & window.contains(ra, dec, np.where(inside, redshift, -1.0))
    return mask, redshift


def _overdensity(position: np.ndarray, mask: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """n / <n> - 1 on the masked cells (nearest grid point), 0 outside."""
    index = np.rint(np.mod(position, BOX) / (BOX / GRID)).astype(np.int64) % GRID
    counts = np.bincount(np.ravel_multi_index(index.T, (GRID,) * 3),
                         minlength=GRID**3).reshape((GRID,) * 3)
    return np.where(mask, counts / np.where(mask, expected, 1.0) - 1.0, 0.0)


@pytest.fixture(scope="module")
def clustering(cone, cosmo, window):
    mask, redshift = _cone_grid(cosmo, window)
    z_nodes = np.linspace(0.27, 0.83, 57)
    mass = np.geomspace(MIN_MASS, 1e16, 301)
    with pytest.warns(UserWarning, match="mass"):
        density = simpson(halos.tinker08_dndlnm(cosmo, mass, z_nodes), x=np.log(mass), axis=-1)
    expected = np.interp(redshift, z_nodes, density) * (BOX / GRID) ** 3
    linear = to_real(linear_density_modes(SEED, GRID, BOX, cosmo.linear_power), GRID, 2)
    growth = np.where(mask, cosmo.growth_factor(np.where(mask, redshift, 0.0)), 0.0)
    real = _overdensity(cone["pos"], mask, expected)
    los = cone["pos"] / np.linalg.norm(cone["pos"], axis=1)[:, None]
    redshift_space = los * cosmo.comoving_distance(cone["z_obs"])[:, None]
    modes = {name: np.fft.rfftn(field) for name, field in
             (("real", real), ("redshift", _overdensity(redshift_space, mask, expected)),
              ("linear", growth * linear))}
    full = np.fft.fftfreq(GRID, 1.0 / GRID)
    half = np.arange(GRID // 2 + 1)
    k = 2 * np.pi / BOX * np.sqrt(full[:, None, None] ** 2 + full[None, :, None] ** 2
                                  + half[None, None, :] ** 2)
    # Undo the nearest-grid-point assignment window (an estimator artefact, 1.5% at 0.05).
    assignment = (np.sinc(full / GRID)[:, None, None] * np.sinc(full / GRID)[None, :, None]
                  * np.sinc(half / GRID)[None, None, :])
    for name in ("real", "redshift"):
        modes[name] /= assignment
    # Poisson shot noise of n / <n> - 1 per mode: sum over masked cells of 1 / <n>.
    shot_noise = np.sum(np.where(mask, 1.0 / np.where(mask, expected, 1.0), 0.0))
    return modes, k, shot_noise / assignment**2


def test_large_scale_bias_matches_tinker10(clustering, cosmo, window) -> None:
    modes, k, _ = clustering
    low = (k > 0) & (k < 0.05)
    cross = np.sum((modes["real"] * np.conj(modes["linear"]))[low].real)
    bias = cross / np.sum(np.abs(modes["linear"][low]) ** 2)
    predicted, _ = mean_halo_bias(cosmo, window, MIN_MASS)
    # ~1200 effective modes below k = 0.05 in the masked cone and n P ~ 3: the ratio's
    # noise is ~2%. The 6 Mpc/h smoothing of the 2LPT and bias fields and the in-cell
    # placement lower it by 3-5% at k ~ 0.04 (measured 0.94-0.96 of Tinker10 for two
    # seeds); the 10% still separates the Tinker10 bias (2.1) from b = 1.9 or 2.3.
    assert bias == pytest.approx(predicted, rel=0.10)


def test_redshift_space_monopole_follows_kaiser(clustering, cosmo, window) -> None:
    modes, k, shot_noise = clustering
    band = (k > 0.02) & (k < 0.08)
    real = np.sum(np.abs(modes["real"][band]) ** 2 - shot_noise[band])
    redshift = np.sum(np.abs(modes["redshift"][band]) ** 2 - shot_noise[band])
    bias, growth_rate = mean_halo_bias(cosmo, window, MIN_MASS)
    beta = growth_rate / bias
    kaiser = 1.0 + 2.0 * beta / 3.0 + beta**2 / 5.0
    # Same halos in both spaces (cosmic variance cancels to ~1%); the 2LPT velocities are
    # smoothed, so no fingers of God; radial (wide-angle) RSD changes the monopole by
    # < 1%. 10% of the boost (1.3) is the tolerance.
    assert redshift / real == pytest.approx(kaiser, rel=0.10)


# ------------------------------------------------------------------ sensitivity
STEPS = {"Omega_m": 0.02, "sigma_8": 0.02, "w0": 0.1, "wa": 0.3, "n_s": 0.03, "h": 0.04}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STEPS))
def test_count_sensitivity_matches_the_analytic_cone_integral(name, window) -> None:
    step = STEPS[name]
    counts, predictions = [], []
    for sign in (-1.0, 1.0):
        cosmo = Cosmology.from_params({**FIDUCIAL, name: FIDUCIAL[name] + sign * step})
        halos_found = simulate_halos(cosmo, SEED, settings(64), window, threads=2)
        counts.append(len(halos_found["mass"]))
        predictions.append(expected_halo_count(cosmo, window, MIN_MASS))
    measured = np.log(counts[1] / counts[0]) / (2 * step)
    analytic = np.log(predictions[1] / predictions[0]) / (2 * step)
    # Fixed seed: the same Gaussian field and hashed uniforms, so the count noise cancels
    # except for cells whose Poisson draw changes (~sqrt(|dN|)). 20% is the issue's
    # tolerance; wa (d ln N / d wa ~ -0.07) gets the same test with a 0.3 step.
    assert np.sign(measured) == np.sign(analytic)
    assert measured == pytest.approx(analytic, rel=0.20), (measured, analytic)


# ------------------------------------------------------------------ resolution
@pytest.mark.slow
def test_histogram_mean_is_resolution_independent(cone, cosmo, window, config) -> None:
    binning = Binning.from_config(config["histogram"])
    coarse = simulate_halos(cosmo, SEED, settings(64), window, threads=2)
    means = [histogram_counts(c["ra"][c["mass"] >= MIN_MASS], c["dec"][c["mass"] >= MIN_MASS],
                              c["z_obs"][c["mass"] >= MIN_MASS], binning).mean()
             for c in (coarse, cone)]
    # The mean mass function is exact at any N and the shared modes are identical, so the
    # difference is Poisson noise (0.25% for ~360k halos) and the small-scale modes that
    # only the finer grid has; the 2%.
    assert means[0] == pytest.approx(means[1], rel=0.02)


# ------------------------------------------------------------------ files
def test_same_seed_and_config_give_a_bit_identical_file(tmp_path, config) -> None:
    small = {**config, "simulator": {**config["simulator"],
                                     "embedded": {**config["simulator"]["embedded"],
                                                  "grid_size": 32}}}
    row = {**FIDUCIAL, "id": "0003", "set": "fiducial", "seed": 5}
    paths = [tmp_path / "first.h5", tmp_path / "second.h5", tmp_path / "other.h5"]
    simulate_lightcone(small, row, paths[0])
    simulate_lightcone(small, row, paths[1], threads=2)
    simulate_lightcone(small, {**row, "seed": 6}, paths[2])
    with h5py.File(paths[0]) as first, h5py.File(paths[1]) as second, \
            h5py.File(paths[2]) as other:
        assert sorted(first) == ["dec", "mass", "pos", "ra", "vel", "z_cos", "z_obs"]
        for name in first:
            assert np.array_equal(first[name][...], second[name][...]), name
        assert len(first["mass"]) != len(other["mass"]) or not np.array_equal(
            first["ra"][...], other["ra"][...])
        assert first.attrs["seed"] == 5 and first.attrs["simulator"] == "embedded"
        assert first.attrs["sim_id"] == "0003"


def test_histogram_cut_below_the_floor_warns(tmp_path, config, caplog) -> None:
    low_cut = {**config, "histogram": {**config["histogram"], "min_mass_msun_h": 5e12},
               "simulator": {**config["simulator"],
                             "embedded": {**config["simulator"]["embedded"], "grid_size": 32}}}
    row = {**FIDUCIAL, "id": "0000", "set": "fiducial", "seed": 1}
    with caplog.at_level("WARNING", logger="cosmo_sbi.simulators.embedded.simulate"):
        simulate_lightcone(low_cut, row, tmp_path / "cone.h5")
    assert re.search(r"histogram.min_mass_msun_h = 5e\+12 .* floor of 1e\+13", caplog.text)
