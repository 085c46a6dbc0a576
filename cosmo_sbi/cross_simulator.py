"""Train on one simulator, test on the other: a trained model applied to histograms made by
another simulator (or another configuration of the same one), with its bias there in units
of its own predicted sigma, beside the same bias on its own simulator.

The standardised bias of a parameter is the mean over simulations of
``(predicted mean - truth) / predicted sigma``: 0 for an unbiased model, and a shift the
model's own error bars do not cover when |bias| approaches 1. Its standard error is the
standard deviation of those pulls over sqrt(N). The other simulator's histograms are
transformed exactly as the training inputs were (the training dataset's transform, mean
and standard deviation), and must have the training histograms' binning.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.config import Config
from cosmo_sbi.dataset import (
    DatasetFile,
    checked_histogram,
    read_dataset,
    unscale_parameters,
    unscale_sigma,
)
from cosmo_sbi.io import atomic_path

OWN_ROWS = {"fiducial": "fiducial", "latin_hypercube": "test"}
"""Rows of the training dataset (its ``split`` column) that a cross set is compared with:
fiducial seeds with the fiducial seeds, a Latin-hypercube set with the test split."""


def standardised_bias(true: np.ndarray, mean: np.ndarray,
                      sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean pull (mean - true) / sigma per parameter (P,) and its standard error (P,)
    (NaN for fewer than 2 simulations). Arrays (N, P)."""
    pulls = (mean - true) / sigma
    if len(pulls) < 2:
        return pulls.mean(axis=0), np.full(pulls.shape[1], np.nan)
    return pulls.mean(axis=0), pulls.std(axis=0, ddof=1) / np.sqrt(len(pulls))


def histogram_inputs(config: Config, training: DatasetFile,
                     histograms: Sequence[str | os.PathLike[str]],
                     set_name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Network inputs (N, 1, D_ra, D_dec, D_z) float32 of other-simulator histograms,
    transformed like the training dataset's, their parameters (N, 6) and simulator name."""
    counts, theta, simulators = [], [], set()
    for path in histograms:
        values, parameters, histogram_attrs = checked_histogram(path, config, set_name)
        counts.append(values)
        theta.append(parameters)
        simulators.add(str(histogram_attrs.get("simulator", "unknown")))
    if len(simulators) != 1:
        raise ValueError(f"histograms come from simulators {sorted(simulators)}; expected one")
    return training.transform(np.stack(counts)[:, None]), np.stack(theta), simulators.pop()


def cross_evaluate(config: Config, model_dir: str | os.PathLike[str],
                   training_dataset: str | os.PathLike[str],
                   histograms: Sequence[str | os.PathLike[str]], set_name: str,
                   output: str | os.PathLike[str]) -> dict[str, Any]:
    """Predict other-simulator ``histograms`` (one design set) with the model trained on
    ``training_dataset``; write and return the standardised biases there and on the
    training dataset's own rows (:data:`OWN_ROWS`) as JSON."""
    from cosmo_sbi.device import select_device
    from cosmo_sbi.evaluate import predict_scaled
    from cosmo_sbi.models.build import load_trained

    device = select_device(config["training"]["device"], local_rank=0)
    model = load_trained(model_dir, map_location=device)
    batch = config["training"]["batch_size"]
    training = read_dataset(training_dataset)
    inputs, theta, simulator = histogram_inputs(config, training, histograms, set_name)
    own = training.rows(OWN_ROWS[set_name])
    own_mean, own_sigma = predict_scaled(model, lambda rows: training.read_inputs(own[rows]),
                                         len(own), device, batch)
    mean, sigma = predict_scaled(model, lambda rows: inputs[rows], len(inputs), device, batch)
    lower, upper = training.prior_lower, training.prior_upper
    results = {}
    for label, true, mean_scaled, sigma_scaled in (("cross", theta, mean, sigma),
                                                   ("own", training.theta[own], own_mean,
                                                    own_sigma)):
        bias, error = standardised_bias(true, unscale_parameters(mean_scaled, lower, upper),
                                        unscale_sigma(sigma_scaled, lower, upper))
        results[label] = (bias, error, len(true))
    report = {
        "trained_on": str(training.attrs.get("simulator", "unknown")),
        "tested_on": simulator, "set": set_name,
        "n_cross": results["cross"][2], "n_own": results["own"][2],
        "parameters": {name: {f"{label}_{key}": _number(values[index])
                              for label, (bias, error, _) in results.items()
                              for key, values in (("bias_sigma", bias),
                                                  ("bias_sigma_stderr", error))}
                       for index, name in enumerate(PARAMETER_NAMES)},
    }
    with atomic_path(output) as temporary:
        Path(temporary).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


CROSS_FOLDER = "cross"
"""Sub-folder of a model's evaluation folder holding one ``<name>.json`` per other set."""


def cross_markdown(evaluation_dirs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Report section (markdown lines) of the cross evaluations found in the models'
    evaluation folders; empty when there are none."""
    rows = []
    for directory in map(Path, evaluation_dirs):
        for path in sorted((directory / CROSS_FOLDER).glob("*.json")):
            report = json.loads(path.read_text())
            cells = [f"{_signed(values['cross_bias_sigma'], values['cross_bias_sigma_stderr'])}"
                     f" (own {_signed(values['own_bias_sigma'], values['own_bias_sigma_stderr'])})"
                     for values in (report["parameters"][name] for name in PARAMETER_NAMES)]
            rows.append(f"| {directory.name} | {path.stem}: {report['tested_on']}, "
                        f"{report['n_cross']} {report['set']} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["", "## Trained on one simulator, tested on another", "",
            "Bias of the predicted means in units of each model's own predicted sigma, "
            "mean of (mean - truth) / sigma ± its standard error, on the other simulator's "
            "histograms and (own) on the model's own fiducial seeds or test split.", "",
            "| model | tested on | " + " | ".join(PARAMETER_NAMES) + " |",
            "|" + "---|" * (2 + len(PARAMETER_NAMES)), *rows]


def _signed(value: float | None, error: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" + (f" ± {error:.2f}" if error is not None else "")
