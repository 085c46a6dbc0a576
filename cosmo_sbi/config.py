"""Load, merge and validate the workflow configuration.

The JSON schema in ``workflow/schemas/config.schema.yaml`` is the one source of truth for
the structure (the Snakefile validates against the same file); :func:`check_config` adds
the checks that need arithmetic. Every error names the offending field and what was
expected.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cosmo_sbi import PARAMETER_NAMES

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"

Config = dict[str, Any]


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what was expected."""


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> Config:
    """Return ``base`` updated recursively by ``overlay`` (overlay wins; inputs untouched)."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_schema() -> dict[str, Any]:
    """The config JSON schema as a dict."""
    with open(SCHEMA_PATH) as stream:
        return yaml.safe_load(stream)


def _validator_filling_defaults() -> type:
    """A Draft 2020-12 validator that also fills ``default`` values (as Snakemake does)."""
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, schema):  # noqa: ANN001
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": properties_with_defaults})


def validate_schema(config: Config) -> Config:
    """Validate ``config`` against the schema in place, filling defaults; return it."""
    validator = _validator_filling_defaults()(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{_field(e.absolute_path)}: {e.message}" for e in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    return config


def _field(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _check_range(field: str, bounds: list[float]) -> None:
    low, high = bounds
    if not low < high:
        raise ConfigError(f"{field}: expected [min, max] with min < max, got {list(bounds)}")


def check_config(config: Config) -> Config:
    """Checks beyond the schema: ordered ranges, physical limits, geometry, executables."""
    ranges = config["design"]["latin_hypercube"]["ranges"]
    fiducial = config["design"]["fiducial"]["parameters"]
    omega_b = config["design"]["fixed"]["Omega_b"]
    for name in PARAMETER_NAMES:
        _check_range(f"design.latin_hypercube.ranges.{name}", ranges[name])
    physical_lower = {"Omega_m": 0.0, "sigma_8": 0.0, "n_s": 0.0, "h": 0.0}
    for name, limit in physical_lower.items():
        field = f"design.latin_hypercube.ranges.{name}"
        if ranges[name][0] <= limit:
            raise ConfigError(f"{field}: expected values > {limit}, got min {ranges[name][0]}")
        if fiducial[name] <= limit:
            raise ConfigError(
                f"design.fiducial.parameters.{name}: expected > {limit}, got {fiducial[name]}"
            )
    if ranges["Omega_m"][1] >= 1.0:
        raise ConfigError(
            f"design.latin_hypercube.ranges.Omega_m: expected max < 1 (flat, Omega_de > 0), "
            f"got {ranges['Omega_m'][1]}"
        )
    if omega_b >= ranges["Omega_m"][0] or omega_b >= fiducial["Omega_m"]:
        raise ConfigError(f"design.fixed.Omega_b: expected < every Omega_m, got {omega_b}")
    w_max = ranges["w0"][1] + ranges["wa"][1]
    if w_max >= 0:
        raise ConfigError(
            "design.latin_hypercube.ranges: expected w0 + wa < 0 everywhere in the prior "
            f"(dark energy must not dominate at early times), max w0 + wa = {w_max:g}"
        )
    if fiducial["w0"] + fiducial["wa"] >= 0:
        raise ConfigError("design.fiducial.parameters: expected w0 + wa < 0")

    hist = config["histogram"]
    for key in ("ra_deg", "dec_deg", "z_obs"):
        _check_range(f"histogram.{key}", hist[key])
    for key in ("ra_deg", "dec_deg"):
        if max(abs(v) for v in hist[key]) >= 90:
            raise ConfigError(f"histogram.{key}: expected |angle| < 90 deg, got {hist[key]}")
    padding = config["lightcone"]["z_padding"]
    if hist["z_obs"][0] - padding <= 0:
        raise ConfigError(
            f"histogram.z_obs: expected min - lightcone.z_padding > 0, got {hist['z_obs'][0]}"
            f" - {padding}"
        )
    aperture = config["lightcone"]["aperture_deg"]
    corner = window_corner_angle_deg(hist["ra_deg"], hist["dec_deg"])
    if corner >= aperture:
        raise ConfigError(
            f"lightcone.aperture_deg: the RA/DEC window {hist['ra_deg']} x {hist['dec_deg']} "
            f"has corners {corner:.2f} deg off the cone axis; expected aperture > {corner:.2f}, "
            f"got {aperture}"
        )

    split = config.get("dataset", {}).get("split")
    if split and not math.isclose(sum(split.values()), 1.0, abs_tol=1e-9):
        raise ConfigError(f"dataset.split: expected fractions summing to 1, got {split}")

    if config["simulator"]["backend"] == "pinocchio":
        check_executable(config["simulator"]["pinocchio"]["executable"])

    from cosmo_sbi.posterior_config import check_posterior_config  # imports this module

    check_posterior_config(config)
    return config


def window_corner_angle_deg(ra_deg: list[float], dec_deg: list[float]) -> float:
    """Largest angle [deg] between the cone axis (RA = DEC = 0) and a corner of the window."""
    corners = [(ra, dec) for ra in ra_deg for dec in dec_deg]
    cosines = [math.cos(math.radians(ra)) * math.cos(math.radians(dec)) for ra, dec in corners]
    return math.degrees(math.acos(min(cosines)))


def check_executable(executable: str) -> str:
    """Resolve a PINOCCHIO executable (path or name on PATH); error if missing/not executable."""
    resolved = shutil.which(executable)
    if resolved is None:
        exists = os.path.exists(executable)
        reason = "is not executable" if exists else "was not found (nor on PATH)"
        raise ConfigError(
            f"simulator.pinocchio.executable: {executable!r} {reason}; expected the path to "
            "a PINOCCHIO v5 build compiled with -DPLC (see README, 'Using PINOCCHIO')"
        )
    return resolved


def load_config(paths: Iterable[str | os.PathLike[str]]) -> Config:
    """Deep-merge YAML files in order (later wins), validate and check; return the config."""
    config: Config = {}
    for path in paths:
        try:
            with open(path) as stream:
                layer = yaml.safe_load(stream) or {}
        except OSError as error:
            raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
        if not isinstance(layer, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        config = deep_merge(config, layer)
    return check_config(validate_schema(config))


def config_hash(section: Any) -> str:
    """Stable SHA-256 (first 16 hex digits) of a JSON-serialisable config section."""
    text = json.dumps(section, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
