"""Initial conditions and 2LPT of the embedded simulator: hashed Fourier modes (exact
Hermitian symmetry, resolution consistency, seed independence), the power spectrum of the
realised field, and the 2LPT displacement against an analytic case."""

from __future__ import annotations

import numpy as np
import pytest

from cosmo_sbi.cosmology import Cosmology
from cosmo_sbi.simulators.embedded.initial_conditions import (
    grid_variance,
    integer_frequencies,
    linear_density_modes,
    slabs,
    to_modes,
    to_real,
    white_noise_slab,
)
from cosmo_sbi.simulators.embedded.lpt import lpt_fields_at, smoothed_overdensity_at
from tests.conftest import FIDUCIAL_PARAMETERS

FIDUCIAL = FIDUCIAL_PARAMETERS


def white_noise(seed: int, grid_size: int) -> np.ndarray:
    return np.concatenate([white_noise_slab(seed, grid_size, part) for part in slabs(grid_size)])


def shared_block(modes: np.ndarray, half: int) -> np.ndarray:
    """Modes with |n_x|, |n_y| < half and 0 <= n_z < half, in a grid-independent order."""
    grid_size = modes.shape[0]
    axis = np.r_[0:half, grid_size - half + 1:grid_size]
    return modes[np.ix_(axis, axis, np.arange(half))]


def test_white_noise_is_hermitian_and_unit_variance() -> None:
    grid_size = 32
    noise = white_noise(7, grid_size)
    full, _ = integer_frequencies(grid_size)
    # kz = 0 plane: G(-n) = conj(G(n)) exactly (index of -n is (-i) mod N).
    plane = noise[:, :, 0]
    mirrored = plane[(-np.arange(grid_size)) % grid_size][:, (-np.arange(grid_size)) % grid_size]
    assert np.array_equal(plane, np.conj(mirrored))
    # An exactly Hermitian spectrum survives irfft -> rfft to float32 round-off.
    back = to_modes(to_real(noise.copy(), grid_size, 1), 1)
    assert np.max(np.abs(back - noise)) < 1e-5
    # <|G|^2> = 1 over the ~16k non-zero modes: |G|^2 is Exp(1), std of the mean 1/sqrt(n)
    # = 0.008; 0.04 is 5 sigma.
    power = np.abs(noise[full != -grid_size // 2][:, full != -grid_size // 2, 1:-1]) ** 2
    assert abs(power.mean() - 1.0) < 0.04


def test_shared_modes_identical_across_grid_sizes() -> None:
    coarse, fine = white_noise(11, 32), white_noise(11, 64)
    assert np.array_equal(shared_block(coarse, 16), shared_block(fine, 16))
    power = lambda k: 1e4 * k / (1.0 + (k / 0.02) ** 2)  # noqa: E731
    delta_coarse = linear_density_modes(11, 32, 800.0, power) / np.float32(32**3)
    delta_fine = linear_density_modes(11, 64, 800.0, power) / np.float32(64**3)
    # Same modes up to float32 rounding of the amplitude sqrt(P N^6 / L^3) / N^3.
    np.testing.assert_allclose(shared_block(delta_coarse, 16), shared_block(delta_fine, 16),
                               rtol=1e-5, atol=0)


def test_different_seeds_are_independent() -> None:
    first, second = white_noise(1, 32).ravel(), white_noise(2, 32).ravel()
    nonzero = np.abs(first) > 0
    correlation = np.abs(np.vdot(first[nonzero], second[nonzero])) / nonzero.sum()
    # |<G1* G2>| of n independent unit complex Gaussians ~ 1/sqrt(n) = 0.008; 5 sigma.
    assert correlation < 5.0 / np.sqrt(nonzero.sum())
    assert not np.array_equal(first, second)


def test_realised_power_spectrum_matches_linear_theory() -> None:
    cosmo = Cosmology.from_params(FIDUCIAL)
    grid_size, box_size = 128, 1000.0
    modes = linear_density_modes(3, grid_size, box_size, cosmo.linear_power)
    full, half = integer_frequencies(grid_size)
    n = np.sqrt(full[:, None, None] ** 2 + full[None, :, None] ** 2 + half[None, None, :] ** 2)
    k = 2 * np.pi / box_size * n
    measured = np.abs(modes) ** 2 * box_size**3 / float(grid_size) ** 6
    edges = np.arange(1, grid_size // 2, 4)  # shells in |n|, below the Nyquist planes
    shell = np.digitize(n, edges)
    usable = (shell > 0) & (shell < len(edges)) & (half[None, None, :] > 0)
    ratio = measured[usable] / cosmo.linear_power(k[usable])
    counts = np.bincount(shell[usable])[1:]
    means = np.bincount(shell[usable], weights=ratio)[1:] / counts
    # Each shell averages N_k independent complex modes (|delta|^2 / P ~ Exp(1)): relative
    # scatter 1/sqrt(N_k). Every shell within 4 sigma, and all shells together within 1%.
    assert np.all(np.abs(means - 1.0) < 4.0 / np.sqrt(counts))
    assert abs(np.average(means, weights=counts) - 1.0) < 0.01
    # The grid variance used for the bias weights is the ensemble variance of the field.
    field = to_real(modes, grid_size, 2)
    expected = grid_variance(grid_size, box_size, cosmo.linear_power)
    # Field variance in a 1 (Gpc/h)^3 box scatters by ~1% (large-scale modes); allow 3%.
    assert abs(field.var() / expected - 1.0) < 0.03


def test_2lpt_of_two_crossed_plane_waves() -> None:
    """delta = A cos(k x) + A cos(k y): psi1_x = -(A / k) sin(k x) and, with
    S = phi_xx phi_yy - phi_xy^2 = A^2 cos(k x) cos(k y), psi2_x = (A^2 / 2k) sin(kx) cos(ky).
    """
    grid_size, box_size, amplitude, wave = 32, 320.0, 0.1, 3
    k = 2 * np.pi * wave / box_size
    x = np.arange(grid_size) * box_size / grid_size
    gx, gy = np.meshgrid(x, x, indexing="ij")
    delta = np.broadcast_to((amplitude * (np.cos(k * gx) + np.cos(k * gy)))[:, :, None],
                            (grid_size,) * 3).astype(np.float32)
    cells = np.arange(grid_size**3)
    modes = to_modes(delta.copy(), 1)
    fields = lpt_fields_at(modes, cells, box_size)
    gx3 = np.broadcast_to(gx[:, :, None], (grid_size,) * 3).ravel()
    gy3 = np.broadcast_to(gy[:, :, None], (grid_size,) * 3).ravel()
    np.testing.assert_allclose(fields.psi1[:, 0], -amplitude / k * np.sin(k * gx3), atol=1e-4)
    np.testing.assert_allclose(fields.psi2[:, 0],
                               amplitude**2 / (2 * k) * np.sin(k * gx3) * np.cos(k * gy3),
                               atol=1e-5)
    np.testing.assert_allclose(fields.psi2[:, 2], 0.0, atol=1e-6)
    np.testing.assert_allclose(smoothed_overdensity_at(modes, cells, box_size, 0.0, 0.0),
                               delta.ravel(), atol=1e-6)


@pytest.mark.parametrize("seed", [0, 2**62 + 5])
def test_modes_are_a_pure_function_of_seed(seed: int) -> None:
    assert np.array_equal(white_noise(seed, 16), white_noise(seed, 16))
