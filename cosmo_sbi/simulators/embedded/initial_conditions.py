"""Gaussian initial conditions from hashed Fourier modes, and the grid/FFT helpers.

Every Fourier mode of the white noise is a deterministic function of (seed, integer wave
vector): a 64-bit splitmix64 hash gives two uniforms, hence a complex Gaussian
``G = sqrt(-ln u1) exp(i s 2 pi u2)`` with ``<|G|^2> = 1``. The canonical member of each
pair (+n, -n) carries the sign ``s = +1``, so ``G(-n) = conj(G(n))`` holds exactly. The
same seed and box therefore give the same shared modes at any grid size N, and different
seeds give independent fields.

Conventions: the box has side ``L`` [Mpc/h] and ``N^3`` cells; fields are float32 and
use the unnormalised forward FFT, so ``delta(k) = G sqrt(P(k) N^6 / L^3)``. Mode arrays
have the rfft layout ``(N, N, N // 2 + 1)`` (axes x, y, z). The k = 0 mode and the
Nyquist planes are zero.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import scipy.fft

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TWO_POW_MINUS_32 = 2.0**-32
_TWO_POW_MINUS_53 = 2.0**-53

STREAM_NOISE = 0
"""Hash stream of the Fourier-mode white noise (other streams: see the halo modes)."""

PowerOfWavenumber = Callable[[np.ndarray], np.ndarray]
"""k [h/Mpc] (any shape) -> values of the same shape, e.g. P(k) [(Mpc/h)^3]."""


def splitmix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser of uint64 ``values`` (wrapping arithmetic), same shape."""
    with np.errstate(over="ignore"):
        z = values + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def hash_keys(seed: int, *keys: np.ndarray | int) -> np.ndarray:
    """A 64-bit hash of (seed, key_1, key_2, ...); integer keys broadcast together."""
    state = splitmix64(np.asarray(seed, dtype=np.int64).astype(np.uint64))
    for key in keys:
        with np.errstate(over="ignore"):
            state = splitmix64(state ^ np.asarray(key, dtype=np.int64).astype(np.uint64))
    return state


def hashed_uniform(seed: int, *keys: np.ndarray | int) -> np.ndarray:
    """Uniform float64 in (0, 1) with 53 random bits, a pure function of (seed, keys)."""
    bits = hash_keys(seed, *keys) >> np.uint64(11)
    return (bits.astype(np.float64) + 0.5) * _TWO_POW_MINUS_53


def integer_frequencies(grid_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer wave numbers (int64) of the full axes (x, y) and of the rfft axis (z)."""
    full = np.fft.fftfreq(grid_size, d=1.0 / grid_size).round().astype(np.int64)
    half = np.arange(grid_size // 2 + 1, dtype=np.int64)
    return full, half


def _slab_wavevectors(grid_size: int, x_slice: slice) -> tuple[np.ndarray, ...]:
    """Integer wave vector components broadcastable over a slab of x planes."""
    full, half = integer_frequencies(grid_size)
    return full[x_slice, None, None], full[None, :, None], half[None, None, :]


def _nyquist_or_zero(nx: np.ndarray, ny: np.ndarray, nz: np.ndarray, grid_size: int) -> np.ndarray:
    nyquist = grid_size // 2
    return ((nx == -nyquist) | (ny == -nyquist) | (nz == nyquist)
            | ((nx == 0) & (ny == 0) & (nz == 0)))


def white_noise_slab(seed: int, grid_size: int, x_slice: slice) -> np.ndarray:
    """Unit complex Gaussian modes ``G`` (complex64) of the x planes ``x_slice``.

    Shape ``(len(x_slice), N, N // 2 + 1)``; the modes depend only on (seed, n).
    """
    nx, ny, nz = _slab_wavevectors(grid_size, x_slice)
    # Canonical member of (+n, -n): nz > 0, or nz == 0 and (ny > 0 or ny == 0 and nx > 0).
    # Only the nz = 0 plane holds non-canonical modes: hash their partners there.
    bits = hash_keys(seed, STREAM_NOISE, nx, ny, nz)
    plane_x, plane_y = nx[:, :, 0], ny[:, :, 0]
    sign = np.where((plane_y > 0) | ((plane_y == 0) & (plane_x > 0)), 1, -1)
    bits[:, :, 0] = hash_keys(seed, STREAM_NOISE, plane_x * sign, plane_y * sign, 0)
    amplitude = np.sqrt(-np.log(((bits >> np.uint64(32)).astype(np.float64) + 0.5)
                                * _TWO_POW_MINUS_32))
    phase = ((bits & np.uint64(0xFFFFFFFF)).astype(np.float64) + 0.5) * (
        2.0 * np.pi * _TWO_POW_MINUS_32)
    phase[:, :, 0] *= sign
    modes = np.empty(bits.shape, dtype=np.complex64)
    modes.real = amplitude * np.cos(phase)
    modes.imag = amplitude * np.sin(phase)
    modes[np.broadcast_to(_nyquist_or_zero(nx, ny, nz, grid_size), modes.shape)] = 0.0
    return modes


def squared_wavenumber_table(grid_size: int, box_size: float,
                             function: PowerOfWavenumber) -> np.ndarray:
    """``function(k)`` at every integer |n|^2 of the grid (index = |n|^2), float64.

    Radial functions of k on the grid take only these values, so a lookup by |n|^2 is
    exact and avoids evaluating ``function`` at N^3 / 2 modes.
    """
    n_squared = np.arange(3 * (grid_size // 2) ** 2 + 1, dtype=np.float64)
    wavenumber = (2.0 * np.pi / box_size) * np.sqrt(n_squared)
    values = np.zeros_like(wavenumber)
    values[1:] = function(wavenumber[1:])
    return values


def slab_squared_index(grid_size: int, x_slice: slice) -> np.ndarray:
    """|n|^2 (int64) of the modes of a slab of x planes, rfft layout."""
    nx, ny, nz = _slab_wavevectors(grid_size, x_slice)
    return nx * nx + ny * ny + nz * nz


def slabs(grid_size: int, planes_per_slab: int = 16) -> list[slice]:
    """x-plane slices covering the grid, to bound temporary memory."""
    return [slice(start, min(start + planes_per_slab, grid_size))
            for start in range(0, grid_size, planes_per_slab)]


def linear_density_modes(seed: int, grid_size: int, box_size: float,
                         power: PowerOfWavenumber) -> np.ndarray:
    """Linear density modes ``delta(k)`` (complex64, rfft layout) for the power spectrum.

    ``power``: P(k) [(Mpc/h)^3] of the field wanted (e.g. at z = 0), k in h/Mpc.
    """
    if grid_size % 2:
        raise ValueError(f"simulator.embedded.grid_size: expected an even number, got {grid_size}")
    amplitude_table = np.sqrt(squared_wavenumber_table(grid_size, box_size, power)
                              * float(grid_size) ** 6 / box_size**3)
    modes = np.empty((grid_size, grid_size, grid_size // 2 + 1), dtype=np.complex64)
    for x_slice in slabs(grid_size):
        index = slab_squared_index(grid_size, x_slice)
        modes[x_slice] = white_noise_slab(seed, grid_size, x_slice) * amplitude_table[
            index].astype(np.float32)
    return modes


@functools.lru_cache(maxsize=8)
def squared_wavenumber_multiplicity(grid_size: int) -> np.ndarray:
    """Number of grid modes (both members of each +-n pair, no k = 0 and no Nyquist
    planes) at each integer |n|^2 (index = |n|^2)."""
    counts = np.zeros(3 * (grid_size // 2) ** 2 + 1)
    for x_slice in slabs(grid_size):
        nx, ny, nz = _slab_wavevectors(grid_size, x_slice)
        # rfft planes 0 < nz < N/2 stand for two modes (n and -n).
        multiplicity = np.where((nz > 0) & (nz < grid_size // 2), 2.0, 1.0)
        weight = np.where(_nyquist_or_zero(nx, ny, nz, grid_size), 0.0, multiplicity)
        counts += np.bincount((nx * nx + ny * ny + nz * nz).ravel(),
                              weights=np.broadcast_to(weight, np.broadcast_shapes(
                                  nx.shape, ny.shape, nz.shape)).ravel(),
                              minlength=len(counts))
    return counts


def grid_variance(grid_size: int, box_size: float, power: PowerOfWavenumber) -> float:
    """Ensemble variance of a real field on the grid with spectrum ``power`` (no k = 0,
    no Nyquist planes): sum over modes of P(k) / L^3."""
    table = squared_wavenumber_table(grid_size, box_size, power)
    return float(np.dot(squared_wavenumber_multiplicity(grid_size), table)) / box_size**3


def wavevector_components(grid_size: int, box_size: float) -> tuple[np.ndarray, ...]:
    """k_x, k_y, k_z [h/Mpc] (float32) broadcastable over the rfft layout."""
    full, half = integer_frequencies(grid_size)
    fundamental = np.float32(2.0 * np.pi / box_size)
    return (fundamental * full.astype(np.float32)[:, None, None],
            fundamental * full.astype(np.float32)[None, :, None],
            fundamental * half.astype(np.float32)[None, None, :])


def to_real(modes: np.ndarray, grid_size: int, threads: int) -> np.ndarray:
    """Inverse real FFT of rfft-layout ``modes`` to an (N, N, N) float32 field."""
    return scipy.fft.irfftn(modes, s=(grid_size,) * 3, workers=threads, overwrite_x=True)


def to_modes(field: np.ndarray, threads: int) -> np.ndarray:
    """Forward real FFT of an (N, N, N) float32 field (complex64, rfft layout)."""
    return scipy.fft.rfftn(field, workers=threads, overwrite_x=True)
