# Shared definitions of the learning stages (dataset, train, evaluate, report): inputs,
# per-job params and resources. Functions only (rules live in the per-stage files).
import glob

from cosmo_sbi.learning_curve import check_learning_curve_config, curve_fractions, fraction_label

TRAINING = config["training"]


def dataset_inputs(set_name: str) -> list[str]:
    return [f"{RESULTS}/histograms/{set_name}/{sim_id}.h5" for sim_id in SIM_IDS[set_name]]


def dataset_mem_mb() -> int:
    """Peak memory of a job holding the whole dataset: float32 inputs, three times (the
    dataset stage builds the file in memory: cosmo_sbi.io.atomic_hdf5), plus 1 GB."""
    voxels = 1
    for size in config["histogram"]["bins"]:
        voxels *= size
    simulations = sum(len(ids) for ids in SIM_IDS.values())
    return 1000 + (3 * 4 * voxels * simulations) // 2**20


def training_uses_gpu() -> bool:
    return TRAINING["gpus"] > 0 and TRAINING["device"] != "cpu"


def training_seed(wildcards) -> int:
    """The {seed} of an ensemble member (rule train_member), else training.seed."""
    return int(wildcards.get("seed", TRAINING["seed"]))


def training_params(wildcards) -> dict:
    """Config values a model's training depends on (not the list of models to train, nor
    the other members of an ensemble)."""
    settings = {key: value for key, value in TRAINING.items()
                if key not in ("models", "ensemble_seeds")}
    settings["seed"] = training_seed(wildcards)
    return {"model": config["models"][wildcards.model], "training": settings}


def model_dirs(model: str) -> list[str]:
    """Trained folders of ``model``: results/models/{model}, or with training.ensemble_seeds
    one per member, results/models/{model}/seed{seed}."""
    if not TRAINING["ensemble_seeds"]:
        return [f"{RESULTS}/models/{model}"]
    return [f"{RESULTS}/models/{model}/seed{seed}" for seed in TRAINING["ensemble_seeds"]]


def trained_files(name: str):
    """Input function: file ``name`` of every trained folder of {model}."""
    return lambda wildcards: [f"{folder}/{name}" for folder in model_dirs(wildcards.model)]


def training_launcher() -> str:
    """`cosmo-sbi`, or torchrun with one process per GPU when training.gpus > 1."""
    if training_uses_gpu() and TRAINING["gpus"] > 1:
        return f"torchrun --standalone --nproc_per_node={TRAINING['gpus']} -m cosmo_sbi"
    return "cosmo-sbi"


def gpu_resources(count: int) -> dict:
    """Snakemake's `gpu` resource (sbatch --gpus) when training runs on GPUs, else none."""
    return {"gpu": count} if training_uses_gpu() else {}


def report_targets() -> list[str]:
    return [f"{RESULTS}/report/summary.md", f"{RESULTS}/report/comparison.csv"]


# Train on one simulator, test on the other (cross_simulator.smk).
CROSS = config["cross_simulator"]


def cross_histograms(wildcards) -> list[str]:
    """The other results' histograms of the entry's design set (found at parse time)."""
    entry = CROSS[wildcards.cross]
    folder = os.path.join(entry["results"], "histograms", entry["set"])
    paths = sorted(glob.glob(os.path.join(folder, "*.h5")))
    if not paths:
        raise ValueError(f"cross_simulator.{wildcards.cross}.results: no histograms in "
                         f"{folder}; run that workflow (at least --until histogram) first")
    return paths


def cross_targets() -> list[str]:
    return [f"{RESULTS}/evaluation/{model}/cross/{name}.json"
            for model in TRAINING["models"] for name in CROSS]


# ---------------------------------------------------------------- posteriors (issue 9)
POSTERIOR_METHODS = posterior_methods(config)
POSTERIOR_REPORT_ONLY = ("methods", "corner_seed")
"""posterior settings only the report reads: changing them reruns no NPE."""


def posterior_summary_kinds(method: str) -> list[str]:
    """The summary tables a method's NPE reads: combined = cnn + vit + two_point."""
    return ["cnn", "vit", "two_point"] if method == "combined" else [method]


def posterior_inputs(wildcards) -> dict:
    inputs = {kind: f"{RESULTS}/summaries/{kind}.h5"
              for kind in posterior_summary_kinds(wildcards.method)}
    if wildcards.method in ("cnn", "vit"):  # the Gaussian heads' calibration beside the NPE
        inputs["predictions"] = f"{RESULTS}/evaluation/{wildcards.method}/predictions.ecsv"
    return inputs


def posterior_summaries_argument(wildcards, input) -> str:
    return " ".join(f"{kind}={input[kind]}"
                    for kind in posterior_summary_kinds(wildcards.method))


def posterior_params() -> dict:
    """Config values every NPE depends on (not the list of methods, not the plot seed)."""
    return {key: value for key, value in config["posterior"].items()
            if key not in POSTERIOR_REPORT_ONLY}


def posterior_targets() -> list[str]:
    return [f"{RESULTS}/posteriors/{method}/metrics.json" for method in POSTERIOR_METHODS]


# ---------------------------------------------------------------- learning curve (issue 9)
check_learning_curve_config(config)
LEARNING_CURVE = f"{RESULTS}/learning_curve"
CURVE_FRACTIONS = curve_fractions(config)  # [] when off


def learning_curve_points() -> dict[str, str]:
    """METHOD:FRACTION -> the folder of that point: a network's evaluation (fraction 1: the
    main one), the two-point NPE's samples."""
    points = {}
    for fraction in CURVE_FRACTIONS:
        label = fraction_label(fraction)
        for model in TRAINING["models"]:
            points[f"{model}:{label}"] = (f"{RESULTS}/evaluation/{model}" if fraction == 1.0
                                          else f"{LEARNING_CURVE}/{model}/f{label}/evaluation")
        points[f"two_point:{label}"] = f"{LEARNING_CURVE}/two_point/f{label}"
    return points


def learning_curve_inputs(wildcards) -> list[str]:
    return [f"{folder}/samples.h5" if key.startswith("two_point:") else f"{folder}/metrics.json"
            for key, folder in learning_curve_points().items()]


def learning_curve_targets() -> list[str]:
    """learning_curve.csv when learning_curve.fractions is set, else nothing."""
    return [f"{LEARNING_CURVE}/learning_curve.csv"] if CURVE_FRACTIONS else []
