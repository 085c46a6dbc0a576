"""The posterior section of the report on synthetic posterior folders: every method row and
the Fisher row, ratios, verdict sentences with paired bootstrap errors, Gaussian heads,
corner plot; and the calibration of Gaussian heads from a predictions table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.dataset import prior_bounds
from cosmo_sbi.metrics import paired_bootstrap, rmse
from cosmo_sbi.posterior import POSTERIOR_PARAMETERS, SAMPLES_FILE, with_s8, write_samples
from cosmo_sbi.posterior_metrics import posterior_metrics, write_posterior_metrics
from cosmo_sbi.report_posterior import (
    POSTERIOR_TABLE_FILE,
    verdict_sentences,
    write_posterior_section,
)
from tests.conftest import make_config

N_TEST, N_FIDUCIAL, N_SAMPLES = 60, 5, 200


def exact_posteriors(config: dict, sigma_fraction: float, seed: int) -> dict:
    """Gaussian posteriors of width sigma_fraction x the prior width about noisy centres
    (not truncated to the box), for N_TEST test cosmologies and N_FIDUCIAL seeds."""
    rng = np.random.default_rng(seed)
    lower, upper = prior_bounds(config)
    truth_rng = np.random.default_rng(0)  # the same simulations for every method
    test = lower + (upper - lower) * truth_rng.random((N_TEST, 6))
    fiducial = np.array([config["design"]["fiducial"]["parameters"][n] for n in PARAMETER_NAMES])
    theta = np.concatenate([test, np.repeat(fiducial[None], N_FIDUCIAL, axis=0)])
    sigma = sigma_fraction * (upper - lower)
    centre = theta + sigma * rng.standard_normal(theta.shape)
    samples = centre[:, None, :] + sigma * rng.standard_normal((len(theta), N_SAMPLES, 6))
    splits = np.array(["test"] * N_TEST + ["fiducial"] * N_FIDUCIAL)
    return {"samples": with_s8(samples), "theta": with_s8(theta),
            "ids": np.array([f"{i:04d}" for i in range(len(theta))]),
            "set": np.where(splits == "test", "latin_hypercube", "fiducial"), "split": splits,
            "summary": {"simulations": 200}, "features": ["f0"]}


@pytest.fixture
def config() -> dict:
    return make_config({"posterior": {"bootstrap": 50,
                                      "methods": ["cnn", "vit", "two_point", "combined"]}})


def write_method(config: dict, folder: Path, method: str, sigma_fraction: float,
                 seed: int) -> Path:
    directory = folder / method
    write_samples(directory / SAMPLES_FILE, exact_posteriors(config, sigma_fraction, seed),
                  method, {})
    write_posterior_metrics(config, method, directory, None)
    return directory


def test_posterior_section_has_every_row_and_column(config: dict, tmp_path: Path) -> None:
    widths = {"cnn": 0.10, "vit": 0.12, "two_point": 0.05, "combined": 0.04}
    folders = [write_method(config, tmp_path / "posteriors", method, width, seed)
               for seed, (method, width) in enumerate(widths.items())]
    fisher = tmp_path / "fisher.json"
    lower, upper = prior_bounds(config)
    sigma = {name: 0.02 * float(w) for name, w in zip(PARAMETER_NAMES, upper - lower,
                                                       strict=True)}
    fisher.write_text(json.dumps({"parameters": list(POSTERIOR_PARAMETERS),
                                  "sigma": {**sigma, "S8": 0.01}}))
    report = tmp_path / "report"
    lines = write_posterior_section(config, folders, fisher, report, report / "figures")
    text = "\n".join(lines)
    for name in POSTERIOR_PARAMETERS:
        for label in (*widths, "Fisher bound"):
            assert f"| {name} | {label} |" in text
    with (report / POSTERIOR_TABLE_FILE).open() as stream:
        rows = {(row["parameter"], row["method"]): row for row in csv.DictReader(stream)}
    # sigma at the fiducial: the posterior width; ratios to two-point and to Fisher
    omega = rows[("Omega_m", "cnn")]
    assert float(omega["sigma_fiducial"]) == pytest.approx(0.10 * 0.15, rel=0.1)
    assert float(omega["ratio_to_two_point"]) == pytest.approx(2.0, rel=0.1)
    assert float(omega["ratio_to_fisher"]) == pytest.approx(5.0, rel=0.1)
    assert rows[("Omega_m", "Fisher bound")]["ratio_to_fisher"] == "1.0"
    assert omega["tarp_verdict"] in {"pass", "fail", "inconclusive"}
    # combined (4% of the prior) beats two-point (5%) for every parameter
    sentences = [line for line in lines if line.startswith("- **")]
    assert len(sentences) == len(POSTERIOR_PARAMETERS)
    assert all("combined wins" in line and "against" in line for line in sentences)
    assert (report / "figures" / "corner_fiducial.png").exists()


def test_verdicts_say_when_a_lead_is_within_its_error(config: dict) -> None:
    same = {"a": exact_posteriors(config, 0.05, 1), "b": exact_posteriors(config, 0.05, 2)}
    for data in same.values():
        data["mean"] = data["samples"].mean(axis=1)
    sentences = verdict_sentences(same, 200, 0)
    assert sum("not a significant win" in line for line in sentences) >= 5
    far = {"a": same["a"], "b": exact_posteriors(config, 0.2, 3)}
    far["b"]["mean"] = far["b"]["samples"].mean(axis=1)
    assert all("a wins" in line and "exceeds" in line
               for line in verdict_sentences(far, 200, 0))


def test_paired_bootstrap_cancels_shared_errors() -> None:
    errors = np.random.default_rng(0).standard_normal(100)
    boot = paired_bootstrap(np.zeros(100), {"a": errors, "b": 1.01 * errors}, rmse, 100, 0)
    spread = np.std(boot["b"] - boot["a"])
    # paired: b - a = 0.01 a exactly; unpaired resamplings would give ~1.4 std(boot["a"])
    assert spread == pytest.approx(0.01 * np.std(boot["a"]))


def test_gaussian_heads_calibration_from_predictions(config: dict, tmp_path: Path) -> None:
    """A network whose predicted sigmas are half its real errors: its heads fail TARP and
    SBC, and the 68% intervals cover about 38%."""
    rng = np.random.default_rng(5)
    lower, upper = prior_bounds(config)
    n = 300
    # truths from the prior; errors of 1% of the box, so that the heads' Gaussians, which
    # unlike an NPE are not truncated to the prior, are close to the Bayesian posterior
    # (at 3% the spill over the box edges already shifts the ATC by ~+0.015)
    true = lower + (upper - lower) * rng.random((n, 6))
    error = 0.01 * (upper - lower)
    table = Table({"id": [f"{i:04d}" for i in range(n)], "set": ["latin_hypercube"] * n,
                   "split": ["test"] * n})
    for index, name in enumerate(PARAMETER_NAMES):
        table[f"{name}_true"] = true[:, index]
        table[f"{name}_mean"] = true[:, index] + error[index] * rng.standard_normal(n)
        table[f"{name}_sigma"] = np.full(n, 0.5 * error[index])
    table.write(tmp_path / "predictions.ecsv", format="ascii.ecsv")
    data = {key: value for key, value in exact_posteriors(config, 0.05, 0).items()}
    data["attrs"] = {}
    metrics = posterior_metrics(config, "cnn", data, tmp_path / "predictions.ecsv")
    heads = metrics["gaussian_heads"]["test"]
    assert heads["tarp"]["verdict"] == "fail" and heads["tarp"]["atc"] < 0, heads["tarp"]["atc"]
    assert heads["parameters"]["Omega_m"]["coverage_68"] < 0.5
    assert all(heads["parameters"][name]["sbc_flagged"] for name in PARAMETER_NAMES)
