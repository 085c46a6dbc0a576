"""cosmo-sbi search on toy data: a 2-trial budget writes a valid config overlay, reproducibly."""

from __future__ import annotations

import csv

import pytest
import yaml

from cosmo_sbi.config import deep_merge, validate_schema
from cosmo_sbi.dataset import build_dataset
from cosmo_sbi.search import OVERLAY_FILE, SEARCH_SPACE, TRIALS_FILE, overrides, search
from cosmo_sbi.toy import toy_config, write_histograms

pytest.importorskip("optuna")


def test_overrides_nest_the_model_keys() -> None:
    assert overrides("vit", {"training.learning_rate": 1e-3, "model.dropout": 0.1}) == {
        "training": {"learning_rate": 1e-3}, "models": {"vit": {"dropout": 0.1}}}


def test_two_trial_search_writes_an_overlay_the_config_accepts(tmp_path) -> None:
    config = toy_config({"search": {"trials": 2, "epochs": 2},
                         "training": {"models": ["cnn"]}})
    paths = write_histograms(config, tmp_path / "histograms")
    dataset = tmp_path / "dataset.h5"
    build_dataset(config, paths["latin_hypercube"], paths["fiducial"], dataset)
    overlay = search(config, "cnn", dataset, tmp_path / "search")
    assert overlay == yaml.safe_load((tmp_path / "search" / OVERLAY_FILE).read_text())
    merged = validate_schema(deep_merge(config, overlay))
    low, high = SEARCH_SPACE["training.learning_rate"][1]
    assert low <= merged["training"]["learning_rate"] <= high
    assert merged["training"]["batch_size"] in SEARCH_SPACE["training.batch_size"][1]
    assert 0.0 <= merged["models"]["cnn"]["dropout"] <= 0.3
    with open(tmp_path / "search" / TRIALS_FILE) as stream:
        trials = list(csv.DictReader(stream))
    assert len(trials) == 2
    best = min(trials, key=lambda row: float(row["best_val_loss"]))
    assert float(best["training.learning_rate"]) == overlay["training"]["learning_rate"]
    # the seeded sampler proposes the same trials; their checkpoints are resumed, not retrained
    again = search(config, "cnn", dataset, tmp_path / "search")
    assert again == overlay
