"""Calibration of the embedded sampler's large-scale halo bias against another simulator:
the ratio r = b_other / b_embedded measured from the fiducial histograms of both, and the
config overlay ``simulator.embedded.bias_ratio`` that makes the sampler use it.

Estimator. Each histogram's shot-noise-subtracted power monopole P0 (the project's
two-point estimator, :func:`cosmo_sbi.summaries.two_point_summaries`, grid units) is
averaged over its lowest ``k_bins`` k bins; the seeds' mean of that average gives
R = <P0>_other / <P0>_embedded, with the error of a ratio of two independent means (each
from its seeds' scatter, sigma / sqrt(N)). Both sets must hold the same cosmology and
binning (hence the same mass cut and linear power), so R is the ratio of the two
monopoles' amplitudes. The histograms are in redshift space, so the monopole is
(b^2 + 2 b f / 3 + f^2 / 5) P_lin (Kaiser): sqrt(R) underestimates the bias ratio of
biased tracers (by ~2.5% for r = 1.25, b = 1.8, f = 0.7). The measured ratio solves
K(b_other) = R K(b_embedded) for b_other, with b_embedded and f the embedded sampler's
own model (bias_ratio x Tinker10 over its mass function in the window, and the growth
rate, weighted as in :func:`cosmo_sbi.simulators.embedded.analytic.mean_halo_bias`):

    r = (-f / 3 + sqrt(R K(b_e) - 4 f^2 / 45)) / b_e.

r depends weakly on b_e (a 6% error in b_e moves r by ~0.2% at r = 1.25). The written
``bias_ratio`` is r times the embedded histograms' own ``bias_ratio``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.config import Config
from cosmo_sbi.cosmology import Cosmology
from cosmo_sbi.io import atomic_path
from cosmo_sbi.simulators.embedded.analytic import mean_halo_bias
from cosmo_sbi.simulators.embedded.geometry import ConeWindow
from cosmo_sbi.simulators.embedded.simulate import EmbeddedSettings
from cosmo_sbi.summaries import SummarySettings, summarise_histograms

MIN_SEEDS = 3
"""Histograms needed per simulator: the error comes from the seeds' scatter."""


class BiasCalibrationError(ValueError):
    """The histograms cannot give a bias ratio; the message says why."""


@dataclass(frozen=True)
class LowKPower:
    """One simulator's histograms: the low-k P0 average (N,) [cell^3] and counts (N,)."""

    power: np.ndarray
    count: np.ndarray
    theta: np.ndarray  # (6,) the common cosmology

    @property
    def mean(self) -> float:
        return float(self.power.mean())

    @property
    def relative_error(self) -> float:
        """Standard error of the mean over the mean."""
        return float(self.power.std(ddof=1) / math.sqrt(len(self.power)) / self.mean)


@dataclass(frozen=True)
class BiasRatio:
    """The measurement: r = b_other / b_embedded and its error, the monopole ratio R
    (sqrt(R) is r without the Kaiser term), the model b_embedded and f used, the k range
    [rad/cell] and the mean halo counts per histogram."""

    ratio: float
    error: float
    power_ratio: float
    power_ratio_error: float
    embedded_bias: float
    growth_rate: float
    k_max_rad_per_cell: float
    other_seeds: int
    embedded_seeds: int
    other_mean_count: float
    embedded_mean_count: float


def low_k_power(config: Config, paths: Sequence[str | os.PathLike[str]], set_name: str,
                k_bins: int, label: str) -> LowKPower:
    """P0 averaged over the lowest ``k_bins`` k bins of every histogram of ``paths``
    (checked against ``config``'s binning and ``set_name``); ``label`` names the set in
    errors. The histograms must share one cosmology."""
    if len(paths) < MIN_SEEDS:
        raise BiasCalibrationError(f"{label}: {len(paths)} histograms; expected at least "
                                   f"{MIN_SEEDS} seeds (the error comes from their scatter)")
    settings = dataclasses.replace(SummarySettings.from_config(config), multipoles=(0,))
    n_k = len(settings.k_edges) - 1
    if not 1 <= k_bins <= n_k:
        raise BiasCalibrationError(f"k_bins = {k_bins}: expected 1 to {n_k} (the k bins of "
                                   "summaries.k_bin_width on histogram.bins)")
    rows, theta, _ = summarise_histograms(config, paths, set_name, settings)
    if not np.allclose(theta, theta[0], rtol=1e-12, atol=0):
        raise BiasCalibrationError(f"{label}: the histograms hold different cosmologies; "
                                   "expected seeds of one cosmology (the fiducial set)")
    power = rows[:, -n_k:][:, :k_bins].mean(axis=1)
    return LowKPower(power=power, count=rows[:, 0], theta=theta[0])


def embedded_bias_model(config: Config, theta: np.ndarray) -> tuple[float, float]:
    """(b, f): the embedded sampler's large-scale bias (``bias_ratio`` x Tinker10 over its
    mass function above the histogram mass cut) and the growth rate in the window."""
    settings = EmbeddedSettings.from_config(config["simulator"]["embedded"])
    cosmo = Cosmology.from_params({**dict(zip(PARAMETER_NAMES, theta, strict=True)),
                                   **config["design"]["fixed"]})
    bias, growth_rate = mean_halo_bias(
        cosmo, ConeWindow.from_config(config), float(config["histogram"]["min_mass_msun_h"]),
        mass_function=settings.mass_function, ratio=settings.mass_function_ratio)
    return settings.bias_ratio * bias, growth_rate


def kaiser_bias_ratio(power_ratio: float, embedded_bias: float,
                      growth_rate: float) -> tuple[float, float]:
    """r solving K(r b_e) = R K(b_e), K(b) = b^2 + 2 b f / 3 + f^2 / 5, and dr / dR."""
    f = growth_rate
    kaiser = embedded_bias**2 + 2.0 * embedded_bias * f / 3.0 + f**2 / 5.0
    root = math.sqrt(power_ratio * kaiser - 4.0 * f**2 / 45.0)
    return (root - f / 3.0) / embedded_bias, kaiser / (2.0 * root * embedded_bias)


def measure_bias_ratio(config: Config, other: Sequence[str | os.PathLike[str]],
                       embedded: Sequence[str | os.PathLike[str]], set_name: str = "fiducial",
                       k_bins: int = 2) -> BiasRatio:
    """b_other / b_embedded from the ``other`` and ``embedded`` histograms of ``set_name``
    (module docstring); ``config`` is the embedded configuration that made ``embedded``."""
    other_power = low_k_power(config, other, set_name, k_bins, "other simulator")
    embedded_power = low_k_power(config, embedded, set_name, k_bins, "embedded simulator")
    if not np.allclose(other_power.theta, embedded_power.theta, rtol=1e-12, atol=0):
        raise BiasCalibrationError(
            f"the two simulators' histograms hold different cosmologies ({other_power.theta} "
            f"and {embedded_power.theta}); expected the same (both fiducial sets)")
    for label, power in (("other simulator", other_power), ("embedded", embedded_power)):
        if power.mean <= 0:
            raise BiasCalibrationError(
                f"{label}: the mean low-k P0 is {power.mean:.3g} <= 0 (shot noise dominates); "
                "expected more halos, more seeds or more k bins")
    power_ratio = other_power.mean / embedded_power.mean
    power_ratio_error = power_ratio * math.hypot(other_power.relative_error,
                                                 embedded_power.relative_error)
    bias, growth_rate = embedded_bias_model(config, embedded_power.theta)
    ratio, slope = kaiser_bias_ratio(power_ratio, bias, growth_rate)
    settings = SummarySettings.from_config(config)
    return BiasRatio(ratio=ratio, error=slope * power_ratio_error, power_ratio=power_ratio,
                     power_ratio_error=power_ratio_error, embedded_bias=bias,
                     growth_rate=growth_rate, k_max_rad_per_cell=settings.k_edges[k_bins],
                     other_seeds=len(other_power.power),
                     embedded_seeds=len(embedded_power.power),
                     other_mean_count=float(other_power.count.mean()),
                     embedded_mean_count=float(embedded_power.count.mean()))


def write_bias_calibration(config: Config, other: Sequence[str | os.PathLike[str]],
                           embedded: Sequence[str | os.PathLike[str]],
                           output: str | os.PathLike[str], set_name: str = "fiducial",
                           k_bins: int = 2) -> BiasRatio:
    """Measure the ratio and write the config overlay ``output`` (YAML) setting
    ``simulator.embedded.bias_ratio`` to r times the current one; the measurement is in
    its header."""
    result = measure_bias_ratio(config, other, embedded, set_name, k_bins)
    current = float(config["simulator"]["embedded"]["bias_ratio"])
    overlay = {"simulator": {"embedded": {"bias_ratio": round(current * result.ratio, 4)}}}
    header = "".join(f"# {line}\n" for line in (
        "b_other / b_embedded measured by cosmo-sbi calibrate-bias from the P0 of "
        f"{result.other_seeds} + {result.embedded_seeds} {set_name} histograms",
        f"(k < {result.k_max_rad_per_cell:.3f} rad/cell): r = {result.ratio:.4f} +- "
        f"{result.error:.4f}; sqrt(P0 ratio) = {math.sqrt(result.power_ratio):.4f}",
        f"Kaiser with b_embedded = {result.embedded_bias:.3f}, f = {result.growth_rate:.3f}; "
        f"halos per histogram {result.other_mean_count:.0f} (other) and "
        f"{result.embedded_mean_count:.0f} (embedded)",
        f"bias_ratio = {current:g} (embedded runs) x r"))
    with atomic_path(output) as temporary:
        Path(temporary).write_text(header + yaml.safe_dump(overlay, sort_keys=False))
    return result
