"""What the networks look at. ViT: attention per head, attention rollout, position-embedding
similarity. CNN: Grad-CAM per parameter (the paper's method), averaged over the test split.

Token 0 is the CLS token; tokens 1..P^3 are the patches of the (RA, DEC, z) grid in C order
(the patch grid is P = D / patch_size per side, the order of ``Conv3d(...).flatten(2)``).
With ``pool: cls`` the prediction reads the CLS token, so the CLS row of the attention is
what matters; with ``pool: mean`` the mean over patch queries is shown instead.

Attention rollout (Abnar & Zuidema 2020, arXiv 2005.00928): average the heads of each
layer, add the identity for the residual stream, renormalise the rows, and multiply the
layers' matrices from the first to the last.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from cosmo_sbi.dataset import DatasetFile  # noqa: E402
from cosmo_sbi.plots import save_figure  # noqa: E402

SLICES = 4
"""Number of redshift slices of the patch grid drawn per map."""


def _pooled_row(matrix: np.ndarray, pool: str) -> np.ndarray:
    """Attention (..., T, T) -> weight (..., T - 1) the pooled token puts on each patch."""
    if pool == "cls":
        return matrix[..., 0, 1:]
    return matrix[..., 1:, 1:].mean(axis=-2)


def attention_to_patches(attention: np.ndarray, pool: str, grid: int) -> np.ndarray:
    """One layer's weights (heads, T, T) -> per-head maps (heads, P, P, P) over the patches."""
    return _pooled_row(attention, pool).reshape(attention.shape[0], grid, grid, grid)


def attention_rollout(attentions: list[np.ndarray]) -> np.ndarray:
    """Rollout (T, T) of per-layer weights [(heads, T, T), ...], first layer first."""
    tokens = attentions[0].shape[-1]
    rollout = np.eye(tokens)
    for attention in attentions:
        mixed = 0.5 * attention.mean(axis=0) + 0.5 * np.eye(tokens)
        mixed /= mixed.sum(axis=-1, keepdims=True)
        rollout = mixed @ rollout
    return rollout


def position_similarity(pos_embedding: np.ndarray) -> np.ndarray:
    """Cosine similarity (N, N) between the position embeddings of the N patches.

    ``pos_embedding`` is (1, T, dim) or (T, dim) including the CLS position, which is dropped.
    """
    patches = np.asarray(pos_embedding, dtype=np.float64).reshape(-1,
                                                                  pos_embedding.shape[-1])[1:]
    unit = patches / np.linalg.norm(patches, axis=1, keepdims=True)
    return unit @ unit.T


def _slice_indices(grid: int) -> np.ndarray:
    return np.unique(np.linspace(0, grid - 1, min(SLICES, grid)).round().astype(int))


def _map_rows(maps: np.ndarray, row_labels: list[str], title: str, path: Path,
              unit: str = "patch") -> Path:
    """Draw maps (rows, P, P, P) as rows of z slices (RA vertical, DEC horizontal);
    ``unit`` names a grid cell ('patch' for the ViT, 'bin' for histogram voxels)."""
    grid = maps.shape[-1]
    slices = _slice_indices(grid)
    figure, axes = plt.subplots(len(maps), len(slices), squeeze=False, layout="constrained",
                                figsize=(2.2 * len(slices) + 1.6, 2.1 * len(maps) + 0.9))
    figure.suptitle(title)
    for row, (volume, label) in enumerate(zip(maps, row_labels, strict=True)):
        low, high = volume.min(), volume.max()
        for column, k in enumerate(slices):
            axis = axes[row, column]
            image = axis.imshow(volume[:, :, k], origin="lower", vmin=low, vmax=high,
                                cmap="magma")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(f"z {unit} {k}/{grid - 1}", fontsize=9)
            if column == 0:
                axis.set_ylabel(f"{label}\nRA {unit}", fontsize=9)
            if row == len(maps) - 1:
                axis.set_xlabel(f"DEC {unit}", fontsize=9)
        figure.colorbar(image, ax=axes[row, :], shrink=0.8)
    return save_figure(figure, path)


def _similarity_grid(similarity: np.ndarray, grid: int, path: Path) -> Path:
    """For each patch of the central z plane, its similarity to every patch of that plane."""
    volume = similarity.reshape(grid, grid, grid, grid, grid, grid)
    k = grid // 2
    plane = volume[:, :, k, :, :, k]  # (ra, dec) of the reference, (ra, dec) of the others
    figure, axes = plt.subplots(grid, grid, figsize=(9, 9), squeeze=False,
                                layout="constrained")
    figure.suptitle(f"Position-embedding cosine similarity in the z patch plane {k}\n"
                    "(panel = reference patch; pixels = every patch of the plane)")
    for i in range(grid):
        for j in range(grid):
            axis = axes[grid - 1 - i, j]  # RA increases upwards, as in the attention maps
            image = axis.imshow(plane[i, j], origin="lower", vmin=-1, vmax=1, cmap="viridis")
            axis.set_xticks([])
            axis.set_yticks([])
    figure.colorbar(image, ax=axes, shrink=0.6, label="cosine similarity")
    return save_figure(figure, path)


def _z_profile_figure(similarity: np.ndarray, grid: int, path: Path) -> Path:
    """Similarity of a central-column patch at each z to all patches: mean over the others'
    (RA, DEC), as a function of their z — shows whether the embedding learned depth order."""
    volume = similarity.reshape(grid, grid, grid, grid, grid, grid)
    centre = grid // 2
    profile = volume[centre, centre].mean(axis=(2, 3))  # (z_ref, z_other)
    figure, axis = plt.subplots(figsize=(5, 4.2), layout="constrained")
    image = axis.imshow(profile, origin="lower", cmap="viridis")
    axis.set_xlabel("z patch of the others")
    axis.set_ylabel("z patch of the reference (central RA, DEC)")
    axis.set_title("Position-embedding similarity along redshift")
    figure.colorbar(image, ax=axis, label="mean cosine similarity")
    return save_figure(figure, path)


@torch.no_grad()
def redshift_profiles(model: torch.nn.Module, data: DatasetFile, rows: np.ndarray,
                      device: torch.device, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Attention of the pooled token per redshift slice of patches, averaged over the light
    cones ``rows`` of ``data`` and over RA and DEC: last layer (heads, P) and rollout (P,)."""
    pool = model.config.pool
    heads_sum, rollout_sum = 0.0, 0.0
    for start in range(0, len(rows), batch_size):
        x = torch.as_tensor(data.read_inputs(rows[start:start + batch_size]), device=device)
        _, _, attentions = model(x, return_attention=True)
        layers = [attention.double().cpu().numpy() for attention in attentions]
        grid = round((layers[0].shape[-1] - 1) ** (1 / 3))
        for sample in range(len(x)):
            per_sample = [layer[sample] for layer in layers]
            heads = attention_to_patches(per_sample[-1], pool, grid)
            rollout = _pooled_row(attention_rollout(per_sample), pool).reshape(grid, grid, grid)
            heads_sum = heads_sum + heads.sum(axis=(1, 2))
            rollout_sum = rollout_sum + rollout.sum(axis=(0, 1))
    return heads_sum / len(rows), rollout_sum / len(rows)


def _redshift_figure(heads: np.ndarray, rollout: np.ndarray, z_range: tuple[float, float],
                     n_light_cones: int, path: Path) -> Path:
    """Attention per redshift slice of patches: last-layer heads and rollout."""
    edges = np.linspace(*z_range, len(rollout) + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    figure.suptitle(f"Attention per redshift slice, mean over {n_light_cones} test light cones")
    for head, profile in enumerate(heads):
        axes[0].plot(centres, profile, marker="o", ms=3, label=f"head {head}")
    axes[0].set_title("last layer")
    axes[0].legend(fontsize=7)
    axes[1].plot(centres, rollout, marker="o", ms=3, color="k")
    axes[1].set_title("rollout")
    for axis in axes:
        axis.axhline(1 / len(rollout), color="0.6", ls=":", lw=0.8)  # uniform attention
        axis.set_xlabel("z_obs of the patch slice")
        axis.set_ylabel("attention summed over RA, DEC")
    return save_figure(figure, path)


@torch.no_grad()
def write_attention_figures(model: torch.nn.Module, data: DatasetFile,
                            folder: Path, device: torch.device) -> dict[str, Path]:
    """Attention per head (last layer) and rollout maps of the first light cone of the test
    split, their redshift profiles over the whole test split, and the position-embedding
    figures of the ViT, in ``folder``; returns name -> PNG path."""
    model.eval()
    test_rows = data.rows("test")
    sim_id = data.ids[test_rows[0]]
    x = torch.as_tensor(data.read_inputs(test_rows[:1]), device=device)
    z_range = tuple(data.attrs["histogram"]["z_obs"])
    head_profiles, rollout_profile = redshift_profiles(model, data, test_rows, device)
    _, _, attentions = model(x, return_attention=True)
    layers = [attention[0].double().cpu().numpy() for attention in attentions]
    pool = model.config.pool
    grid = round((layers[0].shape[-1] - 1) ** (1 / 3))
    heads = attention_to_patches(layers[-1], pool, grid)
    rollout = _pooled_row(attention_rollout(layers), pool).reshape(1, grid, grid, grid)
    patch = model.config.patch_size
    volume = x[0, 0].double().cpu().numpy()
    patch_means = volume.reshape(grid, patch, grid, patch, grid, patch).mean(axis=(1, 3, 5))
    similarity = position_similarity(model.pos_embedding.detach().cpu().numpy())
    return {
        "attention_heads": _map_rows(
            heads, [f"head {h}" for h in range(len(heads))],
            f"Last-layer attention of the {pool} token to each patch (light cone {sim_id})",
            folder / "attention_heads.png"),
        "attention_rollout": _map_rows(
            np.concatenate([patch_means[None], rollout]), ["input (patch mean)", "rollout"],
            f"Attention rollout over {len(layers)} layers (light cone {sim_id})",
            folder / "attention_rollout.png"),
        "attention_redshift": _redshift_figure(head_profiles, rollout_profile, z_range,
                                               len(test_rows), folder / "attention_redshift.png"),
        "position_similarity": _similarity_grid(similarity, grid,
                                                folder / "position_similarity.png"),
        "position_similarity_z": _z_profile_figure(similarity, grid,
                                                   folder / "position_similarity_z.png"),
    }


def _last_activation(model: torch.nn.Module) -> torch.nn.Module:
    """The CNN's last convolution block output (its last GELU): the Grad-CAM layer."""
    activations = [m for m in model.features if isinstance(m, torch.nn.GELU)]
    return activations[-1]


def grad_cam(model: torch.nn.Module, read_inputs: Callable[[np.ndarray], np.ndarray],
             rows: np.ndarray, device: torch.device, batch_size: int = 8) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) of the CNN's predicted mean of each parameter,
    averaged over the light cones ``rows``: (n_params, D_ra, D_dec, D_z); ``read_inputs(rows)``
    gives their inputs (e.g. ``DatasetFile.read_inputs``).

    Per sample and parameter p: channel weights alpha_c = spatial mean of d mean_p / d A_c
    at the last convolution block A, map = ReLU(sum_c alpha_c A_c), trilinearly upsampled
    to the input grid. Each parameter's mean map is divided by its maximum (0 if all 0).
    """
    model.eval()
    captured: list[torch.Tensor] = []
    hook = _last_activation(model).register_forward_hook(
        lambda module, args, output: captured.append(output))
    total = 0.0
    try:
        for start in range(0, len(rows), batch_size):
            captured.clear()
            x = torch.as_tensor(read_inputs(rows[start:start + batch_size]), device=device)
            mean, _ = model(x)
            activation = captured[0]
            maps = []
            for parameter in range(mean.shape[1]):
                gradient, = torch.autograd.grad(mean[:, parameter].sum(), activation,
                                                retain_graph=True)
                weights = gradient.mean(dim=(2, 3, 4), keepdim=True)
                maps.append(torch.relu((weights * activation).sum(dim=1)))
            cams = torch.stack(maps, dim=1).detach()  # (B, n_params, d, d, d)
            cams = torch.nn.functional.interpolate(cams, size=x.shape[2:], mode="trilinear",
                                                   align_corners=False)
            total = total + cams.double().sum(dim=0).cpu().numpy()
    finally:
        hook.remove()
    average = np.asarray(total) / len(rows)
    peak = average.max(axis=(1, 2, 3), keepdims=True)
    return np.divide(average, peak, out=np.zeros_like(average), where=peak > 0)


def write_grad_cam_figures(model: torch.nn.Module, data: DatasetFile,
                           folder: Path, device: torch.device,
                           parameter_names: tuple[str, ...]) -> dict[str, Path]:
    """Grad-CAM maps per parameter averaged over the test split (z slices) and their
    redshift profiles, in ``folder``; returns name -> PNG path."""
    test_rows = data.rows("test")
    z_range = tuple(data.attrs["histogram"]["z_obs"])
    maps = grad_cam(model, data.read_inputs, test_rows, device)
    profiles = maps.mean(axis=(1, 2))
    edges = np.linspace(*z_range, profiles.shape[1] + 1)
    figure, axis = plt.subplots(figsize=(6, 4), layout="constrained")
    for name, profile in zip(parameter_names, profiles, strict=True):
        axis.plot((edges[:-1] + edges[1:]) / 2, profile, label=name)
    axis.set_xlabel("z_obs")
    axis.set_ylabel("Grad-CAM, mean over RA, DEC")
    axis.set_title(f"CNN Grad-CAM per redshift, mean over {len(test_rows)} test light cones")
    axis.legend(fontsize=8)
    return {
        "grad_cam": _map_rows(maps, list(parameter_names),
                              f"CNN Grad-CAM per parameter, mean over {len(test_rows)} test "
                              "light cones (RA vertical, DEC horizontal)",
                              folder / "grad_cam.png", unit="bin"),
        "grad_cam_redshift": save_figure(figure, folder / "grad_cam_redshift.png"),
    }
