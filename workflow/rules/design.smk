rule design:
    output:
        f"{RESULTS}/design/{{set}}.ecsv",
    params:
        seed=config["design"]["seed"],
        design=lambda wildcards: config["design"][wildcards.set],
        fixed=config["design"]["fixed"],
    log:
        f"{LOGS}/design/{{set}}.log",
    conda:
        ENV
    shell:
        "{COSMO_SBI} design --config {CONFIG} --set {wildcards.set} --output {output}"
        " > {log} 2>&1"
