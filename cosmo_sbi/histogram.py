"""Light cone -> 3D histogram of halo counts in (RA, DEC, z_obs).

Output (HDF5): dataset ``counts`` (n_ra, n_dec, n_z) uint32, axes (RA, DEC, z_obs); datasets
``ra_edges``/``dec_edges`` [deg] and ``z_obs_edges``; root attributes: the light cone's
provenance (sim_id, set, seed, cosmology, simulator and settings) plus the binning,
``min_mass_msun_h``, ``n_halos`` in the histogram and the package version.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosmo_sbi.config import Config
from cosmo_sbi.io import (
    CHECKSUM,
    DamagedFileError,
    atomic_hdf5,
    open_hdf5,
    provenance,
    read_attrs,
    write_attrs,
)
from cosmo_sbi.lightcone import check_inside_cone, read_lightcone


@dataclass(frozen=True)
class Binning:
    """Histogram binning: counts per axis and [min, max] of RA, DEC [deg] and z_obs."""

    bins: tuple[int, int, int]
    ra_deg: tuple[float, float]
    dec_deg: tuple[float, float]
    z_obs: tuple[float, float]
    min_mass_msun_h: float

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> Binning:
        """Build from the ``histogram`` config section."""
        return cls(bins=tuple(int(n) for n in section["bins"]),
                   ra_deg=tuple(section["ra_deg"]), dec_deg=tuple(section["dec_deg"]),
                   z_obs=tuple(section["z_obs"]),
                   min_mass_msun_h=float(section["min_mass_msun_h"]))

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bin edges (float64) of RA, DEC, z_obs, as np.histogramdd would use them."""
        ranges = (self.ra_deg, self.dec_deg, self.z_obs)
        return tuple(np.linspace(low, high, n + 1) for (low, high), n in zip(ranges, self.bins,
                                                                              strict=True))

    def attrs(self) -> dict[str, Any]:
        """The binning as histogram-file attributes (one per field, tuples as lists)."""
        return {field: list(value) if isinstance(value, tuple) else value
                for field, value in dataclasses.asdict(self).items()}


BINNING_FIELDS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(Binning))
"""The binning attributes of a histogram file (the fields of :class:`Binning`)."""
COUNTS = "counts"
EDGES = ("ra_edges", "dec_edges", "z_obs_edges")


class HistogramFormatError(DamagedFileError):
    """A histogram file is unusable; the message names the file and the field."""


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index + 1 of each value for uniform ``edges``: 1..n inside, 0 or n + 1 outside.

    The index comes from float32 arithmetic (a few memory-bound passes); values whose
    scaled position lies within the float32 rounding bound of a bin edge (and NaNs) are
    re-binned exactly with np.searchsorted in float64, so the result equals np.histogramdd
    (bins [e_i, e_i+1), the last one closed) bit for bit.
    """
    n_bins = len(edges) - 1
    low, high = float(edges[0]), float(edges[-1])
    scale = n_bins / (high - low)
    # position in bins, shifted by one so that everything below the window lands in bin 0;
    # clipped to half-integers so that far-away values never look close to an edge
    position = np.subtract(values, np.float32(low - 1.0 / scale), dtype=np.float32)
    position *= np.float32(scale)
    np.clip(position, 0.5, n_bins + 1.5, out=position)
    with np.errstate(invalid="ignore"):  # NaN casts to garbage here and is re-binned below
        index = position.astype(np.int32)  # truncation = floor for positions >= 0
    position -= index.astype(np.float32)  # fractional part
    # rounding error bound of the float32 position (a few ulp of every term), generous
    tolerance = 64 * np.finfo(np.float32).eps * (abs(low) * scale + 2 * n_bins + 2)
    exact = (position >= tolerance) & (position <= 1 - tolerance)  # False for NaN
    near_edge = np.flatnonzero(~exact)
    near_values = np.asarray(values[near_edge], dtype=np.float64)
    refined = np.searchsorted(edges, near_values, side="right")  # 1..n inside, NaN -> n + 1
    refined[near_values == high] = n_bins  # the last bin is closed
    index[near_edge] = refined
    return index


def histogram_counts(
    ra_deg: np.ndarray, dec_deg: np.ndarray, z_obs: np.ndarray, binning: Binning
) -> np.ndarray:
    """Counts (n_ra, n_dec, n_z) uint32 of points in the binning's window (mass cut not applied).

    Each axis gets two overflow bins (below/above the window) so that no mask or copy of
    the halos is needed; the overflow bins are dropped after np.bincount.
    """
    padded = tuple(n + 2 for n in binning.bins)
    ra_edges, dec_edges, z_edges = binning.edges()
    flat = _bin_index(np.asarray(ra_deg), ra_edges)
    for values, edges, n_padded in ((dec_deg, dec_edges, padded[1]), (z_obs, z_edges, padded[2])):
        flat *= n_padded
        flat += _bin_index(np.asarray(values), edges)
    counts = np.bincount(flat, minlength=int(np.prod(padded))).reshape(padded)
    return counts[1:-1, 1:-1, 1:-1].astype(np.uint32)


def check_counts(counts: np.ndarray, attrs: Mapping[str, Any],
                 path: str | os.PathLike[str]) -> None:
    """Refuse histogram counts that :func:`histogram_lightcone_file` cannot have written:
    not integers, negative, or not summing to the ``n_halos`` attribute written with them
    (one damaged count, e.g. 2,130,706,433 in a bin, breaks the sum)."""
    if not np.issubdtype(counts.dtype, np.integer):
        finite = np.isfinite(counts)
        if not np.all(finite):
            raise HistogramFormatError(f"{path}: field 'counts' has {counts.size - finite.sum()} "
                                       "NaN/inf values; expected finite integer counts")
        raise HistogramFormatError(f"{path}: field 'counts' has dtype {counts.dtype}; expected "
                               "integer halo counts")
    if counts.size and counts.min() < 0:
        raise HistogramFormatError(f"{path}: field 'counts' has {int(np.sum(counts < 0))} negative "
                               "values; expected counts >= 0")
    if "n_halos" not in attrs:
        raise HistogramFormatError(f"{path}: missing attribute 'n_halos' (the number of halos "
                               "counted); expected a histogram written by cosmo_sbi")
    total = int(counts.sum(dtype=np.int64))
    if total != int(attrs["n_halos"]):
        raise HistogramFormatError(f"{path}: field 'counts' sums to {total}, but attribute "
                               f"'n_halos' = {attrs['n_halos']}: the file is damaged; delete "
                               "it and rerun its histogram job")


def histogram_lightcone_file(
    config: Config, input_path: str | os.PathLike[str], output_path: str | os.PathLike[str]
) -> np.ndarray:
    """Histogram the halos above the mass cut of a light-cone file; write it; return counts."""
    binning = Binning.from_config(config["histogram"])
    halos, lightcone_attrs = read_lightcone(input_path)
    check_inside_cone(halos, config["lightcone"]["aperture_deg"], str(input_path))
    heavy = halos["mass"] >= binning.min_mass_msun_h
    counts = histogram_counts(halos["ra"][heavy], halos["dec"][heavy], halos["z_obs"][heavy],
                              binning)
    attrs = {
        **lightcone_attrs,
        **provenance(**binning.attrs(), n_halos=int(counts.sum()),
                     lightcone_file=os.fspath(input_path)),
    }
    with atomic_hdf5(output_path) as out:
        out.create_dataset(COUNTS, data=counts, **CHECKSUM)
        for name, edges in zip(EDGES, binning.edges(), strict=True):
            out.create_dataset(name, data=edges, **CHECKSUM)
        write_attrs(out, attrs)
    return counts


def read_histogram(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Counts (n_ra, n_dec, n_z) and attributes of a histogram file, checked for the format:
    the binning attributes present, counts of the shape they give, integers >= 0 summing to
    the ``n_halos`` attribute (:func:`check_counts`).

    Raises HistogramFormatError naming the file and the field.
    """
    path = Path(path)
    with open_hdf5(path, "histogram") as handle:
        if COUNTS not in handle:
            raise HistogramFormatError(f"{path}: missing dataset {COUNTS!r}")
        counts = handle[COUNTS][...]
        attrs = read_attrs(handle)
    missing = [field for field in BINNING_FIELDS if field not in attrs]
    if missing:
        raise HistogramFormatError(f"{path}: missing attributes {missing}")
    if counts.shape != tuple(attrs["bins"]):
        raise HistogramFormatError(f"{path}: field {COUNTS!r} has shape {counts.shape}, "
                                   f"expected {tuple(attrs['bins'])} (attribute 'bins')")
    check_counts(counts, attrs, path)
    return counts, attrs


def histogram_lightcone_files(config: Config, inputs: Sequence[str | os.PathLike[str]],
                              outputs: Sequence[str | os.PathLike[str]]) -> None:
    """Histogram a block of light-cone files, one output each (the same bytes as one
    ``histogram_lightcone_file`` call per file)."""
    if len(inputs) != len(outputs):
        raise ValueError(f"expected one output per input light cone, got {len(inputs)} "
                         f"inputs and {len(outputs)} outputs")
    for input_path, output_path in zip(inputs, outputs, strict=True):
        histogram_lightcone_file(config, input_path, output_path)
