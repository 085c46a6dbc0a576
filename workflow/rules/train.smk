# One network per {model} (the registry in cosmo_sbi/models/__init__.py) on the dataset;
# on GPUs when training.gpus > 0 and training.device is not cpu (torchrun, one process per
# GPU, when gpus > 1).
#
# Resume: train_model restores results/models/{model}/checkpoints/last.pt, written after
# every epoch. Only the final files are declared outputs. Snakemake deletes the declared
# outputs of a failed or killed job (and of an incomplete one with --rerun-incomplete)
# before rerunning it, so declaring the checkpoint folder would throw the progress away;
# undeclared, it survives and the rerun continues from the last finished epoch. A
# checkpoint of other data (the dataset's content hash), model or training settings is not
# reused: train_model compares its fingerprint with the current run and starts afresh when
# they differ; a damaged one is renamed last.pt.damaged.


rule train:
    input:
        f"{RESULTS}/dataset.h5",
    output:
        weights=f"{RESULTS}/models/{{model}}/model.pt",
        description=f"{RESULTS}/models/{{model}}/model_config.json",
        history=f"{RESULTS}/models/{{model}}/history.csv",
        summary=f"{RESULTS}/models/{{model}}/training_summary.json",
    params:
        settings=training_params,
        output_dir=lambda wildcards, output: os.path.dirname(output.weights),
        launcher=training_launcher(),
    log:
        f"{LOGS}/train/{{model}}.log",
    conda:
        ENV
    threads: 8
    resources:
        mem_mb=per_attempt(dataset_mem_mb() + 8000),
        runtime=per_attempt(24 * 60),
        **gpu_resources(TRAINING["gpus"]),
    shell:
        "OMP_NUM_THREADS={threads} {params.launcher} train --config \"$COSMO_SBI_CONFIG\""
        " --model {wildcards.model} --dataset {input} --output-dir {params.output_dir}"
        " --seed {params.settings[training][seed]} > {log} 2>&1"


# training.ensemble_seeds: one network per seed, results/models/{model}/seed{seed}/ (the
# evaluate rule takes them all, through model_dirs in common_learning.smk).
use rule train as train_member with:
    output:
        weights=f"{RESULTS}/models/{{model}}/seed{{seed,\\d+}}/model.pt",
        description=f"{RESULTS}/models/{{model}}/seed{{seed}}/model_config.json",
        history=f"{RESULTS}/models/{{model}}/seed{{seed}}/history.csv",
        summary=f"{RESULTS}/models/{{model}}/seed{{seed}}/training_summary.json",
    log:
        f"{LOGS}/train/{{model}}/seed{{seed}}.log",
