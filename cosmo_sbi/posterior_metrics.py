"""Metrics and figures of one method's posteriors (``results/posteriors/{method}/``).

On the Latin-hypercube test split: R^2 and slope of the posterior mean against the truth,
coverage of the central 68/95% credible intervals, TARP (ECP curve, ATC with its bootstrap
error, verdict) and per-parameter SBC. At the fiducial seeds, per parameter: the median
posterior standard deviation over seeds, the scatter of the posterior means across seeds and
the bias of their average in units of that sigma. For the networks (cnn, vit) the same test
metrics of their own Gaussian heads (samples drawn from the predicted Gaussians of
``predictions.ecsv``), so the report shows what NPE changes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cosmo_sbi import PARAMETER_NAMES, calibration
from cosmo_sbi.config import Config
from cosmo_sbi.dataset import FIDUCIAL_SPLIT, prior_bounds
from cosmo_sbi.io import atomic_path, provenance
from cosmo_sbi.metrics import (
    COVERAGE_LEVELS,
    parameter_arrays,
    r_squared,
    regression_slope,
    rmse,
    slope_standard_error,
)
from cosmo_sbi.outputs import read_predictions
from cosmo_sbi.posterior import POSTERIOR_PARAMETERS, SAMPLES_FILE, read_samples, with_s8

METRICS_FILE = "metrics.json"
FIGURES_DIR = "figures"


def _per_parameter(columns: Mapping[str, np.ndarray]) -> dict[str, dict[str, float | None]]:
    """{metric: (7,)} -> {parameter: {metric: float or None}} over POSTERIOR_PARAMETERS."""
    return {name: {key: float(values[index]) if np.isfinite(values[index]) else None
                   for key, values in columns.items()}
            for index, name in enumerate(POSTERIOR_PARAMETERS)}


def calibration_metrics(samples: np.ndarray, truths: np.ndarray, config: Config,
                        seed: int) -> dict[str, Any]:
    """TARP over the six parameters (references in the prior box), SBC and credible-interval
    coverage per parameter and S8, from samples (N, S, 7) and truths (N, 7)."""
    section = config["posterior"]
    lower, upper = prior_bounds(config)
    six = len(PARAMETER_NAMES)
    tarp = calibration.tarp(samples[..., :six], truths[:, :six], lower, upper,
                            threshold=section["tarp_threshold"],
                            n_bootstrap=section["bootstrap"], seed=seed)
    sbc = calibration.sbc(samples, truths, alpha=section["sbc_alpha"])
    coverage = {f"coverage_{round(100 * level)}":
                calibration.credible_interval_coverage(samples, truths, level)
                for level in COVERAGE_LEVELS}
    return {"tarp": tarp, "sbc": sbc, "coverage": coverage}


def held_out_metrics(samples: np.ndarray, truths: np.ndarray, config: Config,
                 seed: int) -> dict[str, Any]:
    """Test-split metrics (see the module docstring) of samples (N, S, 7), truths (N, 7)."""
    mean, std = samples.mean(axis=1), samples.std(axis=1)
    cal = calibration_metrics(samples, truths, config, seed)
    with np.errstate(divide="ignore", invalid="ignore"):  # one simulation: None
        columns = {"r2": r_squared(truths, mean), "slope": regression_slope(truths, mean),
                   "slope_stderr": slope_standard_error(truths, mean),
                   "rmse": rmse(truths, mean), "mean_std": std.mean(axis=0),
                   **cal["coverage"],
                   "sbc_chi2_p": np.asarray(cal["sbc"]["chi2_p"]),
                   "sbc_ks_p": np.asarray(cal["sbc"]["ks_p"])}
    parameters = _per_parameter(columns)
    for index, name in enumerate(POSTERIOR_PARAMETERS):
        parameters[name]["sbc_flagged"] = bool(cal["sbc"]["flagged"][index])
    return {"n": len(truths), "parameters": parameters, "tarp": cal["tarp"],
            "sbc_histogram": cal["sbc"]["histogram"], "sbc_n_bins": cal["sbc"]["n_bins"]}


def fiducial_metrics(samples: np.ndarray, truths: np.ndarray) -> dict[str, Any]:
    """Per parameter at one cosmology (N seeds): truth, median posterior std, mean and
    scatter (std, None for one seed) of the posterior means, bias of their average and that
    bias in units of the median sigma."""
    mean, std = samples.mean(axis=1), samples.std(axis=1)
    sigma = np.median(std, axis=0)
    scatter = mean.std(axis=0, ddof=1) if len(mean) > 1 else np.full(mean.shape[1], np.nan)
    bias = mean.mean(axis=0) - truths[0]
    columns = {"truth": truths[0], "sigma": sigma, "mean": mean.mean(axis=0),
               "scatter": scatter, "bias": bias, "bias_over_sigma": bias / sigma}
    return {"n": len(truths), "parameters": _per_parameter(columns)}


def gaussian_head_samples(predictions_path: str | os.PathLike[str], split: str,
                          n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Samples (N, S, 7) from a network's predicted Gaussians (independent per parameter,
    S8 derived) for the rows of ``split``, and the truths (N, 7)."""
    true, mean, sigma = parameter_arrays(read_predictions(predictions_path), split)
    samples = calibration.gaussian_samples(mean, sigma, n_samples, np.random.default_rng(seed))
    return with_s8(samples), with_s8(true)


def posterior_metrics(config: Config, method: str, data: Mapping[str, Any],
                      predictions_path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """metrics.json of one method from its samples (read_samples) and, for a network, the
    calibration of its Gaussian heads."""
    seed = config["posterior"]["seed"]
    metrics: dict[str, Any] = {"method": method, "parameters": list(POSTERIOR_PARAMETERS),
                               "coverage_levels": list(COVERAGE_LEVELS),
                               "npe": data["attrs"].get("training", {})}
    test = data["split"] == "test"
    if test.any():
        metrics["test"] = held_out_metrics(data["samples"][test], data["theta"][test],
                                           config, seed)
    fiducial = data["split"] == FIDUCIAL_SPLIT
    if fiducial.any():
        metrics[FIDUCIAL_SPLIT] = fiducial_metrics(data["samples"][fiducial],
                                                   data["theta"][fiducial])
    if predictions_path is not None:
        samples, truths = gaussian_head_samples(predictions_path, "test",
                                                config["posterior"]["n_samples"], seed)
        if len(truths):
            metrics["gaussian_heads"] = {"test": held_out_metrics(samples, truths, config, seed)}
    return metrics


def write_posterior_metrics(config: Config, method: str, output_dir: str | os.PathLike[str],
                            predictions_path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Metrics and figures of ``output_dir/samples.h5``; metrics.json written last."""
    from cosmo_sbi import posterior_plots

    output_dir = Path(output_dir)
    metrics = posterior_metrics(config, method, read_samples(output_dir / SAMPLES_FILE),
                                predictions_path)
    figures = posterior_plots.method_figures(metrics, output_dir / FIGURES_DIR)
    metrics["figures"] = {key: path.relative_to(output_dir).as_posix()
                          for key, path in figures.items()}
    metrics.update(provenance())
    with atomic_path(output_dir / METRICS_FILE) as temporary:
        temporary.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
