"""Toy light cones and histograms made by the real writers, for tests and benchmarks.

Each simulation of a design gets a toy light cone whose halo number grows with Omega_m and
sigma_8 (so a network has something to learn), written with cosmo_sbi.lightcone and binned
with cosmo_sbi.histogram exactly as the workflow does. :func:`toy_config` is the CI preset
``config/tiny.yaml`` with a coarser binning and more simulations (it reads the presets from
the source tree, where tests and benchmarks run).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cosmo_sbi.config import Config, check_config, deep_merge, load_config, validate_schema
from cosmo_sbi.design import design_table
from cosmo_sbi.histogram import histogram_lightcone_file
from cosmo_sbi.lightcone import lightcone_provenance, write_lightcone

REPOSITORY = Path(__file__).resolve().parents[1]
TINY_PRESET = REPOSITORY / "config" / "tiny.yaml"
TOY_LAYER: dict[str, Any] = {
    "histogram": {"bins": [8, 8, 8]},
    "design": {"latin_hypercube": {"n_simulations": 40}, "fiducial": {"n_simulations": 6},
               "derivatives": {"n_seeds": 0}},
}
"""What the toy config changes in config/tiny.yaml: 8^3 bins (the toy halos are uniform,
finer bins teach nothing), 40 + 6 simulations (every split gets several cosmologies) and
no Fisher derivative set (6 fiducial seeds are too few for its covariance)."""


def toy_config(overlay: dict[str, Any] | None = None) -> Config:
    """config.yaml + config/tiny.yaml + TOY_LAYER + ``overlay``, validated and checked."""
    base = load_config([REPOSITORY / "config.yaml", TINY_PRESET])
    return check_config(validate_schema(deep_merge(deep_merge(base, TOY_LAYER),
                                                   overlay or {})))


def toy_halos(row: dict[str, Any], config: Config) -> dict[str, np.ndarray]:
    """Halos uniform in the histogram window; their number rises with Omega_m and sigma_8."""
    rng = np.random.default_rng(int(row["seed"]) % 2**32)
    window = config["histogram"]
    mean_count = 4000.0 * (row["Omega_m"] / 0.3) ** 2 * (row["sigma_8"] / 0.8) ** 4
    count = int(rng.poisson(mean_count))
    z_obs = rng.uniform(*window["z_obs"], count)
    cut = window["min_mass_msun_h"]
    return {"ra": rng.uniform(*window["ra_deg"], count),
            "dec": rng.uniform(*window["dec_deg"], count),
            "z_cos": z_obs, "z_obs": z_obs,
            "mass": cut * (1.0 + rng.exponential(1.0, count)) * np.where(
                rng.uniform(size=count) < 0.1, 0.5, 1.0)}  # 10% below the mass cut


def write_histograms(config: Config, directory: Path,
                     halos: Callable[[dict[str, Any], Config], dict[str, np.ndarray]] = toy_halos,
                     keep_lightcones: bool = True) -> dict[str, list[Path]]:
    """Toy light cones (``halos``: :func:`toy_halos` or :func:`grf_halos`) under
    ``directory``/lightcones/{set}/{id}.h5 (deleted after binning unless ``keep_lightcones``)
    and their histograms under ``directory``/{set}/{id}.h5, for both design sets; returns
    set -> histogram paths."""
    paths: dict[str, list[Path]] = {}
    for set_name in ("latin_hypercube", "fiducial"):
        table = design_table(config, set_name)
        paths[set_name] = []
        for table_row in table:
            row = {name: table_row[name].item() for name in table.colnames if name != "id"}
            row.update(id=str(table_row["id"]), set=set_name)
            lightcone = directory / "lightcones" / set_name / f"{row['id']}.h5"
            write_lightcone(lightcone, halos(row, config), lightcone_provenance(row, "toy", {}))
            histogram = directory / set_name / f"{row['id']}.h5"
            histogram_lightcone_file(config, lightcone, histogram)
            if not keep_lightcones:
                lightcone.unlink()
            paths[set_name].append(histogram)
    return paths


# ------------------------------------------------- Gaussian random field (known Fisher bound)
#
# A field whose information is all in its power spectrum: delta, a zero-mean Gaussian random
# field on the histogram grid (N^3 cells, periodic), with P(k) = A (k / k0)^n per mode, k in
# radians per cell (k_i = 2 pi m_i / N, m the FFT index), P(0) = 0; counts are Poisson draws
# of nbar (1 + delta) (delta clipped at -1, which the amplitudes below make rare: at most
# ~4e-6 of the cells, at the prior's corner sigma_8 = 0.85, n_s = 1.1). Its counts / nbar - 1
# have the power P_tot = P + 1 / nbar per mode.
#
# Fisher bound. For a Gaussian field with a circulant covariance (eigenvalues P_tot(k) over
# all N^3 FFT modes, both k and -k), -ln L = 1/2 sum_k [ln P_tot(k) + I(k) / P_tot(k)] with
# I(k) = |FFT(x)(k)|^2 / N^3, and the Fisher matrix of theta = (ln A, n) is exactly
#     F_ij = sum_shells (1/2) N_k  d ln P_tot / d theta_i  d ln P_tot / d theta_j,
# N_k the number of FFT modes (k != 0) of the shell. Assumptions: Gaussian field (the Poisson
# draw is Gaussian white noise only for large nbar: nbar = 50 here), periodic grid (no window,
# no mode coupling), no clipping. The bound on (sigma_8, n_s) follows through the Jacobian
# of the map below: F_theta = J^T F J.

GRF_GRID = 16
"""Cells per side of the field (the toy histogram's bins)."""
GRF_NBAR = 50.0
"""Mean count per cell: shot noise 1 / nbar = 0.02 per mode."""
GRF_K0 = np.pi / 2
"""Pivot of the power law [rad / cell]: half the Nyquist frequency."""
GRF_AMPLITUDE = 0.03
"""A at sigma_8 = 0.8 (the field's rms is 0.13 at sigma_8 = 0.8, n_s = 1; 0.09-0.22 over
the prior box of config.yaml)."""
GRF_SLOPE = -1.0
"""n at n_s = 1."""


def grf_parameters(sigma_8: np.ndarray, n_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ln A, n) of the field from (sigma_8, n_s): ln A = ln A0 + 10 (sigma_8 - 0.8),
    n = n0 + 10 (n_s - 1), so that config.yaml's prior box spans ln A +-0.5 and n +-1; the
    Fisher bounds, sigma(sigma_8) 0.006-0.009 and sigma(n_s) 0.009-0.016, are 1/4 of the
    prior's standard deviations or less."""
    return (np.log(GRF_AMPLITUDE) + 10.0 * (np.asarray(sigma_8) - 0.8),
            GRF_SLOPE + 10.0 * (np.asarray(n_s) - 1.0))


def grf_cosmology(log_amplitude: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """(sigma_8, n_s), shape (..., 2): the inverse of :func:`grf_parameters`."""
    return np.stack([0.8 + (np.asarray(log_amplitude) - np.log(GRF_AMPLITUDE)) / 10.0,
                     1.0 + (np.asarray(slope) - GRF_SLOPE) / 10.0], axis=-1)


GRF_JACOBIAN = np.diag([10.0, 10.0])
"""d(ln A, n) / d(sigma_8, n_s) of :func:`grf_parameters`."""


def grf_shells(grid: int = GRF_GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The FFT modes of an N^3 grid grouped by |k|: (index (N, N, N) of each mode's shell,
    -1 for k = 0; k (S,) [rad / cell]; N_k (S,) modes per shell)."""
    m = np.fft.fftfreq(grid) * grid
    m2 = (m[:, None, None] ** 2 + m[None, :, None] ** 2 + m[None, None, :] ** 2).astype(int)
    values, index, counts = np.unique(m2, return_inverse=True, return_counts=True)
    index = index.reshape(m2.shape) - 1  # shell 0 is k = 0
    return index, 2 * np.pi * np.sqrt(values[1:]) / grid, counts[1:]


def grf_power(log_amplitude: np.ndarray, slope: np.ndarray, k: np.ndarray) -> np.ndarray:
    """P(k) = A (k / k0)^n per mode, shape (..., S) for parameters of shape (...)."""
    log_amplitude, slope = np.asarray(log_amplitude)[..., None], np.asarray(slope)[..., None]
    return np.exp(log_amplitude + slope * np.log(k / GRF_K0))


def grf_fisher(log_amplitude: float | np.ndarray, slope: float | np.ndarray,
               nbar: float = GRF_NBAR, grid: int = GRF_GRID,
               k_max: float = np.inf) -> np.ndarray:
    """Fisher matrix (..., 2, 2) of (ln A, n) from the modes with k <= k_max (formula above)."""
    _, k, n_k = grf_shells(grid)
    power = grf_power(log_amplitude, slope, k)
    fraction = power / (power + 1.0 / nbar)  # d ln P_tot / d ln A
    derivatives = np.stack([fraction, fraction * np.log(k / GRF_K0)], axis=-1)
    weights = 0.5 * n_k * (k <= k_max)
    return np.einsum("...s,...si,...sj->...ij", np.broadcast_to(weights, power.shape),
                     derivatives, derivatives)


def grf_counts(log_amplitude: float, slope: float, rng: np.random.Generator,
               nbar: float = GRF_NBAR, grid: int = GRF_GRID) -> np.ndarray:
    """One Poisson-sampled field: counts (N, N, N) int64 with mean nbar (1 + delta)."""
    index, k, _ = grf_shells(grid)
    amplitude = np.where(index >= 0, np.sqrt(grf_power(log_amplitude, slope, k))[index], 0.0)
    delta = np.fft.ifftn(np.fft.fftn(rng.standard_normal((grid,) * 3)) * amplitude).real
    return rng.poisson(nbar * np.clip(1.0 + delta, 0.0, None))


def grf_power_estimate(counts: np.ndarray, nbar: float = GRF_NBAR) -> np.ndarray:
    """Shell means of I(k) = |FFT(counts / nbar - 1)|^2 / N^3, shape (..., S), for counts of
    shape (..., N, N, N)."""
    grid = counts.shape[-1]
    index, _, n_k = grf_shells(grid)
    periodogram = np.abs(np.fft.fftn(counts / nbar - 1.0, axes=(-3, -2, -1))) ** 2 / grid**3
    flat = periodogram.reshape(*counts.shape[:-3], -1)[..., index.ravel() >= 0]
    shells = index.ravel()[index.ravel() >= 0]
    sums = np.zeros((*counts.shape[:-3], len(n_k)))
    np.add.at(sums, (..., shells), flat)
    return sums / n_k


def grf_maximum_likelihood(power: np.ndarray, nbar: float = GRF_NBAR, grid: int = GRF_GRID,
                           k_max: float = np.inf, iterations: int = 30) -> np.ndarray:
    """Maximum-likelihood (ln A, n), shape (..., 2), from shell powers (..., S) of
    :func:`grf_power_estimate`, by Fisher scoring (Newton with the expected Hessian) from
    the centre of the prior; uses only the modes with k <= k_max."""
    _, k, n_k = grf_shells(grid)
    weights = 0.5 * n_k * (k <= k_max)
    theta = np.broadcast_to(np.array([np.log(GRF_AMPLITUDE), GRF_SLOPE]),
                            (*power.shape[:-1], 2)).copy()
    for _ in range(iterations):
        model = grf_power(theta[..., 0], theta[..., 1], k)
        total = model + 1.0 / nbar
        derivatives = np.stack([model / total, model / total * np.log(k / GRF_K0)], axis=-1)
        score = np.einsum("s,...s,...si->...i", weights, power / total - 1.0, derivatives)
        fisher = np.einsum("s,...si,...sj->...ij", weights, derivatives, derivatives)
        theta += np.linalg.solve(fisher, score[..., None])[..., 0]
    return theta


def grf_halos(row: dict[str, Any], config: Config) -> dict[str, np.ndarray]:
    """Halos of one Gaussian-field toy: :func:`grf_counts` at (sigma_8, n_s) of ``row``, each
    halo placed uniformly inside its histogram cell (above the mass cut), so that the
    histogram stage gives back the field's counts exactly."""
    rng = np.random.default_rng(int(row["seed"]) % 2**32)
    window = config["histogram"]
    grid = window["bins"][0]
    if list(window["bins"]) != [grid] * 3:
        raise ValueError(f"histogram.bins: the Gaussian-field toy needs a cubic grid, "
                         f"got {window['bins']}")
    counts = grf_counts(*grf_parameters(row["sigma_8"], row["n_s"]), rng, grid=grid)
    cells = np.repeat(np.arange(counts.size), counts.ravel())
    position = (np.stack(np.unravel_index(cells, counts.shape), axis=-1)
                + rng.uniform(0.05, 0.95, (len(cells), 3))) / grid
    ra, dec, z_obs = (low + (high - low) * position[:, axis] for axis, (low, high) in
                      enumerate((window["ra_deg"], window["dec_deg"], window["z_obs"])))
    return {"ra": ra, "dec": dec, "z_cos": z_obs, "z_obs": z_obs,
            "mass": np.full(len(cells), 2.0 * window["min_mass_msun_h"])}


GRF_TOLERANCE = 1.2
"""An estimator reaches the Fisher bound when its rms error is at most 1.2 x the bound."""


def grf_bound(sigma_8: np.ndarray, n_s: np.ndarray) -> np.ndarray:
    """Fisher bounds (..., 2) on (sigma_8, n_s) of the Gaussian-field toy at each cosmology."""
    fisher = grf_fisher(*grf_parameters(sigma_8, n_s))
    return np.sqrt(np.diagonal(np.linalg.inv(GRF_JACOBIAN.T @ fisher @ GRF_JACOBIAN),
                               axis1=-2, axis2=-1))


def bound_ratio(true: np.ndarray, estimate: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """rms error / rms Fisher bound per parameter over M simulations: ``estimate`` (M, P),
    ``true`` and ``bound`` (M, P) or (P,) (<= GRF_TOLERANCE: the estimator reaches the bound)."""
    estimate = np.asarray(estimate)
    error = np.sqrt(np.mean((estimate - true) ** 2, axis=0))
    return error / np.sqrt(np.mean(np.broadcast_to(bound, estimate.shape) ** 2, axis=0))
