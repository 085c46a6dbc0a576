"""``cosmo-sbi <stage>``: one subcommand per workflow stage, usable without Snakemake.

Every subcommand takes the configuration (``--config``, repeatable: later files overlay
earlier ones, e.g. ``--config config.yaml --config config/laptop.yaml``) and explicit input
and output paths. Stage modules are imported lazily so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from cosmo_sbi.config import Config, ConfigError, load_config
from cosmo_sbi.models import MODEL_NAMES
from cosmo_sbi.posterior_config import METHODS

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


def _calibrate_mass_function(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.mass_calibration import write_calibration

    model = args.model or config["simulator"]["embedded"]["mass_function"]
    ratio = write_calibration(args.run_dir, model, args.output, degree=args.degree)
    logging.getLogger(__name__).info("n_PINOCCHIO / n_%s fitted: %s; wrote %s", model, ratio,
                                     args.output)


def _calibrate_bias(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.bias_calibration import write_bias_calibration

    result = write_bias_calibration(config, args.other, args.embedded, args.output, args.set,
                                    args.k_bins)
    logging.getLogger(__name__).info("b_other / b_embedded = %.4f +- %.4f (%s); wrote %s",
                                     result.ratio, result.error, result, args.output)


def _cross_evaluate(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.cross_simulator import cross_evaluate

    cross_evaluate(config, args.model_dir, args.dataset, args.histograms, args.set, args.output)


def _histogram(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.histogram import histogram_lightcone_files

    histogram_lightcone_files(config, args.input, args.output)


def _dataset(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.dataset import build_dataset

    build_dataset(config, args.latin_hypercube, args.fiducial, args.output)


def _summaries(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.summaries import build_two_point_table, summary_workers

    build_two_point_table(config, args.dataset, {"latin_hypercube": args.latin_hypercube,
                                                 "fiducial": args.fiducial},
                          args.output, workers=summary_workers())


def _fisher(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.fisher import fisher_stage
    from cosmo_sbi.summaries import summary_workers

    fisher_stage(config, args.fiducial, args.derivatives, args.design, args.output_dir,
                 workers=summary_workers())


def _train(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.models.build import check_models
    from cosmo_sbi.train import train_model

    check_models(config)  # every network to train, on the meta device: before the data
    if args.seed is not None:  # one member of training.ensemble_seeds
        config = {**config, "training": {**config["training"], "seed": args.seed}}
    train_model(config, args.model, args.dataset, args.output_dir, args.train_fraction)


def _search(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.search import search

    search(config, args.model, args.dataset, args.output_dir)


def _evaluate(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.evaluate import evaluate_model

    evaluate_model(config, args.model, args.dataset, args.model_dir, args.output_dir)


def _report(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.report import write_report

    write_report(config, args.evaluations, args.output_dir, args.posteriors, args.fisher,
                 args.learning_curve)


def _learning_curve_npe(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.learning_curve import check_learning_curve_config, two_point_npe

    check_learning_curve_config(config)
    two_point_npe(config, args.summaries, args.fraction, args.output_dir)


def _learning_curve(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.learning_curve import collect

    collect(config, args.point, args.output_dir)


def _network_summaries(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.posterior import write_network_summaries

    write_network_summaries(args.predictions, args.model, args.output)


def _posterior(args: argparse.Namespace, config: Config) -> None:
    from cosmo_sbi.posterior import run_posterior
    from cosmo_sbi.posterior_config import check_posterior_config
    from cosmo_sbi.posterior_metrics import write_posterior_metrics

    check_posterior_config(config)

    bad = [entry for entry in args.summaries if "=" not in entry]
    if bad:
        raise ValueError(f"--summaries {bad}: expected KIND=PATH, e.g. "
                         "cnn=results/summaries/cnn.h5")
    paths = dict(entry.split("=", 1) for entry in args.summaries)
    run_posterior(config, args.method, paths, args.output_dir)
    write_posterior_metrics(config, args.method, args.output_dir, args.predictions)


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
    sub.add_argument("--set", required=True, choices=["latin_hypercube", "fiducial",
                                                      "derivatives"])
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

    sub = stage("calibrate-mass-function", _calibrate_mass_function,
                "Reads PINOCCHIO run directories (parameter_file and pinocchio.<z>.run.mf.out); "
                "writes a config overlay that makes the embedded sampler draw from the fitted "
                "ratio n_PINOCCHIO / n_model times the model.")
    sub.add_argument("--run-dir", nargs="+", required=True, type=Path)
    sub.add_argument("--model", default=None,
                     help="mass function to calibrate (default: "
                          "simulator.embedded.mass_function)")
    sub.add_argument("--degree", type=int, default=2, help="polynomial degree in log10 M")
    sub.add_argument("--output", required=True, type=Path, help="config overlay YAML to write")

    sub = stage("calibrate-bias", _calibrate_bias,
                "Reads fiducial histograms of another simulator and of the embedded one "
                "(made with --config); writes a config overlay setting "
                "simulator.embedded.bias_ratio to the measured b_other / b_embedded "
                "(large-scale P0, Kaiser-corrected) times the current one.")
    sub.add_argument("--other", nargs="+", required=True, type=Path,
                     help="the other simulator's histograms (one cosmology, several seeds)")
    sub.add_argument("--embedded", nargs="+", required=True, type=Path,
                     help="the embedded simulator's histograms of the same cosmology")
    sub.add_argument("--set", default="fiducial", help="design set of both (default fiducial)")
    sub.add_argument("--k-bins", type=int, default=2,
                     help="lowest k bins of the P0 average (default 2)")
    sub.add_argument("--output", required=True, type=Path, help="config overlay YAML to write")

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

    sub = stage("summaries", _summaries,
                "Reads the dataset (row order, splits) and its histograms; writes the "
                "two-point summary table (total count, n(z), P0/P2 multipoles).")
    sub.add_argument("--dataset", required=True, type=Path)
    sub.add_argument("--latin-hypercube", nargs="+", required=True, type=Path)
    sub.add_argument("--fiducial", nargs="*", default=[], type=Path)
    sub.add_argument("--output", required=True, type=Path, help="summary table HDF5")

    sub = stage("fisher", _fisher,
                "Reads the fiducial and derivative-set histograms and the derivative design; "
                "writes the two-point Fisher bound (fisher.json) and its figures.")
    sub.add_argument("--fiducial", nargs="+", required=True, type=Path)
    sub.add_argument("--derivatives", nargs="+", required=True, type=Path)
    sub.add_argument("--design", required=True, type=Path,
                     help="derivative design table (ECSV) written by `cosmo-sbi design`")
    sub.add_argument("--output-dir", required=True, type=Path)

    sub = stage("train", _train,
                "Reads the dataset; writes weights, checkpoints and the training history "
                "of one model to OUTPUT_DIR (resumes from its last checkpoint).")
    sub.add_argument("--model", required=True, choices=MODEL_NAMES)
    sub.add_argument("--dataset", required=True, type=Path)
    sub.add_argument("--output-dir", required=True, type=Path)
    sub.add_argument("--seed", type=int, default=None,
                     help="overrides training.seed (one member of training.ensemble_seeds)")
    sub.add_argument("--train-fraction", type=_fraction, default=1.0,
                     help="train on this nested fraction of the training split (learning "
                          "curve; 0 < F <= 1, default 1)")

    sub = stage("search", _search,
                "Reads the dataset; trains search.trials short runs of one model (Optuna, "
                "validation loss) and writes the best settings as a config overlay "
                "(overlay.yaml) and trials.csv to OUTPUT_DIR.")
    sub.add_argument("--model", required=True, choices=MODEL_NAMES)
    sub.add_argument("--dataset", required=True, type=Path)
    sub.add_argument("--output-dir", required=True, type=Path)

    sub = stage("evaluate", _evaluate,
                "Reads the dataset and a trained model; writes predictions, metrics.json "
                "and figures to OUTPUT_DIR.")
    sub.add_argument("--model", required=True, choices=MODEL_NAMES)
    sub.add_argument("--dataset", required=True, type=Path)
    sub.add_argument("--model-dir", required=True, type=Path, nargs="+",
                     help="trained model folder; several: an ensemble, evaluated as their "
                          "mixture")
    sub.add_argument("--output-dir", required=True, type=Path)

    sub = stage("cross-evaluate", _cross_evaluate,
                "Reads a trained model, its training dataset and histograms of one design "
                "set made by another simulator; writes (JSON) the model's bias there and on "
                "its own simulator, in units of its predicted sigma.")
    sub.add_argument("--model-dir", required=True, type=Path)
    sub.add_argument("--dataset", required=True, type=Path, help="the training dataset")
    sub.add_argument("--histograms", nargs="+", required=True, type=Path)
    sub.add_argument("--set", required=True, choices=["latin_hypercube", "fiducial"])
    sub.add_argument("--output", required=True, type=Path, help="JSON file to write")

    sub = stage("network-summaries", _network_summaries,
                "Reads a network's predictions.ecsv; writes its summary table (HDF5: per "
                "parameter the predicted mean and log sigma, rows in the dataset's order).")
    sub.add_argument("--model", required=True, choices=MODEL_NAMES)
    sub.add_argument("--predictions", required=True, type=Path)
    sub.add_argument("--output", required=True, type=Path)

    sub = stage("posterior", _posterior,
                "Reads summary tables; trains sbi's NPE of one method on posterior.train_splits "
                "and writes samples.h5 (test split and fiducial seeds), metrics.json (TARP, "
                "SBC, coverage, fiducial constraints) and figures to OUTPUT_DIR.")
    sub.add_argument("--method", required=True, choices=METHODS)
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
    sub.add_argument("--learning-curve", type=Path, default=None,
                     help="learning_curve.csv (cosmo-sbi learning-curve): adds its section")
    sub.add_argument("--output-dir", required=True, type=Path)

    sub = stage("learning-curve-npe", _learning_curve_npe,
                "Reads the two-point summary table; trains sbi's NPE (posterior settings) on "
                "a nested fraction of the training split and writes samples.h5 (test split "
                "and fiducial seeds) to OUTPUT_DIR.")
    sub.add_argument("--summaries", required=True, type=Path, help="two_point.h5")
    sub.add_argument("--fraction", required=True, type=_fraction)
    sub.add_argument("--output-dir", required=True, type=Path)

    sub = stage("learning-curve", _learning_curve,
                "Reads the learning curve's points (networks: evaluation folders; two_point: "
                "NPE folders); writes learning_curve.csv and learning_curve.png to OUTPUT_DIR.")
    sub.add_argument("--point", nargs="+", required=True, metavar="METHOD:FRACTION=FOLDER",
                     help="e.g. cnn:0.5=results/learning_curve/cnn/f0.5/evaluation")
    sub.add_argument("--output-dir", required=True, type=Path)
    return parser


def _fraction(text: str) -> float:
    """A fraction 0 < F <= 1 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number 0 < F <= 1")
    return value


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
    except OSError as error:
        # a full or read-only disk, a damaged file h5py could not name: say which paths
        print(f"cosmo-sbi {args.stage}: error: {_describe_os_error(error, args)}",
              file=sys.stderr)
        return 1
    return 0


def _describe_os_error(error: OSError, args: argparse.Namespace) -> str:
    """``error`` with the path it concerns, or the stage's paths when it names none (h5py)."""
    reason = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        reason += " (the disk is full)"
    elif error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        reason += " (read-only or not writable)"
    if error.filename:
        return f"{error.filename}: {reason}"
    named = []
    for name, value in vars(args).items():
        paths = value if isinstance(value, list) else [value]
        if name != "config" and paths and all(isinstance(p, Path) for p in paths):
            shown = " ".join(map(str, paths[:3])) + (" ..." if len(paths) > 3 else "")
            named.append(f"--{name.replace('_', '-')} {shown}")
    return f"{reason}; while reading or writing {'; '.join(named)}"

if __name__ == "__main__":
    sys.exit(main())
