"""Kill Snakemake (SIGKILL to its process group) inside the dataset, evaluate and report
jobs, and inside a forced rerun (`-R dataset`); the documented rerun (`--unlock`, then the
same command, with its -R if it was forced, and `--rerun-incomplete`) must finish with
outputs identical to an
uninterrupted run (tests/test_kill_resume.py covers simulation and training)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.test_kill_resume import OVERLAY, finish, kill_when, rerun, start
from tests.workflow_outputs import assert_same_outputs

TARGET = "all"  # the report and the two-point summaries, which a forced dataset also remakes


def started(workdir: Path, log: str) -> bool:
    return (workdir / "results" / "logs" / log).exists()


@pytest.mark.slow
def test_killed_dataset_evaluate_report_and_forced_rerun_resume(tmp_path: Path) -> None:
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    for workdir in (reference, interrupted):
        workdir.mkdir()
        (workdir / "overlay.yaml").write_text(yaml.safe_dump(OVERLAY))
    finish(start(reference, target=TARGET), reference)

    # killed as each stage's job starts (its log is open), then the documented rerun
    process = start(interrupted, target=TARGET)
    for log in ("dataset.log", "evaluate/cnn.log", "report.log"):
        kill_when(process, lambda log=log: started(interrupted, log), f"the job of {log}")
        process = rerun(interrupted, target=TARGET)
    finish(process, interrupted)
    assert_same_outputs(reference, interrupted)

    # a forced rerun of the dataset and everything after it, killed as training starts;
    # the documented rerun repeats the forced command: the remade dataset is byte-identical,
    # so without -R Snakemake would find the report up to date and leave the model files
    # that the killed training job had removed missing
    (interrupted / "results/logs/train/cnn.log").unlink()
    forced = start(interrupted, "-R", "dataset", target=TARGET)
    kill_when(forced, lambda: started(interrupted, "train/cnn.log"), "the forced training")
    finish(rerun(interrupted, "-R", "dataset", target=TARGET), interrupted)
    assert "train" in (interrupted / "snakemake.out").read_text().rsplit("Job stats", 1)[-1]
    assert_same_outputs(reference, interrupted)
