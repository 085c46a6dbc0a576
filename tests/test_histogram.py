"""The vectorised histogram equals np.histogramdd and keeps the light cone's provenance."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from cosmo_sbi.histogram import Binning, histogram_counts, histogram_lightcone_file
from cosmo_sbi.lightcone import LightconeFormatError, lightcone_provenance, write_lightcone
from tests.conftest import make_config

BINNING = Binning((64, 64, 64), (-20.0, 20.0), (-20.0, 20.0), (0.3, 0.8), 1e13)


def _random_halos(count: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    halos = {"ra": rng.uniform(-22, 22, count), "dec": rng.uniform(-22, 22, count),
             "z_cos": rng.uniform(0.28, 0.82, count), "mass": 10 ** rng.uniform(12, 15, count)}
    halos["z_obs"] = halos["z_cos"] + rng.normal(0, 0.002, count)
    return {name: values.astype(np.float32) for name, values in halos.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_counts_equal_histogramdd_including_edges(dtype: type) -> None:
    halos = _random_halos(200_000, 0)
    ra, dec, z = (halos[k].astype(dtype) for k in ("ra", "dec", "z_obs"))
    edges = BINNING.edges()
    # points exactly on every edge, including the closed last edge, and a NaN
    ra[:65], dec[:65], z[:65] = edges[0], edges[1], edges[2]
    ra[70] = np.nan
    # one float32 ulp either side of every edge, and values far outside the window
    for values, axis_edges in zip((ra, dec, z), edges, strict=True):
        below = np.nextafter(axis_edges.astype(np.float32), np.float32(-np.inf))
        above = np.nextafter(axis_edges.astype(np.float32), np.float32(np.inf))
        values[100:230] = np.concatenate([below, above]).astype(dtype)
        values[300:302] = (-1e30, 1e30)
    counts = histogram_counts(ra, dec, z, BINNING)
    reference, _ = np.histogramdd(np.c_[ra, dec, z].astype(np.float64), bins=edges)
    assert counts.dtype == np.uint32
    np.testing.assert_array_equal(counts, reference)


def test_histogram_file_applies_mass_cut_and_keeps_provenance(tmp_path: Path) -> None:
    config = make_config({"lightcone": {"aperture_deg": 32.0}})  # holds the +-22 deg halos
    halos = _random_halos(50_000, 1)
    row = {"id": "0007", "set": "fiducial", "seed": 123, "Omega_m": 0.3, "sigma_8": 0.8,
           "w0": -1.0, "wa": 0.0, "n_s": 0.96, "h": 0.7, "Omega_b": 0.049}
    write_lightcone(tmp_path / "lc.h5", halos, lightcone_provenance(row, "test", {"a": 1}))
    counts = histogram_lightcone_file(config, tmp_path / "lc.h5", tmp_path / "hist.h5")
    heavy = halos["mass"] >= 1e13
    expected, _ = np.histogramdd(
        np.c_[halos["ra"][heavy], halos["dec"][heavy], halos["z_obs"][heavy]].astype(float),
        bins=BINNING.edges())
    np.testing.assert_array_equal(counts, expected)
    with h5py.File(tmp_path / "hist.h5") as stored:
        np.testing.assert_array_equal(stored["counts"][...], counts)
        assert stored.attrs["sim_id"] == "0007" and stored.attrs["seed"] == 123
        assert stored.attrs["Omega_m"] == 0.3 and stored.attrs["simulator"] == "test"
        assert stored.attrs["min_mass_msun_h"] == 1e13
        assert stored.attrs["n_halos"] == counts.sum()
        np.testing.assert_array_equal(stored["z_obs_edges"][...], BINNING.edges()[2])
    assert not list(tmp_path.glob("*.tmp-*"))


def test_missing_field_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.h5"
    with h5py.File(path, "w") as out:
        out["ra"] = np.zeros(3)
    with pytest.raises(LightconeFormatError, match="broken.h5: missing datasets"):
        histogram_lightcone_file(make_config(), path, tmp_path / "hist.h5")
    assert not (tmp_path / "hist.h5").exists()
