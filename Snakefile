"""selfdistill: self-distillation vs early stopping on noisy labels, seen through the frequency principle.

Run the whole study with `snakemake --cores 2`; rebuild one figure by naming its file, e.g.
`snakemake --cores 2 results/default/pair40/figures/accuracy.png`.
"""

import os
import sys

from snakemake.utils import min_version

min_version("8.0")

# The library lives in src/: make it importable here and in every job (also inside conda environments),
# whether or not the package was pip-installed.
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.getenv("PYTHONPATH")])))

from snakemake.exceptions import WorkflowError

from selfdistill.planning import config_file_problem, summary_pointer

# A study config given with --configfile stands alone: it does not inherit config.yaml's settings (its left-out
# keys take the schema's defaults). To build on config.yaml, name it first: --configfile config.yaml mine.yaml.
if not workflow.overwrite_configfiles:
    # Snakemake's message for a config file that is not YAML, empty or a list names neither the file nor the line.
    _problem = config_file_problem(os.path.abspath("config.yaml"))
    if _problem:
        raise WorkflowError(_problem)

    configfile: "config.yaml"


# Light steps run where Snakemake runs (the login node on a cluster), not as cluster jobs; no effect locally.
localrules:
    all,
    benchmarks,
    aggregate,
    aggregate_frequency,
    aggregate_spectrum,
    frequency_summary,
    spectrum_summary,
    memorisation_summary,
    study_summary,
    study_config,
    figure,


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/benchmarks.smk"


rule all:
    default_target: True
    input:
        all_targets(),
    message:
        "every figure and summary of the study is up to date"


# The report's landing page (`snakemake --report report.html`): the question, this study's config, the summary table.
report: "workflow/report/workflow.rst"


# After a successful run, say where the results are and how to report this study (its --configfile and --config;
# onsuccess does not run for a dry run or a failed one).
onsuccess:
    _files, _values = workflow.overwrite_configfiles or [], workflow.config_settings.config
    for _line in summary_pointer([f"{RESULTS}/summary.md"], _files, _values):
        logger.info(_line)
