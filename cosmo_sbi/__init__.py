"""cosmo_sbi: from simulated halo light cones to cosmological constraints with deep learning."""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("cosmo-sbi")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

PARAMETER_NAMES: tuple[str, ...] = ("Omega_m", "sigma_8", "w0", "wa", "n_s", "h")
"""The six inferred parameters, in the order used by every table and tensor."""

Config = dict[str, Any]
"""A validated configuration (cosmo_sbi.config.load_config): nested dicts of YAML values."""
