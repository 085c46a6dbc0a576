"""Known-answer tests of the calibration tests (TARP, SBC, coverage) and of sbi's NPE on a
linear-Gaussian toy whose posterior is analytic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosmo_sbi import calibration
from cosmo_sbi.posterior import NPESettings, train_npe

N_PARAMETERS = 2
NOISE = 0.3
DESIGN = np.array([[1.0, 0.3], [0.2, 1.0], [0.5, -0.5]])
"""x = DESIGN theta + NOISE * standard normal, theta ~ N(0, 1): 2 parameters, 3 data."""


def simulate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    theta = rng.standard_normal((n, N_PARAMETERS))
    return theta, theta @ DESIGN.T + NOISE * rng.standard_normal((n, len(DESIGN)))


def analytic_posterior(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means (N, P) and the covariance (P, P) of the toy given data x (N, 3)."""
    covariance = np.linalg.inv(np.eye(N_PARAMETERS) + DESIGN.T @ DESIGN / NOISE**2)
    return x @ DESIGN @ covariance.T / NOISE**2, covariance


def exact_samples(rng: np.random.Generator, n: int, width_factor: float,
                  n_samples: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Samples (n, S, P) of the analytic posteriors with widths times ``width_factor``, and
    the truths (n, P)."""
    theta, x = simulate(rng, n)
    mean, covariance = analytic_posterior(x)
    noise = rng.standard_normal((n, n_samples, N_PARAMETERS)) @ np.linalg.cholesky(covariance).T
    return mean[:, None, :] + width_factor * noise, theta


BOX = (-3.0 * np.ones(N_PARAMETERS), 3.0 * np.ones(N_PARAMETERS))


@pytest.mark.parametrize(("width_factor", "verdict", "sign"),
                         [(1.0, "pass", 0), (0.5, "fail", -1), (2.0, "fail", 1)])
def test_tarp_passes_the_exact_posterior_and_fails_wrong_widths(width_factor: float,
                                                                verdict: str,
                                                                sign: int) -> None:
    samples, truths = exact_samples(np.random.default_rng(1), 400, width_factor)
    result = calibration.tarp(samples, truths, *BOX, seed=2)
    assert result["verdict"] == verdict, result["atc"]
    if sign:  # over-confident: ATC < 0; under-confident: ATC > 0
        assert np.sign(result["atc"]) == sign
    ecp = np.asarray(result["ecp"])
    assert ecp[-1] == 1.0 and np.all(np.diff(ecp) >= 0)
    assert 0.002 < result["atc_error"] < 0.02


@pytest.mark.parametrize(("width_factor", "flagged"), [(1.0, False), (0.5, True), (2.0, True)])
def test_sbc_flags_wrong_widths(width_factor: float, flagged: bool) -> None:
    samples, truths = exact_samples(np.random.default_rng(3), 400, width_factor)
    result = calibration.sbc(samples, truths)
    assert result["flagged"] == [flagged] * N_PARAMETERS, (result["chi2_p"], result["ks_p"])
    assert np.asarray(result["histogram"]).sum(axis=1).tolist() == [400] * N_PARAMETERS


def test_sbc_ranks_and_coverage_count_samples_below_the_truth() -> None:
    samples = np.arange(10.0)[None, :, None].repeat(2, axis=0)  # (2, 10, 1): 0..9
    truths = np.array([[3.5], [-1.0]])
    assert calibration.sbc_ranks(samples, truths).tolist() == [[4], [0]]
    # central 68% interval of 0..9 by linear quantiles: [2.88, 6.12]
    assert calibration.credible_interval_coverage(samples, truths, 0.68).tolist() == [0.5]


def test_coverage_of_the_exact_posterior_is_nominal() -> None:
    samples, truths = exact_samples(np.random.default_rng(4), 2000, 1.0, n_samples=400)
    for level in (0.68, 0.95):
        coverage = calibration.credible_interval_coverage(samples, truths, level)
        assert np.all(np.abs(coverage - level) < 3 * np.sqrt(level * (1 - level) / 2000))


def test_bad_shapes_name_the_expected_ones() -> None:
    with pytest.raises(ValueError, match=r"expected \(N, S, P\) and \(N, P\)"):
        calibration.sbc(np.zeros((4, 10, 2)), np.zeros((4, 3)))


@pytest.mark.slow
def test_npe_recovers_the_analytic_posterior_of_a_linear_gaussian_toy() -> None:
    """sbi's NPE (the flow of the posterior stage) on 4000 simulations:
    the widths come out within 10% of the analytic ones and TARP passes; the same samples
    squeezed to half their width around their mean fail TARP and SBC. 11 s (35 s at load 10)
    on 2 cores."""
    rng = np.random.default_rng(0)
    theta, x = simulate(rng, 4000)
    prior = torch.distributions.MultivariateNormal(torch.zeros(N_PARAMETERS),
                                                   torch.eye(N_PARAMETERS))
    torch.set_num_threads(1)
    # the posterior stage's flow (MAF, 5 x 50) with sbi's batch and rate for 4000 rows
    trained = train_npe(theta, x, prior, NPESettings(batch_size=200, learning_rate=5e-4),
                        seed=0)
    test_theta, test_x = simulate(rng, 300)
    samples = trained.sample(test_x, 500, seed=1)

    _, covariance = analytic_posterior(test_x)
    lower, upper = np.quantile(samples, [0.15865, 0.84135], axis=1)
    width = np.median((upper - lower) / 2, axis=0)  # robust to the flow's rare far samples
    np.testing.assert_allclose(width, np.sqrt(np.diag(covariance)), rtol=0.10)
    assert calibration.tarp(samples, test_theta, *BOX)["verdict"] == "pass"
    # (SBC is not asserted here: with 300 simulations it resolves the flow's few-percent
    # imperfection in one parameter, chi^2 p ~ 2e-4, while the widths are within 10%.)

    centre = samples.mean(axis=1, keepdims=True)
    squeezed = centre + 0.5 * (samples - centre)
    assert calibration.tarp(squeezed, test_theta, *BOX)["verdict"] == "fail"
    assert all(calibration.sbc(squeezed, test_theta)["flagged"])
