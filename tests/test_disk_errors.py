"""A full or read-only disk: one clear error line naming the path, no traceback, no
segmentation fault, nothing half-written left behind.

A full disk is a tiny tmpfs filled up (needs root, as in CI containers; skipped
otherwise); a read-only disk is a read-only tmpfs, or a read-only folder for non-root."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cosmo_sbi.toy import toy_config, write_histograms
from tests.workflow_utils import snakemake_env


def _mount(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True)
    if os.geteuid() != 0:
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                            capture_output=True)
    return result.returncode == 0


@pytest.fixture(params=[0, 24], ids=["full", "24KiB-free"])
def full_disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A 64 KiB tmpfs with nothing or 24 KiB left (a file then starts but cannot finish:
    HDF5 used to crash there with a segmentation fault)."""
    folder = tmp_path / "full"
    if not _mount(folder, "size=64k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        with open(folder / "filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * 1024)
            except OSError:
                pass
        with open(folder / "filler", "r+b") as filler:
            filler.truncate(max(0, filler.seek(0, 2) - request.param * 1024))
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "read_only"
    if _mount(folder, "ro,size=64k"):
        try:
            yield folder
        finally:
            subprocess.run(["umount", str(folder)], check=True)
    elif os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
    else:
        pytest.skip("root without mount: a read-only folder does not stop root")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("inputs")
    config = toy_config({"histogram": {"bins": [16, 16, 16]},  # dataset.h5 > 24 KiB
                           "design": {"latin_hypercube": {"n_simulations": 4},
                                      "fiducial": {"n_simulations": 1}}})
    histograms = write_histograms(config, folder)
    config_file = folder / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    return {"config": config_file, "histograms": histograms,
            "lightcone": folder / "lightcones/latin_hypercube/0000.h5"}


def cosmo_sbi(stage: str, config: Path, *args: object) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cosmo_sbi", stage, "--config", str(config),
               *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=snakemake_env())


def assert_one_clear_error(result: subprocess.CompletedProcess[str], path: Path,
                           reason: str) -> None:
    assert result.returncode == 1, result.stderr  # not -11 (segmentation fault)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert str(path) in result.stderr and reason in result.stderr, result.stderr


def test_histogram_on_a_full_disk(inputs: dict, full_disk: Path) -> None:
    output = full_disk / "histograms" / "0000.h5"
    result = cosmo_sbi("histogram", inputs["config"], "--input", inputs["lightcone"],
                       "--output", output)
    assert_one_clear_error(result, output.parent, "disk is full")
    assert sorted(p.name for p in full_disk.rglob("*") if p.is_file()) == ["filler"]


def test_dataset_on_a_full_disk(inputs: dict, full_disk: Path) -> None:
    output = full_disk / "dataset.h5"
    result = cosmo_sbi("dataset", inputs["config"], "--latin-hypercube",
                       *inputs["histograms"]["latin_hypercube"], "--fiducial",
                       *inputs["histograms"]["fiducial"], "--output", output)
    assert_one_clear_error(result, output, "disk is full")
    assert sorted(p.name for p in full_disk.rglob("*") if p.is_file()) == ["filler"]


@pytest.mark.parametrize("stage", ["histogram", "design"])
def test_read_only_disk(inputs: dict, read_only_disk: Path, stage: str) -> None:
    if stage == "histogram":
        output = read_only_disk / "0000.h5"
        result = cosmo_sbi("histogram", inputs["config"], "--input", inputs["lightcone"],
                           "--output", output)
    else:
        output = read_only_disk / "fiducial.ecsv"
        result = cosmo_sbi("design", inputs["config"], "--set", "fiducial", "--output", output)
    assert_one_clear_error(result, output, "read-only")
    assert not list(read_only_disk.iterdir())
