# Fisher bound of the coarse two-point summaries: derivatives from the derivative set
# (common random numbers with the fiducial seeds), covariance from the fiducial seeds.
# Only when design.derivatives.n_seeds > 0.


rule fisher:
    input:
        fiducial=dataset_inputs("fiducial"),
        derivatives=dataset_inputs("derivatives"),
        design=f"{RESULTS}/design/derivatives.ecsv",
    output:
        fisher=f"{RESULTS}/fisher/fisher.json",
        figures=report(
            directory(f"{RESULTS}/fisher/figures"),
            patterns=["{name}.png"],
            caption="../report/fisher.rst",
            category="Fisher bound",
        ),
    params:
        fisher=config["fisher"],
        summaries=config["summaries"],
        binning=config["histogram"],
        prior=config["design"]["latin_hypercube"]["ranges"],
        output_dir=lambda wildcards, output: os.path.dirname(output.fisher),
    log:
        f"{LOGS}/fisher.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(30),
    shell:
        "OMP_NUM_THREADS={threads} cosmo-sbi fisher --config \"$COSMO_SBI_CONFIG\""
        " --fiducial {input.fiducial} --derivatives {input.derivatives}"
        " --design {input.design} --output-dir {params.output_dir} > {log} 2>&1"
