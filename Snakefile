# cosmo_sbi: Latin hypercube -> light cones -> 64^3 histograms -> CNN / ViT -> report.
# Defaults: config.yaml (paper scale). Laptop scale: --configfile config/laptop.yaml.
# The DAG and every rule are documented in README.md; rules only call `cosmo-sbi <stage>`.

configfile: os.path.join(workflow.basedir, "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/design.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/histogram.smk"
include: "workflow/rules/common_learning.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/posterior.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        histogram_targets(),
        report_targets(),
    default_target: True
