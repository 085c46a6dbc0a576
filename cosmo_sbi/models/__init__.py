"""The registry of networks: the one list of model names (CLI choices, the Snakemake
``{model}`` wildcard, checked against the config schema by tests/test_models.py) and what
each network can do. Importing it does not import torch: a network's module is imported
only when its classes are asked for.

Adding a network: write ``cosmo_sbi/models/<name>.py`` with a frozen dataclass config, a
``PRESETS`` dict of named configs and an ``nn.Module`` built as
``Model(config=..., grid_size=D, n_params=6)`` whose ``forward(x)`` returns
``(mean, log_var)`` (see cnn.py), then add one :class:`Network` line to ``NETWORKS``
(docs/architecture.md). Building, saving and loading live in :mod:`cosmo_sbi.models.build`.
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

    ``module`` defines the classes named ``model_class`` (the ``nn.Module``) and
    ``config_class`` (its dataclass config) and ``PRESETS`` (preset name -> config).
    ``attention_maps``: the model takes ``forward(x, return_attention=True)`` and has a
    ``pos_embedding``, so evaluation draws cosmo_sbi.interpret's attention figures.
    ``grad_cam``: the model has a ``features`` stack of convolution blocks ending in GELUs,
    so evaluation draws cosmo_sbi.interpret's Grad-CAM figures.
    """

    name: str
    module: str
    model_class: str
    config_class: str
    attention_maps: bool = False
    grad_cam: bool = False

    def _attribute(self, name: str) -> Any:
        return getattr(importlib.import_module(self.module), name)

    @property
    def model(self) -> type:
        return self._attribute(self.model_class)

    @property
    def config(self) -> type:
        return self._attribute(self.config_class)

    @property
    def presets(self) -> Mapping[str, Any]:
        return self._attribute("PRESETS")


NETWORKS: dict[str, Network] = {network.name: network for network in (
    Network("cnn", "cosmo_sbi.models.cnn", "CNN3D", "CNNConfig", grad_cam=True),
    Network("vit", "cosmo_sbi.models.vit", "ViT3D", "ViTConfig", attention_maps=True),
)}
MODEL_NAMES: tuple[str, ...] = tuple(NETWORKS)


def network(name: str) -> Network:
    """The registry entry of model ``name``; ConfigError listing the known names otherwise."""
    if name not in NETWORKS:
        raise ConfigError(f"models: unknown model {name!r}; expected one of {list(MODEL_NAMES)}")
    return NETWORKS[name]
