"""The common light-cone format and the light-cone geometry shared by every simulator.

Geometry: the observer sits at the origin of the (periodic) box and the cone axis points
along +x. In that frame RA = atan2(y, x) and DEC = arcsin(z / r) [deg]; the histogram
window (-20 < RA, DEC < 20 by default) is centred on the axis.

File (HDF5, one per simulation): datasets of length N_halo, float32,
``ra`` [deg], ``dec`` [deg], ``z_cos`` (cosmological redshift), ``z_obs`` (observed,
including the line-of-sight peculiar velocity), ``mass`` [Msun/h]; optional ``pos``
(N, 3) [Mpc/h, relative to the observer] and ``vel`` (N, 3) [km/s]. Root attributes carry
the provenance (cosmology, seed, simulator and its settings, package version).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.io import CHECKSUM, atomic_hdf5, provenance, read_attrs, write_attrs

REQUIRED_FIELDS: tuple[str, ...] = ("ra", "dec", "z_cos", "z_obs", "mass")
OPTIONAL_FIELDS: tuple[str, ...] = ("pos", "vel")
SPEED_OF_LIGHT_KM_S = 299792.458


class LightconeFormatError(ValueError):
    """A light-cone file or array set does not follow the common format."""


def radec_from_cartesian(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RA, DEC [deg] of positions ``pos`` (N, 3) relative to the observer, axis along +x."""
    pos = np.asarray(pos, dtype=np.float64)
    radius = np.linalg.norm(pos, axis=1)
    ra = np.degrees(np.arctan2(pos[:, 1], pos[:, 0]))
    dec = np.degrees(np.arcsin(np.clip(pos[:, 2] / radius, -1.0, 1.0)))
    return ra, dec


def observed_redshift(z_cos: np.ndarray, v_los_km_s: np.ndarray) -> np.ndarray:
    """z_obs = z_cos + (1 + z_cos) v_los / c (v_los > 0 away from the observer)."""
    return z_cos + (1.0 + z_cos) * np.asarray(v_los_km_s) / SPEED_OF_LIGHT_KM_S


def lightcone_provenance(
    row: Mapping[str, Any], simulator: str, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """Root attributes of a light-cone file: sim id, set, seed, cosmology, simulator.

    ``row`` is a design row (cosmo_sbi.design.read_design_row); ``settings`` the simulator's
    config section (stored as JSON). Every simulator writes its files with these.
    """
    cosmology = {name: float(row[name]) for name in (*PARAMETER_NAMES, "Omega_b")}
    return provenance(sim_id=str(row["id"]), set=str(row["set"]), seed=int(row["seed"]),
                      simulator=simulator, simulator_settings=dict(settings), **cosmology)


def validate_arrays(halos: Mapping[str, np.ndarray], source: str = "light cone") -> int:
    """Check field presence and shapes; return the number of halos."""
    missing = [name for name in REQUIRED_FIELDS if name not in halos]
    if missing:
        raise LightconeFormatError(
            f"{source}: missing fields {missing}; expected {REQUIRED_FIELDS}"
        )
    count = len(halos["ra"])
    for name in REQUIRED_FIELDS:
        if np.shape(halos[name]) != (count,):
            raise LightconeFormatError(
                f"{source}: field {name!r} has shape {np.shape(halos[name])}, expected ({count},)"
            )
    for name in OPTIONAL_FIELDS:
        if name in halos and np.shape(halos[name]) != (count, 3):
            raise LightconeFormatError(
                f"{source}: field {name!r} has shape {np.shape(halos[name])}, expected ({count}, 3)"
            )
    return count


def check_values(halos: Mapping[str, np.ndarray], source: str) -> None:
    """Refuse values no simulator can produce (a damaged file): NaN or infinity, |RA| > 180,
    |DEC| > 90 deg, a redshift <= -1, z_cos < 0 or a mass <= 0."""
    limits = {"ra": (-180.0, 180.0), "dec": (-90.0, 90.0), "z_cos": (0.0, np.inf),
              "z_obs": (-1.0, np.inf), "mass": (0.0, np.inf)}
    for name, (low, high) in limits.items():
        if name not in halos:
            continue
        values = np.asarray(halos[name])
        with np.errstate(invalid="ignore"):
            bad = ~(np.isfinite(values) & (values >= low) & (values <= high))
        if name in ("z_obs", "mass"):
            bad |= values == low
        if np.any(bad):
            first = int(np.flatnonzero(bad)[0])
            raise LightconeFormatError(
                f"{source}: field {name!r} has {int(bad.sum())} impossible values (first: "
                f"{values[first]} at halo {first}); expected finite values in [{low}, {high}]: "
                "the file is damaged, delete it and rerun its simulation")


CONE_TOLERANCE_DEG = 0.01
"""Slack on the aperture for float32 RA/DEC (PINOCCHIO's lc64 fixture: 29.992 of 30 deg)."""


def check_inside_cone(halos: Mapping[str, np.ndarray], aperture_deg: float,
                      source: str) -> None:
    """Refuse halos farther than ``aperture_deg`` (``lightcone.aperture_deg``) from the cone
    axis: no simulator writes them (PINOCCHIO's cone has that aperture, the embedded
    simulator cuts to the histogram window inside it), so they mark a damaged file."""
    cos_angle = (np.cos(np.radians(np.asarray(halos["ra"], dtype=np.float64)))
                 * np.cos(np.radians(np.asarray(halos["dec"], dtype=np.float64))))
    outside = cos_angle < np.cos(np.radians(aperture_deg + CONE_TOLERANCE_DEG))
    if np.any(outside):
        first = int(np.flatnonzero(outside)[0])
        raise LightconeFormatError(
            f"{source}: {int(outside.sum())} halos lie outside the {aperture_deg} deg cone "
            f"(lightcone.aperture_deg), e.g. halo {first} at RA {halos['ra'][first]}, DEC "
            f"{halos['dec'][first]}; expected none: the file is damaged or was made with "
            "another aperture, delete it and rerun its simulation")


def write_lightcone(
    path: str | os.PathLike[str], halos: Mapping[str, np.ndarray], attrs: Mapping[str, Any]
) -> None:
    """Write ``halos`` (fields above) atomically to ``path`` with provenance ``attrs``."""
    validate_arrays(halos, source=str(path))
    with atomic_hdf5(path) as out:
        for name in REQUIRED_FIELDS + OPTIONAL_FIELDS:
            if name in halos:
                out.create_dataset(name, data=np.asarray(halos[name], dtype=np.float32),
                                   **CHECKSUM)
        write_attrs(out, attrs)


def read_lightcone(
    path: str | os.PathLike[str], fields: tuple[str, ...] = REQUIRED_FIELDS
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read ``fields`` and the provenance attributes of a light-cone file."""
    try:
        with h5py.File(path, "r") as source:
            missing = [name for name in fields if name not in source]
            if missing:
                raise LightconeFormatError(
                    f"{path}: missing datasets {missing}; expected the common light-cone format "
                    f"with {REQUIRED_FIELDS}"
                )
            halos = {name: source[name][...] for name in fields}
            attrs = read_attrs(source)
    except OSError as error:
        raise LightconeFormatError(f"{path}: not a readable HDF5 light cone ({error})") from error
    if set(REQUIRED_FIELDS) <= set(fields):
        validate_arrays(halos, source=str(path))
    check_values(halos, source=str(path))
    return halos, attrs
