"""Train on one simulator, test on another (cosmo_sbi.cross_simulator): known answers for
the standardised bias, and a trained toy model whose 'other simulator' makes 30% fewer
halos (a stand-in for the embedded/PINOCCHIO abundance gap)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cosmo_sbi import cli
from cosmo_sbi.config import deep_merge
from cosmo_sbi.cross_simulator import standardised_bias
from cosmo_sbi.dataset import build_dataset
from cosmo_sbi.design import design_table
from cosmo_sbi.histogram import histogram_lightcone_file
from cosmo_sbi.lightcone import lightcone_provenance, write_lightcone
from cosmo_sbi.toy import toy_config, toy_halos, write_histograms
from cosmo_sbi.train import train_model
from tests.conftest import REPO
from tests.workflow_utils import run_snakemake, write_overlay


def test_standardised_bias_known_answers() -> None:
    rng = np.random.default_rng(1)
    true = rng.uniform(size=(4000, 6))
    sigma = rng.uniform(0.1, 0.3, size=(4000, 6))
    shifted = true + 0.5 * sigma
    bias, error = standardised_bias(true, shifted, sigma)
    np.testing.assert_allclose(bias, 0.5, rtol=1e-12)
    np.testing.assert_allclose(error, 0.0, atol=1e-12)
    noisy = true + sigma * rng.normal(0.3, 1.0, size=true.shape)
    bias, error = standardised_bias(true, noisy, sigma)
    np.testing.assert_allclose(error, 1 / np.sqrt(4000), rtol=0.05)
    assert np.all(np.abs(bias - 0.3) < 4 * error)
    assert not np.any(np.abs(bias) < 4 * error)  # a real shift is detected
    bias, error = standardised_bias(true[:1], shifted[:1], sigma[:1])
    assert np.allclose(bias, 0.5) and np.all(np.isnan(error))


def write_deficit_histograms(config: dict, directory: Path, kept: float) -> list[Path]:
    """Fiducial histograms of a toy 'other simulator' keeping a fraction of the halos."""
    table = design_table(config, "fiducial")
    paths = []
    for table_row in table:
        row = {name: table_row[name].item() for name in table.colnames if name != "id"}
        row.update(id=str(table_row["id"]), set="fiducial")
        halos = toy_halos(row, config)
        keep = np.random.default_rng(int(row["seed"]) % 2**32 + 1).uniform(
            size=len(halos["ra"])) < kept
        lightcone = directory / "lightcones" / f"{row['id']}.h5"
        write_lightcone(lightcone, {name: values[keep] for name, values in halos.items()},
                        lightcone_provenance(row, "toy_deficit", {}))
        paths.append(directory / f"{row['id']}.h5")
        histogram_lightcone_file(config, lightcone, paths[-1])
    return paths


def test_model_trained_on_one_toy_is_biased_on_the_other(tmp_path: Path) -> None:
    """Counts rise as Omega_m^2 sigma_8^4 in the toy: with 30% fewer halos the model
    predicts a lower Omega_m than on its own fiducial seeds, by several predicted sigmas."""
    config = toy_config({"design": {"fiducial": {"n_simulations": 12}},
                           "training": {"epochs": 12, "batch_size": 8, "warmup_epochs": 1,
                                        "device": "cpu", "augment": False}})
    histograms = write_histograms(config, tmp_path / "own")
    dataset = tmp_path / "dataset.h5"
    build_dataset(config, histograms["latin_hypercube"], histograms["fiducial"], dataset)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_model(config, "cnn", dataset, tmp_path / "cnn")
    finally:
        torch.set_num_threads(threads)
    other = write_deficit_histograms(config, tmp_path / "other", kept=0.7)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(json.dumps(config))
    output = tmp_path / "cross.json"
    assert cli.main(["cross-evaluate", "--config", str(config_file), "--model-dir",
                     str(tmp_path / "cnn"), "--dataset", str(dataset), "--histograms",
                     *map(str, other), "--set", "fiducial", "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert (report["trained_on"], report["tested_on"]) == ("toy", "toy_deficit")
    assert report["n_cross"] == report["n_own"] == 12
    omega_m = report["parameters"]["Omega_m"]
    shift = omega_m["cross_bias_sigma"] - omega_m["own_bias_sigma"]
    error = np.hypot(omega_m["cross_bias_sigma_stderr"], omega_m["own_bias_sigma_stderr"])
    # measured: -1.08 +- 0.09 on the other toy vs +0.02 +- 0.08 on its own seeds
    assert shift < -0.5 and shift < -4 * error, omega_m


@pytest.mark.slow
def test_tiny_dag_evaluates_every_model_on_a_second_embedded_configuration(
        tmp_path: Path) -> None:
    """config/tiny.yaml trains on Tinker08 cones and is tested on the histograms of
    a second workflow drawing from Watson13 (FoF), a stand-in for the other simulator;
    the report shows the biases."""
    tiny = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    other, main = tmp_path / "watson", tmp_path / "main"
    other.mkdir()
    main.mkdir()
    run_snakemake(other, write_overlay(other, deep_merge(tiny, {
        "simulator": {"embedded": {"mass_function": "watson13_fof"}}})),
        "--until", "histogram")
    run_snakemake(main, write_overlay(main, deep_merge(tiny, {
        "cross_simulator": {"watson": {"results": str(other / "results")}}})),
        "all", "results/calibration/bias_watson.yaml")
    for model in ("cnn", "vit"):
        report = json.loads((main / f"results/evaluation/{model}/cross/watson.json")
                            .read_text())
        assert report["n_cross"] == report["n_own"] == tiny["design"]["fiducial"]["n_simulations"]
        assert report["trained_on"] == report["tested_on"] == "embedded"
        assert all(values["cross_bias_sigma"] is not None
                   for values in report["parameters"].values())
    summary = (main / "results/report/summary.md").read_text()
    assert "## Trained on one simulator, tested on another" in summary
    seeds = tiny["design"]["fiducial"]["n_simulations"]
    assert f"| cnn | watson: embedded, {seeds} fiducial |" in summary
    # The on-demand bias calibration against the entry: both draw Tinker10 biases, so
    # the measured ratio is 1 within its error (the masses weight them a little apart).
    overlay = yaml.safe_load((main / "results/calibration/bias_watson.yaml").read_text())
    assert overlay["simulator"]["embedded"]["bias_ratio"] == pytest.approx(1.0, abs=0.15)
