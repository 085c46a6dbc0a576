"""Simulation designs: a Latin hypercube over the prior box and seeds at the fiducial point.

Each design is an ECSV table (astropy), one row per simulation: ``id`` (zero-padded index,
the ``{id}`` wildcard of the workflow), the six parameters, the fixed ``Omega_b`` and the
simulation's ``seed``. Seeds derive from (design seed, set, index) only, so adding
simulations never changes the seeds of existing ones.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.config import Config
from cosmo_sbi.io import atomic_path, provenance

if TYPE_CHECKING:  # astropy.table: ~0.6 s to import, not needed by the Snakefile
    from astropy.table import Table

SETS: tuple[str, ...] = ("latin_hypercube", "fiducial")
_SET_CODES = {name: code for code, name in enumerate(SETS)}


def simulation_ids(n_simulations: int) -> list[str]:
    """Ids of a set of ``n_simulations`` simulations: '0000', '0001', ..."""
    width = max(4, len(str(n_simulations - 1)))
    return [f"{index:0{width}d}" for index in range(n_simulations)]


def simulation_seed(design_seed: int, set_name: str, index: int) -> int:
    """A 63-bit seed from (design seed, set, index), independent of the set's size."""
    entropy = np.random.SeedSequence([design_seed, _SET_CODES[set_name], index])
    return int(entropy.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def latin_hypercube(ranges: dict[str, list[float]], n_simulations: int, seed: int) -> np.ndarray:
    """(n_simulations, 6) parameters, stratified in every parameter, scaled to ``ranges``."""
    from scipy.stats import qmc  # ~0.4 s to import: only the design stage needs it

    sampler = qmc.LatinHypercube(d=len(PARAMETER_NAMES), rng=np.random.default_rng(seed))
    unit = sampler.random(n_simulations)
    lower = [ranges[name][0] for name in PARAMETER_NAMES]
    upper = [ranges[name][1] for name in PARAMETER_NAMES]
    return qmc.scale(unit, lower, upper)


def design_table(config: Config, set_name: str) -> Table:
    """The design of ``set_name`` ('latin_hypercube' or 'fiducial') as an astropy Table."""
    from astropy.table import Table

    if set_name not in SETS:
        raise ValueError(f"unknown simulation set {set_name!r}; expected one of {SETS}")
    design = config["design"]
    section = design[set_name]
    count = section["n_simulations"]
    if set_name == "latin_hypercube":
        values = latin_hypercube(section["ranges"], count, design["seed"])
    else:
        point = [section["parameters"][name] for name in PARAMETER_NAMES]
        values = np.tile(np.asarray(point, dtype=np.float64), (count, 1))
    table = Table()
    table["id"] = simulation_ids(count)
    for column, name in enumerate(PARAMETER_NAMES):
        table[name] = values[:, column]
    for name, value in design["fixed"].items():
        table[name] = np.full(count, float(value))
    table["seed"] = np.array(
        [simulation_seed(design["seed"], set_name, index) for index in range(count)],
        dtype=np.int64,
    )
    table.meta.update(provenance(set=set_name, design_seed=design["seed"],
                                 ranges=design["latin_hypercube"]["ranges"]
                                 if set_name == "latin_hypercube" else section["parameters"]))
    return table


def write_design(config: Config, set_name: str, output: str | os.PathLike[str]) -> None:
    """Write the design table of ``set_name`` atomically as ECSV."""
    table = design_table(config, set_name)
    with atomic_path(output) as temporary:
        table.write(temporary, format="ascii.ecsv")


def read_design_rows(path: str | os.PathLike[str], sim_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Design rows as dicts (``id``, ``set``, parameters, ``Omega_b``, ``seed``), in the
    order of ``sim_ids``; the table is read once."""
    from astropy.table import Table

    table = Table.read(path, format="ascii.ecsv")
    ids = np.asarray(table["id"]).astype(str)
    records = []
    for sim_id in sim_ids:
        matches = np.flatnonzero(ids == str(sim_id))
        if len(matches) != 1:
            raise ValueError(f"{path}: expected exactly one row with id {sim_id!r}, "
                             f"found {len(matches)} (ids {ids[0]}..{ids[-1]})")
        row = table[matches[0]]
        record: dict[str, Any] = {name: row[name].item() for name in table.colnames}
        record["id"] = str(row["id"])
        record["set"] = table.meta.get("set", "")
        records.append(record)
    return records


def read_design_row(path: str | os.PathLike[str], sim_id: str) -> dict[str, Any]:
    """One design row as a dict (``id``, ``set``, parameters, ``Omega_b``, ``seed``)."""
    return read_design_rows(path, [sim_id])[0]
