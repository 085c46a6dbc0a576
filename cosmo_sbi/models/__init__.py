"""The registry of networks: the one list of model names (CLI choices, the Snakemake
``{model}`` wildcard, checked against the config schema by tests/test_models.py) and what
each network can do. Importing it does not import torch: a network's module is imported
only when its classes are asked for.

Adding a network: write ``cosmo_sbi/models/<name>_config.py`` (no torch) with a frozen
dataclass config whose ``check(grid_size)`` raises ValueError naming ``models.<name>.<field>``
and a ``PRESETS`` dict of named configs, and ``cosmo_sbi/models/<name>.py`` with an
``nn.Module`` built as ``Model(config=..., grid_size=D, n_params=6)`` that calls
``config.check`` and whose ``forward(x)`` returns ``(mean, log_var)`` (see cnn.py), then add
one :class:`Network` line to ``NETWORKS`` (docs/architecture.md). Configs are resolved and
checked in :mod:`cosmo_sbi.models.configs` (no torch); building, saving and loading live in
:mod:`cosmo_sbi.models.build`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cosmo_sbi.config import ConfigError


@dataclass(frozen=True)
class Network:
    """One network of the registry.

    ``module`` defines the class named ``model_class`` (the ``nn.Module``);
    ``config_module``, importable without torch, defines ``config_class`` (its dataclass
    config) and ``PRESETS`` (preset name -> config).
    ``attention_maps``: the model takes ``forward(x, return_attention=True)`` and has a
    ``pos_embedding``, so evaluation draws cosmo_sbi.interpret's attention figures.
    ``grad_cam``: the model has a ``features`` stack of convolution blocks ending in GELUs,
    so evaluation draws cosmo_sbi.interpret's Grad-CAM figures.
    """

    name: str
    module: str
    model_class: str
    config_module: str
    config_class: str
    attention_maps: bool = False
    grad_cam: bool = False

    @property
    def model(self) -> type:
        return getattr(importlib.import_module(self.module), self.model_class)

    @property
    def config(self) -> type:
        return getattr(importlib.import_module(self.config_module), self.config_class)

    @property
    def presets(self) -> Mapping[str, Any]:
        return importlib.import_module(self.config_module).PRESETS


NETWORKS: dict[str, Network] = {network.name: network for network in (
    Network("cnn", "cosmo_sbi.models.cnn", "CNN3D", "cosmo_sbi.models.cnn_config", "CNNConfig",
            grad_cam=True),
    Network("vit", "cosmo_sbi.models.vit", "ViT3D", "cosmo_sbi.models.vit_config", "ViTConfig",
            attention_maps=True),
)}
MODEL_NAMES: tuple[str, ...] = tuple(NETWORKS)


def network(name: str) -> Network:
    """The registry entry of model ``name``; ConfigError listing the known names otherwise."""
    if name not in NETWORKS:
        raise ConfigError(f"models: unknown model {name!r}; expected one of {list(MODEL_NAMES)}")
    return NETWORKS[name]
