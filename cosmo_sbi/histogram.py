"""Light cone -> 3D histogram of halo counts in (RA, DEC, z_obs).

Output (HDF5): dataset ``counts`` (n_ra, n_dec, n_z) uint32, axes (RA, DEC, z_obs); datasets
``ra_edges``/``dec_edges`` [deg] and ``z_obs_edges``; root attributes: the light cone's
provenance (sim_id, set, seed, cosmology, simulator and settings) plus the binning,
``min_mass_msun_h``, ``n_halos`` in the histogram and the package version.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from cosmo_sbi.config import Config
from cosmo_sbi.io import atomic_path, provenance, write_attrs
from cosmo_sbi.lightcone import read_lightcone


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


def _bin_index(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin index of each value for uniform ``edges`` and a mask of values inside them.

    Index arithmetic gives the bin to within one; one comparison with the edges either way
    then reproduces np.histogramdd exactly (bins [e_i, e_i+1), the last one closed).
    """
    n_bins = len(edges) - 1
    low, high = edges[0], edges[-1]
    index = np.floor((values - low) * (n_bins / (high - low)))
    np.nan_to_num(index, copy=False, nan=-1.0)
    index = np.clip(index, 0, n_bins - 1).astype(np.intp)
    index += (values >= edges[index + 1]) & (index < n_bins - 1)
    index -= (values < edges[index]) & (index > 0)
    inside = (values >= low) & (values <= high)
    return index, inside


def histogram_counts(
    ra_deg: np.ndarray, dec_deg: np.ndarray, z_obs: np.ndarray, binning: Binning
) -> np.ndarray:
    """Counts (n_ra, n_dec, n_z) uint32 of points in the binning's window (mass cut not applied)."""
    n_ra, n_dec, n_z = binning.bins
    flat = np.zeros(len(ra_deg), dtype=np.intp)
    inside = np.ones(len(ra_deg), dtype=bool)
    for values, edges, stride in zip((ra_deg, dec_deg, z_obs), binning.edges(),
                                     (n_dec * n_z, n_z, 1), strict=True):
        index, axis_inside = _bin_index(np.asarray(values, dtype=np.float64), edges)
        flat += index * stride
        inside &= axis_inside
    counts = np.bincount(flat[inside], minlength=n_ra * n_dec * n_z)
    return counts.astype(np.uint32).reshape(n_ra, n_dec, n_z)


def histogram_lightcone_file(
    config: Config, input_path: str | os.PathLike[str], output_path: str | os.PathLike[str]
) -> np.ndarray:
    """Histogram the halos above the mass cut of a light-cone file; write it; return counts."""
    binning = Binning.from_config(config["histogram"])
    halos, lightcone_attrs = read_lightcone(input_path)
    heavy = halos["mass"] >= binning.min_mass_msun_h
    counts = histogram_counts(halos["ra"][heavy], halos["dec"][heavy], halos["z_obs"][heavy],
                              binning)
    attrs = {
        **lightcone_attrs,
        **provenance(bins=list(binning.bins), ra_deg=list(binning.ra_deg),
                     dec_deg=list(binning.dec_deg), z_obs=list(binning.z_obs),
                     min_mass_msun_h=binning.min_mass_msun_h, n_halos=int(counts.sum()),
                     lightcone_file=os.fspath(input_path)),
    }
    with atomic_path(output_path) as temporary, h5py.File(temporary, "w") as out:
        out.create_dataset("counts", data=counts)
        for name, edges in zip(("ra_edges", "dec_edges", "z_obs_edges"), binning.edges(),
                               strict=True):
            out.create_dataset(name, data=edges)
        write_attrs(out, attrs)
    return counts
