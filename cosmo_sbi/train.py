"""Train one network on the dataset file; resumable from a checkpoint written every epoch.

Read :func:`train_model` top to bottom: it sets up the device (DDP when launched by
``torchrun``), data, model, AdamW and a per-step schedule (linear warm-up, then cosine to
zero), restores ``checkpoints/last.pt`` where it belongs to the same run
(:func:`restore_checkpoint`), then runs epochs of :func:`train_one_epoch` and
:func:`validate` with early stopping on the validation loss, and writes, on rank 0 only:

- ``model.pt`` (state dict of the best epoch), ``model_config.json`` (cosmo_sbi.models.build),
- ``history.csv`` (one row per epoch), ``training_summary.json`` (cosmo_sbi.outputs),
- ``checkpoints/last.pt`` (:func:`save_checkpoint`): model, optimizer, scheduler, RNG states
  and the :class:`TrainingState` after the last finished epoch, with the run's fingerprint.

A checkpoint is resumed only when its fingerprint, the hashes of the dataset's CONTENT, the
resolved model config and the training config (:func:`run_fingerprint`), equals this run's;
paths play no part, so a moved results folder resumes and a rebuilt dataset (new mass cut,
new simulations) starts fresh. The log says which. A damaged checkpoint is renamed
``last.pt.damaged`` with a warning and training starts fresh.

The batches come from cosmo_sbi.device_data (a DataLoader, or the splits held on the device:
``training.data_on_device``); the data order of epoch e is a function of (seed, e)
(DistributedSampler.set_epoch) and so is the augmentation (training_set.epoch_symmetries);
with the torch/numpy/python RNG states in the checkpoint, a run killed at any point and
resumed reaches, on CPU, weights bit-identical to an uninterrupted run. Every file is
written through cosmo_sbi.io.atomic_path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
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
from cosmo_sbi.dataset import read_dataset
from cosmo_sbi.device import select_device
from cosmo_sbi.device_data import Batch, Batches, training_batches
from cosmo_sbi.io import atomic_path
from cosmo_sbi.models.build import (
    build_model,
    count_parameters,
    model_flops_utilisation,
    read_torch_file,
    save_trained,
    training_flops_per_sample,
)
from cosmo_sbi.models.configs import resolve_config
from cosmo_sbi.outputs import HISTORY_FILE, TRAINING_SUMMARY_FILE, write_history, write_json

log = logging.getLogger(__name__)

CHECKPOINT_FILE = Path("checkpoints") / "last.pt"
DAMAGED_SUFFIX = ".damaged"
"""A checkpoint that cannot be read is renamed to ``last.pt.damaged`` (kept for a look)."""
CHECKPOINT_KEYS = ("fingerprint", "model", "optimizer", "scheduler", "rng", "state")
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
    bf16: bool = True
    channels_last: bool = True

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def memory_format(self) -> torch.memory_format:
        return (torch.channels_last_3d if self.cuda and self.channels_last
                else torch.contiguous_format)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on a GPU (training.bf16), nothing on CPU (float32, bit-identical
        reruns)."""
        if self.cuda and self.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


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
        yield Runtime(device=device, rank=rank, world_size=world_size,
                      bf16=settings["bf16"], channels_last=settings["channels_last"])
    finally:
        if world_size > 1:
            dist.destroy_process_group()
        torch.use_deterministic_algorithms(deterministic)


# ------------------------------------------------------------------ state and checkpoints


@dataclass
class TrainingState:
    """Progress of a run after ``epoch`` finished epochs (saved in every checkpoint)."""

    epoch: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = 0
    best_model: dict[str, torch.Tensor] | None = None
    """CPU copy of the state dict of the best epoch so far."""
    epochs_without_improvement: int = 0
    finished: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    """One row (cosmo_sbi.outputs.HISTORY_FIELDS) per finished epoch."""
    wall_time_s: float = 0.0
    train_time_s: float = 0.0
    train_samples: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain fields (no deep copy of the weights), as the checkpoint stores them."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass
class Optimisation:
    """The network (unwrapped), its optimizer and learning-rate schedule."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler


def run_fingerprint(config: Config, model_name: str, dataset_hash: str,
                    train_fraction: float = 1.0) -> dict[str, str]:
    """Hashes of what a run learns from: the dataset's content (DatasetFile.content_hash),
    the resolved model config (preset + overrides) and the training config (not
    RESULT_NEUTRAL_SETTINGS; with a learning-curve ``train_fraction`` below 1, that too).
    No path enters: a checkpoint follows its results folder."""
    model = resolve_config(model_name, config["models"][model_name])
    training = {key: value for key, value in config["training"].items()
                if key not in RESULT_NEUTRAL_SETTINGS}
    if train_fraction < 1.0:  # the full split keeps the fingerprint of before the curve
        training["train_fraction"] = train_fraction
    return {"dataset content": dataset_hash,
            "model config": config_hash({"name": model_name,
                                         "config": dataclasses.asdict(model)}),
            "training config": config_hash(training)}


def save_checkpoint(path: Path, fingerprint: dict[str, str], run: Optimisation,
                    state: TrainingState) -> None:
    """Everything :func:`restore_checkpoint` needs to continue bit-identically, atomically."""
    with atomic_path(path) as temporary:
        torch.save({"fingerprint": fingerprint, "model": run.model.state_dict(),
                    "optimizer": run.optimizer.state_dict(),
                    "scheduler": run.scheduler.state_dict(), "rng": rng_states(),
                    "state": state.as_dict()}, temporary)


def _set_aside(path: Path, rt: Runtime, reason: str) -> None:
    """Rename a damaged checkpoint out of the way (rank 0; the others just start fresh)."""
    aside = path.with_name(path.name + DAMAGED_SUFFIX)
    if rt.is_main:
        os.replace(path, aside)
    log.warning("%s is damaged (%s): renamed to %s; training from scratch", path, reason, aside)


def restore_checkpoint(path: Path, fingerprint: dict[str, str], run: Optimisation,
                       rt: Runtime, model_name: str) -> TrainingState:
    """The state to continue from: the checkpoint's, loaded into ``run`` with the RNG states,
    when it belongs to this run; a fresh state otherwise. Logs which, and why."""
    try:
        checkpoint = read_torch_file(path)
    except FileNotFoundError:
        log.info("no checkpoint at %s: training %s from scratch", path, model_name)
        return TrainingState()
    except ValueError as error:
        _set_aside(path, rt, str(error.__cause__ or error))
        return TrainingState()
    stored = checkpoint.get("fingerprint") if isinstance(checkpoint, dict) else None
    if not isinstance(stored, dict):
        log.warning("%s was written by an older cosmo_sbi (no run fingerprint): training from "
                    "scratch", path)
        return TrainingState()
    changed = [key for key in fingerprint if stored.get(key) != fingerprint[key]]
    if changed:
        log.warning("%s belongs to another run (changed: %s): training from scratch", path,
                    ", ".join(changed))
        return TrainingState()
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        _set_aside(path, rt, f"missing {missing}")
        return TrainingState()
    try:
        run.model.load_state_dict(checkpoint["model"])
        run.optimizer.load_state_dict(checkpoint["optimizer"])
        run.scheduler.load_state_dict(checkpoint["scheduler"])
        state = TrainingState(**checkpoint["state"])
        restore_rng_states(checkpoint["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        # the network may already hold part of it: set it aside and stop; a rerun starts fresh
        _set_aside(path, rt, f"{type(error).__name__}: {error}")
        raise ValueError(f"{path}: damaged checkpoint set aside; rerun to train from "
                         "scratch") from error
    log.info("resuming %s from %s after epoch %d (same dataset content, model and training "
             "config)", model_name, path, state.epoch)
    return state


# --------------------------------------------------------------------- the loop's parts


def build_optimisation(config: Config, model_name: str, grid_size: int, steps_per_epoch: int,
                       rt: Runtime) -> Optimisation:
    """A fresh network on the device, AdamW (no weight decay on biases and norms) and the
    per-step warm-up + cosine schedule."""
    settings = config["training"]
    model = build_model(model_name, config["models"][model_name], grid_size=grid_size,
                        n_params=len(PARAMETER_NAMES)).to(rt.device)
    model = model.to(memory_format=rt.memory_format)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]  # biases, norms
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=settings["learning_rate"], fused=rt.cuda and settings["fused_adamw"],
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(
        settings["warmup_epochs"] * steps_per_epoch, settings["epochs"] * steps_per_epoch))
    return Optimisation(model=model, optimizer=optimizer, scheduler=scheduler)


def _sum_and_count(loss: torch.Tensor, n: int, rt: Runtime) -> torch.Tensor:
    return torch.stack([loss.detach().double() * n,
                        torch.tensor(n, dtype=torch.float64, device=rt.device)])


def train_one_epoch(model: nn.Module, run: Optimisation, batches: Iterable[Batch],
                    loss_function: Callable, rt: Runtime, description: str,
                    steps: int) -> tuple[float, int, float]:
    """One pass over the ``steps`` device ``batches`` with ``model`` (``run.model`` or its
    DDP/compiled wrapper): the mean training loss over all ranks, the number of samples and
    the seconds taken."""
    model.train()
    start = time.perf_counter()
    loss_sum = torch.zeros(2, dtype=torch.float64, device=rt.device)  # sum, count
    progress = tqdm(batches, total=steps, desc=description, file=sys.stderr, leave=False,
                    disable=not rt.is_main, dynamic_ncols=True)
    for step, (x, y) in enumerate(progress):
        with rt.autocast():
            mean, log_var = model(x)
        loss = loss_function(mean, log_var, y)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
        run.optimizer.step()
        run.scheduler.step()
        loss_sum += _sum_and_count(loss, len(x), rt)
        if rt.is_main and step % PROGRESS_EVERY == 0:
            progress.set_postfix(loss=f"{loss.item():.4f}")
    if rt.cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if rt.world_size > 1:
        dist.all_reduce(loss_sum)
    return (loss_sum[0] / loss_sum[1]).item(), int(loss_sum[1].item()), seconds


@torch.no_grad()
def validate(model: nn.Module, batches: Iterable[Batch], loss_function: Callable,
             rt: Runtime) -> float:
    """Mean validation loss; every rank sees the whole validation set, rank 0's value rules."""
    model.eval()
    val_sum = torch.zeros(2, dtype=torch.float64, device=rt.device)
    with rt.autocast():
        for x, y in batches:
            mean, log_var = model(x)
            val_sum += _sum_and_count(loss_function(mean, log_var, y), len(x), rt)
    val_loss = val_sum[0:1] / val_sum[1]
    if rt.world_size > 1:
        dist.broadcast(val_loss, src=0)
    return val_loss.item()


def record_epoch(state: TrainingState, run: Optimisation, settings: Config, train_loss: float,
                 val_loss: float, samples: int, seconds: float, wall_time_s: float) -> bool:
    """Update ``state`` after an epoch (best weights, early stopping, history); return
    whether early stopping ended the run."""
    state.epoch += 1
    if val_loss < state.best_val_loss:
        state.best_val_loss, state.best_epoch = val_loss, state.epoch
        state.epochs_without_improvement = 0
        state.best_model = {k: v.detach().to("cpu", copy=True)
                            for k, v in run.model.state_dict().items()}
    else:
        state.epochs_without_improvement += 1
    stop = state.epochs_without_improvement >= settings["early_stopping_patience"]
    state.finished = stop or state.epoch >= settings["epochs"]
    state.wall_time_s = wall_time_s
    state.train_time_s += seconds
    state.train_samples += samples
    state.history.append({
        "epoch": state.epoch, "train_loss": train_loss, "val_loss": val_loss,
        "learning_rate": run.scheduler.get_last_lr()[0], "samples_per_second": samples / seconds,
        "wall_time_s": wall_time_s,
    })
    return stop


def training_summary(model_name: str, run: Optimisation, state: TrainingState,
                     settings: Config, rt: Runtime, data: Batches) -> dict[str, Any]:
    """The content of training_summary.json."""
    samples_per_second = state.train_samples / max(state.train_time_s, 1e-12)
    device_name = torch.cuda.get_device_name(rt.device) if rt.cuda else "cpu"
    return {
        "model": model_name, "parameters": count_parameters(run.model),
        "training_flops_per_sample": training_flops_per_sample(run.model),
        "loss": settings["loss"], "seed": settings["seed"],
        "epochs_run": state.epoch, "best_epoch": state.best_epoch,
        "best_val_loss": state.best_val_loss,
        "stopped_early": state.epochs_without_improvement >= settings["early_stopping_patience"],
        "wall_time_s": state.wall_time_s, "samples_per_second": samples_per_second,
        "mfu": model_flops_utilisation(run.model, samples_per_second, device_name),
        "device": device_name, "world_size": rt.world_size,
        "train_samples": data.train_size, "validation_samples": data.validation_size,
        "data_on_device": data.resident,
    }


# --------------------------------------------------------------------- training loop


def train_model(config: Config, model_name: str, dataset_path: str | os.PathLike[str],
                output_dir: str | os.PathLike[str],
                train_fraction: float = 1.0) -> dict[str, Any]:
    """Train ``model_name`` on ``dataset_path``; write the outputs listed in the module doc to
    ``output_dir`` and return the training summary. Resumes from ``checkpoints/last.pt``.

    ``train_fraction`` < 1: train on that nested subset of the training split
    (cosmo_sbi.learning_curve.nested_subset, seeded with training.seed), the validation
    split unchanged."""
    settings = config["training"]
    if settings["loss"] not in LOSSES:
        raise ConfigError(f"training.loss: expected one of {sorted(LOSSES)}, "
                          f"got {settings['loss']!r}")
    loss_function, seed = LOSSES[settings["loss"]], settings["seed"]
    output_dir, checkpoint_path = Path(output_dir), Path(output_dir) / CHECKPOINT_FILE

    with runtime(settings) as rt:
        seed_everything(seed)
        data = training_batches(dataset_path, settings, rt.device, rt.rank, rt.world_size,
                                rt.memory_format, train_fraction)
        grid_shape = data.grid_shape
        if len(set(grid_shape)) != 1:
            raise ValueError(f"{dataset_path}: the networks need a cubic grid "
                             f"(histogram.bins equal), got inputs of shape {grid_shape}")
        run = build_optimisation(config, model_name, grid_shape[0], data.steps_per_epoch, rt)

        fingerprint = run_fingerprint(config, model_name, read_dataset(dataset_path).content_hash,
                                      train_fraction)
        state = restore_checkpoint(checkpoint_path, fingerprint, run, rt, model_name)
        model = run.model  # what the training steps call: DDP and/or compiled on request
        if rt.world_size > 1:
            model = DistributedDataParallel(model, device_ids=[rt.device.index] if rt.cuda
                                            else None)
        if settings["compile"]:
            model = torch.compile(model)

        session_start, wall_time_before = time.perf_counter(), state.wall_time_s
        while not state.finished:
            train_loss, samples, seconds = train_one_epoch(
                model, run, data.train_batches(state.epoch), loss_function, rt,
                f"{model_name} epoch {state.epoch + 1}/{settings['epochs']}",
                data.steps_per_epoch)
            val_loss = validate(run.model, data.validation_batches(), loss_function, rt)
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                raise ValueError(
                    f"training.learning_rate: {model_name} diverged in epoch {state.epoch + 1} "
                    f"(train loss {train_loss}, validation loss {val_loss}); expected a "
                    f"smaller learning rate than {settings['learning_rate']}")
            stop = record_epoch(state, run, settings, train_loss, val_loss, samples, seconds,
                                wall_time_before + time.perf_counter() - session_start)
            log.info("%s epoch %d/%d: train %.5f, validation %.5f, %.1f samples/s%s",
                     model_name, state.epoch, settings["epochs"], train_loss, val_loss,
                     samples / seconds, " (early stop)" if stop else "")
            if rt.is_main:
                save_checkpoint(checkpoint_path, fingerprint, run, state)
                write_history(state.history, output_dir / HISTORY_FILE)

        summary = training_summary(model_name, run, state, settings, rt, data)
        if rt.is_main:
            save_trained(output_dir, model_name, run.model, state.best_model)
            write_history(state.history, output_dir / HISTORY_FILE)
            write_json(summary, output_dir / TRAINING_SUMMARY_FILE)
        if rt.world_size > 1:
            dist.barrier()
        # The DDP wrapper's Reducer holds the process group: free it while the group is
        # alive. Freed after destroy_process_group, gloo's destructor can hang forever.
        del model
        gc.collect()
    return summary
