"""Ensembles (training.ensemble_seeds): the mixture's moments, the rules Snakemake plans
(one train job per (model, seed), one evaluate job taking them all), and a real tiny run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from cosmo_sbi.config import deep_merge, load_config
from cosmo_sbi.metrics import mixture_moments
from tests.conftest import REPO
from tests.test_workflow_learning import _job_blocks
from tests.workflow_utils import TINY_OVERLAY, run_snakemake, write_overlay

ENSEMBLE = deep_merge(TINY_OVERLAY, {"training": {"models": ["cnn"], "ensemble_seeds": [0, 1]}})


@pytest.mark.parametrize("preset", ["laptop", "seed"])
def test_presets_keep_ensembles_off(preset: str) -> None:
    config = load_config([REPO / "config.yaml", REPO / "config" / f"{preset}.yaml"])
    assert config["training"]["ensemble_seeds"] == []
    if preset == "seed":  # the seed paper's count of simulations on the laptop grid
        assert (config["design"]["latin_hypercube"]["n_simulations"],
                config["design"]["fiducial"]["n_simulations"]) == (1000, 100)


def test_mixture_moments_match_samples_of_the_mixture() -> None:
    """Known answer: members N(-1, 1) and N(+1, 0.5^2) -> mean 0, variance
    (1 + 0.25) / 2 + 1 = 1.625; checked against 400k draws of the mixture."""
    means = np.array([[[-1.0]], [[1.0]]])
    sigmas = np.array([[[1.0]], [[0.5]]])
    mean, sigma = mixture_moments(means, sigmas)
    assert mean.shape == (1, 1) and np.allclose(mean, 0.0) and np.allclose(sigma**2, 1.625)
    rng = np.random.default_rng(3)
    member = rng.integers(0, 2, 400_000)
    draws = rng.normal(means[member, 0, 0], sigmas[member, 0, 0])
    assert abs(draws.var() - sigma[0, 0] ** 2) < 0.01 and abs(draws.mean() - mean[0, 0]) < 0.01


def test_averaging_sigmas_alone_would_be_overconfident() -> None:
    """The case that must fail: members that disagree widen the mixture beyond the mean of
    their sigmas; members that agree leave it unchanged (one network is itself)."""
    means = np.array([[[0.2, 0.5]], [[0.4, 0.5]], [[0.6, 0.5]]])
    sigmas = np.full_like(means, 0.1)
    mean, sigma = mixture_moments(means, sigmas)
    assert sigma[0, 0] > sigmas.mean(axis=0)[0, 0] * 1.5
    assert np.isclose(sigma[0, 1], 0.1) and np.allclose(mean, [[0.4, 0.5]])
    single_mean, single_sigma = mixture_moments(means[:1], sigmas[:1])
    assert np.array_equal(single_mean, means[0]) and np.array_equal(single_sigma, sigmas[0])


def test_ensemble_plans_one_train_job_per_seed(tmp_path: Path) -> None:
    result = run_snakemake(tmp_path, write_overlay(tmp_path, ENSEMBLE), "-n", "-p")
    members = _job_blocks(result.stdout, "train_member")
    assert len(members) == 2 and not _job_blocks(result.stdout, "train")
    for seed in (0, 1):
        job = next(j for j in members if f"results/models/cnn/seed{seed}/model.pt" in j)
        assert f"--seed {seed} " in job
    evaluate = _job_blocks(result.stdout, "evaluate")
    assert len(evaluate) == 1
    assert "--model-dir results/models/cnn/seed0 results/models/cnn/seed1 " in evaluate[0]


def test_without_ensemble_the_paths_are_unchanged(tmp_path: Path) -> None:
    overlay = deep_merge(TINY_OVERLAY, {"training": {"models": ["cnn"]}})
    result = run_snakemake(tmp_path, write_overlay(tmp_path, overlay), "-n", "-p")
    train = _job_blocks(result.stdout, "train")
    assert len(train) == 1 and "results/models/cnn/model.pt" in train[0]
    assert "--seed 0 " in train[0] and not _job_blocks(result.stdout, "train_member")
    assert re.search(r"--model-dir results/models/cnn --output-dir",
                     _job_blocks(result.stdout, "evaluate")[0])


@pytest.mark.slow
def test_tiny_ensemble_run_evaluates_the_mixture(tmp_path: Path) -> None:
    """The real DAG up to the evaluation: two members trained with their own seeds, the
    evaluation's sigmas the mixture of theirs."""
    run_snakemake(tmp_path, write_overlay(tmp_path, ENSEMBLE),
                  "results/evaluation/cnn/metrics.json")
    results = tmp_path / "results"
    summaries = [json.loads((results / "models" / "cnn" / f"seed{s}" /
                             "training_summary.json").read_text()) for s in (0, 1)]
    assert [s["seed"] for s in summaries] == [0, 1]
    assert not (results / "models" / "cnn" / "model.pt").exists()
    metrics = json.loads((results / "evaluation" / "cnn" / "metrics.json").read_text())
    assert [m["seed"] for m in metrics["training"]["ensemble"]] == [0, 1]
    table = Table.read(results / "evaluation" / "cnn" / "predictions.ecsv")
    assert len(table) == 6 and np.all(np.asarray(table["Omega_m_sigma"]) > 0)
