"""The report's verdict (networks vs the two-point baseline) on synthetic posterior and
evaluation folders written by the real writers: half the two-point errors -> `beats`,
the same errors -> `matches`, an insensitive network -> `falls short`, `shrinkage` and a
failed R^2 target; the paired bootstrap error of an R^2 difference against its analytic
standard error."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.dataset import DatasetFile, prior_bounds, unscale_parameters
from cosmo_sbi.evaluate import predictions_table
from cosmo_sbi.outputs import write_predictions
from cosmo_sbi.posterior import POSTERIOR_PARAMETERS, SAMPLES_FILE, with_s8, write_samples
from cosmo_sbi.posterior_metrics import write_posterior_metrics
from cosmo_sbi.verdict import (
    R2_AT_LEAST,
    R2_CLOSE,
    VERDICT_FILE,
    r2_difference,
    write_verdict_section,
)
from tests.conftest import make_config

N_TEST, N_FIDUCIAL, N_SAMPLES = 200, 20, 200
TWO_POINT_ERROR = 0.1
"""The two-point posterior's error and width, as a fraction of the prior box."""


@pytest.fixture(scope="module")
def config() -> dict:
    return make_config({"posterior": {"bootstrap": 200, "n_samples": N_SAMPLES,
                                      "methods": ["cnn", "vit", "two_point", "combined"]}})


def unit_truths(config: dict) -> tuple[np.ndarray, np.ndarray]:
    """The same simulations for every method: N_TEST cosmologies uniform in the unit box,
    then N_FIDUCIAL seeds at the fiducial cosmology; and the split of each row."""
    lower, upper = prior_bounds(config)
    fiducial = np.array([config["design"]["fiducial"]["parameters"][n] for n in PARAMETER_NAMES])
    test = np.random.default_rng(0).random((N_TEST, 6))
    unit = np.concatenate([test, np.repeat(((fiducial - lower) / (upper - lower))[None],
                                           N_FIDUCIAL, axis=0)])
    return unit, np.array(["test"] * N_TEST + [FIDUCIAL] * N_FIDUCIAL)


FIDUCIAL = "fiducial"


def write_posterior(config: dict, folder: Path, method: str, error: float | None,
                    seed: int, predictions: Path | None = None) -> Path:
    """samples.h5 and metrics.json of Gaussian posteriors of width ``error`` (fraction of
    the box) about centres scattered by as much around each truth; ``error`` None: the
    posterior is the prior (an insensitive summary)."""
    rng = np.random.default_rng(seed)
    lower, upper = prior_bounds(config)
    unit, splits = unit_truths(config)
    if error is None:
        draws = rng.random((len(unit), N_SAMPLES, 6))
    else:
        centre = unit + error * rng.standard_normal(unit.shape)
        draws = centre[:, None, :] + error * rng.standard_normal((len(unit), N_SAMPLES, 6))
    result = {"samples": with_s8(unscale_parameters(draws, lower, upper)),
              "theta": with_s8(unscale_parameters(unit, lower, upper)),
              "ids": np.array([f"{i:04d}" for i in range(len(unit))]),
              "set": np.where(splits == "test", "latin_hypercube", FIDUCIAL), "split": splits,
              "summary": {"simulations": 200}, "features": ["f0"]}
    directory = folder / method
    write_samples(directory / SAMPLES_FILE, result, method, {})
    write_posterior_metrics(config, method, directory, predictions)
    return directory


def write_network_predictions(config: dict, path: Path, error: float | None, seed: int,
                              first_id: int = 0) -> Path:
    """predictions.ecsv of a network whose Gaussian head has errors and sigmas ``error``
    (fraction of the box); None: the prior centre + 1e-3 noise, sigma = the prior's std.
    Ids from ``first_id`` (0: those of the posteriors)."""
    rng = np.random.default_rng(seed)
    lower, upper = prior_bounds(config)
    unit, splits = unit_truths(config)
    if error is None:
        mean, sigma = 0.5 + 1e-3 * rng.standard_normal(unit.shape), np.full(unit.shape, 0.29)
    else:
        mean, sigma = unit + error * rng.standard_normal(unit.shape), np.full(unit.shape, error)
    ids = np.array([f"{i:04d}" for i in range(first_id, first_id + len(unit))])
    data = DatasetFile(path=path, ids=ids,
                       sets=np.where(splits == "test", "latin_hypercube", FIDUCIAL),
                       splits=splits, theta=unscale_parameters(unit, lower, upper),
                       prior_lower=lower, prior_upper=upper, input_shape=(1, 8, 8, 8), attrs={})
    write_predictions(predictions_table(data, mean, sigma), path)
    return path


def read_rows(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with path.open() as stream:
        return {(row["parameter"], row["method"], row["estimate"]): row
                for row in csv.DictReader(stream)}


@pytest.fixture(scope="module")
def two_point(config: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_posterior(config, tmp_path_factory.mktemp("posteriors"), "two_point",
                           TWO_POINT_ERROR, 1)


def test_half_errors_beat_equal_errors_match(config: dict, two_point: Path,
                                             tmp_path: Path) -> None:
    """cnn (posterior and head) with half the two-point errors beats it, vit with the same
    errors (other noise) matches it, combined at 0.4 of its width is tighter."""
    cnn_predictions = write_network_predictions(config, tmp_path / "cnn.ecsv",
                                                TWO_POINT_ERROR / 2, 2)
    folders = [two_point,
               write_posterior(config, tmp_path, "cnn", TWO_POINT_ERROR / 2, 3, cnn_predictions),
               write_posterior(config, tmp_path, "vit", TWO_POINT_ERROR, 4),
               write_posterior(config, tmp_path, "combined", 0.4 * TWO_POINT_ERROR, 5)]
    lines = write_verdict_section(config, folders, {"cnn": cnn_predictions}, tmp_path)
    rows = read_rows(tmp_path / VERDICT_FILE)
    assert len(rows) == len(POSTERIOR_PARAMETERS) * 5  # two_point, cnn, cnn head, vit, combined
    for name in POSTERIOR_PARAMETERS:
        for key in (("cnn", "npe"), ("cnn", "gaussian_head"), ("combined", "npe")):
            row = rows[(name, *key)]
            assert row["verdict"] == "beats", (name, key, row)
            assert float(row["r2_difference"]) > 2 * float(row["r2_difference_error"]) > 0
            assert row["check_scatter"] == "pass" and row["shrinkage"] == "False", row
        assert rows[(name, "vit", "npe")]["verdict"] == "matches", rows[(name, "vit", "npe")]
        assert rows[(name, "two_point", "npe")]["verdict"] == ""
        assert rows[(name, "two_point", "npe")]["check_scatter"] == "pass"
    for name in PARAMETER_NAMES:  # widths: the posterior's, the head's predicted sigmas
        assert float(rows[(name, "cnn", "npe")]["width_ratio"]) == pytest.approx(0.5, rel=0.1)
        assert float(rows[(name, "cnn", "gaussian_head")]["width_ratio"]) == pytest.approx(
            0.5, rel=0.1)
    for name in (*R2_AT_LEAST, *R2_CLOSE):
        assert rows[(name, "cnn", "npe")]["check_r2"] == "pass"
        assert rows[(name, "cnn", "gaussian_head")]["check_r2"] == "pass"
    assert rows[("wa", "cnn", "npe")]["check_r2"] == ""  # wa and S8 are not targets
    assert rows[("Omega_m", "combined", "npe")]["check_r2"] == ""  # combined: target (c)
    for name in ("Omega_m", "sigma_8"):
        assert rows[(name, "combined", "npe")]["check_tighter"] == "pass"
    text = "\n".join(lines)
    assert text.startswith("## Networks vs the two-point baseline")
    assert "| Omega_m | cnn head |" in text and "| S8 | combined |" in text
    assert "(c) combined narrower than two-point on Omega_m, sigma_8: 2 of 2 pass" in text
    assert "(a) R^2 at least" in text and "(b) No shrinkage" in text


def test_insensitive_network_is_flagged(config: dict, two_point: Path, tmp_path: Path) -> None:
    """A network that returns the prior centre: its posterior is the prior, the posterior
    means and its head's means barely move between fiducial seeds (scatter << test RMSE):
    `shrinkage`, `falls short` and the R^2 target fails."""
    predictions = write_network_predictions(config, tmp_path / "cnn.ecsv", None, 6)
    folders = [two_point, write_posterior(config, tmp_path, "cnn", None, 7, predictions)]
    lines = write_verdict_section(config, folders, {"cnn": predictions}, tmp_path)
    rows = read_rows(tmp_path / VERDICT_FILE)
    for name in POSTERIOR_PARAMETERS:
        for kind in ("npe", "gaussian_head"):
            row = rows[(name, "cnn", kind)]
            assert row["verdict"] == "falls short", (name, kind, row)
            assert row["shrinkage"] == "True" and row["check_scatter"] == "fail", row
            assert float(row["scatter_over_rmse"]) < 0.2
    for name in (*R2_AT_LEAST, *R2_CLOSE):
        assert rows[(name, "cnn", "npe")]["check_r2"] == "fail"
        assert rows[(name, "cnn", "gaussian_head")]["check_r2"] == "fail"
    text = "\n".join(lines)
    assert "fail (shrinkage)" in text and ": 0 of 10 pass" in text
    assert "(no combined posterior, or no widths)" in text


def test_bootstrap_error_of_an_r2_difference_matches_the_analytic_one() -> None:
    """Two estimators with independent errors of the same std s about truths of std 1:
    R^2 difference = mean(e_b^2 - e_a^2) / var(truth), standard error 2 s^2 / sqrt(N) to
    first order. Errors shared by both cancel in the pairing."""
    rng = np.random.default_rng(11)
    n, s = 1000, 0.3
    truth = rng.standard_normal(n)
    first, second = s * rng.standard_normal(n), s * rng.standard_normal(n)
    difference, error = r2_difference(truth, truth + first, truth + second, 1000, 0)
    analytic = 2 * s**2 / np.sqrt(n)
    assert error == pytest.approx(analytic, rel=0.2)
    assert abs(difference) < 3 * analytic
    # shared errors: the paired error is 1% of the independent one, not ~100%
    _, shared = r2_difference(truth, truth + first, truth + 1.01 * first, 1000, 0)
    assert shared < 0.05 * error


def test_other_simulations_are_refused(config: dict, two_point: Path, tmp_path: Path) -> None:
    """A predictions file of other test simulations than the posteriors': no pairing, an
    error naming the file."""
    predictions = write_network_predictions(config, tmp_path / "cnn.ecsv", 0.05, 2,
                                            first_id=1)
    folders = [two_point, write_posterior(config, tmp_path, "cnn", 0.05, 3)]
    with pytest.raises(ValueError, match="cnn.ecsv: its test simulations differ"):
        write_verdict_section(config, folders, {"cnn": predictions}, tmp_path)
