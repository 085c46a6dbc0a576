# One job per block of simulator.block_size light cones (a rule per block, named
# histogram_<set>_<first id>), each histogram its own file. `snakemake histogram` (or
# `--until histogram`) makes every histogram; a single file can be asked for by name.

for _set in SETS:
    for _block in id_blocks(_set):

        rule:
            name:
                f"histogram_{_set}_{_block[0]}"
            input:
                [lightcone_path(_set, sim_id) for sim_id in _block],
            output:
                [histogram_path(_set, sim_id) for sim_id in _block],
            params:
                binning=config["histogram"],
            log:
                f"{LOGS}/histogram/{_set}/{_block[0]}-{_block[-1]}.log",
            group:
                "sims"
            conda:
                ENV
            resources:
                mem_mb=per_attempt(1000),
                runtime=per_attempt(5 * len(_block)),
            shell:
                "cosmo-sbi histogram --config \"$COSMO_SBI_CONFIG\" --input {input}"
                " --output {output} > {log} 2>&1"


localrules:
    histogram,


rule histogram:
    input:
        histogram_targets(),
