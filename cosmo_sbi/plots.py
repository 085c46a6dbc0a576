"""Evaluation figures (matplotlib, Agg backend, PNG), for one model or side by side.

Every function takes ``predictions``: model name -> predictions table (cosmo_sbi.outputs),
draws the CNN in blue and the ViT in red, writes ``path`` atomically and returns it (None
when the tables hold nothing to draw, e.g. no fiducial rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from astropy.table import Table  # noqa: E402

from cosmo_sbi import PARAMETER_NAMES  # noqa: E402
from cosmo_sbi.dataset import FIDUCIAL_SPLIT  # noqa: E402
from cosmo_sbi.io import atomic_path  # noqa: E402
from cosmo_sbi.metrics import (  # noqa: E402
    coverage_curve,
    parameter_arrays,
    r_squared,
    regression_slope,
)
from cosmo_sbi.models import MODEL_NAMES  # noqa: E402

FIGURES_DIR = "figures"
"""Sub-folder of an evaluation or report folder that holds its PNG figures."""
MODEL_COLOURS = dict(zip(MODEL_NAMES, ("tab:blue", "tab:red", "tab:green", "tab:purple",
                                       "tab:orange", "tab:brown"), strict=False))
"""Colour of each network, in registry order (the CNN blue, the ViT red)."""
LABELS = {"Omega_m": r"$\Omega_m$", "sigma_8": r"$\sigma_8$", "w0": r"$w_0$", "wa": r"$w_a$",
          "n_s": r"$n_s$", "h": r"$h$"}
DPI = 120


def _colour(model: str) -> str:
    return MODEL_COLOURS.get(model, "tab:gray")


def _parameter_grid(title: str) -> tuple[plt.Figure, np.ndarray]:
    figure, axes = plt.subplots(2, 3, figsize=(12, 7.5), layout="constrained")
    figure.suptitle(title)
    return figure, axes.ravel()


def _models_with_rows(
    predictions: Mapping[str, Table], split: str
) -> list[tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """(model, (true, mean, sigma)) for every model whose table has rows in ``split``."""
    arrays = [(model, parameter_arrays(table, split)) for model, table in predictions.items()]
    return [(model, rows) for model, rows in arrays if len(rows[0])]


def save_figure(figure: plt.Figure, path: Path) -> Path:
    """Write ``figure`` as PNG atomically (no software tag: identical bytes each run); close it."""
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(figure)
    return path


def _prior_box(table: Table) -> tuple[np.ndarray, np.ndarray] | None:
    if "prior_lower" not in table.meta:
        return None
    return np.asarray(table.meta["prior_lower"]), np.asarray(table.meta["prior_upper"])


def predicted_vs_true(predictions: Mapping[str, Table], path: Path,
                      split: str = "test") -> Path | None:
    """Predicted mean +- sigma against the truth, one panel per parameter, on ``split``."""
    models = _models_with_rows(predictions, split)
    if not models:
        return None
    figure, axes = _parameter_grid(f"Latin-hypercube {split} split: predicted vs true")
    for model, (true, mean, sigma) in models:
        with np.errstate(divide="ignore", invalid="ignore"):  # nan for a single simulation
            slope, r2 = regression_slope(true, mean), r_squared(true, mean)
        for index, axis in enumerate(axes):
            axis.errorbar(true[:, index], mean[:, index], yerr=sigma[:, index], fmt="o",
                          ms=3, lw=0.8, alpha=0.7, color=_colour(model),
                          label=f"{model}: slope {slope[index]:.2f}, $R^2$ {r2[index]:.2f}")
    box = _prior_box(next(iter(predictions.values())))
    for index, (axis, name) in enumerate(zip(axes, PARAMETER_NAMES, strict=True)):
        low, high = (box[0][index], box[1][index]) if box else axis.get_xlim()
        axis.plot([low, high], [low, high], "k--", lw=1, label="truth")
        axis.axhline((low + high) / 2, color="0.6", lw=0.8, ls=":", label="prior centre")
        axis.set_xlabel(f"true {LABELS[name]}")
        axis.set_ylabel(f"predicted {LABELS[name]}")
        axis.legend(fontsize=7, loc="upper left")
    return save_figure(figure, path)


def fiducial_histograms(predictions: Mapping[str, Table], path: Path) -> Path | None:
    """Histograms of the predicted means over the fiducial seeds; the truth as a line."""
    models = _models_with_rows(predictions, FIDUCIAL_SPLIT)
    if not models:
        return None
    figure, axes = _parameter_grid("Fiducial cosmology: predicted means over seeds")
    for model, (true, mean, _) in models:
        spread = mean.std(axis=0, ddof=1) if len(mean) > 1 else np.full(mean.shape[1], np.nan)
        for index, axis in enumerate(axes):
            axis.hist(mean[:, index], bins="auto", histtype="stepfilled", alpha=0.45,
                      color=_colour(model),
                      label=f"{model}: {mean[:, index].mean():.4g} "
                            f"$\\pm$ {spread[index]:.2g}")
            axis.axvline(true[0, index], color="k", lw=1.2)
    box = _prior_box(next(iter(predictions.values())))
    for index, (axis, name) in enumerate(zip(axes, PARAMETER_NAMES, strict=True)):
        if box:
            axis.set_xlim(box[0][index], box[1][index])  # the prior: shrinkage is visible
            axis.axvline((box[0][index] + box[1][index]) / 2, color="0.6", lw=0.8, ls=":")
        axis.set_xlabel(f"predicted {LABELS[name]} (solid: truth; dotted: prior centre)")
        axis.legend(fontsize=7)
    return save_figure(figure, path)


def coverage(predictions: Mapping[str, Table], path: Path, split: str = "test") -> Path | None:
    """Empirical against expected coverage of central Gaussian intervals on ``split``."""
    levels = np.linspace(0.02, 0.98, 49)
    models = _models_with_rows(predictions, split)
    if not models:
        return None
    figure, axes = _parameter_grid(f"Calibration on the {split} split (Gaussian intervals)")
    for model, (true, mean, sigma) in models:
        empirical = coverage_curve(true, mean, sigma, levels)
        for index, axis in enumerate(axes):
            axis.plot(levels, empirical[:, index], color=_colour(model), label=model)
    for axis, name in zip(axes, PARAMETER_NAMES, strict=True):
        axis.plot([0, 1], [0, 1], "k--", lw=1)
        axis.set_xlabel("expected coverage")
        axis.set_ylabel("empirical coverage")
        axis.set_title(LABELS[name])
        axis.legend(fontsize=7, loc="upper left")
    return save_figure(figure, path)


def training_curves(histories: Mapping[str, Mapping[str, np.ndarray]], path: Path) -> Path:
    """Every ``*loss*`` column of each model's history against epoch (validation dashed)."""
    figure, axis = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for model, history in histories.items():
        epochs = history.get("epoch", np.arange(1, len(next(iter(history.values()))) + 1))
        for column, values in history.items():
            if "loss" not in column:
                continue
            style = "--" if ("val" in column or "valid" in column) else "-"
            axis.plot(epochs, values, style, color=_colour(model), label=f"{model} {column}")
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss")
    axis.set_title("Training curves")
    axis.legend(fontsize=8)
    return save_figure(figure, path)


def standard_figures(predictions: Mapping[str, Table],
                     histories: Mapping[str, Mapping[str, np.ndarray]],
                     folder: Path) -> dict[str, Path]:
    """The figures of every evaluation (one model) and of the report (all models) in
    ``folder``: predicted vs true, fiducial histograms, coverage, training curves."""
    figures = {
        "predicted_vs_true": predicted_vs_true(predictions, folder / "predicted_vs_true.png"),
        "fiducial": fiducial_histograms(predictions, folder / "fiducial.png"),
        "coverage": coverage(predictions, folder / "coverage.png"),
        "training_curves": (training_curves(histories, folder / "training_curves.png")
                            if histories else None),
    }
    return {name: path for name, path in figures.items() if path is not None}
