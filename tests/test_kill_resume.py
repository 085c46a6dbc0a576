"""Kill Snakemake with SIGKILL mid-block of simulations and mid-training; the reruns must
finish with outputs identical to an uninterrupted run, trusting no partial file.

SIGKILL goes to Snakemake's whole process group (Snakemake and the jobs it started), as
when a node dies or a batch job is cancelled: nothing gets a chance to clean up. The rerun
is what docs/cluster.md tells users to type: ``--unlock`` (the killed run left its lock),
then the same command with ``--rerun-incomplete``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.workflow_outputs import TEMPORARY_MARK, assert_same_outputs, output_digests
from tests.workflow_utils import snakemake_env

# config/tiny.yaml shrunk further: 3 + 1 light cones on a 32^3 grid in blocks of 2, one network
# trained for 3 epochs (a checkpoint after each), so the test stays near a minute.
OVERLAY = {
    "design": {"latin_hypercube": {"n_simulations": 3}, "fiducial": {"n_simulations": 1},
               "derivatives": {"n_seeds": 0}},
    "simulator": {"block_size": 2, "embedded": {"grid_size": 32}},
    "training": {"models": ["cnn"], "epochs": 3},
    "posterior": {"methods": []},  # 1 validation cosmology: too few for the NPE
}
TARGET = "results/models/cnn/model.pt"
N_SIMULATIONS = 4
POLL_S = 0.05
TIMEOUT_S = 300


def snakemake_command(workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(REPO / "config/tiny.yaml"),
            str(workdir / "overlay.yaml"), "--cores", "2", *extra]


def start(workdir: Path, *extra: str, target: str = TARGET) -> subprocess.Popen[bytes]:
    """Snakemake towards ``target`` in the background, in a process group of its own."""
    with open(workdir / "snakemake.out", "ab") as log:  # the child keeps its own copy
        return subprocess.Popen(snakemake_command(workdir, *extra, target), stdout=log,
                                stderr=subprocess.STDOUT, env=snakemake_env(),
                                start_new_session=True)


def finish(process: subprocess.Popen[bytes], workdir: Path) -> None:
    assert process.wait(timeout=TIMEOUT_S) == 0, (workdir / "snakemake.out").read_text()[-4000:]


def kill_when(process: subprocess.Popen[bytes], condition: Callable[[], bool],
              what: str) -> None:
    """SIGKILL the process group of ``process`` as soon as ``condition()`` holds."""
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert process.poll() is None, f"Snakemake ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {TIMEOUT_S} s"
        time.sleep(POLL_S)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def rerun(workdir: Path, *forced: str, target: str = TARGET) -> subprocess.Popen[bytes]:
    """What README says after a crash: unlock, then the same command (a forced one with its
    -R again) with --rerun-incomplete."""
    subprocess.run(snakemake_command(workdir, "--unlock"), check=True, env=snakemake_env(),
                   capture_output=True)
    return start(workdir, *forced, "--rerun-incomplete", target=target)


@pytest.mark.slow
def test_killed_runs_resume_to_identical_outputs(tmp_path: Path) -> None:
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    for workdir in (reference, interrupted):
        workdir.mkdir()
        (workdir / "overlay.yaml").write_text(yaml.safe_dump(OVERLAY))
    uninterrupted = start(reference)

    # 1. Mid-block: the block latin_hypercube 0000-0001 (blocks of 2) has
    # written its first light cone and is simulating the second.
    cones = interrupted / "results/sims/latin_hypercube"

    def mid_block() -> bool:
        return ((cones / "0000/lightcone.h5").exists()
                and not (cones / "0001/lightcone.h5").exists())

    kill_when(start(interrupted), mid_block, "a block with its first light cone written")
    # whatever carries an output's name after the kill must be complete (checked below)
    survivors = output_digests(interrupted)

    # 2. Mid-training: the rerun finishes the simulations, then is killed after the first
    # epoch's checkpoint and before the model is written.
    model_dir = interrupted / "results/models/cnn"
    second = rerun(interrupted)
    kill_when(second, lambda: (model_dir / "checkpoints/last.pt").exists(), "checkpoint")
    assert not (model_dir / "model.pt").exists(), "training ended before the kill"

    # 3. The last rerun resumes training from the checkpoint and completes.
    finish(rerun(interrupted), interrupted)
    finish(uninterrupted, reference)
    train_log = (interrupted / "results/logs/train/cnn.log").read_text()
    assert "resuming cnn from" in train_log, train_log
    # the killed block resumed at its first missing file
    block_log = (interrupted / "results/logs/simulate/latin_hypercube/0000-0001.log").read_text()
    assert "latin_hypercube/0000: " in block_log and "is up to date, kept" in block_log
    assert "latin_hypercube/0001: embedded" in block_log, block_log

    assert_same_outputs(reference, interrupted)
    expected = output_digests(reference, [Path(name) for name in survivors])
    assert survivors == expected, "an output left by the killed run was not complete"
    leftovers = [path for path in (interrupted / "results").rglob(f"*{TEMPORARY_MARK}*")]
    for leftover in leftovers:  # a killed job's temporary file: never taken as an output
        assert (leftover.parent / leftover.name.split(TEMPORARY_MARK)[0]).is_file()
