# cosmo_sbi: Latin hypercube -> light cones -> 64^3 histograms -> CNN / ViT -> report.
# Defaults: config.yaml (paper scale). Laptop scale: --configfile config/laptop.yaml.
# The DAG and every rule are documented in README.md; rules only call `cosmo-sbi <stage>`.

configfile: os.path.join(workflow.basedir, "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/design.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/calibrate.smk"
include: "workflow/rules/histogram.smk"
include: "workflow/rules/common_learning.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/cross_simulator.smk"
include: "workflow/rules/posterior.smk"
include: "workflow/rules/learning_curve.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/summaries.smk"
include: "workflow/rules/fisher.smk"


# The report needs every histogram (through the dataset); naming them here again would
# cost the dry run a second look-up per file.
rule all:
    input:
        report_targets(),
        cross_targets(),
        f"{RESULTS}/summaries/two_point.h5",
        [f"{RESULTS}/fisher/fisher.json"] if fisher_enabled(config) else [],
        learning_curve_targets(),
    default_target: True
