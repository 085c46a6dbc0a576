"""Grad-CAM of the CNN: normalised maps per parameter that vanish where the input is empty."""

from __future__ import annotations

import numpy as np
import torch

from cosmo_sbi.interpret import grad_cam
from cosmo_sbi.models.cnn import CNN3D, PRESETS


def test_grad_cam_is_zero_outside_the_receptive_field_of_the_signal() -> None:
    """Input only at RA index < 8: convolutions without bias, identity batch norm at init
    and GELU(0) = 0 leave the last block at zero beyond the receptive field (~11 voxels at
    the 3-stage small preset, plus one 4-voxel cell of upsampling), so the map is 0 there."""
    torch.manual_seed(0)
    model = CNN3D(config=PRESETS["small"], grid_size=32, n_params=6)
    inputs = np.zeros((3, 1, 32, 32, 32), dtype=np.float32)
    inputs[:, :, :8] = np.random.default_rng(0).normal(size=(3, 1, 8, 32, 32))
    maps = grad_cam(model, lambda rows: inputs[rows], np.arange(3), torch.device("cpu"),
                    batch_size=2)
    assert maps.shape == (6, 32, 32, 32)
    assert np.all(np.isfinite(maps)) and maps.min() >= 0 and maps.max() <= 1
    assert np.all(maps[:, 24:] == 0)
    assert np.all(maps[:, :8].sum(axis=(1, 2, 3)) > 0)
    assert np.allclose(maps.max(axis=(1, 2, 3)), 1.0)
