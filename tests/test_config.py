"""Config validation: the schema and the arithmetic checks name the field that is wrong."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from cosmo_sbi.config import ConfigError, load_config, window_corner_angle_deg
from tests.conftest import REPO, make_config


def test_default_and_laptop_configs_are_valid() -> None:
    config = load_config([REPO / "config.yaml", REPO / "config" / "laptop.yaml"])
    assert config["design"]["latin_hypercube"]["n_simulations"] == 48
    assert config["design"]["latin_hypercube"]["ranges"]["w0"] == [-1.3, -0.7]
    # defaults from the schema are filled in
    assert config["simulator"]["pinocchio"]["num_files"] == 1


@pytest.mark.parametrize(
    ("overlay", "field"),
    [
        ({"design": {"latin_hypercube": {"ranges": {"Omega_m": [0.4, 0.25]}}}},
         "design.latin_hypercube.ranges.Omega_m"),
        ({"design": {"latin_hypercube": {"ranges": {"Omega_m": [0.0, 0.4]}}}},
         "design.latin_hypercube.ranges.Omega_m"),
        ({"design": {"latin_hypercube": {"ranges": {"sigma_8": [-0.1, 0.8]}}}},
         "design.latin_hypercube.ranges.sigma_8"),
        ({"design": {"latin_hypercube": {"ranges": {"w0": [-1.0, -0.2], "wa": [-0.3, 0.3]}}}},
         "w0 + wa < 0"),
        ({"design": {"latin_hypercube": {"n_simulations": 0}}}, "design.latin_hypercube"),
        ({"histogram": {"bins": [64, 0, 64]}}, "histogram.bins"),
        ({"histogram": {"ra_deg": [-25.0, 25.0]}}, "lightcone.aperture_deg"),
        ({"histogram": {"z_obs": [0.8, 0.3]}}, "histogram.z_obs"),
        ({"lightcone": {"aperture_deg": 27.0}}, "lightcone.aperture_deg"),
        ({"dataset": {"split": {"train": 0.5, "validation": 0.1, "test": 0.1}}},
         "dataset.split"),
        ({"histogram": {"n_bins": 64}}, "histogram"),
        ({"simulator": {"backend": "gadget"}}, "simulator.backend"),
    ],
)
def test_bad_config_names_the_field(overlay: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace("+", r"\+")):
        make_config(overlay)


def test_unknown_key_is_reported() -> None:
    with pytest.raises(ConfigError, match="histogram.*n_bins"):
        make_config({"histogram": {"n_bins": 64}})


def test_window_corner_angle_matches_spherical_trigonometry() -> None:
    # RA = atan2(y, x), DEC = asin(z / r): the corner (20, 20) has direction
    # (cos20 cos20, cos20 sin20, sin20), so cos(theta) = cos(20 deg)^2 and theta = 27.99 deg
    assert window_corner_angle_deg([-20, 20], [-20, 20]) == pytest.approx(27.9909, abs=1e-4)


def test_pinocchio_executable_checked_when_selected(tmp_path: Path) -> None:
    missing = tmp_path / "pinocchio.x"
    with pytest.raises(ConfigError, match="simulator.pinocchio.executable.*not found"):
        make_config({"simulator": {"backend": "pinocchio",
                                   "pinocchio": {"executable": str(missing)}}})
    missing.write_text("#!/bin/sh\n")
    with pytest.raises(ConfigError, match="not executable"):
        make_config({"simulator": {"backend": "pinocchio",
                                   "pinocchio": {"executable": str(missing)}}})
    os.chmod(missing, missing.stat().st_mode | stat.S_IXUSR)
    config = make_config({"simulator": {"backend": "pinocchio",
                                        "pinocchio": {"executable": str(missing)}}})
    assert config["simulator"]["backend"] == "pinocchio"


def test_load_config_reports_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file .*nope.yaml"):
        load_config([tmp_path / "nope.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("design: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config([REPO / "config.yaml", bad])
    listed = tmp_path / "list.yaml"
    listed.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config([listed])
