"""Flat w0-wa CDM cosmology: background, linear growth (D1, D2, f1, f2) and linear P(k).

Conventions: distances in Mpc/h, wavenumbers in h/Mpc, P(k) in (Mpc/h)^3, masses in
Msun/h. The background has no radiation (E(z) matches PINOCCHIO built with
-DNORADIATION):

    E^2(a) = Omega_m a^-3 + (1 - Omega_m) a^(-3 (1 + w0 + wa)) exp(-3 wa (1 - a)).

Growth solves the linear ODEs in ln a once per instance; P(k) is Eisenstein & Hu (1998)
with baryons (BAO wiggles), tilted by n_s and normalised to sigma_8 at z = 0. Expensive
tables are cached per instance (``functools.cached_property`` writes to the instance
``__dict__``, which a frozen dataclass allows), so build one ``Cosmology`` per parameter
set and reuse it.

Scalars and arrays are accepted everywhere; results are float64 arrays whose shape is the
numpy broadcast of the inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike
from scipy.integrate import simpson, solve_ivp
from scipy.interpolate import CubicSpline

if TYPE_CHECKING:  # astropy.cosmology takes ~1.5 s to import: only the tests compare to it
    from astropy.cosmology import Flatw0waCDM

SPEED_OF_LIGHT_KM_S = 299792.458
HUBBLE_DISTANCE_MPC_H = SPEED_OF_LIGHT_KM_S / 100.0
"""c / H0 in Mpc/h."""
RHO_CRIT_MSUN_H_MPC_H3 = 2.77536627245708e11
"""Critical density today, rho_crit = 3 H0^2 / (8 pi G), in (Msun/h) / (Mpc/h)^3."""

DISTANCE_TABLE_Z_MAX = 10.0
"""comoving_distance and redshift_at_distance cover 0 <= z <= this."""
_DISTANCE_TABLE_NODES = 10_001
GROWTH_A_START = 1e-5
"""Growth ODEs start here with the matter-era growing modes D1 = a, D2 = -3/7 a^2, exact
while rho_DE / rho_m = (1 - Omega_m) / Omega_m a^(-3 (w0 + wa)) is negligible at this a:
< 1e-4 for w0 + wa <= -0.3 (the prior has w0 + wa <= -0.4). Growth covers z <= 1/a - 1."""
_GROWTH_TABLE_NODES = 4_001

_SIGMA_LOG_K = np.linspace(math.log(1e-5), math.log(1e4), 3_001)
"""ln k grid [h/Mpc] of the sigma(R) integrals (Simpson in ln k); see tests for accuracy."""
SIGMA_8_RADIUS_MPC_H = 8.0


@dataclass(frozen=True)
class Cosmology:
    """A flat w0-wa CDM cosmology (the six inferred parameters plus fixed ones).

    Raises ``ValueError`` naming the parameter when a value is unphysical: Omega_m must
    lie in (0, 1], sigma_8 > 0, w0 + wa < 0 (matter domination at early times), h > 0,
    0 < Omega_b < Omega_m (Eisenstein & Hu need baryons), T_cmb > 0, all finite.
    """

    Omega_m: float
    sigma_8: float
    w0: float
    wa: float
    n_s: float
    h: float
    Omega_b: float = 0.049
    T_cmb: float = 2.7255

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            is_number = isinstance(value, int | float | np.integer | np.floating)
            if isinstance(value, bool) or not is_number or not math.isfinite(value):
                raise ValueError(f"cosmology parameter {field.name} must be a finite number, "
                                 f"got {value!r}")
            object.__setattr__(self, field.name, float(value))  # numpy scalars -> float
        if not 0.0 < self.Omega_m <= 1.0:
            raise ValueError(f"Omega_m must be in (0, 1], got {self.Omega_m}")
        if self.sigma_8 <= 0.0:
            raise ValueError(f"sigma_8 must be > 0, got {self.sigma_8}")
        if self.w0 + self.wa >= 0.0:
            raise ValueError(
                f"w0 + wa must be < 0 (dark energy subdominant at early times), got "
                f"w0 = {self.w0}, wa = {self.wa}"
            )
        if self.h <= 0.0:
            raise ValueError(f"h must be > 0, got {self.h}")
        if not 0.0 < self.Omega_b < self.Omega_m:
            raise ValueError(f"Omega_b must be in (0, Omega_m = {self.Omega_m}), "
                             f"got {self.Omega_b}")
        if self.T_cmb <= 0.0:
            raise ValueError(f"T_cmb must be > 0 K, got {self.T_cmb}")

    @classmethod
    def from_params(cls, params: Mapping[str, float]) -> Cosmology:
        """Build from a mapping such as a design row; unknown keys (id, seed, ...) are ignored.

        The six inferred parameters are required; Omega_b and T_cmb take their defaults when
        absent.
        """
        names = [field.name for field in fields(cls)]
        required = [field.name for field in fields(cls) if field.default is MISSING]
        missing = [name for name in required if name not in params]
        if missing:
            raise ValueError(f"cosmology parameters missing: {missing}; got keys {sorted(params)}")
        return cls(**{name: params[name] for name in names if name in params})

    # ---------------------------------------------------------------- background
    @cached_property
    def astropy(self) -> Flatw0waCDM:
        """The same background as an astropy cosmology (H0 = 100 h, Tcmb0 = 0: no radiation)."""
        from astropy.cosmology import Flatw0waCDM

        return Flatw0waCDM(H0=100.0 * self.h, Om0=self.Omega_m, w0=self.w0, wa=self.wa,
                           Tcmb0=0.0, Ob0=self.Omega_b)

    def _dark_energy_density(self, a: np.ndarray) -> np.ndarray:
        """rho_DE(a) / rho_DE(1) of the CPL equation of state w(a) = w0 + wa (1 - a)."""
        return a ** (-3.0 * (1.0 + self.w0 + self.wa)) * np.exp(-3.0 * self.wa * (1.0 - a))

    def _e2_of_a(self, a: np.ndarray) -> np.ndarray:
        return self.Omega_m * a**-3 + (1.0 - self.Omega_m) * self._dark_energy_density(a)

    def efunc(self, z: ArrayLike) -> np.ndarray:
        """E(z) = H(z) / H0."""
        a = 1.0 / (1.0 + np.asarray(z, dtype=np.float64))
        return np.sqrt(self._e2_of_a(a))

    def omega_m_z(self, z: ArrayLike) -> np.ndarray:
        """Matter density parameter Omega_m(z) = Omega_m (1 + z)^3 / E^2(z)."""
        zp1 = 1.0 + np.asarray(z, dtype=np.float64)
        return self.Omega_m * zp1**3 / self._e2_of_a(1.0 / zp1)

    @cached_property
    def _distance_splines(self) -> tuple[CubicSpline, CubicSpline]:
        """Splines chi(z) and z(chi) on 0 <= z <= DISTANCE_TABLE_Z_MAX.

        chi at the nodes is the exact cumulative 8-point Gauss-Legendre integral of c / H
        over each interval (error ~1e-15); the splines add < 1e-12 relative error.
        """
        z_nodes = np.linspace(0.0, DISTANCE_TABLE_Z_MAX, _DISTANCE_TABLE_NODES)
        gauss_x, gauss_w = np.polynomial.legendre.leggauss(8)
        half = 0.5 * np.diff(z_nodes)
        mid = 0.5 * (z_nodes[1:] + z_nodes[:-1])
        z_gauss = mid[:, None] + half[:, None] * gauss_x[None, :]
        pieces = half * np.sum(gauss_w / self.efunc(z_gauss), axis=1)
        chi_nodes = HUBBLE_DISTANCE_MPC_H * np.concatenate([[0.0], np.cumsum(pieces)])
        return CubicSpline(z_nodes, chi_nodes), CubicSpline(chi_nodes, z_nodes)

    def comoving_distance(self, z: ArrayLike) -> np.ndarray:
        """Line-of-sight comoving distance [Mpc/h] to redshift z (0 <= z <= 10)."""
        z = np.asarray(z, dtype=np.float64)
        _check_range("redshift z", z, 0.0, DISTANCE_TABLE_Z_MAX)
        return self._distance_splines[0](z)

    def redshift_at_distance(self, chi: ArrayLike) -> np.ndarray:
        """Redshift at comoving distance chi [Mpc/h]; inverse of ``comoving_distance``."""
        chi = np.asarray(chi, dtype=np.float64)
        inverse = self._distance_splines[1]
        _check_range("comoving distance chi [Mpc/h]", chi, 0.0, float(inverse.x[-1]))
        return inverse(chi)

    # ---------------------------------------------------------------- growth
    @cached_property
    def _growth_splines(self) -> CubicSpline:
        """Spline in ln a of (D1, dD1/dlna, D2, dD2/dlna), normalised so D1(a = 1) = 1."""

        def rhs(ln_a: float, y: np.ndarray) -> np.ndarray:
            a = math.exp(ln_a)
            e2 = self._e2_of_a(a)
            omega_m = self.Omega_m * a**-3 / e2
            omega_de = 1.0 - omega_m
            w = self.w0 + self.wa * (1.0 - a)
            friction = 2.0 - 1.5 * omega_m - 1.5 * (1.0 + w) * omega_de
            d1, d1_prime, d2, d2_prime = y
            return np.array([
                d1_prime,
                -friction * d1_prime + 1.5 * omega_m * d1,
                d2_prime,
                -friction * d2_prime + 1.5 * omega_m * (d2 - d1**2),
            ])

        ln_a = np.linspace(math.log(GROWTH_A_START), 0.0, _GROWTH_TABLE_NODES)
        a0 = GROWTH_A_START
        start = np.array([a0, a0, -3.0 / 7.0 * a0**2, -6.0 / 7.0 * a0**2])
        solution = solve_ivp(rhs, (ln_a[0], ln_a[-1]), start, method="DOP853", t_eval=ln_a,
                             rtol=1e-11, atol=1e-14 * a0)
        if not solution.success:  # pragma: no cover - the ODE is smooth on the valid domain
            raise RuntimeError(f"growth ODE failed for {self}: {solution.message}")
        d1_today = solution.y[0, -1]
        scale = np.array([d1_today, d1_today, d1_today**2, d1_today**2])[:, None]
        return CubicSpline(ln_a, solution.y / scale, axis=1)

    def growth(self, z: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(D1, D2, f1, f2) at z: linear and second-order growth factors and rates dlnD/dlna.

        D1(0) = 1; D2 is normalised by D1(0)^2, so D2 ~ -3/7 D1^2 Omega_m(z)^(-1/143)
        (negative). Valid for 0 <= z <= 1 / GROWTH_A_START - 1.
        """
        z = np.asarray(z, dtype=np.float64)
        _check_range("redshift z", z, 0.0, 1.0 / GROWTH_A_START - 1.0)
        d1, d1_prime, d2, d2_prime = self._growth_splines(-np.log1p(z))
        return d1, d2, d1_prime / d1, d2_prime / d2

    def growth_factor(self, z: ArrayLike) -> np.ndarray:
        """D1(z), normalised to 1 at z = 0."""
        return self.growth(z)[0]

    # ---------------------------------------------------------------- power spectrum
    def _transfer_eh98(self, k: np.ndarray) -> np.ndarray:
        """Eisenstein & Hu (1998) transfer function with baryons; k in h/Mpc."""
        omega_m, omega_b = self.Omega_m, self.Omega_b
        omega_c = omega_m - omega_b
        baryon_fraction = omega_b / omega_m
        om_h2 = omega_m * self.h**2
        ob_h2 = omega_b * self.h**2
        theta = self.T_cmb / 2.7
        k_mpc = k * self.h  # 1/Mpc
        z_eq = 2.50e4 * om_h2 / theta**4  # eq. 2
        k_eq = 7.46e-2 * om_h2 / theta**2  # eq. 3
        b1_d = 0.313 * om_h2**-0.419 * (1.0 + 0.607 * om_h2**0.674)  # eq. 4
        b2_d = 0.238 * om_h2**0.223
        z_d = 1291.0 * om_h2**0.251 / (1.0 + 0.659 * om_h2**0.828) * (1.0 + b1_d * ob_h2**b2_d)
        r_d = 31.5 * ob_h2 / theta**4 / (z_d / 1e3)  # eq. 5
        r_eq = 31.5 * ob_h2 / theta**4 / (z_eq / 1e3)
        sound_horizon = (2.0 / (3.0 * k_eq) * math.sqrt(6.0 / r_eq)  # eq. 6
                         * math.log((math.sqrt(1.0 + r_d) + math.sqrt(r_d + r_eq))
                                    / (1.0 + math.sqrt(r_eq))))
        k_silk = 1.6 * ob_h2**0.52 * om_h2**0.73 * (1.0 + (10.4 * om_h2) ** -0.95)  # eq. 7
        q = k_mpc / (13.41 * k_eq)  # eq. 10
        a1 = (46.9 * om_h2) ** 0.670 * (1.0 + (32.1 * om_h2) ** -0.532)  # eq. 11
        a2 = (12.0 * om_h2) ** 0.424 * (1.0 + (45.0 * om_h2) ** -0.582)
        alpha_c = a1**-baryon_fraction * a2 ** -(baryon_fraction**3)
        b1 = 0.944 / (1.0 + (458.0 * om_h2) ** -0.708)  # eq. 12
        b2 = (0.395 * om_h2) ** -0.0266
        beta_c = 1.0 / (1.0 + b1 * ((omega_c / omega_m) ** b2 - 1.0))
        y = (1.0 + z_eq) / (1.0 + z_d)  # eq. 15
        g_y = y * (-6.0 * math.sqrt(1.0 + y) + (2.0 + 3.0 * y)
                   * math.log((math.sqrt(1.0 + y) + 1.0) / (math.sqrt(1.0 + y) - 1.0)))
        alpha_b = 2.07 * k_eq * sound_horizon * (1.0 + r_d) ** -0.75 * g_y  # eq. 14

        def t0_tilde(alpha: float, beta: float) -> np.ndarray:  # eqs. 19-20
            log_term = np.log(math.e + 1.8 * beta * q)
            c = 14.2 / alpha + 386.0 / (1.0 + 69.9 * q**1.08)
            return log_term / (log_term + c * q**2)

        ks = k_mpc * sound_horizon
        f = 1.0 / (1.0 + (ks / 5.4) ** 4)  # eq. 18
        t_cdm = f * t0_tilde(1.0, beta_c) + (1.0 - f) * t0_tilde(alpha_c, beta_c)  # eq. 17
        beta_node = 8.41 * om_h2**0.435  # eq. 23
        beta_b = 0.5 + baryon_fraction + (3.0 - 2.0 * baryon_fraction) * math.sqrt(
            (17.2 * om_h2) ** 2 + 1.0)  # eq. 24
        s_tilde = sound_horizon / (1.0 + (beta_node / ks) ** 3) ** (1.0 / 3.0)  # eq. 22
        t_baryon = (t0_tilde(1.0, 1.0) / (1.0 + (ks / 5.2) ** 2)  # eq. 21
                    + alpha_b / (1.0 + (beta_b / ks) ** 3) * np.exp(-((k_mpc / k_silk) ** 1.4))
                    ) * np.sinc(k_mpc * s_tilde / math.pi)
        return baryon_fraction * t_baryon + omega_c / omega_m * t_cdm  # eq. 16

    def _unnormalised_power(self, k: np.ndarray) -> np.ndarray:
        return k**self.n_s * self._transfer_eh98(k) ** 2

    def _variance_integrals(self, radius: np.ndarray, amplitude: float,
                            with_slope: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """sigma^2(R) and (if ``with_slope``) d sigma^2 / d ln R at z = 0, P = A k^n_s T^2.

        Simpson's rule in ln k on ``_SIGMA_LOG_K``; radius has any shape.
        """
        k = np.exp(_SIGMA_LOG_K)
        weight = k**3 * amplitude * self._unnormalised_power(k) / (2.0 * math.pi**2)
        x = np.asarray(radius, dtype=np.float64)[..., None] * k
        window, window_slope = _top_hat(x, with_slope)
        variance = simpson(weight * window**2, x=_SIGMA_LOG_K, axis=-1)
        if not with_slope:
            return variance, None
        dvariance_dlnr = simpson(weight * 2.0 * window * window_slope * x, x=_SIGMA_LOG_K,
                                 axis=-1)
        return variance, dvariance_dlnr

    @cached_property
    def _power_amplitude(self) -> float:
        """A in P(k, 0) = A k^n_s T^2(k), fixed by sigma(8 Mpc/h) = sigma_8."""
        unit_variance, _ = self._variance_integrals(np.array(SIGMA_8_RADIUS_MPC_H), 1.0, False)
        return float(self.sigma_8**2 / unit_variance)

    def linear_power(self, k: ArrayLike, z: ArrayLike = 0.0) -> np.ndarray:
        """Linear matter power spectrum P(k, z) = D1(z)^2 P(k, 0) [(Mpc/h)^3], k in h/Mpc."""
        k = np.asarray(k, dtype=np.float64)
        _check_range("wavenumber k [h/Mpc]", k, 0.0, np.inf, open_low=True)
        d1 = self.growth_factor(z)
        return d1**2 * self._power_amplitude * self._unnormalised_power(k)

    def sigma_r(self, radius: ArrayLike, z: ArrayLike = 0.0) -> np.ndarray:
        """RMS linear overdensity in top-hat spheres of ``radius`` [Mpc/h] at redshift z."""
        radius = np.asarray(radius, dtype=np.float64)
        _check_range("radius [Mpc/h]", radius, 0.0, np.inf, open_low=True)
        variance, _ = self._variance_integrals(radius, self._power_amplitude, False)
        return self.growth_factor(z) * np.sqrt(variance)

    def sigma_r_with_slope(self, radius: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """(sigma(R, z = 0), d ln sigma / d ln R) for top-hat ``radius`` [Mpc/h], in one pass.

        The slope is independent of z (sigma(R, z) = D1(z) sigma(R, 0)).
        """
        radius = np.asarray(radius, dtype=np.float64)
        _check_range("radius [Mpc/h]", radius, 0.0, np.inf, open_low=True)
        variance, dvariance_dlnr = self._variance_integrals(radius, self._power_amplitude, True)
        return np.sqrt(variance), 0.5 * dvariance_dlnr / variance

    @property
    def mean_matter_density(self) -> float:
        """Comoving mean matter density rho_m [(Msun/h) / (Mpc/h)^3]."""
        return RHO_CRIT_MSUN_H_MPC_H3 * self.Omega_m

    def lagrangian_radius(self, mass: ArrayLike) -> np.ndarray:
        """Radius [Mpc/h] of the sphere holding ``mass`` [Msun/h] at the mean matter density."""
        mass = np.asarray(mass, dtype=np.float64)
        _check_range("mass [Msun/h]", mass, 0.0, np.inf, open_low=True)
        return np.cbrt(3.0 * mass / (4.0 * math.pi * self.mean_matter_density))

    def sigma_m(self, mass: ArrayLike, z: ArrayLike = 0.0) -> np.ndarray:
        """sigma of the top-hat sphere holding ``mass`` [Msun/h], M = 4/3 pi rho_m R^3."""
        return self.sigma_r(self.lagrangian_radius(mass), z)


def _top_hat(x: np.ndarray, with_slope: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Top-hat window W(x) = 3 (sin x - x cos x) / x^3 and, if asked, dW/dx.

    Series expansions below x = 1e-2, where the closed forms lose digits.
    """
    small = x < 1e-2
    xs = np.where(small, 1.0, x)
    sin, cos = np.sin(xs), np.cos(xs)
    window = np.where(small, 1.0 - x**2 / 10.0, 3.0 * (sin - xs * cos) / xs**3)
    if not with_slope:
        return window, None
    return window, np.where(small, -x / 5.0, 3.0 * sin / xs**2 - 3.0 * window / xs)


def _check_range(name: str, values: np.ndarray, low: float, high: float,
                 open_low: bool = False) -> None:
    """Raise ValueError naming ``name`` if any value is NaN or outside [low, high]."""
    below = values <= low if open_low else values < low
    if np.any(below | (values > high) | np.isnan(values)):
        bracket = "(" if open_low else "["
        raise ValueError(f"{name} must lie in {bracket}{low}, {high}], got values from "
                         f"{np.min(values)} to {np.max(values)} (NaN if any is NaN)")
