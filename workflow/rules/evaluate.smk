# Predictions, metrics and figures of one trained model (ViT: plus attention maps), or of
# the mixture of its training.ensemble_seeds members.


rule evaluate:
    input:
        dataset=f"{RESULTS}/dataset.h5",
        weights=trained_files("model.pt"),  # several: training.ensemble_seeds
        description=trained_files("model_config.json"),
        history=trained_files("history.csv"),
        summary=trained_files("training_summary.json"),
    output:
        metrics=f"{RESULTS}/evaluation/{{model}}/metrics.json",
        predictions=f"{RESULTS}/evaluation/{{model}}/predictions.ecsv",
        history=f"{RESULTS}/evaluation/{{model}}/history.csv",
        figures=report(
            directory(f"{RESULTS}/evaluation/{{model}}/figures"),
            patterns=["{name}.png"],
            caption="../report/evaluation.rst",
            category="Evaluation",
            subcategory="{model}",
        ),
    params:
        model_dirs=lambda wildcards: " ".join(model_dirs(wildcards.model)),
        output_dir=lambda wildcards, output: os.path.dirname(output.metrics),
        device=TRAINING["device"],
    log:
        f"{LOGS}/evaluate/{{model}}.log",
    conda:
        ENV
    threads: 4
    resources:
        mem_mb=per_attempt(dataset_mem_mb() + 4000),
        runtime=per_attempt(60),
        **gpu_resources(1),
    shell:
        "OMP_NUM_THREADS={threads} cosmo-sbi evaluate --config \"$COSMO_SBI_CONFIG\""
        " --model {wildcards.model} --dataset {input.dataset} --model-dir {params.model_dirs}"
        " --output-dir {params.output_dir} > {log} 2>&1"
