"""Evaluate a trained model: predictions, metrics and figures.

The headline numbers come from the Latin-hypercube TEST split, where the truth spans the
prior box: the slope of predicted on true separates information (slope near 1) from
shrinkage to the prior centre (slope near 0), which a seed study at one fiducial cosmology
cannot do (w0 = -1 and wa = 0 sit exactly at the centre of their prior ranges). The fiducial
seeds then give the scatter and bias at one cosmology.

Outputs in ``output_dir``: ``predictions.ecsv`` (one row per simulation: id, set, split and
per parameter ``<name>_true``, ``<name>_mean``, ``<name>_sigma`` in physical units),
``metrics.json``, a copy of the training ``history.csv`` and the PNG figures under
``figures/``, listed (relative to ``output_dir``) in ``metrics.json["figures"]``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from astropy.table import Table
from scipy.stats import norm

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.config import Config
from cosmo_sbi.dataset import FIDUCIAL_SPLIT, SPLITS, unscale_parameters, unscale_sigma
from cosmo_sbi.io import atomic_path, provenance

log = logging.getLogger(__name__)

COVERAGE_LEVELS: tuple[float, ...] = (0.68, 0.95)
"""Probability content of the central Gaussian intervals whose coverage is reported."""
PREDICTIONS_FILE = "predictions.ecsv"
METRICS_FILE = "metrics.json"
TRAINING_SUMMARY_FILE = "training_summary.json"
HISTORY_FILE = "history.csv"


# ---------------------------------------------------------------- metrics (pure numpy)
# Arrays are (N, P): N simulations, P parameters; every metric returns one value per column.

def rmse(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Root-mean-square error (P,)."""
    return np.sqrt(np.mean((predicted - true) ** 2, axis=0))


def mean_bias(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Mean of predicted - true (P,)."""
    return np.mean(predicted - true, axis=0)


def r_squared(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Coefficient of determination about the identity line (P,).

    1 - sum (predicted - true)^2 / sum (true - mean true)^2: 1 for a perfect predictor, 0 for
    predicting the sample mean of the truth, negative for worse.
    """
    residual = np.sum((predicted - true) ** 2, axis=0)
    spread = np.sum((true - true.mean(axis=0)) ** 2, axis=0)
    return 1.0 - residual / spread


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


# ---------------------------------------------------------------- predictions

@torch.no_grad()
def predict_scaled(model: torch.nn.Module, inputs: h5py.Dataset | np.ndarray,
                   device: torch.device, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sigma (N, 6) in the unit prior box for ``inputs`` (N, 1, D, D, D), in batches."""
    model.eval()
    means, sigmas = [], []
    for start in range(0, len(inputs), batch_size):
        x = torch.as_tensor(np.asarray(inputs[start:start + batch_size]), device=device)
        mean, log_var = model(x)[:2]
        means.append(mean.double().cpu().numpy())
        sigmas.append(torch.exp(0.5 * log_var.double()).cpu().numpy())
    return np.concatenate(means), np.concatenate(sigmas)


def predictions_table(dataset_path: str | os.PathLike[str], mean_scaled: np.ndarray,
                      sigma_scaled: np.ndarray) -> Table:
    """Predictions in physical units, one row per simulation of the dataset file."""
    with h5py.File(dataset_path, "r") as handle:
        lower, upper = handle["prior_lower"][...], handle["prior_upper"][...]
        table = Table({"id": handle["ids"].asstr()[...], "set": handle["set"].asstr()[...],
                       "split": handle["split"].asstr()[...]})
        theta = handle["theta"][...]
    table.meta.update(prior_lower=lower.tolist(), prior_upper=upper.tolist())
    mean = unscale_parameters(mean_scaled, lower, upper)
    sigma = unscale_sigma(sigma_scaled, lower, upper)
    for index, name in enumerate(PARAMETER_NAMES):
        table[f"{name}_true"] = theta[:, index]
        table[f"{name}_mean"] = mean[:, index]
        table[f"{name}_sigma"] = sigma[:, index]
    return table


def parameter_arrays(table: Table, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """true, mean, sigma (N, 6) of the rows of ``split`` in a predictions table."""
    rows = np.asarray(table["split"]) == split
    return tuple(np.stack([np.asarray(table[f"{name}_{kind}"])[rows]
                           for name in PARAMETER_NAMES], axis=1)
                 for kind in ("true", "mean", "sigma"))


def read_predictions(path: str | os.PathLike[str]) -> Table:
    """A predictions table written by :func:`evaluate_model`."""
    return Table.read(path, format="ascii.ecsv")


def read_history(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The training history CSV as numeric columns (name -> (epochs,))."""
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    if not rows:
        raise ValueError(f"{path}: empty training history")
    columns: dict[str, np.ndarray] = {}
    for key in rows[0]:
        try:
            columns[key] = np.array([float(row[key]) for row in rows])
        except (TypeError, ValueError):
            continue  # non-numeric column (e.g. a timestamp)
    return columns


# ---------------------------------------------------------------- the stage

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


def write_evaluation(config: Config, model_name: str, table: Table,
                     training_summary: Mapping[str, Any], model_dir: Path,
                     output_dir: Path) -> dict[str, Any]:
    """Write the predictions, a copy of the history and the per-model figures; return the
    metrics (written to metrics.json by the caller, last)."""
    from cosmo_sbi import plots

    output_dir.mkdir(parents=True, exist_ok=True)
    table.meta.update(provenance(model=model_name, model_dir=os.fspath(model_dir)))
    with atomic_path(output_dir / PREDICTIONS_FILE) as temporary:
        table.write(temporary, format="ascii.ecsv")
    history_path = model_dir / HISTORY_FILE
    histories = {}
    if history_path.exists():  # copied so the report needs only the evaluation folders
        with atomic_path(output_dir / HISTORY_FILE) as temporary:
            shutil.copyfile(history_path, temporary)
        histories[model_name] = read_history(history_path)
    figures = plots.standard_figures({model_name: table}, histories,
                                     output_dir / plots.FIGURES_DIR)
    metrics = {
        "model": model_name,
        "loss": config["training"]["loss"],
        "coverage_levels": list(COVERAGE_LEVELS),
        **metrics_from_predictions(table),
        "training": dict(training_summary),
        "figures": {key: _relative(path, output_dir) for key, path in figures.items()},
        **provenance(),
    }
    return metrics


def _relative(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def write_metrics(metrics: Mapping[str, Any], path: Path) -> None:
    """metrics.json, atomically, with sorted keys (bit-identical for identical metrics)."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def evaluate_model(config: Config, model_name: str, dataset_path: str | os.PathLike[str],
                   model_dir: str | os.PathLike[str],
                   output_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Predict every simulation of the dataset with the trained model; write the evaluation.

    For the ViT, the attention and position-embedding figures of cosmo_sbi.interpret are
    added; for the CNN, its Grad-CAM maps per parameter. Returns the metrics written to
    ``metrics.json`` (written last: it is the rule's completion marker).
    """
    from cosmo_sbi import plots
    from cosmo_sbi.models import load_trained
    from cosmo_sbi.train import select_device

    model_dir, output_dir = Path(model_dir), Path(output_dir)
    device = select_device(config["training"]["device"], local_rank=0)
    model = load_trained(model_dir, map_location=device)
    summary_path = model_dir / TRAINING_SUMMARY_FILE
    training_summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    with h5py.File(dataset_path, "r") as handle:
        mean_scaled, sigma_scaled = predict_scaled(model, handle["inputs"], device,
                                                   config["training"]["batch_size"])
    table = predictions_table(dataset_path, mean_scaled, sigma_scaled)
    metrics = write_evaluation(config, model_name, table, training_summary, model_dir,
                               output_dir)
    if hasattr(model, "pos_embedding"):
        from cosmo_sbi import interpret

        figures = interpret.write_attention_figures(model, dataset_path,
                                                    output_dir / plots.FIGURES_DIR, device)
        metrics["figures"].update({key: _relative(path, output_dir)
                                   for key, path in figures.items()})
    elif hasattr(model, "features"):
        from cosmo_sbi import interpret

        figures = interpret.write_grad_cam_figures(model, dataset_path,
                                                   output_dir / plots.FIGURES_DIR, device,
                                                   PARAMETER_NAMES)
        metrics["figures"].update({key: _relative(path, output_dir)
                                   for key, path in figures.items()})
    write_metrics(metrics, output_dir / METRICS_FILE)
    test = metrics.get("test", {}).get("parameters", {})
    for name, values in test.items():
        log.info("%s test %-8s %s", model_name, name, "  ".join(
            f"{key} {values[key]:.4g}" if values[key] is not None else f"{key} -"
            for key in ("slope", "r2", "rmse", "coverage_68")))
    return metrics
