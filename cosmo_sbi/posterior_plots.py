"""Figures of the posterior stage: per method the TARP expected-coverage curve and the SBC
rank histograms (NPE and, for a network, its Gaussian heads); for the report an overlaid
corner plot of every method's posterior at one fiducial seed. PNG, written atomically."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from cosmo_sbi.plots import LABELS, plt, save_figure
from cosmo_sbi.posterior import POSTERIOR_PARAMETERS

METHOD_COLOURS = {"cnn": "tab:blue", "vit": "tab:red", "two_point": "tab:green",
                  "combined": "tab:purple"}
POSTERIOR_LABELS = {**LABELS, "S8": r"$S_8$"}


def _variants(metrics: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """label -> test metrics: the NPE and, where present, the Gaussian heads."""
    variants = {"NPE": metrics["test"]}
    if "gaussian_heads" in metrics:
        variants["Gaussian heads"] = metrics["gaussian_heads"]["test"]
    return variants


def tarp_figure(metrics: Mapping[str, Any], path: Path) -> Path:
    """ECP against credibility level, with the diagonal of a calibrated posterior."""
    figure, axis = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
    axis.plot([0, 1], [0, 1], color="0.5", ls=":", lw=1)
    for (label, test), style in zip(_variants(metrics).items(), ("-", "--"), strict=False):
        tarp = test["tarp"]
        axis.plot(tarp["alpha"], tarp["ecp"], style, color=METHOD_COLOURS.get(
            metrics["method"], "k"), label=f"{label}: ATC {tarp['atc']:+.3f} ± "
                                           f"{tarp['atc_error']:.3f} ({tarp['verdict']})")
    axis.set(xlabel="credibility level", ylabel="expected coverage",
             title=f"TARP, {metrics['method']}, test split (N = {metrics['test']['n']})")
    axis.legend(fontsize=7, loc="upper left")
    return save_figure(figure, path)


def sbc_figure(metrics: Mapping[str, Any], path: Path) -> Path:
    """Rank histograms per parameter (and S8) with the uniform expectation."""
    figure, axes = plt.subplots(2, 4, figsize=(13, 6), layout="constrained")
    figure.suptitle(f"SBC ranks, {metrics['method']}, test split")
    for (label, test), style in zip(_variants(metrics).items(), ("stepfilled", "step"),
                                    strict=False):
        histogram = np.asarray(test["sbc_histogram"])
        n_bins = test["sbc_n_bins"]
        for index, (axis, name) in enumerate(zip(axes.ravel(), POSTERIOR_PARAMETERS,
                                                 strict=False)):
            axis.stairs(histogram[index], np.linspace(0, 1, n_bins + 1), fill=style ==
                        "stepfilled", alpha=0.5 if style == "stepfilled" else 1.0,
                        label=f"{label} (p {test['parameters'][name]['sbc_chi2_p']:.2g})")
            axis.axhline(test["n"] / n_bins, color="0.4", ls=":", lw=1)
            axis.set(title=POSTERIOR_LABELS[name], xlabel="normalised rank")
            axis.legend(fontsize=6)
    axes.ravel()[-1].set_axis_off()
    return save_figure(figure, path)


def method_figures(metrics: Mapping[str, Any], folder: Path) -> dict[str, Path]:
    """The per-method figures (none without test rows), name -> path."""
    if "test" not in metrics:
        return {}
    return {"tarp": tarp_figure(metrics, folder / "tarp.png"),
            "sbc": sbc_figure(metrics, folder / "sbc.png")}


def corner_figure(samples: Mapping[str, np.ndarray], truth: np.ndarray,
                  bounds: tuple[np.ndarray, np.ndarray], path: Path, title: str) -> Path:
    """Overlaid corner plot: method -> samples (S, 7) at one fiducial seed; truth (7,);
    axis limits from the prior box of the six parameters (S8 from the samples)."""
    n = len(POSTERIOR_PARAMETERS)
    figure, axes = plt.subplots(n, n, figsize=(13, 13), layout="constrained")
    figure.suptitle(title)
    everything = np.concatenate(list(samples.values()))
    limits = [(bounds[0][i], bounds[1][i]) for i in range(n - 1)]
    limits.append(tuple(np.quantile(everything[:, -1], [0.001, 0.999])))
    for row in range(n):
        for column in range(n):
            axis = axes[row, column]
            if column > row:
                axis.set_axis_off()
                continue
            for method, draws in samples.items():
                colour = METHOD_COLOURS.get(method, "k")
                if row == column:
                    axis.hist(draws[:, row], bins=40, range=limits[row], density=True,
                              histtype="step", color=colour, label=method)
                else:
                    _contours(axis, draws[:, column], draws[:, row], limits[column],
                              limits[row], colour)
            if row == column:
                axis.axvline(truth[row], color="k", lw=0.8)
                axis.set_yticks([])
            else:
                axis.plot(truth[column], truth[row], "k+", ms=8)
                axis.set_ylim(limits[row])
            axis.set_xlim(limits[column])
            if row == n - 1:
                axis.set_xlabel(POSTERIOR_LABELS[POSTERIOR_PARAMETERS[column]])
            if column == 0 and row > 0:
                axis.set_ylabel(POSTERIOR_LABELS[POSTERIOR_PARAMETERS[row]])
    axes[0, 0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.1, 1.0))
    return save_figure(figure, path)


def _contours(axis: Any, x: np.ndarray, y: np.ndarray, x_range: tuple, y_range: tuple,
              colour: str) -> None:
    """68% and 95% highest-density contours of a 2D sample histogram."""
    density, x_edges, y_edges = np.histogram2d(x, y, bins=24, range=[x_range, y_range])
    density = ndimage.gaussian_filter(density, 1.0)  # a few thousand samples: smooth a bin
    ordered = np.sort(density.ravel())[::-1]
    cumulative = np.cumsum(ordered) / max(ordered.sum(), 1)
    levels = sorted({ordered[min(np.searchsorted(cumulative, level), len(ordered) - 1)]
                     for level in (0.95, 0.68)})
    if len(levels) < 2 or levels[0] <= 0:
        return
    centres = (x_edges[:-1] + x_edges[1:]) / 2, (y_edges[:-1] + y_edges[1:]) / 2
    axis.contour(*centres, density.T, levels=levels, colors=colour, linewidths=[0.8, 1.4])
