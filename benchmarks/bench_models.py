"""Training throughput of the paper-preset networks on 64^3 inputs, and a real GPU training run.

    python benchmarks/bench_models.py throughput                  # CPU float32, batch 2
    python benchmarks/bench_models.py throughput --device cuda    # GPU bf16, batch 16, MFU
    python benchmarks/bench_models.py train --epochs 3            # train_model, 1000 samples
    python benchmarks/bench_models.py throughput --models cnn --preset small --against stem_stride=1

``throughput`` times full optimizer steps (forward, backward, AdamW) on random inputs and
prints samples/s (``--against FIELD=VALUE``: also of the preset with those fields changed,
and the ratio, in one run), achieved TFLOP/s (analytic FLOPs, cosmo_sbi.models) and, on a known GPU,
the MFU against its dense bf16 peak. ``train`` makes 1000 synthetic 64^3 histograms with the
real histogram and dataset writers (toy light cones of tests/synthetic_histograms.py), runs the
real :func:`cosmo_sbi.train.train_model` for a few epochs per model and projects the time of
the paper workload (1000 samples x 100 epochs) from the epochs after the first (the first
includes cuDNN autotuning and, with --compile, compilation). Target: <= 10 min per model on
one H100.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))  # for tests.synthetic_histograms

from cosmo_sbi import PARAMETER_NAMES  # noqa: E402
from cosmo_sbi.config import Config  # noqa: E402
from cosmo_sbi.dataset import build_dataset  # noqa: E402
from cosmo_sbi.models import (  # noqa: E402
    build_model,
    count_parameters,
    model_flops_utilisation,
    training_flops_per_sample,
)
from cosmo_sbi.train import gaussian_nll, train_model  # noqa: E402
from tests.synthetic_histograms import small_config, write_histograms  # noqa: E402

GRID_SIZE = 64
PAPER_SAMPLES, PAPER_EPOCHS = 1000, 100
TARGET_SECONDS = 600.0


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def throughput(name: str, device: torch.device, batch_size: int, steps: int,
               warmup_steps: int, compile_model: bool,
               model_config: dict | None = None) -> float:
    """Samples/s of full training steps of ``name`` (the paper preset unless
    ``model_config`` says otherwise) on ``device``."""
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    memory_format = torch.channels_last_3d if cuda else torch.contiguous_format
    model = build_model(name, model_config or {"preset": "paper"}, grid_size=GRID_SIZE)
    model = model.to(device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    step_model = torch.compile(model) if compile_model else model
    x = torch.randn(batch_size, 1, GRID_SIZE, GRID_SIZE, GRID_SIZE, device=device)
    x = x.contiguous(memory_format=memory_format)
    y = torch.rand(batch_size, len(PARAMETER_NAMES), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)
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
        optimizer.step()
    if cuda:
        torch.cuda.synchronize()
    samples_per_second = batch_size * steps / (time.perf_counter() - start)

    flops = training_flops_per_sample(model)
    mfu = model_flops_utilisation(model, samples_per_second, device_name(device))
    projected = PAPER_SAMPLES * PAPER_EPOCHS / samples_per_second
    print(f"{name:4s} {model_config or ''} {count_parameters(model) / 1e6:6.2f}M params  "
          f"{device_name(device)}  "
          f"{'bf16' if cuda else 'fp32'}  batch {batch_size}: {samples_per_second:9.2f} "
          f"samples/s  {flops * samples_per_second / 1e12:7.3f} TFLOP/s  "
          f"MFU {'n/a' if mfu is None else f'{100 * mfu:.1f}%'}  "
          f"[{flops / 1e9:.1f} GFLOP/sample]  "
          f"1000 x 100 epochs: {projected / 60:.1f} min (steps only)", flush=True)
    return samples_per_second


def synthetic_config(samples: int, epochs: int, device: str, compile_model: bool,
                     batch_size: int) -> Config:
    """The laptop config with 64^3 bins, ``samples`` Latin-hypercube cosmologies, the paper
    networks and the given training settings."""
    return small_config({
        "histogram": {"bins": [GRID_SIZE] * 3},
        "design": {"latin_hypercube": {"n_simulations": samples},
                   "fiducial": {"n_simulations": 1}},
        "models": {"cnn": {"preset": "paper"}, "vit": {"preset": "paper"}},
        "training": {"epochs": epochs, "warmup_epochs": 1, "device": device,
                     "compile": compile_model, "batch_size": batch_size,
                     "early_stopping_patience": epochs},
    })


def train_check(models: list[str], samples: int, epochs: int, device: str,
                compile_model: bool, batch_size: int, directory: Path) -> None:
    """Run train_model on ``samples`` synthetic 64^3 histograms (toy light cones through the
    real histogram and dataset writers, tests/synthetic_histograms.py); print the projected
    time of 1000 samples x 100 epochs."""
    config = synthetic_config(samples, epochs, device, compile_model, batch_size)
    dataset = directory / "synthetic_dataset.h5"
    start = time.perf_counter()
    histograms = write_histograms(config, directory / "histograms")
    build_dataset(config, histograms["latin_hypercube"], histograms["fiducial"], dataset)
    print(f"synthetic dataset of {samples} x {GRID_SIZE}^3 written in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    for name in models:
        summary = train_model(config, name, dataset, directory / name)
        history = np.genfromtxt(directory / name / "history.csv", delimiter=",", names=True)
        epoch_seconds = np.diff(np.concatenate([[0.0], np.atleast_1d(history["wall_time_s"])]))
        steady = epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds
        projected = PAPER_EPOCHS * float(np.mean(steady)) * PAPER_SAMPLES / samples
        mfu = summary["mfu"]
        print(f"{name}: {summary['parameters'] / 1e6:.2f}M params on {summary['device']}, "
              f"{epochs} epochs in {summary['wall_time_s']:.1f} s (first {epoch_seconds[0]:.1f}"
              f" s), {summary['samples_per_second']:.1f} samples/s, "
              f"MFU {'n/a' if mfu is None else f'{100 * mfu:.1f}%'}; projected "
              f"{PAPER_SAMPLES} samples x {PAPER_EPOCHS} epochs: {projected / 60:.1f} min "
              f"({'within' if projected <= TARGET_SECONDS else 'OVER'} the "
              f"{TARGET_SECONDS / 60:.0f} min target)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models", nargs="+", default=["cnn", "vit"], choices=["cnn", "vit"])
    common.add_argument("--compile", action="store_true", help="torch.compile the model")
    modes = parser.add_subparsers(dest="mode", required=True)
    bench = modes.add_parser("throughput", parents=[common],
                             help="samples/s of training steps")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    bench.add_argument("--batch-size", type=int, help="default: 2 on CPU, 16 on GPU")
    bench.add_argument("--steps", type=int, help="timed steps; default: 3 on CPU, 20 on GPU")
    bench.add_argument("--warmup-steps", type=int, default=1)
    bench.add_argument("--preset", default="paper", help="model preset (paper, small)")
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
        changed = {field: yaml.safe_load(value)
                   for field, value in (item.split("=", 1) for item in args.against)}
        for name in args.models:
            rates = [throughput(name, device, args.batch_size or (16 if cuda else 2),
                                args.steps or (20 if cuda else 3), args.warmup_steps,
                                args.compile, {"preset": args.preset, **variant})
                     for variant in ([{}, changed] if changed else [{}])]
            if changed:
                print(f"{name}: preset {args.preset} is {rates[0] / rates[1]:.2f}x the "
                      f"samples/s of the same with {changed}")
    elif args.directory:
        args.directory.mkdir(parents=True, exist_ok=True)
        train_check(args.models, args.samples, args.epochs, args.device, args.compile,
                    args.batch_size, args.directory)
    else:
        with tempfile.TemporaryDirectory() as directory:
            train_check(args.models, args.samples, args.epochs, args.device, args.compile,
                        args.batch_size, Path(directory))


if __name__ == "__main__":
    main()
