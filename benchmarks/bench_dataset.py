"""Dataset stage and loader speed at the paper's 64^3 resolution.

    python benchmarks/bench_dataset.py            # 200 + 20 toy histograms
    python benchmarks/bench_dataset.py --n 1000   # the paper's Latin hypercube

Prints the time to build the dataset file, to load the training split into memory, and the
cost of one augmented item (a transverse symmetry of a 64^3 float32 volume) next to the same
symmetry done with torch.flip. Target: an augmented item well under 1 ms, so two DataLoader
workers keep up with a GPU training at ~1000 samples/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cosmo_sbi.dataset import build_dataset
from cosmo_sbi.toy import toy_config, write_histograms
from cosmo_sbi.training_set import HistogramDataset


def _seconds(function, repeats: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="Latin-hypercube histograms")
    args = parser.parse_args()
    config = toy_config({"histogram": {"bins": [64, 64, 64]},
                           "design": {"latin_hypercube": {"n_simulations": args.n},
                                      "fiducial": {"n_simulations": 20}}})
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        paths = write_histograms(config, folder)
        dataset = folder / "dataset.h5"
        build = _seconds(lambda: build_dataset(config, paths["latin_hypercube"],
                                               paths["fiducial"], dataset))
        start = time.perf_counter()
        train = HistogramDataset(dataset, "train", augment=True)
        load = time.perf_counter() - start
        item = _seconds(lambda: [train[i] for i in range(len(train))]) / len(train)
        volume = torch.from_numpy(np.ascontiguousarray(train.inputs[0]))
        flip = _seconds(lambda: torch.flip(volume, [1, 2]).transpose(1, 2).contiguous(), 20)
    total = args.n + 20
    print(f"build dataset ({total} x 64^3): {build:.2f} s ({1e3 * build / total:.1f} ms/file)")
    print(f"load train split ({len(train)} x 64^3): {load:.2f} s")
    print(f"augmented item: {1e3 * item:.3f} ms; torch.flip + transpose: {1e3 * flip:.2f} ms "
          f"(ratio {flip / item:.0f}x)")


if __name__ == "__main__":
    main()
