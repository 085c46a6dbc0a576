"""benchmarks/gpu_check.sh --cpu-smoke: every stage of the GPU check runs, tiny, on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow  # ~1 min on 2 idle cores (4 min at load 7): ten python and snakemake starts
def test_gpu_check_cpu_smoke_runs_every_stage(tmp_path: Path) -> None:
    environment = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_WORK": str(tmp_path),
                   "GPU_CHECK_OUT": str(tmp_path / "out"),
                   "PYTHONPATH": str(REPO)}
    result = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--cpu-smoke"],
                            env=environment, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stages = (tmp_path / "stages.tsv").read_text().splitlines()[1:]
    # stages 3a-3c run in the background: their lines interleave with 1 and 2
    assert sorted(line.split("\t")[0] for line in stages) == [
        "1 throughput", "2 synthetic training", "3a simulate", "3b histograms", "3c dataset",
        "4a train cnn", "4b train vit", "4c evaluate", "4d report"]
    assert all(line.split("\t")[2] == "ok" for line in stages)
    for text in ("samples/s", "data on device: True", "light cones made: 4",
                 "cnn: 1 training samples", "vit: 1 training samples"):
        assert text in result.stdout
    with tarfile.open(tmp_path / "out" / "gpu_check.tar.gz") as archive:
        names = archive.getnames()
    for model in ("cnn", "vit"):
        assert f"pipeline/results/evaluation/{model}/metrics.json" in names
        assert f"pipeline/results/models/{model}/training_summary.json" in names
    assert "pipeline/results/report/summary.md" in names
