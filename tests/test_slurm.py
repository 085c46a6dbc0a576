"""`snakemake --profile slurm` on a real single-node SLURM cluster (tests/slurm/).

Run by tests/slurm/run_slurm_ci.sh, which starts the cluster and sets COSMO_SBI_SLURM=1;
skipped otherwise. The test cluster differs from a production one in what the command
line below overrides: no accounting database (so job states come from squeue, which
keeps finished jobs for MinJobAge = 600 s), status checks from 1 s instead of 40 s, a
node of `sinfo`'s size instead of the profile's 32 cores, and fake GPUs (gres backed by
empty files; torch stays on the CPU, so results match a local run bit for bit).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.workflow_outputs import assert_same_outputs
from tests.workflow_utils import snakemake_env

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("COSMO_SBI_SLURM") != "1",
                       reason="needs the single-node SLURM cluster: run "
                              "tests/slurm/run_slurm_ci.sh (it sets COSMO_SBI_SLURM=1)"),
]

TINY = REPO / "config/tiny.yaml"
TIMEOUT_S = 600
# Training and evaluation on one CPU each, so the 2-CPU node runs the two models side by
# side; the local reference run uses the same threads (same numerics).
THREADS = ["--set-threads", "train=1", "evaluate=1"]


def node_size() -> tuple[int, int]:
    """CPUs and memory [MB] of the cluster's (only) node."""
    cpus, memory_mb = subprocess.run(["sinfo", "-h", "-N", "-o", "%c %m"], check=True,
                                     capture_output=True, text=True).stdout.split()[:2]
    return int(cpus), int(memory_mb)


def snakemake(workdir: Path, configfiles: list[Path], *extra: str, slurm: bool,
              targets: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """Snakemake in ``workdir``, started from the repository root (where `--profile slurm`
    finds slurm/config.yaml), in the background; output in workdir/snakemake.out."""
    # targets first: options such as --resources take every word that follows them
    command = [sys.executable, "-m", "snakemake", *targets, "-s", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--configfile", *map(str, configfiles)]
    if slurm:
        cpus, memory_mb = node_size()
        command += ["--profile", "slurm", "--slurm-status-command", "squeue",
                    "--slurm-init-seconds-before-status-checks", "1",
                    "--slurm-keep-successful-logs",
                    "--cores", str(cpus), "--resources", f"mem_mb={memory_mb}"]
    else:
        command += ["--cores", "2"]
    with open(workdir / "snakemake.out", "wb") as log:
        return subprocess.Popen([*command, *extra], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT, env=snakemake_env())


def wait(process: subprocess.Popen[bytes], workdir: Path) -> None:
    status = process.wait(timeout=TIMEOUT_S)
    assert status == 0, (workdir / "snakemake.out").read_text()[-6000:]


def slurm_jobs(workdir: Path, log_folder: str) -> dict[str, dict[str, str]]:
    """`scontrol -d show job` fields of the SLURM jobs whose logs are in
    .snakemake/slurm_logs/<log_folder> (the plugin names each log <jobid>.log)."""
    logs = (workdir / ".snakemake/slurm_logs" / log_folder).rglob("*.log")
    jobs = {}
    for log in logs:
        shown = subprocess.run(["scontrol", "-d", "-o", "show", "job", log.stem], check=True,
                               capture_output=True, text=True).stdout
        jobs[log.stem] = dict(re.findall(r"(\w+)=(\S*)", shown))
    return jobs


def test_tiny_workflow_through_the_slurm_profile_matches_a_local_run(tmp_path: Path) -> None:
    local, cluster = tmp_path / "local", tmp_path / "slurm"
    gpu = tmp_path / "gpu.yaml"  # training and evaluation ask for one (fake) GPU each
    gpu.write_text(yaml.safe_dump({"training": {"device": "auto", "gpus": 1}}))
    for workdir in (local, cluster):
        workdir.mkdir()
    reference = snakemake(local, [TINY, gpu], *THREADS, slurm=False)
    wait(snakemake(cluster, [TINY, gpu], *THREADS, slurm=True), cluster)
    wait(reference, local)

    assert_same_outputs(local, cluster)
    # the 10 simulation blocks and their 10 histogram blocks (tiny.yaml: 4 + 9 + 24 light
    # cones in blocks of 4) went as group jobs of up to 16 blocks (group-components
    # sims=16), none as a job of its own
    slurm_logs = cluster / ".snakemake/slurm_logs"
    groups = [path.name for path in slurm_logs.iterdir() if path.name.startswith("group_sims")]
    assert groups
    assert not [path for path in slurm_logs.iterdir()
                if path.name.startswith(("rule_simulate", "rule_histogram"))]
    for group in groups:
        for sims in slurm_jobs(cluster, group).values():
            assert sims["JobState"] == "COMPLETED", sims
    # training asked for a GPU (sbatch --gpus=1) and got one, one job per model
    trains = slurm_jobs(cluster, "rule_train")
    assert len(trains) == 2
    for job in trains.values():
        assert (job["TresPerJob"], job["JOB_GRES"], job["JobState"]) == (
            "gres:gpu:1", "gpu:1", "COMPLETED"), job

    # training.gpus: 2 -> the cnn retrains (its params changed) under torchrun, one process
    # per allocated GPU (DDP; gloo on the CPU here)
    gpu.write_text(yaml.safe_dump({"training": {"device": "auto", "gpus": 2}}))
    wait(snakemake(cluster, [TINY, gpu], *THREADS, slurm=True,
                   targets=("results/models/cnn/model.pt",)), cluster)
    jobs = slurm_jobs(cluster, "rule_train/cnn")
    newest = jobs[max(jobs, key=int)]
    assert (newest["JOB_GRES"], newest["JobState"]) == ("gpu:2", "COMPLETED"), newest
    summary = json.loads((cluster / "results/models/cnn/training_summary.json").read_text())
    assert summary["world_size"] == 2


def test_pinocchio_runs_as_an_mpi_job(tmp_path: Path) -> None:
    """pinocchio_run: sbatch --ntasks=2 --mem-per-cpu, and srun starts the (stand-in)
    executable once per task; the parameter file is made locally first."""
    overlay = tmp_path / "pinocchio.yaml"
    overlay.write_text(yaml.safe_dump({
        "design": {"latin_hypercube": {"n_simulations": 3}, "fiducial": {"n_simulations": 1},
                   "derivatives": {"n_seeds": 0}},
        "posterior": {"methods": []},  # 3 cosmologies: 1 validation, too few for the NPE
        "simulator": {"backend": "pinocchio", "pinocchio": {
            "executable": str(REPO / "tests/fake_pinocchio/pinocchio.x"),
            "command": "{executable} {parameter_file}", "tasks": 2, "max_mem_mb": 500}},
    }))
    run_dir = "results/sims/fiducial/0000/pinocchio"
    configs = [TINY, overlay]
    wait(snakemake(tmp_path, configs, slurm=False, targets=(f"{run_dir}/parameter_file",)),
         tmp_path)
    wait(snakemake(tmp_path, configs, slurm=True,
                   targets=(f"{run_dir}/pinocchio.run.plc.out",)), tmp_path)

    (job,) = slurm_jobs(tmp_path, "rule_pinocchio_run").values()
    assert (job["NumTasks"], job["MinMemoryCPU"], job["JobState"]) == ("2", "500M", "COMPLETED")
    # the stand-in prints its banner once per process: srun -n 2 started two
    banner = "This is pinocchio V5.1"
    assert (tmp_path / run_dir / "log").read_text().count(banner) == 2
    fixture = REPO / "tests/data/pinocchio/lc64/pinocchio.lc64.plc.out"
    assert (tmp_path / run_dir / "pinocchio.run.plc.out").read_bytes() == fixture.read_bytes()
