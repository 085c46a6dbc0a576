# One light cone per design row, in the common format, whatever the backend. A job reruns
# when its set's design table is remade (a range, count or seed of that set changed) or
# when the simulation settings change. (Snakemake 9.27 does not evaluate the params of a
# job whose ancient() input is being remade, so per-row triggers are not possible here.)
#
# Embedded: one job per block of simulator.block_size ids (a rule per block, named
# simulate_embedded_<set>_<first id>), one process paying the start-up once, each light
# cone still its own file. Outputs are update(): Snakemake does not delete them before the
# job, and `--resume` keeps those that already hold their light cone (same provenance), so
# a killed block resumes at its first missing file and a remade design table reruns only
# the rows that changed. A block holds simulator.embedded.threads cores for its FFT threads
# (1 on 2 cores: two blocks at once); the thread count is no rerun trigger, the files are
# the same with any.

if config["simulator"]["backend"] == "embedded":
    for _set in SETS:
        for _block in id_blocks(_set):

            rule:
                name:
                    f"simulate_embedded_{_set}_{_block[0]}"
                input:
                    design=f"{RESULTS}/design/{_set}.ecsv",
                output:
                    [update(lightcone_path(_set, sim_id)) for sim_id in _block],
                params:
                    settings=simulation_settings(),
                    ids=block_ids,
                log:
                    f"{LOGS}/simulate/{_set}/{_block[0]}-{_block[-1]}.log",
                group:
                    "sims"
                conda:
                    ENV
                threads: config["simulator"]["embedded"]["threads"]
                resources:
                    mem_mb=per_attempt(2000),
                    runtime=per_attempt(10 * len(_block)),
                shell:
                    "cosmo-sbi simulate --config \"$COSMO_SBI_CONFIG\" --design {input.design}"
                    " --id {params.ids} --output {output} --threads {threads} --resume > {log} 2>&1"

else:
    PINOCCHIO = config["simulator"]["pinocchio"]
    PINOCCHIO_RUN = f"{RESULTS}/sims/{{set}}/{{id}}/pinocchio"

    rule pinocchio_setup:
        input:
            design=f"{RESULTS}/design/{{set}}.ecsv",
        output:
            f"{PINOCCHIO_RUN}/parameter_file",
        params:
            settings=simulation_settings(),
            run_dir=PINOCCHIO_RUN,
        log:
            f"{LOGS}/pinocchio_setup/{{set}}/{{id}}.log",
        conda:
            ENV
        shell:
            "cosmo-sbi pinocchio-setup --config \"$COSMO_SBI_CONFIG\" --design {input.design}"
            " --id {wildcards.id} --run-dir {params.run_dir} > {log} 2>&1"

    rule pinocchio_run:
        input:
            f"{PINOCCHIO_RUN}/parameter_file",
        output:
            pinocchio_plc_outputs(PINOCCHIO_RUN),
        params:
            run_dir=PINOCCHIO_RUN,
            # a function: the template's {placeholders} are not wildcards
            command=lambda wildcards: PINOCCHIO["command"],
        log:
            f"{LOGS}/pinocchio_run/{{set}}/{{id}}.log",
        conda:
            ENV
        # Every rank is a process of `threads` CPUs: a local run (--cores) counts them all,
        # so two runs of 2 ranks never share 2 cores.
        threads: PINOCCHIO["tasks"] * PINOCCHIO["threads"]
        resources:
            tasks=PINOCCHIO["tasks"],
            mem_mb=per_attempt(PINOCCHIO["tasks"] * PINOCCHIO["max_mem_mb"]),
            # SLURM (--profile slurm): an MPI job of `tasks` tasks (sbatch --ntasks) of
            # `threads` CPUs each (--cpus-per-task, which the plugin would otherwise take
            # from the job's threads = tasks x threads) and MaxMem per task
            # (--mem-per-cpu, so it holds across nodes), launched by srun.
            cpus_per_task=PINOCCHIO["threads"],
            mpi=f"srun --cpus-per-task={PINOCCHIO['threads']}",
            mem_mb_per_cpu=per_attempt(-(-PINOCCHIO["max_mem_mb"] // PINOCCHIO["threads"])),
            runtime=per_attempt(120),
        shell:
            # Inside a SLURM allocation the job's srun replaces simulator.pinocchio.command.
            "cosmo-sbi pinocchio-run --config \"$COSMO_SBI_CONFIG\" --run-dir {params.run_dir}"
            " ${{SLURM_JOB_ID:+--command '{resources.mpi} -n {{tasks}} {{executable}}"
            " {{parameter_file}}'}} > {log} 2>&1"

    rule pinocchio_convert:
        input:
            design=f"{RESULTS}/design/{{set}}.ecsv",
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
            "cosmo-sbi pinocchio-convert --config \"$COSMO_SBI_CONFIG\" --design {input.design}"
            " --id {wildcards.id} --run-dir {params.run_dir} --output {output} > {log} 2>&1"


# `snakemake lightcones` (or `--until lightcones`) makes every light cone, whatever the
# backend and the block size.
localrules:
    lightcones,


rule lightcones:
    input:
        [lightcone_path(name, sim_id) for name in SETS for sim_id in SIM_IDS[name]],
