"""3D vision transformer: a (B, 1, D, D, D) halo-count histogram -> mean and log-variance of
each cosmological parameter.

The grid is cut into (D / patch_size)^3 cubic patches, each linearly embedded (a strided
convolution); a learned CLS token is prepended and a learned position embedding added; a
pre-norm transformer encoder (attention through ``scaled_dot_product_attention``) follows.
The head reads the CLS token (``pool: cls``, default), the mean of the patch tokens
(``pool: mean``), or the mean of their residual stream before the final LayerNorm
(``pool: mean_residual``, which keeps the tokens' scale: the overall abundance).
``forward(x, return_attention=True)`` also returns each layer's attention weights, computed
explicitly only then. The ``paper`` preset matches the 22.4M parameters of the ViT of Hwang,
Sabiu et al. 2023 (arXiv 2304.08192).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cosmo_sbi.models.base import check_histogram_batch, split_mean_log_var
from cosmo_sbi.models.vit_config import PRESETS, ViTConfig

__all__ = ["PRESETS", "ViT3D", "ViTConfig"]


class Attention(nn.Module):
    """Multi-head self-attention over (B, T, dim) tokens."""

    def __init__(self, *, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, return_attention: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (output (B, T, dim), weights (B, heads, T, T) or None)."""
        batch, tokens, dim = x.shape
        q, k, v = (self.qkv(x).view(batch, tokens, 3, self.heads, dim // self.heads)
                   .permute(2, 0, 3, 1, 4))
        if return_attention:
            scores = q @ k.transpose(-2, -1) * (dim // self.heads) ** -0.5
            weights = scores.float().softmax(dim=-1)
            out = weights.to(v.dtype) @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(batch, tokens, dim)
        return self.dropout(self.proj(out)), weights


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, *, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = Attention(dim=dim, heads=heads, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor, return_attention: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attention(self.norm1(x), return_attention)
        x = x + attended
        return x + self.mlp(self.norm2(x)), weights


class ViT3D(nn.Module):
    """forward(x: (B, 1, D, D, D)) -> (mean (B, n_params), log_var (B, n_params)); with
    ``return_attention=True`` also a list (one per layer) of (B, heads, T, T) weights, where
    T = 1 + (D / patch_size)^3 and token 0 is the CLS token."""

    def __init__(self, *, config: ViTConfig, grid_size: int, n_params: int) -> None:
        super().__init__()
        config.check(grid_size)
        self.config = config
        self.grid_size = grid_size
        self.n_params = n_params
        self.n_patches = (grid_size // config.patch_size) ** 3

        if config.stem == "conv":
            half = config.patch_size // 2
            self.patch_embedding = nn.Sequential(
                nn.Conv3d(1, config.stem_channels, kernel_size=3, stride=2, padding=1),
                nn.GELU(),
                nn.Conv3d(config.stem_channels, config.dim, kernel_size=half, stride=half))
        else:
            self.patch_embedding = nn.Conv3d(1, config.dim, kernel_size=config.patch_size,
                                             stride=config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.pos_embedding = nn.Parameter(torch.zeros(1, 1 + self.n_patches, config.dim))
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(dim=config.dim, heads=config.heads, mlp_dim=config.mlp_dim,
                  dropout=config.dropout)
            for _ in range(config.depth)
        )
        self.norm = (nn.Identity() if config.pool == "mean_residual"
                     else nn.LayerNorm(config.dim))
        self.head = nn.Sequential(
            nn.Linear(config.dim, config.head_hidden), nn.GELU(), nn.Dropout(config.dropout),
            nn.Linear(config.head_hidden, 2 * n_params),
        )
        self.apply(_init_weights)
        nn.init.trunc_normal_(self.pos_embedding, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor, return_attention: bool = False
                ) -> (tuple[torch.Tensor, torch.Tensor]
                      | tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]):
        check_histogram_batch(x, self.grid_size)
        tokens = self.patch_embedding(x).flatten(2).transpose(1, 2)  # (B, n_patches, dim)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = self.embedding_dropout(torch.cat([cls, tokens], dim=1) + self.pos_embedding)
        attention_maps = []
        for block in self.blocks:
            tokens, weights = block(tokens, return_attention)
            attention_maps.append(weights)
        tokens = self.norm(tokens)
        pooled = tokens[:, 0] if self.config.pool == "cls" else tokens[:, 1:].mean(dim=1)
        mean, log_var = split_mean_log_var(self.head(pooled))
        if return_attention:
            return mean, log_var, attention_maps
        return mean, log_var

    def forward_flops_per_sample(self) -> int:
        """Forward FLOPs of one sample in matrix products and attention (2 per multiply-add;
        normalisation, softmax and activations are not counted)."""
        c = self.config
        tokens = 1 + self.n_patches
        if c.stem == "conv":  # 3^3 stride-2 convolution, then (patch / 2)^3 patches of it
            flops = (2 * (self.grid_size // 2) ** 3 * 27 * c.stem_channels
                     + 2 * self.n_patches * (c.patch_size // 2) ** 3 * c.stem_channels * c.dim)
        else:
            flops = 2 * self.n_patches * c.patch_size**3 * c.dim  # patch embedding
        per_layer = 2 * tokens * (3 * c.dim * c.dim + c.dim * c.dim + 2 * c.dim * c.mlp_dim)
        per_layer += 2 * 2 * tokens * tokens * c.dim  # scores q k^T and weights @ v
        flops += c.depth * per_layer
        flops += 2 * (c.dim * c.head_hidden + c.head_hidden * 2 * self.n_params)
        return flops


def _init_weights(module: nn.Module) -> None:
    """Truncated-normal (std 0.02) linear and embedding weights, zero biases (as in ViT)."""
    if isinstance(module, nn.Linear | nn.Conv3d):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
