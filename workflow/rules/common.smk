# Shared definitions: config validation (before any job is planned), paths, per-job params.
import os
import sys
from pathlib import Path

from snakemake.utils import min_version

from cosmo_sbi.config import (
    check_single_configfile_flag,
    fisher_enabled,
    load_config,
    snapshot_path,
    write_snapshot,
)
from cosmo_sbi.design import SETS, design_section, set_size, simulation_ids
from cosmo_sbi.models import MODEL_NAMES
from cosmo_sbi.models.configs import check_model_configs
from cosmo_sbi.posterior_config import check_posterior_config, posterior_methods

min_version("9.0")

RESULTS = "results"
LOGS = f"{RESULTS}/logs"
ENV = "../../envs/cosmo_sbi.yaml"


def _load_workflow_config() -> tuple[dict, list[str]]:
    """The config as the CLI reads it, and the files merged (in order).

    Snakemake's own YAML reading is replaced by cosmo_sbi.config's (one loader: duplicate
    keys refused, 1e13 a number, aliases bounded): config.yaml (configfile: above), then
    every --configfile in order, then --config KEY=VALUE. A repeated --configfile flag, of
    which Snakemake 9 keeps only the last, stops the run. Then the schema (defaults filled),
    the arithmetic checks, each network's config and shape rules (no torch import: the
    train stage builds the networks on torch's meta device) and the posterior section: all
    before any job is planned.
    """
    check_single_configfile_flag(sys.argv[1:])
    overlays = [str(path) for path in workflow.overwrite_configfiles]
    files = [str(path) for path in workflow.configfiles if str(path) not in overlays]
    files += overlays
    merged = check_model_configs(load_config(files, overrides=workflow.config_settings.config))
    # The posterior check counts the NPE's cosmologies in the Latin-hypercube design
    # (scipy.stats, ~0.5 s to import); a config whose snapshot exists passed it when the
    # snapshot was written (the posterior stage checks again before its NPE).
    if not snapshot_path(merged, f"{RESULTS}/config").exists():
        check_posterior_config(merged)
    return merged, files


_validated, CONFIG_FILES = _load_workflow_config()
config.clear()
config.update(_validated)

# Content-addressed snapshot passed to every job as `--config "$COSMO_SBI_CONFIG"` (an
# environment variable of this Snakemake process, inherited by every job's shell; not a
# param: its path changes with any value, the params name what each job depends on).
# Written once, never modified, so another invocation in this folder (a dry run, a run
# with other values) cannot change what running jobs read.
CONFIG = str(write_snapshot(config, f"{RESULTS}/config", CONFIG_FILES))
os.environ.update(COSMO_SBI_CONFIG=CONFIG)
# Jobs call `cosmo-sbi` from the environment that runs Snakemake, activated or not
# (`.venv/bin/snakemake ...` as the README says); under --sdm conda the job's own
# environment comes first on its PATH.
_JOB_PATH = os.pathsep.join([os.path.dirname(sys.executable), os.getenv("PATH", "")])
os.environ.update(PATH=_JOB_PATH)

SIM_IDS = {name: simulation_ids(set_size(config, name)) for name in SETS}


wildcard_constraints:
    set="|".join(SETS),
    id=r"\d+",
    model="|".join(MODEL_NAMES),


NEUTRAL_EMBEDDED_SETTINGS = {"bias_ratio": 1.0}
"""Embedded settings added after light cones were made, at the value that makes the same
halos: left out of the rules' params there, so adding them reruns no simulation."""


def simulation_settings() -> dict:
    """Config values every simulation depends on: backend settings and cone geometry (not
    the embedded simulator's FFT threads: its files are bit-identical with any count)."""
    backend = config["simulator"]["backend"]
    settings = dict(config["simulator"][backend])
    if backend == "embedded":
        del settings["threads"]
        for key, neutral in NEUTRAL_EMBEDDED_SETTINGS.items():
            if settings[key] == neutral:
                del settings[key]
    window = {key: config["histogram"][key] for key in ("ra_deg", "dec_deg", "z_obs")}
    return {"backend": backend, backend: settings,
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
