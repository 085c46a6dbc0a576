"""A PINOCCHIO box smaller than the light cone is refused unless replication is allowed;
then the converter records (and warns about) the fraction of repeated halos."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from astropy.cosmology import Flatw0waCDM

from cosmo_sbi.config import ConfigError
from cosmo_sbi.lightcone import read_lightcone
from cosmo_sbi.simulators.embedded.geometry import largest_cone_extent
from cosmo_sbi.simulators.pinocchio import (
    convert_run,
    repeated_fraction,
    run_pinocchio,
    setup_run,
)
from cosmo_sbi.simulators.pinocchio_io import read_plc
from tests.conftest import FIDUCIAL_PARAMETERS, REPO, make_config

FAKE = REPO / "tests/fake_pinocchio/pinocchio.x"
LC64 = REPO / "tests/data/pinocchio/lc64/pinocchio.lc64.plc.out"


def pinocchio_config(**settings: object) -> dict:
    return make_config({"simulator": {"backend": "pinocchio", "pinocchio": {
        "executable": str(FAKE), "command": "{executable} {parameter_file}", **settings}}})


def test_cone_extent_at_the_prior_corner_matches_the_analytic_box() -> None:
    """Window |RA|, |DEC| < 20 deg: the widest point is (RA, DEC) = (20, 0) at chi_max, so
    width = 2 sin(20) chi_max; depth = chi_max - cos(20)^2 chi_min (the corner at chi_min).
    The largest distances are at the prior's smallest Omega_m, w0 and wa."""
    config = make_config()
    (z_low, z_high), pad = config["histogram"]["z_obs"], config["lightcone"]["z_padding"]
    ranges = config["design"]["latin_hypercube"]["ranges"]
    astropy = Flatw0waCDM(H0=100.0, Om0=ranges["Omega_m"][0], w0=ranges["w0"][0],
                          wa=ranges["wa"][0], Tcmb0=0.0)
    chi_min, chi_max = astropy.comoving_distance([z_low - pad, z_high + pad]).value
    extent, cosmo = largest_cone_extent(config)
    assert (cosmo.Omega_m, cosmo.w0, cosmo.wa) == (0.25, -1.3, -0.3)
    twenty = np.radians(20.0)
    np.testing.assert_allclose(extent, [chi_max - np.cos(twenty) ** 2 * chi_min,
                                        2 * np.sin(twenty) * chi_max,
                                        2 * np.sin(twenty) * chi_max], rtol=1e-4)


def test_small_box_refused_naming_the_size_needed() -> None:
    """config.yaml's window needs 1497 Mpc/h at the prior corner (the fiducial cosmology
    alone: 1352, the embedded simulator's limit); the issue's 500 Mpc/h box is refused."""
    for box in (500.0, 1496.0):
        with pytest.raises(ConfigError, match=r"simulator.pinocchio.box_size_mpc_h = "
                                              r"\d+ .*expected box_size_mpc_h >= 1497.*"
                                              "allow_replication: true"):
            pinocchio_config(box_size_mpc_h=box)
    assert pinocchio_config(box_size_mpc_h=1497.0)["simulator"]["pinocchio"]["box_size_mpc_h"]
    accepted = pinocchio_config(box_size_mpc_h=500.0, allow_replication=True)
    assert accepted["simulator"]["pinocchio"]["allow_replication"] is True


def test_repeated_fraction_known_answers() -> None:
    config = make_config()
    ra = np.array([0.0, 1.0, 2.0, 3.0, 30.0])  # the last one is outside the window
    dec = np.zeros(5)
    z_obs = np.full(5, 0.5)
    assert repeated_fraction(config, np.array([1, 2, 3, 4, 1]), ra, dec, z_obs) == (0.0, 4)
    assert repeated_fraction(config, np.array([7, 7, 7, 8, 8]), ra, dec, z_obs) == (0.5, 4)
    assert repeated_fraction(config, np.array([7]), ra[4:], dec[4:], z_obs[4:]) == (0.0, 0)


def test_converter_records_and_warns_about_repeats(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """The lc64 fixture is a real 500 Mpc/h run (64^3) whose cone replicates the box: 875
    halos, 125 names. The fraction is counted here from repeat counts instead of names."""
    config = pinocchio_config(box_size_mpc_h=500.0, allow_replication=True, grid_size=64)
    row = {**FIDUCIAL_PARAMETERS, "id": "0000", "set": "fiducial", "seed": 1}
    run_dir = tmp_path / "run"
    setup_run(config, row, run_dir)
    run_pinocchio(config, run_dir)
    with caplog.at_level(logging.WARNING, logger="cosmo_sbi.simulators.pinocchio"):
        convert_run(config, row, run_dir, tmp_path / "lightcone.h5")
    halos, attrs = read_lightcone(tmp_path / "lightcone.h5", fields=("ra", "dec", "z_obs"))
    hist = config["histogram"]
    inside = np.ones(len(halos["ra"]), dtype=bool)
    for field, key in (("ra", "ra_deg"), ("dec", "dec_deg"), ("z_obs", "z_obs")):
        inside &= (halos[field] >= hist[key][0]) & (halos[field] < hist[key][1])
    _, counts = np.unique(read_plc(LC64)["name"][inside], return_counts=True)
    expected = (counts - 1).sum() / counts.sum()
    assert attrs["pinocchio_repeated_fraction"] == pytest.approx(expected, rel=1e-12)
    assert 0.5 < expected < 1.0
    assert f"{100 * expected:.1f}% of the {counts.sum()} halos" in caplog.text

