"""PINOCCHIO v5 backend: run-directory set-up, the runner with its failure checks, and the
converter of its past light cone to the common light-cone format.

PINOCCHIO writes every output into its working directory, so each simulation has its own
run directory holding:

- ``parameter_file``: one ``Key value`` per line (RunFlag ``run``), every line shorter than
  100 characters (PINOCCHIO reads lines with a 100-byte buffer);
- ``outputs``: the output redshifts, descending; the last one ends the run and must not
  exceed ``LastzForPLC`` (the light cone would stop there);
- ``pk_table.txt`` (``simulator.pinocchio.power_spectrum: table``): linear P(k) at z = 0;
- ``log``: PINOCCHIO's stdout and stderr;
- ``pinocchio.run.plc.out`` (or ``.0``, ``.1``, ... with ``num_files > 1``): the light cone.

The cone geometry is the one of :mod:`cosmo_sbi.lightcone`: vertex at the box origin,
axis +x, half-opening ``lightcone.aperture_deg``; true redshifts cover the histogram's
z_obs range padded by ``lightcone.z_padding`` on both sides.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
from collections.abc import Mapping
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np

from cosmo_sbi.config import (
    COMMAND_PLACEHOLDERS,
    Config,
    ConfigError,
    check_executable,
    window_corner_angle_deg,
)
from cosmo_sbi.io import atomic_path
from cosmo_sbi.lightcone import lightcone_provenance, radec_from_cartesian, write_lightcone
from cosmo_sbi.simulators.pinocchio_io import PinocchioFormatError, read_plc

log = logging.getLogger(__name__)

RUN_FLAG = "run"
"""RunFlag of every run: outputs are named ``pinocchio.run.*``."""
PARAMETER_FILE = "parameter_file"
OUTPUT_LIST = "outputs"
POWER_TABLE = "pk_table.txt"
LOG_FILE = "log"
MAX_LINE_CHARS = 99
"""PINOCCHIO reads the parameter file with fgets(buf, 100, ...): longer lines are split and
the run aborts with 'Tag ... is unknown'."""
POWER_TABLE_K_H_MPC = np.geomspace(1e-4, 100.0, 1000)
"""Wavenumbers [h/Mpc] of the tabulated P(k): the range PINOCCHIO needs, log-spaced."""
MAX_RANDOM_SEED = 2**31 - 1
"""RandomSeed is a C int; seeds are reduced to 1 .. MAX_RANDOM_SEED."""
PLC_FIELDS = ("name", "truez", "pos", "vel", "mass", "obsz")
"""Light-cone fields the converter needs (positions: a LIGHT_OUTPUT build is refused; names
identify the periodic repeats of a halo)."""

ParameterValue = str | int | float | bool | tuple[float, ...]


class PinocchioRunError(ValueError):
    """A PINOCCHIO run failed: non-zero exit, ERROR in its log, or no light-cone file.

    A ValueError, so ``cosmo-sbi pinocchio-run`` reports it as a one-line error (exit 2).
    """


def plc_file_names(num_files: int) -> list[str]:
    """Light-cone file names a run writes in its directory (``num_files`` = NumFiles)."""
    base = f"pinocchio.{RUN_FLAG}.plc.out"
    if num_files < 1:
        raise ValueError(f"num_files must be >= 1, got {num_files}")
    return [base] if num_files == 1 else [f"{base}.{part}" for part in range(num_files)]


def plc_redshift_range(config: Config) -> tuple[float, float]:
    """(LastzForPLC, StartingzForPLC): the histogram's z_obs range padded on both sides.

    Rounded to 10 decimals so that 0.3 - 0.02 is written as 0.28.
    """
    z_min, z_max = config["histogram"]["z_obs"]
    padding = config["lightcone"]["z_padding"]
    return round(z_min - padding, 10), round(z_max + padding, 10)


def random_seed(seed: int) -> int:
    """The design seed (up to 63 bits) reduced deterministically to PINOCCHIO's 1 .. 2**31-1."""
    return 1 + int(seed) % MAX_RANDOM_SEED


def _check_geometry(config: Config) -> None:
    """The cone must contain the RA/DEC window and start at a positive redshift."""
    hist = config["histogram"]
    aperture = config["lightcone"]["aperture_deg"]
    corner = window_corner_angle_deg(hist["ra_deg"], hist["dec_deg"])
    if aperture <= corner:
        raise ConfigError(f"lightcone.aperture_deg: PLCAperture (half-opening) {aperture} deg "
                          f"does not cover the RA/DEC window, whose corners are {corner:.2f} "
                          f"deg off the cone axis; expected > {corner:.2f}")
    last_z, _ = plc_redshift_range(config)
    if last_z <= 0:
        raise ConfigError(f"lightcone.z_padding: LastzForPLC = histogram.z_obs min - padding "
                          f"= {last_z} must be > 0")


def parameters(config: Config, row: Mapping[str, Any]) -> dict[str, ParameterValue]:
    """PINOCCHIO parameters of one simulation, in file order (True marks a flag that is on).

    ``row``: a design row (Omega_m, sigma_8, w0, wa, n_s, h, Omega_b, seed).
    """
    section = config["simulator"]["pinocchio"]
    last_z, start_z = plc_redshift_range(config)
    omega_m = float(row["Omega_m"])
    table = section["power_spectrum"] == "table"
    return {
        "RunFlag": RUN_FLAG,
        "OutputList": OUTPUT_LIST,
        "BoxSize": float(section["box_size_mpc_h"]),
        "BoxInH100": True,
        "GridSize": int(section["grid_size"]),
        "RandomSeed": random_seed(row["seed"]),
        "Omega0": omega_m,
        "OmegaLambda": 1.0 - omega_m,  # flatness is not enforced by PINOCCHIO
        "OmegaBaryon": float(row["Omega_b"]),
        "Hubble100": float(row["h"]),
        "Sigma8": float(row["sigma_8"]),
        "PrimordialIndex": float(row["n_s"]),
        "DEw0": float(row["w0"]),
        "DEwa": float(row["wa"]),
        "TabulatedEoSfile": "no",
        "FileWithInputSpectrum": POWER_TABLE if table else "no",  # "no": built-in EH98
        "InputSpectrum_UnitLength_in_cm": 0,  # k in h/Mpc
        "WDM_PartMass_in_kev": 0.0,
        "BoundaryLayerFactor": float(section["boundary_layer_factor"]),
        "MaxMem": int(section["max_mem_mb"]),
        "MaxMemPerParticle": int(section["max_mem_per_particle"]),
        "PredPeakFactor": float(section["pred_peak_factor"]),
        "OutputInH100": True,
        "NumFiles": int(section["num_files"]),
        "MinHaloMass": int(section["min_halo_mass_particles"]),
        "AnalyticMassFunction": int(section["analytic_mass_function"]),
        "StartingzForPLC": start_z,
        "LastzForPLC": last_z,
        "PLCAperture": float(config["lightcone"]["aperture_deg"]),
        "PLCProvideConeData": True,
        "PLCCenter": (0.0, 0.0, 0.0),  # observer at the box origin (cosmo_sbi.lightcone)
        "PLCAxis": (1.0, 0.0, 0.0),  # cone axis +x: RA = atan2(y, x), DEC = asin(z / r)
    }


def _format_value(value: ParameterValue) -> str:
    if isinstance(value, tuple):
        return " ".join(_format_value(v) for v in value)
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back as the same double
    return str(value)


def format_parameter_file(params: Mapping[str, ParameterValue]) -> str:
    """Parameter-file text: ``Key value`` lines; flags (True) as a bare key, False omitted.

    Raises ValueError naming the key if a line would reach 100 characters or a string
    value contains whitespace (PINOCCHIO reads only the first token).
    """
    lines = [f"# PINOCCHIO v5 parameter file written by cosmo_sbi (RunFlag {RUN_FLAG})"]
    for key, value in params.items():
        if value is False:
            continue
        text = key if value is True else f"{key:<30} {_format_value(value)}"
        if isinstance(value, str) and (not value or any(c.isspace() for c in value)):
            raise ValueError(f"PINOCCHIO parameter {key}: {value!r} must be one token "
                             "without spaces")
        if len(text) > MAX_LINE_CHARS:
            raise ValueError(f"PINOCCHIO parameter {key}: line of {len(text)} characters; "
                             f"PINOCCHIO needs lines shorter than {MAX_LINE_CHARS + 1}")
        lines.append(text)
    return "\n".join(lines) + "\n"


def parameter_file_text(config: Config, row: Mapping[str, Any]) -> str:
    """The exact ``parameter_file`` that :func:`setup_run` writes for ``row``."""
    return format_parameter_file(parameters(config, row))


def _output_list_text(config: Config) -> str:
    last_z, _ = plc_redshift_range(config)
    return ("# output redshifts, descending; the last one (= LastzForPLC) ends the run\n"
            f"{_format_value(last_z)}\n")


def _power_table_text(row: Mapping[str, Any]) -> str:
    """Two columns k [h/Mpc], linear P(k, z=0) [(Mpc/h)^3]; no header (PINOCCHIO refuses one)."""
    from cosmo_sbi.cosmology import Cosmology

    power = Cosmology.from_params(row).linear_power(POWER_TABLE_K_H_MPC, z=0.0)
    return "".join(f"{k:.10e} {p:.10e}\n" for k, p in zip(POWER_TABLE_K_H_MPC, power, strict=True))


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def _warn_if_unresolved(config: Config, row: Mapping[str, Any]) -> None:
    """Log a warning when MinHaloMass (particles) exceeds the histogram's physical mass cut."""
    from cosmo_sbi.cosmology import RHO_CRIT_MSUN_H_MPC_H3

    section = config["simulator"]["pinocchio"]
    particle_mass = (RHO_CRIT_MSUN_H_MPC_H3 * float(row["Omega_m"])
                     * (section["box_size_mpc_h"] / section["grid_size"]) ** 3)
    smallest = section["min_halo_mass_particles"] * particle_mass
    if smallest > config["histogram"]["min_mass_msun_h"]:
        log.warning("PINOCCHIO's smallest halo (%d particles = %.3g Msun/h) is above "
                       "histogram.min_mass_msun_h = %.3g: the histogram will miss halos; "
                       "raise simulator.pinocchio.grid_size or lower box_size_mpc_h",
                       section["min_halo_mass_particles"], smallest,
                       config["histogram"]["min_mass_msun_h"])


def setup_run(config: Config, row: Mapping[str, Any], run_dir: str | os.PathLike[str]) -> None:
    """Write the run directory of one simulation: P(k) table (if any), outputs, parameter_file.

    Files are written atomically; ``parameter_file`` comes last, so its presence means the
    directory is complete. Raises ConfigError if the cone does not cover the RA/DEC window.
    """
    _check_geometry(config)
    _warn_if_unresolved(config, row)
    run_dir = Path(run_dir)
    text = parameter_file_text(config, row)
    if config["simulator"]["pinocchio"]["power_spectrum"] == "table":
        _write_text(run_dir / POWER_TABLE, _power_table_text(row))
    _write_text(run_dir / OUTPUT_LIST, _output_list_text(config))
    _write_text(run_dir / PARAMETER_FILE, text)
    log.info("PINOCCHIO run directory %s ready (seed %d)", run_dir, random_seed(row["seed"]))


def build_command(template: str, section: Mapping[str, Any]) -> list[str]:
    """argv of a run from a template with {tasks} {threads} {executable} {parameter_file}.

    The template is split like a shell would (shlex), then each word is filled in, so paths
    with spaces stay one argument. The executable is resolved to an absolute path because
    the command runs inside the run directory.
    """
    values = {"tasks": section["tasks"], "threads": section["threads"],
              "executable": os.path.abspath(check_executable(section["executable"])),
              "parameter_file": PARAMETER_FILE}
    try:
        argv = [word.format(**values) for word in shlex.split(template)]
    except (KeyError, IndexError, ValueError) as error:
        raise ConfigError(f"simulator.pinocchio.command: cannot fill {template!r} ({error!r}); "
                          f"expected only the placeholders "
                          f"{', '.join('{' + p + '}' for p in COMMAND_PLACEHOLDERS)}") from error
    missing = [p for p in ("executable", "parameter_file") if "{" + p + "}" not in template]
    if missing:
        raise ConfigError(f"simulator.pinocchio.command: {template!r} lacks "
                          f"{', '.join('{' + p + '}' for p in missing)}; expected e.g. "
                          "'mpirun -np {tasks} {executable} {parameter_file}'")
    return argv


def check_run(run_dir: Path, returncode: int, num_files: int) -> None:
    """Raise PinocchioRunError on a non-zero exit, an ERROR line in the log, or no light cone."""
    log = run_dir / LOG_FILE
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    if returncode != 0:
        tail = " | ".join(lines[-3:])
        raise PinocchioRunError(f"PINOCCHIO exited with status {returncode} in {run_dir}; "
                                f"see {log} (last lines: {tail})")
    errors = [(number, line) for number, line in enumerate(lines, 1) if "ERROR" in line]
    if errors:
        number, line = errors[0]
        raise PinocchioRunError(f"PINOCCHIO reported {len(errors)} ERROR line(s) in {log}; "
                                f"line {number}: {line.strip()!r}")
    missing = [name for name in plc_file_names(num_files) if not (run_dir / name).is_file()]
    if missing:
        raise PinocchioRunError(f"PINOCCHIO finished but wrote no light-cone file {missing} in "
                                f"{run_dir}; is it built with -DPLC? (see {log})")


def run_pinocchio(config: Config, run_dir: str | os.PathLike[str],
                  command: str | None = None) -> None:
    """Run PINOCCHIO in ``run_dir`` (made by :func:`setup_run`) and check the result.

    ``command``: template overriding ``simulator.pinocchio.command``. Output goes to
    ``run_dir/log``; OMP_NUM_THREADS is set to ``simulator.pinocchio.threads``. Stale
    light-cone files are removed first, so a run that writes none cannot pass.
    """
    section = config["simulator"]["pinocchio"]
    run_dir = Path(run_dir)
    if not (run_dir / PARAMETER_FILE).is_file():
        raise FileNotFoundError(f"{run_dir / PARAMETER_FILE} not found; run "
                                "`cosmo-sbi pinocchio-setup` for this run directory first")
    argv = build_command(command or section["command"], section)
    for stale in run_dir.glob(f"pinocchio.{RUN_FLAG}.plc.out*"):
        stale.unlink()
    environment = {**os.environ, "OMP_NUM_THREADS": str(section["threads"])}
    log.info("running %s in %s", shlex.join(argv), run_dir)
    with open(run_dir / LOG_FILE, "w") as log_file:
        try:
            completed = subprocess.run(argv, cwd=run_dir, stdout=log_file, stderr=subprocess.STDOUT,
                                       env=environment, check=False)
        except OSError as error:  # the launcher (mpirun, srun, ...) cannot be started
            raise PinocchioRunError(f"cannot start {argv[0]!r} of the command "
                                    f"{shlex.join(argv)!r}: {error.strerror}; set "
                                    "simulator.pinocchio.command") from error
    check_run(run_dir, completed.returncode, section["num_files"])


PLC_TOTAL_LINE = re.compile(r"total number of halos in the PLC:\s*(\d+)")


def reported_plc_halos(run_dir: Path) -> tuple[int, Path] | None:
    """How many light-cone halos PINOCCHIO says it wrote, and where it says so: the last
    "total number of halos in the PLC" line of its log, else the sum of the counts column
    of its ``*.nz.out``; None when the run left neither."""
    log = run_dir / LOG_FILE
    if log.exists():
        totals = PLC_TOTAL_LINE.findall(log.read_text(errors="replace"))
        if totals:
            return int(totals[-1]), log
    for nz in sorted(run_dir.glob("pinocchio.*.nz.out")):
        counts = np.loadtxt(nz, comments="#", ndmin=2)
        return int(counts[:, 2].sum()), nz
    return None


def check_plc_complete(run_dir: Path, count: int, files: list[Path]) -> None:
    """Refuse a light cone with fewer (or more) halos than the run reports: a .plc.out cut
    at a block boundary reads without a format error, but not with the right count."""
    reported = reported_plc_halos(run_dir)
    if reported is not None and reported[0] != count:
        raise PinocchioFormatError(
            f"{', '.join(map(str, files))}: {count} halos read, but {reported[1]} reports "
            f"{reported[0]}; the light cone is incomplete (cut or damaged): rerun "
            "pinocchio-run for this simulation")


def repeated_fraction(config: Config, names: np.ndarray, ra: np.ndarray, dec: np.ndarray,
                      z_obs: np.ndarray) -> tuple[float, int]:
    """Fraction of the histogram window's halos that repeat another halo of the window
    (PINOCCHIO's periodic replicas share the halo's name), and the window's halo count.

    ``1 - unique names / halos`` over halos with RA, DEC [deg] and z_obs in the half-open
    ``histogram`` ranges; 0 for an empty window.
    """
    hist = config["histogram"]
    inside = np.ones(len(names), dtype=bool)
    for values, (low, high) in ((ra, hist["ra_deg"]), (dec, hist["dec_deg"]),
                                (z_obs, hist["z_obs"])):
        inside &= (values >= low) & (values < high)
    count = int(inside.sum())
    return (1.0 - np.unique(names[inside]).size / count if count else 0.0), count


def convert_run(config: Config, row: Mapping[str, Any], run_dir: str | os.PathLike[str],
                output: str | os.PathLike[str]) -> None:
    """Convert the light cone of a finished run to the common light-cone file ``output``.

    RA/DEC come from the positions (cone axis +x), not from PINOCCHIO's theta/phi;
    z_cos = truez, z_obs = obsz (with the line-of-sight velocity). The run's parameter file
    must be the one :func:`setup_run` writes for ``row`` with this config, so the provenance
    cannot name another cosmology or seed than the halos have. The provenance records
    ``pinocchio_repeated_fraction`` (:func:`repeated_fraction`); a non-zero one is logged
    as a warning.
    """
    section = config["simulator"]["pinocchio"]
    run_dir = Path(run_dir)
    parameter_path = run_dir / PARAMETER_FILE
    written = parameter_path.read_text()
    expected = parameter_file_text(config, row)
    if written != expected:
        differing = next(f"{a!r} (expected {b!r})" for a, b in
                         zip_longest(written.splitlines(), expected.splitlines(),
                                     fillvalue="<end of file>") if a != b)
        raise ValueError(f"{parameter_path}: not the parameter file of simulation {row['id']} "
                         f"with this config (first difference: {differing}); rerun "
                         "pinocchio-setup and pinocchio-run")
    plc_files = [run_dir / name for name in plc_file_names(section["num_files"])]
    plc = read_plc(plc_files, fields=PLC_FIELDS)
    check_plc_complete(run_dir, len(plc), plc_files)
    ra, dec = radec_from_cartesian(plc["pos"])
    halos = {"ra": ra, "dec": dec, "z_cos": plc["truez"], "z_obs": plc["obsz"],
             "mass": plc["mass"], "pos": plc["pos"], "vel": plc["vel"]}
    attrs = lightcone_provenance(row, "pinocchio", section)
    attrs["pinocchio_parameter_file"] = written
    fraction, in_window = repeated_fraction(config, plc["name"], ra, dec, plc["obsz"])
    attrs["pinocchio_repeated_fraction"] = fraction
    if fraction > 0:
        log.warning("%.1f%% of the %d halos in the histogram window repeat another halo of "
                       "the window (the %g Mpc/h box is replicated to fill the cone; "
                       "simulator.pinocchio.allow_replication is %s)", 100 * fraction,
                       in_window, section["box_size_mpc_h"],
                       str(section["allow_replication"]).lower())
    write_lightcone(output, halos, attrs)
    log.info("wrote %d light-cone halos to %s", len(plc), output)
