"""Architecture config of the 3D CNN (:class:`cosmo_sbi.models.cnn.CNN3D`), its presets and
shape rules; no torch import (cosmo_sbi.models.configs checks it at Snakemake's parse)."""

from __future__ import annotations

from dataclasses import dataclass

from cosmo_sbi.models.configs import check_architecture


@dataclass(frozen=True)
class CNNConfig:
    """Architecture of :class:`CNN3D`; every field can be overridden in ``models.cnn``."""

    channels: tuple[int, ...] = (32, 64, 128, 256, 320)
    """Output channels of each stage; each stage halves the grid."""
    convs_per_stage: int = 2
    head_hidden: int = 2048
    """Width of the hidden layer of the MLP head."""
    dropout: float = 0.1
    """Dropout before the last linear layer."""
    stem_stride: int = 1
    """1: the first stage is a 3^3 convolution at full resolution, pooled by 2. s > 1: it
    reads non-overlapping s^3 patches instead (kernel = stride = s, no pool), so the
    full-resolution activations that bound a small network on the CPU are never made."""

    @property
    def reduction(self) -> int:
        """Factor by which the stages shrink the grid along each axis."""
        first = self.stem_stride if self.stem_stride > 1 else 2
        return first * 2 ** (len(self.channels) - 1)

    def check(self, grid_size: int) -> None:
        """Raise ValueError naming ``models.cnn.<field>`` unless the fields are valid and the
        network fits a grid of ``grid_size``^3 voxels."""
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"models.cnn.channels: expected positive integers, "
                             f"got {self.channels}")
        check_architecture("models.cnn", self, ("convs_per_stage", "head_hidden",
                                                "stem_stride"))
        if grid_size < self.reduction or grid_size % self.stem_stride:
            raise ValueError(
                f"models.cnn.channels: {len(self.channels)} stages with stem_stride "
                f"{self.stem_stride} reduce the grid {self.reduction} times, so the grid size "
                f"must be a multiple of the stem stride and at least {self.reduction}; "
                f"got {grid_size}"
            )


PRESETS: dict[str, CNNConfig] = {
    "paper": CNNConfig(),
    "small": CNNConfig(channels=(8, 16, 32), convs_per_stage=1, head_hidden=64, dropout=0.0),
}
