"""Pieces shared by every architecture: the input check and the Gaussian output head."""

from __future__ import annotations

from typing import Any

import torch


def check_architecture(prefix: str, config: Any, positive: tuple[str, ...]) -> None:
    """Raise ValueError naming ``<prefix>.<field>`` unless the ``positive`` fields of the
    dataclass ``config`` are >= 1 and its ``dropout`` lies in [0, 1)."""
    for name in positive:
        if getattr(config, name) < 1:
            raise ValueError(f"{prefix}.{name}: expected >= 1, got {getattr(config, name)}")
    if not 0 <= config.dropout < 1:
        raise ValueError(f"{prefix}.dropout: expected 0 <= dropout < 1, got {config.dropout}")


def check_histogram_batch(x: torch.Tensor, grid_size: int) -> None:
    """Raise ValueError unless ``x`` has shape (B, 1, grid_size, grid_size, grid_size)."""
    expected = (1, grid_size, grid_size, grid_size)
    if x.dim() != 5 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"expected a histogram batch of shape (B, {', '.join(map(str, expected))}), "
            f"got {tuple(x.shape)}"
        )


def split_mean_log_var(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the final layer's (B, 2 * n_params) output into mean and log-variance (B, n_params).

    Both are returned in float32 so the loss is computed in full precision under autocast.
    """
    mean, log_var = output.float().chunk(2, dim=-1)
    return mean, log_var
