"""Hyperparameter search (Optuna, optional extra ``search``): a small budget of training runs
scored by the validation loss; the best settings become a config overlay file.

``cosmo-sbi search --model cnn --dataset results/dataset.h5 --output-dir results/search/cnn``
runs ``search.trials`` trainings of ``search.epochs`` epochs each (the TPE sampler, seeded by
``training.seed``, so a rerun proposes the same trials; a trial's folder
``trials/<n>/`` keeps its checkpoint, so a rerun resumes instead of retraining) over
:data:`SEARCH_SPACE`, and writes ``overlay.yaml``: the best trial's ``training`` and
``models.<model>`` overrides, to apply with ``snakemake --configfile config.yaml ...
results/search/cnn/overlay.yaml``. It is not part of the default workflow (off by default);
the test split is never looked at. ``trials.csv`` lists every trial.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from cosmo_sbi.config import Config, deep_merge
from cosmo_sbi.io import atomic_path

log = logging.getLogger(__name__)

SEARCH_SPACE: dict[str, tuple[str, Any]] = {
    "training.learning_rate": ("log", (1e-4, 3e-3)),
    "training.weight_decay": ("log", (1e-4, 0.1)),
    "training.batch_size": ("choice", (4, 8, 16)),
    "model.dropout": ("uniform", (0.0, 0.3)),
}
"""Key (``model.`` = ``models.<model>.``) -> (kind, range or choices)."""
OVERLAY_FILE = "overlay.yaml"
TRIALS_FILE = "trials.csv"


def _suggest(trial: Any, key: str) -> Any:
    kind, values = SEARCH_SPACE[key]
    if kind == "log":
        return trial.suggest_float(key, *values, log=True)
    if kind == "uniform":
        return trial.suggest_float(key, *values)
    return trial.suggest_categorical(key, list(values))


def overrides(model_name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Flat ``SEARCH_SPACE`` values -> the nested config overlay of ``model_name``."""
    overlay: dict[str, Any] = {}
    for key, value in values.items():
        section, name = key.split(".")
        path = ("models", model_name) if section == "model" else (section,)
        target = overlay
        for part in path:
            target = target.setdefault(part, {})
        target[name] = value.item() if hasattr(value, "item") else value
    return overlay


def search(config: Config, model_name: str, dataset_path: str | os.PathLike[str],
           output_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Run the search (module doc); write ``overlay.yaml`` and ``trials.csv`` to
    ``output_dir``; return the overlay."""
    try:
        import optuna
    except ImportError as error:
        raise ImportError("cosmo-sbi search needs optuna: pip install 'cosmo-sbi[search]'") \
            from error
    from cosmo_sbi.train import train_model

    settings, output_dir = config["search"], Path(output_dir)
    base = deep_merge(config, {"training": {"epochs": settings["epochs"],
                                            "warmup_epochs": min(
                                                config["training"]["warmup_epochs"],
                                                settings["epochs"] - 1)}})

    def objective(trial: optuna.Trial) -> float:
        values = {key: _suggest(trial, key) for key in SEARCH_SPACE}
        summary = train_model(deep_merge(base, overrides(model_name, values)), model_name,
                              dataset_path, output_dir / "trials" / str(trial.number))
        log.info("search %s trial %d: %s -> validation loss %.5f", model_name, trial.number,
                 values, summary["best_val_loss"])
        return summary["best_val_loss"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(
        seed=config["training"]["seed"]))
    study.optimize(objective, n_trials=settings["trials"])
    overlay = overrides(model_name, study.best_params)
    header = (f"# cosmo-sbi search: best of {len(study.trials)} trials of {model_name} "
              f"({settings['epochs']} epochs each), validation loss {study.best_value:.5f} "
              f"(trial {study.best_trial.number}).\n# Apply as a config overlay; "
              f"training.epochs is not part of it.\n")
    with atomic_path(output_dir / OVERLAY_FILE) as temporary:
        Path(temporary).write_text(header + yaml.safe_dump(overlay, sort_keys=True))
    with atomic_path(output_dir / TRIALS_FILE) as temporary, open(temporary, "w",
                                                                     newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["trial", *SEARCH_SPACE, "best_val_loss"])
        for trial in study.trials:
            writer.writerow([trial.number, *(trial.params[k] for k in SEARCH_SPACE),
                             trial.value])
    return overlay
