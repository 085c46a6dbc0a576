# Posterior estimation (issue 9): each network's predictions as a summary table, then sbi's
# NPE per method (posterior.methods: cnn, vit, two_point, combined) trained on
# posterior.train_splits, calibrated on the test split, sampled at the fiducial seeds.
# A posterior setting reruns only these jobs and the report: no training, no simulation.


wildcard_constraints:
    method="|".join(POSTERIOR_METHODS),


rule network_summaries:
    input:
        f"{RESULTS}/evaluation/{{model}}/predictions.ecsv",
    output:
        f"{RESULTS}/summaries/{{model}}.h5",
    log:
        f"{LOGS}/network_summaries/{{model}}.log",
    conda:
        ENV
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(5),
    shell:
        "cosmo-sbi network-summaries --config \"$COSMO_SBI_CONFIG\" --model {wildcards.model}"
        " --predictions {input} --output {output} > {log} 2>&1"


rule posterior:
    input:
        unpack(posterior_inputs),
    output:
        samples=f"{RESULTS}/posteriors/{{method}}/samples.h5",
        metrics=f"{RESULTS}/posteriors/{{method}}/metrics.json",
        figures=report(
            directory(f"{RESULTS}/posteriors/{{method}}/figures"),
            patterns=["{name}.png"],
            caption="../report/posterior.rst",
            category="Posteriors",
            subcategory="{method}",
        ),
    params:
        settings=posterior_params(),
        summaries=posterior_summaries_argument,
        predictions=lambda wildcards, input: (
            f"--predictions {input.predictions}" if "predictions" in input.keys() else ""
        ),
        output_dir=lambda wildcards, output: os.path.dirname(output.metrics),
    log:
        f"{LOGS}/posterior/{{method}}.log",
    conda:
        ENV
    # One torch thread: the same samples as with 2, at 7.8 instead of 19.5 s of CPU (laptop
    # NPE, load ~5), and two NPEs at once on 2 cores.
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(60),
    shell:
        "OMP_NUM_THREADS={threads} cosmo-sbi posterior --config \"$COSMO_SBI_CONFIG\""
        " --method {wildcards.method} --summaries {params.summaries} {params.predictions}"
        " --output-dir {params.output_dir} > {log} 2>&1"
