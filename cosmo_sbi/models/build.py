"""Build a network of the registry (cosmo_sbi.models) from the config, count its parameters
and FLOPs, save and load a trained one.

A model directory (written by :func:`cosmo_sbi.train.train_model`) holds ``model.pt`` (the
state dict of the best weights) and ``model_config.json`` (``{"model": name, "config":
{dataclass fields}, "grid_size": D, "n_params": 6}``), enough for :func:`load_trained`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.config import Config
from cosmo_sbi.io import atomic_path
from cosmo_sbi.models import network
from cosmo_sbi.models.configs import check_model_configs, model_errors, resolve_config

WEIGHTS_FILE = "model.pt"
MODEL_CONFIG_FILE = "model_config.json"

PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    # (substring of torch.cuda.get_device_name(), dense bf16 FLOP/s); first match wins.
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("A100", 312e12),
)


def build_model(name: str, model_config: Mapping[str, Any], grid_size: int = 64,
                n_params: int = len(PARAMETER_NAMES)) -> nn.Module:
    """A freshly initialised model ``name`` ("cnn" | "vit") for (B, 1, D, D, D) inputs with
    D = ``grid_size``, predicting ``n_params`` means and log-variances."""
    config = resolve_config(name, model_config)
    return network(name).model(config=config, grid_size=grid_size, n_params=n_params)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (a DDP or compiled wrapper counts as its module)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def describe(name: str, model: nn.Module) -> dict[str, Any]:
    """The content of ``model_config.json``: enough to rebuild ``model`` exactly."""
    return {"model": name, "config": dataclasses.asdict(model.config),
            "grid_size": model.grid_size, "n_params": model.n_params}


def model_from_description(description: Mapping[str, Any]) -> nn.Module:
    """Build the (untrained) model described by :func:`describe`'s output."""
    entry = network(description["model"])
    fields = {key: tuple(value) if isinstance(value, list) else value
              for key, value in description["config"].items()}
    return entry.model(config=entry.config(**fields), grid_size=description["grid_size"],
                       n_params=description["n_params"])


def save_trained(model_dir: str | os.PathLike[str], name: str, model: nn.Module,
                 state_dict: Mapping[str, torch.Tensor]) -> None:
    """Write ``model.pt`` (``state_dict``) and ``model_config.json`` (:func:`describe` of
    ``model``) to ``model_dir``, each atomically; :func:`load_trained` reads them back."""
    model_dir = Path(model_dir)
    with atomic_path(model_dir / WEIGHTS_FILE) as temporary:
        torch.save(dict(state_dict), temporary)
    with atomic_path(model_dir / MODEL_CONFIG_FILE) as temporary:
        temporary.write_text(json.dumps(describe(name, model), indent=2, sort_keys=True) + "\n")


def read_torch_file(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a damaged file (truncated, garbage) raises
    ValueError naming ``path``, a missing one FileNotFoundError."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise ValueError(f"{path}: not a readable torch file ({type(error).__name__}: "
                         f"{error}); expected one written by `cosmo-sbi train`") from error


def load_trained(model_dir: str | os.PathLike[str], map_location: str | torch.device = "cpu"
                 ) -> nn.Module:
    """The trained model in ``model_dir`` (``model_config.json`` + ``model.pt``), in eval mode.

    Raises FileNotFoundError if a file is missing and ValueError naming the file if
    ``model_config.json`` is not a model description, ``model.pt`` is not a torch state dict
    (truncated, garbage) or its weights do not fit the architecture.
    """
    model_dir = Path(model_dir)
    config_path, weights_path = model_dir / MODEL_CONFIG_FILE, model_dir / WEIGHTS_FILE
    try:
        model = model_from_description(json.loads(config_path.read_bytes()))
    except (KeyError, TypeError, ValueError) as error:  # JSON, UTF-8 and ConfigError included
        raise ValueError(f"{config_path}: not a model description written by cosmo_sbi "
                         f"({error})") from error
    state = read_torch_file(weights_path, map_location)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"{weights_path}: the weights do not match the architecture in {config_path} "
            f"({model.config}): {error}"
        ) from error
    return model.to(map_location).eval()


def training_flops_per_sample(model: nn.Module) -> int:
    """FLOPs of one training step per sample: forward + backward (twice the forward)."""
    return 3 * model.forward_flops_per_sample()


def peak_bf16_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a known GPU (by its name), else None."""
    return next((peak for key, peak in PEAK_BF16_FLOPS if key in device_name), None)


def model_flops_utilisation(model: nn.Module, samples_per_second: float,
                            device_name: str) -> float | None:
    """MFU: achieved training FLOP/s over the GPU's bf16 peak (None for an unknown device)."""
    peak = peak_bf16_flops(device_name)
    if peak is None:
        return None
    return training_flops_per_sample(model) * samples_per_second / peak


def check_models(config: Config) -> Config:
    """:func:`~cosmo_sbi.models.configs.check_model_configs` (no torch, also run at
    Snakemake's parse), then build every network to train on torch's meta device (no memory)
    for the histogram grid: the train stage's check before it reads the dataset."""
    check_model_configs(config)
    grid = config["histogram"]["bins"][0]
    for name in config["training"]["models"]:
        with model_errors(name, grid), torch.device("meta"):
            build_model(name, config["models"][name], grid_size=grid)
    return config
