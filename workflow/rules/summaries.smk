# Two-point summaries (total count, n(z), P0/P2) of every dataset histogram, rows in
# dataset.h5's order: the classical baseline of the networks. Depends on the histograms,
# the dataset's rows and splits, and the summaries binning; reruns no simulation.


rule summaries:
    input:
        dataset=f"{RESULTS}/dataset.h5",
        latin_hypercube=dataset_inputs("latin_hypercube"),
        fiducial=dataset_inputs("fiducial"),
    output:
        f"{RESULTS}/summaries/two_point.h5",
    params:
        summaries=config["summaries"],
        binning=config["histogram"],
    log:
        f"{LOGS}/summaries.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(30),
    shell:
        "OMP_NUM_THREADS={threads} cosmo-sbi summaries --config \"$COSMO_SBI_CONFIG\""
        " --dataset {input.dataset} --latin-hypercube {input.latin_hypercube}"
        " --fiducial {input.fiducial} --output {output} > {log} 2>&1"
