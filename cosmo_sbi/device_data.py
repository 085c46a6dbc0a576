"""Training and validation batches for train_model: from a DataLoader, or held on the device.

:func:`training_batches` returns one of two implementations of :class:`Batches`, chosen by
``training.data_on_device`` (auto | true | false):

- :class:`LoaderBatches` (false): HistogramDataset in host memory (float32), a
  DistributedSampler and DataLoaders; each batch is copied to the device.
- :class:`ResidentBatches` (true): the training and validation splits loaded once onto the
  training device as counts (uint8, or int32 above 255), a float32 lookup table of the
  input transform (cosmo_sbi.inputs), and per batch one gather that picks the rows and
  applies each row's transverse symmetry (a permutation of the (RA, DEC) plane, z
  untouched) followed by one table lookup. No host work, no copies over PCIe per step.

Both draw the epoch's order with DistributedSampler(seed=training.seed).set_epoch(epoch)
(the same rank sharding and padding under DDP) and the symmetries with
cosmo_sbi.training_set.epoch_symmetries(n, seed, epoch), and the resident path takes the one
number each DataLoader iterator takes from the global torch generator, so both give the
same batches bit for bit and, on CPU, the same losses and weights; a checkpoint of either
resumes under the other (``data_on_device`` is not part of the run's fingerprint).

``auto`` picks the resident path on CPU (it holds the split as counts, less memory than
the DataLoader path's float32 copy, with the same result) and on CUDA when the two splits'
counts take at most RESIDENT_MEMORY_FRACTION of the device's free memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from cosmo_sbi.config import ConfigError
from cosmo_sbi.dataset import DatasetError, read_dataset, scale_parameters
from cosmo_sbi.inputs import COUNTS
from cosmo_sbi.learning_curve import subset_rows
from cosmo_sbi.training_set import HistogramDataset, epoch_symmetries, transverse_symmetry

Batch = tuple[torch.Tensor, torch.Tensor]
"""Inputs x (B, 1, D_ra, D_dec, D_z) float32 and targets y (B, 6) float32, on the device."""
RESIDENT_MEMORY_FRACTION = 0.25
"""auto on CUDA: resident when the counts take at most this fraction of the free memory
(the rest is for the network's activations, cuDNN workspaces and the batch gathers)."""
SPLITS = ("train", "validation")


class Batches(Protocol):
    """What train_model needs of its data: sizes and the batches of an epoch."""

    resident: bool
    train_size: int
    validation_size: int
    grid_shape: tuple[int, ...]
    steps_per_epoch: int

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        """This rank's training batches of ``epoch`` (shuffled, augmented), on the device."""

    def validation_batches(self) -> Iterator[Batch]:
        """The whole validation split in file order, unaugmented, on the device."""


def _consume_loader_seed() -> None:
    """Take from the global torch generator the one int64 a DataLoader iterator takes for
    its workers' base seed, so that dropout draws the same numbers on either path."""
    torch.empty((), dtype=torch.int64).random_()


class LoaderBatches:
    """Batches from DataLoaders over HistogramDataset (float32 in host memory)."""

    resident = False

    def __init__(self, path: Path, *, augment: bool, batch_size: int, seed: int, rank: int,
                 world_size: int, device: torch.device, memory_format: torch.memory_format,
                 train_rows: np.ndarray | None = None) -> None:
        self.train_set = HistogramDataset(path, "train", augment=augment, rows=train_rows)
        validation_set = HistogramDataset(path, "validation", augment=False)
        cuda = device.type == "cuda"
        self.sampler = DistributedSampler(self.train_set, num_replicas=world_size, rank=rank,
                                          shuffle=True, seed=seed)
        options = {"batch_size": batch_size, "pin_memory": cuda,
                   "num_workers": 2 if cuda else 0, "persistent_workers": False}
        self.train_loader = DataLoader(self.train_set, sampler=self.sampler, **options)
        self.validation_loader = DataLoader(validation_set, shuffle=False, **options)
        self.seed, self.device, self.memory_format = seed, device, memory_format
        self.train_size, self.validation_size = len(self.train_set), len(validation_set)
        self.grid_shape = tuple(self.train_set.inputs.shape[2:])
        self.steps_per_epoch = len(self.train_loader)

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        return (x.to(self.device, memory_format=self.memory_format, non_blocking=True),
                y.to(self.device, non_blocking=True))

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        self.sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch, self.seed)
        for x, y in self.train_loader:
            yield self._to_device(x, y)

    def validation_batches(self) -> Iterator[Batch]:
        for x, y in self.validation_loader:
            yield self._to_device(x, y)


def symmetry_planes(size: int) -> torch.Tensor:
    """Index (8, size * size) int64: row s maps each (RA, DEC) cell of the output of
    transverse symmetry s to its source cell (flattened RA-major), from transverse_symmetry
    itself."""
    plane = np.arange(size * size).reshape(size, size, 1)
    return torch.stack([torch.from_numpy(transverse_symmetry(plane, s).reshape(-1))
                        for s in range(8)])


class ResidentBatches:
    """Batches assembled on the device from the splits' counts held there (module doc)."""

    resident = True

    def __init__(self, path: Path, *, augment: bool, batch_size: int, seed: int, rank: int,
                 world_size: int, device: torch.device, memory_format: torch.memory_format,
                 train_rows: np.ndarray | None = None) -> None:
        data = read_dataset(path)
        counts, targets = {}, {}
        for split in SPLITS:
            rows = train_rows if split == "train" and train_rows is not None else data.rows(split)
            if len(rows) == 0:
                raise DatasetError(f"{path}: split {split!r} is empty")
            counts[split] = data.read_counts(rows)
            scaled = scale_parameters(data.theta[rows], data.prior_lower, data.prior_upper)
            targets[split] = torch.from_numpy(scaled.astype(np.float32)).to(device)
        self.grid_shape = tuple(counts["train"].shape[2:])
        d_ra, d_dec, d_z = self.grid_shape
        if augment and d_ra != d_dec:
            raise DatasetError(f"{path}: augmentation swaps RA and DEC, which needs as many RA "
                               f"as DEC bins; got inputs of shape {self.grid_shape}")
        max_count = max(int(c.max(initial=0)) for c in counts.values())
        dtype = np.uint8 if max_count <= np.iinfo(np.uint8).max else np.int32
        # (N, D_ra * D_dec, D_z): a symmetry permutes the middle axis
        self.counts = {split: torch.from_numpy(c.reshape(len(c), d_ra * d_dec, d_z)
                                               .astype(dtype)).to(device)
                       for split, c in counts.items()}
        self.targets = targets
        self.table = torch.from_numpy(data.transform.table(max_count)).to(device)
        self.planes = symmetry_planes(d_ra).to(device) if augment else None
        self.sampler = DistributedSampler(range(len(counts["train"])), num_replicas=world_size,
                                          rank=rank, shuffle=True, seed=seed)
        self.batch_size, self.seed = batch_size, seed
        self.device, self.memory_format = device, memory_format
        self.train_size, self.validation_size = (len(counts[s]) for s in SPLITS)
        self.steps_per_epoch = -(-len(self.sampler) // batch_size)

    def _batch(self, split: str, rows: torch.Tensor,
               symmetries: torch.Tensor | None = None) -> Batch:
        if symmetries is None:
            counts = self.counts[split][rows]
        else:
            counts = self.counts[split][rows[:, None], self.planes[symmetries]]
        x = self.table[counts.long()].view(len(rows), 1, *self.grid_shape)
        return x.contiguous(memory_format=self.memory_format), self.targets[split][rows]

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        _consume_loader_seed()
        self.sampler.set_epoch(epoch)
        order = torch.tensor(list(self.sampler), dtype=torch.int64, device=self.device)
        symmetries = None
        if self.planes is not None:
            symmetries = epoch_symmetries(self.train_size, self.seed, epoch).to(self.device)
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            yield self._batch("train", rows, None if symmetries is None else symmetries[rows])

    def validation_batches(self) -> Iterator[Batch]:
        _consume_loader_seed()
        for start in range(0, self.validation_size, self.batch_size):
            rows = torch.arange(start, min(start + self.batch_size, self.validation_size),
                                device=self.device)
            yield self._batch("validation", rows)


def resident_bytes(path: Path) -> int:
    """Device bytes the resident path needs for the training and validation counts."""
    with h5py.File(path, "r") as handle:
        split = handle["split"].asstr()[...]
        shape = handle[COUNTS].shape
        itemsize = 1 if handle[COUNTS].dtype == np.uint8 else 4
    return int(np.isin(split, SPLITS).sum()) * int(np.prod(shape[1:])) * itemsize


def use_resident(choice: str | bool, device: torch.device, nbytes: int) -> bool:
    """training.data_on_device (auto | true | false) -> whether to hold the data on
    ``device`` (auto: on CPU always; on CUDA when ``nbytes`` fits the memory budget)."""
    if choice in (True, "true"):
        return True
    if choice in (False, "false"):
        return False
    if choice != "auto":
        raise ConfigError(f"training.data_on_device: expected auto, true or false, got {choice!r}")
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= RESIDENT_MEMORY_FRACTION * free


def training_batches(path: str | os.PathLike[str], settings: dict, device: torch.device,
                     rank: int, world_size: int,
                     memory_format: torch.memory_format = torch.contiguous_format,
                     train_fraction: float = 1.0) -> Batches:
    """The batches of train_model from the ``training`` config section ``settings``; with
    ``train_fraction`` < 1 from that nested subset of the training split
    (cosmo_sbi.learning_curve.subset_rows, seeded with training.seed)."""
    path = Path(path)
    train_rows = None
    if train_fraction < 1.0:
        train_rows = subset_rows(read_dataset(path).rows("train"), train_fraction,
                                 settings["seed"])
    resident = use_resident(settings["data_on_device"], device, resident_bytes(path))
    kind = ResidentBatches if resident else LoaderBatches
    return kind(path, augment=settings["augment"], batch_size=settings["batch_size"],
                seed=settings["seed"], rank=rank, world_size=world_size, device=device,
                memory_format=memory_format, train_rows=train_rows)
