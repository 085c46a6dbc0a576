"""The Fisher bound of the two-point summaries at the fiducial cosmology.

The Cramer-Rao bound of an optimal analysis of the coarse two-point vector
(:class:`cosmo_sbi.summaries.SummarySettings` of the ``fisher:`` section: n(z) in
``n_z_bins`` groups and the multipoles in ``n_k_bins`` k bins over the summaries' k range;
K features, N_total left out as the sum of n(z)):

- derivatives d mu / d theta_p by central finite differences on the derivative design set
  (cosmo_sbi.design): the mean over seeds of (s(+h_p) - s(-h_p)) / (2 h_p), the two sides
  with the same seed (common random numbers: the sample variance cancels);
- covariance C of the features over the N fiducial seeds, inverted with the Hartlap factor
  (N - K - 2) / (N - 1) (unbiased precision for Gaussian features; refused for N <= K + 2);
- F = D C^-1 D^T in physical parameter units; the Latin-hypercube box enters as a Gaussian
  prior of the same width (sigma_p = width_p / sqrt(12), the uniform prior's standard
  deviation); marginalised sigma_p = sqrt((F + F_prior)^-1)_pp, with and without the prior;
- S8 = sigma_8 (Omega_m / 0.3)^0.5 by its Jacobian at the fiducial point;
- convergence: the same bound from the +-h/2 rows (half the step) and from the first half
  of the seeds; a bound that moves by much more than the seed-to-seed noise is not
  converged in the step (too non-linear) or in the number of seeds.

Features are divided by their fiducial standard deviation before inversion (the Fisher
matrix does not depend on a linear rescaling of the data; the covariance is then well
conditioned whatever the units of counts and powers).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.config import Config
from cosmo_sbi.dataset import prior_bounds
from cosmo_sbi.design import DERIVATIVE_STEPS, SIGNS
from cosmo_sbi.io import atomic_path, provenance
from cosmo_sbi.summaries import SummarySettings, summarise_histograms

log = logging.getLogger(__name__)

S8_PIVOT = 0.3
FIGURES_DIR = "figures"


class FisherError(ValueError):
    """The Fisher bound cannot be computed; the message names the input and the problem."""


def central_derivatives(plus: np.ndarray, minus: np.ndarray, step: np.ndarray) -> np.ndarray:
    """d mu / d theta (P, K) from summaries at +-step: ``plus``, ``minus`` (n_seeds, P, K)
    with the same seeds on both sides, ``step`` (P,) > 0."""
    return np.mean(plus - minus, axis=0) / (2 * np.asarray(step)[:, None])


def hartlap_precision(samples: np.ndarray, what: str = "fiducial summaries") -> np.ndarray:
    """Inverse covariance (K, K) of ``samples`` (N, K) times (N - K - 2) / (N - 1)."""
    count, features = samples.shape
    if count <= features + 2:
        raise FisherError(
            f"{what}: {count} samples of {features} features; the Hartlap-corrected precision "
            f"needs more than {features + 2} (design.fiducial.n_simulations > fisher.n_z_bins + "
            "fisher.n_k_bins x len(fisher.multipoles) + 2): add seeds or compress the features")
    covariance = np.atleast_2d(np.cov(samples, rowvar=False))
    return (count - features - 2) / (count - 1) * np.linalg.inv(covariance)


def fisher_matrix(derivatives: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """F = D C^-1 D^T (P, P) for derivatives D (P, K) and precision C^-1 (K, K)."""
    matrix = derivatives @ precision @ derivatives.T
    return 0.5 * (matrix + matrix.T)


def prior_fisher(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Gaussian prior of the box's width: diag(12 / width^2) (P, P)."""
    return np.diag(12.0 / (np.asarray(upper) - np.asarray(lower)) ** 2)


def parameter_covariance(fisher: np.ndarray) -> np.ndarray | None:
    """F^-1, or None when F is not positive definite (a direction without information)."""
    eigenvalues = np.linalg.eigvalsh(fisher)
    if eigenvalues[0] <= 1e-12 * eigenvalues[-1]:
        return None
    return np.linalg.inv(fisher)


def s8_jacobian(theta: np.ndarray) -> np.ndarray:
    """d S8 / d theta (P,) at ``theta`` (PARAMETER_NAMES order)."""
    omega_m, sigma_8 = theta[0], theta[1]
    jacobian = np.zeros(len(theta))
    jacobian[0] = 0.5 * sigma_8 * (omega_m / S8_PIVOT) ** -0.5 / S8_PIVOT
    jacobian[1] = (omega_m / S8_PIVOT) ** 0.5
    return jacobian


def marginal_sigmas(covariance: np.ndarray | None, theta: np.ndarray) -> dict[str, float | None]:
    """Marginalised sigma of the six parameters and S8 (None without a covariance)."""
    names = [*PARAMETER_NAMES, "S8"]
    if covariance is None:
        return dict.fromkeys(names)
    jacobian = s8_jacobian(theta)
    variances = [*np.diag(covariance), jacobian @ covariance @ jacobian]
    return {name: float(np.sqrt(value)) for name, value in zip(names, variances, strict=True)}


def fisher_bound(fiducial: np.ndarray, plus: np.ndarray, minus: np.ndarray, step: np.ndarray,
                 lower: np.ndarray, upper: np.ndarray, theta: np.ndarray) -> dict[str, Any]:
    """Fisher matrix and sigmas from fiducial summaries (N, K) and derivative summaries
    ``plus``, ``minus`` (n_seeds, P, K) at +-``step`` (P,) about ``theta`` (P,)."""
    scale = np.std(fiducial, axis=0, ddof=1)
    if not np.all(scale > 0):
        raise FisherError(f"fiducial summaries: features {np.flatnonzero(~(scale > 0)).tolist()}"
                          " do not vary over the seeds; expected a non-zero variance")
    derivatives = central_derivatives(plus / scale, minus / scale, step)
    fisher = fisher_matrix(derivatives, hartlap_precision(fiducial / scale))
    covariance = parameter_covariance(fisher + prior_fisher(lower, upper))
    return {"fisher_matrix": fisher,
            "sigma": marginal_sigmas(covariance, theta),
            "sigma_no_prior": marginal_sigmas(parameter_covariance(fisher), theta),
            "covariance": covariance, "covariance_no_prior": parameter_covariance(fisher)}


def derivative_arrays(summaries: np.ndarray, ids: Sequence[str], design: Table,
                      design_path: str | os.PathLike[str]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Summaries (n_steps, n_seeds, 2, P, K) by step level (h, h/2), seed, sign (+, -) and
    parameter, the steps (n_steps, P) and the seed indices, from the derivative design."""
    design_ids = list(np.asarray(design["id"]).astype(str))
    missing = [sim_id for sim_id in ids if sim_id not in design_ids]
    if missing:
        raise FisherError(f"{design_path}: no design row for derivative histograms {missing[:5]}")
    rows = design[[design_ids.index(sim_id) for sim_id in ids]]
    parameter = np.array([PARAMETER_NAMES.index(str(name)) for name in rows["parameter"]])
    step = np.asarray(rows["step"], dtype=np.float64)
    full = np.zeros(len(PARAMETER_NAMES))
    np.maximum.at(full, parameter, step)
    level = np.argmin(np.abs(np.asarray(DERIVATIVE_STEPS)[None, :] * full[parameter, None]
                             - step[:, None]), axis=1)
    seeds, seed = np.unique(np.asarray(rows["seed_index"]), return_inverse=True)
    sign = np.array([SIGNS.index(int(value)) for value in rows["sign"]])
    out = np.full((len(DERIVATIVE_STEPS), len(seeds), len(SIGNS), len(PARAMETER_NAMES),
                   summaries.shape[1]), np.nan)
    out[level, seed, sign, parameter] = summaries
    steps = np.full((len(DERIVATIVE_STEPS), len(PARAMETER_NAMES)), np.nan)
    steps[level, parameter] = step
    if np.isnan(out).any() or np.isnan(steps).any():
        raise FisherError(f"{design_path}: the derivative histograms do not cover every seed, "
                          "parameter, step and sign of the design; expected all of its rows")
    return out, steps, seeds


def _relative_change(reference: dict[str, float | None],
                     other: dict[str, float | None]) -> float | None:
    pairs = [(reference[k], other[k]) for k in reference]
    if any(a is None or b is None for a, b in pairs):
        return None
    return float(max(abs(b / a - 1) for a, b in pairs))


def fisher_stage(config: Config, fiducial_paths: Sequence[str | os.PathLike[str]],
                 derivative_paths: Sequence[str | os.PathLike[str]],
                 design_path: str | os.PathLike[str], output_dir: str | os.PathLike[str],
                 workers: int = 1) -> dict[str, Any]:
    """Compute the Fisher bound; write ``output_dir``/fisher.json and the ellipse figure."""
    settings = SummarySettings.from_config(config, "fisher")
    fiducial, _, _ = summarise_histograms(config, fiducial_paths, "fiducial", settings,
                                          total=False, workers=workers)
    summaries, _, ids = summarise_histograms(config, derivative_paths, "derivatives",
                                             settings, total=False, workers=workers)
    design = Table.read(design_path, format="ascii.ecsv")
    derivatives, steps, seeds = derivative_arrays(summaries, ids, design, design_path)
    lower, upper = prior_bounds(config)
    point = config["design"]["fiducial"]["parameters"]
    theta = np.array([point[name] for name in PARAMETER_NAMES], dtype=np.float64)

    def bound(level: int, seed_slice: slice) -> dict[str, Any]:
        chosen = derivatives[level, seed_slice]
        return fisher_bound(fiducial, chosen[:, 0], chosen[:, 1], steps[level], lower, upper,
                            theta)

    main = bound(0, slice(None))
    half_step = bound(1, slice(None))
    convergence: dict[str, Any] = {
        "half_step": {"sigma": half_step["sigma"],
                      "max_relative_change": _relative_change(main["sigma"], half_step["sigma"])},
    }
    if len(seeds) >= 2:
        half_seeds = bound(0, slice(0, len(seeds) // 2))
        convergence["half_seeds"] = {
            "n_seeds": len(seeds) // 2, "sigma": half_seeds["sigma"],
            "max_relative_change": _relative_change(main["sigma"], half_seeds["sigma"])}
    else:
        convergence["half_seeds"] = None
        convergence["note"] = "one derivative seed: no half-seed check (design.derivatives.n_seeds)"
    output_dir = Path(output_dir)
    figure = ellipse_figure(main, theta, output_dir / FIGURES_DIR / "omega_m_sigma_8.png")
    names = settings.feature_names(total=False)
    result = {
        "parameters": [*PARAMETER_NAMES, "S8"],
        "sigma": main["sigma"],
        "sigma_no_prior": main["sigma_no_prior"],
        "prior_sigma": dict(zip(PARAMETER_NAMES, ((upper - lower) / np.sqrt(12)).tolist(),
                                strict=True)),
        "fisher_matrix": main["fisher_matrix"].tolist(),
        "fiducial": dict(zip(PARAMETER_NAMES, theta.tolist(), strict=True)),
        "step": dict(zip(PARAMETER_NAMES, steps[0].tolist(), strict=True)),
        "n_fiducial": len(fiducial), "n_derivative_seeds": len(seeds),
        "features": names, "hartlap_factor": (len(fiducial) - len(names) - 2)
        / (len(fiducial) - 1),
        "convergence": convergence,
        "figures": {"omega_m_sigma_8": f"{FIGURES_DIR}/{figure.name}"},
        "provenance": provenance(fisher=dict(config["fisher"]),
                                 derivatives=dict(config["design"]["derivatives"])),
    }
    with atomic_path(output_dir / "fisher.json") as temporary:
        temporary.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    log.info("Fisher sigma (with prior): %s", result["sigma"])
    return result


def ellipse_figure(bound: dict[str, Any], theta: np.ndarray, path: Path) -> Path:
    """68% and 95% Omega_m-sigma_8 contours, with the prior and (if finite) without."""
    import matplotlib.pyplot as plt

    from cosmo_sbi.plots import LABELS, save_figure

    figure, axis = plt.subplots(figsize=(5.5, 5), layout="constrained")
    angles = np.linspace(0, 2 * np.pi, 200)
    circle = np.stack([np.cos(angles), np.sin(angles)])
    for key, colour, label in (("covariance", "tab:blue", "with LH prior"),
                               ("covariance_no_prior", "tab:orange", "two-point only")):
        covariance = bound[key]
        if covariance is None:
            continue
        block = covariance[:2, :2]
        root = np.linalg.cholesky(block)
        for level, style in ((2.30, "-"), (6.17, "--")):  # Delta chi^2 of 68%, 95% in 2D
            x, y = theta[:2, None] + np.sqrt(level) * root @ circle
            axis.plot(x, y, style, color=colour, label=label if style == "-" else None)
    axis.plot(*theta[:2], "k+")
    axis.set_xlabel(LABELS["Omega_m"])
    axis.set_ylabel(LABELS["sigma_8"])
    axis.set_title("Fisher bound of the two-point summaries (68%, 95%)")
    axis.legend()
    return save_figure(figure, path)
