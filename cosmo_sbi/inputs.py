"""The network inputs in the dataset file: integer halo counts, transformed when read.

The file stores ``counts`` (N, 1, D_ra, D_dec, D_z) in the smallest unsigned integer type
that holds the largest count (uint8 / uint16 / uint32), one HDF5 chunk per light cone,
byte-shuffled, gzip-compressed and checksummed (fletcher32), and the transform in root
attributes: ``input_transform`` (log1p | none) and ``input_mean``, ``input_std``, the
mean and standard deviation of the transformed counts of the TRAINING split. The network
input is ``(transform(counts) - mean) / std`` in float32.

Every reader evaluates that formula once per distinct count, as a lookup table
(:meth:`InputTransform.table`), and indexes the table with the counts: numpy
(cosmo_sbi.dataset.DatasetFile.read_inputs) and torch on any device
(cosmo_sbi.device_data) then give bit-identical float32 inputs, the same values the
dataset file stored as float32 before it stored counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

COUNTS = "counts"
"""Name of the counts dataset in the dataset file."""
STORAGE: dict[str, Any] = {"compression": "gzip", "compression_opts": 4, "shuffle": True,
                           "fletcher32": True}
"""HDF5 filters of the counts. On 128^3 embedded cones at 64^3 (mean count 1.6, uint8) the
file is 10.4x smaller than float32 with gzip 4, 6.5x with lzf; a cone reads in 4.8 ms (lzf
3.5 ms, float32 0.9 ms; benchmarks/bench_dataset.py --embedded, 2 busy cores)."""
TRANSFORMS: tuple[str, ...] = ("log1p", "none")


def transform_counts(counts: np.ndarray, transform: str) -> np.ndarray:
    """Counts -> float32 network input before standardisation: log1p(counts) or counts."""
    if transform == "log1p":
        return np.log1p(counts, dtype=np.float32)
    if transform == "none":
        return np.asarray(counts, dtype=np.float32)
    raise ValueError(f"dataset.input_transform: expected one of {TRANSFORMS}, got {transform!r}")


def counts_dtype(max_count: int) -> np.dtype:
    """The smallest unsigned integer type (uint8, uint16, uint32) that holds ``max_count``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_count <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"a histogram count of {max_count} exceeds uint32")


@dataclass(frozen=True)
class InputTransform:
    """counts -> (transform(counts) - mean) / std, float32 (see the module doc)."""

    name: str
    mean: float
    std: float

    @classmethod
    def fit(cls, train_counts: np.ndarray, name: str) -> InputTransform:
        """Mean and standard deviation (float64 accumulation) of the transformed training
        counts; raises ValueError for constant counts."""
        values = transform_counts(train_counts, name)
        mean = float(np.mean(values, dtype=np.float64))
        std = float(np.std(values, dtype=np.float64))
        if not std > 0:
            raise ValueError(f"training inputs are constant ({mean}); expected varying counts")
        return cls(name, mean, std)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> InputTransform:
        """From the dataset file's root attributes."""
        return cls(str(attrs["input_transform"]), float(attrs["input_mean"]),
                   float(attrs["input_std"]))

    def attrs(self) -> dict[str, Any]:
        """The dataset file's root attributes of this transform."""
        return {"input_transform": self.name, "input_mean": self.mean, "input_std": self.std}

    def table(self, max_count: int) -> np.ndarray:
        """The input (max_count + 1,) float32 of every count 0..max_count."""
        table = transform_counts(np.arange(max_count + 1), self.name)
        table -= np.float32(self.mean)
        table /= np.float32(self.std)
        return table

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        """Inputs (float32, the shape of ``counts``) of integer counts."""
        counts = np.asarray(counts)
        return self.table(int(counts.max(initial=0)))[counts]


def write_counts(handle: h5py.File, counts: np.ndarray) -> None:
    """Store ``counts`` (N, 1, D_ra, D_dec, D_z) in the smallest type, one chunk per cone."""
    dtype = counts_dtype(int(counts.max(initial=0)))
    handle.create_dataset(COUNTS, data=counts.astype(dtype, copy=False),
                          chunks=(1, *counts.shape[1:]), **STORAGE)


def read_counts(handle: h5py.File, rows: np.ndarray) -> np.ndarray:
    """Counts (len(rows), 1, D_ra, D_dec, D_z) of the given rows, in the stored type."""
    source = handle[COUNTS]
    counts = np.empty((len(rows), *source.shape[1:]), dtype=source.dtype)
    for position, row in enumerate(rows):  # 5x faster than h5py fancy indexing
        source.read_direct(counts, np.s_[row], np.s_[position])
    return counts
