"""The training loop: outputs, determinism, kill-and-resume, early stopping, DDP on CPU."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from cosmo_sbi.config import load_config
from cosmo_sbi.dataset import build_dataset
from cosmo_sbi.histogram import histogram_lightcone_file
from cosmo_sbi.models.build import load_trained
from cosmo_sbi.outputs import HISTORY_FIELDS
from cosmo_sbi.toy import write_histograms
from cosmo_sbi.train import (
    CHECKPOINT_FILE,
    gaussian_nll,
    mean_squared_error,
    train_model,
    warmup_cosine,
)
from tests.conftest import REPO

EPOCHS = 6
OVERLAY = {
    "histogram": {"bins": [32, 32, 32]},
    "design": {"latin_hypercube": {"n_simulations": 40}, "fiducial": {"n_simulations": 1},
               "derivatives": {"n_seeds": 0}},
    # dropout > 0 so that determinism and resumption also cover the torch RNG stream
    "models": {"cnn": {"preset": "small", "dropout": 0.2},
               "vit": {"preset": "small", "dropout": 0.2}},
    "training": {"epochs": EPOCHS, "batch_size": 8, "warmup_epochs": 1,
                 "early_stopping_patience": 100, "augment": True, "device": "cpu"},
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Train on one thread: these tiny networks run several times faster than on two busy
    cores, and the subprocesses below (OMP_NUM_THREADS=1) use the same thread count, which
    bit-identical CPU results require."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SUBPROCESS_ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1"}


def _config_files(directory: Path, overlay: dict) -> list[Path]:
    """config.yaml + config/laptop.yaml + ``overlay`` written as YAML, as the CLI takes them."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return [REPO / "config.yaml", REPO / "config" / "laptop.yaml", path]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    """A 32^3 dataset of 40 + 1 toy histograms and the config files that describe it."""
    directory = tmp_path_factory.mktemp("train")
    config_files = _config_files(directory, OVERLAY)
    config = load_config(config_files)
    histograms = write_histograms(config, directory / "histograms")
    dataset = directory / "dataset.h5"
    build_dataset(config, histograms["latin_hypercube"], histograms["fiducial"], dataset)
    return {"directory": directory, "config_files": config_files, "config": config,
            "dataset": dataset}


@pytest.fixture(scope="module")
def reference_run(workspace) -> Path:
    """One uninterrupted CNN run, the reference for determinism and resumption."""
    output = workspace["directory"] / "reference"
    train_model(workspace["config"], "cnn", workspace["dataset"], output)
    return output


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def _history(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_gaussian_nll_matches_torch_and_mse_ignores_the_variance():
    torch.manual_seed(0)
    mean, log_var, target = torch.randn(3, 5, 6).unbind()
    expected = torch.nn.functional.gaussian_nll_loss(mean, target, log_var.exp())
    # same formula, float32: agreement to rounding (~1e-7 relative)
    torch.testing.assert_close(gaussian_nll(mean, log_var, target), expected)
    mean.requires_grad_(True)
    log_var.requires_grad_(True)
    mean_squared_error(mean, log_var, target).backward()
    assert log_var.grad is None or not torch.any(log_var.grad)


def test_warmup_then_cosine_schedule():
    factor = warmup_cosine(warmup_steps=4, total_steps=14)
    assert [factor(step) for step in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(4) == 1.0
    assert factor(9) == pytest.approx(0.5)  # halfway through the cosine (exact up to rounding)
    assert factor(14) == pytest.approx(0.0, abs=1e-15)
    assert all(factor(s) > factor(s + 1) for s in range(4, 14))


def test_training_writes_every_output(reference_run, workspace):
    files = sorted(str(p.relative_to(reference_run)) for p in reference_run.rglob("*"))
    assert files == ["checkpoints", str(CHECKPOINT_FILE), "history.csv", "model.pt",
                     "model_config.json", "training_summary.json"]
    history = _history(reference_run / "history.csv")
    assert tuple(history[0]) == HISTORY_FIELDS
    assert [int(row["epoch"]) for row in history] == list(range(1, EPOCHS + 1))
    summary = json.loads((reference_run / "training_summary.json").read_text())
    val_losses = [float(row["val_loss"]) for row in history]
    assert summary["best_epoch"] == 1 + val_losses.index(min(val_losses))
    assert summary["best_val_loss"] == min(val_losses)
    assert summary["world_size"] == 1 and summary["device"] == "cpu"
    assert summary["epochs_run"] == EPOCHS
    # the network learns: the toy counts rise with Omega_m and sigma_8
    assert float(history[-1]["train_loss"]) < float(history[0]["train_loss"])
    # the last learning rate is the end of the cosine (step EPOCHS * steps_per_epoch)
    assert float(history[-1]["learning_rate"]) == pytest.approx(0.0, abs=1e-12)

    # model.pt holds the best epoch's weights, loadable on their own
    model = load_trained(reference_run)
    checkpoint = torch.load(reference_run / CHECKPOINT_FILE, weights_only=True)
    _assert_identical(model.state_dict(), checkpoint["state"]["best_model"])
    assert model.config.dropout == 0.2


def test_training_is_deterministic_on_cpu(reference_run, workspace):
    output = workspace["directory"] / "again"
    train_model(workspace["config"], "cnn", workspace["dataset"], output)
    _assert_identical(_weights(output / "model.pt"), _weights(reference_run / "model.pt"))
    assert (output / "model.pt").read_bytes() == (reference_run / "model.pt").read_bytes()
    last = torch.load(output / CHECKPOINT_FILE, weights_only=True)["model"]
    reference_last = torch.load(reference_run / CHECKPOINT_FILE, weights_only=True)["model"]
    _assert_identical(last, reference_last)
    losses = [(row["train_loss"], row["val_loss"]) for row in _history(output / "history.csv")]
    assert losses == [(row["train_loss"], row["val_loss"])
                      for row in _history(reference_run / "history.csv")]


def test_different_seeds_give_different_weights(reference_run, workspace):
    config = load_config(_config_files(workspace["directory"] / "seed", {
        **OVERLAY, "training": {**OVERLAY["training"], "seed": 1, "epochs": 1}}))
    output = workspace["directory"] / "seed1"
    train_model(config, "cnn", workspace["dataset"], output)
    first = _weights(reference_run / "model.pt")
    assert not torch.equal(_weights(output / "model.pt")["head.1.weight"],
                           first["head.1.weight"])


def test_mse_loss_trains_the_means_only(workspace):
    directory = workspace["directory"] / "mse"
    overlay = {**OVERLAY, "training": {**OVERLAY["training"], "loss": "mse", "epochs": 2}}
    summary = train_model(load_config(_config_files(directory, overlay)), "vit",
                          workspace["dataset"], directory / "out")
    assert summary["loss"] == "mse"
    history = _history(directory / "out" / "history.csv")
    # a mean of squares cannot be negative (the Gaussian NLL can, once log_var < 0)
    assert all(float(row[key]) >= 0 for row in history for key in ("train_loss", "val_loss"))


def test_a_run_killed_mid_training_resumes_to_identical_weights(reference_run, workspace):
    output = workspace["directory"] / "killed"
    command = [sys.executable, "-m", "cosmo_sbi", "train", "--model", "cnn",
               "--dataset", str(workspace["dataset"]), "--output-dir", str(output)]
    for path in workspace["config_files"]:
        command += ["--config", str(path)]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL, env=SUBPROCESS_ENVIRONMENT)
    checkpoint = output / CHECKPOINT_FILE
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)  # land inside the next epoch, not at its boundary
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    interrupted_after = torch.load(checkpoint, weights_only=True)["state"]["epoch"]
    assert 1 <= interrupted_after < EPOCHS
    assert not (output / "model.pt").exists()

    summary = train_model(workspace["config"], "cnn", workspace["dataset"], output)
    assert summary["epochs_run"] == EPOCHS
    _assert_identical(_weights(output / "model.pt"), _weights(reference_run / "model.pt"))
    _assert_identical(torch.load(checkpoint, weights_only=True)["model"],
                      torch.load(reference_run / CHECKPOINT_FILE, weights_only=True)["model"])
    assert len(_history(output / "history.csv")) == EPOCHS


def test_a_finished_run_is_not_retrained(reference_run, workspace):
    before = (reference_run / CHECKPOINT_FILE).stat().st_mtime_ns
    summary = train_model(workspace["config"], "cnn", workspace["dataset"], reference_run)
    assert summary["epochs_run"] == EPOCHS
    assert (reference_run / CHECKPOINT_FILE).stat().st_mtime_ns == before


def test_a_checkpoint_of_another_config_is_not_resumed(workspace, caplog):
    output = workspace["directory"] / "changed"
    short = {**OVERLAY, "training": {**OVERLAY["training"], "epochs": 1}}
    train_model(load_config(_config_files(workspace["directory"] / "changed_a", short)),
                "vit", workspace["dataset"], output)
    longer = {**OVERLAY, "training": {**OVERLAY["training"], "epochs": 2}}
    config = load_config(_config_files(workspace["directory"] / "changed_b", longer))
    with caplog.at_level("WARNING", logger="cosmo_sbi.train"):
        summary = train_model(config, "vit", workspace["dataset"], output)
    assert "belongs to another run" in caplog.text
    fresh = workspace["directory"] / "fresh"
    train_model(config, "vit", workspace["dataset"], fresh)
    assert summary["epochs_run"] == 2
    _assert_identical(_weights(output / "model.pt"), _weights(fresh / "model.pt"))


def test_early_stopping_keeps_the_best_epoch(workspace):
    # With 3 validation cosmologies and a learning rate of 0.03 (30x the laptop value) the
    # validation loss fluctuates from epoch to epoch, so patience 2 ends the run long before
    # 30 epochs, 2 epochs after the best one.
    directory = workspace["directory"] / "early"
    overlay = {**OVERLAY, "training": {**OVERLAY["training"], "epochs": 30,
                                       "learning_rate": 0.03, "early_stopping_patience": 2}}
    summary = train_model(load_config(_config_files(directory, overlay)), "vit",
                          workspace["dataset"], directory / "out")
    assert summary["stopped_early"]
    assert summary["epochs_run"] == summary["best_epoch"] + 2 < 30
    history = _history(directory / "out" / "history.csv")
    assert len(history) == summary["epochs_run"]
    assert min(float(row["val_loss"]) for row in history) == summary["best_val_loss"]
    best = torch.load(directory / "out" / CHECKPOINT_FILE, weights_only=True)["state"]
    _assert_identical(_weights(directory / "out" / "model.pt"), best["best_model"])


def test_a_diverging_run_names_the_learning_rate(workspace):
    directory = workspace["directory"] / "diverge"
    overlay = {**OVERLAY, "training": {**OVERLAY["training"], "learning_rate": 10.0}}
    with pytest.raises(ValueError, match=r"training\.learning_rate: vit diverged"):
        train_model(load_config(_config_files(directory, overlay)), "vit",
                    workspace["dataset"], directory / "out")


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(workspace):
    output = workspace["directory"] / "ddp"
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "cosmo_sbi",
               "train", "--model", "vit", "--dataset", str(workspace["dataset"]),
               "--output-dir", str(output)]
    overlay = {**OVERLAY, "training": {**OVERLAY["training"], "epochs": 2}}
    directory = workspace["directory"] / "ddp_config"
    for path in _config_files(directory, overlay):
        command += ["--config", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env=SUBPROCESS_ENVIRONMENT)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["world_size"] == 2
    assert len(_history(output / "history.csv")) == 2
    files = sorted(str(p.relative_to(output)) for p in output.rglob("*"))
    assert files == ["checkpoints", str(CHECKPOINT_FILE), "history.csv", "model.pt",
                     "model_config.json", "training_summary.json"]
    load_trained(output)


def _one_epoch_config(directory: Path, overlay: dict | None = None):
    layers = {**OVERLAY, "training": {**OVERLAY["training"], "epochs": 1}, **(overlay or {})}
    return load_config(_config_files(directory, layers))


def test_a_rebuilt_dataset_with_another_mass_cut_retrains(workspace, tmp_path, caplog):
    """The fingerprint covers the dataset's content, not its path: a new mass cut rebuilds
    dataset.h5 in place, and training must not resume the old run."""
    config = _one_epoch_config(tmp_path / "a")
    dataset, output = tmp_path / "dataset.h5", tmp_path / "model"
    shutil.copyfile(workspace["dataset"], dataset)
    train_model(config, "vit", dataset, output)
    first = _history(output / "history.csv")

    cut = config["histogram"]["min_mass_msun_h"] * 1.5
    config = _one_epoch_config(tmp_path / "b", {"histogram": {**OVERLAY["histogram"],
                                                              "min_mass_msun_h": cut}})
    histograms = {}
    for set_name in ("latin_hypercube", "fiducial"):
        lightcones = sorted((workspace["directory"] / "histograms" / "lightcones" / set_name)
                            .glob("*.h5"))
        histograms[set_name] = [tmp_path / "histograms" / set_name / path.name
                                for path in lightcones]
        for lightcone, histogram in zip(lightcones, histograms[set_name], strict=True):
            histogram_lightcone_file(config, lightcone, histogram)
    build_dataset(config, histograms["latin_hypercube"], histograms["fiducial"], dataset)
    with caplog.at_level("INFO", logger="cosmo_sbi.train"):
        train_model(config, "vit", dataset, output)
    assert "belongs to another run (changed: dataset content)" in caplog.text
    assert _history(output / "history.csv")[0]["train_loss"] != first[0]["train_loss"]


def test_a_moved_results_folder_resumes(reference_run, workspace, tmp_path, caplog):
    moved = tmp_path / "elsewhere"
    shutil.copytree(reference_run, moved / "model")
    shutil.copyfile(workspace["dataset"], moved / "dataset.h5")
    before = (moved / "model" / CHECKPOINT_FILE).stat().st_mtime_ns
    with caplog.at_level("INFO", logger="cosmo_sbi.train"):
        summary = train_model(workspace["config"], "cnn", moved / "dataset.h5", moved / "model")
    assert (f"resuming cnn from {moved / 'model' / CHECKPOINT_FILE} after epoch {EPOCHS}"
            in caplog.text)
    assert summary["epochs_run"] == EPOCHS
    assert (moved / "model" / CHECKPOINT_FILE).stat().st_mtime_ns == before


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_checkpoint_is_set_aside_and_training_starts_fresh(
        reference_run, workspace, tmp_path, caplog, damage):
    checkpoint = tmp_path / "model" / CHECKPOINT_FILE
    checkpoint.parent.mkdir(parents=True)
    good = (reference_run / CHECKPOINT_FILE).read_bytes()
    checkpoint.write_bytes(b"\x00garbage" * 100 if damage == "garbage" else good[:len(good) // 2])
    config = _one_epoch_config(tmp_path / "config")
    with caplog.at_level("WARNING", logger="cosmo_sbi.train"):
        summary = train_model(config, "cnn", workspace["dataset"], tmp_path / "model")
    aside = checkpoint.with_name("last.pt.damaged")
    assert f"{checkpoint} is damaged" in caplog.text and str(aside) in caplog.text
    assert summary["epochs_run"] == 1
    assert aside.exists()
    torch.load(checkpoint, weights_only=True)  # a new, readable checkpoint
    caplog.clear()
    with caplog.at_level("INFO", logger="cosmo_sbi.train"):  # and a rerun is not blocked
        train_model(config, "cnn", workspace["dataset"], tmp_path / "model")
    assert "resuming cnn from" in caplog.text
