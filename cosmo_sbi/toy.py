"""Toy light cones and histograms made by the real writers, for tests and benchmarks.

Each simulation of a design gets a toy light cone whose halo number grows with Omega_m and
sigma_8 (so a network has something to learn), written with cosmo_sbi.lightcone and binned
with cosmo_sbi.histogram exactly as the workflow does. :func:`toy_config` is the CI preset
``config/tiny.yaml`` with a coarser binning and more simulations (it reads the presets from
the source tree, where tests and benchmarks run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cosmo_sbi.config import Config, check_config, deep_merge, load_config, validate_schema
from cosmo_sbi.design import design_table
from cosmo_sbi.histogram import histogram_lightcone_file
from cosmo_sbi.lightcone import lightcone_provenance, write_lightcone

REPOSITORY = Path(__file__).resolve().parents[1]
TINY_PRESET = REPOSITORY / "config" / "tiny.yaml"
TOY_LAYER: dict[str, Any] = {
    "histogram": {"bins": [8, 8, 8]},
    "design": {"latin_hypercube": {"n_simulations": 40}, "fiducial": {"n_simulations": 6},
               "derivatives": {"n_seeds": 0}},
}
"""What the toy config changes in config/tiny.yaml: 8^3 bins (the toy halos are uniform,
finer bins teach nothing), 40 + 6 simulations (every split gets several cosmologies) and
no Fisher derivative set (6 fiducial seeds are too few for its covariance)."""


def toy_config(overlay: dict[str, Any] | None = None) -> Config:
    """config.yaml + config/tiny.yaml + TOY_LAYER + ``overlay``, validated and checked."""
    base = load_config([REPOSITORY / "config.yaml", TINY_PRESET])
    return check_config(validate_schema(deep_merge(deep_merge(base, TOY_LAYER),
                                                   overlay or {})))


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
    """Toy light cones under ``directory``/lightcones/{set}/{id}.h5 and their histograms
    under ``directory``/{set}/{id}.h5, for both design sets; returns set -> histogram paths."""
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
