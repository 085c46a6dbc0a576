"""The posterior stage: config checks, network summary tables, reproducible NPE on summary
tables (two-point and combined code paths on synthetic tables), metrics and figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.table import Table

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.config import ConfigError
from cosmo_sbi.dataset import prior_bounds
from cosmo_sbi.posterior import (
    POSTERIOR_PARAMETERS,
    SAMPLES_FILE,
    ensemble_sample_counts,
    fit_and_sample,
    network_summary_table,
    read_samples,
    run_posterior,
    s8,
    write_network_summaries,
)
from cosmo_sbi.posterior_config import check_posterior_config, posterior_methods
from cosmo_sbi.posterior_metrics import write_posterior_metrics
from cosmo_sbi.summary_table import SummaryTable, read_summary_table, write_summary_table
from tests.conftest import make_config

FAST_NPE = {"hidden_features": 16, "num_transforms": 2, "max_epochs": 100, "n_samples": 200,
            "bootstrap": 20, "batch_size": 50, "learning_rate": 3e-3}


@pytest.fixture(autouse=True)
def one_thread() -> None:
    """One torch thread: the 2 shared cores make two threads several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("overlay", "message"), [
    ({"posterior": {"train_splits": ["validation", "test"]}},
     "posterior.train_splits: contains 'test'"),
    ({"posterior": {"train_splits": ["train", "validation"]}},
     "posterior.train_splits: contains 'train'.*over-confident"),
    ({"training": {"models": ["cnn"]}, "posterior": {"methods": ["cnn", "vit"]}},
     r"posterior.methods: 'vit' needs the networks \['vit'\]"),
    ({"training": {"models": ["cnn"]}, "posterior": {"methods": ["combined"]}},
     r"'combined' needs the networks \['vit'\]"),
    ({"design": {"latin_hypercube": {"n_simulations": 40}},
      "posterior": {"min_simulations": 50}},
     r"posterior.min_simulations: the NPE would train on \d+ simulations.*at least 50"),
    ({"posterior": {"ensemble_size": 20, "n_samples": 10}},
     r"posterior.ensemble_size: 20 NPEs share posterior.n_samples = 10"),
])
def test_bad_posterior_config_names_the_field(overlay: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_posterior_config(make_config(overlay))


def test_default_methods_follow_the_trained_networks() -> None:
    assert posterior_methods(make_config()) == ["cnn", "vit", "two_point", "combined"]
    only_cnn = make_config({"training": {"models": ["cnn"]}})
    assert posterior_methods(check_posterior_config(only_cnn)) == ["cnn", "two_point"]
    assert posterior_methods(make_config({"posterior": {"methods": []}})) == []


def test_no_methods_skips_the_posterior_checks() -> None:
    check_posterior_config(make_config({"design": {"latin_hypercube": {"n_simulations": 3}},
                                        "training": {"models": ["cnn"]},
                                        "posterior": {"methods": []}}))


def synthetic_table(config: dict, kind: str, noise: float, seed: int = 0) -> SummaryTable:
    """Latin-hypercube rows (train/validation/test) and fiducial seeds whose summaries are
    the scaled parameters plus Gaussian noise, in 3 features mixing them linearly."""
    rng = np.random.default_rng(0)  # the same simulations whatever the seed of the noise
    lower, upper = prior_bounds(config)
    n_lh, n_fid = 400, 6
    theta = lower + (upper - lower) * rng.random((n_lh, 6))
    fiducial = np.array([config["design"]["fiducial"]["parameters"][name]
                         for name in PARAMETER_NAMES])
    theta = np.concatenate([theta, np.repeat(fiducial[None], n_fid, axis=0)])
    unit = (theta - lower) / (upper - lower)
    x = unit[:, :3] + noise * np.random.default_rng(seed).standard_normal((len(theta), 3))
    splits = np.array(["train"] * 100 + ["validation"] * 250 + ["test"] * 50
                      + ["fiducial"] * n_fid)
    sets = np.where(splits == "fiducial", "fiducial", "latin_hypercube")
    ids = np.array([f"{i:04d}" for i in range(n_lh)] + [f"{i:04d}" for i in range(n_fid)])
    return SummaryTable(x, [f"f{i}" for i in range(3)], theta, ids, sets, splits,
                        {"kind": kind})


@pytest.fixture
def config() -> dict:
    return make_config({"posterior": FAST_NPE})


def test_npe_is_seeded_and_bit_reproducible(config: dict) -> None:
    table = synthetic_table(config, "two_point", noise=0.05)
    first = fit_and_sample(config, table)
    second = fit_and_sample(config, table)
    np.testing.assert_array_equal(first["samples"], second["samples"])
    assert first["samples"].shape == (56, FAST_NPE["n_samples"], 7)
    assert set(first["split"]) == {"test", "fiducial"}
    assert first["summary"]["simulations"] == 250  # the validation split only
    # S8 is derived from every sample, and the truths carry it too
    np.testing.assert_allclose(first["samples"][..., 6],
                               s8(first["samples"][..., 0], first["samples"][..., 1]))
    lower, upper = prior_bounds(config)
    assert np.all(first["samples"][..., :6] >= lower) and np.all(first["samples"][..., :6] <= upper)


def test_an_npe_ensemble_is_the_equal_mixture_of_its_seeded_members(config: dict) -> None:
    table = synthetic_table(config, "two_point", noise=0.05)
    section = config["posterior"]
    ensemble = fit_and_sample({**config, "posterior": {**section, "ensemble_size": 2}}, table)
    members = [fit_and_sample({**config, "posterior": {**section, "n_samples": 100,
                                                       "ensemble_size": 1,
                                                       "seed": section["seed"] + 1000 * k}},
                              table) for k in range(2)]
    np.testing.assert_array_equal(ensemble["samples"],
                                  np.concatenate([m["samples"] for m in members], axis=1))
    summary = ensemble["summary"]
    assert summary["members"] == 2 and summary["simulations"] == 250
    assert summary["epochs"] == [m["summary"]["epochs"] for m in members]
    assert ensemble_sample_counts(2000, 3) == [667, 667, 666]
    assert ensemble_sample_counts(200, 1) == [200]


def test_too_few_training_rows_name_the_field(config: dict) -> None:
    table = synthetic_table(config, "two_point", noise=0.05)
    with pytest.raises(ValueError, match="posterior.min_simulations.*has 250.*at least 300"):
        fit_and_sample({**config, "posterior": {**config["posterior"], "min_simulations": 300}},
                       table)


def test_network_summaries_from_predictions(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    predictions = Table({"id": ["0000", "0001", "0000"],
                         "set": ["latin_hypercube", "latin_hypercube", "fiducial"],
                         "split": ["train", "test", "fiducial"]})
    for name in PARAMETER_NAMES:
        predictions[f"{name}_true"] = rng.random(3)
        predictions[f"{name}_mean"] = rng.random(3)
        predictions[f"{name}_sigma"] = rng.random(3) + 0.1
    path = tmp_path / "predictions.ecsv"
    predictions.write(path, format="ascii.ecsv")
    write_network_summaries(path, "cnn", tmp_path / "cnn.h5")
    table = read_summary_table(tmp_path / "cnn.h5")
    assert table.feature_names[:2] == ["Omega_m_mean", "Omega_m_log_sigma"]
    np.testing.assert_allclose(table.x[:, 1], np.log(predictions["Omega_m_sigma"]))
    assert table.splits.tolist() == ["train", "test", "fiducial"]
    assert table.attrs["kind"] == "cnn"
    predictions["h_sigma"][1] = 0.0  # log(0): not a usable summary
    predictions.write(path, format="ascii.ecsv", overwrite=True)
    with pytest.raises(ValueError, match="non-finite"):
        network_summary_table(Table.read(path), "cnn") and write_network_summaries(
            path, "cnn", tmp_path / "bad.h5")


def test_combined_posterior_writes_samples_metrics_and_figures(config: dict,
                                                                tmp_path: Path) -> None:
    """The combined method concatenates cnn + vit + two_point tables; the stage writes
    samples.h5, metrics.json (test split, fiducial seeds) and the TARP and SBC figures."""
    paths = {}
    for seed, kind in enumerate(("cnn", "vit", "two_point")):
        paths[kind] = tmp_path / f"{kind}.h5"
        write_summary_table(paths[kind], synthetic_table(config, kind, 0.05, seed))
    output = tmp_path / "combined"
    run_posterior(config, "combined", paths, output)
    metrics = write_posterior_metrics(config, "combined", output, None)
    data = read_samples(output / SAMPLES_FILE)
    assert data["attrs"]["features"].count("two_point:") == 3
    assert json.loads((output / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["test"]["n"] == 50 and metrics["fiducial"]["n"] == 6
    assert set(metrics["test"]["parameters"]) == set(POSTERIOR_PARAMETERS)
    assert metrics["test"]["tarp"]["verdict"] in {"pass", "fail", "inconclusive"}
    # the summaries carry Omega_m, sigma_8, w0 (noise 5% of the box): the posterior follows
    for name in ("Omega_m", "sigma_8", "w0"):
        assert metrics["test"]["parameters"][name]["r2"] > 0.5
        assert metrics["fiducial"]["parameters"][name]["sigma"] < 0.2 * np.diff(
            config["design"]["latin_hypercube"]["ranges"][name])[0]
    assert (output / metrics["figures"]["tarp"]).exists()
    assert (output / metrics["figures"]["sbc"]).exists()
    with pytest.raises(ValueError, match="'combined' needs the summary tables"):
        run_posterior(config, "combined", {"cnn": paths["cnn"]}, tmp_path / "bad")
