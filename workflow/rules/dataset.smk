# All histograms -> one HDF5 training set (inputs, parameters, ids, hash-stable splits).
# It depends on the histogram binning (checked against the files), the split fractions,
# the input transform and the prior box used to scale the parameters.


rule dataset:
    input:
        latin_hypercube=dataset_inputs("latin_hypercube"),
        fiducial=dataset_inputs("fiducial"),
    output:
        f"{RESULTS}/dataset.h5",
    params:
        dataset=config["dataset"],
        binning=config["histogram"],
        ranges=config["design"]["latin_hypercube"]["ranges"],
    log:
        f"{LOGS}/dataset.log",
    conda:
        ENV
    resources:
        mem_mb=per_attempt(dataset_mem_mb()),
        runtime=per_attempt(30),
    shell:
        "cosmo-sbi dataset --config \"$COSMO_SBI_CONFIG\" --latin-hypercube {input.latin_hypercube}"
        " --fiducial {input.fiducial} --output {output} > {log} 2>&1"
