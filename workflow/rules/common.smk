# Shared definitions: config validation (before any job is planned), paths, per-job params.
import json
import os
from pathlib import Path

import yaml
from snakemake.utils import min_version, validate

from cosmo_sbi.config import check_config
from cosmo_sbi.design import SETS, simulation_ids

min_version("9.0")

# Schema first (fills defaults), then the arithmetic checks; both raise before any job runs.
validate(config, "../schemas/config.schema.yaml")
check_config(config)

RESULTS = "results"
LOGS = f"{RESULTS}/logs"
ENV = "../../envs/cosmo_sbi.yaml"


def _write_config_snapshot(path: str) -> str:
    """Write the validated, defaults-filled config that every job passes to the CLI.

    Written only when its content changes (atomically), so re-parsing the Snakefile in a
    cluster job never touches it. Rules still depend on config values through params:.
    """
    text = yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=True)
    if os.path.exists(path):
        with open(path) as stream:
            if stream.read() == text:
                return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as stream:
        stream.write(text)
    os.replace(temporary, path)
    return path


CONFIG = _write_config_snapshot(f"{RESULTS}/config.yaml")

SIM_IDS = {name: simulation_ids(config["design"][name]["n_simulations"]) for name in SETS}


wildcard_constraints:
    set="|".join(SETS),
    id=r"\d+",
    model="cnn|vit",


def simulation_settings() -> dict:
    """Config values every simulation depends on: backend settings and cone geometry."""
    backend = config["simulator"]["backend"]
    window = {key: config["histogram"][key] for key in ("ra_deg", "dec_deg", "z_obs")}
    return {"backend": backend, backend: config["simulator"][backend],
            "lightcone": config["lightcone"], "window": window}


def lightcone_path(set_name: str, sim_id: str) -> str:
    return f"{RESULTS}/sims/{set_name}/{sim_id}/lightcone.h5"


def histogram_path(set_name: str, sim_id: str) -> str:
    return f"{RESULTS}/histograms/{set_name}/{sim_id}.h5"


def histogram_targets() -> list[str]:
    return [histogram_path(name, sim_id) for name in SETS for sim_id in SIM_IDS[name]]


def id_blocks(set_name: str) -> list[list[str]]:
    """The set's ids in blocks of simulator.block_size: one job (one process) each."""
    ids, size = SIM_IDS[set_name], config["simulator"]["block_size"]
    return [ids[start:start + size] for start in range(0, len(ids), size)]


def block_ids(wildcards, output) -> list[str]:
    """A block job's ids, read off its outputs (.../{id}/lightcone.h5 or .../{id}.h5).

    A params function of the outputs: Snakemake does not record it, so a new block size
    regroups the files without rerunning any simulation.
    """
    paths = [Path(path) for path in output]
    return [path.parent.name if path.name == "lightcone.h5" else path.stem for path in paths]


def per_attempt(base: int):
    """A resource (mem_mb, runtime in minutes) that grows with each retry: base x attempt.

    With --retries (the SLURM profile sets 2), a job killed for memory or time is
    resubmitted asking for twice, then three times, as much.
    """
    return lambda wildcards, attempt: base * attempt


def pinocchio_plc_outputs(run_dir: str) -> list[str]:
    """The light-cone file(s) a PINOCCHIO run writes (one per NumFiles part)."""
    from cosmo_sbi.simulators.pinocchio import plc_file_names

    names = plc_file_names(config["simulator"]["pinocchio"]["num_files"])
    return [f"{run_dir}/{name}" for name in names]
