"""The networks: build one from the config, count its parameters and FLOPs, load a trained one.

A model directory (written by :func:`cosmo_sbi.train.train_model`) holds ``model.pt`` (the
state dict of the best weights) and ``model_config.json`` (``{"model": name, "config":
{dataclass fields}, "grid_size": D, "n_params": 6}``), enough for :func:`load_trained`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.config import ConfigError
from cosmo_sbi.models import cnn, vit

ARCHITECTURES: dict[str, tuple[type[nn.Module], type, dict[str, Any]]] = {
    # name: (model class, its dataclass config, named presets of that config)
    "cnn": (cnn.CNN3D, cnn.CNNConfig, cnn.PRESETS),
    "vit": (vit.ViT3D, vit.ViTConfig, vit.PRESETS),
}
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


def resolve_config(name: str, model_config: Mapping[str, Any]) -> Any:
    """The dataclass config of model ``name`` from ``{"preset": ..., **overrides}``.

    Raises ConfigError naming ``models.<name>.<field>`` for an unknown model, preset or field.
    """
    if name not in ARCHITECTURES:
        raise ConfigError(f"models: unknown model {name!r}; expected one of "
                          f"{sorted(ARCHITECTURES)}")
    _, _, presets = ARCHITECTURES[name]
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


def build_model(name: str, model_config: Mapping[str, Any], grid_size: int = 64,
                n_params: int = len(PARAMETER_NAMES)) -> nn.Module:
    """A freshly initialised model ``name`` ("cnn" | "vit") for (B, 1, D, D, D) inputs with
    D = ``grid_size``, predicting ``n_params`` means and log-variances."""
    config = resolve_config(name, model_config)
    architecture, _, _ = ARCHITECTURES[name]
    return architecture(config=config, grid_size=grid_size, n_params=n_params)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (a DDP or compiled wrapper counts as its module)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def describe(name: str, model: nn.Module) -> dict[str, Any]:
    """The content of ``model_config.json``: enough to rebuild ``model`` exactly."""
    return {"model": name, "config": dataclasses.asdict(model.config),
            "grid_size": model.grid_size, "n_params": model.n_params}


def model_from_description(description: Mapping[str, Any]) -> nn.Module:
    """Build the (untrained) model described by :func:`describe`'s output."""
    name = description["model"]
    architecture, config_class, _ = ARCHITECTURES[name]
    fields = {key: tuple(value) if isinstance(value, list) else value
              for key, value in description["config"].items()}
    return architecture(config=config_class(**fields), grid_size=description["grid_size"],
                        n_params=description["n_params"])


def load_trained(model_dir: str | os.PathLike[str], map_location: str | torch.device = "cpu"
                 ) -> nn.Module:
    """The trained model in ``model_dir`` (``model_config.json`` + ``model.pt``), in eval mode.

    Raises FileNotFoundError if a file is missing and ValueError naming ``model.pt`` if its
    weights do not fit the architecture described by ``model_config.json``.
    """
    model_dir = Path(model_dir)
    config_path, weights_path = model_dir / MODEL_CONFIG_FILE, model_dir / WEIGHTS_FILE
    try:
        with open(config_path) as stream:
            description = json.load(stream)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{config_path}: not readable JSON ({error}); rerun training") from error
    try:
        model = model_from_description(description)
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{config_path}: not a model description written by cosmo_sbi "
                         f"({error})") from error
    try:
        state = torch.load(weights_path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
        raise ValueError(f"{weights_path}: damaged weights ({type(error).__name__}: "
                         f"{str(error)[:200]}); rerun training") from error
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"{weights_path}: the weights do not match the architecture in {config_path} "
            f"({description['model']}, {description['config']}): {error}"
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
