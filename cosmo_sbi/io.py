"""Atomic file output and provenance attributes shared by every stage."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import yaml

import cosmo_sbi

if TYPE_CHECKING:  # astropy.table: ~0.6 s to import, only for the readers of tables
    from astropy.table import Table


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only on success.

    A job killed mid-write leaves ``<name>.tmp-<pid>`` (never trusted by a later stage,
    which asks for ``<name>``) instead of a half-written output.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    try:
        yield temporary
        os.replace(temporary, final)
    finally:
        if temporary.exists():
            temporary.unlink()


@contextlib.contextmanager
def atomic_hdf5(path: str | os.PathLike[str]) -> Iterator[h5py.File]:
    """A new HDF5 file built in memory and written to ``path`` atomically once complete.

    HDF5 kills the process (segmentation fault) when closing a file whose writes failed on
    a full disk, so the file is built with h5py's in-memory driver and its image written
    with Python I/O, whose failure is an ordinary OSError naming ``path``. Peak memory:
    the data plus two copies of the file.
    """
    with h5py.File(f"{os.fspath(path)}.in-memory", "w", driver="core",
                   backing_store=False) as handle:
        yield handle
        handle.flush()
        image = handle.id.get_file_image()
    with atomic_path(path) as temporary:
        try:
            temporary.write_bytes(image)
        except OSError as error:
            raise OSError(error.errno, error.strerror, os.fspath(path)) from error


CHECKSUM: dict[str, Any] = {"fletcher32": True}
"""h5py options for every numeric dataset written: a Fletcher-32 checksum per chunk, so a
damaged chunk fails its read ("filter returned failure") instead of being trusted. (h5py
refuses filters on variable-length strings; those stay unchecked.)"""


class DamagedFileError(ValueError):
    """An input file cannot be read or fails its checks; the message names the file."""


@contextlib.contextmanager
def open_hdf5(path: str | os.PathLike[str], what: str,
              error_type: type[DamagedFileError] = DamagedFileError) -> Iterator[h5py.File]:
    """``h5py.File(path, "r")`` whose errors, on opening or on any read inside the block
    (truncated, zeroed or garbage file, checksum failure), raise ``error_type`` naming
    ``path`` and ``what``."""
    try:
        with h5py.File(path, "r") as handle:
            yield handle
    except OSError as error:
        raise error_type(f"{path}: cannot read this {what} ({error}); expected an intact "
                         "HDF5 file: delete it and rerun the step that writes it") from error
    except KeyError as error:
        raise error_type(f"{path}: {what} lacks {error}; expected the layout "
                         "cosmo_sbi writes: delete it and rerun that step") from error


def read_ecsv(path: str | os.PathLike[str], what: str,
              columns: tuple[str, ...] = ()) -> Table:
    """An ECSV table with ``columns``; a damaged or foreign file raises DamagedFileError
    naming ``path`` and ``what`` (astropy's own errors do not name the file)."""
    from astropy.table import Table

    try:
        table = Table.read(path, format="ascii.ecsv")
    except FileNotFoundError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, OSError,
            yaml.YAMLError) as error:
        raise DamagedFileError(f"{path}: cannot read this {what} ({type(error).__name__}: "
                               f"{error}); expected the ECSV table cosmo_sbi writes: delete it "
                               "and rerun the step that writes it") from error
    missing = [name for name in columns if name not in table.colnames]
    if missing:
        raise DamagedFileError(f"{path}: {what} lacks the columns {missing}")
    return table


def provenance(**fields: Any) -> dict[str, Any]:
    """Provenance attributes: the package version plus ``fields``."""
    return {"package_version": cosmo_sbi.__version__, **fields}


def write_attrs(target: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    """Write attributes to an HDF5 file, group or dataset; mappings are stored as JSON."""
    for key, value in attrs.items():
        if isinstance(value, Mapping):
            value = json.dumps(value, sort_keys=True)
        elif isinstance(value, list | tuple):
            value = np.asarray(value)
        target.attrs[key] = value


def read_attrs(target: h5py.HLObject) -> dict[str, Any]:
    """Attributes as Python values; JSON-encoded dicts are decoded."""
    attrs: dict[str, Any] = {}
    for key, value in target.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str) and value.startswith("{"):
            value = json.loads(value)
        elif isinstance(value, np.generic):
            value = value.item()
        attrs[key] = value
    return attrs
