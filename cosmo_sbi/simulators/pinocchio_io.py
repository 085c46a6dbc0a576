"""Readers for PINOCCHIO v5 outputs: past light cone, halo catalogue, mass function.

Binary files are little-endian; every record is framed by int32 markers holding its size
(Fortran style). Light cone: header ``[4][reclen][4]``; catalogue: header
``[8][NTasksPerFile][reclen][8]``; then blocks (one per writing task and write) of a count
record ``[4][n][4]`` and a data record ``[n*reclen][n records][n*reclen]``. A block's
records are read at once as a numpy structured array (no per-halo loop). The data-record
markers are C ints that wrap above 2 GiB, so ``n`` is trusted and a marker is checked
modulo 2**32. The record length in the header tells the build: see :data:`PLC_DTYPES`.

With ``NumFiles > 1`` PINOCCHIO appends ``.0``, ``.1``, ... to each binary file name; the
readers accept the base name and concatenate every part.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PathLike = str | os.PathLike[str]

_FLOAT = {"float32": "<f4", "float64": "<f8"}


def _c_struct(names: list[str], formats: list) -> np.dtype:
    """A little-endian C struct: fields packed in order, size padded to its 8-byte alignment."""
    packed = np.dtype({"names": names, "formats": formats})
    return np.dtype({"names": names, "formats": formats,
                     "offsets": [packed.fields[name][1] for name in names],
                     "itemsize": -(-packed.itemsize // 8) * 8})


def _plc_dtype(precision: str, light: bool) -> np.dtype:
    real = _FLOAT[precision]
    if light:
        return _c_struct(["name", "truez", "mass", "theta", "phi", "obsz"], ["<u8"] + [real] * 5)
    return _c_struct(["name", "truez", "pos", "vel", "mass", "theta", "phi", "vlos", "obsz"],
                     ["<u8", real, (real, 3), (real, 3), real, real, real, real, real])


def _catalog_dtype(precision: str, light: bool) -> np.dtype:
    real = _FLOAT[precision]
    names = ["name", "mass", "pos", "vel", "posin"] + ([] if light else ["npart"])
    formats = ["<u8", real, (real, 3), (real, 3), (real, 3)] + ([] if light else ["<i4"])
    return _c_struct(names, formats)


PLC_DTYPES: dict[int, np.dtype] = {
    dtype.itemsize: dtype
    for dtype in (_plc_dtype(p, light) for p in _FLOAT for light in (False, True))
}
"""Light-cone record layout by record length: 56 (default build), 32 (LIGHT_OUTPUT),
104 (DOUBLE_PRECISION_PRODUCTS), 48 (both). Fields: ``name``; ``truez`` (cosmological
redshift); ``pos`` [Mpc/h with OutputInH100, relative to the cone vertex]; ``vel`` [km/s];
``mass`` [Msun/h]; ``theta`` (90 deg minus the angle from the cone axis) and ``phi``
(azimuth about the axis) [deg]; ``vlos`` [km/s]; ``obsz`` (observed redshift)."""

CATALOG_DTYPES: dict[int, np.dtype] = {
    dtype.itemsize: dtype
    for dtype in (_catalog_dtype(p, light) for p in _FLOAT for light in (False, True))
}
"""Halo-catalogue record layout by record length: 56 (default), 48 (LIGHT_OUTPUT),
96 (DOUBLE_PRECISION_PRODUCTS), 88 (both). Fields: ``name``, ``mass`` [Msun/h], final
``pos`` and Lagrangian ``posin`` [Mpc/h], ``vel`` [km/s], ``npart`` (absent when light)."""

MASS_FUNCTION_DTYPE = np.dtype([
    ("mass", "f8"), ("n", "f8"), ("n_upper", "f8"), ("n_lower", "f8"),
    ("count", "i8"), ("n_analytic", "f8"), ("nu", "f8"),
])
"""Columns of ``pinocchio.Z.RUN.mf.out``: mean mass in the bin [Msun/h], n(M) with its
+-1 sigma limits [(Mpc/h)^-3 (Msun/h)^-1], halos in the bin, analytic n(M), peak height."""


class PinocchioFormatError(ValueError):
    """A PINOCCHIO output file is truncated, corrupt or of an unsupported layout."""


def part_paths(base: PathLike) -> list[Path]:
    """The files of one PINOCCHIO output: ``base`` itself, or ``base.0``, ``base.1``, ..."""
    base = Path(base)
    if base.is_file():
        return [base]
    parts = []
    while (part := base.with_name(f"{base.name}.{len(parts)}")).is_file():
        parts.append(part)
    if not parts:
        raise FileNotFoundError(f"{base}: PINOCCHIO output not found (neither {base.name} "
                                f"nor {base.name}.0 exists in {base.parent})")
    return parts


class _RecordFile:
    """Sequential reader of Fortran-style records that reports the byte offset of errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.offset = 0
        self._stream = open(path, "rb")  # closed by __exit__

    def __enter__(self) -> _RecordFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stream.close()

    def error(self, message: str, offset: int) -> PinocchioFormatError:
        return PinocchioFormatError(f"{self.path}: {message} at byte offset {offset}")

    def at_end(self) -> bool:
        return self.offset >= self.size

    def _bytes(self, nbytes: int, what: str) -> bytes:
        if self.offset + nbytes > self.size:
            raise self.error(f"file ends inside the {what} (needs {nbytes} bytes, "
                             f"{self.size - self.offset} left)", self.offset)
        self._stream.seek(self.offset)
        data = self._stream.read(nbytes)
        self.offset += nbytes
        return data

    def _marker(self, nbytes: int, what: str) -> None:
        offset = self.offset
        found = struct.unpack("<I", self._bytes(4, f"record marker of the {what}"))[0]
        if found != nbytes % 2**32:
            raise self.error(f"corrupt record marker of the {what}: expected {nbytes % 2**32}, "
                             f"found {found}", offset)

    def peek_marker(self) -> int | None:
        """The next 4 bytes as an unsigned marker, or None at the end of the file."""
        if self.size - self.offset < 4:
            return None
        self._stream.seek(self.offset)
        return struct.unpack("<I", self._stream.read(4))[0]

    def ints(self, count: int, what: str) -> tuple[int, ...]:
        """One record of ``count`` int32 values."""
        self._marker(4 * count, what)
        values = struct.unpack(f"<{count}i", self._bytes(4 * count, what))
        self._marker(4 * count, what)
        return values

    def records(self, dtype: np.dtype, count: int, what: str,
                fields: Sequence[str] | None) -> np.ndarray:
        """One record of ``count`` structs of ``dtype`` (only ``fields``), copied from a memmap.

        The opening marker is compared modulo 2**32 (it wraps above 2 GiB); ``count`` is
        trusted for the size.
        """
        nbytes = count * dtype.itemsize
        self._marker(nbytes, what)
        start = self.offset
        if start + nbytes + 4 > self.size:
            raise self.error(f"file ends inside the {what} ({count} records of {dtype.itemsize} "
                             f"bytes need {nbytes + 4} bytes, {self.size - start} left)", start)
        records = (np.memmap(self.path, dtype=dtype, mode="r", offset=start, shape=(count,))
                   if count else np.empty(0, dtype=dtype))
        block = _empty(dtype, fields, count)
        for name in block.dtype.names:
            block[name] = records[name]
        del records
        self.offset += nbytes
        self._marker(nbytes, what)
        return block


def _read_blocks(reader: _RecordFile, dtype: np.dtype,
                 fields: Sequence[str] | None) -> list[np.ndarray]:
    """Every ``[count][data]`` block after the header, up to the end of the file.

    A block with count 0 may or may not carry an empty data record (the collecting task
    writes one, the others do not): an empty data record starts with marker 0, a count
    record with marker 4, so the next marker tells them apart.
    """
    blocks = []
    while not reader.at_end():
        label = f"block {len(blocks)}"
        offset = reader.offset
        (count,) = reader.ints(1, f"count record of {label}")
        if count < 0:
            raise reader.error(f"negative halo count {count} in {label}", offset + 4)
        if count == 0 and reader.peek_marker() != 0:
            blocks.append(_empty(dtype, fields))
        else:
            blocks.append(reader.records(dtype, count, f"data record of {label}", fields))
    return blocks


def _empty(dtype: np.dtype, fields: Sequence[str] | None, count: int = 0) -> np.ndarray:
    """An uninitialised array of ``count`` records holding only ``fields`` (default: all)."""
    if fields:
        dtype = np.dtype([(name, dtype.fields[name][0]) for name in fields])
    return np.empty(count, dtype=dtype)


def _layout(dtypes: dict[int, np.dtype], reclen: int, reader: _RecordFile, kind: str,
            offset: int) -> np.dtype:
    if reclen not in dtypes:
        raise reader.error(f"unsupported {kind} record length {reclen} bytes (expected one of "
                           f"{sorted(dtypes)}: float/double products, with/without "
                           "LIGHT_OUTPUT)", offset)
    return dtypes[reclen]


def _paths(path_or_paths: PathLike | Sequence[PathLike]) -> list[Path]:
    if isinstance(path_or_paths, str | os.PathLike):
        return part_paths(path_or_paths)
    paths = [Path(p) for p in path_or_paths]
    if not paths:
        raise ValueError("expected at least one PINOCCHIO output file, got an empty list")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"PINOCCHIO output files not found: {missing}")
    return paths


def _check_same_layout(dtype: np.dtype, first: tuple[Path, np.dtype] | None, path: Path) -> None:
    if first is not None and dtype != first[1]:
        raise PinocchioFormatError(f"{path}: record length {dtype.itemsize} differs from "
                                   f"{first[1].itemsize} in {first[0]}")


def read_plc(path_or_paths: PathLike | Sequence[PathLike], fields: Sequence[str] | None = None,
             require_positions: bool = True) -> np.ndarray:
    """Read a past-light-cone output ``pinocchio.RUN.plc.out`` (all its ``.N`` parts).

    ``path_or_paths``: the base file name (parts are found) or an explicit list of files.
    ``fields``: subset of the :data:`PLC_DTYPES` fields to return (default: all).
    Returns a structured array of length N_halo, in file order. Raises
    :class:`PinocchioFormatError` naming the file and byte offset on truncation or
    corruption, and when ``require_positions`` and the file was written with LIGHT_OUTPUT.
    """
    blocks: list[np.ndarray] = []
    first: tuple[Path, np.dtype] | None = None
    for path in _paths(path_or_paths):
        with _RecordFile(path) as reader:
            (reclen,) = reader.ints(1, "header (record length)")
            dtype = _layout(PLC_DTYPES, reclen, reader, "light-cone", 4)
            if require_positions and "pos" not in dtype.names:
                raise PinocchioFormatError(
                    f"{path}: light-cone records of {reclen} bytes have no positions or "
                    "velocities (PINOCCHIO was built with -DLIGHT_OUTPUT); the workflow needs "
                    "them: rebuild PINOCCHIO without LIGHT_OUTPUT")
            unknown = [name for name in fields or () if name not in dtype.names]
            if unknown:
                raise PinocchioFormatError(f"{path}: fields {unknown} are not in its records "
                                           f"({reclen} bytes: {dtype.names})")
            _check_same_layout(dtype, first, path)
            first = first or (path, dtype)
            blocks += _read_blocks(reader, dtype, fields)
    return np.concatenate(blocks or [_empty(first[1], fields)])


def read_catalog(path_or_paths: PathLike | Sequence[PathLike]) -> np.ndarray:
    """Read a halo catalogue ``pinocchio.Z.RUN.catalog.out`` (all its ``.N`` parts).

    Each file's header gives NTasksPerFile and the record length; every task writes one
    block, so a file with another number of blocks is reported as corrupt.
    Returns a structured array (fields of :data:`CATALOG_DTYPES`), one row per halo.
    """
    blocks: list[np.ndarray] = []
    first: tuple[Path, np.dtype] | None = None
    for path in _paths(path_or_paths):
        with _RecordFile(path) as reader:
            ntasks, reclen = reader.ints(2, "header (NTasksPerFile, record length)")
            dtype = _layout(CATALOG_DTYPES, reclen, reader, "catalogue", 8)
            _check_same_layout(dtype, first, path)
            first = first or (path, dtype)
            file_blocks = _read_blocks(reader, dtype, None)
            if len(file_blocks) != ntasks:
                raise reader.error(f"expected {ntasks} blocks (NTasksPerFile in the header), "
                                   f"found {len(file_blocks)} before the end", reader.offset)
            blocks += file_blocks
    return np.concatenate(blocks or [_empty(first[1], None)])


def read_mass_function(path: PathLike) -> np.ndarray:
    """Read a mass-function file ``pinocchio.Z.RUN.mf.out`` (ASCII, 7 columns, '#' comments).

    Returns a structured array with the fields of :data:`MASS_FUNCTION_DTYPE`, one row per
    0.05-dex mass bin.
    """
    table = np.loadtxt(path, comments="#", ndmin=2)
    columns = len(MASS_FUNCTION_DTYPE.names)
    if table.shape[1] != columns:
        raise PinocchioFormatError(f"{path}: expected {columns} columns "
                                   f"{MASS_FUNCTION_DTYPE.names}, found {table.shape[1]}")
    result = np.empty(len(table), dtype=MASS_FUNCTION_DTYPE)
    for index, name in enumerate(MASS_FUNCTION_DTYPE.names):
        result[name] = table[:, index]
    return result
