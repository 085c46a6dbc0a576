"""PINOCCHIO's MPI ranks are counted: a local run never starts more ranks x threads than
``--cores``, and under SLURM the job asks for ``tasks`` tasks of ``threads`` CPUs.

The local test runs the workflow with the stand-in executable under the stand-in
``mpirun`` (tests/fake_pinocchio): each rank stays busy for a second and records when it
ran, so the number of ranks running at once is measured, not inferred.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import REPO
from tests.workflow_utils import run_snakemake, write_overlay

FAKE = REPO / "tests/fake_pinocchio"


def overlay(folder: Path, tasks: int, threads: int, n_lh: int, n_fiducial: int) -> Path:
    return write_overlay(folder, {
        "design": {"latin_hypercube": {"n_simulations": n_lh},
                   "fiducial": {"n_simulations": n_fiducial}},
        "posterior": {"methods": []},  # a few cosmologies: too few for the NPE
        "learning_curve": {"fractions": []},  # and for a learning curve
        "simulator": {"backend": "pinocchio", "pinocchio": {
            "executable": str(FAKE / "pinocchio.x"),
            "command": f"{FAKE / 'mpirun'} -np {{tasks}} {{executable}} {{parameter_file}}",
            "tasks": tasks, "threads": threads, "grid_size": 64, "box_size_mpc_h": 1500.0}},
    })


def most_at_once(intervals: list[tuple[int, int]]) -> int:
    """Largest number of [start, stop) intervals that overlap."""
    events = sorted([(start, 1) for start, _ in intervals] + [(stop, -1) for _, stop in intervals])
    running = peak = 0
    for _, change in events:  # at equal times a stop (-1) sorts before a start
        running += change
        peak = max(peak, running)
    return peak


def test_most_at_once() -> None:
    assert most_at_once([(0, 2), (1, 3), (2, 4)]) == 2
    assert most_at_once([(0, 1), (1, 2)]) == 1
    assert most_at_once([(0, 5), (1, 2), (1, 3)]) == 3


def test_local_run_never_starts_more_ranks_than_cores(tmp_path: Path) -> None:
    """--cores 2, 2 ranks per run, 4 runs: the runs go one at a time (2 ranks at once);
    before the fix, two runs of two ranks shared the two cores (4 ranks at once)."""
    ranks = tmp_path / "ranks.txt"
    run_snakemake(tmp_path, overlay(tmp_path, tasks=2, threads=1, n_lh=3, n_fiducial=1),
                  "--until", "pinocchio_run",
                  env_extra={"FAKE_PINOCCHIO_RANK_LOG": str(ranks),
                             "FAKE_PINOCCHIO_SECONDS": "1.5"})
    intervals = [tuple(map(int, line.split()[:2])) for line in ranks.read_text().splitlines()]
    assert len(intervals) == 4 * 2  # every run started its 2 ranks
    assert most_at_once(intervals) == 2
    # each run's 2 ranks did run together (the launcher starts them at once)
    assert len(list(tmp_path.glob("results/sims/*/*/pinocchio/pinocchio.run.plc.out"))) == 4


class _Resources(dict):
    """Snakemake's job resources as the SLURM plugin reads them (.get and attributes)."""

    __getattr__ = dict.get


def planned_pinocchio_job(folder: Path, cores: int, **pinocchio: int) -> SimpleNamespace:
    """threads and resources of a pinocchio_run job from a Snakemake dry run."""
    dry = run_snakemake(folder, overlay(folder, n_lh=3, n_fiducial=1, **pinocchio), "-n",
                        "--cores", str(cores),
                        "results/sims/fiducial/0000/pinocchio/pinocchio.run.plc.out")
    block = dry.stdout.split("rule pinocchio_run:")[1]
    threads = int(re.search(r"^\s+threads: (\d+)$", block, re.M).group(1))
    text = re.search(r"^\s+resources: (.*)$", block, re.M).group(1)
    resources = _Resources()
    for item in text.split(", "):
        key, value = item.split("=", 1)
        resources[key] = int(value) if value.isdigit() else value
    return SimpleNamespace(threads=threads, resources=resources)


def test_job_counts_every_rank_and_sbatch_asks_tasks_of_threads(tmp_path: Path) -> None:
    """tasks 4 x threads 3: the job holds 12 cores locally; the SLURM plugin's sbatch line
    (its own get_submit_command) asks for --ntasks=4 --cpus-per-task=3, and srun inside
    the job starts 4 ranks of 3 CPUs."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command

    job = planned_pinocchio_job(tmp_path, cores=16, tasks=4, threads=3)
    assert job.threads == 12
    params = {"run_uuid": "x", "slurm_logfile": "log", "comment_str": "rule_pinocchio_run",
              "account": "", "partition": "", "workdir": ""}
    sbatch = shlex.split(get_submit_command(job, params))
    assert "--ntasks=4" in sbatch and "--cpus-per-task=3" in sbatch, sbatch
    assert sbatch[sbatch.index("--mem-per-cpu") + 1] == "1200"  # max_mem_mb 3600 / 3 threads
    assert job.resources["mpi"] == "srun --cpus-per-task=3"
    # fewer cores than ranks: Snakemake lowers the job to all cores, so it runs alone
    assert planned_pinocchio_job(tmp_path, cores=2, tasks=4, threads=3).threads == 2


def test_stand_in_mpirun_starts_ranks(tmp_path: Path) -> None:
    """The stand-in launcher runs N copies with their ranks (what the test above relies on)."""
    import subprocess

    # one write() per process: lines of concurrent processes never interleave in the pipe
    script = "import os; os.write(1, (os.environ['OMPI_COMM_WORLD_RANK'] + '\\n').encode())"
    result = subprocess.run([str(FAKE / "mpirun"), "-np", "3", sys.executable, "-c", script],
                            capture_output=True, text=True, check=True)
    assert sorted(result.stdout.split()) == ["0", "1", "2"]
