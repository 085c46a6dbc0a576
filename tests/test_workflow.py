"""The Snakemake DAG: planning at paper scale, errors before any job, precise reruns."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cosmo_sbi.config import deep_merge
from cosmo_sbi.lightcone import read_lightcone
from tests.conftest import REPO
from tests.workflow_utils import (
    TINY_OVERLAY,
    modification_times,
    run_snakemake,
    write_overlay,
)

# the workflow tests exercise simulation orchestration: stop before dataset and training
UNTIL_HISTOGRAMS = ("--until", "histogram")


def _planned_jobs(stdout: str) -> dict[str, int]:
    """The job-count table Snakemake prints in a dry run."""
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", stdout, re.M)}


def _jobs_of(jobs: dict[str, int], prefix: str) -> int:
    """Jobs of the block rules named <prefix>_<set>_<first id>."""
    return sum(count for name, count in jobs.items()
               if re.fullmatch(rf"{prefix}_(latin_hypercube|fiducial)_\d+", name))


def test_default_config_plans_1100_simulations_in_blocks(tmp_path: Path) -> None:
    result = run_snakemake(tmp_path, REPO / "config.yaml", "-n", "--quiet", "rules")
    jobs = _planned_jobs(result.stdout)
    # 1000 + 100 simulations in blocks of simulator.block_size = 20: 55 jobs per stage
    assert _jobs_of(jobs, "simulate_embedded") == 55
    assert _jobs_of(jobs, "histogram") == 55
    assert jobs["design"] == 2


@pytest.mark.parametrize(("threads", "cores"), [(1, 2), (3, 4)])
def test_block_jobs_hold_the_configured_threads(tmp_path: Path, threads: int,
                                                cores: int) -> None:
    """simulator.embedded.threads is each block job's threads: and its --threads (1 on 2
    cores: two blocks at once)."""
    overlay = deep_merge(TINY_OVERLAY, {"simulator": {"embedded": {"threads": threads}}})
    dry = run_snakemake(tmp_path, write_overlay(tmp_path, overlay), "-n", "-p",
                        "--cores", str(cores), "--until", "lightcones")
    jobs = dry.stdout.split("rule simulate_embedded_")[1:]
    assert len(jobs) == 2, dry.stdout  # 4 + 2 light cones in blocks of 4
    for job in jobs:
        held = re.search(r"^\s+threads: (\d+)$", job, re.M)  # not printed when 1
        assert (int(held.group(1)) if held else 1) == threads, job
        assert f"--threads {threads} --resume" in job, job


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ({"design": {"latin_hypercube": {"ranges": {"h": [0.8, 0.6]}}}},
         "design.latin_hypercube.ranges.h"),
        ({"design": {"latin_hypercube": {"ranges": {"wa": [-0.3, 1.0]}}}}, "w0 \\+ wa < 0"),
        ({"histogram": {"bins": [64, 64, -1]}}, "bins"),
        ({"histogram": {"unknown_key": 1}}, "unknown_key"),
        ({"lightcone": {"aperture_deg": 20.0}}, "lightcone.aperture_deg"),
        ({"simulator": {"backend": "pinocchio",
                        "pinocchio": {"executable": "/nonexistent/pinocchio.x"}}},
         "simulator.pinocchio.executable"),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path: Path, overlay: dict, message: str) -> None:
    result = run_snakemake(tmp_path, write_overlay(tmp_path, overlay), check=False)
    assert result.returncode != 0
    assert re.search(message, result.stderr), result.stderr[-2000:]
    assert not (tmp_path / "results" / "design").exists()
    assert not (tmp_path / "results" / "sims").exists()


@pytest.mark.slow
def test_config_edits_rerun_only_what_they_touch(tmp_path: Path) -> None:
    overlay = write_overlay(tmp_path, TINY_OVERLAY)
    run_snakemake(tmp_path, overlay, *UNTIL_HISTOGRAMS)
    results = tmp_path / "results"
    histograms = sorted((results / "histograms").rglob("*.h5"))
    assert len(histograms) == 6
    before = modification_times(results / "sims")

    # a histogram setting: every histogram is remade, no simulation reruns
    histogram_edit = {**TINY_OVERLAY, "histogram": {"bins": [8, 8, 8], "min_mass_msun_h": 2e13}}
    hist_before = modification_times(results / "histograms")
    run_snakemake(tmp_path, write_overlay(tmp_path, histogram_edit), *UNTIL_HISTOGRAMS)
    assert modification_times(results / "sims") == before
    hist_after = modification_times(results / "histograms")
    assert all(hist_after[name] != hist_before[name] for name in hist_before)

    # one parameter range: the Latin-hypercube simulations rerun, the fiducial ones do not
    range_edit = {**histogram_edit,
                  "design": {**TINY_OVERLAY["design"],
                             "latin_hypercube": {"n_simulations": 4,
                                                 "ranges": {"Omega_m": [0.26, 0.4]}}}}
    run_snakemake(tmp_path, write_overlay(tmp_path, range_edit), *UNTIL_HISTOGRAMS)
    after = modification_times(results / "sims")
    for name, mtime in before.items():
        if name.startswith("fiducial/"):
            assert after[name] == mtime, name
        else:
            assert after[name] != mtime, name

    # more fiducial seeds: the fiducial table is remade so its simulations rerun, but the
    # seeds of existing ids do not change, so neither do their light cones
    grown = {**range_edit, "design": {**range_edit["design"], "fiducial": {"n_simulations": 3}}}
    old_cone, _ = read_lightcone(results / "sims/fiducial/0001/lightcone.h5")
    run_snakemake(tmp_path, write_overlay(tmp_path, grown), *UNTIL_HISTOGRAMS)
    new_cone, _ = read_lightcone(results / "sims/fiducial/0001/lightcone.h5")
    for name, values in old_cone.items():
        np.testing.assert_array_equal(new_cone[name], values)
    assert (results / "sims/fiducial/0002/lightcone.h5").exists()

    # nothing left to do, and no temporary file was left behind anywhere
    dry = run_snakemake(tmp_path, write_overlay(tmp_path, grown), "-n", *UNTIL_HISTOGRAMS)
    assert _planned_jobs(dry.stdout).get("total", 0) == 0, dry.stdout

    # the FFT thread count is no rerun trigger (the files are the same with any)
    threads = {**grown, "simulator": {**TINY_OVERLAY["simulator"], "embedded": {
        **TINY_OVERLAY["simulator"]["embedded"], "threads": 1}}}
    dry = run_snakemake(tmp_path, write_overlay(tmp_path, threads), "-n", *UNTIL_HISTOGRAMS)
    assert _planned_jobs(dry.stdout).get("total", 0) == 0, dry.stdout

    # another block size regroups the files: histograms whose block changed, no simulation
    regrouped = {**grown, "simulator": {**TINY_OVERLAY["simulator"], "block_size": 2}}
    dry = run_snakemake(tmp_path, write_overlay(tmp_path, regrouped), "-n", *UNTIL_HISTOGRAMS)
    jobs = _planned_jobs(dry.stdout)
    assert _jobs_of(jobs, "simulate_embedded") == 0, dry.stdout
    assert _jobs_of(jobs, "histogram") > 0, dry.stdout
    assert not list(results.rglob("*.tmp-*"))


def _pinocchio_overlay(folder: Path) -> Path:
    """Tiny PINOCCHIO-backend config whose executable is the fixture-copying stand-in."""
    overlay = {
        "design": TINY_OVERLAY["design"],
        "histogram": {"bins": [8, 8, 8]},
        "models": TINY_OVERLAY["models"],
        "learning_curve": {"fractions": []},  # 1 training cosmology: too few for a curve
        "simulator": {"backend": "pinocchio",
                      "pinocchio": {"executable": str(REPO / "tests/fake_pinocchio/pinocchio.x"),
                                    "command": "{executable} {parameter_file}",
                                    "tasks": 2, "grid_size": 64, "box_size_mpc_h": 500.0,
                                    "allow_replication": True}},
    }
    return write_overlay(folder, overlay)


def test_pinocchio_backend_plans_three_jobs_per_simulation(tmp_path: Path) -> None:
    overlay = _pinocchio_overlay(tmp_path)
    paper = write_overlay(tmp_path, {"simulator": {"backend": "pinocchio", "pinocchio": {
        "executable": str(REPO / "tests/fake_pinocchio/pinocchio.x")}}}, "paper.yaml")
    jobs = _planned_jobs(run_snakemake(tmp_path, paper, "-n", "--quiet", "rules").stdout)
    assert jobs["pinocchio_setup"] == jobs["pinocchio_run"] == jobs["pinocchio_convert"] == 1100
    assert overlay.exists()


@pytest.mark.slow
def test_pinocchio_orchestration_and_failure_detection(tmp_path: Path) -> None:
    overlay = _pinocchio_overlay(tmp_path)
    results = tmp_path / "results"
    # a run whose log has ERROR (PINOCCHIO exits 0 then) fails its job: no light cone
    failing = run_snakemake(tmp_path, overlay, *UNTIL_HISTOGRAMS, "--keep-going",
                            "--envvars", "FAKE_PINOCCHIO_FAIL", check=False,
                            env_extra={"FAKE_PINOCCHIO_FAIL": "error"})
    assert failing.returncode != 0
    assert not list(results.rglob("lightcone.h5"))
    # the rerun without the failure resumes and completes every light cone and histogram
    run_snakemake(tmp_path, overlay, *UNTIL_HISTOGRAMS)
    assert len(list((results / "sims").rglob("lightcone.h5"))) == 6
    assert len(list((results / "histograms").rglob("*.h5"))) == 6
