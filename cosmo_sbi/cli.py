"""``cosmo-sbi <stage>``: one subcommand per workflow stage, usable without Snakemake.

Every subcommand takes the configuration (``--config``, repeatable: later files overlay
earlier ones, e.g. ``--config config.yaml --config config/laptop.yaml``) and explicit input
and output paths. Stage modules are imported lazily so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from cosmo_sbi.config import Config, ConfigError, load_config

Handler = Callable[[argparse.Namespace, Config], None]


def _design(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.design import write_design

    write_design(config, args.set, args.output)


def _simulate(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.design import read_design_row
    from cosmo_sbi.simulators.embedded import simulate_lightcone

    simulate_lightcone(config, read_design_row(args.design, args.id), args.output,
                       threads=args.threads)


def _pinocchio_setup(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.design import read_design_row
    from cosmo_sbi.simulators.pinocchio import setup_run

    setup_run(config, read_design_row(args.design, args.id), args.run_dir)


def _pinocchio_run(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.simulators.pinocchio import run_pinocchio

    run_pinocchio(config, args.run_dir, command=args.command)


def _pinocchio_convert(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.design import read_design_row
    from cosmo_sbi.simulators.pinocchio import convert_run

    convert_run(config, read_design_row(args.design, args.id), args.run_dir, args.output)


def _histogram(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.histogram import histogram_lightcone_file

    histogram_lightcone_file(config, args.input, args.output)


def _dataset(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.dataset import build_dataset

    build_dataset(config, args.latin_hypercube, args.fiducial, args.output)


def _train(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.train import train_model

    train_model(config, args.model, args.dataset, args.output_dir)


def _evaluate(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.evaluate import evaluate_model

    evaluate_model(config, args.model, args.dataset, args.model_dir, args.output_dir)


def _report(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.report import write_report

    write_report(config, args.evaluations, args.output_dir, args.posteriors, args.fisher)


def _network_summaries(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.posterior import write_network_summaries

    write_network_summaries(args.predictions, args.model, args.output)


def _posterior(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.posterior import run_posterior

    bad = [entry for entry in args.summaries if "=" not in entry]
    if bad:
        raise ValueError(f"--summaries {bad}: expected KIND=PATH, e.g. "
                         "cnn=results/summaries/cnn.h5")
    paths = dict(entry.split("=", 1) for entry in args.summaries)
    run_posterior(config, args.method, paths, args.output_dir, args.predictions)


def _add_design_row_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--design", required=True, type=Path,
                        help="design table (ECSV) written by `cosmo-sbi design`")
    parser.add_argument("--id", required=True, help="simulation id (a row of the design)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subcommand per stage."""
    parser = argparse.ArgumentParser(prog="cosmo-sbi", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    stages = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")

    def stage(name: str, handler: Handler, summary: str) -> argparse.ArgumentParser:
        sub = stages.add_parser(name, help=summary, description=summary)
        sub.add_argument("--config", action="append", required=True, type=Path,
                         help="config YAML; repeat to overlay (later wins)")
        sub.set_defaults(handler=handler)
        return sub

    sub = stage("design", _design,
                "Reads the config; writes the design table (ECSV) of one simulation set: "
                "id, six parameters, Omega_b, seed.")
    sub.add_argument("--set", required=True, choices=["latin_hypercube", "fiducial"])
    sub.add_argument("--output", required=True, type=Path, help="ECSV file to write")

    sub = stage("simulate", _simulate,
                "Runs the embedded light-cone simulator for one design row; writes the "
                "common light-cone HDF5 file.")
    _add_design_row_args(sub)
    sub.add_argument("--output", required=True, type=Path, help="light-cone HDF5 to write")
    sub.add_argument("--threads", type=int, default=1, help="FFT worker threads")

    sub = stage("pinocchio-setup", _pinocchio_setup,
                "Reads one design row; writes a PINOCCHIO run directory: parameter_file, "
                "outputs list and (power_spectrum: table) the P(k) table.")
    _add_design_row_args(sub)
    sub.add_argument("--run-dir", required=True, type=Path)

    sub = stage("pinocchio-run", _pinocchio_run,
                "Runs PINOCCHIO inside a run directory made by pinocchio-setup; fails on a "
                "non-zero exit, ERROR in the log, or a missing light-cone file.")
    sub.add_argument("--run-dir", required=True, type=Path)
    sub.add_argument("--command", default=None,
                     help="override simulator.pinocchio.command (e.g. an srun template)")

    sub = stage("pinocchio-convert", _pinocchio_convert,
                "Reads the .plc.out light cone of a finished run; writes the common "
                "light-cone HDF5 file.")
    _add_design_row_args(sub)
    sub.add_argument("--run-dir", required=True, type=Path)
    sub.add_argument("--output", required=True, type=Path, help="light-cone HDF5 to write")

    sub = stage("histogram", _histogram,
                "Reads a common light-cone file; writes the (RA, DEC, z_obs) halo-count "
                "histogram (HDF5) with the configured binning and mass cut.")
    sub.add_argument("--input", required=True, type=Path, help="light-cone HDF5")
    sub.add_argument("--output", required=True, type=Path, help="histogram HDF5 to write")

    sub = stage("dataset", _dataset,
                "Reads histograms; writes one HDF5 dataset with inputs, parameters, ids, "
                "split and the input/parameter transforms.")
    sub.add_argument("--latin-hypercube", nargs="+", required=True, type=Path)
    sub.add_argument("--fiducial", nargs="*", default=[], type=Path)
    sub.add_argument("--output", required=True, type=Path)

    sub = stage("train", _train,
                "Reads the dataset; writes weights, checkpoints and the training history "
                "of one model to OUTPUT_DIR (resumes from its last checkpoint).")
    sub.add_argument("--model", required=True, choices=["cnn", "vit"])
    sub.add_argument("--dataset", required=True, type=Path)
    sub.add_argument("--output-dir", required=True, type=Path)

    sub = stage("evaluate", _evaluate,
                "Reads the dataset and a trained model; writes predictions, metrics.json "
                "and figures to OUTPUT_DIR.")
    sub.add_argument("--model", required=True, choices=["cnn", "vit"])
    sub.add_argument("--dataset", required=True, type=Path)
    sub.add_argument("--model-dir", required=True, type=Path)
    sub.add_argument("--output-dir", required=True, type=Path)

    sub = stage("network-summaries", _network_summaries,
                "Reads a network's predictions.ecsv; writes its summary table (HDF5: per "
                "parameter the predicted mean and log sigma, rows in the dataset's order).")
    sub.add_argument("--model", required=True, choices=["cnn", "vit"])
    sub.add_argument("--predictions", required=True, type=Path)
    sub.add_argument("--output", required=True, type=Path)

    sub = stage("posterior", _posterior,
                "Reads summary tables; trains sbi's NPE of one method on posterior.train_splits "
                "and writes samples.h5 (test split and fiducial seeds), metrics.json (TARP, "
                "SBC, coverage, fiducial constraints) and figures to OUTPUT_DIR.")
    sub.add_argument("--method", required=True,
                     choices=["cnn", "vit", "two_point", "combined"])
    sub.add_argument("--summaries", nargs="+", required=True, metavar="KIND=PATH",
                     help="summary tables by kind (cnn, vit, two_point); combined needs all three")
    sub.add_argument("--predictions", type=Path, default=None,
                     help="the network's predictions.ecsv: adds its Gaussian heads' calibration")
    sub.add_argument("--output-dir", required=True, type=Path)

    sub = stage("report", _report,
                "Reads evaluation folders; writes the side-by-side report (markdown, CSV, "
                "figures) to OUTPUT_DIR.")
    sub.add_argument("--evaluations", nargs="+", required=True, type=Path)
    sub.add_argument("--posteriors", nargs="*", default=[], type=Path,
                     help="posterior folders (cosmo-sbi posterior): adds the posterior section")
    sub.add_argument("--fisher", type=Path, default=None,
                     help="fisher.json: adds the Fisher-bound rows when the file exists")
    sub.add_argument("--output-dir", required=True, type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cosmo-sbi``; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        config = load_config(args.config)
        args.handler(args, config)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        print(f"cosmo-sbi {args.stage}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
