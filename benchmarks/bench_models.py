"""Training throughput of the paper-preset networks on 64^3 inputs, and a real GPU training run.

    python benchmarks/bench_models.py throughput                  # CPU float32, batch 2
    python benchmarks/bench_models.py throughput --device cuda    # GPU bf16, batch 16, MFU
    python benchmarks/bench_models.py train --epochs 3            # train_model, 1000 samples
    python benchmarks/bench_models.py throughput --device cuda --variants default,no-bf16,compile
    python benchmarks/bench_models.py throughput --models cnn --preset small --against stem_stride=1

``throughput`` times full optimizer steps (forward, backward, clipping, AdamW) on random
inputs and prints samples/s (``--against FIELD=VALUE``: also of the preset with those
fields changed, and the ratio, in one run), achieved TFLOP/s (analytic FLOPs,
cosmo_sbi.models), on a known GPU the MFU against its dense bf16 peak, and the peak GPU
memory, for each variant of the fast paths (bf16 autocast, fused AdamW, channels_last_3d,
torch.compile, the ViT's SDPA kernel). ``train`` makes 1000 synthetic 64^3 histograms with
the real histogram and dataset writers (toy light cones of cosmo_sbi/toy.py), runs the real
:func:`cosmo_sbi.train.train_model` (by default on device-resident data) for a few epochs per
model and projects the time of the paper workload (1000 samples x 100 epochs) from the
epochs after the first (the first includes cuDNN autotuning and, with ``--variant compile``,
compilation). Target (issue 12): <= 2 min per model on one H100/H200 in bf16.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import yaml

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.config import Config
from cosmo_sbi.dataset import build_dataset
from cosmo_sbi.models.build import (
    build_model,
    count_parameters,
    model_flops_utilisation,
    training_flops_per_sample,
)
from cosmo_sbi.toy import toy_config, write_histograms
from cosmo_sbi.train import gaussian_nll, train_model

GRID_SIZE = 64
PAPER_SAMPLES, PAPER_EPOCHS = 1000, 100
TARGET_SECONDS = 120.0


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


@dataclass(frozen=True)
class Variant:
    """One combination of the fast paths (the training.* switches, CUDA only but compile)."""

    bf16: bool = True
    fused_adamw: bool = True
    channels_last: bool = True
    compile: bool = False
    sdpa: str = "auto"  # auto | math | flash | efficient | cudnn (ViT attention kernels)

    def label(self) -> str:
        changes = [f"{field.name}={getattr(self, field.name)}" for field in fields(self)
                   if getattr(self, field.name) != field.default]
        return ",".join(changes) or "default"


VARIANTS: dict[str, Variant] = {
    "default": Variant(),
    "no-bf16": Variant(bf16=False),
    "no-fused": Variant(fused_adamw=False),
    "no-channels-last": Variant(channels_last=False),
    "compile": Variant(compile=True),
    "sdpa-math": Variant(sdpa="math"),
    "sdpa-flash": Variant(sdpa="flash"),
    "sdpa-efficient": Variant(sdpa="efficient"),
    "sdpa-cudnn": Variant(sdpa="cudnn"),
}
"""Named variants of ``--variants``; the sdpa ones apply to the ViT only."""


def _sdpa_context(choice: str) -> contextlib.AbstractContextManager:
    if choice == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {"math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
    return sdpa_kernel(backends[choice])


def throughput(name: str, device: torch.device, batch_size: int, steps: int,
               warmup_steps: int, variant: Variant = Variant(),
               model_config: dict | None = None, grid_size: int = GRID_SIZE) -> float:
    """Samples/s of full training steps (forward, backward, clipping, AdamW) of ``name``
    (its paper preset unless ``model_config`` says otherwise) on ``device`` with the fast
    paths of ``variant``; prints one line with the TFLOP/s, MFU (dense bf16 peak) and peak
    memory."""
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    memory_format = (torch.channels_last_3d if cuda and variant.channels_last
                     else torch.contiguous_format)
    model_config = model_config or {"preset": "paper"}
    model = build_model(name, model_config, grid_size=grid_size)
    model = model.to(device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4,
                                  fused=cuda and variant.fused_adamw)
    step_model = torch.compile(model) if variant.compile else model
    x = torch.randn(batch_size, 1, grid_size, grid_size, grid_size, device=device)
    x = x.contiguous(memory_format=memory_format)
    y = torch.rand(batch_size, len(PARAMETER_NAMES), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and variant.bf16)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with _sdpa_context(variant.sdpa):
        for step in range(warmup_steps + steps):
            if step == warmup_steps:
                if cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
            with autocast:
                mean, log_var = step_model(x)
            loss = gaussian_nll(mean, log_var, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        if cuda:
            torch.cuda.synchronize()
    samples_per_second = batch_size * steps / (time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else float("nan")

    flops = training_flops_per_sample(model)
    mfu = model_flops_utilisation(model, samples_per_second, device_name(device))
    projected = PAPER_SAMPLES * PAPER_EPOCHS / samples_per_second
    print(f"{name:4s} {model_config} {grid_size}^3 {count_parameters(model) / 1e6:6.2f}M params  "
          f"{device_name(device)}  [{variant.label()}]  batch {batch_size}: "
          f"{samples_per_second:9.2f} samples/s  {flops * samples_per_second / 1e12:7.3f} "
          f"TFLOP/s  MFU {'n/a' if mfu is None else f'{100 * mfu:.1f}%'}  peak "
          f"{peak:.2f} GiB  [{flops / 1e9:.1f} GFLOP/sample]  1000 x 100 epochs: "
          f"{projected / 60:.1f} min (steps only)", flush=True)
    return samples_per_second


def synthetic_config(samples: int, epochs: int, device: str, batch_size: int,
                     variant: Variant, data_on_device: str, preset: str,
                     grid_size: int) -> Config:
    """The toy config (cosmo_sbi.toy) with ``grid_size``^3 bins, ``samples`` Latin-hypercube
    cosmologies, the ``preset`` networks and the given training settings."""
    return toy_config({
        "histogram": {"bins": [grid_size] * 3},
        "design": {"latin_hypercube": {"n_simulations": samples},
                   "fiducial": {"n_simulations": 1}},
        "models": {"cnn": {"preset": preset}, "vit": {"preset": preset}},
        "training": {"epochs": epochs, "warmup_epochs": 1, "device": device,
                     "batch_size": batch_size, "early_stopping_patience": epochs,
                     "data_on_device": {"true": True, "false": False}.get(data_on_device,
                                                                           data_on_device),
                     "compile": variant.compile,
                     "bf16": variant.bf16, "fused_adamw": variant.fused_adamw,
                     "channels_last": variant.channels_last},
    })


def train_check(models: list[str], samples: int, epochs: int, device: str, batch_size: int,
                variant: Variant, data_on_device: str, preset: str, grid_size: int,
                directory: Path) -> None:
    """Run train_model on ``samples`` synthetic histograms (toy light cones through the real
    histogram and dataset writers, cosmo_sbi/toy.py); print the epoch times and
    the projected time of 1000 samples x 100 epochs."""
    config = synthetic_config(samples, epochs, device, batch_size, variant, data_on_device,
                              preset, grid_size)
    dataset = directory / "synthetic_dataset.h5"
    start = time.perf_counter()
    histograms = write_histograms(config, directory / "histograms")
    build_dataset(config, histograms["latin_hypercube"], histograms["fiducial"], dataset)
    print(f"synthetic dataset of {samples} x {grid_size}^3 written in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    for name in models:
        if device != "cpu" and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        summary = train_model(config, name, dataset, directory / name)
        history = np.genfromtxt(directory / name / "history.csv", delimiter=",", names=True)
        epoch_seconds = np.diff(np.concatenate([[0.0], np.atleast_1d(history["wall_time_s"])]))
        steady = epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds
        projected = PAPER_EPOCHS * float(np.mean(steady)) * PAPER_SAMPLES / samples
        mfu = summary["mfu"]
        peak = (f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
                if device != "cpu" and torch.cuda.is_available() else "n/a")
        print(f"{name}: {summary['parameters'] / 1e6:.2f}M params on {summary['device']} "
              f"[{variant.label()}], data on device: {summary['data_on_device']}, {epochs} "
              f"epochs in {summary['wall_time_s']:.1f} s (epochs "
              f"{', '.join(f'{t:.1f}' for t in epoch_seconds)} s), "
              f"{summary['samples_per_second']:.1f} samples/s, "
              f"MFU {'n/a' if mfu is None else f'{100 * mfu:.1f}%'}, peak {peak}; projected "
              f"{PAPER_SAMPLES} samples x {PAPER_EPOCHS} epochs: {projected / 60:.1f} min "
              f"({'within' if projected <= TARGET_SECONDS else 'OVER'} the "
              f"{TARGET_SECONDS / 60:.0f} min target)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models", nargs="+", default=["cnn", "vit"], choices=["cnn", "vit"])
    common.add_argument("--preset", default="paper", choices=["paper", "small"])
    common.add_argument("--grid-size", type=int, default=GRID_SIZE)
    modes = parser.add_subparsers(dest="mode", required=True)
    bench = modes.add_parser("throughput", parents=[common],
                             help="samples/s of training steps")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    bench.add_argument("--batch-size", type=int, help="default: 2 on CPU, 16 on GPU")
    bench.add_argument("--steps", type=int, help="timed steps; default: 3 on CPU, 20 on GPU")
    bench.add_argument("--warmup-steps", type=int, default=3)
    bench.add_argument("--variants", default="default",
                       help=f"comma-separated, of {', '.join(VARIANTS)}")
    bench.add_argument("--against", nargs="+", default=[], metavar="FIELD=VALUE",
                       help="also time the preset with these fields changed; print the ratio")
    train = modes.add_parser("train", parents=[common],
                             help="train_model on 1000 synthetic 64^3 histograms")
    train.add_argument("--epochs", type=int, default=3)
    train.add_argument("--samples", type=int, default=PAPER_SAMPLES,
                       help="synthetic histograms (fewer for a quick CPU try; the projection "
                            "scales to 1000)")
    train.add_argument("--device", default="cuda", choices=["auto", "cpu", "cuda"])
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--variant", default="default", choices=list(VARIANTS))
    train.add_argument("--data-on-device", default="true", choices=["auto", "true", "false"])
    train.add_argument("--directory", type=Path, help="work directory (default: a temporary one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    if args.mode == "throughput":
        device = torch.device(args.device)
        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
        unknown = set(args.variants.split(",")) - set(VARIANTS)
        if unknown:
            parser.error(f"--variants: unknown {sorted(unknown)}; expected {list(VARIANTS)}")
        changed = {field: yaml.safe_load(value)
                   for field, value in (item.split("=", 1) for item in args.against)}
        for key in args.variants.split(","):  # variants outer: a slow compile comes last
            for name in args.models:
                if key.startswith("sdpa") and name != "vit":
                    continue
                try:
                    rates = [throughput(name, device, args.batch_size or (16 if cuda else 2),
                                        args.steps or (20 if cuda else 3), args.warmup_steps,
                                        VARIANTS[key], {"preset": args.preset, **fields},
                                        args.grid_size)
                             for fields in ([{}, changed] if changed else [{}])]
                except Exception as error:  # one failing kernel must not hide the others
                    print(f"{name} [{key}]: FAILED {type(error).__name__}: {error}",
                          flush=True)
                    continue
                if changed:
                    print(f"{name}: preset {args.preset} is {rates[0] / rates[1]:.2f}x the "
                          f"samples/s of the same with {changed}")
        return
    options = (args.models, args.samples, args.epochs, args.device, args.batch_size,
               VARIANTS[args.variant], args.data_on_device, args.preset, args.grid_size)
    if args.directory:
        args.directory.mkdir(parents=True, exist_ok=True)
        train_check(*options, args.directory)
    else:
        with tempfile.TemporaryDirectory() as directory:
            train_check(*options, Path(directory))


if __name__ == "__main__":
    main()
