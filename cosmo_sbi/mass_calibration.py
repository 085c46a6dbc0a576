"""Calibration of the embedded sampler's mass function against PINOCCHIO: a smooth ratio
n_PINOCCHIO / n_model(M, z) fitted to PINOCCHIO's own mass-function outputs.

The ratio is ``r(M, z) = exp(sum_i c_i x^i + s ln(1 + z))`` with ``x = log10(M / pivot)``
clipped to the fitted mass range (constant beyond it). It is fitted by weighted least
squares on ln(n_PINOCCHIO / n_model) per 0.05-dex bin, each bin weighted by its halo count
(Poisson: var ln n = 1 / N). ``s`` is fitted only when the runs hold more than one
redshift (0 otherwise). The result is a config overlay
(``simulator.embedded.mass_function`` and ``mass_function_ratio``) that makes the sampler
draw from ``r x n_model``.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import ArrayLike

from cosmo_sbi.cosmology import Cosmology
from cosmo_sbi.halos import dndlnm
from cosmo_sbi.io import atomic_path
from cosmo_sbi.simulators.pinocchio_io import read_mass_function

PIVOT_MASS_MSUN_H = 1e14
MIN_BIN_HALOS = 10
"""Bins with fewer halos are left out of the fit (their ln ratio is too noisy)."""
_MASS_FUNCTION_FILE = re.compile(r"pinocchio\.(\d+\.\d+)\.[^.]+\.mf\.out$")
_PARAMETERS = {"Omega0": "Omega_m", "Sigma8": "sigma_8", "DEw0": "w0", "DEwa": "wa",
               "PrimordialIndex": "n_s", "Hubble100": "h", "OmegaBaryon": "Omega_b"}


@dataclass(frozen=True)
class MassFunctionRatio:
    """r(M, z) = n_PINOCCHIO / n_model: see the module docstring."""

    model: str
    coefficients: tuple[float, ...]
    redshift_slope: float
    pivot_mass_msun_h: float
    mass_range_msun_h: tuple[float, float]

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> MassFunctionRatio:
        """From ``simulator.embedded.mass_function_ratio`` (schema-checked)."""
        return cls(model=str(section["model"]),
                   coefficients=tuple(float(c) for c in section["coefficients"]),
                   redshift_slope=float(section["redshift_slope"]),
                   pivot_mass_msun_h=float(section["pivot_mass_msun_h"]),
                   mass_range_msun_h=tuple(float(m) for m in section["mass_range_msun_h"]))

    def to_config(self) -> dict[str, Any]:
        section = asdict(self)
        section["coefficients"] = list(self.coefficients)
        section["mass_range_msun_h"] = list(self.mass_range_msun_h)
        return section

    def __call__(self, mass: ArrayLike, z: ArrayLike) -> np.ndarray:
        """r at ``mass`` [Msun/h] and ``z``: shape z.shape + mass.shape (like halos.dndlnm)."""
        mass = np.asarray(mass, dtype=np.float64)
        z = np.asarray(z, dtype=np.float64)
        x = np.log10(np.clip(mass, *self.mass_range_msun_h) / self.pivot_mass_msun_h)
        ln_ratio = np.polynomial.polynomial.polyval(x, self.coefficients)
        ln_redshift = self.redshift_slope * np.log1p(z)
        return np.exp(ln_redshift[(...,) + (None,) * mass.ndim] + ln_ratio)


def read_run_cosmology(parameter_file: str | os.PathLike[str]) -> Cosmology:
    """The cosmology of a PINOCCHIO parameter file (Omega0, Sigma8, DEw0, ...)."""
    values = {}
    for line in Path(parameter_file).read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in _PARAMETERS:
            values[_PARAMETERS[words[0]]] = float(words[1])
    missing = sorted(set(_PARAMETERS) - {k for k, v in _PARAMETERS.items() if v in values})
    if missing:
        raise ValueError(f"{parameter_file}: no value for {missing}")
    return Cosmology.from_params(values)


@dataclass(frozen=True)
class MassFunctionBins:
    """PINOCCHIO mass-function bins of one run at one redshift, with the model beside."""

    run: str
    z: float
    mass: np.ndarray  # (B,) bin mass [Msun/h]
    count: np.ndarray  # (B,) halos in the bin
    ratio: np.ndarray  # (B,) n_PINOCCHIO / n_model


def mass_function_bins(run_dir: str | os.PathLike[str], model: str) -> list[MassFunctionBins]:
    """Every ``pinocchio.<z>.<run>.mf.out`` of a run directory against ``model`` at the
    run's cosmology (read from its ``parameter_file``). PINOCCHIO writes dn/dM
    [(Mpc/h)^-3 (Msun/h)^-1]; dn/dlnM = M dn/dM."""
    run_dir = Path(run_dir)
    cosmo = read_run_cosmology(run_dir / "parameter_file")
    files = sorted(path for path in run_dir.iterdir() if _MASS_FUNCTION_FILE.search(path.name))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no PINOCCHIO mass function pinocchio.<z>.<run>"
                                ".mf.out (PINOCCHIO writes one per output redshift)")
    bins = []
    for path in files:
        z = float(_MASS_FUNCTION_FILE.search(path.name).group(1))
        table = read_mass_function(path)
        mass = table["mass"].astype(np.float64)
        with warnings.catch_warnings():  # PINOCCHIO's bins reach a few 1e15 Msun/h
            warnings.filterwarnings("ignore", message="halo fits extrapolated: mass")
            model_dndlnm = dndlnm(cosmo, mass, z, model)
        bins.append(MassFunctionBins(run=str(run_dir), z=z, mass=mass,
                                     count=table["count"].astype(np.int64),
                                     ratio=table["n"] * mass / model_dndlnm))
    return bins


def fit_ratio(bins: Sequence[MassFunctionBins], model: str, degree: int = 2,
              pivot: float = PIVOT_MASS_MSUN_H) -> MassFunctionRatio:
    """Weighted least-squares fit of ln r (see the module docstring) to the bins of every
    run with at least :data:`MIN_BIN_HALOS` halos."""
    mass = np.concatenate([b.mass for b in bins])
    count = np.concatenate([b.count for b in bins])
    ratio = np.concatenate([b.ratio for b in bins])
    z = np.concatenate([np.full(len(b.mass), b.z) for b in bins])
    keep = (count >= MIN_BIN_HALOS) & (ratio > 0)
    if keep.sum() <= degree + 1:
        raise ValueError(f"{int(keep.sum())} mass-function bins with >= {MIN_BIN_HALOS} halos; "
                         f"a degree-{degree} fit needs more")
    mass, count, ratio, z = mass[keep], count[keep], ratio[keep], z[keep]
    x = np.log10(mass / pivot)
    columns = [x**power for power in range(degree + 1)]
    with_redshift = np.unique(z).size > 1
    if with_redshift:
        columns.append(np.log1p(z))
    design = np.stack(columns, axis=1)
    weight = np.sqrt(count.astype(np.float64))
    solution, *_ = np.linalg.lstsq(design * weight[:, None], np.log(ratio) * weight, rcond=None)
    return MassFunctionRatio(model=model,
                             coefficients=tuple(float(c) for c in solution[:degree + 1]),
                             redshift_slope=float(solution[-1]) if with_redshift else 0.0,
                             pivot_mass_msun_h=float(pivot),
                             mass_range_msun_h=(float(mass.min()), float(mass.max())))


def summary(bins: Sequence[MassFunctionBins], edges_msun_h: Sequence[float]) -> list[float]:
    """n_PINOCCHIO / n_model in each mass interval of ``edges_msun_h``: PINOCCHIO's halos
    over the model's expectation in the same bins (count / ratio), over the non-empty bins
    (an empty bin has no measured ratio); NaN for an interval without halos."""
    mass = np.concatenate([b.mass for b in bins])
    count = np.concatenate([b.count for b in bins]).astype(np.float64)
    ratio = np.concatenate([b.ratio for b in bins])
    means = []
    for low, high in zip(edges_msun_h[:-1], edges_msun_h[1:], strict=True):
        inside = (mass >= low) & (mass < high) & (count > 0)
        means.append(float(count[inside].sum() / (count[inside] / ratio[inside]).sum())
                     if inside.any() else float("nan"))
    return means


def write_calibration(run_dirs: Sequence[str | os.PathLike[str]], model: str,
                      output: str | os.PathLike[str], degree: int = 2) -> MassFunctionRatio:
    """Fit the ratio to every run directory's mass functions; write the config overlay
    ``output`` (YAML) that makes the embedded sampler use it."""
    bins = [b for run_dir in run_dirs for b in mass_function_bins(run_dir, model)]
    ratio = fit_ratio(bins, model, degree)
    overlay = {"simulator": {"embedded": {"mass_function": model,
                                          "mass_function_ratio": ratio.to_config()}}}
    header = (f"# n_PINOCCHIO / n_{model} fitted by cosmo-sbi calibrate-mass-function to "
              f"{len(bins)} mass functions of {len(run_dirs)} runs\n")
    with atomic_path(output) as temporary:
        Path(temporary).write_text(header + yaml.safe_dump(overlay, sort_keys=False))
    return ratio
