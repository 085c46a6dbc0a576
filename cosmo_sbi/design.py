"""Simulation designs: a Latin hypercube over the prior box, seeds at the fiducial point,
and the Fisher derivative set.

Each design is an ECSV table (astropy), one row per simulation: ``id`` (zero-padded index,
the ``{id}`` wildcard of the workflow), the six parameters, the fixed ``Omega_b`` and the
simulation's ``seed``. Seeds derive from (design seed, set, index) only, so adding
simulations never changes the seeds of existing ones.

The derivative set (``design.derivatives``) holds, for each seed index s < n_seeds, each
parameter p and each step in (h_p, h_p / 2) (h_p = step_fraction x the Latin-hypercube
width of p), the two rows fiducial +- step in p, with the seed of fiducial simulation s:
common random numbers, so the embedded simulator draws the same hashed noise and
(s(+h) - s(-h)) / 2h is almost free of sample variance. Extra columns: ``parameter``,
``sign`` (+1 / -1), ``step`` (the step size, > 0) and ``seed_index``. Row order: seed,
parameter, step (h before h / 2), sign (+ before -); 24 rows per seed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.config import Config
from cosmo_sbi.io import DamagedFileError, atomic_path, provenance, read_ecsv

if TYPE_CHECKING:  # astropy.table: ~0.6 s to import, not needed by the Snakefile
    from astropy.table import Table

SETS: tuple[str, ...] = ("latin_hypercube", "fiducial", "derivatives")
_SET_CODES = {name: code for code, name in enumerate(SETS)}
DERIVATIVE_STEPS: tuple[float, ...] = (1.0, 0.5)
"""Derivative steps in units of h: h for the Fisher matrix, h / 2 for its convergence."""
SIGNS: tuple[int, ...] = (1, -1)


def set_size(config: Config, set_name: str) -> int:
    """Number of simulations of ``set_name``: n_simulations, or 24 per derivative seed."""
    if set_name == "derivatives":
        per_seed = len(PARAMETER_NAMES) * len(DERIVATIVE_STEPS) * len(SIGNS)
        return per_seed * config["design"]["derivatives"]["n_seeds"]
    return config["design"][set_name]["n_simulations"]


def design_section(config: Config, set_name: str) -> dict[str, Any]:
    """The set's own config values its design depends on (besides design.seed and fixed):
    its section, plus for the derivative set the fiducial point and the prior box."""
    design = config["design"]
    if set_name == "derivatives":
        return {**design["derivatives"], "fiducial": design["fiducial"]["parameters"],
                "ranges": design["latin_hypercube"]["ranges"]}
    return design[set_name]


def derivative_rows(config: Config) -> dict[str, np.ndarray]:
    """Columns of the derivative set (order in the module docstring): parameters (N, 6),
    parameter names, signs, step sizes, seed indices and seeds (the fiducial set's)."""
    design = config["design"]
    fiducial = np.array([design["fiducial"]["parameters"][n] for n in PARAMETER_NAMES])
    ranges = design["latin_hypercube"]["ranges"]
    width = np.array([ranges[n][1] - ranges[n][0] for n in PARAMETER_NAMES])
    h = design["derivatives"]["step_fraction"] * width
    seed_index, parameter, step, sign = (grid.ravel() for grid in np.meshgrid(
        np.arange(design["derivatives"]["n_seeds"]), np.arange(len(PARAMETER_NAMES)),
        np.asarray(DERIVATIVE_STEPS), np.asarray(SIGNS), indexing="ij"))
    values = np.tile(fiducial, (len(seed_index), 1))
    size = step * h[parameter]
    values[np.arange(len(seed_index)), parameter] += sign * size
    seeds = [simulation_seed(design["seed"], "fiducial", int(s)) for s in seed_index]
    return {"values": values, "parameter": np.asarray(PARAMETER_NAMES)[parameter],
            "sign": sign.astype(np.int64), "step": size, "seed_index": seed_index,
            "seed": np.asarray(seeds, dtype=np.int64)}


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
    """The design of ``set_name`` (one of SETS) as an astropy Table."""
    from astropy.table import Table

    if set_name not in SETS:
        raise ValueError(f"unknown simulation set {set_name!r}; expected one of {SETS}")
    design = config["design"]
    section = design[set_name]
    count = set_size(config, set_name)
    derivatives = derivative_rows(config) if set_name == "derivatives" else None
    if set_name == "latin_hypercube":
        values = latin_hypercube(section["ranges"], count, design["seed"])
    elif derivatives is not None:
        values = derivatives["values"]
    else:
        point = [section["parameters"][name] for name in PARAMETER_NAMES]
        values = np.tile(np.asarray(point, dtype=np.float64), (count, 1))
    table = Table()
    table["id"] = simulation_ids(count)
    for column, name in enumerate(PARAMETER_NAMES):
        table[name] = values[:, column]
    for name, value in design["fixed"].items():
        table[name] = np.full(count, float(value))
    if derivatives is not None:
        table["seed"] = derivatives["seed"]
        for column in ("parameter", "sign", "step", "seed_index"):
            table[column] = derivatives[column]
    else:
        table["seed"] = np.array(
            [simulation_seed(design["seed"], set_name, index) for index in range(count)],
            dtype=np.int64,
        )
    if set_name == "latin_hypercube":
        described = section["ranges"]
    elif set_name == "fiducial":
        described = section["parameters"]
    else:
        described = design_section(config, set_name)
    table.meta.update(provenance(set=set_name, design_seed=design["seed"], ranges=described))
    return table


def write_design(config: Config, set_name: str, output: str | os.PathLike[str]) -> None:
    """Write the design table of ``set_name`` atomically as ECSV."""
    table = design_table(config, set_name)
    with atomic_path(output) as temporary:
        table.write(temporary, format="ascii.ecsv")


def read_design_rows(path: str | os.PathLike[str], sim_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Design rows as dicts (``id``, ``set``, parameters, ``Omega_b``, ``seed``), in the
    order of ``sim_ids``; the table is read once. A damaged table or a non-finite parameter
    raises an error naming the file."""
    table = read_ecsv(path, "design table", ("id", *PARAMETER_NAMES, "Omega_b", "seed"))
    ids = np.asarray(table["id"]).astype(str)
    records = []
    for sim_id in sim_ids:
        matches = np.flatnonzero(ids == str(sim_id))
        if len(matches) != 1:
            raise ValueError(f"{path}: expected exactly one row with id {sim_id!r}, "
                             f"found {len(matches)} (ids {ids[0]}..{ids[-1]})")
        row = table[matches[0]]
        record: dict[str, Any] = {name: row[name].item() for name in table.colnames}
        bad = [name for name in (*PARAMETER_NAMES, "Omega_b")
               if not isinstance(record[name], float) or not math.isfinite(record[name])]
        if bad:
            raise DamagedFileError(f"{path}: row {sim_id!r} has non-finite or non-numeric "
                                   f"{bad}; expected finite parameters")
        record["id"] = str(row["id"])
        record["set"] = table.meta.get("set", "")
        records.append(record)
    return records


def read_design_row(path: str | os.PathLike[str], sim_id: str) -> dict[str, Any]:
    """One design row as a dict (``id``, ``set``, parameters, ``Omega_b``, ``seed``)."""
    return read_design_rows(path, [sim_id])[0]
