"""Learning curve (issue 9, item 7): are the training simulations enough?

Each network of ``training.models`` and the two-point NPE are trained on nested fractions
of the Latin-hypercube TRAINING split (``learning_curve.fractions``; 1.0, the full split,
is always a point) and scored on the test split: R^2 and RMSE of the point estimate (the
network's predicted mean, the NPE's posterior mean) and the median predicted or posterior
standard deviation. If R^2 still rises from the second-largest to the largest fraction by
more than its bootstrap error, more simulations would still help.

Subsets (:func:`nested_subset`): the N training-split rows (dataset order) are ordered by
one permutation seeded with ``training.seed``; fraction f takes the first ceil(f N), so
each subset contains every smaller one, and the networks and the two-point NPE see the
same simulations. The validation split (the networks' early stopping) and the test split
are unchanged; the input standardisation stays the dataset's (scalar mean and standard
deviation of the full training split). Fraction 1.0 of a network is its main training
(results/models, results/evaluation): no retraining. The two-point NPE of the curve trains
on the training split (two-point summaries are not learned, so the networks' training split
does not make them over-confident), unlike the main posterior stage, which trains every
method on posterior.train_splits; so its 1.0 point is a job of its own.

Files under ``results/learning_curve/``: ``{model}/f{fraction}/`` (the training outputs of
cosmo_sbi.train, evaluation in ``evaluation/``), ``two_point/f{fraction}/samples.h5``
(cosmo_sbi.posterior's format), and the collected ``learning_curve.csv`` (one row per
method, fraction and parameter, S8 included) with ``learning_curve.png``.

No torch at import (the config check runs in every Snakemake parse; the NPE part imports
cosmo_sbi.posterior when called).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosmo_sbi import PARAMETER_NAMES, markdown
from cosmo_sbi.config import Config, ConfigError

TABLE_FILE = "learning_curve.csv"
FIGURE_FILE = "learning_curve.png"
TWO_POINT = "two_point"
COLUMNS: tuple[str, ...] = ("method", "fraction", "n_train", "parameter", "r2", "r2_err",
                            "rmse", "sigma", "r2_gain", "r2_gain_err")
"""learning_curve.csv: ``r2_err`` the bootstrap error of R^2 (test simulations resampled);
``r2_gain`` R^2 minus that of the method's next smaller fraction, with its paired bootstrap
error ``r2_gain_err`` (empty for the smallest); ``sigma`` the median over the test split of
the predicted (network) or posterior (NPE) standard deviation (empty for a network's S8)."""
CURVE_PARAMETERS: tuple[str, ...] = (*PARAMETER_NAMES, "S8")
R2_FLOOR = -1.0
"""Lower edge of the figure's R^2 axis."""


# ---------------------------------------------------------------- fractions and subsets

def fraction_label(fraction: float) -> str:
    """The {fraction} of file names: 0.25 -> '0.25', 1.0 -> '1'."""
    return f"{fraction:g}"


def curve_fractions(config: Config) -> list[float]:
    """``learning_curve.fractions`` with 1.0 (the main trainings) added; [] when off."""
    fractions = list(config["learning_curve"]["fractions"])
    if not fractions:
        return []
    return fractions if fractions[-1] == 1.0 else [*fractions, 1.0]


def subset_size(n: int, fraction: float) -> int:
    """ceil(fraction n), with fraction n rounded to 1e-9 first (0.3 x 10 gives 3, not 4)."""
    return math.ceil(round(fraction * n, 9))


def nested_subset(n: int, fraction: float, seed: int) -> np.ndarray:
    """Indices (subset_size(n, fraction),) int64, ascending, into a split of ``n`` rows:
    the first ceil(fraction n) of one permutation seeded with ``seed``, so the subset of a
    smaller fraction lies inside that of a larger one (same n and seed)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction {fraction}: expected 0 < fraction <= 1")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:subset_size(n, fraction)]).astype(np.int64)


def subset_rows(rows: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The learning-curve subset of a split's row indices ``rows`` (all of them for 1.0)."""
    rows = np.asarray(rows)
    return rows if fraction >= 1.0 else rows[nested_subset(len(rows), fraction, seed)]


def check_learning_curve_config(config: Config) -> Config:
    """Checks of ``learning_curve:`` before any job (ConfigError naming the field): the
    fractions ascending, no ensembles, and the smallest subset large enough for a network
    (>= 1 simulation) and for the two-point NPE (>= posterior.min_simulations, at least 2:
    one to train, one for its early stopping). Returns ``config``."""
    fractions = list(config["learning_curve"]["fractions"])
    if not fractions:
        return config
    if fractions != sorted(set(fractions)):
        raise ConfigError(f"learning_curve.fractions: {fractions}; expected distinct "
                          "fractions in ascending order, e.g. [0.25, 0.5, 1.0]")
    if config["training"]["ensemble_seeds"]:
        raise ConfigError("learning_curve.fractions: not supported with "
                          "training.ensemble_seeds (one network per fraction would be "
                          "compared with an ensemble at 1.0); set one or the other to []")
    from cosmo_sbi.posterior_config import split_simulations

    n_train = split_simulations(config, ["train"])
    smallest = subset_size(n_train, fractions[0])
    needed = {"a network": 1, "the two-point NPE": config["posterior"]["min_simulations"]}
    for what, minimum in needed.items():
        if smallest < minimum:
            raise ConfigError(
                f"learning_curve.fractions: the smallest fraction {fractions[0]} of the "
                f"{n_train} training-split simulations leaves {smallest}; {what} needs at "
                f"least {minimum} (posterior.min_simulations for the NPE): raise the "
                "fraction or design.latin_hypercube.n_simulations")
    return config


# ---------------------------------------------------------------- the two-point NPE

def two_point_npe(config: Config, summaries_path: str | os.PathLike[str], fraction: float,
                  output_dir: str | os.PathLike[str]) -> Path:
    """``cosmo-sbi learning-curve-npe``: the NPE of the two-point summaries (posterior.*
    settings) trained on the ``fraction`` subset of the training split; writes and returns
    ``output_dir/samples.h5`` (test and fiducial rows, cosmo_sbi.posterior's format)."""
    import torch

    from cosmo_sbi.posterior import SAMPLES_FILE, fit_and_sample, npe_record, write_samples
    from cosmo_sbi.summary_table import read_summary_table

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    table = read_summary_table(summaries_path)
    seed = config["training"]["seed"]
    rows = subset_rows(np.flatnonzero(table.rows("train")), fraction, seed)
    minimum = max(2, config["posterior"]["min_simulations"])
    if len(rows) < minimum:
        raise ValueError(f"learning_curve.fractions: {fraction} of the training split of "
                         f"{summaries_path} is {len(rows)} simulations; the NPE needs at "
                         f"least {minimum} (posterior.min_simulations)")
    train = np.zeros(len(table.ids), dtype=bool)
    train[rows] = True
    result = fit_and_sample(config, table, train)
    settings = {**npe_record(config), "train_splits": ["train"], "fraction": fraction,
                "subset_seed": seed}
    path = Path(output_dir) / SAMPLES_FILE
    write_samples(path, result, TWO_POINT, settings)
    return path


# ---------------------------------------------------------------- collecting the curve

@dataclass
class CurvePoint:
    """Test-split point estimates of one method at one fraction: ``true``, ``mean`` (N, 7)
    and ``sigma`` (N, 7) (NaN where unknown) in CURVE_PARAMETERS order, ``ids`` (N,)."""

    method: str
    fraction: float
    n_train: int
    ids: np.ndarray
    true: np.ndarray
    mean: np.ndarray
    sigma: np.ndarray


def network_point(model: str, fraction: float,
                  evaluation_dir: str | os.PathLike[str]) -> CurvePoint:
    """A network's point from its evaluation folder (predictions.ecsv; n_train from the
    training summary in metrics.json). S8 of the predicted means; its sigma unknown."""
    from cosmo_sbi.metrics import parameter_arrays
    from cosmo_sbi.outputs import METRICS_FILE, PREDICTIONS_FILE, read_metrics, read_predictions
    from cosmo_sbi.posterior import with_s8

    folder = Path(evaluation_dir)
    table = read_predictions(folder / PREDICTIONS_FILE)
    true, mean, sigma = parameter_arrays(table, "test")
    n_train = read_metrics(folder / METRICS_FILE).get("training", {}).get("train_samples")
    if n_train is None:
        raise ValueError(f"{folder / METRICS_FILE}: no training.train_samples; expected the "
                         "metrics of `cosmo-sbi evaluate` on a trained network")
    sigma = np.concatenate([sigma, np.full((len(sigma), 1), np.nan)], axis=1)
    ids = np.asarray(table["id"])[np.asarray(table["split"]) == "test"].astype(str)
    return CurvePoint(model, fraction, int(n_train), ids, with_s8(true), with_s8(mean), sigma)


def npe_point(fraction: float, folder: str | os.PathLike[str]) -> CurvePoint:
    """The two-point NPE's point from its samples.h5 (posterior mean and standard deviation)."""
    from cosmo_sbi.posterior import SAMPLES_FILE, read_samples

    data = read_samples(Path(folder) / SAMPLES_FILE)
    test = data["split"] == "test"
    n_train = int(data["attrs"]["training"]["simulations"])
    return CurvePoint(TWO_POINT, fraction, n_train, data["ids"][test], data["theta"][test],
                      data["mean"][test], data["std"][test])


def curve_rows(points: Sequence[CurvePoint], n_bootstrap: int, seed: int) -> list[dict[str, Any]]:
    """Rows of learning_curve.csv (COLUMNS), by method then fraction then parameter. Every
    point is resampled with the same test-simulation indices, so the gains are paired."""
    from cosmo_sbi.metrics import finite_std, paired_bootstrap, r_squared, rmse

    if not points:
        return []
    reference = points[0].ids
    for point in points:
        if not np.array_equal(point.ids, reference):
            raise ValueError(f"{point.method} at fraction {point.fraction}: its test "
                             "simulations differ from the others'; expected one dataset")
    n = len(reference)
    rows = []
    methods = list(dict.fromkeys(point.method for point in points))
    for method in methods:
        curve = sorted((p for p in points if p.method == method), key=lambda p: p.fraction)
        previous = None
        for point in curve:
            r2 = r_squared(point.true, point.mean)
            boot = paired_bootstrap(point.true, {method: point.mean}, r_squared, n_bootstrap,
                                    seed)[method]  # the same seed: the same resamplings
            error = finite_std(boot)
            gain = gain_error = None
            if previous is not None:
                gain = r2 - r_squared(previous[0].true, previous[0].mean)
                gain_error = finite_std(boot - previous[1])
            sigma = np.median(point.sigma, axis=0) if n else np.full(len(CURVE_PARAMETERS),
                                                                     np.nan)
            errors = rmse(point.true, point.mean)
            for index, name in enumerate(CURVE_PARAMETERS):
                rows.append({
                    "method": method, "fraction": point.fraction, "n_train": point.n_train,
                    "parameter": name, "r2": _value(r2[index]), "r2_err": _value(error[index]),
                    "rmse": _value(errors[index]), "sigma": _value(sigma[index]),
                    "r2_gain": None if gain is None else _value(gain[index]),
                    "r2_gain_err": None if gain_error is None else _value(gain_error[index])})
            previous = (point, boot)
    return rows


def _value(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def write_table(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> None:
    """learning_curve.csv (COLUMNS; empty cells for unknown values), atomically."""
    from cosmo_sbi.io import atomic_path

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if row[key] is None else row[key] for key in COLUMNS}
                     for row in rows)
    with atomic_path(path) as temporary:
        temporary.write_text(buffer.getvalue())


def read_table(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """learning_curve.csv as rows: numbers as float (n_train int), empty cells as None."""
    path = Path(path)
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    if not rows or list(rows[0]) != list(COLUMNS):
        raise ValueError(f"{path}: expected a learning-curve table with columns {COLUMNS}")
    numbers = [key for key in COLUMNS if key not in ("method", "parameter")]
    for row in rows:
        for key in numbers:
            row[key] = None if row[key] == "" else float(row[key])
        row["n_train"] = int(row["n_train"])
    return rows


def curve_figure(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Test R^2 (± bootstrap error) against the training simulations (log axis), one panel
    per parameter (S8 included), one line per method in the posterior figures' colours;
    R^2 below R2_FLOOR is off the axis (worse than no information)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    from cosmo_sbi.plots import save_figure
    from cosmo_sbi.posterior_plots import METHOD_COLOURS

    figure, axes = plt.subplots(2, 4, figsize=(14, 6.5), layout="constrained")
    figure.suptitle(f"Learning curve: test-split R^2 against training simulations "
                    f"(R^2 < {R2_FLOOR:g} off the axis)")
    methods = list(dict.fromkeys(row["method"] for row in rows))
    sizes = sorted({row["n_train"] for row in rows})
    for axis, name in zip(axes.ravel(), CURVE_PARAMETERS, strict=False):
        for method in methods:
            line = sorted((row for row in rows
                           if row["method"] == method and row["parameter"] == name),
                          key=lambda row: row["fraction"])
            y = [np.nan if row["r2"] is None else row["r2"] for row in line]
            error = [0.0 if row["r2_err"] is None else row["r2_err"] for row in line]
            axis.errorbar([row["n_train"] for row in line], y, yerr=error, marker="o",
                          capsize=3, label=method, color=METHOD_COLOURS.get(method, "k"))
        axis.set_xscale("log")
        axis.set_xticks(sizes)
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_ylim(R2_FLOOR, 1.05)
        axis.axhline(0.0, color="0.6", lw=0.8)
        axis.set_title(name)
        axis.set_xlabel("training simulations")
        axis.set_ylabel("test R^2")
    axes.ravel()[-1].axis("off")
    axes.ravel()[0].legend()
    return save_figure(figure, Path(path))


def parse_points(entries: Sequence[str]) -> list[tuple[str, float, Path]]:
    """``METHOD:FRACTION=FOLDER`` entries -> (method, fraction, folder); ValueError naming
    the entry otherwise."""
    points = []
    for entry in entries:
        head, separator, folder = entry.partition("=")
        method, colon, fraction = head.partition(":")
        try:
            value = float(fraction)
        except ValueError:
            value = math.nan
        if not (separator and colon and folder and 0.0 < value <= 1.0):
            raise ValueError(f"--point {entry!r}: expected METHOD:FRACTION=FOLDER with "
                             "0 < FRACTION <= 1, e.g. cnn:0.5=results/learning_curve/cnn/"
                             "f0.5/evaluation")
        points.append((method, value, Path(folder)))
    return points


def collect(config: Config, entries: Sequence[str], output_dir: str | os.PathLike[str]) -> Path:
    """``cosmo-sbi learning-curve``: read every point (networks: evaluation folders; two_point:
    NPE folders), write learning_curve.csv and learning_curve.png; return the table's path."""
    points = [npe_point(fraction, folder) if method == TWO_POINT
              else network_point(method, fraction, folder)
              for method, fraction, folder in parse_points(entries)]
    section = config["posterior"]
    rows = curve_rows(points, section["bootstrap"], section["seed"])
    output_dir = Path(output_dir)
    write_table(rows, output_dir / TABLE_FILE)
    curve_figure(rows, output_dir / FIGURE_FILE)
    return output_dir / TABLE_FILE


# ---------------------------------------------------------------- the report's section

def learning_curve_markdown(table_path: str | os.PathLike[str], output_dir: Path,
                            significance: float) -> list[str]:
    """The report's section: test R^2 per method and training-set size, the figure, and
    per method whether R^2 still rises from the second-largest to the largest fraction by
    more than ``significance`` times its paired bootstrap error."""
    table_path = Path(table_path)
    rows = read_table(table_path)
    methods = list(dict.fromkeys(row["method"] for row in rows))
    fractions = sorted({row["fraction"] for row in rows})
    header = ["parameter", "method", *[f"R^2 at {fraction:g}" for fraction in fractions],
              "sigma at 1"]
    lines = ["## Learning curve", "",
             "Each method trained on nested fractions of the training split (the same "
             "simulations for every method), scored on the test split: R^2 of the point "
             "estimate (network mean, two_point posterior mean) ± bootstrap error, the "
             "number of training simulations in brackets; sigma: median predicted (network) "
             "or posterior (NPE) standard deviation with the whole training split.", ""]
    curves = {(method, name): sorted((row for row in rows if row["method"] == method
                                      and row["parameter"] == name),
                                     key=lambda row: row["fraction"])
              for method in methods for name in CURVE_PARAMETERS}
    cells = []
    for name in CURVE_PARAMETERS:
        for method in methods:
            points = {row["fraction"]: row for row in curves[(method, name)]}
            cells.append([name, method, *[
                f"{_number(row['r2'])} ± {_number(row['r2_err'])} ({row['n_train']})"
                if (row := points.get(fraction)) else "-" for fraction in fractions],
                _number(curves[(method, name)][-1]["sigma"])])
    lines += markdown.table(header, cells)
    lines += ["", "Figure: [learning curve]"
              f"({markdown.link(table_path.parent / FIGURE_FILE, output_dir)}); table: "
              f"[{TABLE_FILE}]({markdown.link(table_path, output_dir)}).",
              "", "Does the test R^2 still rise from the second-largest to the largest "
              f"training set by more than {significance:g} times its paired bootstrap "
              "error?", ""]
    for method in methods:
        lines.append(_gain_sentence(method, {name: curves[(method, name)]
                                             for name in CURVE_PARAMETERS}, significance))
    return lines + [""]


def _gain_sentence(method: str, curves: Mapping[str, Sequence[Mapping[str, Any]]],
                   significance: float) -> str:
    """One line: the parameters whose R^2 gain at the largest fraction exceeds
    ``significance`` errors."""
    sizes = [row["n_train"] for row in curves[CURVE_PARAMETERS[0]]]
    if len(sizes) < 2:
        return f"- **{method}**: one training-set size only: no gain to measure."
    rising, flat, undefined = [], [], []
    for name in CURVE_PARAMETERS:
        row = curves[name][-1]
        gain, error = row["r2_gain"], row["r2_gain_err"]
        if gain is None or error is None:
            undefined.append(name)
        elif gain > significance * error:
            rising.append(f"{name} ({gain:+.2g} ± {error:.2g})")
        else:
            flat.append(f"{name} ({gain:+.2g} ± {error:.2g})")
    parts = []
    if rising:
        parts.append(f"yes for {', '.join(rising)}: more simulations would still help there")
    if flat:
        parts.append(f"{'not' if rising else 'no'} for {', '.join(flat)} (flat within the "
                     "errors)")
    if undefined:
        parts.append(f"undefined for {', '.join(undefined)} (R^2 or its error needs test "
                     "simulations with different truths)")
    return f"- **{method}** ({sizes[-2]} -> {sizes[-1]} simulations): " + "; ".join(parts) + "."


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"
