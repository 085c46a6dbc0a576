# On demand (not part of `all`): fit the embedded sampler's mass function to the PINOCCHIO
# runs of this config. `snakemake results/calibration/mass_function.yaml` writes a config
# overlay; pass it to an embedded-backend run (--configfile ... mass_function.yaml) to draw
# halos from n_PINOCCHIO / n_model x model (docs/embedded-simulator.md).

if config["simulator"]["backend"] == "pinocchio":

    rule calibrate_mass_function:
        input:
            # the runs' light cones: the mass functions are written beside them
            [plc for name in SETS for sim_id in SIM_IDS[name] for plc in
             pinocchio_plc_outputs(f"{RESULTS}/sims/{name}/{sim_id}/pinocchio")],
        output:
            f"{RESULTS}/calibration/mass_function.yaml",
        params:
            model=config["simulator"]["embedded"]["mass_function"],
            run_dirs=[f"{RESULTS}/sims/{name}/{sim_id}/pinocchio"
                      for name in SETS for sim_id in SIM_IDS[name]],
        log:
            f"{LOGS}/calibrate_mass_function.log",
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=per_attempt(1000),
            runtime=per_attempt(10),
        shell:
            "cosmo-sbi calibrate-mass-function --config \"$COSMO_SBI_CONFIG\" --model {params.model}"
            " --run-dir {params.run_dirs} --output {output} > {log} 2>&1"
