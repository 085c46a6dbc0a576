"""Second-order Lagrangian perturbation theory (2LPT) on the grid, sampled at chosen cells.

With phi_ij = k_i k_j delta(k) / k^2 (the tidal tensor of the linear potential) and
S = sum_{i<j} (phi_ii phi_jj - phi_ij^2):

    psi1(k) = i k delta(k) / k^2,    psi2(k) = -i k S(k) / k^2,
    x(q, z) = q + D1(z) psi1(q) + D2(z) psi2(q),   D2 ~ -3/7 D1^2 < 0,

for the z = 0 linear field ``delta`` smoothed by a Gaussian of radius R. Only the values
at the requested cells are kept, and at most four N^3 float32 fields are alive at once
(plus the input modes and the values kept), so memory grows as N^3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cosmo_sbi.simulators.embedded.initial_conditions import (
    to_modes,
    to_real,
    wavevector_components,
)


@dataclass(frozen=True)
class LagrangianFields:
    """2LPT displacement fields at a set of Lagrangian cells (float32)."""

    psi1: np.ndarray  # (N, 3) first-order displacement [Mpc/h] for D1 = 1
    psi2: np.ndarray  # (N, 3) second-order displacement [Mpc/h] for D2 = 1


def smoothing_kernel(grid_size: int, box_size: float, radius: float) -> np.ndarray:
    """Gaussian kernel exp(-k^2 R^2 / 2) (float32, broadcastable over the rfft layout)."""
    kx, ky, kz = wavevector_components(grid_size, box_size)
    return np.exp(-0.5 * (kx * kx + ky * ky + kz * kz) * np.float32(radius) ** 2)


def _inverse_k_squared(grid_size: int, box_size: float) -> np.ndarray:
    kx, ky, kz = wavevector_components(grid_size, box_size)
    k_squared = kx * kx + ky * ky + kz * kz
    k_squared[0, 0, 0] = 1.0
    inverse = 1.0 / k_squared
    inverse[0, 0, 0] = 0.0
    return inverse


def lpt_fields_at(smoothed: np.ndarray, cells: np.ndarray, box_size: float,
                  threads: int = 1) -> LagrangianFields:
    """2LPT displacements at flat cell indices ``cells``.

    ``smoothed``: smoothed z = 0 linear modes (complex64, rfft layout, unnormalised
    forward FFT; see ``smoothing_kernel``), left unchanged. 13 FFTs.
    """
    grid_size = smoothed.shape[0]
    inverse_k2 = _inverse_k_squared(grid_size, box_size)
    wavevector = wavevector_components(grid_size, box_size)

    def sample(modes: np.ndarray) -> np.ndarray:
        return to_real(modes, grid_size, threads).ravel()[cells]

    psi1 = np.stack([sample(1j * k * inverse_k2 * smoothed) for k in wavevector], axis=-1)

    def tidal(i: int, j: int) -> np.ndarray:
        return to_real(wavevector[i] * wavevector[j] * inverse_k2 * smoothed, grid_size, threads)

    phi_xx, phi_yy = tidal(0, 0), tidal(1, 1)
    source = phi_xx * phi_yy
    phi_xx += phi_yy
    del phi_yy
    phi_zz = tidal(2, 2)
    phi_xx *= phi_zz
    source += phi_xx
    del phi_xx, phi_zz
    for i, j in ((0, 1), (0, 2), (1, 2)):
        off_diagonal = tidal(i, j)
        off_diagonal *= off_diagonal
        source -= off_diagonal
        del off_diagonal
    source_modes = to_modes(source, threads)
    del source
    psi2 = np.stack([sample(-1j * k * inverse_k2 * source_modes) for k in wavevector], axis=-1)
    return LagrangianFields(psi1=psi1, psi2=psi2)


def smoothed_overdensity_at(smoothed: np.ndarray, cells: np.ndarray, box_size: float,
                            radius: float, target_radius: float, threads: int = 1) -> np.ndarray:
    """Overdensity (N,) float32 at ``cells`` of modes already smoothed with a Gaussian of
    ``radius``, smoothed further to ``target_radius`` >= radius [Mpc/h] (kernels compose:
    R_total^2 = R_1^2 + R_2^2). One FFT."""
    extra = np.sqrt(max(target_radius**2 - radius**2, 0.0))
    kernel = smoothing_kernel(smoothed.shape[0], box_size, extra)
    return to_real(smoothed * kernel, smoothed.shape[0], threads).ravel()[cells]
