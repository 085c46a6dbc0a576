"""End to end on a toy dataset: real 1-epoch training of both models, evaluation, report."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from astropy.table import Table

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.cli import main
from cosmo_sbi.dataset import build_dataset
from cosmo_sbi.evaluate import evaluate_model, write_evaluation
from cosmo_sbi.metrics import parameter_arrays, split_metrics
from cosmo_sbi.models.build import count_parameters, load_trained
from cosmo_sbi.outputs import read_predictions, write_metrics
from cosmo_sbi.report import write_report
from cosmo_sbi.toy import toy_config, write_histograms
from cosmo_sbi.train import train_model

pytestmark = pytest.mark.slow  # ~30 s on 2 cores: two trainings, three evaluations

MODELS = ("cnn", "vit")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("pipeline")
    config = toy_config({"histogram": {"bins": [16, 16, 16]},
                           "training": {"epochs": 1, "device": "cpu"},
                           "models": {"vit": {"preset": "small", "patch_size": 4}}})
    paths = write_histograms(config, root / "histograms")
    dataset = root / "dataset.h5"
    build_dataset(config, paths["latin_hypercube"], paths["fiducial"], dataset)
    for model in MODELS:
        train_model(config, model, dataset, root / "models" / model)
        evaluate_model(config, model, dataset, root / "models" / model,
                       root / "evaluation" / model)
    config_file = root / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    status = main(["report", "--config", str(config_file), "--evaluations",
                   *[str(root / "evaluation" / m) for m in MODELS],
                   "--output-dir", str(root / "report")])
    assert status == 0
    return {"root": root, "config": config, "dataset": dataset}


def test_predictions_are_physical_and_metrics_match_them(pipeline: dict) -> None:
    root = pipeline["root"]
    with h5py.File(pipeline["dataset"], "r") as handle:
        theta = handle["theta"][...]
        split = handle["split"].asstr()[...]
    for model in MODELS:
        table = read_predictions(root / "evaluation" / model / "predictions.ecsv")
        np.testing.assert_array_equal(np.asarray(table["split"]), split)
        for index, name in enumerate(PARAMETER_NAMES):
            np.testing.assert_array_equal(table[f"{name}_true"], theta[:, index])
            assert np.all(np.asarray(table[f"{name}_sigma"]) > 0)
        metrics = json.loads((root / "evaluation" / model / "metrics.json").read_text())
        expected = split_metrics(*parameter_arrays(table, "test"))
        for name in PARAMETER_NAMES:
            for key, value in expected[name].items():
                # ECSV stores float64 with 17 significant digits: exact round trip
                assert metrics["test"]["parameters"][name][key] == pytest.approx(value,
                                                                                 rel=1e-12)
        assert metrics["test"]["n"] == int(np.sum(split == "test"))
        for figure in metrics["figures"].values():
            assert (root / "evaluation" / model / figure).stat().st_size > 1000
    vit_figures = json.loads((root / "evaluation" / "vit" / "metrics.json").read_text())
    assert {"attention_heads", "attention_rollout", "attention_redshift",
            "position_similarity"} <= set(
        vit_figures["figures"])


def test_evaluation_is_bit_identical(pipeline: dict, tmp_path: Path) -> None:
    root = pipeline["root"]
    evaluate_model(pipeline["config"], "vit", pipeline["dataset"], root / "models" / "vit",
                   tmp_path)
    original = root / "evaluation" / "vit"
    files = sorted(path.relative_to(original) for path in original.rglob("*") if path.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for name in files:
        assert (tmp_path / name).read_bytes() == (original / name).read_bytes(), name


def test_report_tables_and_links(pipeline: dict) -> None:
    root = pipeline["root"]
    report = root / "report"
    with open(report / "comparison.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["section", "parameter", "metric", *MODELS]
    for model in MODELS:
        metrics = json.loads((root / "evaluation" / model / "metrics.json").read_text())
        for section in ("test", "fiducial"):
            for name, values in metrics[section]["parameters"].items():
                for key, value in values.items():
                    matches = [r for r in rows if (r["section"], r["parameter"], r["metric"])
                               == (section, name, key)]
                    assert len(matches) == 1 and float(matches[0][model]) == value
        parameter_row = next(r for r in rows if r["metric"] == "parameters")
        trained = load_trained(root / "models" / model)
        assert int(parameter_row[model]) == count_parameters(trained)
    summary = (report / "summary.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", summary)
    assert len(links) >= 4 + 2 * 4
    for link in links:
        assert (report / link).resolve().exists(), link
    for name in PARAMETER_NAMES:
        assert sum(line.startswith(f"| {name} | ") for line in summary.splitlines()) == 3


def test_report_names_a_folder_without_metrics(pipeline: dict, tmp_path: Path) -> None:
    empty = tmp_path / "not_an_evaluation"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="not_an_evaluation/metrics.json"):
        write_report(pipeline["config"], [pipeline["root"] / "evaluation" / "cnn", empty],
                     tmp_path / "report")


def _synthetic_predictions(splits: list[str], seed: int) -> Table:
    """A predictions table in the evaluate format (physical units) without a model."""
    rng = np.random.default_rng(seed)
    table = Table({"id": [f"{i:04d}" for i in range(len(splits))],
                   "set": ["fiducial" if s == "fiducial" else "latin_hypercube" for s in splits],
                   "split": splits})
    for name in PARAMETER_NAMES:
        table[f"{name}_true"] = rng.uniform(size=len(splits))
        table[f"{name}_mean"] = rng.uniform(size=len(splits))
        table[f"{name}_sigma"] = np.full(len(splits), 0.3)
    return table


def test_report_of_a_one_simulation_test_split(tmp_path: Path) -> None:
    """A tiny workflow may leave one test cosmology: undefined slopes show as '-', not NaN."""
    config = toy_config()
    splits = ["train"] * 5 + ["validation", "test"] + ["fiducial"] * 3
    folders = []
    for seed, model in enumerate(MODELS):
        folder = tmp_path / model
        metrics = write_evaluation(config, model, _synthetic_predictions(splits, seed), {},
                                   tmp_path / "no_model", folder)
        write_metrics(metrics, folder / "metrics.json")
        assert json.loads((folder / "metrics.json").read_text())["test"]["parameters"][
            "w0"]["slope"] is None
        folders.append(folder)
    write_report(config, folders, tmp_path / "report")
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "nan" not in summary.lower()
    assert sum(line.startswith("| w0 | ") and "| - ± - |" in line
               for line in summary.splitlines()) == 2
    assert "w0 = -1, wa = 0 sit within" in summary
    with open(tmp_path / "report" / "comparison.csv", newline="") as stream:
        rows = {(r["section"], r["parameter"], r["metric"]): r for r in csv.DictReader(stream)}
    assert rows[("test", "h", "slope")]["vit"] == ""
    assert float(rows[("test", "h", "rmse")]["vit"]) > 0
