# Two small tables (seconds): on a cluster they are written by Snakemake itself on the
# submitting node instead of waiting in the queue.
localrules:
    design,


rule design:
    output:
        f"{RESULTS}/design/{{set}}.ecsv",
    params:
        seed=config["design"]["seed"],
        design=lambda wildcards: design_section(config, wildcards.set),
        fixed=config["design"]["fixed"],
    log:
        f"{LOGS}/design/{{set}}.log",
    conda:
        ENV
    shell:
        "cosmo-sbi design --config \"$COSMO_SBI_CONFIG\" --set {wildcards.set} --output {output}"
        " > {log} 2>&1"
