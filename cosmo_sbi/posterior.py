"""Neural posterior estimation (sbi's NPE, a normalising flow) on a summary table, the same
settings for every method: a network's outputs (``cnn``, ``vit``), the two-point summaries
(``two_point``) or their concatenation (``combined`` = cnn + vit + two_point).

Which simulations the NPE trains on. A network's outputs on its own training simulations
are tighter than on new ones (it fitted them), so an NPE trained there learns
over-confident posteriors. Every method's NPE therefore trains on ``posterior.train_splits``
(default: the ``validation`` split), which the networks never trained on: they only used it
to choose their best epoch, a one-number selection that leaks nothing per simulation. The
two-point NPE trains on the same rows so that the methods differ only in their summaries
(it could use the networks' training split too; the learning curve of issue 9 asks how much
that would gain). The ``test`` split is never trained on: it measures calibration (TARP,
SBC, coverage), and the fiducial seeds give the constraints at one cosmology.

The prior is uniform in the Latin-hypercube box; the flow works in the logit of the
parameters scaled to the unit box (the uniform prior becomes independent standard logistic
distributions), so every sample lies inside the box and none has to be rejected. The
summaries are z-scored with the mean and standard deviation of the training rows; sbi holds
out ``posterior.validation_fraction`` of them for early stopping. A method's posterior is
the equal-weight mixture of ``posterior.ensemble_size`` NPEs trained with different seeds:
one NPE on a few hundred rows depends on its seed (which rows stop its training) far more
than on the data. Seeded: on CPU two runs give identical samples. S8 = sigma_8
(Omega_m / 0.3)^0.5 is derived from every sample.

Output ``samples.h5`` (atomic): ``samples`` (M, S, 7) float32 for the M test and fiducial
rows (dataset order) and S samples, in ``POSTERIOR_PARAMETERS`` order; ``theta`` (M, 7) the
truths; ``mean`` and ``std`` (M, 7) of the samples; ``ids``, ``set``, ``split`` (M,);
attributes: method, features, NPE settings and training summary.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from scipy import special

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.config import Config
from cosmo_sbi.dataset import FIDUCIAL_SPLIT, prior_bounds
from cosmo_sbi.io import atomic_path, provenance, read_attrs, write_attrs
from cosmo_sbi.posterior_config import COMBINED_PARTS, METHODS
from cosmo_sbi.summary_table import SummaryTable, SummaryTableError

log = logging.getLogger(__name__)

POSTERIOR_PARAMETERS: tuple[str, ...] = (*PARAMETER_NAMES, "S8")
"""The six parameters and the derived S8, the columns of every posterior sample."""
SAMPLES_FILE = "samples.h5"
EVALUATED_SPLITS: tuple[str, ...] = ("test", FIDUCIAL_SPLIT)
"""Rows whose posteriors are sampled."""


def s8(omega_m: np.ndarray, sigma_8: np.ndarray) -> np.ndarray:
    """S8 = sigma_8 (Omega_m / 0.3)^0.5 (0 where Omega_m <= 0, which samples of a network's
    Gaussian head can reach)."""
    return np.asarray(sigma_8) * np.sqrt(np.clip(np.asarray(omega_m), 0.0, None) / 0.3)


def with_s8(theta: np.ndarray) -> np.ndarray:
    """Parameters (..., 6) in PARAMETER_NAMES order -> (..., 7) with S8 appended."""
    theta = np.asarray(theta)
    derived = s8(theta[..., PARAMETER_NAMES.index("Omega_m")],
                 theta[..., PARAMETER_NAMES.index("sigma_8")])
    return np.concatenate([theta, derived[..., None].astype(theta.dtype)], axis=-1)


# ---------------------------------------------------------------- configuration

@dataclass(frozen=True)
class NPESettings:
    """Flow and training settings of sbi's NPE (``posterior.*`` in the config)."""

    density_estimator: str = "maf"
    hidden_features: int = 50
    num_transforms: int = 5
    batch_size: int = 50
    learning_rate: float = 1e-3
    validation_fraction: float = 0.1
    stop_after_epochs: int = 20
    max_epochs: int = 1000

    @classmethod
    def from_config(cls, config: Config) -> NPESettings:
        section = config["posterior"]
        return cls(**{key: section[key] for key in cls.__dataclass_fields__})


# ---------------------------------------------------------------- NPE

class _NoTracker:
    """sbi's tracker protocol doing nothing: no TensorBoard folder in the working dir."""

    log_dir = None

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def add_figure(self, name: str, figure: Any, step: int | None = None) -> None:
        pass

    def flush(self) -> None:
        pass


@dataclass
class Standardiser:
    """z-scoring of summaries (K,) with the statistics of the training rows."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardiser:
        std = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(std > 0, std, 1.0))

    def __call__(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((x - self.mean) / self.std, dtype=torch.float32)


@dataclass
class TrainedPosterior:
    """An sbi posterior with its feature standardisation and training summary."""

    posterior: Any
    standardiser: Standardiser
    summary: dict[str, Any]

    def sample(self, x: np.ndarray, n_samples: int, seed: int) -> np.ndarray:
        """Samples (M, S, P) float64 of the posteriors given summaries x (M, K)."""
        torch.manual_seed(seed)
        with torch.no_grad():
            draws = self.posterior.sample_batched((n_samples,), x=self.standardiser(x),
                                                  show_progress_bars=False)
        return draws.double().numpy().transpose(1, 0, 2)


def train_npe(theta: np.ndarray, x: np.ndarray, prior: torch.distributions.Distribution,
              settings: NPESettings, seed: int) -> TrainedPosterior:
    """Train sbi's NPE on parameters theta (N, P) and summaries x (N, K) under ``prior``.

    theta should be of order one (the flow does not rescale it); x is z-scored here with
    its mean and standard deviation over the N rows. Seeded with ``seed`` (network
    initialisation, sbi's train/validation split, batches). At least one row goes to sbi's
    validation set and one to its training set.
    """
    from sbi.inference import NPE
    from sbi.neural_nets import posterior_nn

    n = len(theta)
    if n < 2:
        raise ValueError(f"NPE needs at least 2 simulations (1 for early stopping), got {n}")
    n_validation = min(n - 1, max(1, round(settings.validation_fraction * n)))
    standardiser = Standardiser.fit(x)
    torch.manual_seed(seed)
    builder = posterior_nn(settings.density_estimator, hidden_features=settings.hidden_features,
                           num_transforms=settings.num_transforms, z_score_theta="none",
                           z_score_x="none")
    inference = NPE(prior=prior, density_estimator=builder, show_progress_bars=False,
                    tracker=_NoTracker())
    start = time.perf_counter()
    inference.append_simulations(torch.as_tensor(theta, dtype=torch.float32), standardiser(x))
    estimator = inference.train(
        training_batch_size=min(settings.batch_size, n - n_validation),
        learning_rate=settings.learning_rate,
        # sbi trains on int((1 - fraction) n) rows: aim half a row above n - n_validation
        validation_fraction=(n_validation - 0.5) / n,
        stop_after_epochs=settings.stop_after_epochs, max_num_epochs=settings.max_epochs)
    summary = {"simulations": n, "validation_simulations": n_validation,
               "epochs": int(inference.summary["epochs_trained"][-1]),
               "best_validation_loss": float(inference.summary["best_validation_loss"][-1]),
               "wall_time_s": time.perf_counter() - start}
    return TrainedPosterior(inference.build_posterior(estimator), standardiser, summary)


LOGISTIC_STD = float(np.pi / np.sqrt(3.0))
"""Standard deviation of the standard logistic distribution (the logit of a uniform)."""


def logistic_prior(dimensions: int) -> torch.distributions.Distribution:
    """The uniform prior on the unit box seen through logit / LOGISTIC_STD: independent
    logistic distributions of unit variance, close to the flow's standard normal base, so
    an untrained or data-starved flow stays near the prior (a wider one, mapped back
    through the sigmoid, would pile its mass at the box edges)."""
    uniform = torch.distributions.Uniform(torch.zeros(dimensions), torch.ones(dimensions))
    logistic = torch.distributions.TransformedDistribution(
        uniform, [torch.distributions.SigmoidTransform().inv,
                  torch.distributions.AffineTransform(0.0, 1.0 / LOGISTIC_STD)])
    return torch.distributions.Independent(logistic, 1)


@dataclass
class BoxPosterior:
    """An NPE whose flow lives in logit((theta - lower) / (upper - lower)) / LOGISTIC_STD:
    its samples lie inside the prior box [lower, upper] by construction, so none is rejected
    (a flow on the box itself leaks mass over the edges; sbi's rejection then took 6 minutes
    to draw 2000 samples for 200 posteriors, benchmarks/bench_posterior.py)."""

    trained: TrainedPosterior
    lower: np.ndarray
    upper: np.ndarray

    def sample(self, x: np.ndarray, n_samples: int, seed: int) -> np.ndarray:
        """Samples (M, S, P) in physical units of the posteriors given summaries x (M, K)."""
        unbounded = self.trained.sample(x, n_samples, seed)
        return self.lower + (self.upper - self.lower) * special.expit(LOGISTIC_STD * unbounded)

    @property
    def summary(self) -> dict[str, Any]:
        return self.trained.summary


def train_box_npe(theta: np.ndarray, x: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                  settings: NPESettings, seed: int) -> BoxPosterior:
    """NPE under the uniform prior on the box [lower, upper] (P,), theta (N, P) inside it."""
    unit = np.clip((theta - lower) / (upper - lower), 1e-6, 1 - 1e-6)
    trained = train_npe(special.logit(unit) / LOGISTIC_STD, x, logistic_prior(len(lower)),
                        settings, seed)
    return BoxPosterior(trained, np.asarray(lower, float), np.asarray(upper, float))


# ---------------------------------------------------------------- summary tables

def network_summary_table(predictions: Any, model: str) -> SummaryTable:
    """A network's predictions table (cosmo_sbi.evaluate) as a summary table: per parameter
    the predicted mean and log sigma (12 features), rows in the dataset's order."""
    names, columns = [], []
    for name in PARAMETER_NAMES:
        names += [f"{name}_mean", f"{name}_log_sigma"]
        columns += [np.asarray(predictions[f"{name}_mean"], dtype=np.float64),
                    np.log(np.asarray(predictions[f"{name}_sigma"], dtype=np.float64))]
    theta = np.stack([np.asarray(predictions[f"{name}_true"]) for name in PARAMETER_NAMES],
                     axis=1)
    return SummaryTable(np.stack(columns, axis=1), names, theta, predictions["id"],
                        predictions["set"], predictions["split"], {"kind": model})


def write_network_summaries(predictions_path: str | os.PathLike[str], model: str,
                            output: str | os.PathLike[str]) -> SummaryTable:
    """``cosmo-sbi network-summaries``: predictions.ecsv -> summary table file."""
    from cosmo_sbi.outputs import read_predictions
    from cosmo_sbi.summary_table import write_summary_table

    table = network_summary_table(read_predictions(predictions_path), model)
    table.attrs["source"] = os.fspath(predictions_path)
    if not np.all(np.isfinite(table.x)):
        raise SummaryTableError(f"{predictions_path}: non-finite predicted mean or sigma; "
                                "expected finite network outputs")
    write_summary_table(output, table)
    return table


def method_table(method: str, paths: Mapping[str, str | os.PathLike[str]]) -> SummaryTable:
    """The summary table of ``method`` from the summary files ``paths`` (kind -> path):
    one file, or for ``combined`` the concatenation of cnn, vit and two_point."""
    from cosmo_sbi.summary_table import concatenate_features, read_summary_table

    if method == "combined":
        missing = [kind for kind in COMBINED_PARTS if kind not in paths]
        if missing:
            raise ValueError(f"method 'combined' needs the summary tables {missing}")
        return concatenate_features({kind: read_summary_table(paths[kind])
                                     for kind in COMBINED_PARTS})
    if method not in paths:
        raise ValueError(f"method {method!r}: no summary table given")
    return read_summary_table(paths[method])


# ---------------------------------------------------------------- the stage

def training_rows(table: SummaryTable, splits: Sequence[str], minimum: int) -> np.ndarray:
    """Mask of the rows the NPE trains on; ValueError naming the config field if fewer than
    ``minimum`` (``posterior.min_simulations``)."""
    rows = table.rows(*splits)
    if rows.sum() < max(minimum, 2):
        raise ValueError(f"posterior.min_simulations: the summary table has {int(rows.sum())} "
                         f"simulations in posterior.train_splits {list(splits)}; expected at "
                         f"least {max(minimum, 2)}")
    return rows


def fit_and_sample(config: Config, table: SummaryTable,
                   train: np.ndarray | None = None) -> dict[str, Any]:
    """Train the NPE ensemble of ``table`` on the rows of the boolean mask ``train``
    (default: those of posterior.train_splits) and sample the test and fiducial rows from
    the mixture of its members.

    Returns ``samples`` (M, S, 7), ``theta`` (M, 7), ``ids``, ``set``, ``split`` (M,) and the
    training ``summary``.
    """
    section = config["posterior"]
    if train is None:
        train = training_rows(table, section["train_splits"], section["min_simulations"])
    lower, upper = prior_bounds(config)
    rows = table.rows(*EVALUATED_SPLITS)
    members = section["ensemble_size"]
    draws, summaries = [], []
    for member, n_samples in enumerate(ensemble_sample_counts(section["n_samples"], members)):
        seed = section["seed"] + ENSEMBLE_SEED_STRIDE * member
        trained = train_box_npe(table.theta[train], table.x[train], lower, upper,
                                NPESettings.from_config(config), seed)
        draws.append(trained.sample(table.x[rows], n_samples, seed + 1))
        summaries.append(trained.summary)
        log.info("NPE %d of %d on %d simulations: %d epochs, %.1f s", member + 1, members,
                 trained.summary["simulations"], trained.summary["epochs"],
                 trained.summary["wall_time_s"])
    return {"samples": with_s8(np.concatenate(draws, axis=1)),
            "theta": with_s8(table.theta[rows]),
            "ids": table.ids[rows], "set": table.sets[rows], "split": table.splits[rows],
            "summary": ensemble_summary(summaries), "features": list(table.feature_names)}


ENSEMBLE_SEED_STRIDE = 1000
"""NPE member k trains with posterior.seed + 1000 k and samples with that + 1 (member 0 is
the single NPE of ensemble_size 1)."""


def ensemble_sample_counts(n_samples: int, members: int) -> list[int]:
    """Samples drawn from each member (sum n_samples): the equal-weight mixture, to one
    sample in n_samples where ``members`` does not divide it."""
    return [n_samples // members + (member < n_samples % members) for member in range(members)]


def ensemble_summary(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Training summary of an NPE ensemble: a single member's as it is; several: the rows
    shared by all, ``members`` and per-member lists of epochs and best validation losses."""
    if len(summaries) == 1:
        return dict(summaries[0])
    first = summaries[0]
    return {"simulations": first["simulations"],
            "validation_simulations": first["validation_simulations"],
            "members": len(summaries),
            "epochs": [summary["epochs"] for summary in summaries],
            "best_validation_loss": [summary["best_validation_loss"] for summary in summaries],
            "wall_time_s": sum(summary["wall_time_s"] for summary in summaries)}


def reproducible_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The NPE training summary without its wall time (logged instead), so the same config
    writes the same samples.h5 bytes on any machine."""
    return {key: value for key, value in summary.items() if key != "wall_time_s"}


def write_samples(path: str | os.PathLike[str], result: Mapping[str, Any], method: str,
                  settings: Mapping[str, Any]) -> None:
    """samples.h5 (layout in the module docstring), atomically."""
    strings = h5py.string_dtype()
    samples = np.asarray(result["samples"], dtype=np.float32)
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as handle:
        handle.create_dataset("samples", data=samples, fletcher32=True)
        handle.create_dataset("theta", data=result["theta"])
        handle.create_dataset("mean", data=samples.mean(axis=1, dtype=np.float64))
        handle.create_dataset("std", data=samples.std(axis=1, dtype=np.float64))
        for name in ("ids", "set", "split"):
            handle.create_dataset(name, data=np.asarray(result[name]).astype(object),
                                  dtype=strings)
        write_attrs(handle, provenance(method=method,
                                       parameter_names=",".join(POSTERIOR_PARAMETERS),
                                       features=",".join(result["features"]),
                                       settings=dict(settings),
                                       training=reproducible_summary(result["summary"])))


def read_samples(path: str | os.PathLike[str]) -> dict[str, Any]:
    """samples.h5 as arrays (keys as written) and ``attrs``."""
    with h5py.File(path, "r") as handle:
        data = {key: handle[key][...] for key in ("samples", "theta", "mean", "std")}
        data.update({key: handle[key].asstr()[...] for key in ("ids", "set", "split")})
        data["attrs"] = read_attrs(handle)
    return data


def npe_record(config: Config) -> dict[str, Any]:
    """The settings an NPE's samples.h5 records: flow, training rows, samples, seed."""
    return {**asdict(NPESettings.from_config(config)),
            **{key: config["posterior"][key]
               for key in ("train_splits", "n_samples", "seed", "ensemble_size")}}


def run_posterior(config: Config, method: str, summary_paths: Mapping[str, str | os.PathLike[str]],
                  output_dir: str | os.PathLike[str]) -> Path:
    """The NPE of ``method``: writes and returns ``output_dir/samples.h5`` (the posterior
    stage then writes its metrics, cosmo_sbi.posterior_metrics.write_posterior_metrics)."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {METHODS}")
    output_dir = Path(output_dir)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    table = method_table(method, summary_paths)
    result = fit_and_sample(config, table)
    write_samples(output_dir / SAMPLES_FILE, result, method, npe_record(config))
    return output_dir / SAMPLES_FILE
