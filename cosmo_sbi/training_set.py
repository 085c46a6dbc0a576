"""The torch Dataset of one split of the dataset file, with the transverse symmetries of a
light cone as augmentation (the only module of the data path that imports torch)."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from cosmo_sbi.dataset import DatasetError, read_dataset, scale_parameters

N_SYMMETRIES = 8
"""Transverse symmetries of a light cone: RA flip x DEC flip x RA<->DEC swap."""


def transverse_symmetry(x: np.ndarray, index: int) -> np.ndarray:
    """Apply symmetry ``index`` in [0, 8) to ``x`` (..., D_ra, D_dec, D_z); a C-contiguous copy.

    Bit 0 flips RA, bit 1 flips DEC, bit 2 swaps RA and DEC; the redshift (last) axis is never
    touched: the light cone evolves along it. Index 0 is the identity. Numpy views plus one
    copy: ~0.1 ms for 64^3 float32, where torch.flip on CPU takes ~15 ms.
    """
    if not 0 <= index < N_SYMMETRIES:
        raise ValueError(f"symmetry index {index}: expected 0 <= index < {N_SYMMETRIES}")
    ra_axis, dec_axis = x.ndim - 3, x.ndim - 2
    if index & 1:
        x = np.flip(x, ra_axis)
    if index & 2:
        x = np.flip(x, dec_axis)
    if index & 4:
        x = np.swapaxes(x, ra_axis, dec_axis)
    return np.ascontiguousarray(x)


def epoch_symmetries(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Symmetry index (n,) int64 in [0, 8) of each item of a split in ``epoch``: drawn from a
    torch.Generator seeded by np.random.SeedSequence([seed, epoch]), so a function of
    (seed, epoch, item) alone (the DataLoader and the device-resident path share it)."""
    entropy = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)
    generator = torch.Generator().manual_seed(int(entropy[0]))
    return torch.randint(N_SYMMETRIES, (n,), generator=generator)


class HistogramDataset(Dataset):
    """One split of the dataset file held in memory; items ``(x, y)``.

    ``x`` (1, D_ra, D_dec, D_z) float32 standardised input; ``y`` (6,) float32 parameters
    scaled to the unit prior box. With ``augment`` each item gets one of the 8 transverse
    symmetries, drawn per epoch by :func:`epoch_symmetries` in :meth:`set_epoch`, so the
    augmentation of item i depends only on (seed, epoch, i): training is deterministic and
    resumable whatever the DataLoader workers or batch order (workers must be re-created
    each epoch, i.e. ``persistent_workers=False``, to see the new draw).

    Swapping RA and DEC is exact for the statistics of the halo field but not for the cell
    volumes of a (RA, DEC) grid, which shrink as cos(DEC) (6% at |DEC| = 20 deg); the swap
    therefore moves that mild profile from DEC to RA.
    """

    def __init__(self, path: str | os.PathLike[str], split: str, augment: bool,
                 rows: np.ndarray | None = None) -> None:
        """``rows``: indices into the dataset file of a subset of ``split`` (a learning
        curve's); default every row of the split."""
        data = read_dataset(path)
        rows = data.rows(split) if rows is None else np.asarray(rows)
        if len(rows) == 0:
            raise DatasetError(f"{path}: split {split!r} is empty")
        self.ids: list[str] = list(data.ids[rows])
        self.theta: np.ndarray = data.theta[rows]  # (N, 6) physical
        self.prior_lower: np.ndarray = data.prior_lower
        self.prior_upper: np.ndarray = data.prior_upper
        self.parameter_names: tuple[str, ...] = data.parameter_names
        inputs = data.read_inputs(rows)
        shape = inputs.shape[2:]
        if augment and shape[0] != shape[1]:
            raise DatasetError(f"{path}: augmentation swaps RA and DEC, which needs as many RA "
                               f"as DEC bins; got inputs of shape {shape}")
        self.split = split
        self.augment = augment
        self.inputs = inputs  # (N, 1, D_ra, D_dec, D_z) float32
        scaled = scale_parameters(self.theta, self.prior_lower, self.prior_upper)
        self.targets = torch.from_numpy(scaled.astype(np.float32))
        self._symmetries = epoch_symmetries(len(rows), 0, 0)

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Draw this epoch's symmetry per item (:func:`epoch_symmetries`)."""
        self._symmetries = epoch_symmetries(len(self), seed, epoch)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.inputs[index]
        if self.augment:
            x = transverse_symmetry(x, int(self._symmetries[index]))
        return torch.from_numpy(x), self.targets[index]
