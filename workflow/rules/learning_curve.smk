# Learning curve (issue 9, item 7; cosmo_sbi/learning_curve.py): each network of
# training.models and the two-point NPE trained on nested fractions of the training split
# (learning_curve.fractions), scored on the test split. Fraction 1 of a network is its main
# training and evaluation (no retraining); every other point is a job of its own under
# results/learning_curve/. A learning_curve setting reruns no main training and no
# simulation: these rules' params hold the training / posterior settings they depend on,
# the fraction is in the file names.
# Paths and inputs: common_learning.smk (LEARNING_CURVE, learning_curve_points).


wildcard_constraints:
    fraction=r"[0-9.e-]+",


rule learning_curve_train:
    input:
        f"{RESULTS}/dataset.h5",
    output:
        weights=f"{LEARNING_CURVE}/{{model}}/f{{fraction}}/model.pt",
        description=f"{LEARNING_CURVE}/{{model}}/f{{fraction}}/model_config.json",
        history=f"{LEARNING_CURVE}/{{model}}/f{{fraction}}/history.csv",
        summary=f"{LEARNING_CURVE}/{{model}}/f{{fraction}}/training_summary.json",
    params:
        settings=training_params,
        output_dir=lambda wildcards, output: os.path.dirname(output.weights),
        launcher=training_launcher(),
    log:
        f"{LOGS}/learning_curve/train/{{model}}/f{{fraction}}.log",
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
        " --train-fraction {wildcards.fraction} > {log} 2>&1"


use rule evaluate as learning_curve_evaluate with:
    input:
        dataset=f"{RESULTS}/dataset.h5",
        weights=rules.learning_curve_train.output.weights,
        description=rules.learning_curve_train.output.description,
        history=rules.learning_curve_train.output.history,
        summary=rules.learning_curve_train.output.summary,
    output:
        metrics=f"{LEARNING_CURVE}/{{model}}/f{{fraction}}/evaluation/metrics.json",
        predictions=f"{LEARNING_CURVE}/{{model}}/f{{fraction}}/evaluation/predictions.ecsv",
        history=f"{LEARNING_CURVE}/{{model}}/f{{fraction}}/evaluation/history.csv",
        figures=directory(f"{LEARNING_CURVE}/{{model}}/f{{fraction}}/evaluation/figures"),
    params:
        model_dirs=lambda wildcards, input: os.path.dirname(input.weights),
        output_dir=lambda wildcards, output: os.path.dirname(output.metrics),
        device=TRAINING["device"],
    log:
        f"{LOGS}/learning_curve/evaluate/{{model}}/f{{fraction}}.log",


rule learning_curve_npe:
    input:
        f"{RESULTS}/summaries/two_point.h5",
    output:
        f"{LEARNING_CURVE}/two_point/f{{fraction}}/samples.h5",
    params:
        settings=posterior_params(),
        subset_seed=TRAINING["seed"],
        output_dir=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        f"{LOGS}/learning_curve/two_point/f{{fraction}}.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(60),
    shell:
        "OMP_NUM_THREADS={threads} cosmo-sbi learning-curve-npe --config \"$COSMO_SBI_CONFIG\""
        " --summaries {input} --fraction {wildcards.fraction}"
        " --output-dir {params.output_dir} > {log} 2>&1"


rule learning_curve:
    input:
        learning_curve_inputs,
    output:
        table=f"{LEARNING_CURVE}/learning_curve.csv",
        figure=f"{LEARNING_CURVE}/learning_curve.png",
    params:
        points=lambda wildcards, input: " ".join(  # the inputs' folders, in the same order
            f"{key}={os.path.dirname(path)}" for key, path in zip(learning_curve_points(), input)),
        bootstrap={key: config["posterior"][key] for key in ("bootstrap", "seed")},
        output_dir=lambda wildcards, output: os.path.dirname(output.table),
    log:
        f"{LOGS}/learning_curve/collect.log",
    conda:
        ENV
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(15),
    shell:
        "cosmo-sbi learning-curve --config \"$COSMO_SBI_CONFIG\" --point {params.points}"
        " --output-dir {params.output_dir} > {log} 2>&1"
