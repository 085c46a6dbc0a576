"""Evaluate a trained model: predictions, metrics and figures.

The headline numbers come from the Latin-hypercube TEST split, where the truth spans the
prior box: the slope of predicted on true separates information (slope near 1) from
shrinkage to the prior centre (slope near 0), which a seed study at one fiducial cosmology
cannot do (w0 = -1 and wa = 0 sit exactly at the centre of their prior ranges). The fiducial
seeds then give the scatter and bias at one cosmology.

Outputs in ``output_dir`` (formats in cosmo_sbi.outputs): ``predictions.ecsv`` (one row per
simulation: id, set, split and per parameter ``<name>_true``, ``<name>_mean``,
``<name>_sigma`` in physical units), ``metrics.json`` (cosmo_sbi.metrics), a copy of the
training ``history.csv`` and the PNG figures under ``figures/``, listed (relative to
``output_dir``) in ``metrics.json["figures"]``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from astropy.table import Table

from cosmo_sbi import PARAMETER_NAMES, plots
from cosmo_sbi.config import Config
from cosmo_sbi.dataset import DatasetFile, read_dataset, unscale_parameters, unscale_sigma
from cosmo_sbi.device import select_device
from cosmo_sbi.io import atomic_path, provenance
from cosmo_sbi.metrics import COVERAGE_LEVELS, metrics_from_predictions, mixture_moments
from cosmo_sbi.models import network
from cosmo_sbi.models.build import load_trained
from cosmo_sbi.outputs import (
    HISTORY_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    TRAINING_SUMMARY_FILE,
    read_history,
    read_training_summary,
    write_metrics,
    write_predictions,
)

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_scaled(model: torch.nn.Module, read_inputs: Callable[[np.ndarray], np.ndarray],
                   count: int, device: torch.device,
                   batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sigma (N, 6) in the unit prior box of ``count`` inputs, in batches;
    ``read_inputs(rows)`` gives the inputs (len(rows), 1, D, D, D) of row indices ``rows``
    (e.g. ``DatasetFile.read_inputs``)."""
    model.eval()
    means, sigmas = [], []
    for start in range(0, count, batch_size):
        rows = np.arange(start, min(start + batch_size, count))
        x = torch.as_tensor(read_inputs(rows), device=device)
        mean, log_var = model(x)[:2]
        means.append(mean.double().cpu().numpy())
        sigmas.append(torch.exp(0.5 * log_var.double()).cpu().numpy())
    return np.concatenate(means), np.concatenate(sigmas)


def predictions_table(data: DatasetFile, mean_scaled: np.ndarray,
                      sigma_scaled: np.ndarray) -> Table:
    """Predictions in physical units, one row per simulation of the dataset file."""
    table = Table({"id": data.ids, "set": data.sets, "split": data.splits})
    table.meta.update(prior_lower=data.prior_lower.tolist(),
                      prior_upper=data.prior_upper.tolist())
    mean = unscale_parameters(mean_scaled, data.prior_lower, data.prior_upper)
    sigma = unscale_sigma(sigma_scaled, data.prior_lower, data.prior_upper)
    for index, name in enumerate(PARAMETER_NAMES):
        table[f"{name}_true"] = data.theta[:, index]
        table[f"{name}_mean"] = mean[:, index]
        table[f"{name}_sigma"] = sigma[:, index]
    return table


def write_evaluation(config: Config, model_name: str, table: Table,
                     training_summary: Mapping[str, Any], model_dir: Path,
                     output_dir: Path) -> dict[str, Any]:
    """Write the predictions, a copy of the history and the per-model figures; return the
    metrics (written to metrics.json by the caller, last)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    table.meta.update(provenance(model=model_name, model_dir=os.fspath(model_dir)))
    write_predictions(table, output_dir / PREDICTIONS_FILE)
    history_path = model_dir / HISTORY_FILE
    histories = {}
    if history_path.exists():  # copied so the report needs only the evaluation folders
        with atomic_path(output_dir / HISTORY_FILE) as temporary:
            shutil.copyfile(history_path, temporary)
        histories[model_name] = read_history(history_path)
    figures = plots.standard_figures({model_name: table}, histories,
                                     output_dir / plots.FIGURES_DIR)
    return {
        "model": model_name,
        "loss": config["training"]["loss"],
        "coverage_levels": list(COVERAGE_LEVELS),
        **metrics_from_predictions(table),
        "training": dict(training_summary),
        "figures": {key: _relative(path, output_dir) for key, path in figures.items()},
        **provenance(),
    }


def _relative(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def ensemble_summary(model_dirs: Sequence[Path]) -> dict[str, Any]:
    """The training summary of the first member, with ``ensemble``: every member's folder,
    seed, best epoch and best validation loss (absent for a single network)."""
    summaries = [read_training_summary(path / TRAINING_SUMMARY_FILE) for path in model_dirs]
    if len(summaries) == 1:
        return summaries[0]
    members = [{"model_dir": os.fspath(path), **{key: summary.get(key) for key in
                                                  ("seed", "best_epoch", "best_val_loss")}}
               for path, summary in zip(model_dirs, summaries, strict=True)]
    return {**summaries[0], "ensemble": members}


def evaluate_model(config: Config, model_name: str, dataset_path: str | os.PathLike[str],
                   model_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                   output_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Predict every simulation of the dataset with the trained model; write the evaluation.

    Several ``model_dir`` (an ensemble: training.ensemble_seeds) are evaluated as their
    equal-weight Gaussian mixture (cosmo_sbi.metrics.mixture_moments); the history and the
    figures of the first member stand for the training. For a network with attention maps
    (the registry's ``attention_maps``, the ViT), the attention and position-embedding
    figures of cosmo_sbi.interpret are added; for one with ``grad_cam`` (the CNN), its
    Grad-CAM maps per parameter. Returns the metrics written to ``metrics.json`` (written
    last: it is the rule's completion marker).
    """
    model_dirs = ([Path(model_dir)] if isinstance(model_dir, (str, os.PathLike))
                  else [Path(path) for path in model_dir])
    output_dir = Path(output_dir)
    device = select_device(config["training"]["device"], local_rank=0)
    data = read_dataset(dataset_path)
    models = [load_trained(path, map_location=device) for path in model_dirs]
    means, sigmas = zip(*(predict_scaled(model, data.read_inputs, len(data.ids), device,
                                         config["training"]["batch_size"])
                          for model in models), strict=True)
    mean_scaled, sigma_scaled = mixture_moments(means, sigmas)  # one network: itself
    table = predictions_table(data, mean_scaled, sigma_scaled)
    training_summary, model_dir = ensemble_summary(model_dirs), model_dirs[0]
    metrics = write_evaluation(config, model_name, table, training_summary, model_dir,
                               output_dir)
    if network(model_name).attention_maps:
        from cosmo_sbi import interpret

        figures = interpret.write_attention_figures(models[0], data,
                                                    output_dir / plots.FIGURES_DIR, device)
        metrics["figures"].update({key: _relative(path, output_dir)
                                   for key, path in figures.items()})
    if network(model_name).grad_cam:
        from cosmo_sbi import interpret

        figures = interpret.write_grad_cam_figures(models[0], data,
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
