"""Tinker (2008) mass function and Tinker (2010) bias against colossus and direct integrals."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
from colossus.cosmology import cosmology as colossus_cosmology
from colossus.lss import bias as colossus_bias
from colossus.lss import mass_function as colossus_mass_function
from colossus.lss import peaks as colossus_peaks
from scipy.integrate import simpson

from cosmo_sbi.cosmology import HUBBLE_DISTANCE_MPC_H, Cosmology
from cosmo_sbi.halos import lagrangian_radius, tinker08_dndlnm, tinker10_bias
from tests.conftest import FIDUCIAL_PARAMETERS

FIDUCIAL = Cosmology.from_params(FIDUCIAL_PARAMETERS)
COSMOLOGIES = [
    FIDUCIAL,
    Cosmology(Omega_m=0.25, sigma_8=0.75, w0=-1.3, wa=0.3, n_s=0.90, h=0.60),
    Cosmology(Omega_m=0.40, sigma_8=0.85, w0=-0.7, wa=0.3, n_s=1.10, h=0.80),
]
MASSES = np.logspace(12, 15, 31)
REDSHIFTS = np.array([0.3, 0.55, 0.8])
# colossus integrates sigma(R) directly over the same k range instead of using its
# interpolation table (whose ~5e-4 error in sigma becomes ~0.6 % in dn/dlnM at 1e15).
EXACT_SIGMA = {"kmin": 1e-5, "kmax": 1e4}


def set_colossus(cosmo: Cosmology) -> None:
    colossus_cosmology.setCosmology(
        "cosmo_sbi_test", flat=True, H0=100.0 * cosmo.h, Om0=cosmo.Omega_m, Ob0=cosmo.Omega_b,
        sigma8=cosmo.sigma_8, ns=cosmo.n_s, Tcmb0=cosmo.T_cmb, relspecies=False,
        de_model="w0wa", w0=cosmo.w0, wa=cosmo.wa, persistence="",
    )


def calibrated(function, *args):
    """Call a Tinker function, failing on any out-of-calibration warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return function(*args)


@pytest.mark.parametrize("cosmo", COSMOLOGIES)
def test_tinker08_matches_colossus(cosmo):
    result = calibrated(tinker08_dndlnm, cosmo, MASSES, REDSHIFTS)
    assert result.shape == (REDSHIFTS.size, MASSES.size)
    set_colossus(cosmo)
    reference = np.array([
        colossus_mass_function.massFunction(MASSES, z, mdef="200m", model="tinker08",
                                            q_out="dndlnM", sigma_args=EXACT_SIGMA)
        for z in REDSHIFTS])
    # Same fit; residual from the two sigma_8 normalisations and colossus's numerical
    # d ln sigma / d ln M: measured max 1.6e-3 (1e15 Msun/h, z = 0.8). 2 % was required.
    np.testing.assert_allclose(result, reference, rtol=3e-3)


@pytest.mark.parametrize("cosmo", COSMOLOGIES)
def test_tinker10_bias_matches_colossus(cosmo):
    result = calibrated(tinker10_bias, cosmo, MASSES, REDSHIFTS)
    set_colossus(cosmo)
    reference = np.array([
        colossus_bias.haloBiasFromNu(
            colossus_peaks.peakHeight(MASSES, z, sigma_args=EXACT_SIGMA), z=z, mdef="200m",
            model="tinker10")
        for z in REDSHIFTS])
    # Only sigma enters (d ln b / d ln sigma ~ 1-3): measured max 1.9e-4. 2 % was required.
    np.testing.assert_allclose(result, reference, rtol=5e-4)


def test_tinker08_default_colossus_within_one_percent():
    set_colossus(FIDUCIAL)
    reference = colossus_mass_function.massFunction(MASSES, 0.5, mdef="200m",
                                                    model="tinker08", q_out="dndlnM")
    # colossus's default interpolated sigma(R) differs from ours by up to ~5e-4, which the
    # exp(-c / sigma^2) term amplifies ~10x at 1e15 Msun/h: measured 0.37 %.
    np.testing.assert_allclose(calibrated(tinker08_dndlnm, FIDUCIAL, MASSES, 0.5), reference,
                               rtol=1e-2)


def test_mass_function_tables_match_direct_integration_between_nodes():
    masses = np.array([1.2345e12, 3.3e13, 7.77e14])  # not on the table's nodes
    z = 0.5
    radius = lagrangian_radius(FIDUCIAL, masses)
    sigma_today, dlnsigma_dlnr = FIDUCIAL.sigma_r_with_slope(radius)
    sigma = FIDUCIAL.growth_factor(z) * sigma_today
    slope = dlnsigma_dlnr / 3.0
    zp1 = 1.0 + z
    alpha = 10 ** (-((0.75 / math.log10(200 / 75)) ** 1.2))
    f = (0.186 * zp1**-0.14 * ((sigma / (2.57 * zp1**-alpha)) ** (-1.47 * zp1**-0.06) + 1)
         * np.exp(-1.19 / sigma**2))
    expected = f * FIDUCIAL.mean_matter_density / masses * -slope
    # Tinker et al. (2008) eqs. 3-8 with sigma from direct integration. The spline table
    # (40 nodes per decade) adds ~1e-7 to ln sigma, which exp(-c / sigma^2) amplifies ~10x
    # at 1e15 Msun/h: measured 1.4e-6.
    np.testing.assert_allclose(calibrated(tinker08_dndlnm, FIDUCIAL, masses, z), expected,
                               rtol=1e-5)


def test_broadcasting_shapes():
    masses = np.logspace(12, 14, 5)
    z = np.linspace(0.3, 0.8, 4)
    assert calibrated(tinker08_dndlnm, FIDUCIAL, masses, z).shape == (4, 5)
    assert calibrated(tinker10_bias, FIDUCIAL, masses, 0.5).shape == (5,)
    assert calibrated(tinker08_dndlnm, FIDUCIAL, 1e13, z).shape == (4,)
    grid = calibrated(tinker08_dndlnm, FIDUCIAL, masses.reshape(5, 1), z.reshape(2, 2))
    assert grid.shape == (2, 2, 5, 1)
    np.testing.assert_array_equal(grid[1, 0, :, 0],
                                  calibrated(tinker08_dndlnm, FIDUCIAL, masses, z[2]))


def test_bias_at_high_mass_grows_with_redshift():
    # Fixed mass is rarer at higher z, so more biased; the bias of 1e12 halos at z ~ 0.5 is
    # of order unity (Tinker 2010 Fig. 2: b(nu = 1.5) ~ 1.2).
    bias = calibrated(tinker10_bias, FIDUCIAL, np.array([1e12, 1e14]), REDSHIFTS)
    assert np.all(np.diff(bias, axis=0) > 0)
    assert 0.8 < bias[1, 0] < 1.5


def test_lagrangian_radius_holds_the_mass():
    masses = np.array([1e10, 1e13, 1e16])
    radius = lagrangian_radius(FIDUCIAL, masses)
    # M = 4/3 pi rho_m R^3 with rho_m = 2.775e11 Omega_m (rounded: 1.3e-4 relative).
    np.testing.assert_allclose(4 / 3 * math.pi * 2.775e11 * FIDUCIAL.Omega_m * radius**3,
                               masses, rtol=2e-4)


@pytest.mark.parametrize(("cosmo", "mass", "z", "name"), [
    (FIDUCIAL, 1e16, 0.5, "mass"),
    (FIDUCIAL, 1e10, 0.5, "mass"),
    (FIDUCIAL, 1e13, 3.0, "redshift"),
    (Cosmology(Omega_m=0.45, sigma_8=0.8, w0=-1, wa=0, n_s=0.96, h=0.7), 1e13, 0.5,
     "Omega_m = 0.45"),
])
@pytest.mark.parametrize("function", [tinker08_dndlnm, tinker10_bias])
def test_warns_outside_calibrated_range(function, cosmo, mass, z, name):
    with pytest.warns(UserWarning, match=name):
        function(cosmo, mass, z)


@pytest.mark.parametrize(("mass", "z", "name"), [
    (0.0, 0.5, "mass"),
    (1e18, 0.5, "mass"),
    (np.nan, 0.5, "mass"),
    (1e13, -0.5, "redshift"),
])
def test_invalid_arguments_raise(mass, z, name):
    with pytest.raises(ValueError, match=name):
        tinker08_dndlnm(FIDUCIAL, mass, z)


def expected_cone_count(cosmo: Cosmology) -> float:
    """Mean number of M > 1e13 Msun/h halos in the survey cone (0.4775 sr, 0.3 < z < 0.8)."""
    z = np.linspace(0.3, 0.8, 101)
    ln_mass = np.linspace(math.log(1e13), math.log(1e16), 301)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # masses above 1e15 are extrapolated (and rare)
        per_volume = simpson(tinker08_dndlnm(cosmo, np.exp(ln_mass), z), x=ln_mass, axis=1)
    chi = cosmo.comoving_distance(z)
    volume_per_z = 0.4775 * chi**2 * HUBBLE_DISTANCE_MPC_H / cosmo.efunc(z)
    return float(simpson(per_volume * volume_per_z, x=z))


def test_cone_counts_and_sensitivities_match_the_prototype():
    # The throw-away prototype (docs/embedded-simulator-notes.md, an independent code)
    # integrated the same model: 360,781 halos and d ln N / d theta below. Our numbers
    # differ by 0.2 % and <= 1 %; 3 % allows for its unrecorded integration details.
    prototype = {"Omega_m": 3.44, "sigma_8": 2.05, "w0": -0.45, "wa": -0.072, "n_s": 1.09,
                 "h": 0.59}
    assert expected_cone_count(FIDUCIAL) == pytest.approx(360_781, rel=0.03)
    steps = {"Omega_m": 0.005, "sigma_8": 0.005, "w0": 0.02, "wa": 0.05, "n_s": 0.01,
             "h": 0.01}
    for name, step in steps.items():
        value = getattr(FIDUCIAL, name)
        up = expected_cone_count(dataclasses.replace(FIDUCIAL, **{name: value + step}))
        down = expected_cone_count(dataclasses.replace(FIDUCIAL, **{name: value - step}))
        sensitivity = (math.log(up) - math.log(down)) / (2 * step)
        assert sensitivity == pytest.approx(prototype[name], rel=0.03), name
