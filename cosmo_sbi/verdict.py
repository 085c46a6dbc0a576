"""The report's verdict: each network against the two-point baseline (issue 14).

Per parameter (and S8), for each network method (cnn, vit and combined, where their
posteriors exist) and for the Gaussian heads of cnn and vit: the test-split R^2 of the point
estimate (the NPE posterior mean; the head's predicted mean) beside the two-point NPE's,
their difference (method - two_point) with its paired bootstrap error (the same resamplings
of the same test simulations for both, cosmo_sbi.metrics.paired_bootstrap), the
median posterior standard deviation ("width") over the fiducial seeds and its ratio to the
two-point width, and a verdict: ``beats`` (difference > SIGNIFICANCE errors), ``falls
short`` (< -SIGNIFICANCE errors), else ``matches``.

The issue's targets as checks (``pass`` / ``fail``):

- R^2: cnn and vit (NPE and head) at least the two-point R^2 on R2_AT_LEAST and at most
  R2_TOLERANCE below it on R2_CLOSE;
- no shrinkage (every method): the scatter of the point estimates over the fiducial seeds
  within a factor SCATTER_FACTOR of the test RMSE; ``shrinkage`` below it: an insensitive
  network returns nearly the same estimate for every seed, which looks tight;
- combined: narrower posterior than the two-point one on TIGHTER.

Writes ``verdict.csv`` (VERDICT_COLUMNS: one row per parameter, method and estimate; empty
cells where undefined) and returns the markdown lines of summary.md.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosmo_sbi import markdown
from cosmo_sbi.config import Config
from cosmo_sbi.dataset import FIDUCIAL_SPLIT
from cosmo_sbi.io import atomic_path
from cosmo_sbi.metrics import finite_std, paired_bootstrap, parameter_arrays, r_squared, rmse
from cosmo_sbi.outputs import read_predictions
from cosmo_sbi.posterior import POSTERIOR_PARAMETERS, SAMPLES_FILE, read_samples, with_s8
from cosmo_sbi.posterior_config import NETWORK_METHODS
from cosmo_sbi.posterior_metrics import gaussian_head_samples
from cosmo_sbi.report_posterior import (
    SIGNIFICANCE,
    aligned_test_means,
    load_posterior,
)

VERDICT_FILE = "verdict.csv"
BASELINE = "two_point"
COMPARED: tuple[str, ...] = (*NETWORK_METHODS, "combined")
NPE, HEAD = "npe", "gaussian_head"
R2_AT_LEAST: tuple[str, ...] = ("Omega_m", "sigma_8", "w0")
R2_CLOSE: tuple[str, ...] = ("n_s", "h")
R2_TOLERANCE = 0.05
SCATTER_FACTOR = 1.5
TIGHTER: tuple[str, ...] = ("Omega_m", "sigma_8")
VERDICT_COLUMNS: tuple[str, ...] = (
    "parameter", "method", "estimate", "n_test", "r2", "r2_two_point", "r2_difference",
    "r2_difference_error", "verdict", "width", "width_two_point", "width_ratio", "test_rmse",
    "fiducial_scatter", "scatter_over_rmse", "check_r2", "check_scatter", "shrinkage",
    "check_tighter")


@dataclass(frozen=True)
class PointEstimates:
    """One estimator, columns POSTERIOR_PARAMETERS: test ids (N,), truths and estimates
    (N, 7) in the order of the ids; estimates at the fiducial seeds (F, 7); median posterior
    standard deviation over the fiducial seeds (7,), NaN without fiducial seeds; the file
    they come from (for error messages)."""

    source: str
    ids: np.ndarray
    truth: np.ndarray
    mean: np.ndarray
    fiducial_mean: np.ndarray
    width: np.ndarray


def _median_width(std: np.ndarray) -> np.ndarray:
    """Median over the fiducial seeds of the posterior standard deviations (F, 7) -> (7,)."""
    return np.median(std, axis=0) if len(std) else np.full(len(POSTERIOR_PARAMETERS), np.nan)


def npe_estimates(samples: Mapping[str, Mapping[str, Any]],
                  sources: Mapping[str, str]) -> dict[str, PointEstimates]:
    """Each method's posterior means from its samples.h5 (read_samples; ``sources``: method
    -> its path), by method."""
    ids, truth, means = aligned_test_means(samples)
    estimates = {}
    for method, data in samples.items():
        fiducial = data["split"] == FIDUCIAL_SPLIT
        estimates[method] = PointEstimates(sources[method], ids, truth, means[method],
                                           data["mean"][fiducial],
                                           _median_width(data["std"][fiducial]))
    return estimates


def head_estimates(predictions_path: str | os.PathLike[str], n_samples: int,
                   seed: int) -> PointEstimates:
    """A network's Gaussian head from its predictions.ecsv: the predicted means (S8 from the
    predicted Omega_m and sigma_8) and the width of samples of the predicted Gaussians at the
    fiducial seeds (cosmo_sbi.posterior_metrics.gaussian_head_samples, S8 per sample)."""
    table = read_predictions(predictions_path)
    ids = np.asarray(table["id"]).astype(str)[np.asarray(table["split"]) == "test"]
    order = np.argsort(ids, kind="stable")
    true, mean, _ = parameter_arrays(table, "test")
    fiducial_mean = parameter_arrays(table, FIDUCIAL_SPLIT)[1]
    samples, _ = gaussian_head_samples(predictions_path, FIDUCIAL_SPLIT, n_samples, seed)
    return PointEstimates(os.fspath(predictions_path), ids[order], with_s8(true)[order],
                          with_s8(mean)[order],
                          with_s8(fiducial_mean), _median_width(samples.std(axis=1)))


def r2_difference(truth: np.ndarray, estimate: np.ndarray, baseline: np.ndarray,
                  n_bootstrap: int, seed: int) -> tuple[float, float]:
    """R^2 of ``estimate`` minus R^2 of ``baseline`` (both (N,), of ``truth`` (N,)) and its
    paired bootstrap standard error (resamplings without spread of the truth dropped)."""
    difference = float(r_squared(truth, estimate) - r_squared(truth, baseline))
    boot = paired_bootstrap(truth, {"estimate": estimate, "baseline": baseline},
                            r_squared, n_bootstrap, seed)
    return difference, float(finite_std(boot["estimate"] - boot["baseline"]))


def verdict(difference: float | None, error: float | None) -> str | None:
    """``beats`` / ``matches`` / ``falls short`` for an R^2 difference and its error."""
    if difference is None or error is None:
        return None
    if difference > SIGNIFICANCE * error:
        return "beats"
    return "falls short" if difference < -SIGNIFICANCE * error else "matches"


def _statistics(estimates: PointEstimates) -> dict[str, np.ndarray]:
    """Test R^2 and RMSE, fiducial scatter and width, each (7,) (NaN where undefined)."""
    nan = np.full(len(POSTERIOR_PARAMETERS), np.nan)
    n, n_fiducial = len(estimates.truth), len(estimates.fiducial_mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"r2": r_squared(estimates.truth, estimates.mean) if n > 1 else nan,
                "test_rmse": rmse(estimates.truth, estimates.mean) if n else nan,
                "fiducial_scatter": (estimates.fiducial_mean.std(axis=0, ddof=1)
                                     if n_fiducial > 1 else nan),
                "width": estimates.width}


def _defined(value: Any) -> Any:
    """Python floats; None for NaN or infinity."""
    if isinstance(value, bool | str | None):
        return value
    value = float(value)
    return value if np.isfinite(value) else None


def _ratio(numerator: Any, denominator: Any) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def verdict_rows(estimates: Mapping[tuple[str, str], PointEstimates], n_bootstrap: int,
                 seed: int) -> list[dict[str, Any]]:
    """One row (VERDICT_COLUMNS) per parameter and (method, estimate) of ``estimates``; the
    comparison columns need the baseline (``two_point``, ``npe``)."""
    baseline = estimates.get((BASELINE, NPE))
    statistics = {key: _statistics(value) for key, value in estimates.items()}
    rows = []
    for index, name in enumerate(POSTERIOR_PARAMETERS):
        for (method, kind), estimate in estimates.items():
            row = dict.fromkeys(VERDICT_COLUMNS) | {
                "parameter": name, "method": method, "estimate": kind,
                "n_test": len(estimate.truth),
                **{key: _defined(values[index])
                   for key, values in statistics[(method, kind)].items()}}
            ratio = _ratio(row["fiducial_scatter"], row["test_rmse"])
            if ratio is not None:
                row |= {"scatter_over_rmse": ratio, "shrinkage": ratio < 1 / SCATTER_FACTOR,
                        "check_scatter": "pass" if 1 / SCATTER_FACTOR <= ratio
                        <= SCATTER_FACTOR else "fail"}
            if baseline is not None and method in COMPARED:
                if not np.array_equal(estimate.ids, baseline.ids):
                    raise ValueError(f"{estimate.source}: its test simulations differ from "
                                     f"those of {baseline.source}; expected the outputs of "
                                     "one dataset")
                difference, error = (r2_difference(
                    estimate.truth[:, index], estimate.mean[:, index],
                    baseline.mean[:, index], n_bootstrap, seed)
                    if len(estimate.truth) > 1 else (np.nan, np.nan))
                reference = statistics[(BASELINE, NPE)]
                row |= {"r2_two_point": _defined(reference["r2"][index]),
                        "r2_difference": _defined(difference),
                        "r2_difference_error": _defined(error),
                        "width_two_point": _defined(reference["width"][index])}
                row["verdict"] = verdict(row["r2_difference"], row["r2_difference_error"])
                row["width_ratio"] = _ratio(row["width"], row["width_two_point"])
                tolerance = (0.0 if name in R2_AT_LEAST else R2_TOLERANCE
                             if name in R2_CLOSE else None)
                if (method in NETWORK_METHODS and tolerance is not None
                        and row["r2_difference"] is not None):
                    row["check_r2"] = "pass" if row["r2_difference"] >= -tolerance else "fail"
                if (method, kind) == ("combined", NPE) and name in TIGHTER \
                        and row["width_ratio"] is not None:
                    row["check_tighter"] = "pass" if row["width_ratio"] < 1 else "fail"
            rows.append(row)
    return rows


def write_verdict_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """verdict.csv: VERDICT_COLUMNS, empty cells for None."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=VERDICT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if value is None else value for key, value in row.items()}
                     for row in rows)
    with atomic_path(path) as temporary:
        temporary.write_text(buffer.getvalue())


def _label(row: Mapping[str, Any]) -> str:
    return row["method"] + (" head" if row["estimate"] == HEAD else "")


def _comparison_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    header = ["parameter", "method", "R^2", "two-point R^2", "difference", "width",
              "two-point width", "ratio", "verdict"]
    cell = markdown.cell
    cells = []
    for row in rows:
        if row["method"] not in COMPARED:
            continue
        difference = (f"{row['r2_difference']:+.3f} ± {row['r2_difference_error']:.3f}"
                      if row["r2_difference_error"] is not None else "-")
        cells.append([row["parameter"], _label(row), cell(row["r2"], 3),
                      cell(row["r2_two_point"], 3), difference, cell(row["width"]),
                      cell(row["width_two_point"]), cell(row["width_ratio"], 2),
                      cell(row["verdict"])])
    return markdown.table(header, cells)


def _check_table(rows: Sequence[Mapping[str, Any]], check: str, parameters: Sequence[str],
                 cell: Callable[[Mapping[str, Any]], str]) -> list[str]:
    """Rows = (method, estimate) with a result of ``check``, columns ``parameters``."""
    keys = list(dict.fromkeys((row["method"], row["estimate"]) for row in rows
                              if row[check] is not None))
    if not keys:
        return ["(not defined: too few test simulations or fiducial seeds)"]
    by_key = {(row["method"], row["estimate"], row["parameter"]): row for row in rows}
    cells = [[_label({"method": method, "estimate": kind}),
              *[cell(by_key[(method, kind, name)]) if by_key[(method, kind, name)][check]
                else "-" for name in parameters]] for method, kind in keys]
    return markdown.table(["method", *parameters], cells)


def _tally(rows: Sequence[Mapping[str, Any]], check: str) -> str:
    results = [row[check] for row in rows if row[check] is not None]
    return f"{results.count('pass')} of {len(results)} pass"


def verdict_markdown(rows: Sequence[Mapping[str, Any]], n_bootstrap: int,
                     npe_training: str) -> list[str]:
    """The section "Networks vs the two-point baseline" of summary.md; ``npe_training``
    names what the NPEs were trained on (e.g. "217 cosmologies of the validation split")."""
    n_test = max((row["n_test"] for row in rows), default=0)
    tighter = [row for row in rows if row["check_tighter"] is not None]
    r2_parameters = (*R2_AT_LEAST, *R2_CLOSE)
    lines = [
        "## Networks vs the two-point baseline",
        "",
        f"Test-split R^2 ({n_test} cosmologies) of each method's NPE posterior mean "
        "(`head`: the network's own Gaussian head, its predicted mean) beside the two-point "
        f"NPE's (every NPE trained on {npe_training}; the learning-curve section, where "
        "present, gives the two-point NPE trained on the training split); difference = "
        "method - two-point ± its paired bootstrap error "
        f"({n_bootstrap} resamplings of the same test simulations for both); width: median "
        "posterior standard deviation over the fiducial seeds (head: of its predicted "
        "Gaussians) and its ratio to the two-point width. Verdict: `beats` when the "
        f"difference exceeds {SIGNIFICANCE:g} bootstrap errors, `falls short` below "
        f"-{SIGNIFICANCE:g}, else `matches`. Every number: [{VERDICT_FILE}]({VERDICT_FILE}).",
        "",
        *_comparison_table(rows),
        "",
        "### Targets (issue 14)",
        "",
        f"(a) R^2 at least the two-point R^2 on {', '.join(R2_AT_LEAST)}, at most "
        f"{R2_TOLERANCE:g} below it on {', '.join(R2_CLOSE)} "
        f"({' and '.join(NETWORK_METHODS)}): {_tally(rows, 'check_r2')}. Cells: R^2 vs "
        "two-point R^2.",
        "",
        *_check_table(rows, "check_r2", r2_parameters,
                      lambda row: f"{row['r2']:.3f} vs {row['r2_two_point']:.3f}: "
                                  f"{row['check_r2']}"),
        "",
        "(b) No shrinkage: scatter of the point estimates over the fiducial seeds / test "
        f"RMSE within a factor {SCATTER_FACTOR:g} (`shrinkage` below 1/{SCATTER_FACTOR:g}: "
        "an insensitive estimate that looks tight; a prior-dominated parameter shows it for "
        f"every method): {_tally(rows, 'check_scatter')}.",
        "",
        *_check_table(rows, "check_scatter", POSTERIOR_PARAMETERS,
                      lambda row: f"{row['scatter_over_rmse']:.2f}: {row['check_scatter']}"
                                  + (" (shrinkage)" if row["shrinkage"] else "")),
        "",
        f"(c) combined narrower than two-point on {', '.join(TIGHTER)}: "
        f"{_tally(tighter, 'check_tighter')}.",
        "",
        *([f"- {row['parameter']}: width {row['width']:.3g} vs {row['width_two_point']:.3g} "
           f"(ratio {row['width_ratio']:.2f}): {row['check_tighter']}" for row in tighter]
          or ["- (no combined posterior, or no widths)"]),
    ]
    return lines


def write_verdict_section(config: Config, posterior_dirs: Sequence[str | os.PathLike[str]],
                          predictions: Mapping[str, str | os.PathLike[str]],
                          output_dir: Path) -> list[str]:
    """Write verdict.csv to ``output_dir``; return the markdown lines ([] without posteriors).
    ``predictions``: network -> its predictions.ecsv (the Gaussian heads of cnn and vit)."""
    if not posterior_dirs:
        return []
    section = config["posterior"]
    loaded = {(posterior := load_posterior(directory))["method"]: (posterior, Path(directory))
              for directory in posterior_dirs}
    paths = {method: directory / SAMPLES_FILE for method, (_, directory) in loaded.items()}
    npe = npe_estimates({method: read_samples(path) for method, path in paths.items()},
                        {method: os.fspath(path) for method, path in paths.items()})
    estimates: dict[tuple[str, str], PointEstimates] = {}
    for method in (BASELINE, *COMPARED):
        if method in npe:
            estimates[(method, NPE)] = npe[method]
        if method in NETWORK_METHODS and method in predictions and method in npe:
            estimates[(method, HEAD)] = head_estimates(predictions[method],
                                                       section["n_samples"], section["seed"])
    rows = verdict_rows(estimates, section["bootstrap"], section["seed"])
    write_verdict_csv(rows, output_dir / VERDICT_FILE)
    if (BASELINE, NPE) not in estimates or not any(m in npe for m in COMPARED):
        return ["## Networks vs the two-point baseline", "",
                "(needs the two-point posterior and a network's: nothing to compare)"]
    baseline_npe = loaded[BASELINE][0]["npe"]
    return verdict_markdown(rows, section["bootstrap"],
                            f"{baseline_npe['simulations']} cosmologies of the "
                            f"{' + '.join(section['train_splits'])} split")
