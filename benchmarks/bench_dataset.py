"""Dataset stage and loader speed at the paper's 64^3 resolution, and the file size in counts.

    python benchmarks/bench_dataset.py                  # 200 + 20 toy histograms
    python benchmarks/bench_dataset.py --n 1000         # the paper's Latin hypercube
    python benchmarks/bench_dataset.py --embedded 24    # 24 + 4 real 128^3 embedded cones

Prints the time to build the dataset file, its size next to the float32 layout the file
had before it stored counts (same chunks, no compression), the time to read the training
split from each, and the cost of one augmented item (a transverse symmetry of a 64^3
float32 volume) next to the same symmetry done with torch.flip. ``--embedded`` uses light
cones of the embedded simulator (laptop preset, 128^3 grid, paper mass cut): the toy cones
hold ~100 times fewer halos, so only real cones measure the compression.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))  # for tests.synthetic_histograms

from cosmo_sbi.config import Config  # noqa: E402
from cosmo_sbi.dataset import HistogramDataset, build_dataset  # noqa: E402
from cosmo_sbi.design import design_table  # noqa: E402
from cosmo_sbi.histogram import histogram_lightcone_file  # noqa: E402
from cosmo_sbi.inputs import read_inputs  # noqa: E402
from tests.synthetic_histograms import small_config, write_histograms  # noqa: E402


def _seconds(function, repeats: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def embedded_histograms(config: Config, directory: Path) -> dict[str, list[Path]]:
    """Histogram files of both design sets from embedded-simulator light cones."""
    from cosmo_sbi.simulators.embedded import simulate_lightcone

    paths: dict[str, list[Path]] = {}
    for set_name in ("latin_hypercube", "fiducial"):
        table = design_table(config, set_name)
        paths[set_name] = []
        for table_row in table:
            row = {name: table_row[name].item() for name in table.colnames if name != "id"}
            row.update(id=str(table_row["id"]), set=set_name)
            lightcone = directory / "lightcones" / set_name / f"{row['id']}.h5"
            simulate_lightcone(config, row, lightcone, threads=2)
            histogram = directory / set_name / f"{row['id']}.h5"
            histogram_lightcone_file(config, lightcone, histogram)
            paths[set_name].append(histogram)
    return paths


def legacy_file(dataset: Path, output: Path) -> None:
    """The dataset's inputs in the float32 layout of the file before it stored counts."""
    with h5py.File(dataset, "r") as source, h5py.File(output, "w") as target:
        inputs = read_inputs(source, np.arange(len(source["counts"])))
        target.create_dataset("inputs", data=inputs, chunks=(1, *inputs.shape[1:]))
        for name in ("theta", "prior_lower", "prior_upper", "ids", "set", "split"):
            source.copy(name, target)


def lzf_file(dataset: Path, output: Path) -> None:
    """The dataset's counts with the lzf filter instead of gzip (the alternative measured)."""
    with h5py.File(dataset, "r") as source, h5py.File(output, "w") as target:
        counts = source["counts"]
        target.create_dataset("counts", data=counts[...], chunks=counts.chunks,
                              compression="lzf", shuffle=True, fletcher32=True)


def _read_rows(path: Path, name: str, rows: np.ndarray) -> None:
    with h5py.File(path, "r") as handle:
        source = handle[name]
        out = np.empty((len(rows), *source.shape[1:]), dtype=source.dtype)
        for position, row in enumerate(rows):
            source.read_direct(out, np.s_[row], np.s_[position])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="Latin-hypercube histograms")
    parser.add_argument("--fiducial", type=int, default=20, help="fiducial histograms")
    parser.add_argument("--embedded", action="store_true",
                        help="real embedded-simulator light cones (128^3 grid) instead of toys")
    args = parser.parse_args()
    overlay = {"histogram": {"bins": [64, 64, 64]},
               "design": {"latin_hypercube": {"n_simulations": args.n},
                          "fiducial": {"n_simulations": args.fiducial}}}
    config = small_config(overlay)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        start = time.perf_counter()
        if args.embedded:
            paths = embedded_histograms(config, folder)
        else:
            paths = write_histograms(config, folder)
        made = time.perf_counter() - start
        dataset, legacy = folder / "dataset.h5", folder / "legacy.h5"
        build = _seconds(lambda: build_dataset(config, paths["latin_hypercube"],
                                               paths["fiducial"], dataset))
        legacy_file(dataset, legacy)
        lzf = folder / "lzf.h5"
        lzf_file(dataset, lzf)
        start = time.perf_counter()
        train = HistogramDataset(dataset, "train", augment=True)
        load = time.perf_counter() - start
        with h5py.File(dataset, "r") as handle:
            rows = np.flatnonzero(handle["split"].asstr()[...] == "train")
            dtype, mean_count = handle["counts"].dtype, float(np.mean(handle["counts"][:8]))
        read_counts = _seconds(lambda: _read_rows(dataset, "counts", rows), 3)
        read_legacy = _seconds(lambda: _read_rows(legacy, "inputs", rows), 3)
        read_lzf = _seconds(lambda: _read_rows(lzf, "counts", rows), 3)
        item = _seconds(lambda: [train[i] for i in range(len(train))]) / len(train)
        volume = torch.from_numpy(np.ascontiguousarray(train.inputs[0]))
        flip = _seconds(lambda: torch.flip(volume, [1, 2]).transpose(1, 2).contiguous(), 20)
        size, legacy_size = dataset.stat().st_size, legacy.stat().st_size
        lzf_size = lzf.stat().st_size
    total = args.n + args.fiducial
    kind = "embedded 128^3" if args.embedded else "toy"
    print(f"{total} {kind} histograms made in {made:.1f} s; mean count per cell "
          f"{mean_count:.2f}, stored as {dtype}")
    print(f"build dataset ({total} x 64^3): {build:.2f} s ({1e3 * build / total:.1f} ms/file)")
    print(f"file size: {size / 2**20:.2f} MiB in counts ({size / total / 1024:.1f} KiB per "
          f"cone) vs {legacy_size / 2**20:.2f} MiB as float32: {legacy_size / size:.1f}x smaller")
    print(f"counts with lzf instead of gzip: {lzf_size / 2**20:.2f} MiB "
          f"({legacy_size / lzf_size:.1f}x smaller than float32)")
    print(f"read train split ({len(rows)} x 64^3): counts {read_counts:.3f} s (lzf "
          f"{read_lzf:.3f} s), float32 {read_legacy:.3f} s; HistogramDataset (read + "
          f"transform) {load:.3f} s")
    print(f"augmented item: {1e3 * item:.3f} ms; torch.flip + transpose: {1e3 * flip:.2f} ms "
          f"(ratio {flip / item:.0f}x)")


if __name__ == "__main__":
    main()
