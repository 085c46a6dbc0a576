"""The learning curve in the real DAG (a small overlay of config/tiny.yaml): its table has
a row per method, fraction and parameter, n_train = ceil(f N_train), the 1.0 row of a
network is its main evaluation exactly, the report has the section, and a new fraction
plans no main training and no simulation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from cosmo_sbi.config import deep_merge
from cosmo_sbi.learning_curve import CURVE_PARAMETERS, read_table, subset_rows
from tests.test_workflow import _planned_jobs
from tests.workflow_utils import TINY_OVERLAY, run_snakemake, write_overlay

CURVE_OVERLAY = deep_merge(TINY_OVERLAY, {
    # 14 cosmologies split 7 / 4 / 3: R^2 on the test split is defined
    "design": {"latin_hypercube": {"n_simulations": 14}},
    "dataset": {"split": {"train": 0.5, "validation": 0.2, "test": 0.3}},
    "training": {"models": ["cnn"]},
    "learning_curve": {"fractions": [0.5, 1.0]},
})
"""TINY_OVERLAY (8^3 histograms, one epoch, no main posteriors) with 14 + 2 light cones,
the CNN only and the fractions 0.5 and 1."""


@pytest.mark.slow  # 125-214 s wall (62-70 s CPU) at load 3-5 on 2 cores
def test_learning_curve_table_report_and_reruns(tmp_path: Path) -> None:
    run_snakemake(tmp_path, write_overlay(tmp_path, CURVE_OVERLAY))
    results = tmp_path / "results"
    with h5py.File(results / "dataset.h5", "r") as handle:
        splits = handle["split"].asstr()[...]
        dataset_ids = handle["ids"].asstr()[...]
    n_train = int((splits == "train").sum())
    # the two-point table lists the training split in the dataset's order: the same nested
    # subset indices pick the same simulations for the networks and the NPE
    with h5py.File(results / "summaries/two_point.h5", "r") as handle:
        two_point_ids = handle["ids"].asstr()[...][handle["split"].asstr()[...] == "train"]
    assert np.array_equal(two_point_ids, dataset_ids[splits == "train"])
    assert len(subset_rows(np.flatnonzero(splits == "train"), 0.5, 0)) == math.ceil(n_train / 2)

    rows = read_table(results / "learning_curve/learning_curve.csv")
    assert len(rows) == 2 * 2 * len(CURVE_PARAMETERS)  # (cnn, two_point) x (0.5, 1) x 7
    for row in rows:
        assert row["n_train"] == math.ceil(row["fraction"] * n_train), row
    half = json.loads((results / "learning_curve/cnn/f0.5/training_summary.json").read_text())
    assert half["train_samples"] == math.ceil(n_train / 2)
    assert half["validation_samples"] == int((splits == "validation").sum())
    main = json.loads((results / "evaluation/cnn/metrics.json").read_text())["test"]
    assert main["n"] == int((splits == "test").sum()) >= 2
    full = [row for row in rows if row["method"] == "cnn" and row["fraction"] == 1.0]
    for row in full[:-1]:  # the six parameters (S8 last): the main evaluation, exactly
        expected = main["parameters"][row["parameter"]]
        assert expected["r2"] is not None
        assert row["r2"] == expected["r2"] and row["rmse"] == expected["rmse"], row
    assert full[-1]["parameter"] == "S8" and full[-1]["sigma"] is None
    assert (results / "learning_curve/learning_curve.png").stat().st_size > 0
    summary = (results / "report/summary.md").read_text()
    assert "## Learning curve" in summary and "| S8 | two_point |" in summary
    assert "still rise from the second-largest" in summary

    # a new fraction: only the curve's jobs and the report, nothing upstream
    grown = deep_merge(CURVE_OVERLAY, {"learning_curve": {"fractions": [0.25, 0.5, 1.0]}})
    jobs = _planned_jobs(run_snakemake(tmp_path, write_overlay(tmp_path, grown), "-n").stdout)
    assert jobs.pop("total") == 6, jobs
    assert jobs == {"all": 1, "learning_curve": 1, "learning_curve_evaluate": 1,
                    "learning_curve_npe": 1, "learning_curve_train": 1, "report": 1}
