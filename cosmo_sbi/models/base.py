"""Pieces shared by every architecture: the input check and the Gaussian output head."""

from __future__ import annotations

import torch


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
