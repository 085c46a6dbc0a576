"""Latin-hypercube and fiducial designs: stratification, ranges, seeds, ECSV round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.design import design_table, read_design_row, simulation_seed, write_design
from tests.conftest import make_config


def test_latin_hypercube_is_stratified_in_every_parameter() -> None:
    config = make_config({"design": {"latin_hypercube": {"n_simulations": 200}}})
    table = design_table(config, "latin_hypercube")
    ranges = config["design"]["latin_hypercube"]["ranges"]
    for name in PARAMETER_NAMES:
        low, high = ranges[name]
        unit = (np.asarray(table[name]) - low) / (high - low)
        # one point in each of the 200 equal-width strata: the defining LHS property
        strata = np.floor(unit * 200).astype(int)
        assert sorted(strata) == list(range(200)), name


def test_fiducial_and_fixed_parameters() -> None:
    config = make_config()
    table = design_table(config, "fiducial")
    assert len(table) == 100
    assert np.all(table["Omega_m"] == 0.3133) and np.all(table["w0"] == -1.0)
    assert np.all(table["Omega_b"] == 0.049)
    assert len(set(table["seed"])) == 100


def test_seeds_do_not_change_when_the_set_grows() -> None:
    small = design_table(make_config({"design": {"fiducial": {"n_simulations": 10}}}), "fiducial")
    large = design_table(make_config({"design": {"fiducial": {"n_simulations": 30}}}), "fiducial")
    assert list(small["seed"]) == list(large["seed"][:10])
    assert list(small["id"]) == list(large["id"][:10])
    # the two sets draw different seeds for the same index
    assert simulation_seed(1, "fiducial", 0) != simulation_seed(1, "latin_hypercube", 0)


def test_design_is_reproducible_and_round_trips(tmp_path: Path) -> None:
    config = make_config({"design": {"latin_hypercube": {"n_simulations": 16}}})
    first, second = tmp_path / "a.ecsv", tmp_path / "b.ecsv"
    write_design(config, "latin_hypercube", first)
    write_design(config, "latin_hypercube", second)
    assert first.read_bytes() == second.read_bytes()
    table = Table.read(first)
    assert table.colnames == ["id", *PARAMETER_NAMES, "Omega_b", "seed"]
    row = read_design_row(first, "0003")
    assert row["set"] == "latin_hypercube"
    assert row["Omega_m"] == pytest.approx(float(table["Omega_m"][3]), rel=0, abs=0)
    with pytest.raises(ValueError, match="a.ecsv: expected exactly one row with id '0099'"):
        read_design_row(first, "0099")
