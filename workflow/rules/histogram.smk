rule histogram:
    input:
        f"{RESULTS}/sims/{{set}}/{{id}}/lightcone.h5",
    output:
        f"{RESULTS}/histograms/{{set}}/{{id}}.h5",
    params:
        binning=config["histogram"],
    log:
        f"{LOGS}/histogram/{{set}}/{{id}}.log",
    conda:
        ENV
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(5),
    shell:
        "cosmo-sbi histogram --config \"$COSMO_SBI_CONFIG\" --input {input} --output {output} > {log} 2>&1"
