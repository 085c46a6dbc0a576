"""Shared fixtures: the repository paths and configs built from config.yaml + overlays."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from cosmo_sbi.config import Config, check_config, deep_merge, validate_schema

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


def raw_default_config() -> Config:
    """config.yaml as written (no defaults filled, not validated)."""
    with open(REPO / "config.yaml") as stream:
        return yaml.safe_load(stream)


def make_config(overlay: dict | None = None) -> Config:
    """config.yaml overlaid with ``overlay``, validated and checked."""
    return check_config(validate_schema(deep_merge(raw_default_config(), overlay or {})))


FIDUCIAL_PARAMETERS: dict[str, float] = {
    **raw_default_config()["design"]["fiducial"]["parameters"],
    **raw_default_config()["design"]["fixed"],
}
"""The fiducial cosmology of config.yaml (six parameters and Omega_b), for tests."""


@pytest.fixture
def default_config() -> Config:
    return copy.deepcopy(make_config())
