"""The tiny DAG on a real PINOCCHIO build (COSMO_SBI_PINOCCHIO=/path/to/pinocchio.x), and
the log checks it relies on, tested on a real run's log (tests/data/pinocchio/workflow128).

Build PINOCCHIO as docs/pinocchio.md says; the test launches it with
``mpirun [--allow-run-as-root] --oversubscribe -np 2`` (OpenMPI).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import pytest
import yaml

from cosmo_sbi.config import deep_merge, load_config
from cosmo_sbi.lightcone import read_lightcone
from tests.conftest import REPO
from tests.pinocchio_log import echo_mismatches, plc_halo_count
from tests.workflow_utils import run_snakemake, write_overlay

RUN = REPO / "tests/data/pinocchio/workflow128/fiducial_0000"
EXECUTABLE = os.environ.get("COSMO_SBI_PINOCCHIO", "")


def test_echo_check_reads_a_real_log(tmp_path: Path) -> None:
    """Every echoed value of a real run matches its parameter file; a changed value and a
    missing echo are caught."""
    assert echo_mismatches(RUN / "log", RUN / "parameter_file") == []
    assert plc_halo_count(RUN / "log") == 80169
    changed = tmp_path / "parameter_file"
    changed.write_text((RUN / "parameter_file").read_text().replace("0.8079", "0.808")
                       .replace("PLCAxis                        1.0 0.0 0.0",
                                "PLCAxis                        0.0 1.0 0.0"))
    assert echo_mismatches(RUN / "log", changed) == [
        "Sigma8: log 0.807900, parameter file 0.808",
        "PLCAxis: log 1.000000, parameter file 0.0", "PLCAxis: log 0.000000, parameter file 1.0"]
    truncated = tmp_path / "log"
    truncated.write_text((RUN / "log").read_text().replace("Sigma8", "Sigma_8"))
    with pytest.raises(ValueError, match="no echo of 'Sigma8'"):
        echo_mismatches(truncated, RUN / "parameter_file")


@pytest.mark.slow
@pytest.mark.skipif(not (EXECUTABLE and os.access(EXECUTABLE, os.X_OK)),
                    reason="needs a real PINOCCHIO build: set COSMO_SBI_PINOCCHIO to its "
                           "pinocchio.x (docs/pinocchio.md)")
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun (OpenMPI)")
def test_tiny_dag_on_real_pinocchio(tmp_path: Path) -> None:
    """config/tiny.yaml on the pinocchio backend, 64^3 in 500 Mpc/h (replicated,
    so allowed explicitly): every run's log echoes what was written, has no ERROR and
    counts the light cone's halos; the DAG reaches the report, and the calibration rule
    fits the runs' mass functions."""
    root = " --allow-run-as-root" if os.geteuid() == 0 else ""
    tiny = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    overlay = write_overlay(tmp_path, deep_merge(tiny, {
        "histogram": {"bins": [8, 8, 8]},
        "simulator": {"backend": "pinocchio", "pinocchio": {
            "executable": EXECUTABLE,
            "command": f"mpirun{root} --oversubscribe -np {{tasks}} {{executable}} "
                       "{parameter_file}",
            "tasks": 2, "grid_size": 64, "box_size_mpc_h": 500.0, "max_mem_mb": 1000,
            "allow_replication": True}}}))
    run_snakemake(tmp_path, overlay, "all", "results/calibration/mass_function.yaml")
    runs = sorted((tmp_path / "results/sims").glob("*/*/pinocchio"))
    design = tiny["design"]  # every set of the preset: Latin hypercube, fiducial, derivatives
    assert len(runs) == (design["latin_hypercube"]["n_simulations"]
                         + design["fiducial"]["n_simulations"]
                         + design["derivatives"]["n_seeds"] * 4 * 6)  # +-h, +-h/2 x 6
    for run in runs:
        log = run / "log"
        assert echo_mismatches(log, run / "parameter_file") == [], run
        assert "ERROR" not in log.read_text(), run
        halos, attrs = read_lightcone(run.parent / "lightcone.h5", fields=("mass",))
        assert len(halos["mass"]) == plc_halo_count(log) > 0, run
        assert 0 < attrs["pinocchio_repeated_fraction"] < 1, run
    for histogram in (tmp_path / "results/histograms").rglob("*.h5"):
        with h5py.File(histogram) as stream:
            assert stream["counts"][...].sum() > 0, histogram
    assert (tmp_path / "results/report").is_dir()
    # the calibration rule fits the runs' mass functions into a loadable overlay
    calibration = load_config([REPO / "config.yaml", tmp_path / "results/calibration/"
                               "mass_function.yaml"])
    assert calibration["simulator"]["embedded"]["mass_function_ratio"]["model"] == "tinker08"
