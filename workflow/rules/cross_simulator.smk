# Train on one simulator, test on the other: every trained model is applied to the
# histograms of each `cross_simulator` entry (another workflow directory's results, made
# by another simulator or configuration with the same binning), giving its bias in units
# of its own predicted sigma there and on its own simulator (cosmo_sbi.cross_simulator).
import glob

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


rule cross_evaluate:
    input:
        dataset=f"{RESULTS}/dataset.h5",
        weights=f"{RESULTS}/models/{{model}}/model.pt",
        description=f"{RESULTS}/models/{{model}}/model_config.json",
        histograms=cross_histograms,
    output:
        f"{RESULTS}/evaluation/{{model}}/cross/{{cross}}.json",
    params:
        config=CONFIG,
        model_dir=lambda wildcards, input: os.path.dirname(input.weights),
        set=lambda wildcards: CROSS[wildcards.cross]["set"],
    log:
        f"{LOGS}/cross_evaluate/{{model}}/{{cross}}.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=per_attempt(dataset_mem_mb() + 2000),
        runtime=per_attempt(30),
    shell:
        "OMP_NUM_THREADS={threads} cosmo-sbi cross-evaluate --config {params.config}"
        " --model-dir {params.model_dir} --dataset {input.dataset}"
        " --histograms {input.histograms} --set {params.set} --output {output} > {log} 2>&1"
