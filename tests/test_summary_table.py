"""The summary-table file: round trip, concatenation, and damaged or inconsistent input."""

from __future__ import annotations

import numpy as np
import pytest

from cosmo_sbi.summary_table import (
    SummaryTable,
    SummaryTableError,
    concatenate_features,
    read_summary_table,
    write_summary_table,
)


def _table(n: int = 5, k: int = 3, seed: int = 0) -> SummaryTable:
    rng = np.random.default_rng(seed)
    return SummaryTable(x=rng.normal(size=(n, k)), feature_names=[f"f{i}" for i in range(k)],
                        theta=rng.uniform(size=(n, 6)), ids=[f"{i:04d}" for i in range(n)],
                        sets=["latin_hypercube"] * n,
                        splits=["train", "train", "validation", "test", "test"][:n],
                        attrs={"kind": "toy"})


def test_round_trip_is_exact(tmp_path):
    table = _table()
    write_summary_table(tmp_path / "t.h5", table)
    back = read_summary_table(tmp_path / "t.h5")
    assert np.array_equal(back.x, table.x) and np.array_equal(back.theta, table.theta)
    assert back.feature_names == table.feature_names
    assert list(back.splits) == list(table.splits) and back.attrs["kind"] == "toy"
    assert back.select(back.rows("test")).x.shape == (2, 3)


def test_concatenation_prefixes_features_and_needs_equal_rows():
    joined = concatenate_features({"a": _table(k=2), "b": _table(k=3, seed=1)})
    assert joined.x.shape == (5, 5) and joined.feature_names[0] == "a:f0"
    shuffled = _table()
    shuffled.ids = shuffled.ids[::-1]
    with pytest.raises(SummaryTableError, match="other rows"):
        concatenate_features({"a": _table(), "b": shuffled})


def test_shape_mismatch_is_refused():
    with pytest.raises(SummaryTableError, match="one column per feature name"):
        SummaryTable(np.zeros((3, 2)), ["a"], np.zeros((3, 6)), ["1", "2", "3"], ["s"] * 3,
                     ["train"] * 3)


def test_damaged_and_non_finite_files_are_named(tmp_path):
    path = tmp_path / "t.h5"
    write_summary_table(path, _table())
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(SummaryTableError, match=str(path)):
        read_summary_table(path)
    table = _table()
    table.x[1, 1] = np.nan
    write_summary_table(path, table)
    with pytest.raises(SummaryTableError, match="1 NaN/inf"):
        read_summary_table(path)
