"""Atomic file output and provenance attributes shared by every stage."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import cosmo_sbi


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
