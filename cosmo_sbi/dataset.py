"""The dataset file: assemble the histograms into one HDF5 file, and read it back (no torch).

File layout (``results/dataset.h5``), N = Latin-hypercube + fiducial histograms:

- ``counts`` (N, 1, D_ra, D_dec, D_z) uint8/16/32, gzip-compressed: the histograms' halo
  counts. The network input, ``input_transform`` of the counts (log1p or none) standardised
  with the scalar mean/std of the TRAINING split (root attributes ``input_mean``,
  ``input_std``, ``input_transform``), is computed when read (cosmo_sbi.inputs).
- ``theta`` (N, 6) float64: physical parameters in ``PARAMETER_NAMES`` order.
- ``prior_lower``, ``prior_upper`` (6,) float64: the Latin-hypercube prior box; networks see
  ``scale_parameters(theta)`` in [0, 1]; attribute ``parameter_names`` (comma-separated).
- ``ids``, ``set``, ``split`` (N,) strings. ``split`` is 'train' / 'validation' / 'test' for
  the Latin hypercube and 'fiducial' for the fiducial seeds.
- root attribute ``content_sha256``: SHA-256 of every dataset above and of the input
  standardisation, so a consumer (training's resume fingerprint) can tell two dataset files
  apart by content, wherever they lie.

Readers go through :func:`read_dataset` (one typed :class:`DatasetFile`).

Splits are grouped by cosmology and stable under reordering and additions (as in
ltu-cmass): a simulation's split depends only on the SHA-256 of its cosmology, mapped to a
uniform number in [0, 1) and compared with the cumulative ``dataset.split`` fractions, so
several seeds of one cosmology can never straddle train and test (a tiny Latin hypercube
that leaves a split empty gets one cosmology moved into it: see :func:`assign_splits`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.config import Config, config_hash
from cosmo_sbi.histogram import BINNING_FIELDS, read_histogram
from cosmo_sbi.inputs import COUNTS, InputTransform, counts_dtype, read_counts, write_counts
from cosmo_sbi.io import (
    CHECKSUM,
    DamagedFileError,
    atomic_hdf5,
    open_hdf5,
    provenance,
    read_attrs,
    write_attrs,
)

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "validation", "test")
FIDUCIAL_SPLIT = "fiducial"


class DatasetError(DamagedFileError):
    """A histogram or dataset file is unusable; the message names the file and field."""


def prior_bounds(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper edges (6,) of the Latin-hypercube prior box, PARAMETER_NAMES order."""
    ranges = config["design"]["latin_hypercube"]["ranges"]
    lower = np.array([ranges[name][0] for name in PARAMETER_NAMES], dtype=np.float64)
    upper = np.array([ranges[name][1] for name in PARAMETER_NAMES], dtype=np.float64)
    return lower, upper


def scale_parameters(theta: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Physical parameters (..., 6) -> the unit prior box: 0 at ``lower``, 1 at ``upper``."""
    return (np.asarray(theta, dtype=np.float64) - lower) / (upper - lower)


def unscale_parameters(scaled: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Inverse of :func:`scale_parameters`: unit-box values (..., 6) -> physical values."""
    return lower + np.asarray(scaled, dtype=np.float64) * (upper - lower)


def unscale_sigma(sigma_scaled: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Standard deviations (..., 6) in the unit box -> physical units (times the box width)."""
    return np.asarray(sigma_scaled, dtype=np.float64) * (upper - lower)


def cosmology_key(theta: Sequence[float]) -> str:
    """Exact text key of one cosmology (six parameters, float64 round trip)."""
    return ",".join(f"{name}={float(value)!r}" for name, value in zip(PARAMETER_NAMES, theta,
                                                                      strict=True))


def split_uniform(theta: Sequence[float]) -> float:
    """Uniform number in [0, 1) from the SHA-256 of the cosmology (first 8 bytes / 2^64)."""
    digest = hashlib.sha256(cosmology_key(theta).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_splits(theta: np.ndarray, fractions: Mapping[str, float]) -> np.ndarray:
    """Split name (N,) for Latin-hypercube parameters ``theta`` (N, 6).

    A cosmology goes to the first split of SPLITS whose cumulative fraction exceeds its hash
    uniform, so the assignment depends on nothing but that cosmology. Small sets can leave a
    split empty by chance; then the cosmology of the largest split whose uniform lies
    nearest the empty split's interval moves into it (still a function of the set of
    cosmologies only, whatever their order). Needs at least len(SPLITS) cosmologies.
    """
    theta = np.asarray(theta, dtype=np.float64)
    if len(theta) < len(SPLITS):
        raise DatasetError(f"the Latin hypercube has {len(theta)} simulations; expected at "
                           f"least {len(SPLITS)}, one per split {SPLITS}")
    uniforms = np.array([split_uniform(row) for row in theta], dtype=np.float64)
    upper_edges = np.cumsum([fractions[name] for name in SPLITS])
    upper_edges[-1] = 1.0  # fractions sum to 1 up to rounding (checked by cosmo_sbi.config)
    lower_edges = np.concatenate([[0.0], upper_edges[:-1]])
    index = np.searchsorted(upper_edges, uniforms, side="right")
    for empty in range(len(SPLITS)):
        if np.any(index == empty):
            continue
        largest = np.argmax(np.bincount(index, minlength=len(SPLITS)))
        members = np.flatnonzero(index == largest)
        distance = np.maximum(lower_edges[empty] - uniforms[members],
                              uniforms[members] - upper_edges[empty])
        index[members[np.argmin(distance)]] = empty
    return np.asarray(SPLITS)[index]


def _require_finite(values: np.ndarray, path: Path, field: str) -> None:
    if not np.all(np.isfinite(values)):
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise DatasetError(f"{path}: field {field!r} has {bad} NaN/inf values; expected finite")


def _same(a: Any, b: Any) -> bool:
    return np.shape(a) == np.shape(b) and np.allclose(np.asarray(a, dtype=np.float64),
                                                      np.asarray(b, dtype=np.float64),
                                                      rtol=1e-12, atol=0.0)


def checked_histogram(path: str | os.PathLike[str], config: Config,
                      expected_set: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One histogram file (cosmo_sbi.histogram.read_histogram) checked against the config:
    counts (D_ra, D_dec, D_z), theta (6,), attributes.

    Raises HistogramFormatError for a damaged file and DatasetError naming the file and field
    when the binning differs from the config ``histogram`` section, the set differs from
    ``expected_set``, or a parameter is missing or not finite.
    """
    path = Path(path)
    counts, attrs = read_histogram(path)
    binning = config["histogram"]
    if counts.shape != tuple(binning["bins"]):
        raise DatasetError(f"{path}: field 'counts' has shape {counts.shape}, expected "
                           f"{tuple(binning['bins'])} (histogram.bins)")
    for field in BINNING_FIELDS:
        if not _same(attrs[field], binning[field]):
            raise DatasetError(f"{path}: attribute {field!r} = {attrs[field]!r} differs from "
                               f"the config histogram.{field} = {binning[field]!r}")
    missing = [name for name in (*PARAMETER_NAMES, "sim_id", "set") if name not in attrs]
    if missing:
        raise DatasetError(f"{path}: missing attributes {missing}")
    if attrs["set"] != expected_set:
        raise DatasetError(f"{path}: attribute 'set' = {attrs['set']!r}, expected "
                           f"{expected_set!r} (passed as a {expected_set} histogram)")
    theta = np.array([attrs[name] for name in PARAMETER_NAMES], dtype=np.float64)
    for name, value in zip(PARAMETER_NAMES, theta, strict=True):
        _require_finite(np.asarray(value), path, name)
    return counts, theta, attrs


def _check_inside_prior(theta: np.ndarray, paths: Sequence[Path], config: Config) -> None:
    lower, upper = prior_bounds(config)
    tolerance = 1e-9 * (upper - lower)
    outside = (theta < lower - tolerance) | (theta > upper + tolerance)
    if np.any(outside):
        row, column = np.argwhere(outside)[0]
        name = PARAMETER_NAMES[column]
        raise DatasetError(f"{paths[row]}: attribute {name!r} = {theta[row, column]!r} lies "
                           f"outside design.latin_hypercube.ranges.{name} = "
                           f"{[lower[column], upper[column]]}")


def build_dataset(config: Config, latin_hypercube_paths: Sequence[str | os.PathLike[str]],
                  fiducial_paths: Sequence[str | os.PathLike[str]],
                  output: str | os.PathLike[str]) -> None:
    """Gather histogram files into the dataset HDF5 ``output`` (layout in the module doc)."""
    sources = [(Path(p), "latin_hypercube") for p in latin_hypercube_paths]
    sources += [(Path(p), "fiducial") for p in fiducial_paths]
    if not latin_hypercube_paths:
        raise DatasetError("build_dataset: expected at least one Latin-hypercube histogram")
    transform = config["dataset"]["input_transform"]
    bins = tuple(config["histogram"]["bins"])
    counts = np.empty((len(sources), 1, *bins), dtype=np.uint32)
    theta = np.empty((len(sources), len(PARAMETER_NAMES)), dtype=np.float64)
    ids: list[str] = []
    simulators: set[str] = set()
    for index, (path, set_name) in enumerate(sources):
        counts[index, 0], theta[index], attrs = checked_histogram(path, config, set_name)
        ids.append(str(attrs["sim_id"]))
        simulators.add(str(attrs.get("simulator", "unknown")))
    if len(simulators) > 1:
        raise DatasetError(f"histograms come from several simulators {sorted(simulators)}; "
                           "expected one (attribute 'simulator')")
    sets = np.array([set_name for _, set_name in sources])
    keys = [f"{s}/{i}" for s, i in zip(sets, ids, strict=True)]
    if len(set(keys)) != len(keys):
        duplicate = next(k for k in keys if keys.count(k) > 1)
        raise DatasetError(f"duplicate simulation {duplicate!r} (attributes 'set'/'sim_id')")

    is_lh = sets == "latin_hypercube"
    _check_inside_prior(theta[is_lh], [p for p, s in sources if s == "latin_hypercube"], config)
    split = np.full(len(sources), FIDUCIAL_SPLIT, dtype=object)
    split[is_lh] = assign_splits(theta[is_lh], config["dataset"]["split"])
    counts_per_split = {name: int(np.sum(split == name)) for name in (*SPLITS, FIDUCIAL_SPLIT)}
    log.info("dataset splits: %s", counts_per_split)

    try:
        standardisation = InputTransform.fit(counts[split == "train"], transform).attrs()
    except ValueError as error:
        raise DatasetError(str(error)) from error
    counts = counts.astype(counts_dtype(int(counts.max(initial=0))))
    lower, upper = prior_bounds(config)

    columns = {COUNTS: counts, "theta": theta, "prior_lower": lower, "prior_upper": upper,
               "ids": np.array(ids, dtype=object), "set": sets.astype(object), "split": split}
    strings = h5py.string_dtype()
    with atomic_hdf5(output) as handle:
        for name, values in columns.items():
            if values.dtype == object:
                handle.create_dataset(name, data=values, dtype=strings)
            elif name == COUNTS:
                write_counts(handle, values)
            else:
                handle.create_dataset(name, data=values, **CHECKSUM)
        write_attrs(handle, provenance(
            parameter_names=",".join(PARAMETER_NAMES), **standardisation,
            simulator=simulators.pop(), histogram=dict(config["histogram"]),
            split_fractions=dict(config["dataset"]["split"]),
            config_hash=config_hash({"histogram": config["histogram"],
                                     "dataset": config["dataset"],
                                     "ranges": config["design"]["latin_hypercube"]["ranges"]}),
            content_sha256=content_digest(columns, standardisation),
        ))


def content_digest(columns: Mapping[str, np.ndarray], standardisation: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the dataset columns (name -> array, strings as object arrays) and the
    input standardisation: equal for two files exactly when their contents are."""
    digest = hashlib.sha256(json.dumps(dict(standardisation), sort_keys=True).encode())
    for name in sorted(columns):
        values = np.asarray(columns[name])
        if values.dtype == object:
            values = np.asarray([str(value) for value in values.ravel()], dtype=np.str_)
        values = np.ascontiguousarray(values)
        digest.update(f"{name}:{values.dtype.str}:{values.shape}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class DatasetFile:
    """The dataset file's metadata in memory; the inputs are read on demand by rows.

    ``ids``, ``sets``, ``splits`` (N,) str; ``theta`` (N, 6) physical parameters;
    ``prior_lower``, ``prior_upper`` (6,); ``input_shape`` (1, D_ra, D_dec, D_z); ``attrs``
    the root attributes (provenance, ``histogram`` binning, input standardisation).
    """

    path: Path
    ids: np.ndarray
    sets: np.ndarray
    splits: np.ndarray
    theta: np.ndarray
    prior_lower: np.ndarray
    prior_upper: np.ndarray
    input_shape: tuple[int, ...]
    attrs: dict[str, Any]

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(self.attrs["parameter_names"].split(","))

    @property
    def content_hash(self) -> str:
        """SHA-256 of the content (attribute ``content_sha256``; computed for a file written
        before that attribute existed)."""
        if "content_sha256" in self.attrs:
            return self.attrs["content_sha256"]
        columns = {COUNTS: self.read_counts(np.arange(len(self.ids))), "theta": self.theta,
                   "prior_lower": self.prior_lower, "prior_upper": self.prior_upper,
                   "ids": self.ids.astype(object), "set": self.sets.astype(object),
                   "split": self.splits.astype(object)}
        return content_digest(columns, {key: self.attrs[key] for key in
                                        ("input_transform", "input_mean", "input_std")})

    def rows(self, split: str) -> np.ndarray:
        """Row indices (ascending) of ``split`` (one of SPLITS or FIDUCIAL_SPLIT)."""
        if split not in (*SPLITS, FIDUCIAL_SPLIT):
            raise ValueError(f"split {split!r}: expected one of {(*SPLITS, FIDUCIAL_SPLIT)}")
        return np.flatnonzero(self.splits == split)

    @property
    def transform(self) -> InputTransform:
        """counts -> network inputs (cosmo_sbi.inputs)."""
        return InputTransform.from_attrs(self.attrs)

    def read_counts(self, rows: np.ndarray) -> np.ndarray:
        """Halo counts (len(rows), 1, D_ra, D_dec, D_z) of the given rows, as stored."""
        with _open(self.path) as handle:
            return read_counts(handle, rows)

    def read_inputs(self, rows: np.ndarray) -> np.ndarray:
        """Network inputs (len(rows), 1, D_ra, D_dec, D_z) float32 of the given rows."""
        return self.transform(self.read_counts(rows))


def _open(path: Path) -> contextlib.AbstractContextManager[h5py.File]:
    return open_hdf5(path, "dataset file (written by `cosmo-sbi dataset`)", DatasetError)


def read_dataset(path: str | os.PathLike[str]) -> DatasetFile:
    """The dataset file at ``path`` (layout in the module doc), inputs left on disk.

    Raises DatasetError naming the file and the missing field.
    """
    path = Path(path)
    with _open(path) as handle:
        if COUNTS not in handle and "inputs" in handle:
            raise DatasetError(f"{path}: a dataset file of float32 inputs, written before the "
                               "file held counts; expected counts: rebuild it (snakemake -R "
                               "dataset)")
        missing = [name for name in (COUNTS, "theta", "prior_lower", "prior_upper", "ids",
                                     "set", "split") if name not in handle]
        attrs = read_attrs(handle)
        missing += [name for name in ("parameter_names", "input_transform", "input_mean",
                                      "input_std", "histogram") if name not in attrs]
        if missing:
            raise DatasetError(f"{path}: missing fields {missing}; expected a dataset file "
                               "written by `cosmo-sbi dataset`")
        return DatasetFile(
            path=path, ids=handle["ids"].asstr()[...], sets=handle["set"].asstr()[...],
            splits=handle["split"].asstr()[...], theta=handle["theta"][...],
            prior_lower=handle["prior_lower"][...], prior_upper=handle["prior_upper"][...],
            input_shape=tuple(handle[COUNTS].shape[1:]), attrs=attrs)
