"""Config validation, wildcard constraints and target lists shared by all rules."""

import os
import re

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

from selfdistill.planning import (
    FIGURES,
    NoiseSpec,
    check_config,
    config_file_problem,
    config_notes,
    distill_keys,
    distill_params,
    explain_config_error,
    frequency_mem_mb,
    human_label_problem,
    library_files,
    noise_settings,
    train_mem_mb,
    train_params,
    train_time,
)
from selfdistill.dataset_files import dataset_problem
from selfdistill.device import planned_device

CONFIG_SCHEMA = workflow.source_path("../schemas/config.schema.yaml")

# Every config problem stops the plan before any job starts, in one line that names the key (or the file and line):
# a key YAML would silently drop (given twice in one file; Snakemake has read the files already), the schema's
# first violation, then what the schema cannot see (selfdistill.planning.check_config).
for _file in workflow.configfiles:
    _problem = config_file_problem(os.path.abspath(_file))
    if _problem:
        raise WorkflowError(_problem)
try:
    validate(config, "../schemas/config.schema.yaml")
except WorkflowError:
    raise WorkflowError(explain_config_error(config, CONFIG_SCHEMA) or "invalid config") from None
_problems = check_config(config, CONFIG_SCHEMA)
if _problems:
    raise WorkflowError(_problems[0])
NOISES = noise_settings(config)
# values the pipeline adjusts (a frequency subset larger than its split) are said once, in the plan
if workflow.is_main_process:
    for _note in config_notes(config):
        logger.info(_note)

DATASET = config["dataset"]
# Missing data is reported in one line before any job starts (onstart runs only for real runs with jobs to do, so
# a study can still be planned with -n before its data is downloaded, and figures rebuilt without raw data).
DATA_PROBLEMS = [
    p
    for p in (
        dataset_problem(DATASET, config["dataset_options"]),
        human_label_problem(NOISES),
    )
    if p
]
if DATA_PROBLEMS and workflow.is_main_process:
    logger.warning(f"warning: {DATA_PROBLEMS[0]}")


onstart:
    if DATA_PROBLEMS and any(job.rule.name == "corrupt" for job in workflow.dag.needrun_jobs()):
        raise WorkflowError(DATA_PROBLEMS[0])


SEEDS = config["seeds"]
MODES = config["modes"]
DISTILL_KEYS = distill_keys(CONFIG_SCHEMA)


# the job gets the concrete device and holds a `gpu` slot exactly when it uses one
# (`auto` is resolved once by the planning process; cluster jobs re-parsing this file inherit its answer)
TRAIN_DEVICE = planned_device(config["train"]["device"], inherit=not workflow.is_main_process)
TRAIN_GPU = 1 if TRAIN_DEVICE.startswith("cuda") else 0
TRAIN_TIME = train_time(config, TRAIN_DEVICE)
RUN = "results/{dataset}/{noise}/seed{seed}/{mode}"


wildcard_constraints:
    dataset=re.escape(DATASET),
    noise="|".join(re.escape(name) for name in NOISES),
    seed=r"\d+",
    mode="|".join(MODES),


def code_of(script):
    """The library modules a script in workflow/scripts runs (read from its imports): inputs of its rule, so that
    editing a module reruns the steps that run it. The planning module is imported by no job: editing it reruns
    nothing."""
    return library_files(os.path.join(workflow.basedir, "workflow", "scripts", script))


def runs(wildcards):
    """Every (seed, mode) run of one dataset/noise setting, in config order."""
    return [
        dict(dataset=wildcards.dataset, noise=wildcards.noise, seed=seed, mode=mode) for seed in SEEDS for mode in MODES
    ]


def run_files(name):
    """Input function: one file per run of the requested setting (e.g. history.csv)."""

    def inner(wildcards):
        return [f"{RUN}/{name}".format(**run) for run in runs(wildcards)]

    return inner


def human_label_file(wildcards):
    """Input function: the label file of a human-noise setting (when it exists; see the check above)."""
    spec = NoiseSpec.from_config(NOISES[wildcards.noise])
    if spec.type == "human" and os.path.isfile(spec.label_file):
        return [spec.label_file]
    return []


def all_targets():
    """Every figure and summary of every configured noise setting."""
    files = ["summary.csv", "summary.md", "histories.csv", "frequency.csv"]
    files += [f"figures/{figure}.png" for figure in FIGURES]
    return [f"results/{DATASET}/{noise}/{name}" for noise in NOISES for name in files]


# Rule figure: every figure of FIGURES is one job (selfdistill.figures.PLOTTERS draws it). Per figure: the table
# it is drawn from and its options beyond the mode order.
FIGURE_TABLES = {
    "accuracy": "histories.csv",
    "loss": "histories.csv",
    "memorization": "histories.csv",
    "frequency_ratio": "frequency.csv",
    "frequency_error": "frequency.csv",
}
# the frequency figures draw the softmax outputs when they are analysed, else the first configured source (logits)
FIGURE_SOURCE = "probs" if "probs" in config["frequency"]["sources"] else config["frequency"]["sources"][0]
FIGURE_OPTIONS = {
    "frequency_ratio": {"deltas": config["frequency"]["plot_deltas"] or None, "source": FIGURE_SOURCE},
    "frequency_error": {"delta": config["frequency"]["plot_delta"], "source": FIGURE_SOURCE},
}


def figure_table(wildcards):
    """Input function: the tidy table the figure is drawn from."""
    return f"results/{wildcards.dataset}/{wildcards.noise}/{FIGURE_TABLES[wildcards.figure]}"


def figure_options(wildcards):
    """Params function: the keyword arguments of the figure's plotter."""
    return {"mode_order": MODES, **FIGURE_OPTIONS.get(wildcards.figure, {})}
