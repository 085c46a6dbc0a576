"""The learning rules (dataset, train, evaluate, report) as Snakemake plans them (dry runs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cosmo_sbi.config import deep_merge
from tests.workflow_utils import TINY_OVERLAY, run_snakemake, write_overlay


def _job_blocks(stdout: str, rule: str) -> list[str]:
    """The text of every planned job of ``rule`` in a ``-n -p`` dry run."""
    blocks = re.split(r"\n(?=\[[^\]]+\]\nrule |rule )", stdout)
    return [block for block in blocks if re.match(rf"(\[[^\]]+\]\n)?rule {rule}:", block)]


@pytest.mark.parametrize(("training", "gpus", "launcher"), [
    ({"gpus": 2, "device": "auto"}, "gpu=2", "torchrun --standalone --nproc_per_node=2"),
    ({"gpus": 1, "device": "cuda"}, "gpu=1", "cosmo-sbi train"),
    ({"gpus": 1, "device": "cpu"}, None, "cosmo-sbi train"),
    ({"gpus": 0, "device": "auto"}, None, "cosmo-sbi train"),
])
def test_training_jobs_ask_for_gpus_and_keep_checkpoints(tmp_path: Path, training: dict,
                                                         gpus: str | None,
                                                         launcher: str) -> None:
    overlay = write_overlay(tmp_path, deep_merge(TINY_OVERLAY, {"training": training}))
    result = run_snakemake(tmp_path, overlay, "-n", "-p")
    jobs = _job_blocks(result.stdout, "train")
    assert len(jobs) == 2
    for job in jobs:
        resources = re.search(r"resources: (.*)", job).group(1)
        assert (gpus in resources) if gpus else ("gpu=" not in resources)
        assert launcher in job
        outputs = re.search(r"output: (.*)", job).group(1)
        # checkpoints must survive Snakemake's cleanup of a failed job's outputs
        assert "checkpoints" not in outputs and "model.pt" in outputs
    assert len(_job_blocks(result.stdout, "evaluate")) == 2
    report = _job_blocks(result.stdout, "report")
    assert len(report) == 1
    assert "--evaluations results/evaluation/cnn results/evaluation/vit" in report[0]
