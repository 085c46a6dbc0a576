"""Train one network on the dataset file; resumable from a checkpoint written every epoch.

Read top to bottom: :func:`train_model` sets up the device (DDP when launched by
``torchrun``), data, model, AdamW and a per-step schedule (linear warm-up, then cosine to
zero), restores ``checkpoints/last.pt`` if present, then runs epochs of training and
validation with early stopping on the validation loss, and writes, on rank 0 only:

- ``model.pt`` (state dict of the best epoch), ``model_config.json`` (see cosmo_sbi.models),
- ``history.csv`` (one row per epoch), ``training_summary.json``,
- ``checkpoints/last.pt``: model, optimizer, scheduler, RNG states, early-stopping state,
  history and wall time after the last finished epoch.

The batches come from cosmo_sbi.device_data (a DataLoader, or the split held on the device:
``training.data_on_device``); the data order of epoch e is a function of (seed, e)
(DistributedSampler.set_epoch) and so is the augmentation (dataset.epoch_symmetries); with
the torch/numpy/python RNG states in the checkpoint, a run killed at any point and resumed
reaches, on CPU, weights bit-identical to an uninterrupted run. Every file is written
through cosmo_sbi.io.atomic_path.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.config import Config, ConfigError, config_hash
from cosmo_sbi.io import atomic_path
from cosmo_sbi.models import (
    MODEL_CONFIG_FILE,
    WEIGHTS_FILE,
    build_model,
    count_parameters,
    describe,
    model_flops_utilisation,
    training_flops_per_sample,
)

log = logging.getLogger(__name__)

CHECKPOINT_FILE = Path("checkpoints") / "last.pt"
HISTORY_FILE = "history.csv"
SUMMARY_FILE = "training_summary.json"
HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "learning_rate", "samples_per_second",
                  "wall_time_s")
RESULT_NEUTRAL_SETTINGS = ("models", "data_on_device")
"""training keys left out of a run's fingerprint: the list of models to train, and the data
path (cosmo_sbi.device_data: both give the same batches)."""
PROGRESS_EVERY = 10
"""Steps between loss updates of the progress bar (each costs a device synchronisation)."""
GRAD_CLIP_NORM = 1.0
"""Gradients are clipped to this global norm: the Gaussian NLL is steep while log_var is
far from its final value."""


# ---------------------------------------------------------------------------- losses


def gaussian_nll(mean: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood of ``target`` (B, P) per parameter, without the
    constant 0.5 log(2 pi): 0.5 * (log_var + (target - mean)^2 / exp(log_var))."""
    return 0.5 * (log_var + (target - mean) ** 2 * torch.exp(-log_var)).mean()


def mean_squared_error(mean: torch.Tensor, log_var: torch.Tensor,
                       target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the predicted means; the log-variance head is ignored."""
    return ((target - mean) ** 2).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gaussian_nll": gaussian_nll,
    "mse": mean_squared_error,
}


# ------------------------------------------------------------- schedule and RNG states


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Learning-rate factor of optimizer step ``step``: linear from 1/warmup_steps to 1 over
    the warm-up, then a cosine from 1 to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- the global state, in case a library draws from it
    torch.manual_seed(seed)


def rng_states() -> dict[str, Any]:
    """The python, numpy and torch RNG states as tensors and plain types (weights_only-safe)."""
    version, python_state, gauss_next = random.getstate()
    _, numpy_keys, position, has_gauss, cached_gaussian = np.random.get_state()  # noqa: NPY002
    states = {
        "python": {"version": version, "state": torch.tensor(python_state, dtype=torch.int64),
                   "gauss_next": gauss_next},
        "numpy": {"keys": torch.from_numpy(numpy_keys.astype(np.int64)), "position": position,
                  "has_gauss": has_gauss, "cached_gaussian": cached_gaussian},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`rng_states`."""
    python, numpy = states["python"], states["numpy"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss_next"]))
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32),  # noqa: NPY002
                         numpy["position"], numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# --------------------------------------------------------------- device and processes


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: its device and its place among the DDP processes."""

    device: torch.device
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def select_device(choice: str, local_rank: int) -> torch.device:
    """training.device (auto | cpu | cuda) -> the torch device of this process."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device: 'cuda' requested but no CUDA device is available")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def runtime(settings: Config) -> Iterator[Runtime]:
    """Set up this process (DDP if ``torchrun`` set WORLD_SIZE > 1; determinism on CPU, TF32
    on GPU) and undo the process-wide settings afterwards."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = select_device(settings["device"], int(os.environ.get("LOCAL_RANK", "0")))
    if world_size == 1 and settings["gpus"] > 1 and device.type == "cuda":
        log.warning("training.gpus = %d but not launched by torchrun: training on one GPU",
                    settings["gpus"])
    deterministic = torch.are_deterministic_algorithms_enabled()
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    else:
        torch.use_deterministic_algorithms(True)
    if world_size > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield Runtime(device=device, rank=rank, world_size=world_size)
    finally:
        if world_size > 1:
            dist.destroy_process_group()
        torch.use_deterministic_algorithms(deterministic)


# ---------------------------------------------------------------------- checkpoints


def run_fingerprint(config: Config, model_name: str, dataset_path: Path) -> str:
    """Hash of everything a checkpoint's run depends on (not RESULT_NEUTRAL_SETTINGS); a
    checkpoint of another run is not resumed."""
    training = {key: value for key, value in config["training"].items()
                if key not in RESULT_NEUTRAL_SETTINGS}
    return config_hash({"training": training, "model": config["models"][model_name],
                        "name": model_name, "dataset": str(Path(dataset_path).resolve())})


def save_torch(obj: Any, path: Path) -> None:
    """torch.save through atomic_path: a killed writer never leaves a truncated file."""
    with atomic_path(path) as temporary:
        torch.save(obj, temporary)


def write_json(obj: Any, path: Path) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_history(history: list[dict[str, float]], path: Path) -> None:
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)


# --------------------------------------------------------------------- training loop


def train_model(config: Config, model_name: str, dataset_path: str | os.PathLike[str],
                output_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Train ``model_name`` on ``dataset_path``; write the outputs listed in the module doc to
    ``output_dir`` and return the training summary. Resumes from ``checkpoints/last.pt``."""
    from cosmo_sbi.device_data import training_batches

    settings = config["training"]
    dataset_path, output_dir = Path(dataset_path), Path(output_dir)
    if settings["loss"] not in LOSSES:
        raise ConfigError(f"training.loss: expected one of {sorted(LOSSES)}, "
                          f"got {settings['loss']!r}")
    loss_function = LOSSES[settings["loss"]]
    seed = settings["seed"]

    with runtime(settings) as rt:
        seed_everything(seed)
        cuda = rt.device.type == "cuda"
        memory_format = (torch.channels_last_3d if cuda and settings["channels_last"]
                         else torch.contiguous_format)
        data = training_batches(dataset_path, settings, rt.device, rt.rank, rt.world_size,
                                memory_format)
        grid_shape = data.grid_shape
        if len(set(grid_shape)) != 1:
            raise ValueError(f"{dataset_path}: the networks need a cubic grid "
                             f"(histogram.bins equal), got inputs of shape {grid_shape}")

        model = build_model(model_name, config["models"][model_name], grid_size=grid_shape[0],
                            n_params=len(PARAMETER_NAMES)).to(rt.device)
        model = model.to(memory_format=memory_format)
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]  # biases, norms
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": settings["weight_decay"]},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=settings["learning_rate"], fused=cuda and settings["fused_adamw"],
        )
        steps_per_epoch = data.steps_per_epoch
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(
            settings["warmup_epochs"] * steps_per_epoch, settings["epochs"] * steps_per_epoch))

        fingerprint = run_fingerprint(config, model_name, dataset_path)
        state = {"epoch": 0, "best_val_loss": math.inf, "best_epoch": 0,
                 "best_model": None, "epochs_without_improvement": 0, "finished": False,
                 "history": [], "wall_time_s": 0.0, "train_time_s": 0.0,
                 "train_samples": 0}
        checkpoint_path = output_dir / CHECKPOINT_FILE
        if checkpoint_path.exists():
            checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
            if checkpoint["fingerprint"] != fingerprint:
                log.warning("%s belongs to another run (config or dataset changed): starting "
                            "from scratch", checkpoint_path)
            else:
                model.load_state_dict(checkpoint["model"])
                optimizer.load_state_dict(checkpoint["optimizer"])
                scheduler.load_state_dict(checkpoint["scheduler"])
                state = checkpoint["state"]
                restore_rng_states(checkpoint["rng"])
                log.info("resuming %s from %s after epoch %d", model_name, checkpoint_path,
                         state["epoch"])

        raw_model = model
        if rt.world_size > 1:
            model = DistributedDataParallel(model, device_ids=[rt.device.index] if cuda else None)
        if settings["compile"]:
            model = torch.compile(model)
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda and settings["bf16"]
                    else contextlib.nullcontext())

        def count(n: int) -> torch.Tensor:
            return torch.tensor(n, dtype=torch.float64, device=rt.device)

        session_start = time.perf_counter()
        wall_time_before = state["wall_time_s"]
        while not state["finished"]:
            epoch = state["epoch"]

            # --- train one epoch
            model.train()
            epoch_start = time.perf_counter()
            loss_sum = torch.zeros(2, dtype=torch.float64, device=rt.device)  # sum, count
            progress = tqdm(data.train_batches(epoch), total=steps_per_epoch,
                            desc=f"{model_name} epoch {epoch + 1}/{settings['epochs']}",
                            file=sys.stderr, leave=False, disable=not rt.is_main,
                            dynamic_ncols=True)
            for step, (x, y) in enumerate(progress):
                with autocast:
                    mean, log_var = model(x)
                loss = loss_function(mean, log_var, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
                optimizer.step()
                scheduler.step()
                loss_sum += torch.stack([loss.detach().double() * len(x),
                                         count(len(x))])
                if rt.is_main and step % PROGRESS_EVERY == 0:
                    progress.set_postfix(loss=f"{loss.item():.4f}")
            if cuda:
                torch.cuda.synchronize()
            train_seconds = time.perf_counter() - epoch_start
            if rt.world_size > 1:
                dist.all_reduce(loss_sum)
            train_loss = (loss_sum[0] / loss_sum[1]).item()
            samples = int(loss_sum[1].item())

            # --- validate (every rank sees the whole validation set; rank 0's value rules)
            raw_model.eval()
            val_sum = torch.zeros(2, dtype=torch.float64, device=rt.device)
            with torch.no_grad(), autocast:
                for x, y in data.validation_batches():
                    mean, log_var = raw_model(x)
                    val_sum += torch.stack([loss_function(mean, log_var, y).double() * len(x),
                                            count(len(x))])
            val_loss = val_sum[0:1] / val_sum[1]
            if rt.world_size > 1:
                dist.broadcast(val_loss, src=0)
            val_loss = val_loss.item()

            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                raise ValueError(
                    f"training.learning_rate: {model_name} diverged in epoch {epoch + 1} "
                    f"(train loss {train_loss}, validation loss {val_loss}); expected a "
                    f"smaller learning rate than {settings['learning_rate']}"
                )

            # --- early stopping, history, checkpoint
            state["epoch"] = epoch + 1
            if val_loss < state["best_val_loss"]:
                state.update(best_val_loss=val_loss, best_epoch=epoch + 1,
                             epochs_without_improvement=0,
                             best_model={k: v.detach().to("cpu", copy=True)
                                         for k, v in raw_model.state_dict().items()})
            else:
                state["epochs_without_improvement"] += 1
            stop = state["epochs_without_improvement"] >= settings["early_stopping_patience"]
            state["finished"] = stop or state["epoch"] >= settings["epochs"]
            state["wall_time_s"] = wall_time_before + time.perf_counter() - session_start
            state["train_time_s"] += train_seconds
            state["train_samples"] += samples
            state["history"].append({
                "epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                "learning_rate": scheduler.get_last_lr()[0],
                "samples_per_second": samples / train_seconds,
                "wall_time_s": state["wall_time_s"],
            })
            log.info("%s epoch %d/%d: train %.5f, validation %.5f, %.1f samples/s%s",
                     model_name, epoch + 1, settings["epochs"], train_loss, val_loss,
                     samples / train_seconds, " (early stop)" if stop else "")
            if rt.is_main:
                save_torch({"fingerprint": fingerprint, "model": raw_model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "rng": rng_states(),
                            "state": state}, checkpoint_path)
                write_history(state["history"], output_dir / HISTORY_FILE)

        # --- final outputs (rank 0)
        samples_per_second = state["train_samples"] / max(state["train_time_s"], 1e-12)
        device_name = torch.cuda.get_device_name(rt.device) if cuda else "cpu"
        summary = {
            "model": model_name, "parameters": count_parameters(raw_model),
            "training_flops_per_sample": training_flops_per_sample(raw_model),
            "loss": settings["loss"], "seed": seed,
            "epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
            "best_val_loss": state["best_val_loss"],
            "stopped_early": state["epochs_without_improvement"]
            >= settings["early_stopping_patience"],
            "wall_time_s": state["wall_time_s"], "samples_per_second": samples_per_second,
            "mfu": model_flops_utilisation(raw_model, samples_per_second, device_name),
            "device": device_name, "world_size": rt.world_size,
            "train_samples": data.train_size, "validation_samples": data.validation_size,
            "data_on_device": data.resident,
        }
        if rt.is_main:
            save_torch(state["best_model"], output_dir / WEIGHTS_FILE)
            write_json(describe(model_name, raw_model), output_dir / MODEL_CONFIG_FILE)
            write_history(state["history"], output_dir / HISTORY_FILE)
            write_json(summary, output_dir / SUMMARY_FILE)
        if rt.world_size > 1:
            dist.barrier()
        # The DDP wrapper's Reducer holds the process group: free it while the group is
        # alive. Freed after destroy_process_group, gloo's destructor can hang forever.
        del model
        gc.collect()
    return summary
