"""Calibration of posteriors from their SAMPLES: TARP, SBC ranks and credible-interval
coverage, pure numpy, so that the same code checks a normalising-flow posterior and samples
drawn from a network's Gaussian heads.

Shapes: ``samples`` (N, S, P) = S posterior samples for each of N simulations and P
parameters; ``truths`` (N, P) the parameters the simulations were run with.

- **TARP** (Lemos, Coogan et al. 2023, arXiv 2302.03026; the algorithm of
  ``sbi.diagnostics.tarp``): for each simulation a random reference point in the prior box;
  the credibility of the truth is the fraction of samples closer to the reference than the
  truth. Its empirical CDF is the expected coverage probability (ECP) curve, the diagonal for
  a calibrated posterior. The area statistic ATC = integral over alpha in [0.5, 1] of
  (ECP - alpha) (sbi's ``check_tarp``): < 0 over-confident, > 0 under-confident; its error is
  the standard deviation over bootstrap resamplings of the simulations. Unlike sbi's
  ``_run_tarp`` the ECP is evaluated on a fixed alpha grid (no histogram whose bin count
  depends on N, which fails below 10 simulations).
- **SBC** (Talts et al. 2018, arXiv 1804.06788): per parameter, the rank of the truth among
  the samples is uniform on 0..S for a calibrated posterior; uniformity is tested with a chi^2
  test on the rank histogram (sensitive to the U shape of over-confidence) and a KS test
  (sensitive to bias), as ``sbi.diagnostics.check_sbc`` does with KS.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

TARP_THRESHOLD = 0.03
"""Default tolerance on |ATC|. Measured on exact Gaussian posteriors (2 and 6 parameters,
100 to 1000 simulations): calibrated |ATC| <= 0.02, its bootstrap error 0.015 at N = 100 and
0.005 at N = 1000; widths halved give ATC -0.05 to -0.08, widths doubled +0.07 to +0.10
(|ATC| is at most 0.125)."""
MIN_TARP_SIMULATIONS = 10
"""Below this many simulations the TARP verdict is ``inconclusive`` (the bootstrap of a
handful of credibilities understates the error; one simulation gives none)."""
SBC_ALPHA = 0.01
"""Default significance of the SBC uniformity tests (chi^2 and KS, each at SBC_ALPHA / 2)."""
ALPHA_GRID = np.linspace(0.0, 1.0, 101)
"""Credibility levels at which the TARP ECP curve is evaluated."""


def _check_shapes(samples: np.ndarray, truths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    samples = np.asarray(samples, dtype=np.float64)
    truths = np.asarray(truths, dtype=np.float64)
    if samples.ndim != 3 or truths.shape != (samples.shape[0], samples.shape[2]):
        raise ValueError(f"samples {samples.shape} and truths {truths.shape}: expected "
                         "(N, S, P) and (N, P)")
    return samples, truths


def tarp_credibility(samples: np.ndarray, truths: np.ndarray, lower: np.ndarray,
                     upper: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Credibility (N,) of each truth: the fraction of its samples closer (Euclidean distance
    in the box scaled to unit width) to a reference drawn uniformly in [lower, upper] than
    the truth is."""
    samples, truths = _check_shapes(samples, truths)
    width = np.asarray(upper, dtype=np.float64) - np.asarray(lower, dtype=np.float64)
    references = lower + width * rng.random(truths.shape)
    sample_distance = np.linalg.norm((samples - references[:, None, :]) / width, axis=-1)
    truth_distance = np.linalg.norm((truths - references) / width, axis=-1)
    return np.mean(sample_distance < truth_distance[:, None], axis=1)


def ecp_curve(credibility: np.ndarray, alpha: np.ndarray = ALPHA_GRID) -> np.ndarray:
    """Expected coverage probability (..., L) at ``alpha`` (L,): the fraction of credibilities
    (..., N) at or below each level."""
    return np.mean(credibility[..., :, None] <= alpha, axis=-2)


def area_to_curve(ecp: np.ndarray, alpha: np.ndarray = ALPHA_GRID) -> np.ndarray:
    """ATC (...,): integral of ECP - alpha over alpha >= 0.5 (trapezoid rule)."""
    upper_half = alpha >= 0.5
    return np.trapezoid(ecp[..., upper_half] - alpha[upper_half], alpha[upper_half], axis=-1)


def tarp(samples: np.ndarray, truths: np.ndarray, lower: np.ndarray, upper: np.ndarray, *,
         threshold: float = TARP_THRESHOLD, n_bootstrap: int = 200,
         seed: int = 0) -> dict[str, Any]:
    """TARP test of N posteriors given by samples (N, S, P), truths (N, P) and the prior box
    [lower, upper] (P,) in which references are drawn.

    Returns ``alpha`` and ``ecp`` (L,) lists, ``atc``, its bootstrap ``atc_error``, the
    ``threshold`` and ``verdict``: ``inconclusive`` with fewer than MIN_TARP_SIMULATIONS
    or a bootstrap error above the threshold (too few simulations to tell), else ``pass``
    if |ATC| <= threshold, ``fail`` if |ATC| also exceeds twice its error, ``inconclusive``
    otherwise.
    """
    rng = np.random.default_rng(seed)
    credibility = tarp_credibility(samples, truths, lower, upper, rng)
    ecp = ecp_curve(credibility)
    atc = float(area_to_curve(ecp))
    resampled = credibility[rng.integers(0, len(credibility), (n_bootstrap, len(credibility)))]
    atc_error = float(np.std(area_to_curve(ecp_curve(resampled)), ddof=1))
    if len(credibility) < MIN_TARP_SIMULATIONS or atc_error > threshold:
        verdict = "inconclusive"
    elif abs(atc) <= threshold:
        verdict = "pass"
    else:
        verdict = "fail" if abs(atc) > 2 * atc_error else "inconclusive"
    return {"alpha": ALPHA_GRID.tolist(), "ecp": ecp.tolist(), "atc": atc,
            "atc_error": atc_error, "threshold": threshold, "verdict": verdict,
            "n": len(credibility)}


def sbc_ranks(samples: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """Rank (N, P) of each truth among its S samples: the number of samples below it (0..S)."""
    samples, truths = _check_shapes(samples, truths)
    return np.sum(samples < truths[:, None, :], axis=1)


def sbc(samples: np.ndarray, truths: np.ndarray, *, n_bins: int | None = None,
        alpha: float = SBC_ALPHA) -> dict[str, Any]:
    """Per-parameter SBC: rank histograms and uniformity tests.

    Returns ``n_bins``, ``n_samples`` and per parameter index (lists of length P):
    ``histogram`` (P, n_bins) counts, ``chi2_p`` and ``ks_p`` p-values and ``flagged``
    (either p-value below alpha / 2: the ranks are not uniform, the posterior is
    mis-calibrated). ``n_bins`` defaults to N / 5 (at least 5 expected per bin), 2 to 20.
    """
    ranks = sbc_ranks(samples, truths)
    n_sims, n_samples = samples.shape[0], samples.shape[1]
    n_bins = n_bins or int(np.clip(n_sims // 5, 2, 20))
    # ranks 0..S in n_bins equal groups of the S + 1 possible values
    bins = np.minimum(ranks * n_bins // (n_samples + 1), n_bins - 1)
    histogram = np.stack([np.bincount(column, minlength=n_bins) for column in bins.T])
    expected = n_sims / n_bins
    chi2 = np.sum((histogram - expected) ** 2 / expected, axis=1)
    chi2_p = stats.chi2.sf(chi2, n_bins - 1)
    # uniform on [0, 1] with the discreteness of the ranks spread over each step
    unit = (ranks + 0.5) / (n_samples + 1)
    ks_p = np.array([stats.kstest(column, "uniform").pvalue for column in unit.T])
    flagged = np.minimum(chi2_p, ks_p) < alpha / 2
    return {"n_bins": n_bins, "n_samples": n_samples, "n": n_sims, "alpha": alpha,
            "histogram": histogram.tolist(), "chi2_p": chi2_p.tolist(),
            "ks_p": ks_p.tolist(), "flagged": flagged.tolist()}


def credible_interval_coverage(samples: np.ndarray, truths: np.ndarray,
                               level: float) -> np.ndarray:
    """Fraction (P,) of truths inside the central credible interval of probability ``level``
    (sample quantiles)."""
    samples, truths = _check_shapes(samples, truths)
    low, high = np.quantile(samples, [0.5 - level / 2, 0.5 + level / 2], axis=1)
    return np.mean((truths >= low) & (truths <= high), axis=0)


def gaussian_samples(mean: np.ndarray, sigma: np.ndarray, n_samples: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Samples (N, S, P) of independent Gaussians of ``mean`` and ``sigma`` (N, P): a
    network's Gaussian heads in the form the calibration tests take."""
    mean, sigma = np.asarray(mean, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    noise = rng.standard_normal((mean.shape[0], n_samples, mean.shape[1]))
    return mean[:, None, :] + sigma[:, None, :] * noise
