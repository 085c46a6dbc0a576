"""The summary-table file: one row of summary statistics per simulation, for posterior
estimation and Fisher forecasts, whatever made the summaries (two-point statistics of the
histograms, a network's outputs, a concatenation of several).

File (HDF5), N rows in the order of ``dataset.h5``:

- ``x`` (N, K) float64: the summaries; ``feature_names`` (K,) strings;
- ``theta`` (N, 6) float64: the physical parameters in ``PARAMETER_NAMES`` order;
- ``ids``, ``set``, ``split`` (N,) strings, as in ``dataset.h5``;
- root attributes: provenance (``kind``, e.g. ``two_point`` or ``cnn``, and whatever the
  writer adds).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.io import atomic_path, provenance, read_attrs, write_attrs


class SummaryTableError(ValueError):
    """A summary table is unusable; the message names the file and what is wrong."""


@dataclass
class SummaryTable:
    """Summaries ``x`` (N, K) of N simulations with their parameters and split labels."""

    x: np.ndarray
    feature_names: list[str]
    theta: np.ndarray
    ids: np.ndarray
    sets: np.ndarray
    splits: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=np.float64)
        self.theta = np.asarray(self.theta, dtype=np.float64)
        self.ids, self.sets, self.splits = (np.asarray(a).astype(str)
                                            for a in (self.ids, self.sets, self.splits))
        rows = len(self.x)
        if self.x.ndim != 2 or self.x.shape[1] != len(self.feature_names):
            raise SummaryTableError(f"x has shape {self.x.shape}; expected (N, "
                                    f"{len(self.feature_names)}) (one column per feature name)")
        if self.theta.shape != (rows, len(PARAMETER_NAMES)):
            raise SummaryTableError(f"theta has shape {self.theta.shape}; expected "
                                    f"({rows}, {len(PARAMETER_NAMES)})")
        for name, column in (("ids", self.ids), ("set", self.sets), ("split", self.splits)):
            if column.shape != (rows,):
                raise SummaryTableError(f"{name} has shape {column.shape}; expected ({rows},)")

    def rows(self, *splits: str) -> np.ndarray:
        """Boolean mask (N,) of the rows whose split is one of ``splits``."""
        return np.isin(self.splits, splits)

    def select(self, mask: np.ndarray) -> SummaryTable:
        """A new table with the rows of ``mask`` (boolean (N,) or indices)."""
        return SummaryTable(self.x[mask], list(self.feature_names), self.theta[mask],
                            self.ids[mask], self.sets[mask], self.splits[mask],
                            dict(self.attrs))


def concatenate_features(tables: Mapping[str, SummaryTable]) -> SummaryTable:
    """Column-wise concatenation of tables with the same rows; features prefixed ``kind:``."""
    first = next(iter(tables.values()))
    for kind, table in tables.items():
        same = (np.array_equal(table.ids, first.ids) and np.array_equal(table.sets, first.sets)
                and np.array_equal(table.splits, first.splits))
        if not same:
            raise SummaryTableError(f"summary table {kind!r} has other rows than "
                                    f"{next(iter(tables))!r}; expected the same simulations "
                                    "in the same order")
    names = [f"{kind}:{name}" for kind, table in tables.items() for name in table.feature_names]
    x = np.concatenate([table.x for table in tables.values()], axis=1)
    return SummaryTable(x, names, first.theta, first.ids, first.sets, first.splits,
                        {"kind": "+".join(tables)})


def write_summary_table(path: str | os.PathLike[str], table: SummaryTable) -> None:
    """Write ``table`` atomically to ``path`` (layout in the module docstring)."""
    strings = h5py.string_dtype()
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as handle:
        handle.create_dataset("x", data=table.x, fletcher32=True)
        handle.create_dataset("theta", data=table.theta, fletcher32=True)
        for name, column in (("feature_names", np.asarray(table.feature_names)),
                             ("ids", table.ids), ("set", table.sets), ("split", table.splits)):
            handle.create_dataset(name, data=column.astype(object), dtype=strings)
        write_attrs(handle, provenance(parameter_names=",".join(PARAMETER_NAMES),
                                       **table.attrs))


def read_summary_table(path: str | os.PathLike[str]) -> SummaryTable:
    """Read a summary table; SummaryTableError naming ``path`` if it is damaged."""
    try:
        with h5py.File(path, "r") as handle:
            missing = [key for key in ("x", "feature_names", "theta", "ids", "set", "split")
                       if key not in handle]
            if missing:
                raise SummaryTableError(f"{path}: missing datasets {missing}; expected a "
                                        "summary table written by cosmo_sbi")
            table = SummaryTable(
                x=handle["x"][...], feature_names=list(handle["feature_names"].asstr()[...]),
                theta=handle["theta"][...], ids=handle["ids"].asstr()[...],
                sets=handle["set"].asstr()[...], splits=handle["split"].asstr()[...],
                attrs=read_attrs(handle))
    except (OSError, SummaryTableError) as error:
        if isinstance(error, SummaryTableError) and str(error).startswith(str(path)):
            raise
        raise SummaryTableError(f"{path}: unreadable summary table ({error})") from error
    if not np.all(np.isfinite(table.x)):
        bad = int(np.size(table.x) - np.count_nonzero(np.isfinite(table.x)))
        raise SummaryTableError(f"{path}: 'x' has {bad} NaN/inf values; expected finite "
                                "summaries")
    return table

