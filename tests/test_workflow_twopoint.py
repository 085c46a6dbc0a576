"""The two-point stages in a real Snakemake run: summary table rows, the Fisher output,
and reruns (a summaries setting reruns no simulation or training; adding the derivative
set reruns no Latin-hypercube or fiducial simulation); bad settings fail before any job."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from cosmo_sbi.summary_table import read_summary_table
from tests.workflow_utils import TINY_OVERLAY, modification_times, run_snakemake, write_overlay

# 4 + 6 light cones on a 32^3 grid, 8^3 histograms; 3 coarse Fisher features need > 5 seeds
OVERLAY = {**TINY_OVERLAY,
           "design": {"latin_hypercube": {"n_simulations": 4}, "fiducial": {"n_simulations": 6},
                      "derivatives": {"n_seeds": 0}},
           "fisher": {"n_z_bins": 1, "n_k_bins": 1, "multipoles": [0, 2]},
           "training": {"models": ["cnn"], "epochs": 1, "batch_size": 2, "device": "cpu"},
           "models": {"cnn": {"preset": "small"}}}
TWO_POINT = "results/summaries/two_point.h5"
MODEL = "results/models/cnn/model.pt"
FISHER = "results/fisher/fisher.json"


def _with(**changes: dict) -> dict:
    overlay = {**OVERLAY, **changes}
    overlay["design"] = {**OVERLAY["design"], **changes.get("design", {})}
    return overlay


@pytest.mark.slow
def test_two_point_stages_and_their_reruns(tmp_path: Path) -> None:
    run_snakemake(tmp_path, write_overlay(tmp_path, OVERLAY), TWO_POINT, MODEL)
    results = tmp_path / "results"
    table = read_summary_table(results / "summaries/two_point.h5")
    with h5py.File(results / "dataset.h5") as handle:
        assert list(table.ids) == list(handle["ids"].asstr()[...])
        assert list(table.splits) == list(handle["split"].asstr()[...])
    assert table.feature_names[:2] == ["N_total", "nz_00"] and "P2_k00" in table.feature_names
    assert np.all(table.x[:, 0] > 0)
    upstream = {name: modification_times(results / name)
                for name in ("sims", "histograms", "models")}
    dataset = (results / "dataset.h5").stat().st_mtime_ns
    table_before = (results / "summaries/two_point.h5").stat().st_mtime_ns

    # a summaries setting: the table is remade, nothing upstream and no training
    edited = write_overlay(tmp_path, _with(summaries={"multipoles": [0]}), "edit.yaml")
    run_snakemake(tmp_path, edited, TWO_POINT, MODEL)
    assert (results / "summaries/two_point.h5").stat().st_mtime_ns != table_before
    assert "P2_k00" not in read_summary_table(results / "summaries/two_point.h5").feature_names
    assert {name: modification_times(results / name) for name in upstream} == upstream
    assert (results / "dataset.h5").stat().st_mtime_ns == dataset

    # adding the derivative set: its 24 light cones and the Fisher bound, nothing else
    derivatives = write_overlay(tmp_path, _with(design={"derivatives": {"n_seeds": 1}}),
                                "derivatives.yaml")
    run_snakemake(tmp_path, derivatives, FISHER)
    assert modification_times(results / "sims/latin_hypercube") == {
        k.removeprefix("latin_hypercube/"): v for k, v in upstream["sims"].items()
        if k.startswith("latin_hypercube/")}
    fiducial_before = {k: v for k, v in upstream["sims"].items() if k.startswith("fiducial/")}
    assert {f"fiducial/{k}": v for k, v in
            modification_times(results / "sims/fiducial").items()} == fiducial_before
    assert len(list((results / "sims/derivatives").rglob("lightcone.h5"))) == 24
    fisher = json.loads((results / "fisher/fisher.json").read_text())
    assert fisher["parameters"] == ["Omega_m", "sigma_8", "w0", "wa", "n_s", "h", "S8"]
    assert np.shape(fisher["fisher_matrix"]) == (6, 6)
    assert all(0 < fisher["sigma"][name] <= fisher["prior_sigma"].get(name, np.inf)
               for name in fisher["sigma"])
    assert (results / "fisher" / fisher["figures"]["omega_m_sigma_8"]).is_file()
    assert fisher["convergence"]["half_step"]["max_relative_change"] is not None


@pytest.mark.parametrize(("design", "message"), [
    ({"derivatives": {"n_seeds": 1, "step_fraction": 0.4}},
     r"design.derivatives.step_fraction.*n_s"),
    ({"derivatives": {"n_seeds": 1}, "fiducial": {"n_simulations": 5}},
     r"design.fiducial.n_simulations.*expected > 5"),
])
def test_bad_derivative_settings_fail_before_any_job(tmp_path: Path, design: dict,
                                                     message: str) -> None:
    result = run_snakemake(tmp_path, write_overlay(tmp_path, _with(design=design)),
                           check=False)
    assert result.returncode != 0
    assert re.search(message, result.stderr), result.stderr[-2000:]
    assert not (tmp_path / "results" / "design").exists()
