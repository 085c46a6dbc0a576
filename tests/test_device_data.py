"""The device-resident data path gives the DataLoader path's batches, losses and weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cosmo_sbi.config import ConfigError
from cosmo_sbi.dataset import build_dataset
from cosmo_sbi.device_data import (
    LoaderBatches,
    ResidentBatches,
    resident_bytes,
    symmetry_planes,
    training_batches,
    use_resident,
)
from cosmo_sbi.toy import toy_config, write_histograms
from cosmo_sbi.train import run_fingerprint, train_model
from cosmo_sbi.training_set import epoch_symmetries, transverse_symmetry

CPU = torch.device("cpu")
OVERLAY = {
    "histogram": {"bins": [8, 8, 8]},
    "design": {"latin_hypercube": {"n_simulations": 30}, "fiducial": {"n_simulations": 1}},
    # dropout > 0: the global torch generator's stream must match between the paths
    "models": {"cnn": {"preset": "small", "dropout": 0.2}},
    "training": {"epochs": 3, "batch_size": 5, "warmup_epochs": 1, "device": "cpu",
                 "early_stopping_patience": 100},
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    directory = tmp_path_factory.mktemp("device_data")
    config = toy_config(OVERLAY)
    histograms = write_histograms(config, directory / "histograms")
    dataset = directory / "dataset.h5"
    build_dataset(config, histograms["latin_hypercube"], histograms["fiducial"], dataset)
    return {"directory": directory, "config": config, "dataset": dataset}


def _both(dataset: Path, rank: int = 0, world_size: int = 1, augment: bool = True,
          batch_size: int = 4) -> tuple[LoaderBatches, ResidentBatches]:
    options = {"augment": augment, "batch_size": batch_size, "seed": 7, "rank": rank,
               "world_size": world_size, "device": CPU,
               "memory_format": torch.contiguous_format}
    return LoaderBatches(dataset, **options), ResidentBatches(dataset, **options)


def _assert_same_batches(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xa.dtype == xb.dtype == torch.float32 and xa.shape == xb.shape
        assert xb.is_contiguous()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize(("rank", "world_size"), [(0, 1), (0, 2), (1, 2)])
def test_resident_batches_equal_the_dataloader_batches(workspace, rank, world_size) -> None:
    loader, resident = _both(workspace["dataset"], rank, world_size)
    assert (resident.train_size, resident.validation_size, resident.grid_shape) == (
        loader.train_size, loader.validation_size, loader.grid_shape)
    assert resident.steps_per_epoch == loader.steps_per_epoch
    for epoch in (0, 1, 4):
        torch.manual_seed(11)
        expected = list(loader.train_batches(epoch))
        after_loader = torch.get_rng_state()
        torch.manual_seed(11)
        got = list(resident.train_batches(epoch))
        _assert_same_batches(expected, got)
        # the global generator moved as a DataLoader moves it (dropout streams stay equal)
        assert torch.equal(torch.get_rng_state(), after_loader)
    _assert_same_batches(list(loader.validation_batches()), list(resident.validation_batches()))
    # epochs differ in order and augmentation
    first, second = (torch.cat([x for x, _ in resident.train_batches(e)]) for e in (0, 1))
    assert not torch.equal(first, second)


def test_without_augmentation_the_batches_are_plain_rows(workspace) -> None:
    loader, resident = _both(workspace["dataset"], augment=False, batch_size=64)
    assert resident.planes is None
    _assert_same_batches(list(loader.train_batches(2)), list(resident.train_batches(2)))


def test_symmetry_planes_apply_transverse_symmetry() -> None:
    x = np.arange(5 * 5 * 3).reshape(5, 5, 3)
    planes = symmetry_planes(5).numpy()
    for s in range(8):
        assert np.array_equal(x.reshape(25, 3)[planes[s]].reshape(5, 5, 3),
                              transverse_symmetry(x, s))
    # the (seed, epoch) draw: reproducible, and different across epochs
    assert torch.equal(epoch_symmetries(50, 3, 2), epoch_symmetries(50, 3, 2))
    assert not torch.equal(epoch_symmetries(50, 3, 2), epoch_symmetries(50, 3, 3))


def test_data_on_device_choice(workspace) -> None:
    assert use_resident("auto", CPU, 10**15)  # CPU: the counts are never the larger copy
    assert use_resident(True, CPU, 0) and not use_resident(False, CPU, 0)
    with pytest.raises(ConfigError, match="training.data_on_device"):
        use_resident("sometimes", CPU, 0)
    # 8^3 uint8 counts of the training and validation rows
    _, resident = _both(workspace["dataset"])
    assert resident.counts["train"].dtype == torch.uint8
    assert resident_bytes(workspace["dataset"]) == (
        (resident.train_size + resident.validation_size) * 8**3)
    settings = {**workspace["config"]["training"], "data_on_device": "false"}
    assert not training_batches(workspace["dataset"], settings, CPU, 0, 1).resident
    # the data path is not part of the run: a checkpoint of either resumes under the other
    fingerprints = [run_fingerprint({**workspace["config"], "training": {
        **workspace["config"]["training"], "data_on_device": choice}}, "cnn", "content")
        for choice in ("auto", True, False)]
    assert fingerprints[0] == fingerprints[1] == fingerprints[2]


def _train(workspace: dict, data_on_device: bool, name: str) -> Path:
    config = {**workspace["config"],
              "training": {**workspace["config"]["training"], "data_on_device": data_on_device}}
    output = workspace["directory"] / name
    summary = train_model(config, "cnn", workspace["dataset"], output)
    assert summary["data_on_device"] is data_on_device
    return output


def test_training_on_resident_data_gives_the_dataloader_run(workspace) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loader_run = _train(workspace, False, "loader")
        resident_run = _train(workspace, True, "resident")
    finally:
        torch.set_num_threads(threads)

    def losses(path: Path) -> list[list[str]]:
        rows = (path / "history.csv").read_text().splitlines()[1:]
        return [row.split(",")[1:3] for row in rows]  # train_loss, val_loss

    assert losses(resident_run) == losses(loader_run)
    assert (resident_run / "model.pt").read_bytes() == (loader_run / "model.pt").read_bytes()
    last = [torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
            for run in (loader_run, resident_run)]
    assert all(torch.equal(last[0][key], last[1][key]) for key in last[0])


def test_a_learning_curve_subset_gives_the_same_batches_on_either_path(workspace) -> None:
    from cosmo_sbi.dataset import read_dataset, scale_parameters
    from cosmo_sbi.learning_curve import subset_rows

    dataset, data = workspace["dataset"], read_dataset(workspace["dataset"])
    settings = {**workspace["config"]["training"], "seed": 7, "batch_size": 4}
    loader, resident = (training_batches(dataset, {**settings, "data_on_device": on_device},
                                         CPU, 0, 1, train_fraction=0.5)
                        for on_device in (False, True))
    rows = subset_rows(data.rows("train"), 0.5, 7)
    assert loader.train_size == resident.train_size == len(rows) == -(-len(data.rows("train"))
                                                                       // 2)
    assert loader.validation_size == resident.validation_size == len(data.rows("validation"))
    torch.manual_seed(3)
    expected = list(loader.train_batches(0))
    torch.manual_seed(3)
    _assert_same_batches(expected, list(resident.train_batches(0)))
    # the epoch visits exactly the subset's simulations (their targets, in shuffled order)
    seen = torch.cat([y for _, y in expected]).double().numpy()
    subset = scale_parameters(data.theta[rows], data.prior_lower, data.prior_upper)
    assert np.allclose(np.sort(seen, axis=0), np.sort(subset.astype(np.float32), axis=0))
