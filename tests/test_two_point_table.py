"""The two-point summary table: rows in dataset.h5's order, refused when they differ."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from cosmo_sbi.dataset import build_dataset
from cosmo_sbi.summaries import SummaryError, SummarySettings, build_two_point_table
from cosmo_sbi.summary_table import read_summary_table
from cosmo_sbi.toy import toy_config, write_histograms


@pytest.fixture(scope="module")
def histograms(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, list[Path]],
                                                                  Path]:
    config = toy_config({"design": {"latin_hypercube": {"n_simulations": 8},
                                      "fiducial": {"n_simulations": 3}}})
    folder = tmp_path_factory.mktemp("two_point")
    paths = write_histograms(config, folder)
    build_dataset(config, paths["latin_hypercube"], paths["fiducial"], folder / "dataset.h5")
    return config, paths, folder / "dataset.h5"


def test_table_rows_follow_the_dataset(histograms: tuple, tmp_path: Path) -> None:
    config, paths, dataset = histograms
    # histograms given in another order: the table still follows dataset.h5
    shuffled = {"latin_hypercube": paths["latin_hypercube"][::-1], "fiducial": paths["fiducial"]}
    build_two_point_table(config, dataset, shuffled, tmp_path / "two_point.h5")
    table = read_summary_table(tmp_path / "two_point.h5")
    with h5py.File(dataset) as handle:
        np.testing.assert_array_equal(table.ids, handle["ids"].asstr()[...])
        np.testing.assert_array_equal(table.splits, handle["split"].asstr()[...])
        np.testing.assert_array_equal(table.theta, handle["theta"][...])
    assert table.feature_names == SummarySettings.from_config(config).feature_names()
    assert table.attrs["kind"] == "two_point"
    with h5py.File(paths["latin_hypercube"][0]) as handle:
        total = int(handle["counts"][...].sum())
    assert table.x[list(table.ids).index("0000"), 0] == total


def test_missing_histogram_is_refused(histograms: tuple, tmp_path: Path) -> None:
    config, paths, dataset = histograms
    partial = {"latin_hypercube": paths["latin_hypercube"][1:], "fiducial": paths["fiducial"]}
    with pytest.raises(SummaryError, match=r"dataset.h5.*no histogram for \['latin_hypercube/0000"):
        build_two_point_table(config, dataset, partial, tmp_path / "two_point.h5")
    assert not (tmp_path / "two_point.h5").exists()
