"""Readers of PINOCCHIO v5 outputs, on real outputs of PINOCCHIO v5.1 (tests/data/pinocchio).

lc64/: box 500 Mpc/h, 64^3, light cone 0.3 < z < 0.8, aperture 30 deg, vertex at the origin,
axis (1,0,0), 2 MPI tasks. Its run log says "total number of halos in the PLC: 875", written
in four blocks: 408 and 327 halos (first write, "Task 0 has written 735 halos"), then 23
and 117 ("Task 0 stored 23 halos", "has written 140 halos"). zeroblock/: the same run with
MinHaloMass 18; its log says 79 halos, and its third block is empty.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from cosmo_sbi.cosmology import RHO_CRIT_MSUN_H_MPC_H3
from cosmo_sbi.lightcone import SPEED_OF_LIGHT_KM_S
from cosmo_sbi.simulators.pinocchio_io import (
    PLC_DTYPES,
    PinocchioFormatError,
    read_catalog,
    read_mass_function,
    read_plc,
)

DATA = Path(__file__).parent / "data" / "pinocchio"
LC64 = DATA / "lc64"
PLC = LC64 / "pinocchio.lc64.plc.out"
CATALOG = LC64 / "pinocchio.0.3000.lc64.catalog.out"
MASS_FUNCTION = LC64 / "pinocchio.0.3000.lc64.mf.out"
ZEROBLOCK_PLC = DATA / "zeroblock" / "pinocchio.zb18.plc.out"
LC64_BLOCKS = (408, 327, 23, 117)  # halos per block, from the run log (module docstring)
LC64_HALOS = 875
ZEROBLOCK_HALOS = 79
LC64_LOG_MASS_MIN = 14.766274  # log: "mass function will be computed from Log M=14.766274"
FLOAT32_ULP_AT_1 = float(np.spacing(np.float32(1.0)))


def parameter_file(path: Path) -> dict[str, list[str]]:
    """Key -> values of a PINOCCHIO parameter file (flags map to [])."""
    lines = [line.split() for line in path.read_text().splitlines()]
    return {words[0]: words[1:] for words in lines if words and words[0][0] not in "#%"}


def write_plc(path: Path, blocks: list[np.ndarray], empty_data_records: bool = True) -> None:
    """Write a light-cone file as PINOCCHIO does: header, then [count][data] per block."""
    reclen = blocks[0].dtype.itemsize
    with open(path, "wb") as stream:
        stream.write(struct.pack("<3i", 4, reclen, 4))
        for block in blocks:
            stream.write(struct.pack("<3i", 4, len(block), 4))
            if len(block) or empty_data_records:
                marker = struct.pack("<i", len(block) * reclen)
                stream.write(marker + block.tobytes() + marker)


def plc_blocks(records: np.ndarray, dtype: np.dtype) -> list[np.ndarray]:
    """The lc64 records split into its four blocks, converted to ``dtype``."""
    converted = np.zeros(len(records), dtype=dtype)
    for name in dtype.names:
        converted[name] = records[name]
    return np.split(converted, np.cumsum(LC64_BLOCKS)[:-1])


@pytest.fixture(scope="module")
def lc64() -> np.ndarray:
    return read_plc(PLC)


@pytest.fixture(scope="module")
def run_parameters() -> dict[str, list[str]]:
    return parameter_file(LC64 / "parameter_file")


def test_lc64_count_and_field_ranges(lc64: np.ndarray, run_parameters: dict) -> None:
    assert sum(LC64_BLOCKS) == LC64_HALOS
    assert len(lc64) == LC64_HALOS
    last_z = float(run_parameters["LastzForPLC"][0])
    start_z = float(run_parameters["StartingzForPLC"][0])
    aperture = float(run_parameters["PLCAperture"][0])
    assert lc64["truez"].min() >= last_z and lc64["truez"].max() <= start_z
    # theta = 90 deg - angle from the cone axis; halos are kept within the aperture
    assert lc64["theta"].min() >= 90.0 - aperture and lc64["theta"].max() <= 90.0
    assert lc64["phi"].min() >= 0.0 and lc64["phi"].max() < 360.0
    # the azimuth must fill the circle (875 halos: an empty 90-degree quadrant would mean
    # a wrong field offset)
    assert np.histogram(lc64["phi"], bins=4, range=(0, 360))[0].min() > 0


def test_lc64_observed_redshift(lc64: np.ndarray) -> None:
    truez = lc64["truez"].astype(np.float64)
    expected = truez + lc64["vlos"] / SPEED_OF_LIGHT_KM_S * (1.0 + truez)
    # obsz is computed in double and stored as float32 (half an ulp), as are truez and
    # vlos: 2 ulp at 1 bounds the total for z < 1
    np.testing.assert_allclose(lc64["obsz"], expected, rtol=0, atol=2 * FLOAT32_ULP_AT_1)


def test_lc64_line_of_sight_velocity(lc64: np.ndarray) -> None:
    pos = lc64["pos"].astype(np.float64)
    projected = np.sum(pos * lc64["vel"], axis=1) / np.linalg.norm(pos, axis=1)
    # float32 storage of |v| < 1000 km/s: 3 components x 6e-5 km/s rounding each
    np.testing.assert_allclose(lc64["vlos"], projected, rtol=0, atol=1e-3)


def test_lc64_positions_match_distance_of_true_redshift(lc64: np.ndarray,
                                                       run_parameters: dict) -> None:
    # the run's own table: column 1 scale factor, column 3 comoving distance [true Mpc]
    table = np.loadtxt(LC64 / "pinocchio.lc64.cosmology.out")
    distance_true_mpc = CubicSpline(np.log(table[:, 0]), table[:, 2])
    hubble = float(run_parameters["Hubble100"][0])
    expected = distance_true_mpc(-np.log1p(lc64["truez"].astype(np.float64))) * hubble
    radius = np.linalg.norm(lc64["pos"].astype(np.float64), axis=1)
    # PINOCCHIO solves |x(F)| = chi(F - 1) with Brent to 1e-2 InterPartDist in grid units,
    # i.e. 0.01 * InterPartDist(true Mpc) * InterPartDist(Mpc/h) in Mpc/h; plus 0.05 Mpc/h
    # for the cubic spline through the table (nodes 4.7% apart in a)
    spacing_mpc_h = float(run_parameters["BoxSize"][0]) / int(run_parameters["GridSize"][0])
    tolerance = 0.01 * (spacing_mpc_h / hubble) * spacing_mpc_h + 0.05
    assert np.abs(radius - expected).max() < tolerance


def test_masses_are_multiples_of_the_particle_mass(lc64: np.ndarray,
                                                   run_parameters: dict) -> None:
    box = float(run_parameters["BoxSize"][0])
    grid = int(run_parameters["GridSize"][0])
    particle_mass = RHO_CRIT_MSUN_H_MPC_H3 * float(run_parameters["Omega0"][0]) * (box / grid) ** 3
    particles = np.round(lc64["mass"] / particle_mass)
    # PINOCCHIO's G and Msun give a particle mass 4.8e-5 above ours (its log: 3.97038e13)
    np.testing.assert_allclose(lc64["mass"], particles * particle_mass, rtol=1e-4)
    assert particles.min() >= int(run_parameters["MinHaloMass"][0])

    catalog = read_catalog(CATALOG)
    np.testing.assert_allclose(catalog["mass"], catalog["npart"] * particle_mass, rtol=1e-4)


def test_catalog_matches_mass_function(run_parameters: dict) -> None:
    catalog = read_catalog(CATALOG)
    mass_function = read_mass_function(MASS_FUNCTION)
    assert len(catalog) == mass_function["count"].sum() > 0
    # bins of 0.05 dex in true Msun from "Log M=14.766274" (run log); the mass column is
    # the bin's mean mass [Msun/h] when it holds more than one halo
    hubble = float(run_parameters["Hubble100"][0])
    bins = np.digitize(np.log10(catalog["mass"] / hubble),
                       LC64_LOG_MASS_MIN + 0.05 * np.arange(len(mass_function) + 1)) - 1
    np.testing.assert_array_equal(np.bincount(bins, minlength=len(mass_function)),
                                  mass_function["count"])
    filled = mass_function["count"] > 1
    means = (np.bincount(bins, weights=catalog["mass"], minlength=len(mass_function))[filled]
             / mass_function["count"][filled])
    # printed with 8 significant digits; the sums are of float32 masses
    np.testing.assert_allclose(mass_function["mass"][filled], means, rtol=1e-6)


def test_zero_count_block() -> None:
    halos = read_plc(ZEROBLOCK_PLC)
    assert len(halos) == ZEROBLOCK_HALOS
    assert np.all(np.isfinite(halos["pos"]))


def test_zero_count_block_without_data_record(tmp_path: Path, lc64: np.ndarray) -> None:
    # non-collecting tasks with no halos write only the count record
    blocks = plc_blocks(lc64, PLC_DTYPES[56])
    empty = blocks[0][:0]
    for empty_data_records in (True, False):
        path = tmp_path / f"plc_{empty_data_records}.out"
        write_plc(path, [empty, *blocks[:2], empty, empty, *blocks[2:]], empty_data_records)
        np.testing.assert_array_equal(read_plc(path), lc64)


def test_multi_file_output(tmp_path: Path, lc64: np.ndarray) -> None:
    blocks = plc_blocks(lc64, PLC_DTYPES[56])
    base = tmp_path / "pinocchio.run.plc.out"
    write_plc(tmp_path / f"{base.name}.0", blocks[:1])
    write_plc(tmp_path / f"{base.name}.1", blocks[1:])
    np.testing.assert_array_equal(read_plc(base), lc64)
    # an explicit list is read in the given order
    parts = [tmp_path / f"{base.name}.1", tmp_path / f"{base.name}.0"]
    reordered = np.concatenate([lc64[LC64_BLOCKS[0]:], lc64[: LC64_BLOCKS[0]]])
    np.testing.assert_array_equal(read_plc(parts), reordered)


def test_missing_output_names_both_candidates(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"x\.plc\.out nor pinocchio\.x\.plc\.out\.0"):
        read_plc(tmp_path / "pinocchio.x.plc.out")


@pytest.mark.parametrize("reclen", [104, 32, 48])
def test_other_record_sizes(tmp_path: Path, lc64: np.ndarray, reclen: int) -> None:
    dtype = PLC_DTYPES[reclen]
    path = tmp_path / "plc.out"
    write_plc(path, plc_blocks(lc64, dtype))
    halos = read_plc(path, require_positions=False)
    assert halos.dtype.names == dtype.names
    for name in dtype.names:
        np.testing.assert_array_equal(halos[name], lc64[name].astype(halos[name].dtype))


@pytest.mark.parametrize("reclen", [32, 48])
def test_light_output_refused_when_positions_required(tmp_path: Path, lc64: np.ndarray,
                                                      reclen: int) -> None:
    path = tmp_path / "light.plc.out"
    write_plc(path, plc_blocks(lc64, PLC_DTYPES[reclen]))
    with pytest.raises(PinocchioFormatError, match=rf"{path}.*LIGHT_OUTPUT"):
        read_plc(path)


def test_field_selection(lc64: np.ndarray) -> None:
    halos = read_plc(PLC, fields=["obsz", "pos"])
    assert halos.dtype.names == ("obsz", "pos")
    np.testing.assert_array_equal(halos["pos"], lc64["pos"])
    with pytest.raises(PinocchioFormatError, match="'ra'"):
        read_plc(PLC, fields=["ra"])


def test_marker_wrap_above_2_gib(tmp_path: Path) -> None:
    # one block of 2 GiB + 40 bytes: its data markers, C ints, wrap to negative values.
    # The file is sparse (only the first and last records are written).
    count = 2**31 // 56 + 1
    nbytes = count * 56
    marker = struct.pack("<i", nbytes - 2**32)
    first, last = np.zeros(2, dtype=PLC_DTYPES[56])
    first["truez"], last["truez"] = 0.25, 0.75
    path = tmp_path / "big.plc.out"
    with open(path, "wb") as stream:
        stream.write(struct.pack("<6i", 4, 56, 4, 4, count, 4) + marker + first.tobytes())
        stream.seek(nbytes - 2 * 56, 1)
        stream.write(last.tobytes() + marker)
    halos = read_plc(path, fields=["truez"])
    assert len(halos) == count
    assert (halos["truez"][0], halos["truez"][-1]) == (0.25, 0.75)


def _copy(tmp_path: Path, source: Path) -> Path:
    target = tmp_path / source.name
    shutil.copyfile(source, target)
    return target


def _block_offsets() -> list[int]:
    """Byte offsets of each lc64 block's count record (header: 12 bytes)."""
    sizes = [12 + 8 + n * 56 for n in LC64_BLOCKS]  # count record, data markers, data
    return list(12 + np.concatenate([[0], np.cumsum(sizes)[:-1]]))


def test_truncated_plc_names_file_and_offset(tmp_path: Path) -> None:
    path = _copy(tmp_path, PLC)
    size = path.stat().st_size
    last_data = _block_offsets()[-1] + 12 + 4  # after the count record and opening marker
    cases = {
        size - 10: last_data,  # inside the last data record
        _block_offsets()[1] + 6: _block_offsets()[1] + 4,  # inside a count value
        8: 8,  # inside the header's closing marker
    }
    for cut, offset in cases.items():
        with open(PLC, "rb") as stream:
            path.write_bytes(stream.read(cut))
        with pytest.raises(PinocchioFormatError, match=rf"^{path}: .* at byte offset {offset}$"):
            read_plc(path)


def test_corrupt_marker_names_file_and_offset(tmp_path: Path) -> None:
    path = _copy(tmp_path, PLC)
    closing = _block_offsets()[0] + 12 + 4 + LC64_BLOCKS[0] * 56  # block 0's closing marker
    data = bytearray(path.read_bytes())
    data[closing:closing + 4] = struct.pack("<i", 12345)
    path.write_bytes(bytes(data))
    with pytest.raises(PinocchioFormatError,
                       match=rf"^{path}: corrupt record marker .* found 12345 at byte offset "
                             rf"{closing}$"):
        read_plc(path)
    data[4:8] = struct.pack("<i", 60)  # a record length no build writes
    path.write_bytes(bytes(data))
    with pytest.raises(PinocchioFormatError, match=rf"^{path}: unsupported .* 60 bytes"):
        read_plc(path)


def test_catalog_with_missing_block_names_file_and_offset(tmp_path: Path) -> None:
    # header [8][NTasksPerFile = 2][reclen][8], then block 0 of 87 halos (from the file)
    end_of_block_0 = 16 + 12 + 4 + 87 * 56 + 4
    path = tmp_path / CATALOG.name
    with open(CATALOG, "rb") as stream:
        path.write_bytes(stream.read(end_of_block_0))
    assert len(read_catalog(CATALOG)) > 87
    with pytest.raises(PinocchioFormatError,
                       match=rf"^{path}: expected 2 blocks .* found 1 .* offset {end_of_block_0}$"):
        read_catalog(path)


def test_mass_function_with_wrong_columns(tmp_path: Path) -> None:
    path = tmp_path / "mf.out"
    path.write_text("# mass n\n1e14 2e-20\n")
    with pytest.raises(PinocchioFormatError, match=rf"{path}: expected 7 columns"):
        read_mass_function(path)
