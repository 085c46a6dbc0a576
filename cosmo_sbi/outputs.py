"""The small text files of the train and evaluate stages, written and read here only (no
torch): ``history.csv`` and ``training_summary.json`` (train), ``predictions.ecsv`` and
``metrics.json`` (evaluate; read by the report). Every writer is atomic.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from cosmo_sbi.io import DamagedFileError, atomic_path, read_ecsv

HISTORY_FILE = "history.csv"
HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "learning_rate", "samples_per_second",
                  "wall_time_s")
TRAINING_SUMMARY_FILE = "training_summary.json"
PREDICTIONS_FILE = "predictions.ecsv"
METRICS_FILE = "metrics.json"


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """``obj`` as indented JSON with sorted keys (identical bytes for identical content)."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_history(history: Sequence[Mapping[str, float]], path: str | os.PathLike[str]) -> None:
    """The training history: one row per epoch, columns HISTORY_FIELDS."""
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)


def read_history(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The training history CSV as numeric columns (name -> (epochs,))."""
    try:
        with open(path, newline="") as stream:
            rows = list(csv.DictReader(stream))
    except (UnicodeDecodeError, csv.Error) as error:
        raise DamagedFileError(f"{path}: not a readable training history CSV ({error})") from error
    if not rows:
        raise ValueError(f"{path}: empty training history")
    columns: dict[str, np.ndarray] = {}
    for key in rows[0]:
        try:
            columns[key] = np.array([float(row[key]) for row in rows])
        except (TypeError, ValueError):
            continue  # non-numeric column (e.g. a timestamp)
    return columns


def read_training_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """training_summary.json, or {} where training wrote none."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise DamagedFileError(f"{path}: not valid JSON ({error}); expected the training summary "
                         "written by `cosmo-sbi train`") from error


def write_predictions(table: Table, path: str | os.PathLike[str]) -> None:
    """The predictions table (one row per simulation) as ECSV."""
    with atomic_path(path) as temporary:
        table.write(temporary, format="ascii.ecsv")


def read_predictions(path: str | os.PathLike[str]) -> Table:
    """A predictions table written by :func:`write_predictions`."""
    return read_ecsv(path, "predictions table", ("id", "set", "split"))


def write_metrics(metrics: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """metrics.json (sorted keys: identical bytes for identical metrics)."""
    write_json(metrics, path)


def read_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """metrics.json of one evaluation, checked for the keys the report needs."""
    path = Path(path)
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{path}: missing; expected an evaluation folder written by "
                                "`cosmo-sbi evaluate`") from error
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise DamagedFileError(f"{path}: not readable JSON ({error}); rerun `cosmo-sbi "
                               "evaluate`") from error
    if not isinstance(metrics, dict) or "model" not in metrics or "test" not in metrics:
        raise ValueError(f"{path}: expected the keys 'model' and 'test' of cosmo_sbi metrics")
    return metrics
