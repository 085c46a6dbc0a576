"""``peaks`` mode: a peak-patch excursion-set halo finder (no mass function put in).

The z = 0 linear field is smoothed on a ladder of radii from ``LARGEST_RADIUS_MPC_H``
down to ``SMALLEST_RADIUS_CELLS`` cells (d ln R = ``RADIUS_STEP``) with a top-hat tapered
by a Gaussian, W(kR) = W_TH(kR) exp(-(0.3 k R)^2 / 2): a pure top-hat rings on the grid
and made counts depend on resolution. A cell collapses at the largest radius where its
smoothed overdensity, grown to the cell's light-cone redshift, reaches the barrier
B(z) = b delta_c(z), delta_c(z) = 1.686 [1 + 0.0123 log10 Omega_m(z)], with
b = ``BARRIER_FACTOR`` calibrated on the Tinker08 mass function (the prototype found 0.95;
ellipsoidal barriers gave 3-5x too few halos without recalibration). The crossing radius
is log-interpolated between the ladder radii. A cell that first crosses at a radius where
it is also a local maximum of the smoothed field (>= its 26 neighbours) is a halo centre
(refined to sub-cell precision), of mass M = 4/3 pi rho_m R^3; centres inside the
Lagrangian patch of a larger halo are dropped. Halos then move with the 2LPT displacement
to their light-cone position.

Resolution floor: completeness reaches ~90% for patches of at least
``FLOOR_RADIUS_CELLS`` = 3 cells in radius (4/3 pi 27 = 113 cell masses); below it the
grid cannot resolve the peaks. One smoothed field lives at a time and per-cell state is a
few scalars, so memory grows as N^3 whatever the number of radii.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from cosmo_sbi import halos
from cosmo_sbi.cosmology import Cosmology
from cosmo_sbi.simulators.embedded.initial_conditions import (
    slab_squared_index,
    slabs,
    squared_wavenumber_table,
    to_real,
)

BARRIER_FACTOR = 0.95
LARGEST_RADIUS_MPC_H = 30.0
SMALLEST_RADIUS_CELLS = 1.5
RADIUS_STEP = 0.08
TAPER = 0.3
FLOOR_RADIUS_CELLS = 3.0

_NEIGHBOURS = np.array([(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                        for dz in (-1, 0, 1) if (dx, dy, dz) != (0, 0, 0)])


def floor_mass(cosmo: Cosmology, cell_size: float) -> float:
    """Mass floor [Msun/h]: a Lagrangian patch of ``FLOOR_RADIUS_CELLS`` cells."""
    return 4.0 / 3.0 * math.pi * cosmo.mean_matter_density * (FLOOR_RADIUS_CELLS * cell_size) ** 3


def smoothing_radii(cell_size: float) -> np.ndarray:
    """Ladder of smoothing radii [Mpc/h], descending, d ln R = ``RADIUS_STEP``."""
    smallest = SMALLEST_RADIUS_CELLS * cell_size
    if smallest >= LARGEST_RADIUS_MPC_H:
        raise ValueError(f"peaks mode: a cell of {cell_size:.3g} Mpc/h is too coarse: the "
                         f"smallest patch ({smallest:.3g} Mpc/h) exceeds the largest "
                         f"({LARGEST_RADIUS_MPC_H} Mpc/h); raise simulator.embedded.grid_size")
    count = math.floor(math.log(LARGEST_RADIUS_MPC_H / smallest) / RADIUS_STEP) + 1
    return LARGEST_RADIUS_MPC_H * np.exp(-RADIUS_STEP * np.arange(count))


def tapered_top_hat(x: np.ndarray) -> np.ndarray:
    """W(x) = 3 (sin x - x cos x) / x^3 exp(-(0.3 x)^2 / 2), x = k R (series near 0)."""
    small = x < 1e-3
    safe = np.where(small, 1.0, x)
    top_hat = np.where(small, 1.0 - x**2 / 10.0,
                       3.0 * (np.sin(safe) - safe * np.cos(safe)) / safe**3)
    return top_hat * np.exp(-0.5 * (TAPER * x) ** 2)


def collapse_barrier(cosmo: Cosmology, z: np.ndarray) -> np.ndarray:
    """Barrier on the z = 0 linear field for collapse by redshift z: b delta_c(z) / D1(z)."""
    delta_c = halos.DELTA_COLLAPSE * (1.0 + 0.0123 * np.log10(cosmo.omega_m_z(z)))
    return BARRIER_FACTOR * delta_c / cosmo.growth_factor(z)


def _smoothed(modes: np.ndarray, squared_index: np.ndarray, box_size: float, radius: float,
              threads: int) -> np.ndarray:
    """The field of ``modes`` filtered by the tapered top-hat of ``radius`` (N^3 float32);
    ``squared_index``: |n|^2 of every mode (rfft layout)."""
    grid_size = modes.shape[0]
    table = squared_wavenumber_table(grid_size, box_size,
                                     lambda k: tapered_top_hat(k * radius)).astype(np.float32)
    return to_real(modes * table[squared_index], grid_size, threads)


def _neighbour_indices(cells: np.ndarray, grid_size: int) -> np.ndarray:
    """Flat indices (N, 26) of the periodic neighbours of flat cells (N,)."""
    index = np.stack(np.unravel_index(cells, (grid_size,) * 3), axis=-1)
    shifted = (index[:, None, :] + _NEIGHBOURS[None, :, :]) % grid_size
    return (shifted[..., 0] * grid_size + shifted[..., 1]) * grid_size + shifted[..., 2]


def _subcell_offset(field: np.ndarray, cells: np.ndarray, grid_size: int) -> np.ndarray:
    """Offsets (N, 3) in cells of the peak of a parabola through each cell and its two
    neighbours along each axis, clipped to +-1/2."""
    index = np.stack(np.unravel_index(cells, (grid_size,) * 3), axis=-1)
    flat = field.ravel()
    centre = flat[cells].astype(np.float64)
    offsets = np.zeros((len(cells), 3))
    for axis in range(3):
        step = np.zeros(3, dtype=np.int64)
        step[axis] = 1
        plus = np.ravel_multi_index(((index + step) % grid_size).T, (grid_size,) * 3)
        minus = np.ravel_multi_index(((index - step) % grid_size).T, (grid_size,) * 3)
        upper, lower = flat[plus].astype(np.float64), flat[minus].astype(np.float64)
        curvature = upper - 2.0 * centre + lower
        safe = np.where(curvature < 0.0, curvature, -1.0)
        offsets[:, axis] = np.where(curvature < 0.0, 0.5 * (lower - upper) / safe, 0.0)
    return np.clip(offsets, -0.5, 0.5)


@dataclass(frozen=True)
class Peaks:
    """Halo centres found by the peak-patch finder (Lagrangian)."""

    cells: np.ndarray  # (H,) flat index of the peak cell
    offset: np.ndarray  # (H, 3) sub-cell offset of the peak [cells]
    radius: np.ndarray  # (H,) Lagrangian patch radius [Mpc/h]


def find_peaks(modes: np.ndarray, cells: np.ndarray, z: np.ndarray, cosmo: Cosmology,
               box_size: float, threads: int = 1) -> Peaks:
    """Peak patches among the Lagrangian ``cells`` (N,) on the light cone at redshifts
    ``z`` (N,), from the unsmoothed z = 0 linear ``modes`` (rfft layout)."""
    grid_size = modes.shape[0]
    radii = smoothing_radii(box_size / grid_size)
    squared_index = np.concatenate([slab_squared_index(grid_size, x_slice).astype(np.int32)
                                    for x_slice in slabs(grid_size)])
    barrier = collapse_barrier(cosmo, np.asarray(z, dtype=np.float64)).astype(np.float32)
    crossing_radius = np.zeros(len(cells))  # 0: not crossed yet
    previous = np.full(len(cells), -np.inf, dtype=np.float32)
    found_cells, found_offsets, found_radii = [], [], []
    for step, radius in enumerate(radii):
        field = _smoothed(modes, squared_index, box_size, radius, threads)
        values = field.ravel()[cells]
        new = np.flatnonzero((crossing_radius == 0.0) & (values >= barrier))
        if step == 0:
            crossing_radius[new] = radius
        else:
            fraction = ((barrier[new] - previous[new])
                        / np.maximum(values[new] - previous[new], 1e-12))
            crossing_radius[new] = radii[step - 1] * np.exp(-RADIUS_STEP * fraction)
        neighbours = field.ravel()[_neighbour_indices(cells[new], grid_size)]
        peak = new[np.all(values[new][:, None] >= neighbours, axis=1)]
        found_cells.append(cells[peak])
        found_offsets.append(_subcell_offset(field, cells[peak], grid_size))
        found_radii.append(crossing_radius[peak])
        previous = values
        del field
    peaks = Peaks(np.concatenate(found_cells), np.concatenate(found_offsets),
                  np.concatenate(found_radii))
    return _exclude_overlaps(peaks, grid_size, box_size)


def _exclude_overlaps(peaks: Peaks, grid_size: int, box_size: float) -> Peaks:
    """Drop centres inside the Lagrangian patch of a larger peak (periodic distances)."""
    if len(peaks.cells) < 2:
        return peaks
    spacing = box_size / grid_size
    index = np.stack(np.unravel_index(peaks.cells, (grid_size,) * 3), axis=-1)
    position = np.mod((index + peaks.offset) * spacing, box_size)
    tree = cKDTree(position, boxsize=box_size)
    pairs = tree.query_pairs(r=float(peaks.radius.max()), output_type="ndarray")
    separation = position[pairs[:, 0]] - position[pairs[:, 1]]
    separation -= box_size * np.round(separation / box_size)
    distance = np.linalg.norm(separation, axis=1)
    first_larger = peaks.radius[pairs[:, 0]] >= peaks.radius[pairs[:, 1]]
    larger = np.where(first_larger, pairs[:, 0], pairs[:, 1])
    smaller = np.where(first_larger, pairs[:, 1], pairs[:, 0])
    inside = distance < peaks.radius[larger]
    keep = np.ones(len(peaks.cells), dtype=bool)
    keep[smaller[inside]] = False
    return Peaks(peaks.cells[keep], peaks.offset[keep], peaks.radius[keep])


def peak_masses(cosmo: Cosmology, radius: np.ndarray) -> np.ndarray:
    """M = 4/3 pi rho_m R^3 [Msun/h] of Lagrangian radii [Mpc/h]."""
    return 4.0 / 3.0 * math.pi * cosmo.mean_matter_density * radius**3
