# Train on one simulator, test on the other: every trained model is applied to the
# histograms of each `cross_simulator` entry (another workflow directory's results, made
# by another simulator or configuration with the same binning), giving its bias in units
# of its own predicted sigma there and on its own simulator (cosmo_sbi.cross_simulator).
rule cross_evaluate:
    input:
        dataset=f"{RESULTS}/dataset.h5",
        weights=f"{RESULTS}/models/{{model}}/model.pt",
        description=f"{RESULTS}/models/{{model}}/model_config.json",
        histograms=cross_histograms,
    output:
        f"{RESULTS}/evaluation/{{model}}/cross/{{cross}}.json",
    params:
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
        "OMP_NUM_THREADS={threads} cosmo-sbi cross-evaluate --config \"$COSMO_SBI_CONFIG\""
        " --model-dir {params.model_dir} --dataset {input.dataset}"
        " --histograms {input.histograms} --set {params.set} --output {output} > {log} 2>&1"


# On demand (not part of `all`): the bias ratio b_other / b_embedded of a cross_simulator
# entry (its fiducial set against this workflow's). `snakemake
# results/calibration/bias_<entry>.yaml` writes a config overlay setting
# simulator.embedded.bias_ratio (cosmo_sbi.bias_calibration, docs/embedded-simulator.md).
if config["simulator"]["backend"] == "embedded":

    rule calibrate_bias:
        input:
            embedded=lambda wildcards: [histogram_path(CROSS[wildcards.cross]["set"], sim_id)
                                        for sim_id in SIM_IDS[CROSS[wildcards.cross]["set"]]],
            other=cross_histograms,
        output:
            f"{RESULTS}/calibration/bias_{{cross}}.yaml",
        params:
            set=lambda wildcards: CROSS[wildcards.cross]["set"],
            settings=simulation_settings(),  # bias_ratio, mass function: the model's b
            summaries=config["summaries"],
        log:
            f"{LOGS}/calibrate_bias/{{cross}}.log",
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=per_attempt(1000),
            runtime=per_attempt(10),
        shell:
            "cosmo-sbi calibrate-bias --config \"$COSMO_SBI_CONFIG\" --set {params.set}"
            " --other {input.other} --embedded {input.embedded} --output {output} > {log} 2>&1"
