"""Side-by-side report of the evaluated models: ``summary.md``, ``comparison.csv`` and the
comparison figures (both models on the same axes, under ``figures/``) in ``output_dir``.

``comparison.csv`` has one row per (section, parameter, metric) and one column per model;
section is ``test`` / ``validation`` / ``train`` (Latin-hypercube splits), ``fiducial`` or
``training`` (parameter = ``all``: parameter count, wall time, throughput, ...).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cosmo_sbi import PARAMETER_NAMES, plots
from cosmo_sbi.config import Config
from cosmo_sbi.cross_simulator import cross_markdown
from cosmo_sbi.dataset import SPLITS
from cosmo_sbi.io import atomic_path
from cosmo_sbi.markdown import cell, link, table
from cosmo_sbi.metrics import COVERAGE_LEVELS
from cosmo_sbi.outputs import (
    HISTORY_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    read_history,
    read_metrics,
    read_predictions,
)

SUMMARY_FILE = "summary.md"
COMPARISON_FILE = "comparison.csv"
TRAINING_FIELDS: tuple[str, ...] = (
    "parameters", "wall_time_s", "samples_per_second", "mfu", "training_flops_per_sample",
    "epochs_run", "best_epoch", "best_val_loss", "stopped_early", "device", "world_size",
    "train_samples", "validation_samples",
)
CENTRED_FRACTION = 0.05
"""Fiducial values this close to the prior centre (fraction of the width) are flagged."""
PRIOR_DOMINATED_SLOPE = 0.2
"""Below this test-split slope a parameter's predictions barely follow the truth."""


def load_evaluation(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """metrics.json of one evaluation folder, plus its ``directory``."""
    directory = Path(directory)
    metrics = read_metrics(directory / METRICS_FILE)
    metrics["directory"] = directory
    return metrics


def comparison_rows(evaluations: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows {section, parameter, metric, <model>: value, ...} covering every metric."""
    models = [evaluation["model"] for evaluation in evaluations]
    keys: dict[tuple[str, str, str], None] = {}
    for evaluation in evaluations:
        for section in (*SPLITS, "fiducial"):
            for parameter, values in evaluation.get(section, {}).get("parameters", {}).items():
                for metric in values:
                    keys[(section, parameter, metric)] = None
        for field in TRAINING_FIELDS:
            if field in evaluation.get("training", {}):
                keys[("training", "all", field)] = None
    rows = []
    for section, parameter, metric in keys:
        row: dict[str, Any] = {"section": section, "parameter": parameter, "metric": metric}
        for model, evaluation in zip(models, evaluations, strict=True):
            if section == "training":
                row[model] = evaluation["training"].get(metric, "")
            else:
                values = evaluation.get(section, {}).get("parameters", {}).get(parameter, {})
                row[model] = values.get(metric, "")
        rows.append(row)
    return rows


def _test_table(evaluations: Sequence[Mapping[str, Any]]) -> list[str]:
    coverage_keys = [f"coverage_{round(100 * level)}" for level in COVERAGE_LEVELS]
    header = ["parameter", "model", "slope", "R^2", "RMSE", "bias", "mean sigma", "pull std",
              *[f"cov {round(100 * level)}%" for level in COVERAGE_LEVELS], "note"]
    rows = []
    for name in PARAMETER_NAMES:
        for evaluation in evaluations:
            values = evaluation["test"]["parameters"][name]
            note = ("prior-dominated" if values["slope"] is not None
                    and values["slope"] + 2 * (values["slope_stderr"] or 0.0)
                    < PRIOR_DOMINATED_SLOPE else "")
            slope = f"{cell(values['slope'], 2)} ± {cell(values['slope_stderr'], 2)}"
            rows.append([name, evaluation["model"], slope, cell(values["r2"], 2),
                         cell(values["rmse"]), cell(values["bias"], 2),
                         cell(values["mean_sigma"]), cell(values["pull_std"], 2),
                         *[cell(values[key], 2) for key in coverage_keys], note])
    return table(header, rows)


def _fiducial_table(evaluations: Sequence[Mapping[str, Any]]) -> list[str]:
    header = ["parameter", "truth", *[f"{e['model']} mean ± std (bias)" for e in evaluations]]
    rows = []
    for name in PARAMETER_NAMES:
        cells = []
        for evaluation in evaluations:
            values = evaluation["fiducial"]["parameters"][name]
            cells.append(f"{values['mean']:.4g} ± {cell(values['std'], 2)} "
                         f"({values['bias']:+.2g})")
        truth = evaluations[0]["fiducial"]["parameters"][name]["truth"]
        rows.append([name, f"{truth:.4g}", *cells])
    return table(header, rows)


def _training_table(evaluations: Sequence[Mapping[str, Any]]) -> list[str]:
    header = ["", *[evaluation["model"] for evaluation in evaluations]]
    rows = [[field, *[cell(evaluation.get("training", {}).get(field)) for evaluation in
                      evaluations]] for field in TRAINING_FIELDS]
    return table(header, rows)


def _centred_parameters_note(config: Config) -> str:
    """Which fiducial values sit near the centre of the prior, where shrinkage looks unbiased."""
    ranges = config["design"]["latin_hypercube"]["ranges"]
    fiducial = config["design"]["fiducial"]["parameters"]
    centred = [f"{name} = {fiducial[name]:g}" for name in PARAMETER_NAMES
               if abs(fiducial[name] - sum(ranges[name]) / 2)
               <= CENTRED_FRACTION * (ranges[name][1] - ranges[name][0])]
    if not centred:
        return "No fiducial value sits near the centre of its prior range."
    return (f"{', '.join(centred)} sit within {CENTRED_FRACTION:.0%} of the prior width of the "
            "centre of their prior ranges, where a network that ignores the input and returns "
            "the prior centre is unbiased: a small bias there is no evidence of information; "
            "read it with the test-split slope above.")


def summary_markdown(config: Config, evaluations: Sequence[Mapping[str, Any]],
                     comparison_figures: Mapping[str, Path], output_dir: Path) -> str:
    """The text of summary.md."""
    models = ", ".join(evaluation["model"] for evaluation in evaluations)
    n_test = evaluations[0]["test"]["n"]
    n_fiducial = evaluations[0].get("fiducial", {}).get("n", 0)
    coverage_error = np.sqrt(0.68 * 0.32 / n_test)
    lines = [
        f"# cosmo_sbi: {models} compared",
        "",
        f"Latin hypercube of {config['design']['latin_hypercube']['n_simulations']} "
        f"cosmologies ({n_test} in the test split), {n_fiducial} fiducial seeds; "
        f"training loss `{config['training']['loss']}`, up to {config['training']['epochs']} "
        "epochs.",
        "",
        "## Latin-hypercube test split",
        "",
        "Slope of predicted on true (± its standard error): near 1 the network reads the "
        "parameter from the light cone; near 0 it predicts the prior centre whatever the "
        f"input (`prior-dominated`: slope + 2 s.e. < {PRIOR_DOMINATED_SLOPE}). R^2 is about the "
        "identity line (0 = as good as predicting the mean truth). Pull std: standard deviation "
        "of (true - mean) / sigma, 1 for calibrated sigmas. Coverage: fraction of truths "
        "inside the central Gaussian interval from the predicted sigma; with "
        f"{n_test} test cosmologies its standard error is about {coverage_error:.2f}."
        + (" The loss `mse` does not train the predicted sigma: ignore the coverage."
           if config["training"]["loss"] == "mse" else ""),
        "",
        *_test_table(evaluations),
        "",
        "## Fiducial seeds",
        "",
        "Scatter and bias of the predicted means over seeds at one cosmology. "
        + _centred_parameters_note(config),
        "",
        *(_fiducial_table(evaluations) if all("fiducial" in e for e in evaluations)
          else ["(no fiducial predictions)"]),
        "",
        "## Training",
        "",
        *_training_table(evaluations),
        "",
        "## Figures",
        "",
        *[f"- [{name}]({link(path, output_dir)})" for name, path in comparison_figures.items()],
        *cross_markdown([evaluation["directory"] for evaluation in evaluations]),
    ]
    for evaluation in evaluations:
        directory = Path(evaluation["directory"])
        lines += ["", f"### {evaluation['model']}", ""]
        lines += [f"- [{name}]({link(directory / file, output_dir)})"
                  for name, file in evaluation.get("figures", {}).items()]
        lines += [f"- [metrics]({link(directory / METRICS_FILE, output_dir)}), "
                  f"[predictions]({link(directory / PREDICTIONS_FILE, output_dir)})"]
    return "\n".join(lines) + "\n"


def write_report(config: Config, evaluation_dirs: Sequence[str | os.PathLike[str]],
                 output_dir: str | os.PathLike[str],
                 posterior_dirs: Sequence[str | os.PathLike[str]] = (),
                 fisher_path: str | os.PathLike[str] | None = None,
                 learning_curve_path: str | os.PathLike[str] | None = None) -> None:
    """Write summary.md, comparison.csv and the comparison figures to ``output_dir``; with
    ``posterior_dirs`` (and a Fisher forecast) also the posterior section
    (cosmo_sbi.report_posterior) and the networks' verdict (cosmo_sbi.verdict); with
    ``learning_curve_path`` (learning_curve.csv) the learning-curve section
    (cosmo_sbi.learning_curve)."""
    output_dir = Path(output_dir)
    evaluations = [load_evaluation(directory) for directory in evaluation_dirs]
    models = [evaluation["model"] for evaluation in evaluations]
    if len(set(models)) != len(models):
        raise ValueError(f"evaluation folders {list(map(str, evaluation_dirs))} repeat a model "
                         f"({models}); expected one folder per model")
    predictions = {e["model"]: read_predictions(e["directory"] / PREDICTIONS_FILE)
                   for e in evaluations}
    histories = {e["model"]: read_history(e["directory"] / HISTORY_FILE)
                 for e in evaluations if (e["directory"] / HISTORY_FILE).exists()}
    figures = plots.standard_figures(predictions, histories, output_dir / plots.FIGURES_DIR)

    rows = comparison_rows(evaluations)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["section", "parameter", "metric", *models],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(output_dir / COMPARISON_FILE) as temporary:
        temporary.write_text(buffer.getvalue())
    from cosmo_sbi.report_posterior import write_posterior_section

    posterior_lines = write_posterior_section(config, posterior_dirs, fisher_path, output_dir,
                                              output_dir / plots.FIGURES_DIR)
    from cosmo_sbi.verdict import write_verdict_section

    verdict_lines = write_verdict_section(
        config, posterior_dirs, {e["model"]: e["directory"] / PREDICTIONS_FILE
                                 for e in evaluations}, output_dir)
    text = summary_markdown(config, evaluations, figures, output_dir)
    if posterior_lines:
        text += "\n" + "\n".join(posterior_lines) + "\n"
    if verdict_lines:
        text += "\n" + "\n".join(verdict_lines) + "\n"
    if learning_curve_path is not None:
        from cosmo_sbi.learning_curve import learning_curve_markdown
        from cosmo_sbi.report_posterior import SIGNIFICANCE

        text += "\n" + "\n".join(learning_curve_markdown(learning_curve_path, output_dir,
                                                         SIGNIFICANCE)) + "\n"
    with atomic_path(output_dir / SUMMARY_FILE) as temporary:
        temporary.write_text(text)
