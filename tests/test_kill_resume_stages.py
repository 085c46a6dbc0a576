"""Kill Snakemake (SIGKILL to its process group) inside the dataset, evaluate and report
jobs, and inside a forced rerun (`-R dataset`); the documented rerun (`--unlock`, then the
same command, with its -R if it was forced, and `--rerun-incomplete`) must finish with
outputs identical to an
uninterrupted run (tests/test_kill_resume.py covers simulation and training)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.test_kill_resume import OVERLAY, TIMEOUT_S, kill_when, snakemake_command
from tests.workflow_outputs import assert_same_outputs
from tests.workflow_utils import snakemake_env

TARGET = "all"  # the report and the two-point summaries, which a forced dataset also remakes


def start(workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    """Snakemake towards every output in the background, in a process group of its own."""
    with open(workdir / "snakemake.out", "ab") as log:
        return subprocess.Popen(snakemake_command(workdir, *extra, TARGET), stdout=log,
                                stderr=subprocess.STDOUT, env=snakemake_env(),
                                start_new_session=True)


def documented_rerun(workdir: Path, *forced: str) -> subprocess.Popen[bytes]:
    """What README says after a crash: unlock, then the same command (a forced one with its
    -R again) with --rerun-incomplete."""
    subprocess.run(snakemake_command(workdir, "--unlock"), check=True, env=snakemake_env(),
                   capture_output=True)
    return start(workdir, *forced, "--rerun-incomplete")


def finish(process: subprocess.Popen[bytes], workdir: Path) -> None:
    assert process.wait(timeout=TIMEOUT_S) == 0, (workdir / "snakemake.out").read_text()[-4000:]


def started(workdir: Path, log: str) -> bool:
    return (workdir / "results" / "logs" / log).exists()


@pytest.mark.slow
def test_killed_dataset_evaluate_report_and_forced_rerun_resume(tmp_path: Path) -> None:
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    for workdir in (reference, interrupted):
        workdir.mkdir()
        (workdir / "overlay.yaml").write_text(yaml.safe_dump(OVERLAY))
    finish(start(reference), reference)

    # killed as each stage's job starts (its log is open), then the documented rerun
    process = start(interrupted)
    for log in ("dataset.log", "evaluate/cnn.log", "report.log"):
        kill_when(process, lambda log=log: started(interrupted, log), f"the job of {log}")
        process = documented_rerun(interrupted)
    finish(process, interrupted)
    assert_same_outputs(reference, interrupted)

    # a forced rerun of the dataset and everything after it, killed as training starts;
    # the documented rerun repeats the forced command: the remade dataset is byte-identical,
    # so without -R Snakemake would find the report up to date and leave the model files
    # that the killed training job had removed missing
    (interrupted / "results/logs/train/cnn.log").unlink()
    forced = start(interrupted, "-R", "dataset")
    kill_when(forced, lambda: started(interrupted, "train/cnn.log"), "the forced training")
    finish(documented_rerun(interrupted, "-R", "dataset"), interrupted)
    assert "train" in (interrupted / "snakemake.out").read_text().rsplit("Job stats", 1)[-1]
    assert_same_outputs(reference, interrupted)
