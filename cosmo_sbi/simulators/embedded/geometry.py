"""Light-cone geometry of the embedded simulator: the window, the box that holds it, and
the light-cone redshift of displaced Lagrangian cells.

The frame is the one of :mod:`cosmo_sbi.lightcone` (and of the PINOCCHIO stage): the
observer sits at the origin, the cone axis is +x, RA = atan2(y, x), DEC = asin(z / r).
The periodic box of side L is unrolled once around the cone: every point of the periodic
volume has exactly one image in the axis-aligned cube ``[origin, origin + L)^3`` that
is centred on the cone's bounding box. The cone fits when its bounding box is no larger
than L along every axis (depth ``chi_max - cos(ra) cos(dec) chi_min``, width
``2 sin(20 deg) chi_max`` for the default window); otherwise halos would repeat. Where
the cone comes closer to a face than the displacements reach, cells displaced through
that face re-enter from the opposite one; the candidate search and the light-cone
iteration follow them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from cosmo_sbi import Config
from cosmo_sbi.cosmology import Cosmology
from cosmo_sbi.lightcone import radec_from_cartesian

_BOUNDARY_SAMPLES = 401
_TABLE_NODES = 4096


@dataclass(frozen=True)
class ConeWindow:
    """The simulated part of the sky and redshift: RA, DEC [deg] and z_cos ranges."""

    ra_deg: tuple[float, float]
    dec_deg: tuple[float, float]
    z_cos: tuple[float, float]

    @classmethod
    def from_config(cls, config: Config) -> ConeWindow:
        """The histogram window, with z_cos padded by ``lightcone.z_padding`` on both sides
        (z_obs scatters around z_cos by the peculiar velocities)."""
        hist = config["histogram"]
        padding = config["lightcone"]["z_padding"]
        z_low, z_high = hist["z_obs"]
        return cls(ra_deg=tuple(map(float, hist["ra_deg"])),
                   dec_deg=tuple(map(float, hist["dec_deg"])),
                   z_cos=(float(z_low - padding), float(z_high + padding)))

    def contains(self, ra: np.ndarray, dec: np.ndarray, z_cos: np.ndarray) -> np.ndarray:
        """Boolean mask of points inside the window (half-open in every coordinate)."""
        return ((ra >= self.ra_deg[0]) & (ra < self.ra_deg[1])
                & (dec >= self.dec_deg[0]) & (dec < self.dec_deg[1])
                & (z_cos >= self.z_cos[0]) & (z_cos < self.z_cos[1]))

    def distance_range(self, cosmo: Cosmology) -> tuple[float, float]:
        """Comoving distances [Mpc/h] of the window's redshift limits."""
        chi = cosmo.comoving_distance(np.asarray(self.z_cos))
        return float(chi[0]), float(chi[1])

    def bounding_box(self, cosmo: Cosmology) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper corners (3,) [Mpc/h] of the cone's axis-aligned bounding box.

        Extremes of x, y, z over the window lie on its angular boundary or on the axis
        planes, at chi_min or chi_max; a dense sampling of those finds them.
        """
        chi_min, chi_max = self.distance_range(cosmo)
        ra = np.linspace(*self.ra_deg, _BOUNDARY_SAMPLES)
        dec = np.linspace(*self.dec_deg, _BOUNDARY_SAMPLES)
        ra_grid, dec_grid = np.meshgrid(np.append(ra, np.clip(0.0, *self.ra_deg)),
                                        np.append(dec, np.clip(0.0, *self.dec_deg)))
        directions = unit_vectors(ra_grid.ravel(), dec_grid.ravel())
        points = np.concatenate([chi_min * directions, chi_max * directions])
        return points.min(axis=0), points.max(axis=0)


def cone_extent(window: ConeWindow, cosmo: Cosmology) -> np.ndarray:
    """Size (3,) [Mpc/h] of the cone's axis-aligned bounding box: depth along the axis,
    then the two widths. A periodic box of side L holds the window without repeating a
    halo exactly when every size is <= L (two points of the window then never differ by
    a lattice vector)."""
    lower, upper = window.bounding_box(cosmo)
    return upper - lower


def largest_cone_extent(config: Config) -> tuple[np.ndarray, Cosmology]:
    """Largest cone size (3,) [Mpc/h] over the prior's extreme cosmologies, and that
    cosmology.

    Distances depend on Omega_m, w0 and wa only (in Mpc/h) and change monotonically with
    each (E(z) rises with each of them while w < 0), so the extremes are the corners of
    the Latin-hypercube ranges; the fiducial cosmology is checked too.
    """
    ranges = config["design"]["latin_hypercube"]["ranges"]
    fiducial = {**config["design"]["fiducial"]["parameters"], **config["design"]["fixed"]}
    window = ConeWindow.from_config(config)
    candidates = [Cosmology.from_params(fiducial)]
    for omega_m, w0, wa in itertools.product(ranges["Omega_m"], ranges["w0"], ranges["wa"]):
        candidates.append(Cosmology.from_params({**fiducial, "Omega_m": omega_m, "w0": w0,
                                                 "wa": wa}))
    extents = [cone_extent(window, cosmo) for cosmo in candidates]
    largest = int(np.argmax([np.max(extent) for extent in extents]))
    return extents[largest], candidates[largest]


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Unit vectors (N, 3) towards (RA, DEC) [deg] in the observer frame (axis +x)."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def box_origin(window: ConeWindow, cosmo: Cosmology, box_size: float) -> np.ndarray:
    """Lower corner (3,) [Mpc/h] of the unrolled box image that holds the cone.

    Raises ValueError naming ``simulator.embedded.box_size_mpc_h`` and the size needed
    when the cone's bounding box is larger than the box along any axis.
    """
    lower, upper = window.bounding_box(cosmo)
    extent = upper - lower
    if np.any(extent > box_size):
        raise ValueError(
            f"simulator.embedded.box_size_mpc_h = {box_size:g} is too small for the light cone "
            f"RA {list(window.ra_deg)}, DEC {list(window.dec_deg)}, z_cos {list(window.z_cos)} "
            f"at Omega_m = {cosmo.Omega_m:.4g}, w0 = {cosmo.w0:.4g}, wa = {cosmo.wa:.4g}: the cone "
            f"spans {extent[0]:.0f} (depth) x {extent[1]:.0f} x {extent[2]:.0f} Mpc/h; expected "
            f"box_size_mpc_h >= {np.max(extent):.0f}"
        )
    return lower - 0.5 * (box_size - extent)


def _axis_images(grid_size: int, box_size: float, origin: np.ndarray) -> list[np.ndarray]:
    """Unrolled coordinates [Mpc/h] of the grid planes along each axis: (N,) per axis."""
    coordinates = np.arange(grid_size) * (box_size / grid_size)
    return [origin[axis] + np.mod(coordinates - origin[axis], box_size) for axis in range(3)]


def _periodic_shifts(window: ConeWindow, cosmo: Cosmology, box_size: float,
                     origin: np.ndarray, margin: float) -> list[np.ndarray]:
    """Shifts (multiples of L) under which an unrolled cell image can be displaced
    through a face of the box into the cone: along an axis where the cone comes within
    ``margin`` of a face, the image near the opposite face is tested shifted across."""
    lower, upper = window.bounding_box(cosmo)
    options = []
    for axis in range(3):
        axis_shifts = [0.0]
        if lower[axis] - origin[axis] < margin:
            axis_shifts.append(-box_size)
        if origin[axis] + box_size - upper[axis] < margin:
            axis_shifts.append(box_size)
        options.append(axis_shifts)
    return [np.array(shift) for shift in itertools.product(*options)]  # (0, 0, 0) first


def _near_cone(x: float, y: np.ndarray, z: np.ndarray, window: ConeWindow,
               chi_range: tuple[float, float], margin: float) -> np.ndarray:
    """Points (x, y[i], z[j]) [Mpc/h] within about ``margin`` of the cone: (len(y), len(z))."""
    y, z = np.meshgrid(y, z, indexing="ij")
    radius = np.sqrt(x * x + y * y + z * z)
    angular_margin = np.degrees(margin / np.maximum(radius, margin))
    ra = np.degrees(np.arctan2(y, x))
    dec = np.degrees(np.arcsin(np.clip(z / np.maximum(radius, 1e-9), -1.0, 1.0)))
    # An RA interval spans r cos(DEC) dRA: the RA margin widens by 1 / cos(DEC).
    ra_margin = angular_margin / np.maximum(np.cos(np.radians(dec)), 1e-3)
    return ((radius >= chi_range[0] - margin) & (radius <= chi_range[1] + margin)
            & (ra >= window.ra_deg[0] - ra_margin) & (ra <= window.ra_deg[1] + ra_margin)
            & (dec >= window.dec_deg[0] - angular_margin)
            & (dec <= window.dec_deg[1] + angular_margin))


def candidate_cells(window: ConeWindow, cosmo: Cosmology, grid_size: int, box_size: float,
                    origin: np.ndarray, margin: float) -> np.ndarray:
    """Flat indices (int64, ascending) of the Lagrangian cells whose unrolled image lies
    within ``margin`` [Mpc/h] of the cone, directly or through a face of the box: every
    cell that can be displaced into it.

    A shifted image (one of ``_periodic_shifts``) can only come near the cone from within
    ``margin`` of the face it is shifted across, so only those cells are tested again.
    """
    chi_range = window.distance_range(cosmo)
    images = _axis_images(grid_size, box_size, origin)
    shifts = _periodic_shifts(window, cosmo, box_size, origin, margin)[1:]

    def crossing(axis: int, shift: float) -> np.ndarray:
        """Cells along ``axis`` whose image, shifted by ``shift``, may reach the cone."""
        if shift < 0:
            return images[axis] >= origin[axis] + box_size - margin
        if shift > 0:
            return images[axis] < origin[axis] + margin
        return np.ones(grid_size, dtype=bool)

    selected = []
    for ix, x in enumerate(images[0]):
        near = _near_cone(x, images[1], images[2], window, chi_range, margin)
        for shift in shifts:
            rows, columns = crossing(1, shift[1]), crossing(2, shift[2])
            if not crossing(0, shift[0])[ix] or not rows.any() or not columns.any():
                continue
            block = np.ix_(rows, columns)
            near[block] |= _near_cone(x + shift[0], images[1][rows] + shift[1],
                                      images[2][columns] + shift[2], window, chi_range,
                                      margin)
        selected.append(ix * grid_size * grid_size + np.flatnonzero(near))
    return np.concatenate(selected).astype(np.int64)


def cell_positions(cells: np.ndarray, grid_size: int, box_size: float,
                   origin: np.ndarray) -> np.ndarray:
    """Unrolled Lagrangian positions (N, 3) [Mpc/h] of flat cell indices ``cells``."""
    images = _axis_images(grid_size, box_size, origin)
    plane = grid_size * grid_size
    return np.stack([images[0].take(cells // plane), images[1].take((cells // grid_size)
                                                                     % grid_size),
                     images[2].take(cells % grid_size)], axis=-1)


def _uniform_interpolation(x: np.ndarray, start: float, step: float,
                           values: np.ndarray) -> list[np.ndarray]:
    """Linear interpolation of each row of ``values`` (M, n) tabulated at
    start + step * arange(n), clamped at the ends: M arrays shaped like ``x``. O(1) per
    point, unlike a binary search."""
    position = np.clip((np.asarray(x, dtype=np.float64) - start) / step, 0.0,
                       values.shape[1] - 1.000001)
    index = position.astype(np.int64)
    weight = position - index
    return [np.take(row, index) * (1.0 - weight) + np.take(row, index + 1) * weight
            for row in values]


@dataclass(frozen=True)
class RedshiftTables:
    """Interpolation tables on uniform grids over a redshift range: z(chi) and
    (D1, D2, f1, f2, E)(z). ``_TABLE_NODES`` nodes keep the linear-interpolation error
    below 1e-7 relative for 0 < z < 1.5, far under the float32 output precision."""

    z_start: float
    z_step: float
    background: np.ndarray  # (5, n): D1, D2, f1, f2, E at z_start + z_step * arange(n)
    chi_start: float
    chi_step: float
    z_of_chi: np.ndarray  # (1, n) z at chi_start + chi_step * arange(n)

    @classmethod
    def build(cls, cosmo: Cosmology, z_min: float, z_max: float) -> RedshiftTables:
        z = np.linspace(max(z_min, 0.0), z_max, _TABLE_NODES)
        chi = np.linspace(*cosmo.comoving_distance(z[[0, -1]]), _TABLE_NODES)
        return cls(z_start=z[0], z_step=z[1] - z[0],
                   background=np.stack([*cosmo.growth(z), cosmo.efunc(z)]),
                   chi_start=chi[0], chi_step=chi[1] - chi[0],
                   z_of_chi=cosmo.redshift_at_distance(chi)[None, :])

    def redshift(self, chi: np.ndarray) -> np.ndarray:
        """z at comoving distance ``chi`` [Mpc/h] (clamped to the table)."""
        return _uniform_interpolation(chi, self.chi_start, self.chi_step, self.z_of_chi)[0]

    def distance(self, z: np.ndarray) -> np.ndarray:
        """Comoving distance [Mpc/h] at ``z`` (inverse of ``redshift``, same table)."""
        return np.interp(z, self.z_of_chi[0],
                         self.chi_start + self.chi_step * np.arange(self.z_of_chi.shape[1]))

    def background_at(self, z: np.ndarray, count: int = 5) -> list[np.ndarray]:
        """The first ``count`` of D1, D2, f1, f2, E interpolated at ``z``."""
        return _uniform_interpolation(z, self.z_start, self.z_step, self.background[:count])


def _rowwise_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b, dtype=np.float64)


def displace_to_lightcone(lagrangian: np.ndarray, psi1: np.ndarray, psi2: np.ndarray,
                          tables: RedshiftTables, origin: np.ndarray, box_size: float,
                          tolerance: float = 1e-6, max_iterations: int = 20,
                          rewrap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Eulerian positions (N, 3) and light-cone redshifts (N,) of displaced cells.

    ``x = q + D1(z) psi1 + D2(z) psi2`` with z the redshift of |x|: fixed-point
    iteration on |x|^2, a quadratic form in (D1, D2) whose six coefficients are computed
    once. It contracts fast (about 4e-3 per step) because the displacement changes little
    over the light-travel distance. A cell displaced out of the unrolled box continues as
    its periodic image inside it (iterated again from there, once: ``rewrap``).
    """
    qq, q1, q2 = (_rowwise_dot(lagrangian, v) for v in (lagrangian, psi1, psi2))
    p11, p12, p22 = _rowwise_dot(psi1, psi1), _rowwise_dot(psi1, psi2), _rowwise_dot(psi2, psi2)
    redshift = tables.redshift(np.sqrt(qq))
    for _ in range(max_iterations):
        d1, d2 = tables.background_at(redshift, count=2)
        radius_squared = (qq + 2.0 * d1 * q1 + 2.0 * d2 * q2 + d1 * d1 * p11
                          + 2.0 * d1 * d2 * p12 + d2 * d2 * p22)
        updated = tables.redshift(np.sqrt(radius_squared))
        change = np.max(np.abs(updated - redshift), initial=0.0)
        redshift = updated
        if change < tolerance:
            break
    else:
        raise RuntimeError(f"light-cone redshifts did not converge (last change {change:.2e})")
    d1, d2 = tables.background_at(redshift, count=2)
    position = lagrangian + d1[:, None] * psi1 + d2[:, None] * psi2
    shift = np.floor((position - origin) / box_size) * box_size
    moved = np.flatnonzero(np.any(shift != 0.0, axis=1))
    if moved.size and rewrap:
        position[moved], redshift[moved] = displace_to_lightcone(
            lagrangian[moved] - shift[moved], psi1[moved], psi2[moved], tables, origin,
            box_size, tolerance, max_iterations, rewrap=False)
    return position, redshift


def peculiar_velocity(psi1: np.ndarray, psi2: np.ndarray, redshift: np.ndarray,
                      tables: RedshiftTables) -> np.ndarray:
    """2LPT peculiar velocity (N, 3) [km/s]: v = 100 E(z) a (f1 D1 psi1 + f2 D2 psi2)."""
    d1, d2, f1, f2, efunc = tables.background_at(redshift)
    scale = 100.0 * efunc / (1.0 + redshift)
    return (f1 * d1 * scale)[:, None] * psi1 + (f2 * d2 * scale)[:, None] * psi2


@dataclass(frozen=True)
class ConeCells:
    """Lagrangian cells displaced onto the light cone near the window (float32 arrays)."""

    cells: np.ndarray  # (N,) flat cell indices (int64), ascending
    position: np.ndarray  # (N, 3) Eulerian position [Mpc/h], observer frame
    redshift: np.ndarray  # (N,) light-cone (cosmological) redshift of the cell centre
    velocity: np.ndarray  # (N, 3) 2LPT peculiar velocity [km/s]
    delta: np.ndarray  # (N, F) z = 0 linear overdensity in each bias field


def iter_cells_on_lightcone(cells: np.ndarray, delta: np.ndarray, psi1: np.ndarray,
                            psi2: np.ndarray, window: ConeWindow, tables: RedshiftTables,
                            origin: np.ndarray, grid_size: int, box_size: float,
                            chunk: int = 1 << 18) -> Iterator[ConeCells]:
    """Displace candidate cells onto the light cone, ``chunk`` cells at a time; yield
    those whose centre lies within half a cell diagonal of the window (a halo placed
    anywhere in the cell may be inside). Chunks keep the temporaries small, and a caller
    that consumes them one by one never holds all cone cells."""
    half_diagonal = 0.5 * np.sqrt(3.0) * box_size / grid_size
    chi_limits = tables.distance(np.asarray(window.z_cos))
    for start in range(0, len(cells), chunk):
        part = slice(start, start + chunk)
        lagrangian = cell_positions(cells[part], grid_size, box_size, origin)
        position, redshift = displace_to_lightcone(lagrangian, psi1[part], psi2[part], tables,
                                                   origin, box_size)
        radius = np.sqrt(_rowwise_dot(position, position))
        ra, dec = radec_from_cartesian(position)
        slack = np.degrees(half_diagonal / radius)
        ra_slack = slack / np.maximum(np.cos(np.radians(dec)), 1e-3)
        keep = np.flatnonzero(
            (radius >= chi_limits[0] - half_diagonal) & (radius <= chi_limits[1] + half_diagonal)
            & (ra >= window.ra_deg[0] - ra_slack) & (ra <= window.ra_deg[1] + ra_slack)
            & (dec >= window.dec_deg[0] - slack) & (dec <= window.dec_deg[1] + slack))
        velocity = peculiar_velocity(psi1[part][keep], psi2[part][keep], redshift[keep], tables)
        yield ConeCells(cells=cells[part][keep], position=position[keep].astype(np.float32),
                        redshift=redshift[keep].astype(np.float32),
                        velocity=velocity.astype(np.float32), delta=delta[part][keep])
