"""The posterior stages in the real DAG (config/tiny.yaml): every new stage runs, and
a posterior setting reruns the posteriors and the report, no training and no simulation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from cosmo_sbi.config import deep_merge
from cosmo_sbi.posterior import POSTERIOR_PARAMETERS
from cosmo_sbi.verdict import VERDICT_FILE
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
    assert "## Networks vs the two-point baseline" in summary and "(b) No shrinkage" in summary
    check_verdict_table(results / f"report/{VERDICT_FILE}")

    before = {folder: modification_times(results / folder) for folder in UPSTREAM}
    posterior_before = modification_times(results / "posteriors")
    edited = deep_merge(tiny, {"posterior": {"n_samples": 50}})
    run_snakemake(tmp_path, write_overlay(tmp_path, edited))
    for folder in UPSTREAM:
        assert modification_times(results / folder) == before[folder], folder
    after = modification_times(results / "posteriors")
    assert after["cnn/samples.h5"] != posterior_before["cnn/samples.h5"]
    assert after["vit/metrics.json"] != posterior_before["vit/metrics.json"]


def check_verdict_table(path: Path) -> None:
    """verdict.csv of the tiny DAG: a row per parameter, method and estimate (Gaussian heads
    of cnn and vit); widths and the shrinkage check from the 9 fiducial seeds; R^2 and the
    verdict wherever the test split has 2 or more cosmologies."""
    with path.open() as stream:
        rows = list(csv.DictReader(stream))
    estimates = [("two_point", "npe"), ("cnn", "npe"), ("cnn", "gaussian_head"),
                 ("vit", "npe"), ("vit", "gaussian_head"), ("combined", "npe")]
    assert [(row["parameter"], row["method"], row["estimate"]) for row in rows] == [
        (name, *estimate) for name in POSTERIOR_PARAMETERS for estimate in estimates]
    for row in rows:
        assert float(row["width"]) > 0 and row["check_scatter"] in {"pass", "fail"}, row
        compared = row["method"] != "two_point"
        defined = int(row["n_test"]) >= 2 and compared
        assert (row["verdict"] in {"beats", "matches", "falls short"}) == defined, row
        assert (row["width_ratio"] != "") == compared, row
        tighter = row["method"] == "combined" and row["parameter"] in ("Omega_m", "sigma_8")
        assert (row["check_tighter"] in {"pass", "fail"}) == tighter, row
