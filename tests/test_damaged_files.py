"""Damaged files are detected and named, never trusted: every reader of a stage's inputs
(design table, light cone, histogram, dataset.h5, the evaluation outputs the report reads)
refuses a truncated, zeroed, garbage or bit-flipped file with an error naming it.

DAMAGES lists the kinds tried per file for docs/reliability.md."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from cosmo_sbi.dataset import build_dataset, checked_histogram, read_dataset
from cosmo_sbi.design import read_design_row, write_design
from cosmo_sbi.evaluate import predictions_table
from cosmo_sbi.histogram import histogram_lightcone_file
from cosmo_sbi.lightcone import read_lightcone, write_lightcone
from cosmo_sbi.outputs import read_history, read_predictions
from cosmo_sbi.report import load_evaluation
from cosmo_sbi.toy import toy_config, write_histograms
from cosmo_sbi.training_set import HistogramDataset


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One intact file of each kind (a small synthetic run) and its config."""
    folder = tmp_path_factory.mktemp("intact")
    config = toy_config({"design": {"latin_hypercube": {"n_simulations": 5},
                                      "fiducial": {"n_simulations": 1}}})
    paths = write_histograms(config, folder)
    write_design(config, "latin_hypercube", folder / "design.ecsv")
    dataset = folder / "dataset.h5"
    build_dataset(config, paths["latin_hypercube"], paths["fiducial"], dataset)
    predictions = folder / "predictions.ecsv"
    data = read_dataset(dataset)
    rows = len(data.ids)
    predictions_table(data, np.full((rows, 6), 0.5), np.full((rows, 6), 0.1)).write(
        predictions, format="ascii.ecsv")
    (folder / "metrics.json").write_text(json.dumps({"model": "cnn", "test": {}}))
    (folder / "history.csv").write_text("epoch,train_loss\n1,0.5\n2,0.4\n")
    return {"config": config, "lightcone": folder / "lightcones/latin_hypercube/0000.h5",
            "histogram": paths["latin_hypercube"][0], "dataset": dataset,
            "design": folder / "design.ecsv", "predictions": predictions,
            "metrics": folder / "metrics.json", "history": folder / "history.csv"}


READERS: dict[str, Callable] = {
    "lightcone": lambda path, config: read_lightcone(path),
    "histogram": lambda path, config: checked_histogram(path, config, "latin_hypercube"),
    "dataset": lambda path, config: HistogramDataset(path, "train", augment=False),
    "design": lambda path, config: read_design_row(path, "0000"),
    "predictions": lambda path, config: read_predictions(path),
    "metrics": lambda path, config: load_evaluation(path.parent),
    "history": lambda path, config: read_history(path),
}
HDF5 = ("lightcone", "histogram", "dataset")


def _data_offset(path: Path) -> int:
    """Byte offset a few bytes into the data of a dataset its reader reads whole (dataset:
    theta, histogram: counts, light cone: ra)."""
    with h5py.File(path, "r") as handle:
        name = next(name for name in ("theta", "counts", "ra") if name in handle)
        return handle[name].id.get_chunk_info(0).byte_offset + 16


def truncate(data: bytes, path: Path) -> bytes:
    return data[: len(data) // 2]


def truncate_tail(data: bytes, path: Path) -> bytes:
    return data[:-100]


def zero(data: bytes, path: Path) -> bytes:
    return bytes(len(data))


def garbage(data: bytes, path: Path) -> bytes:
    return np.random.default_rng(1).integers(0, 256, len(data), dtype=np.uint8).tobytes()


def empty(data: bytes, path: Path) -> bytes:
    return b""


def flip_data_byte(data: bytes, path: Path) -> bytes:
    offset = _data_offset(path)
    return data[:offset] + bytes([data[offset] ^ 0x5A]) + data[offset + 1:]


def latin1(data: bytes, path: Path) -> bytes:
    return data[:40] + b"\xff\xfe\xfd" + data[43:]


BYTE_DAMAGES = {"truncated": truncate, "tail cut": truncate_tail, "zeroed": zero,
                "garbage": garbage, "empty": empty}
DAMAGES = ([(kind, name, damage) for kind in READERS for name, damage in BYTE_DAMAGES.items()]
           + [(kind, "bit flip in data", flip_data_byte) for kind in HDF5]
           + [(kind, "non-UTF-8 bytes", latin1)
              for kind in ("design", "predictions", "metrics", "history")])


@pytest.mark.parametrize(("kind", "damage"), [pytest.param(k, d, id=f"{k}-{n}")
                                              for k, n, d in DAMAGES])
def test_damaged_file_is_refused_naming_it(files: dict, tmp_path: Path, kind: str,
                                           damage: Callable[[bytes, Path], bytes]) -> None:
    intact = files[kind]
    READERS[kind](intact, files["config"])  # the intact file reads
    damaged = tmp_path / intact.name
    damaged.write_bytes(damage(intact.read_bytes(), intact))
    with pytest.raises(ValueError) as caught:
        READERS[kind](damaged, files["config"])
    assert str(damaged) in str(caught.value)


def _edit(source: Path, tmp_path: Path, edit: Callable[[h5py.File], None]) -> Path:
    target = tmp_path / source.name
    shutil.copy(source, target)
    with h5py.File(target, "r+") as handle:
        edit(handle)
    return target


def _set_count(handle: h5py.File, value: int) -> None:
    counts = handle["counts"][...]
    counts[3, 4, 5] = value
    handle["counts"][...] = counts


def _signed_counts(handle: h5py.File) -> None:
    counts = handle["counts"][...].astype(np.int64)
    counts[0, 0, 0] = -1
    del handle["counts"]
    handle.create_dataset("counts", data=counts)


def _set_field(name: str, index: int, value: float) -> Callable[[h5py.File], None]:
    def edit(handle: h5py.File) -> None:
        values = handle[name][...]
        values[index] = value
        handle[name][...] = values
    return edit


# damage written through h5py: the checksums are recomputed, the values are impossible
VALUE_DAMAGES = [
    ("histogram", lambda h: _set_count(h, 2_130_706_433), "sums to"),
    ("histogram", lambda h: _set_count(h, 0) if h["counts"][3, 4, 5] else _set_count(h, 1),
     "'n_halos'"),
    ("histogram", _signed_counts, "negative"),
    ("histogram", lambda h: h.attrs.__delitem__("n_halos"), "missing attribute 'n_halos'"),
    ("lightcone", _set_field("ra", 7, np.nan), "'ra'"),
    ("lightcone", _set_field("ra", 7, 200.0), "'ra'"),
    ("lightcone", _set_field("dec", 3, -95.0), "'dec'"),
    ("lightcone", _set_field("mass", 0, -1.0e13), "'mass'"),
    ("lightcone", _set_field("z_cos", 0, np.inf), "'z_cos'"),
    ("lightcone", _set_field("z_obs", 2, np.nan), "'z_obs'"),
    ("dataset", lambda h: h.__delitem__("theta"), "missing fields"),
]


@pytest.mark.parametrize(("kind", "edit", "message"), VALUE_DAMAGES)
def test_impossible_values_are_refused(files: dict, tmp_path: Path, kind: str,
                                       edit: Callable[[h5py.File], None], message: str) -> None:
    damaged = _edit(files[kind], tmp_path, edit)
    with pytest.raises(ValueError, match=message) as caught:
        READERS[kind](damaged, files["config"])
    assert str(damaged) in str(caught.value)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("dec", 91.0, "'dec'.*impossible"),
    ("ra", 45.0, "outside the 30.0 deg cone"),
])
def test_histogramming_refuses_a_damaged_light_cone(files: dict, tmp_path: Path, field: str,
                                                    value: float, message: str) -> None:
    damaged = _edit(files["lightcone"], tmp_path, _set_field(field, 0, value))
    with pytest.raises(ValueError, match=message) as caught:
        histogram_lightcone_file(files["config"], damaged, tmp_path / "histogram.h5")
    assert str(damaged) in str(caught.value)
    assert not (tmp_path / "histogram.h5").exists()


def test_real_pinocchio_cone_lies_inside_its_aperture() -> None:
    """The cone check's tolerance holds for PINOCCHIO's own output (lc64: aperture 30)."""
    from cosmo_sbi.lightcone import check_inside_cone, radec_from_cartesian
    from cosmo_sbi.simulators.pinocchio_io import read_plc

    ra, dec = radec_from_cartesian(read_plc(PLC)["pos"])
    check_inside_cone({"ra": ra.astype(np.float32), "dec": dec.astype(np.float32)}, 30.0, "lc64")


def test_outputs_carry_checksums_and_unchanged_content(files: dict, tmp_path: Path) -> None:
    for kind in HDF5:
        with h5py.File(files[kind], "r") as handle:
            numeric = [name for name in handle if handle[name].dtype.kind in "fiu"]
            assert numeric and all(handle[name].fletcher32 for name in numeric), kind
    halos = {name: np.linspace(-10, 10, 1000, dtype=np.float32) for name in ("ra", "dec")}
    halos |= {"z_cos": np.linspace(0.3, 0.8, 1000, dtype=np.float32),
              "mass": np.geomspace(1e12, 1e15, 1000).astype(np.float32)}
    halos["z_obs"] = halos["z_cos"] + np.float32(1e-3)
    write_lightcone(tmp_path / "cone.h5", halos, {"sim_id": "0"})
    read, _ = read_lightcone(tmp_path / "cone.h5")
    for name, values in halos.items():
        np.testing.assert_array_equal(read[name], values)
        assert read[name].tobytes() == values.tobytes()


def test_counts() -> None:
    """The kinds of damage tried (for docs/reliability.md)."""
    assert len(DAMAGES) + len(VALUE_DAMAGES) + 1 >= 50


PLC = Path(__file__).parent / "data" / "pinocchio" / "lc64" / "pinocchio.lc64.plc.out"
WORKFLOW_RUN = Path(__file__).parent / "data" / "pinocchio" / "workflow128_lh0000"
PLC_BLOCK_ENDS = {12: 0, 22880: 408, 41212: 735, 42520: 758}
"""Byte length of lc64's light cone cut after its header and each block -> halos left
(blocks of 408, 327, 23, 117 halos of 56 bytes; 12-byte count and 8-byte data markers)."""


@pytest.mark.parametrize(("length", "left"), sorted(PLC_BLOCK_ENDS.items()))
@pytest.mark.parametrize("report", ["log", "nz"])
def test_plc_cut_at_a_block_boundary_is_detected(tmp_path: Path, length: int, left: int,
                                                 report: str) -> None:
    from cosmo_sbi.simulators.pinocchio import check_plc_complete
    from cosmo_sbi.simulators.pinocchio_io import read_plc

    if report == "log":
        (tmp_path / "log").write_text("[...] total number of halos in the PLC: 875\n")
    else:  # a real run's nz.out layout (workflow128), counts summing to lc64's 875
        (tmp_path / "pinocchio.lc64.nz.out").write_text(
            "# 3) number of objects in bin\n   0.28 0.33  500  1.0  501.0\n"
            "   0.33 0.82  375  1.0  380.0\n")
    intact = tmp_path / PLC.name
    intact.write_bytes(PLC.read_bytes())
    check_plc_complete(tmp_path, len(read_plc(intact)), [intact])
    intact.write_bytes(PLC.read_bytes()[:length])
    plc = read_plc(intact)  # the cut file reads without a format error...
    assert len(plc) == left
    with pytest.raises(ValueError, match=f"{left} halos read, but .* reports 875"):
        check_plc_complete(tmp_path, len(plc), [intact])  # ...but its count is wrong


def test_real_run_reports_agree() -> None:
    """In a real PINOCCHIO run the log's total equals the sum of its nz.out counts."""
    from cosmo_sbi.simulators.pinocchio import reported_plc_halos

    run = WORKFLOW_RUN
    from_log = reported_plc_halos(run)
    assert from_log is not None and from_log[0] == 83024
    counts = np.loadtxt(run / "pinocchio.run.nz.out", comments="#", ndmin=2)
    assert int(counts[:, 2].sum()) == from_log[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder as training writes it (small CNN, untrained weights)."""
    import torch

    from cosmo_sbi.models.build import MODEL_CONFIG_FILE, WEIGHTS_FILE, build_model, describe

    folder = tmp_path_factory.mktemp("model")
    model = build_model("cnn", {"preset": "small"}, grid_size=8)
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    (folder / MODEL_CONFIG_FILE).write_text(json.dumps(describe("cnn", model)))
    return folder


@pytest.mark.parametrize("name", ["model.pt", "model_config.json"])
@pytest.mark.parametrize("damage", [truncate, zero, garbage, empty])
def test_damaged_weights_are_named(trained: Path, tmp_path: Path, name: str,
                                   damage: Callable[[bytes, Path], bytes]) -> None:
    from cosmo_sbi.models.build import load_trained

    load_trained(trained)
    folder = tmp_path / "model"
    shutil.copytree(trained, folder)
    (folder / name).write_bytes(damage((folder / name).read_bytes(), folder / name))
    with pytest.raises(ValueError) as caught:
        load_trained(folder)
    assert str(folder / name) in str(caught.value)
