"""Metrics on synthetic predictions with known answers; ViT interpretation helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import linregress, norm

from cosmo_sbi.interpret import (
    attention_rollout,
    attention_to_patches,
    position_similarity,
)
from cosmo_sbi.metrics import (
    coverage_curve,
    fiducial_metrics,
    interval_coverage,
    mean_bias,
    pull_std,
    r_squared,
    regression_slope,
    rmse,
    slope_standard_error,
    split_metrics,
)
from cosmo_sbi.models.build import build_model

N_TEST = 20000
LOWER = np.array([0.25, 0.75, -1.3, -0.3, 0.90, 0.60])
UPPER = np.array([0.40, 0.85, -0.7, 0.3, 1.10, 0.80])


def _binomial_tolerance(p: float, n: int) -> float:
    """4 standard deviations of an empirical fraction with success probability p over n draws:
    a false alarm per check has probability 6e-5 (and the draws are seeded)."""
    return 4.0 * np.sqrt(p * (1.0 - p) / n)


@pytest.fixture
def truth() -> np.ndarray:
    return np.random.default_rng(0).uniform(LOWER, UPPER, size=(N_TEST, 6))


def test_perfect_predictor(truth: np.ndarray) -> None:
    # float64 arithmetic on values of order 1: identities hold to ~1e-15
    np.testing.assert_allclose(regression_slope(truth, truth), 1.0, rtol=1e-12)
    np.testing.assert_allclose(r_squared(truth, truth), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(rmse(truth, truth), 0.0)
    np.testing.assert_array_equal(mean_bias(truth, truth), 0.0)


def test_prior_mean_predictor_has_zero_slope(truth: np.ndarray) -> None:
    centre = np.broadcast_to((LOWER + UPPER) / 2, truth.shape)
    np.testing.assert_allclose(regression_slope(truth, centre), 0.0, atol=1e-12)
    # R^2 = -(mean(true) - centre)^2 / var(true); E[...] = -1/N for a uniform truth; allow
    # 20/N (the squared mean offset is a chi^2_1 variable: < 20 at 99.999%)
    assert np.all(np.abs(r_squared(truth, centre)) < 20.0 / N_TEST)
    # RMSE of the centre against a uniform prior: width / sqrt(12), to the sampling error of
    # a second moment, relative ~ sqrt(0.8 / N) = 0.6%; allow 3%
    np.testing.assert_allclose(rmse(truth, centre), (UPPER - LOWER) / np.sqrt(12), rtol=0.03)


def test_shrinkage_slope_is_exact(truth: np.ndarray) -> None:
    centre = (LOWER + UPPER) / 2
    shrunk = centre + 0.3 * (truth - centre) + 0.01  # pulled 70% towards the prior centre
    np.testing.assert_allclose(regression_slope(truth, shrunk), 0.3, rtol=1e-10)
    np.testing.assert_allclose(mean_bias(truth, shrunk), 0.01 - 0.7 * (truth.mean(0) - centre),
                               rtol=1e-9)


def test_slope_standard_error_matches_scipy(truth: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    noisy = 0.6 * truth[:50] + 0.02 * rng.standard_normal((50, 6))
    expected = [linregress(truth[:50, i], noisy[:, i]).stderr for i in range(6)]
    # the same OLS formula evaluated two ways: agreement to float64 round-off
    np.testing.assert_allclose(slope_standard_error(truth[:50], noisy), expected, rtol=1e-9)


def test_calibrated_gaussian_errors_cover_68_and_95(truth: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    sigma = rng.uniform(0.2, 2.0, truth.shape) * (UPPER - LOWER) * 0.05  # heteroscedastic
    mean = truth + sigma * rng.standard_normal(truth.shape)
    for level in (0.68, 0.95):
        coverage = interval_coverage(truth, mean, sigma, level)
        assert np.all(np.abs(coverage - level) < _binomial_tolerance(level, N_TEST)), coverage
    # pulls of calibrated errors have unit std; its relative sampling error is
    # 1 / sqrt(2 (N - 1)) = 0.5%: allow 4 of them
    np.testing.assert_allclose(pull_std(truth, mean, sigma), 1.0, atol=4 / np.sqrt(2 * N_TEST))
    np.testing.assert_allclose(pull_std(truth, mean, 2 * sigma), 0.5,
                               atol=2 / np.sqrt(2 * N_TEST))
    # the same errors, reported with half their true size: coverage P(|Z| < z_p / 2)
    overconfident = interval_coverage(truth, mean, sigma / 2, 0.68)
    expected = 2 * norm.cdf(norm.ppf(0.84) / 2) - 1
    assert np.all(np.abs(overconfident - expected) < _binomial_tolerance(expected, N_TEST))
    # the curve is monotone in the level and matches the two-level numbers
    levels = np.array([0.1, 0.68, 0.95])
    curve = coverage_curve(truth, mean, sigma, levels)
    assert np.all(np.diff(curve, axis=0) > 0)
    np.testing.assert_array_equal(curve[1], interval_coverage(truth, mean, sigma, 0.68))


def test_split_and_fiducial_metrics(truth: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    sigma = np.full(truth.shape, 0.01)
    mean = truth + 0.002 + sigma * rng.standard_normal(truth.shape)
    metrics = split_metrics(truth, mean, sigma)
    assert list(metrics) == ["Omega_m", "sigma_8", "w0", "wa", "n_s", "h"]
    for values in metrics.values():
        # bias 0.002 measured with standard error 0.01 / sqrt(N) = 7e-5: allow 4 of them
        assert abs(values["bias"] - 0.002) < 4 * 0.01 / np.sqrt(N_TEST)
        # RMSE^2 = sigma^2 + bias^2; relative sampling error sqrt(1/(2N)) = 0.5%, allow 2%
        assert values["rmse"] == pytest.approx(np.hypot(0.01, 0.002), rel=0.02)
        assert values["mean_sigma"] == pytest.approx(0.01)
    seeds = np.tile(truth[:1], (200, 1))
    scatter = seeds + 0.05 * rng.standard_normal(seeds.shape)
    fiducial = fiducial_metrics(seeds, scatter, np.full(seeds.shape, 0.05))
    for index, values in enumerate(fiducial.values()):
        assert values["truth"] == seeds[0, index]
        # the std of 200 draws has relative error 1/sqrt(2 * 199) = 5%; allow 20%
        assert values["std"] == pytest.approx(0.05, rel=0.2)
        # the mean of 200 draws has standard error 0.05 / sqrt(200) = 0.0035; allow 4 of them
        assert abs(values["bias"]) < 4 * 0.05 / np.sqrt(200)
        assert values["mean"] == pytest.approx(seeds[0, index] + values["bias"], abs=1e-12)


def test_rollout_of_uniform_attention_has_closed_form() -> None:
    tokens, layers = 5, 3
    uniform = np.full((2, tokens, tokens), 1.0 / tokens)
    rollout = attention_rollout([uniform] * layers)
    # (I/2 + U/2)^L = I / 2^L + U (1 - 1/2^L) since U^2 = U
    expected = np.eye(tokens) / 2**layers + (1 - 1 / 2**layers) / tokens
    np.testing.assert_allclose(rollout, expected, rtol=1e-12)
    identity = attention_rollout([np.tile(np.eye(tokens), (2, 1, 1))] * layers)
    np.testing.assert_allclose(identity, np.eye(tokens), rtol=1e-12)


def test_position_similarity_of_orthogonal_embeddings() -> None:
    embedding = np.concatenate([np.ones((1, 1, 9)), 3.0 * np.eye(9)[None, :8]], axis=1)
    similarity = position_similarity(embedding)  # CLS position dropped
    np.testing.assert_allclose(similarity, np.eye(8), atol=1e-15)


def test_patch_maps_follow_the_vit_token_order() -> None:
    """A volume that is non-zero in one patch changes exactly the token the map puts there."""
    torch.manual_seed(0)
    model = build_model("vit", {"preset": "small", "patch_size": 4}, grid_size=12)
    grid = 3
    volume = torch.zeros(1, 1, 12, 12, 12)
    volume[0, 0, 4:8, 0:4, 8:12] = 1.0  # patch (RA 1, DEC 0, z 2)
    with torch.no_grad():
        tokens = model.patch_embedding(volume).flatten(2).transpose(1, 2)[0]
        background = model.patch_embedding(torch.zeros_like(volume)).flatten(2).transpose(1, 2)[0]
    changed = (tokens - background).abs().sum(dim=1).numpy()
    attention = np.zeros((1, 1 + grid**3, 1 + grid**3))
    attention[0, 0, 1:] = changed  # CLS row = the changed-token indicator
    maps = attention_to_patches(attention, "cls", grid)
    assert np.count_nonzero(maps) == 1 and maps[0, 1, 0, 2] > 0


def test_single_simulation_metrics_are_undefined_not_nan(truth: np.ndarray) -> None:
    """A tiny workflow can leave one test cosmology: slope and R^2 are then None (JSON null)."""
    one = split_metrics(truth[:1], truth[:1] + 0.01, np.full((1, 6), 0.02))
    for values in one.values():
        assert values["slope"] is None and values["r2"] is None
        assert values["slope_stderr"] is None and values["pull_std"] is None
        assert values["rmse"] == pytest.approx(0.01)
        assert values["coverage_68"] == 1.0
    seed = fiducial_metrics(truth[:1], truth[:1], np.full((1, 6), 0.02))
    assert all(values["std"] is None for values in seed.values())


def test_mean_pooled_maps_average_the_patch_queries() -> None:
    grid, tokens = 2, 9
    rng = np.random.default_rng(4)
    attention = rng.uniform(size=(3, tokens, tokens))
    maps = attention_to_patches(attention, "mean", grid)
    # patch (1, 0, 1) is token 1 + 1*4 + 0*2 + 1 = 6; queries are the 8 patch tokens 1..8
    np.testing.assert_allclose(maps[:, 1, 0, 1], attention[:, 1:, 6].mean(axis=1), rtol=1e-14)
    np.testing.assert_allclose(attention_to_patches(attention, "cls", grid)[:, 1, 0, 1],
                               attention[:, 0, 6], rtol=0)
