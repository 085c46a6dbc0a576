"""Posterior-training time: sbi's NPE with the config.yaml settings on a synthetic summary
table at paper scale.

    python benchmarks/bench_posterior.py                  # 200 training rows, 12 features
    python benchmarks/bench_posterior.py --rows 200 --features 95 --threads 2

Paper scale: the NPE trains on the 200 validation cosmologies (dataset.split 0.7/0.2/0.1 of
1000) and samples posterior.n_samples for the 100 test cosmologies and 100 fiducial seeds.
Features: 12 for a network (mean, log sigma per parameter), ~83 for two-point summaries, 107
for combined. Prints training time, epochs and the sampling time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))  # for tests.conftest

from cosmo_sbi.dataset import prior_bounds  # noqa: E402
from cosmo_sbi.posterior import NPESettings, train_box_npe  # noqa: E402
from tests.conftest import make_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200, help="NPE training simulations")
    parser.add_argument("--features", type=int, default=12, help="summaries per simulation")
    parser.add_argument("--evaluated", type=int, default=200, help="posteriors to sample")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = make_config()
    lower, upper = prior_bounds(config)
    rng = np.random.default_rng(0)
    unit = rng.random((args.rows + args.evaluated, 6))
    # summaries: noisy linear mixtures of the parameters (6 informative directions)
    mixing = rng.standard_normal((6, args.features))
    x = unit @ mixing + 0.1 * rng.standard_normal((len(unit), args.features))
    theta = lower + (upper - lower) * unit
    settings = NPESettings.from_config(config)
    start = time.perf_counter()
    trained = train_box_npe(theta[:args.rows], x[:args.rows], lower, upper, settings, seed=0)
    training = time.perf_counter() - start
    start = time.perf_counter()
    trained.sample(x[args.rows:], config["posterior"]["n_samples"], seed=1)
    sampling = time.perf_counter() - start
    print(f"NPE ({settings.density_estimator}, {settings.num_transforms} x "
          f"{settings.hidden_features}) on {args.rows} rows x {args.features} features, "
          f"{args.threads} thread(s): training {training:.1f} s "
          f"({trained.summary['epochs']} epochs, {training / trained.summary['epochs']:.2f} "
          f"s/epoch); sampling {config['posterior']['n_samples']} x {args.evaluated} "
          f"posteriors {sampling:.1f} s")


if __name__ == "__main__":
    main()
