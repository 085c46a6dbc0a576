"""The networks' configs without torch: ``models.<name>`` (a preset plus field overrides)
resolved to the network's dataclass config, and the shape rules checked against the
histogram grid, so a Snakemake parse (common.smk) refuses a wrong ``models.*`` value before
any job without importing torch. The train stage also builds each network on torch's meta
device (cosmo_sbi.models.build.check_models).

Each network's config module (``cosmo_sbi/models/<name>_config.py``) defines its frozen
dataclass, ``PRESETS`` and ``check(grid_size)``, which its ``nn.Module`` calls too: one set
of rules, whether or not the network is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from cosmo_sbi.config import Config, ConfigError
from cosmo_sbi.models import network


def check_architecture(prefix: str, config: Any, positive: tuple[str, ...]) -> None:
    """Raise ValueError naming ``<prefix>.<field>`` unless the ``positive`` fields of the
    dataclass ``config`` are >= 1 and its ``dropout`` lies in [0, 1)."""
    for name in positive:
        if getattr(config, name) < 1:
            raise ValueError(f"{prefix}.{name}: expected >= 1, got {getattr(config, name)}")
    if not 0 <= config.dropout < 1:
        raise ValueError(f"{prefix}.dropout: expected 0 <= dropout < 1, got {config.dropout}")


def resolve_config(name: str, model_config: Mapping[str, Any]) -> Any:
    """The dataclass config of model ``name`` from ``{"preset": ..., **overrides}``.

    Raises ConfigError naming ``models.<name>.<field>`` for an unknown model, preset or field.
    """
    presets = network(name).presets
    overrides = dict(model_config)
    preset = overrides.pop("preset", None)
    if preset not in presets:
        raise ConfigError(f"models.{name}.preset: expected one of {sorted(presets)}, "
                          f"got {preset!r}")
    base = presets[preset]
    fields = {field.name: field for field in dataclasses.fields(base)}
    for key, value in overrides.items():
        if key not in fields:
            raise ConfigError(f"models.{name}.{key}: unknown field; expected one of "
                              f"{sorted(fields)} (or preset)")
        overrides[key] = _checked_value(f"models.{name}.{key}", value, getattr(base, key))
    return dataclasses.replace(base, **overrides)


def _checked_value(field: str, value: Any, default: Any) -> Any:
    """``value`` in the type of the preset's ``default`` (a list becomes a tuple; an int may
    stand for a float); ConfigError naming ``field`` otherwise."""
    def fits(item: Any, like: Any) -> bool:
        if isinstance(like, float):
            return isinstance(item, int | float) and not isinstance(item, bool)
        return type(item) is type(like)

    if isinstance(default, tuple):
        if isinstance(value, list | tuple) and value and all(fits(v, default[0]) for v in value):
            return tuple(value)
        expected = f"a non-empty list of {type(default[0]).__name__}"
    elif fits(value, default):
        return value
    else:
        expected = type(default).__name__
    raise ConfigError(f"{field}: expected {expected}, got {value!r}")


@contextmanager
def model_errors(name: str, grid_size: int) -> Iterator[None]:
    """Turn a network's shape error into a ConfigError naming ``models.<name>`` (and
    ``histogram.bins`` when the message names no field)."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError, ZeroDivisionError) as error:
        message = str(error)
        if not message.startswith(f"models.{name}"):
            message = f"models.{name}: {message} (histogram.bins = {grid_size})"
        raise ConfigError(message) from error


def check_model_configs(config: Config) -> Config:
    """Resolve every ``models.*`` section and check each network to train against the
    histogram grid (its config's ``check``), without torch; ConfigError naming the field.
    Returns ``config``."""
    for name, section in config["models"].items():
        resolve_config(name, section)
    grid = config["histogram"]["bins"][0]
    for name in config["training"]["models"]:
        with model_errors(name, grid):
            resolve_config(name, config["models"][name]).check(grid)
    return config
