"""The embedded light-cone simulator, in separate units:

- settings: ``EmbeddedSettings`` (``simulator.embedded``) and ``EmbeddedRun``, everything
  a light cone depends on besides its design row, resolved once from the config;
- the memory check (``check_memory``, from /proc/meminfo), once per process;
- the shared core (``lightcone_core``: initial conditions, 2LPT, light-cone geometry);
- the two halo modes (``_sampled_halos``, ``_peak_halos``) behind ``simulate_halos``;
- the stage entry point ``simulate_lightcones``: a block of design rows, one file each,
  in the common light-cone format (``EmbeddedRun.simulate`` per row).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import h5py
import numpy as np

from cosmo_sbi.config import Config
from cosmo_sbi.cosmology import Cosmology
from cosmo_sbi.io import read_attrs
from cosmo_sbi.lightcone import (
    lightcone_provenance,
    observed_redshift,
    radec_from_cartesian,
    write_lightcone,
)
from cosmo_sbi.mass_calibration import MassFunctionRatio
from cosmo_sbi.simulators.embedded.geometry import (
    ConeCells,
    ConeWindow,
    RedshiftTables,
    box_origin,
    candidate_cells,
    cell_positions,
    displace_to_lightcone,
    iter_cells_on_lightcone,
    peculiar_velocity,
)
from cosmo_sbi.simulators.embedded.initial_conditions import grid_variance, linear_density_modes
from cosmo_sbi.simulators.embedded.lpt import (
    lpt_fields_at,
    smoothed_overdensity_at,
    smoothing_kernel,
)
from cosmo_sbi.simulators.embedded.peaks import find_peaks, floor_mass, peak_masses
from cosmo_sbi.simulators.embedded.sample import (
    BIAS_RADIUS_FACTORS,
    BinnedMassFunction,
    HaloSampler,
)

log = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("sample", "peaks")
DISPLACEMENT_MARGIN_SIGMAS = 6.0
"""Cells farther than this many rms 1D displacements (z = 0) from the cone are skipped."""
BYTES_PER_CELL = {"sample": 45.0, "peaks": 60.0}
"""Peak memory per grid cell [bytes] above the fixed overhead, measured with
benchmarks/bench_embedded.py at N = 256 (sample: 38) with a margin."""
FIXED_MEMORY_BYTES = 0.4e9
"""Interpreter, libraries and the halo catalogue (~0.4M halos above 1e13 Msun/h)."""


@dataclass(frozen=True)
class EmbeddedSettings:
    """``simulator.embedded`` of the config: mode, grid, box [Mpc/h], 2LPT smoothing
    radius [Mpc/h], the lowest halo mass drawn in sample mode [Msun/h] and its mass
    function (with the fitted PINOCCHIO ratio, if any) and the factor on its Tinker10 bias."""

    mode: str
    grid_size: int
    box_size_mpc_h: float
    lpt_smoothing_mpc_h: float
    min_mass_msun_h: float
    mass_function: str = "tinker08"
    mass_function_ratio: MassFunctionRatio | None = None
    bias_ratio: float = 1.0

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> EmbeddedSettings:
        settings = cls(mode=str(section["mode"]), grid_size=int(section["grid_size"]),
                       box_size_mpc_h=float(section["box_size_mpc_h"]),
                       lpt_smoothing_mpc_h=float(section["lpt_smoothing_mpc_h"]),
                       min_mass_msun_h=float(section["lowest_halo_mass_msun_h"]),
                       mass_function=str(section.get("mass_function", "tinker08")),
                       mass_function_ratio=MassFunctionRatio.from_config(
                           section["mass_function_ratio"])
                       if section.get("mass_function_ratio") else None,
                       bias_ratio=float(section.get("bias_ratio", 1.0)))
        if settings.mode not in MODES:
            raise ValueError(f"simulator.embedded.mode: expected one of {MODES}, "
                             f"got {settings.mode!r}")
        if settings.grid_size < 8 or settings.grid_size % 2:
            raise ValueError("simulator.embedded.grid_size: expected an even number >= 8, "
                             f"got {settings.grid_size}")
        return settings

    @property
    def cell_size(self) -> float:
        """Grid spacing [Mpc/h]."""
        return self.box_size_mpc_h / self.grid_size


def available_memory_bytes() -> int:
    """Memory the process may still allocate: MemAvailable, or free pages without /proc."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def required_memory_bytes(settings: EmbeddedSettings) -> float:
    """Estimated peak memory [bytes] of one light cone (scales as N^3)."""
    return FIXED_MEMORY_BYTES + BYTES_PER_CELL[settings.mode] * float(settings.grid_size) ** 3


def check_memory(settings: EmbeddedSettings, available: int | None = None) -> None:
    """Raise MemoryError naming the grid size and the memory needed if it cannot fit."""
    needed = required_memory_bytes(settings)
    available = available_memory_bytes() if available is None else available
    if needed > available:
        raise MemoryError(
            f"simulator.embedded.grid_size = {settings.grid_size} ({settings.mode} mode) needs "
            f"about {needed / 2**30:.1f} GiB of memory, but only {available / 2**30:.1f} GiB "
            "is available; lower grid_size or run on a larger machine")


def reach_margin(cosmo: Cosmology, settings: EmbeddedSettings) -> float:
    """Distance [Mpc/h] beyond which no cell can be displaced into the cone: 6 rms
    displacements plus a cell."""
    return DISPLACEMENT_MARGIN_SIGMAS * displacement_rms(cosmo, settings) + settings.cell_size


def table_redshift_range(cosmo: Cosmology, settings: EmbeddedSettings,
                         window: ConeWindow) -> tuple[float, float]:
    """Redshifts bracketing every cell that can reach the cone (twice the reach margin)."""
    margin = 2.0 * reach_margin(cosmo, settings)
    chi_min, chi_max = window.distance_range(cosmo)
    low = float(cosmo.redshift_at_distance(max(chi_min - margin, 0.0)))
    return low, float(cosmo.redshift_at_distance(chi_max + margin))


def displacement_rms(cosmo: Cosmology, settings: EmbeddedSettings) -> float:
    """rms of one component of the smoothed first-order displacement at z = 0 [Mpc/h]."""
    radius = settings.lpt_smoothing_mpc_h
    return float(np.sqrt(grid_variance(
        settings.grid_size, settings.box_size_mpc_h,
        lambda k: cosmo.linear_power(k) * np.exp(-((k * radius) ** 2)) / (3.0 * k * k))))


def bias_field_radii(settings: EmbeddedSettings) -> tuple[float, ...]:
    """Candidate bias-field smoothing radii [Mpc/h] of sample mode: a ladder based on the
    2LPT smoothing (on one cell when there is none)."""
    base = settings.lpt_smoothing_mpc_h or settings.cell_size
    return tuple(base * factor for factor in BIAS_RADIUS_FACTORS)


def smoothed_variance(cosmo: Cosmology, settings: EmbeddedSettings, radius: float) -> float:
    """Grid variance of the z = 0 linear field smoothed by a Gaussian of ``radius``."""
    return grid_variance(settings.grid_size, settings.box_size_mpc_h,
                         lambda k: cosmo.linear_power(k) * np.exp(-((k * radius) ** 2)))


@dataclass(frozen=True)
class LightconeCore:
    """The shared core's result: candidate Lagrangian cells with their bias-field
    overdensities and 2LPT displacements, the geometry, and (peaks mode) the modes."""

    cells: np.ndarray  # (N,) flat indices of cells that can reach the cone
    delta: np.ndarray  # (N, F) z = 0 overdensity smoothed at each bias radius
    delta_range: np.ndarray  # (F, 2) min and max of each column of delta
    psi1: np.ndarray  # (N, 3) [Mpc/h]
    psi2: np.ndarray  # (N, 3) [Mpc/h]
    tables: RedshiftTables
    origin: np.ndarray  # (3,) lower corner of the unrolled box [Mpc/h]
    settings: EmbeddedSettings
    window: ConeWindow
    modes: np.ndarray | None  # unsmoothed z = 0 linear modes (peaks mode only)

    def cone_chunks(self) -> Iterator[ConeCells]:
        """The cells displaced onto the light cone near the window, chunk by chunk."""
        return iter_cells_on_lightcone(self.cells, self.delta, self.psi1, self.psi2,
                                       self.window, self.tables, self.origin,
                                       self.settings.grid_size, self.settings.box_size_mpc_h)


def lightcone_core(cosmo: Cosmology, seed: int, settings: EmbeddedSettings,
                   window: ConeWindow, bias_radii: tuple[float, ...] = (),
                   threads: int = 1) -> LightconeCore:
    """The shared core: hashed Gaussian initial conditions, 2LPT, and the Lagrangian cells
    that can be displaced into ``window``, with the z = 0 linear overdensity smoothed at
    each of ``bias_radii`` [Mpc/h] (each >= the 2LPT smoothing)."""
    grid_size, box_size = settings.grid_size, settings.box_size_mpc_h
    lpt_radius = settings.lpt_smoothing_mpc_h
    origin = box_origin(window, cosmo, box_size)
    cells = candidate_cells(window, cosmo, grid_size, box_size, origin,
                            reach_margin(cosmo, settings))
    modes = linear_density_modes(seed, grid_size, box_size, cosmo.linear_power)
    kernel = smoothing_kernel(grid_size, box_size, lpt_radius)
    if settings.mode == "peaks":
        smoothed = modes * kernel
    else:
        modes *= kernel
        smoothed, modes = modes, None
    del kernel
    fields = lpt_fields_at(smoothed, cells, box_size, threads)
    delta = np.empty((len(cells), len(bias_radii)), dtype=np.float32)
    delta_range = np.zeros((len(bias_radii), 2))
    for column, radius in enumerate(bias_radii):
        values = smoothed_overdensity_at(smoothed, cells, box_size, lpt_radius, radius, threads)
        delta[:, column] = values
        delta_range[column] = values.min(initial=0.0), values.max(initial=0.0)
    del smoothed
    tables = RedshiftTables.build(cosmo, *table_redshift_range(cosmo, settings, window))
    return LightconeCore(cells=cells, delta=delta, delta_range=delta_range, psi1=fields.psi1,
                         psi2=fields.psi2, tables=tables, origin=origin, settings=settings,
                         window=window, modes=modes)


def simulate_halos(cosmo: Cosmology, seed: int, settings: EmbeddedSettings, window: ConeWindow,
                   threads: int = 1) -> dict[str, np.ndarray]:
    """Halos in the light-cone window: the common-format fields (ra, dec [deg], z_cos,
    z_obs, mass [Msun/h]) plus pos [Mpc/h] and vel [km/s] (N, 3), observer frame."""
    halo_mode = _peak_halos if settings.mode == "peaks" else _sampled_halos
    return halo_mode(cosmo, seed, settings, window, threads)


def _sampled_halos(cosmo: Cosmology, seed: int, settings: EmbeddedSettings,
                   window: ConeWindow, threads: int) -> dict[str, np.ndarray]:
    """Sample mode: halos drawn per cone cell from the mass function, weighted by the
    cell's Lagrangian bias field, placed in the cell and moved with it."""
    radii = bias_field_radii(settings)
    mass_function = BinnedMassFunction.build(
        cosmo, settings.min_mass_msun_h, *table_redshift_range(cosmo, settings, window), radii,
        tuple(smoothed_variance(cosmo, settings, radius) for radius in radii),
        settings.cell_size**3, settings.mass_function, settings.mass_function_ratio,
        settings.bias_ratio)
    core = lightcone_core(cosmo, seed, settings, window, mass_function.radii, threads)
    sampler = HaloSampler(mass_function, core.delta_range, seed)
    pieces = [_lightcone_fields(np.empty((0, 3)), np.empty((0, 3), np.float32), np.empty(0),
                                core.tables, window)]
    for chunk in core.cone_chunks():
        owner, mass, offset = sampler(chunk.cells, chunk.redshift, chunk.delta)
        position = chunk.position[owner].astype(np.float64) + offset * settings.cell_size
        pieces.append(_lightcone_fields(position, chunk.velocity[owner], mass, core.tables,
                                        window))
    return {name: np.concatenate([piece[name] for piece in pieces]) for name in pieces[0]}


def _peak_halos(cosmo: Cosmology, seed: int, settings: EmbeddedSettings, window: ConeWindow,
                threads: int) -> dict[str, np.ndarray]:
    """Peaks mode: peak patches of the cone cells, moved by 2LPT from the peak position."""
    core = lightcone_core(cosmo, seed, settings, window, (), threads)
    chunks = list(core.cone_chunks())
    cone_cells = np.concatenate([np.empty(0, np.int64)] + [chunk.cells for chunk in chunks])
    cone_redshift = np.concatenate([np.empty(0, np.float32)]
                                   + [chunk.redshift for chunk in chunks])
    del chunks
    peaks = find_peaks(core.modes, cone_cells, cone_redshift, cosmo, settings.box_size_mpc_h,
                       threads)
    mass = peak_masses(cosmo, peaks.radius)
    keep = mass >= settings.min_mass_msun_h
    row = np.searchsorted(core.cells, peaks.cells[keep])
    lagrangian = (cell_positions(peaks.cells[keep], settings.grid_size,
                                 settings.box_size_mpc_h, core.origin)
                  + peaks.offset[keep] * settings.cell_size)
    position, redshift = displace_to_lightcone(lagrangian, core.psi1[row], core.psi2[row],
                                               core.tables, core.origin,
                                               settings.box_size_mpc_h)
    velocity = peculiar_velocity(core.psi1[row], core.psi2[row], redshift, core.tables)
    return _lightcone_fields(position, velocity, mass[keep], core.tables, window)


def _lightcone_fields(position: np.ndarray, velocity: np.ndarray, mass: np.ndarray,
                      tables: RedshiftTables, window: ConeWindow) -> dict[str, np.ndarray]:
    """Sky coordinates and redshifts of halos, cut to the window (z_cos padded)."""
    radius = np.sqrt(np.einsum("ij,ij->i", position, position))
    ra, dec = radec_from_cartesian(position)
    z_cos = tables.redshift(radius)
    z_obs = observed_redshift(z_cos, np.einsum("ij,ij->i", velocity, position) / radius)
    keep = window.contains(ra, dec, z_cos)
    return {"ra": ra[keep], "dec": dec[keep], "z_cos": z_cos[keep], "z_obs": z_obs[keep],
            "mass": mass[keep], "pos": position[keep], "vel": velocity[keep]}


def mass_floor_msun_h(cosmo: Cosmology, settings: EmbeddedSettings) -> float:
    """Lowest halo mass [Msun/h] the mode produces completely: the drawn minimum in
    sample mode; in peaks mode the larger of that and a patch of 3 cells in radius."""
    if settings.mode == "peaks":
        return max(settings.min_mass_msun_h, floor_mass(cosmo, settings.cell_size))
    return settings.min_mass_msun_h


@dataclass(frozen=True)
class EmbeddedRun:
    """Everything a light cone depends on besides its design row, resolved once from the
    config: the simulator settings, the cone window and the histogram's mass cut (only
    checked against the floor)."""

    settings: EmbeddedSettings
    window: ConeWindow
    histogram_cut_msun_h: float

    @classmethod
    def from_config(cls, config: Config) -> EmbeddedRun:
        return cls(settings=EmbeddedSettings.from_config(config["simulator"]["embedded"]),
                   window=ConeWindow.from_config(config),
                   histogram_cut_msun_h=float(config["histogram"]["min_mass_msun_h"]))

    def provenance(self, row: Mapping[str, Any], cosmo: Cosmology) -> dict[str, Any]:
        """The root attributes of the light-cone file of design row ``row``."""
        window = self.window
        attrs = lightcone_provenance(row, "embedded", asdict(self.settings))
        attrs.update(window_ra_deg=list(window.ra_deg), window_dec_deg=list(window.dec_deg),
                     window_z_cos=list(window.z_cos), observer_mpc_h=[0.0, 0.0, 0.0],
                     cone_axis=[1.0, 0.0, 0.0],
                     mass_floor_msun_h=mass_floor_msun_h(cosmo, self.settings))
        return attrs

    def simulate(self, row: Mapping[str, Any], output: str | os.PathLike[str],
                 threads: int = 1, resume: bool = False) -> bool:
        """Simulate the light cone of one design row and write it in the common format;
        with ``resume``, keep an existing ``output`` that holds this very light cone (same
        provenance). Returns whether it simulated."""
        cosmo = Cosmology.from_params(row)
        attrs = self.provenance(row, cosmo)
        if resume and has_provenance(output, attrs):
            log.info("%s/%s: %s is up to date, kept", row["set"], row["id"], output)
            return False
        floor = attrs["mass_floor_msun_h"]
        if self.histogram_cut_msun_h < floor:
            log.warning("histogram.min_mass_msun_h = %g is below the %s mode's floor of %.3g "
                        "Msun/h at this cosmology: the histograms miss halos",
                        self.histogram_cut_msun_h, self.settings.mode, floor)
        start = time.perf_counter()
        halos = simulate_halos(cosmo, int(row["seed"]), self.settings, self.window, threads)
        log.info("%s/%s: embedded %s, %d halos in %.1f s", row["set"], row["id"],
                    self.settings.mode, len(halos["mass"]), time.perf_counter() - start)
        write_lightcone(output, halos, attrs)
        return True


def has_provenance(path: str | os.PathLike[str], attrs: Mapping[str, Any]) -> bool:
    """Whether ``path`` is a readable file whose root attributes equal ``attrs``."""
    try:
        with h5py.File(path, "r") as source:
            stored = read_attrs(source)
    except OSError:
        return False
    # as stored: tuples and arrays become lists
    expected = json.loads(json.dumps(dict(attrs), default=np.ndarray.tolist))
    return set(stored) == set(expected) and all(
        np.array_equal(stored[key], value) for key, value in expected.items())


def simulate_lightcones(config: Config, rows: Sequence[Mapping[str, Any]],
                        outputs: Sequence[str | os.PathLike[str]], threads: int = 1,
                        resume: bool = False) -> int:
    """Simulate a block of design rows, one light-cone file each (the same bytes as one
    call per row); the config is resolved and the memory checked once. With ``resume``,
    outputs that already hold their light cone are kept. Returns the number simulated."""
    if len(rows) != len(outputs):
        raise ValueError(f"expected one output per simulation id, got {len(rows)} ids and "
                         f"{len(outputs)} outputs")
    run = EmbeddedRun.from_config(config)
    check_memory(run.settings)
    return sum(run.simulate(row, output, threads, resume)
               for row, output in zip(rows, outputs, strict=True))


def simulate_lightcone(config: Config, row: Mapping[str, Any], output: str | os.PathLike[str],
                       threads: int = 1) -> None:
    """Simulate the light cone of one design row and write it in the common format."""
    simulate_lightcones(config, [row], [output], threads)
