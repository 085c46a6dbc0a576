# Side-by-side comparison of every trained model (training.models), of every posterior
# method (posterior.methods) and the learning curve (learning_curve.fractions). A few tables and
# figures: on a cluster Snakemake makes them itself instead of queueing a job.

localrules:
    report,


rule report:
    input:
        metrics=expand(f"{RESULTS}/evaluation/{{model}}/metrics.json",
                       model=TRAINING["models"]),
        cross=cross_targets(),  # shown in the summary when cross_simulator is set
        posteriors=posterior_targets(),
        fisher=[f"{RESULTS}/fisher/fisher.json"] if fisher_enabled(config) else [],
        learning_curve=learning_curve_targets(),
    output:
        summary=report(f"{RESULTS}/report/summary.md", caption="../report/summary.rst",
                       category="Report"),
        comparison=report(f"{RESULTS}/report/comparison.csv",
                          caption="../report/comparison.rst", category="Report"),
        figures=report(
            directory(f"{RESULTS}/report/figures"),
            patterns=["{name}.png"],
            caption="../report/comparison_figures.rst",
            category="Report",
        ),
    params:
        evaluations=lambda wildcards, input: [os.path.dirname(path) for path in input.metrics],
        posteriors=lambda wildcards, input: [os.path.dirname(p) for p in input.posteriors],
        fisher=lambda wildcards, input: f"--fisher {input.fisher[0]}" if input.fisher else "",
        learning_curve=lambda wildcards, input: (
            f"--learning-curve {input.learning_curve[0]}" if input.learning_curve else ""),
        corner_seed=config["posterior"]["corner_seed"],
        output_dir=lambda wildcards, output: os.path.dirname(output.summary),
    log:
        f"{LOGS}/report.log",
    conda:
        ENV
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(15),
    shell:
        "cosmo-sbi report --config \"$COSMO_SBI_CONFIG\" --evaluations {params.evaluations}"
        " --posteriors {params.posteriors} {params.fisher} {params.learning_curve}"
        " --output-dir {params.output_dir}"
        " > {log} 2>&1"
