"""Metrics of predicted means and sigmas against the truth (numpy and scipy only: no
plotting, no torch), for one model's predictions table or any (N, P) arrays.

Arrays are (N, P): N simulations, P parameters; every metric returns one value per column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from astropy.table import Table
from scipy.stats import norm

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.dataset import FIDUCIAL_SPLIT, SPLITS

COVERAGE_LEVELS: tuple[float, ...] = (0.68, 0.95)
"""Probability content of the central Gaussian intervals whose coverage is reported."""


def rmse(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Root-mean-square error (P,)."""
    return np.sqrt(np.mean((predicted - true) ** 2, axis=0))


def mean_bias(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Mean of predicted - true (P,)."""
    return np.mean(predicted - true, axis=0)


def r_squared(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Coefficient of determination about the identity line (P,).

    1 - sum (predicted - true)^2 / sum (true - mean true)^2: 1 for a perfect predictor, 0 for
    predicting the sample mean of the truth, negative for worse; NaN where the truth has no
    spread (e.g. a bootstrap resampling of one simulation repeated, whose rounding residue
    would otherwise give R^2 of order -1e26).
    """
    residual = np.sum((predicted - true) ** 2, axis=0)
    spread = np.sum((true - true.mean(axis=0)) ** 2, axis=0)
    no_spread = np.all(true == true[:1], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(no_spread, np.nan, 1.0 - residual / np.where(no_spread, 1.0, spread))


def paired_bootstrap(truth: np.ndarray, predictions: Mapping[str, np.ndarray],
                     metric: Callable[[np.ndarray, np.ndarray], np.ndarray], n_bootstrap: int,
                     seed: int) -> dict[str, np.ndarray]:
    """``metric(true, predicted)`` (B, ...) of each method's predictions (N, ...) of the
    truth (N, ...) over the same B resamplings of the N test simulations (paired:
    differences between methods keep their correlation). ``metric`` reduces axis 0 of
    (N, B, ...) arrays, as the functions of this module (rmse, r_squared) do."""
    indices = np.random.default_rng(seed).integers(0, len(truth), (n_bootstrap, len(truth))).T
    return {method: metric(truth[indices], values[indices])
            for method, values in predictions.items()}


def finite_std(values: np.ndarray) -> np.ndarray:
    """Sample standard deviation (ddof 1) over axis 0 of the finite values; NaN with fewer
    than two (a bootstrap error that ignores undefined resamplings)."""
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    mean = np.where(finite, values, 0.0).sum(axis=0) / np.maximum(count, 1)
    variance = (np.where(finite, values - mean, 0.0) ** 2).sum(axis=0) / np.maximum(count - 1, 1)
    return np.where(count > 1, np.sqrt(variance), np.nan)


def regression_slope(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Least-squares slope of predicted on true (P,): cov(true, predicted) / var(true).

    Near 1: the prediction follows the truth; near 0: it sits at the prior centre whatever
    the input.
    """
    centred_true = true - true.mean(axis=0)
    centred_predicted = predicted - predicted.mean(axis=0)
    return np.sum(centred_true * centred_predicted, axis=0) / np.sum(centred_true**2, axis=0)


def slope_standard_error(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Standard error (P,) of :func:`regression_slope` from the scatter about the fitted line
    (ordinary least squares, N - 2 degrees of freedom)."""
    slope = regression_slope(true, predicted)
    centred_true = true - true.mean(axis=0)
    residual = predicted - predicted.mean(axis=0) - slope * centred_true
    dof = true.shape[0] - 2
    if dof < 1:
        return np.full(true.shape[1], np.nan)
    return np.sqrt(np.sum(residual**2, axis=0) / dof / np.sum(centred_true**2, axis=0))


def pull_std(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Standard deviation (P,) of the pulls (true - mean) / sigma: 1 when the predicted sigmas
    are calibrated, above 1 when they are too small."""
    if len(true) < 2:
        return np.full(true.shape[1], np.nan)
    return np.std((true - mean) / sigma, axis=0, ddof=1)


def interval_coverage(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray,
                      level: float) -> np.ndarray:
    """Fraction (P,) of truths inside the central Gaussian interval of probability ``level``."""
    half_width = norm.ppf(0.5 + level / 2.0) * sigma
    return np.mean(np.abs(true - mean) <= half_width, axis=0)


def coverage_curve(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray,
                   levels: np.ndarray) -> np.ndarray:
    """Empirical coverage (L, P) of central Gaussian intervals at each of ``levels`` (L,)."""
    return np.stack([interval_coverage(true, mean, sigma, level) for level in levels])


def mixture_moments(means: np.ndarray, sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sigma (N, P) of the equal-weight mixture of M Gaussians, ``means`` and
    ``sigmas`` (M, N, P): mean of the means; variance = mean of the variances + variance
    (ddof 0) of the means (an ensemble of networks, each a Gaussian). One member is returned
    as it is (bit for bit)."""
    means, sigmas = np.asarray(means, dtype=np.float64), np.asarray(sigmas, dtype=np.float64)
    if len(means) == 1:
        return means[0], sigmas[0]
    variance = np.mean(sigmas**2, axis=0) + np.var(means, axis=0)
    return np.mean(means, axis=0), np.sqrt(variance)


def _as_json_values(columns: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """{metric: (P,)} -> {parameter: {metric: float, or None where undefined}}."""
    return {name: {key: float(values[index]) if np.isfinite(values[index]) else None
                   for key, values in columns.items()}
            for index, name in enumerate(PARAMETER_NAMES)}


def split_metrics(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> dict[str, dict]:
    """Per parameter: RMSE, R^2, slope and its standard error, bias, mean sigma, pull std and
    the coverages of the Gaussian intervals (COVERAGE_LEVELS). Undefined values (slope, R^2
    and pull std of fewer than 2 simulations, slope error of fewer than 3) are None."""
    with np.errstate(divide="ignore", invalid="ignore"):  # one simulation: 0/0 -> None
        columns = {
            "rmse": rmse(true, mean), "r2": r_squared(true, mean),
            "slope": regression_slope(true, mean),
            "slope_stderr": slope_standard_error(true, mean), "bias": mean_bias(true, mean),
            "mean_sigma": np.mean(sigma, axis=0), "pull_std": pull_std(true, mean, sigma),
            **{f"coverage_{round(100 * level)}": interval_coverage(true, mean, sigma, level)
               for level in COVERAGE_LEVELS},
        }
    return _as_json_values(columns)


def fiducial_metrics(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> dict[str, dict]:
    """Per parameter at one cosmology: mean, std (None for one seed) and bias of the
    predicted means, mean predicted sigma."""
    with np.errstate(divide="ignore", invalid="ignore"):  # one seed: no std -> None
        std = mean.std(axis=0, ddof=1) if len(mean) > 1 else np.full(mean.shape[1], np.nan)
    columns = {"truth": true[0], "mean": mean.mean(axis=0), "std": std,
               "bias": mean_bias(true, mean), "mean_sigma": sigma.mean(axis=0)}
    return _as_json_values(columns)


def parameter_arrays(table: Table, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """true, mean, sigma (N, 6) of the rows of ``split`` in a predictions table."""
    rows = np.asarray(table["split"]) == split
    return tuple(np.stack([np.asarray(table[f"{name}_{kind}"])[rows]
                           for name in PARAMETER_NAMES], axis=1)
                 for kind in ("true", "mean", "sigma"))


def metrics_from_predictions(table: Table) -> dict[str, Any]:
    """Metrics of every Latin-hypercube split and of the fiducial set, where present."""
    metrics: dict[str, Any] = {}
    for split in SPLITS:
        true, mean, sigma = parameter_arrays(table, split)
        if len(true):
            metrics[split] = {"n": len(true), "parameters": split_metrics(true, mean, sigma)}
    true, mean, sigma = parameter_arrays(table, FIDUCIAL_SPLIT)
    if len(true):
        metrics[FIDUCIAL_SPLIT] = {"n": len(true),
                                   "parameters": fiducial_metrics(true, mean, sigma)}
    return metrics
