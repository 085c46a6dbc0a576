"""The posterior stages in the real DAG (config/tiny.yaml): every new stage runs, and
a posterior setting reruns the posteriors and the report, no training and no simulation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cosmo_sbi.config import deep_merge
from tests.conftest import REPO
from tests.workflow_utils import modification_times, run_snakemake, write_overlay

UPSTREAM = ("sims", "histograms", "models", "evaluation", "summaries")


@pytest.mark.slow
def test_posterior_setting_reruns_no_training_and_no_simulation(tmp_path: Path) -> None:
    tiny = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    run_snakemake(tmp_path, write_overlay(tmp_path, tiny))
    results = tmp_path / "results"
    fiducial = tiny["design"]["fiducial"]["n_simulations"]
    for method in ("cnn", "vit", "two_point", "combined"):  # config.yaml's posterior.methods
        metrics = json.loads((results / f"posteriors/{method}/metrics.json").read_text())
        assert metrics["fiducial"]["n"] == fiducial and metrics["test"]["n"] >= 1
        assert ("gaussian_heads" in metrics) == (method in ("cnn", "vit"))
    summary = (results / "report/summary.md").read_text()
    assert "## Posteriors" in summary and "| S8 | cnn |" in summary
    assert (results / "report/figures/corner_fiducial.png").exists()

    before = {folder: modification_times(results / folder) for folder in UPSTREAM}
    posterior_before = modification_times(results / "posteriors")
    edited = deep_merge(tiny, {"posterior": {"n_samples": 50}})
    run_snakemake(tmp_path, write_overlay(tmp_path, edited))
    for folder in UPSTREAM:
        assert modification_times(results / folder) == before[folder], folder
    after = modification_times(results / "posteriors")
    assert after["cnn/samples.h5"] != posterior_before["cnn/samples.h5"]
    assert after["vit/metrics.json"] != posterior_before["vit/metrics.json"]
