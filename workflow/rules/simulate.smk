# One light cone per design row, in the common format, whatever the backend. The design
# table is `ancient`: a job reruns when its own row (params.row) or the simulation
# settings change, not whenever the table file is rewritten.

if config["simulator"]["backend"] == "embedded":

    rule simulate_embedded:
        input:
            design=ancient(f"{RESULTS}/design/{{set}}.ecsv"),
        output:
            f"{RESULTS}/sims/{{set}}/{{id}}/lightcone.h5",
        params:
            row=design_row,
            settings=simulation_settings(),
        log:
            f"{LOGS}/simulate/{{set}}/{{id}}.log",
        conda:
            ENV
        threads: 2
        resources:
            mem_mb=2000,
            runtime=10,
        shell:
            "{COSMO_SBI} simulate --config {CONFIG} --design {input.design} --id {wildcards.id}"
            " --output {output} --threads {threads} > {log} 2>&1"

else:
    PINOCCHIO_RUN = f"{RESULTS}/sims/{{set}}/{{id}}/pinocchio"

    rule pinocchio_setup:
        input:
            design=ancient(f"{RESULTS}/design/{{set}}.ecsv"),
        output:
            f"{PINOCCHIO_RUN}/parameter_file",
        params:
            row=design_row,
            settings=simulation_settings(),
            run_dir=PINOCCHIO_RUN,
        log:
            f"{LOGS}/pinocchio_setup/{{set}}/{{id}}.log",
        conda:
            ENV
        shell:
            "{COSMO_SBI} pinocchio-setup --config {CONFIG} --design {input.design}"
            " --id {wildcards.id} --run-dir {params.run_dir} > {log} 2>&1"

    rule pinocchio_run:
        input:
            f"{PINOCCHIO_RUN}/parameter_file",
        output:
            pinocchio_plc_outputs(PINOCCHIO_RUN),
        params:
            run_dir=PINOCCHIO_RUN,
            command=config["simulator"]["pinocchio"]["command"],
        log:
            f"{LOGS}/pinocchio_run/{{set}}/{{id}}.log",
        conda:
            ENV
        threads: config["simulator"]["pinocchio"]["threads"]
        resources:
            tasks=config["simulator"]["pinocchio"]["tasks"],
            mem_mb=config["simulator"]["pinocchio"]["tasks"]
            * config["simulator"]["pinocchio"]["max_mem_mb"],
            runtime=120,
        shell:
            "{COSMO_SBI} pinocchio-run --config {CONFIG} --run-dir {params.run_dir} > {log} 2>&1"

    rule pinocchio_convert:
        input:
            design=ancient(f"{RESULTS}/design/{{set}}.ecsv"),
            plc=pinocchio_plc_outputs(PINOCCHIO_RUN),
        output:
            f"{RESULTS}/sims/{{set}}/{{id}}/lightcone.h5",
        params:
            run_dir=PINOCCHIO_RUN,
        log:
            f"{LOGS}/pinocchio_convert/{{set}}/{{id}}.log",
        conda:
            ENV
        shell:
            "{COSMO_SBI} pinocchio-convert --config {CONFIG} --design {input.design}"
            " --id {wildcards.id} --run-dir {params.run_dir} --output {output} > {log} 2>&1"
