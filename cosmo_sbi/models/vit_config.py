"""Architecture config of the 3D ViT (:class:`cosmo_sbi.models.vit.ViT3D`), its presets and
shape rules; no torch import (cosmo_sbi.models.configs checks it at Snakemake's parse)."""

from __future__ import annotations

from dataclasses import dataclass

from cosmo_sbi.models.configs import check_architecture

POOLS = ("cls", "mean", "mean_residual")
STEMS = ("patch", "conv")


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of :class:`ViT3D`; every field can be overridden in ``models.vit``."""

    patch_size: int = 8
    """Side of a cubic patch in voxels; must divide the grid size."""
    dim: int = 384
    depth: int = 12
    heads: int = 6
    mlp_dim: int = 1536
    head_hidden: int = 1536
    """Width of the hidden layer of the MLP head."""
    stem: str = "patch"
    """patch (each patch linearly embedded: one strided convolution) | conv (a hybrid ViT:
    a 3^3 convolution of ``stem_channels`` at stride 2 and GELU first, then the strided
    patch convolution on its output; the same tokens, local features inside a patch)."""
    stem_channels: int = 16
    """Channels of the conv stem's first convolution."""
    pool: str = "cls"
    """cls (read the CLS token) | mean (average the patch tokens) | mean_residual (average
    the patch tokens' residual stream without the final LayerNorm: a per-token LayerNorm
    divides out each token's scale, so the head of cls and mean cannot read the overall
    halo abundance; docs/training.md has the measurement)."""
    dropout: float = 0.1
    """Dropout after the embedding, in the MLPs, after attention and in the head."""

    def check(self, grid_size: int) -> None:
        """Raise ValueError naming ``models.vit.<field>`` unless the fields are valid and the
        patches tile a grid of ``grid_size``^3 voxels."""
        check_architecture("models.vit", self,
                           ("patch_size", "dim", "depth", "heads", "mlp_dim", "head_hidden",
                            "stem_channels"))
        if self.stem not in STEMS:
            raise ValueError(f"models.vit.stem: expected one of {STEMS}, got {self.stem!r}")
        if self.stem == "conv" and self.patch_size % 2:
            raise ValueError(f"models.vit.patch_size: the conv stem halves the grid first; "
                             f"expected an even patch size, got {self.patch_size}")
        if grid_size % self.patch_size:
            raise ValueError(
                f"models.vit.patch_size: expected a divisor of the grid size {grid_size}, "
                f"got {self.patch_size}"
            )
        if self.dim % self.heads:
            raise ValueError(f"models.vit.heads: expected a divisor of dim={self.dim}, "
                             f"got {self.heads}")
        if self.pool not in POOLS:
            raise ValueError(f"models.vit.pool: expected one of {POOLS}, got {self.pool!r}")


PRESETS: dict[str, ViTConfig] = {
    "paper": ViTConfig(),
    "small": ViTConfig(patch_size=8, dim=64, depth=2, heads=4, mlp_dim=128, head_hidden=64,
                       dropout=0.0),
}
