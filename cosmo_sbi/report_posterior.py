"""The posterior section of the report: per parameter (and S8) one row per method (NPE on
cnn, vit, two_point, combined) and the Fisher bound, with the posterior sigma at the
fiducial cosmology, its ratio to the two-point posterior and to the Fisher bound, R^2 and
slope of the posterior mean on the test split, TARP and coverage; one sentence per
parameter naming the method with the smallest test-split error of the posterior mean and
whether its lead exceeds the bootstrap error (paired resampling of the test simulations);
the networks' Gaussian heads against their NPE; an overlaid corner plot at one fiducial seed.

Writes ``posterior_comparison.csv`` (one row per parameter and method) and the corner plot;
returns the markdown lines for summary.md.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cosmo_sbi import markdown
from cosmo_sbi.config import Config
from cosmo_sbi.dataset import FIDUCIAL_SPLIT, prior_bounds
from cosmo_sbi.io import atomic_path
from cosmo_sbi.metrics import paired_bootstrap, rmse
from cosmo_sbi.posterior import POSTERIOR_PARAMETERS, SAMPLES_FILE, read_samples
from cosmo_sbi.posterior_metrics import METRICS_FILE

POSTERIOR_TABLE_FILE = "posterior_comparison.csv"
CORNER_FILE = "corner_fiducial.png"
FISHER_ROW = "Fisher bound"
SIGNIFICANCE = 2.0
"""A method's lead counts when it exceeds this many bootstrap standard errors."""
COLUMNS: tuple[str, ...] = ("sigma_fiducial", "ratio_to_two_point", "ratio_to_fisher", "r2",
                            "slope", "tarp_atc", "tarp_atc_error", "tarp_verdict",
                            "coverage_68", "coverage_95", "test_rmse")


def load_posterior(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """metrics.json of one posterior folder plus its ``directory``."""
    directory = Path(directory)
    path = directory / METRICS_FILE
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{path}: missing; expected a posterior folder written by "
                                "`cosmo-sbi posterior`") from error
    metrics["directory"] = directory
    return metrics


def load_fisher(path: str | os.PathLike[str] | None) -> dict[str, float] | None:
    """Marginalised Fisher sigmas (with the prior) by parameter from fisher.json, or None."""
    if path is None or not Path(path).exists():
        return None
    fisher = json.loads(Path(path).read_text())
    if "sigma" not in fisher:
        raise ValueError(f"{path}: expected the key 'sigma' (parameter -> marginalised sigma)")
    return {name: float(value) for name, value in fisher["sigma"].items()}


def method_rows(posteriors: Sequence[Mapping[str, Any]],
                fisher: Mapping[str, float] | None) -> dict[str, dict[str, dict[str, Any]]]:
    """parameter -> row label -> {column: value or None} (COLUMNS)."""
    sigma_of = {p["method"]: p.get(FIDUCIAL_SPLIT, {}).get("parameters", {}) for p in posteriors}
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for name in POSTERIOR_PARAMETERS:
        reference = sigma_of.get("two_point", {}).get(name, {}).get("sigma")
        bound = (fisher or {}).get(name)
        rows: dict[str, dict[str, Any]] = {}
        for posterior in posteriors:
            sigma = sigma_of[posterior["method"]].get(name, {}).get("sigma")
            test = posterior.get("test", {})
            values = test.get("parameters", {}).get(name, {})
            tarp = test.get("tarp", {})
            rows[posterior["method"]] = {
                "sigma_fiducial": sigma,
                "ratio_to_two_point": sigma / reference if sigma and reference else None,
                "ratio_to_fisher": sigma / bound if sigma and bound else None,
                "r2": values.get("r2"), "slope": values.get("slope"),
                "tarp_atc": tarp.get("atc"), "tarp_atc_error": tarp.get("atc_error"),
                "tarp_verdict": tarp.get("verdict"),
                "coverage_68": values.get("coverage_68"),
                "coverage_95": values.get("coverage_95"), "test_rmse": values.get("rmse")}
        if bound is not None:
            rows[FISHER_ROW] = {key: None for key in COLUMNS} | {
                "sigma_fiducial": bound, "ratio_to_fisher": 1.0,
                "ratio_to_two_point": bound / reference if reference else None}
        table[name] = rows
    return table


def aligned_test_means(samples: Mapping[str, Mapping[str, Any]]
                       ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Ids (N,), truths (N, 7) and each method's posterior means (N, 7) on the test split,
    rows in the order of the ids; ValueError if the methods' test simulations differ (a
    paired comparison needs the same simulations)."""
    truth, means, ids = None, {}, None
    for method, data in samples.items():
        test = data["split"] == "test"
        order = np.argsort(data["ids"][test], kind="stable")
        if ids is None:
            ids, truth = data["ids"][test][order], data["theta"][test][order]
        elif not np.array_equal(data["ids"][test][order], ids):
            raise ValueError(f"posterior of {method!r}: its test simulations differ from "
                             f"those of {next(iter(samples))!r}; expected the posteriors of "
                             "one dataset")
        means[method] = data["mean"][test][order]
    return ids, truth, means


def verdict_sentences(samples: Mapping[str, Mapping[str, Any]], n_bootstrap: int,
                      seed: int) -> list[str]:
    """One sentence per parameter: which method has the smallest test RMSE of the posterior
    mean, and whether its lead over the runner-up exceeds SIGNIFICANCE bootstrap errors."""
    if len(samples) < 2:
        return ["(one method: nothing to compare)"]
    _, truth, means = aligned_test_means(samples)
    if len(truth) < 2:
        return ["(fewer than 2 test simulations: no comparison)"]
    sentences = []
    for index, name in enumerate(POSTERIOR_PARAMETERS):
        columns = {method: mean[:, index] for method, mean in means.items()}
        error_of = {method: float(rmse(truth[:, index], values))
                    for method, values in columns.items()}
        ranked = sorted(error_of, key=error_of.get)
        best, second = ranked[0], ranked[1]
        boot = paired_bootstrap(truth[:, index], {m: columns[m] for m in (best, second)}, rmse,
                                n_bootstrap, seed)
        difference = error_of[second] - error_of[best]
        error = float(np.std(boot[second] - boot[best], ddof=1))
        significant = difference > SIGNIFICANCE * error
        sentences.append(
            f"- **{name}**: {best} wins (test RMSE of the posterior mean {error_of[best]:.3g} "
            f"against {error_of[second]:.3g} for {second}); the difference {difference:.2g} ± "
            f"{error:.2g} {'exceeds' if significant else 'does not exceed'} "
            f"{SIGNIFICANCE:g} times its bootstrap error"
            + ("." if significant else ": not a significant win."))
    return sentences


def _markdown_table(table: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    header = ["parameter", "method", "sigma (fiducial)", "/ two-point", "/ Fisher", "R^2",
              "slope", "TARP ATC", "TARP", "cov 68%", "cov 95%"]
    cell = markdown.cell
    cells = []
    for name, rows in table.items():
        for label, row in rows.items():
            atc = (f"{row['tarp_atc']:+.3f} ± {row['tarp_atc_error']:.3f}"
                   if row["tarp_atc"] is not None else "-")
            cells.append([name, label, cell(row["sigma_fiducial"]),
                          cell(row["ratio_to_two_point"], 2), cell(row["ratio_to_fisher"], 2),
                          cell(row["r2"], 2), cell(row["slope"], 2), atc,
                          cell(row["tarp_verdict"]), cell(row["coverage_68"], 2),
                          cell(row["coverage_95"], 2)])
    return markdown.table(header, cells)


def _heads_table(posteriors: Sequence[Mapping[str, Any]]) -> list[str]:
    """NPE against the network's own Gaussian heads: TARP and mean coverage."""
    header = ["method", "posterior", "TARP ATC", "TARP", "mean cov 68%", "mean cov 95%",
              "SBC flagged"]
    cells = []
    for posterior in posteriors:
        if "gaussian_heads" not in posterior or "test" not in posterior:
            continue
        for label, test in (("NPE", posterior["test"]),
                            ("Gaussian heads", posterior["gaussian_heads"]["test"])):
            values = test["parameters"].values()
            coverage = [np.mean([v[f"coverage_{level}"] for v in values]) for level in (68, 95)]
            flagged = [name for name, v in test["parameters"].items() if v["sbc_flagged"]]
            cells.append([posterior["method"], label,
                          f"{test['tarp']['atc']:+.3f} ± {test['tarp']['atc_error']:.3f}",
                          test["tarp"]["verdict"], f"{coverage[0]:.2f}", f"{coverage[1]:.2f}",
                          ", ".join(flagged) or "none"])
    return markdown.table(header, cells) if cells else []


def corner_plot(config: Config, samples: Mapping[str, Mapping[str, Any]],
                path: Path) -> Path | None:
    """Every method's posterior at fiducial seed ``posterior.corner_seed`` (or the last)."""
    from cosmo_sbi.posterior_plots import corner_figure

    fiducial = {m: np.flatnonzero(d["split"] == FIDUCIAL_SPLIT) for m, d in samples.items()}
    if not samples or min(len(rows) for rows in fiducial.values()) == 0:
        return None
    seed = min(config["posterior"]["corner_seed"], *(len(r) - 1 for r in fiducial.values()))
    draws = {m: d["samples"][fiducial[m][seed]].astype(np.float64) for m, d in samples.items()}
    first = next(iter(samples))
    truth = samples[first]["theta"][fiducial[first][seed]]
    sim_id = samples[first]["ids"][fiducial[first][seed]]
    return corner_figure(draws, truth, prior_bounds(config), path,
                         f"Posteriors at fiducial seed {sim_id} (prior box as axis range)")


def write_posterior_section(config: Config, posterior_dirs: Sequence[str | os.PathLike[str]],
                            fisher_path: str | os.PathLike[str] | None,
                            output_dir: Path, figures_dir: Path) -> list[str]:
    """Write posterior_comparison.csv and the corner plot; return the markdown lines."""
    if not posterior_dirs:
        return []
    posteriors = [load_posterior(directory) for directory in posterior_dirs]
    samples = {p["method"]: read_samples(p["directory"] / SAMPLES_FILE) for p in posteriors}
    fisher = load_fisher(fisher_path)
    table = method_rows(posteriors, fisher)

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["parameter", "method", *COLUMNS],
                            lineterminator="\n")
    writer.writeheader()
    for name, rows in table.items():
        for label, row in rows.items():
            writer.writerow({"parameter": name, "method": label,
                             **{k: "" if v is None else v for k, v in row.items()}})
    with atomic_path(output_dir / POSTERIOR_TABLE_FILE) as temporary:
        temporary.write_text(buffer.getvalue())

    corner = corner_plot(config, samples, figures_dir / CORNER_FILE)
    section = config["posterior"]
    splits = ", ".join(section["train_splits"])
    lines = [
        "## Posteriors (sbi NPE, the same settings for every method)",
        "",
        f"A normalising flow ({section['density_estimator']}) per method, trained on the "
        f"{splits} split ({posteriors[0].get('npe', {}).get('simulations', '?')} cosmologies, "
        "never the networks' training split), the Latin-hypercube box as prior. sigma: "
        "median posterior standard deviation over the fiducial seeds; ratios < 1 are "
        "tighter than the two-point posterior or the Fisher bound. R^2, slope and coverage "
        "(central credible intervals): test split. TARP (joint over the six parameters): "
        f"ATC ± bootstrap error; `pass` when |ATC| <= {section['tarp_threshold']}, `fail` "
        "when it also exceeds twice its error, else `inconclusive`."
        + ("" if fisher else " No Fisher forecast (results/fisher/fisher.json) was given."),
        "",
        *_markdown_table(table),
        "",
        "Which method wins, per parameter (smallest test-split RMSE of the posterior mean; "
        f"error of the lead from {section['bootstrap']} paired bootstrap resamplings of the "
        "test simulations):",
        "",
        *verdict_sentences(samples, section["bootstrap"], section["seed"]),
        "",
    ]
    heads = _heads_table(posteriors)
    if heads:
        lines += ["Calibration of the networks' own Gaussian heads against their NPE "
                  "(test split):", "", *heads, ""]
    lines += [f"- [posterior table]({POSTERIOR_TABLE_FILE})"]
    if corner is not None:
        lines.append(f"- [corner plot at one fiducial seed]({markdown.link(corner, output_dir)})")
    for posterior in posteriors:
        directory = Path(posterior["directory"])
        files = {**posterior.get("figures", {}), "metrics": METRICS_FILE}
        links = [f"[{key}]({markdown.link(directory / file, output_dir)})"
                 for key, file in files.items()]
        lines.append(f"- {posterior['method']}: " + ", ".join(links))
    return lines
