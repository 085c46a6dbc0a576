"""The Fisher derivative design set: rows, common random numbers, refused steps."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.config import ConfigError
from cosmo_sbi.design import design_table, read_design_row, set_size, write_design
from cosmo_sbi.histogram import histogram_lightcone_file
from cosmo_sbi.simulators.embedded import simulate_lightcone
from tests.conftest import make_config

DERIVATIVES = {"design": {"derivatives": {"n_seeds": 2, "step_fraction": 0.05}}}


def test_derivative_rows_step_one_parameter_with_the_fiducial_seeds() -> None:
    config = make_config(DERIVATIVES)
    table = design_table(config, "derivatives")
    fiducial = design_table(config, "fiducial")
    assert len(table) == set_size(config, "derivatives") == 2 * 6 * 2 * 2
    point = np.array([config["design"]["fiducial"]["parameters"][n] for n in PARAMETER_NAMES])
    ranges = config["design"]["latin_hypercube"]["ranges"]
    for row in table:
        values = np.array([row[name] for name in PARAMETER_NAMES])
        moved = np.flatnonzero(values != point)
        assert [PARAMETER_NAMES[i] for i in moved] == [row["parameter"]]
        width = np.diff(ranges[row["parameter"]])[0]
        assert np.isclose(row["step"], [0.05 * width, 0.025 * width]).any()
        assert values[moved[0]] - point[moved[0]] == pytest.approx(row["sign"] * row["step"])
        assert row["seed"] == fiducial["seed"][row["seed_index"]]  # common random numbers


def test_no_seeds_means_no_derivative_simulations() -> None:
    assert set_size(make_config(), "derivatives") == 0


@pytest.mark.parametrize(("overlay", "message"), [
    ({"design": {"derivatives": {"n_seeds": 1, "step_fraction": 0.4}}},
     r"design.derivatives.step_fraction: the step .* in n_s"),
    ({"design": {"derivatives": {"n_seeds": 1}, "fiducial": {"n_simulations": 18}}},
     r"design.fiducial.n_simulations: 18 .* expected > 18"),
    ({"design": {"derivatives": {"n_seeds": 1}}, "fisher": {"n_k_bins": 40}},
     r"fisher.n_k_bins: expected at most 30"),
    ({"summaries": {"n_z_bins": 5}}, r"summaries.n_z_bins: expected a divisor"),
])
def test_bad_two_point_settings_are_refused(overlay: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(overlay)


def test_embedded_simulator_gives_common_random_numbers(tmp_path: Path) -> None:
    """Same seed at +-h: the same hashed noise, so the count fluctuations about n(z) are
    nearly identical; another seed's are independent."""
    config = make_config({**DERIVATIVES, "simulator": {"embedded": {"grid_size": 32}},
                          "histogram": {"bins": [8, 8, 8]}, "fisher": {"n_k_bins": 2}})
    write_design(config, "derivatives", tmp_path / "derivatives.ecsv")
    counts = {}
    for sim_id in ("0000", "0001", "0024"):  # Omega_m +h, -h (seed 0); +h (seed 1)
        row = read_design_row(tmp_path / "derivatives.ecsv", sim_id)
        simulate_lightcone(config, row, tmp_path / f"{sim_id}.lc.h5")
        histogram_lightcone_file(config, tmp_path / f"{sim_id}.lc.h5", tmp_path / f"{sim_id}.h5")
        with h5py.File(tmp_path / f"{sim_id}.h5") as handle:
            counts[sim_id] = handle["counts"][...].astype(np.float64)
    # fluctuations about each histogram's own n(z)
    delta = {k: (c / c.mean(axis=(0, 1)) - 1).ravel() for k, c in counts.items()}
    same_seed = np.corrcoef(delta["0000"], delta["0001"])[0, 1]
    other_seed = np.corrcoef(delta["0000"], delta["0024"])[0, 1]
    assert same_seed > 0.9 and abs(other_seed) < 0.3, (same_seed, other_seed)
