"""Dataset assembly: splits, transforms, augmentation symmetries, bad input."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.dataset import (
    SPLITS,
    DatasetError,
    HistogramDataset,
    assign_splits,
    build_dataset,
    prior_bounds,
    scale_parameters,
    transverse_symmetry,
    unscale_parameters,
)
from tests.synthetic_histograms import small_config, write_histograms


@pytest.fixture(scope="module")
def histograms(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("histograms")
    config = small_config()
    return config, write_histograms(config, directory)


@pytest.fixture(scope="module")
def dataset_path(histograms, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config, paths = histograms
    output = tmp_path_factory.mktemp("dataset") / "dataset.h5"
    build_dataset(config, paths["latin_hypercube"], paths["fiducial"], output)
    return output


def _read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as handle:
        data = {name: handle[name][...] for name in ("inputs", "theta")}
        data.update({name: handle[name].asstr()[...] for name in ("ids", "set", "split")})
        data.update(dict(handle.attrs))
    return data


def test_build_contents_match_histogram_files(histograms, dataset_path: Path) -> None:
    config, paths = histograms
    data = _read(dataset_path)
    files = paths["latin_hypercube"] + paths["fiducial"]
    assert data["inputs"].shape == (len(files), 1, 8, 8, 8)
    assert data["inputs"].dtype == np.float32
    for row, path in enumerate(files):
        with h5py.File(path, "r") as handle:
            counts = handle["counts"][...]
            theta = [handle.attrs[name] for name in PARAMETER_NAMES]
            assert data["ids"][row] == handle.attrs["sim_id"]
        np.testing.assert_array_equal(data["theta"][row], theta)
        expected = (np.log1p(counts.astype(np.float64)) - data["input_mean"]) / data["input_std"]
        # float32 storage: relative precision 6e-8 of values of order a few
        np.testing.assert_allclose(data["inputs"][row, 0], expected, rtol=0, atol=1e-5)
    assert set(data["split"][data["set"] == "fiducial"]) == {"fiducial"}
    lh_splits = data["split"][data["set"] == "latin_hypercube"]
    assert set(lh_splits) == set(SPLITS)
    # training inputs are standardised exactly: mean 0, std 1 (float32 round-off only)
    train = data["inputs"][data["split"] == "train"].astype(np.float64)
    assert abs(train.mean()) < 1e-5 and abs(train.std() - 1.0) < 1e-5


def test_build_is_bit_identical(histograms, dataset_path: Path, tmp_path: Path) -> None:
    config, paths = histograms
    again = tmp_path / "again.h5"
    build_dataset(config, paths["latin_hypercube"], paths["fiducial"], again)
    assert again.read_bytes() == dataset_path.read_bytes()


def test_standardisation_uses_training_split_only(histograms, dataset_path: Path,
                                                  tmp_path: Path) -> None:
    """Inflating every non-training histogram must leave the input mean/std untouched."""
    config, paths = histograms
    data = _read(dataset_path)
    lh = paths["latin_hypercube"]
    lh_split = data["split"][: len(lh)]
    altered = []
    for path, split in zip(lh, lh_split, strict=True):
        if split != "train":
            copy = tmp_path / path.name
            shutil.copy(path, copy)
            with h5py.File(copy, "r+") as handle:
                handle["counts"][...] = handle["counts"][...] * 50 + 7
                handle.attrs["n_halos"] = int(handle["counts"][...].sum())
            path = copy
        altered.append(path)
    output = tmp_path / "altered.h5"
    build_dataset(config, altered, paths["fiducial"], output)
    changed = _read(output)
    assert changed["input_mean"] == data["input_mean"]
    assert changed["input_std"] == data["input_std"]
    np.testing.assert_array_equal(changed["split"], data["split"])
    assert not np.array_equal(changed["inputs"], data["inputs"])


def test_splits_stable_under_reordering(histograms, dataset_path: Path, tmp_path: Path) -> None:
    config, paths = histograms
    reordered = list(reversed(paths["latin_hypercube"]))
    output = tmp_path / "reordered.h5"
    build_dataset(config, reordered, paths["fiducial"][:2], output)
    original, shuffled = _read(dataset_path), _read(output)
    lh = original["set"] == "latin_hypercube"
    before = dict(zip(original["ids"][lh], original["split"][lh], strict=True))
    lh = shuffled["set"] == "latin_hypercube"
    assert sorted(shuffled["ids"][lh]) == sorted(before)
    for sim_id, split in zip(shuffled["ids"][lh], shuffled["split"][lh], strict=True):
        assert before[sim_id] == split


def test_splits_grouped_by_cosmology_and_fractions() -> None:
    rng = np.random.default_rng(1)
    theta = rng.uniform(size=(20000, 6))
    fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}
    splits = assign_splits(theta, fractions)
    # Two seeds of one cosmology always share a split, wherever they sit in the list.
    twice = assign_splits(np.concatenate([theta[:500], theta[:500][::-1]]), fractions)
    np.testing.assert_array_equal(twice[:500], twice[500:][::-1])
    np.testing.assert_array_equal(twice[:500], splits[:500])
    for name, fraction in fractions.items():
        # binomial std of a fraction: sqrt(f (1 - f) / N) <= 0.0029; allow 4 sigma
        assert abs(np.mean(splits == name) - fraction) < 4 * np.sqrt(fraction * (1 - fraction)
                                                                     / len(theta))


def test_tiny_sets_fill_every_split_deterministically() -> None:
    rng = np.random.default_rng(2)
    fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}
    for size in (3, 4, 6):
        theta = rng.uniform(size=(size, 6))
        splits = assign_splits(theta, fractions)
        assert set(splits) == set(SPLITS)
        order = rng.permutation(size)
        np.testing.assert_array_equal(assign_splits(theta[order], fractions), splits[order])
    with pytest.raises(DatasetError, match="at least 3"):
        assign_splits(theta[:2], fractions)


def test_parameter_scaling_round_trip(histograms) -> None:
    config, _ = histograms
    lower, upper = prior_bounds(config)
    np.testing.assert_array_equal(scale_parameters(lower, lower, upper), np.zeros(6))
    np.testing.assert_array_equal(scale_parameters(upper, lower, upper), np.ones(6))
    theta = np.random.default_rng(0).uniform(lower, upper, size=(10, 6))
    # float64 round trip through a unit box: errors of a few ulp of values of order 1
    np.testing.assert_allclose(unscale_parameters(scale_parameters(theta, lower, upper),
                                                  lower, upper), theta, rtol=1e-14)


def _d4_reference(x: np.ndarray) -> list[np.ndarray]:
    """The 8 images of x (RA, DEC, z) under the dihedral group, built from rotations."""
    images = []
    for turns in range(4):
        rotated = np.rot90(x, turns, axes=(0, 1))
        images += [rotated, np.flip(rotated, 0)]
    return images


def test_symmetries_are_the_eight_transverse_ones_and_keep_z() -> None:
    x = np.arange(4 * 4 * 3, dtype=np.float32).reshape(1, 4, 4, 3)
    images = [transverse_symmetry(x, index) for index in range(8)]
    reference = _d4_reference(x[0])
    for image in images:
        assert image.shape == x.shape and image.flags.c_contiguous
        matches = [np.array_equal(image[0], ref) for ref in reference]
        assert sum(matches) == 1
        # each redshift slice holds exactly the values it held before: z is never flipped
        for k in range(3):
            assert set(image[0, :, :, k].flatten()) == set(x[0, :, :, k].flatten())
    distinct = {image.tobytes() for image in images}
    assert len(distinct) == 8
    # closure: composing two symmetries gives one of the eight
    for a, b in itertools.product(range(8), repeat=2):
        assert transverse_symmetry(transverse_symmetry(x, a), b).tobytes() in distinct


def test_dataset_augmentation_is_seeded_by_epoch(dataset_path: Path) -> None:
    train = HistogramDataset(dataset_path, "train", augment=True)
    plain = HistogramDataset(dataset_path, "train", augment=False)
    assert len(train) == len(plain) and train.ids == plain.ids
    x0, y0 = plain[0]
    assert x0.shape == (1, 8, 8, 8) and x0.dtype == torch.float32
    assert y0.shape == (6,) and bool(torch.all((y0 >= 0) & (y0 <= 1)))
    images = {transverse_symmetry(x0.numpy(), k).tobytes(): k for k in range(8)}
    seen = set()
    for epoch in range(40):
        train.set_epoch(epoch, seed=3)
        x, y = train[0]
        torch.testing.assert_close(y, y0)
        seen.add(images[x.numpy().tobytes()])
    # P(one of 8 symmetries never drawn in 40 epochs) <= 8 (7/8)^40 = 0.4%, but the draws are
    # seeded, so this either always passes or always fails
    assert seen == set(range(8))
    train.set_epoch(5, seed=3)
    first = [train[i][0] for i in range(len(train))]
    train.set_epoch(6, seed=3)
    train.set_epoch(5, seed=3)
    for i, x in enumerate(first):
        torch.testing.assert_close(train[i][0], x, rtol=0, atol=0)


def test_dataset_exposes_prior_and_fiducial(dataset_path: Path, histograms) -> None:
    config, paths = histograms
    fiducial = HistogramDataset(dataset_path, "fiducial", augment=False)
    assert len(fiducial) == len(paths["fiducial"])
    lower, upper = prior_bounds(config)
    np.testing.assert_array_equal(fiducial.prior_lower, lower)
    np.testing.assert_array_equal(fiducial.prior_upper, upper)
    assert fiducial.parameter_names == PARAMETER_NAMES
    expected = scale_parameters(fiducial.theta, lower, upper).astype(np.float32)
    np.testing.assert_array_equal(fiducial.targets.numpy(), expected)


def _corrupt(source: Path, tmp_path: Path, edit) -> Path:
    target = tmp_path / f"bad_{source.name}"
    shutil.copy(source, target)
    with h5py.File(target, "r+") as handle:
        edit(handle)
    return target


def _replace_counts(handle: h5py.File, counts: np.ndarray) -> None:
    del handle["counts"]
    handle.create_dataset("counts", data=counts)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda h: _replace_counts(h, np.zeros((8, 8, 4), dtype=np.uint32)), "'counts' has shape"),
    (lambda h: h.attrs.__setitem__("ra_deg", np.array([-10.0, 10.0])), "'ra_deg'"),
    (lambda h: h.attrs.__setitem__("sigma_8", np.nan), "'sigma_8'"),
    (lambda h: _replace_counts(h, np.full((8, 8, 8), np.nan)), "'counts' has 512 NaN"),
    (lambda h: h.attrs.__setitem__("set", "fiducial"), "'set'"),
    (lambda h: h.attrs.__setitem__("Omega_m", 0.9), "outside design.latin_hypercube"),
])
def test_bad_histogram_names_file_and_field(histograms, tmp_path: Path, edit, message) -> None:
    config, paths = histograms
    bad = _corrupt(paths["latin_hypercube"][3], tmp_path, edit)
    files = [*paths["latin_hypercube"][:3], bad, *paths["latin_hypercube"][4:]]
    with pytest.raises(DatasetError, match=message) as error:
        build_dataset(config, files, [], tmp_path / "out.h5")
    assert str(bad) in str(error.value)
    assert not (tmp_path / "out.h5").exists()
