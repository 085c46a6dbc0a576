"""Fisher bound: analytic linear-Gaussian toy, Hartlap bias, S8 Jacobian, refused input."""

from __future__ import annotations

import numpy as np
import pytest

from cosmo_sbi.fisher import (
    FisherError,
    fisher_bound,
    fisher_matrix,
    hartlap_precision,
    s8_jacobian,
)

N_PARAMS, N_FEATURES = 6, 10
THETA = np.array([0.3133, 0.8079, -1.0, 0.0, 0.9649, 0.6736])
LOWER = np.array([0.25, 0.75, -1.3, -0.3, 0.90, 0.60])
UPPER = np.array([0.40, 0.85, -0.7, 0.3, 1.10, 0.80])


def _toy(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """mu(theta) = A theta with a known covariance C: F = A^T C^-1 A."""
    design = rng.normal(size=(N_FEATURES, N_PARAMS)) * 20
    root = rng.normal(size=(N_FEATURES, N_FEATURES))
    return design, root @ root.T / N_FEATURES + np.eye(N_FEATURES)


def _simulate(design: np.ndarray, covariance: np.ndarray, n_fiducial: int, n_seeds: int,
              rng: np.random.Generator, step: np.ndarray) -> tuple[np.ndarray, ...]:
    root = np.linalg.cholesky(covariance)
    fiducial = THETA @ design.T + rng.normal(size=(n_fiducial, N_FEATURES)) @ root.T
    noise = rng.normal(size=(n_seeds, 1, N_FEATURES)) @ root.T  # common random numbers
    shifted = THETA + np.diag(step)  # (P, P): row p is theta + step_p e_p
    plus = shifted @ design.T + noise
    minus = (THETA - np.diag(step)) @ design.T + noise
    return fiducial, plus, minus


def test_linear_gaussian_toy_recovers_the_analytic_fisher_matrix() -> None:
    rng = np.random.default_rng(0)
    design, covariance = _toy(rng)
    step = 0.05 * (UPPER - LOWER)
    fiducial, plus, minus = _simulate(design, covariance, 800, 2, rng, step)
    result = fisher_bound(fiducial, plus, minus, step, LOWER, UPPER, THETA)
    analytic = design.T @ np.linalg.inv(covariance) @ design
    expected = np.sqrt(np.diag(np.linalg.inv(analytic)))
    recovered = np.array([result["sigma_no_prior"][name] for name in
                          ("Omega_m", "sigma_8", "w0", "wa", "n_s", "h")])
    # the precision from 800 seeds scatters by ~sqrt(2 / 800) = 5% per element
    np.testing.assert_allclose(recovered, expected, rtol=0.1)
    with_prior = np.sqrt(np.diag(np.linalg.inv(analytic + np.diag(12 / (UPPER - LOWER) ** 2))))
    assert result["sigma"]["Omega_m"] == pytest.approx(with_prior[0], rel=0.1)
    assert all(result["sigma"][n] <= result["sigma_no_prior"][n] for n in result["sigma"])
    jacobian = s8_jacobian(THETA)
    s8 = np.sqrt(jacobian @ np.linalg.inv(analytic) @ jacobian)
    assert result["sigma_no_prior"]["S8"] == pytest.approx(s8, rel=0.1)


def test_hartlap_factor_removes_the_bias_of_the_inverse_covariance() -> None:
    """Over many 20-seed covariances of 10 features the raw inverse overestimates F by
    (N - 1) / (N - K - 2) = 2.4; the Hartlap-corrected one is unbiased."""
    rng = np.random.default_rng(1)
    design, covariance = _toy(rng)
    root = np.linalg.cholesky(covariance)
    analytic = fisher_matrix(design.T, np.linalg.inv(covariance))
    samples = [rng.normal(size=(20, N_FEATURES)) @ root.T for _ in range(400)]
    corrected = np.mean([np.trace(fisher_matrix(design.T, hartlap_precision(x)))
                         for x in samples])
    raw = np.mean([np.trace(fisher_matrix(design.T, np.linalg.inv(np.cov(x, rowvar=False))))
                   for x in samples])
    assert corrected / np.trace(analytic) == pytest.approx(1.0, abs=0.05)
    assert raw / np.trace(analytic) == pytest.approx(19 / 8, rel=0.1)


def test_s8_jacobian_matches_finite_differences() -> None:
    def s8(theta: np.ndarray) -> float:
        return theta[1] * (theta[0] / 0.3) ** 0.5

    step = 1e-6
    numeric = [(s8(THETA + step * e) - s8(THETA - step * e)) / (2 * step)
               for e in np.eye(N_PARAMS)]
    np.testing.assert_allclose(s8_jacobian(THETA), numeric, atol=1e-8)


def test_too_few_fiducial_seeds_are_refused_naming_the_fields() -> None:
    with pytest.raises(FisherError, match=r"design.fiducial.n_simulations.*fisher.n_z_bins"):
        hartlap_precision(np.random.default_rng(2).normal(size=(12, N_FEATURES)))


def test_constant_feature_is_refused() -> None:
    rng = np.random.default_rng(3)
    design, covariance = _toy(rng)
    step = 0.05 * (UPPER - LOWER)
    fiducial, plus, minus = _simulate(design, covariance, 50, 1, rng, step)
    fiducial[:, 3] = 1.0
    with pytest.raises(FisherError, match=r"features \[3\] do not vary"):
        fisher_bound(fiducial, plus, minus, step, LOWER, UPPER, THETA)
