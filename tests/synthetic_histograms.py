"""Small synthetic histogram files made by the real writers, for dataset/evaluate/report tests.

Each simulation of a design gets a toy light cone whose halo number grows with Omega_m and
sigma_8 (so a network has something to learn), written with cosmo_sbi.lightcone and binned
with cosmo_sbi.histogram exactly as the workflow does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cosmo_sbi.config import Config, deep_merge
from cosmo_sbi.design import design_table
from cosmo_sbi.histogram import histogram_lightcone_file
from cosmo_sbi.lightcone import lightcone_provenance, write_lightcone
from tests.conftest import REPO, make_config


def small_config(overlay: dict[str, Any] | None = None) -> Config:
    """config.yaml + config/laptop.yaml + an 8^3 binning and 40 + 6 simulations + ``overlay``."""
    with open(REPO / "config" / "laptop.yaml") as stream:
        laptop = yaml.safe_load(stream)
    layer = {"histogram": {"bins": [8, 8, 8]},
             "design": {"latin_hypercube": {"n_simulations": 40},
                        "fiducial": {"n_simulations": 6}, "derivatives": {"n_seeds": 0}}}
    return make_config(deep_merge(deep_merge(laptop, layer), overlay or {}))


def toy_halos(row: dict[str, Any], config: Config) -> dict[str, np.ndarray]:
    """Halos uniform in the histogram window; their number rises with Omega_m and sigma_8."""
    rng = np.random.default_rng(int(row["seed"]) % 2**32)
    window = config["histogram"]
    mean_count = 4000.0 * (row["Omega_m"] / 0.3) ** 2 * (row["sigma_8"] / 0.8) ** 4
    count = int(rng.poisson(mean_count))
    z_obs = rng.uniform(*window["z_obs"], count)
    cut = window["min_mass_msun_h"]
    return {"ra": rng.uniform(*window["ra_deg"], count),
            "dec": rng.uniform(*window["dec_deg"], count),
            "z_cos": z_obs, "z_obs": z_obs,
            "mass": cut * (1.0 + rng.exponential(1.0, count)) * np.where(
                rng.uniform(size=count) < 0.1, 0.5, 1.0)}  # 10% below the mass cut


def write_histograms(config: Config, directory: Path) -> dict[str, list[Path]]:
    """Histogram files of both design sets under ``directory``/{set}/{id}.h5."""
    paths: dict[str, list[Path]] = {}
    for set_name in ("latin_hypercube", "fiducial"):
        table = design_table(config, set_name)
        paths[set_name] = []
        for table_row in table:
            row = {name: table_row[name].item() for name in table.colnames if name != "id"}
            row.update(id=str(table_row["id"]), set=set_name)
            lightcone = directory / "lightcones" / set_name / f"{row['id']}.h5"
            write_lightcone(lightcone, toy_halos(row, config),
                            lightcone_provenance(row, "toy", {}))
            histogram = directory / set_name / f"{row['id']}.h5"
            histogram_lightcone_file(config, lightcone, histogram)
            paths[set_name].append(histogram)
    return paths
