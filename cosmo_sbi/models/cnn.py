"""3D convolutional network: a (B, 1, D, D, D) halo-count histogram -> mean and log-variance
of each cosmological parameter.

Stages of ``convs_per_stage`` x (3^3 convolution, batch norm, GELU) each followed by a 2^3 max
pool halve the grid while the channels grow; a global average pool makes the head independent
of the grid size; an MLP head gives 2 * n_params outputs. The ``paper`` preset matches the
9.2M parameters of the CNN of Hwang, Sabiu et al. 2023 (arXiv 2304.08192) in size, not layer
by layer.
"""

from __future__ import annotations

import torch
from torch import nn

from cosmo_sbi.models.base import check_histogram_batch, split_mean_log_var
from cosmo_sbi.models.cnn_config import PRESETS, CNNConfig

__all__ = ["CNN3D", "PRESETS", "CNNConfig"]


class CNN3D(nn.Module):
    """forward(x: (B, 1, D, D, D)) -> (mean (B, n_params), log_var (B, n_params))."""

    def __init__(self, *, config: CNNConfig, grid_size: int, n_params: int) -> None:
        super().__init__()
        config.check(grid_size)
        self.config = config
        self.grid_size = grid_size
        self.n_params = n_params

        layers: list[nn.Module] = []
        in_channels = 1
        for stage, out_channels in enumerate(config.channels):
            patches = stage == 0 and config.stem_stride > 1
            for index in range(config.convs_per_stage):
                conv = (nn.Conv3d(in_channels, out_channels, kernel_size=config.stem_stride,
                                  stride=config.stem_stride, bias=False)
                        if patches and index == 0 else
                        nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1,
                                  bias=False))
                layers += [conv, nn.BatchNorm3d(out_channels), nn.GELU()]
                in_channels = out_channels
            if not patches:
                layers.append(nn.MaxPool3d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels, config.head_hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.head_hidden, 2 * n_params),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_histogram_batch(x, self.grid_size)
        return split_mean_log_var(self.head(self.pool(self.features(x))))

    def forward_flops_per_sample(self) -> int:
        """Forward FLOPs of one sample in convolutions and matrix products (2 per
        multiply-add; normalisation, activations and pooling are not counted)."""
        flops = 0
        side = self.grid_size
        in_channels = 1
        stride = self.config.stem_stride
        for stage, out_channels in enumerate(self.config.channels):
            patches = stage == 0 and stride > 1
            if patches:
                side //= stride
            for index in range(self.config.convs_per_stage):
                kernel = stride**3 if patches and index == 0 else 27
                flops += 2 * kernel * in_channels * out_channels * side**3
                in_channels = out_channels
            if not patches:
                side //= 2
        flops += 2 * in_channels * self.config.head_hidden
        flops += 2 * self.config.head_hidden * 2 * self.n_params
        return flops
