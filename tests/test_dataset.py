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
    assign_splits,
    build_dataset,
    prior_bounds,
    read_dataset,
    scale_parameters,
    unscale_parameters,
)
from cosmo_sbi.histogram import HistogramFormatError
from cosmo_sbi.inputs import STORAGE, InputTransform, counts_dtype
from cosmo_sbi.toy import toy_config, write_histograms
from cosmo_sbi.training_set import HistogramDataset, transverse_symmetry


@pytest.fixture(scope="module")
def histograms(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("histograms")
    config = toy_config()
    return config, write_histograms(config, directory)


@pytest.fixture(scope="module")
def dataset_path(histograms, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config, paths = histograms
    output = tmp_path_factory.mktemp("dataset") / "dataset.h5"
    build_dataset(config, paths["latin_hypercube"], paths["fiducial"], output)
    return output


def _read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as handle:
        data = {name: handle[name][...] for name in ("counts", "theta")}
        data.update({name: handle[name].asstr()[...] for name in ("ids", "set", "split")})
        data.update(dict(handle.attrs))
    data["inputs"] = read_dataset(path).read_inputs(np.arange(len(data["counts"])))
    return data


def test_build_contents_match_histogram_files(histograms, dataset_path: Path) -> None:
    config, paths = histograms
    data = _read(dataset_path)
    files = paths["latin_hypercube"] + paths["fiducial"]
    assert data["inputs"].shape == (len(files), 1, 8, 8, 8)
    assert data["inputs"].dtype == np.float32
    assert data["counts"].dtype == np.uint8  # toy counts are small
    for row, path in enumerate(files):
        with h5py.File(path, "r") as handle:
            counts = handle["counts"][...]
            theta = [handle.attrs[name] for name in PARAMETER_NAMES]
            assert data["ids"][row] == handle.attrs["sim_id"]
        np.testing.assert_array_equal(data["theta"][row], theta)
        np.testing.assert_array_equal(data["counts"][row, 0], counts)
        expected = (np.log1p(counts.astype(np.float64)) - data["input_mean"]) / data["input_std"]
        # float32 storage: relative precision 6e-8 of values of order a few
        np.testing.assert_allclose(data["inputs"][row, 0], expected, rtol=0, atol=1e-5)
    assert set(data["split"][data["set"] == "fiducial"]) == {"fiducial"}
    lh_splits = data["split"][data["set"] == "latin_hypercube"]
    assert set(lh_splits) == set(SPLITS)
    # training inputs are standardised exactly: mean 0, std 1 (float32 round-off only)
    train = data["inputs"][data["split"] == "train"].astype(np.float64)
    assert abs(train.mean()) < 1e-5 and abs(train.std() - 1.0) < 1e-5


def _legacy_inputs(counts: np.ndarray, train: np.ndarray) -> np.ndarray:
    """The float32 inputs build_dataset stored before the file held counts: log1p in float32,
    standardised in place with the float64 mean/std of the training rows."""
    inputs = np.log1p(counts.astype(np.uint32), dtype=np.float32)
    mean = np.mean(inputs[train], dtype=np.float64)
    std = np.std(inputs[train], dtype=np.float64)
    inputs -= np.float32(mean)
    inputs /= np.float32(std)
    return inputs


def test_inputs_read_from_counts_equal_the_former_float32_inputs(dataset_path: Path) -> None:
    data = _read(dataset_path)
    legacy = _legacy_inputs(data["counts"], data["split"] == "train")
    assert data["inputs"].tobytes() == legacy.tobytes()
    dataset = read_dataset(dataset_path)
    assert dataset.read_inputs(np.array([1, 5, 9])).tobytes() == legacy[[1, 5, 9]].tobytes()
    with h5py.File(dataset_path, "r") as handle:
        counts = handle["counts"]
        assert counts.chunks == (1, 1, 8, 8, 8)
        assert (counts.compression, counts.shuffle, counts.fletcher32) == (
            STORAGE["compression"], True, True)
    # wide counts (uint16 / uint32 storage) and the untransformed input: the same equality
    rng = np.random.default_rng(1)
    wide = rng.integers(0, 70_000, size=(6, 1, 4, 4, 4)).astype(np.uint32)
    train = np.array([True, True, True, True, False, False])
    transform = InputTransform.fit(wide[train], "log1p")
    assert transform(wide).tobytes() == _legacy_inputs(wide, train).tobytes()
    plain = InputTransform.fit(wide[train], "none")
    expected = (wide.astype(np.float32) - np.float32(plain.mean)) / np.float32(plain.std)
    assert plain(wide).tobytes() == expected.tobytes()


def test_counts_take_the_smallest_unsigned_type() -> None:
    assert [counts_dtype(n) for n in (0, 255, 256, 65535, 65536, 2**32 - 1)] == [
        np.uint8, np.uint8, np.uint16, np.uint16, np.uint32, np.uint32]
    with pytest.raises(ValueError, match="exceeds uint32"):
        counts_dtype(2**32)
    with pytest.raises(ValueError, match="dataset.input_transform"):
        InputTransform("sqrt", 0.0, 1.0)(np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="constant"):
        InputTransform.fit(np.full((2, 3), 4, dtype=np.uint8), "log1p")


def test_a_float32_dataset_file_asks_for_a_rebuild(dataset_path: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.h5"
    shutil.copy(dataset_path, old)
    with h5py.File(old, "r+") as handle:
        handle["inputs"] = read_dataset(dataset_path).read_inputs(np.arange(3))
        del handle["counts"]
    with pytest.raises(DatasetError, match=rf"{old}: a dataset file of float32 inputs"):
        read_dataset(old)


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


@pytest.mark.parametrize(("edit", "error_type", "message"), [
    # damaged files: cosmo_sbi.histogram.read_histogram
    (lambda h: _replace_counts(h, np.zeros((8, 8, 4), dtype=np.uint32)), HistogramFormatError,
     "'counts' has shape"),
    (lambda h: _replace_counts(h, np.full((8, 8, 8), np.nan)), HistogramFormatError,
     "'counts' has 512 NaN"),
    (lambda h: h.attrs.__delitem__("z_obs"), HistogramFormatError, "missing attributes"),
    # a histogram that does not fit this dataset: cosmo_sbi.dataset
    (lambda h: h.attrs.__setitem__("ra_deg", np.array([-10.0, 10.0])), DatasetError, "'ra_deg'"),
    (lambda h: h.attrs.__setitem__("sigma_8", np.nan), DatasetError, "'sigma_8'"),
    (lambda h: h.attrs.__setitem__("set", "fiducial"), DatasetError, "'set'"),
    (lambda h: h.attrs.__setitem__("Omega_m", 0.9), DatasetError,
     "outside design.latin_hypercube"),
])
def test_bad_histogram_names_file_and_field(histograms, tmp_path: Path, edit, error_type,
                                            message) -> None:
    config, paths = histograms
    bad = _corrupt(paths["latin_hypercube"][3], tmp_path, edit)
    files = [*paths["latin_hypercube"][:3], bad, *paths["latin_hypercube"][4:]]
    with pytest.raises(error_type, match=message) as error:
        build_dataset(config, files, [], tmp_path / "out.h5")
    assert str(bad) in str(error.value)
    assert not (tmp_path / "out.h5").exists()


def test_read_dataset_gives_the_file_typed(dataset_path: Path, histograms) -> None:
    config, paths = histograms
    data = read_dataset(dataset_path)
    raw = _read(dataset_path)
    np.testing.assert_array_equal(data.theta, raw["theta"])
    assert list(data.ids) == list(raw["ids"]) and list(data.splits) == list(raw["split"])
    assert data.input_shape == (1, 8, 8, 8) and data.parameter_names == PARAMETER_NAMES
    rows = data.rows("fiducial")
    assert len(rows) == len(paths["fiducial"])
    np.testing.assert_array_equal(data.read_inputs(rows), raw["inputs"][rows])
    assert data.attrs["histogram"]["bins"] == [8, 8, 8]


def test_content_hash_follows_the_content_not_the_path(dataset_path: Path, histograms,
                                                       tmp_path: Path) -> None:
    config, paths = histograms
    stored = read_dataset(dataset_path).content_hash
    again = tmp_path / "elsewhere.h5"
    build_dataset(config, paths["latin_hypercube"], paths["fiducial"], again)
    assert read_dataset(again).content_hash == stored  # same content, another path
    with h5py.File(again, "r+") as handle:  # a file written before the attribute existed
        del handle.attrs["content_sha256"]
    assert read_dataset(again).content_hash == stored
    fewer = tmp_path / "fewer.h5"
    build_dataset(config, paths["latin_hypercube"][:-1], paths["fiducial"], fewer)
    assert read_dataset(fewer).content_hash != stored


@pytest.mark.parametrize("content", [b"", b"\x00" * 4096, b"not an HDF5 file"])
def test_a_damaged_dataset_file_is_named(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "dataset.h5"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=f"{path}: cannot read"):
        read_dataset(path)


def test_a_dataset_file_missing_fields_is_named(dataset_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "dataset.h5"
    shutil.copy(dataset_path, bad)
    with h5py.File(bad, "r+") as handle:
        del handle["theta"]
    with pytest.raises(DatasetError, match=rf"{bad}: missing fields \['theta'\]"):
        read_dataset(bad)
