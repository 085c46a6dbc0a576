"""Why does the CNN's validation loss jump from epoch to epoch? Batch norm or over-confidence.

    python benchmarks/batchnorm_check.py DATASET --model cnn --epochs 15 --batch-size 8

Trains ``--model`` with the real training steps (cosmo_sbi.train: build_optimisation,
train_one_epoch, validate) on a dataset file and, after every epoch, measures the validation
Gaussian NLL three ways:

- ``eval``: the network in evaluation mode (batch norm with its running statistics), what
  training's early stopping sees;
- ``batch``: the network in training mode, batch norm with the statistics of each validation
  batch of ``--batch-size`` (the running statistics are restored afterwards);
- ``pull2``: the mean squared pull (target - mean)^2 / variance in evaluation mode: ~1 for
  calibrated variances, >> 1 when the variances are over-confident; ``mse`` its numerator.

An ``eval`` loss that jumps while ``batch`` stays smooth points at the running statistics of
batch norm; a jump in ``pull2`` with a steady ``mse`` points at the variance head.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cosmo_sbi.toy import toy_config
from cosmo_sbi.train import (
    build_optimisation,
    gaussian_nll,
    runtime,
    seed_everything,
    train_one_epoch,
    validate,
)
from cosmo_sbi.training_set import HistogramDataset


@torch.no_grad()
def validation_terms(model: torch.nn.Module, loader: DataLoader,
                     batch_statistics: bool) -> dict[str, float]:
    """Mean NLL, squared error and squared pull over ``loader``; with ``batch_statistics``
    batch norm normalises with each batch's statistics (a copy of the model in train mode)."""
    model = copy.deepcopy(model)
    model.train(batch_statistics)
    totals, count = torch.zeros(3, dtype=torch.float64), 0
    for x, y in loader:
        mean, log_var = model(x)
        squared = (y - mean) ** 2
        totals += torch.stack([gaussian_nll(mean, log_var, y) * len(x),
                               squared.mean() * len(x),
                               (squared * torch.exp(-log_var)).mean() * len(x)]).double()
        count += len(x)
    return dict(zip(("nll", "mse", "pull2"), (totals / count).tolist(), strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args()

    config = toy_config({"training": {"epochs": args.epochs, "batch_size": args.batch_size,
                                      "learning_rate": args.learning_rate, "warmup_epochs": 2,
                                      "device": "cpu"}})
    settings = config["training"]
    with runtime(settings) as rt:
        seed_everything(settings["seed"])
        train_set = HistogramDataset(args.dataset, "train", augment=True)
        val_set = HistogramDataset(args.dataset, "validation", augment=False)
        train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
        val_loader = DataLoader(val_set, batch_size=args.batch_size, shuffle=False)
        run = build_optimisation(config, args.model, train_set.inputs.shape[-1],
                                 len(train_loader), rt)
        print(f"{len(train_set)} training, {len(val_set)} validation samples")
        print(f"{'epoch':>5s} {'train':>8s} {'eval':>8s} {'batch':>8s} {'mse':>8s} "
              f"{'pull2':>8s}")
        for epoch in range(args.epochs):
            train_set.set_epoch(epoch, settings["seed"])
            train_loss, _, _ = train_one_epoch(run.model, run, train_loader, gaussian_nll, rt,
                                               f"epoch {epoch + 1}")
            evaluation = validation_terms(run.model, val_loader, batch_statistics=False)
            batch = validation_terms(run.model, val_loader, batch_statistics=True)
            assert abs(evaluation["nll"] - validate(run.model, val_loader, gaussian_nll,
                                                    rt)) < 1e-5
            print(f"{epoch + 1:5d} {train_loss:8.4f} {evaluation['nll']:8.4f} "
                  f"{batch['nll']:8.4f} {evaluation['mse']:8.5f} {evaluation['pull2']:8.3f}")


if __name__ == "__main__":
    main()
