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
    from cosmo_sbi.design import read_design_rows
    from cosmo_sbi.simulators.embedded import simulate_lightcones

    simulate_lightcones(config, read_design_rows(args.design, args.id), args.output,
                        threads=args.threads, resume=args.resume)


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
    from cosmo_sbi.histogram import histogram_lightcone_files

    histogram_lightcone_files(config, args.input, args.output)


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

    write_report(config, args.evaluations, args.output_dir)


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
                "Runs the embedded light-cone simulator for one or a block of design rows; "
                "writes one common light-cone HDF5 file per row.")
    sub.add_argument("--design", required=True, type=Path,
                     help="design table (ECSV) written by `cosmo-sbi design`")
    sub.add_argument("--id", required=True, nargs="+",
                     help="simulation ids (rows of the design), one per --output")
    sub.add_argument("--output", required=True, nargs="+", type=Path,
                     help="light-cone HDF5 files to write, one per --id")
    sub.add_argument("--threads", type=int, default=1, help="FFT worker threads")
    sub.add_argument("--resume", action="store_true",
                     help="keep outputs that already hold their light cone (same provenance)")

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
                "Reads common light-cone files; writes one (RA, DEC, z_obs) halo-count "
                "histogram (HDF5) per file with the configured binning and mass cut.")
    sub.add_argument("--input", required=True, nargs="+", type=Path,
                     help="light-cone HDF5 files")
    sub.add_argument("--output", required=True, nargs="+", type=Path,
                     help="histogram HDF5 files to write, one per --input")

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

    sub = stage("report", _report,
                "Reads evaluation folders; writes the side-by-side report (markdown, CSV, "
                "figures) to OUTPUT_DIR.")
    sub.add_argument("--evaluations", nargs="+", required=True, type=Path)
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
