"""Config validation, wildcard constraints and target lists shared by all rules."""

import os
import re

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

from selfdistill.planning import (
    DATASET_SHAPES,
    FIGURES,
    NoiseSpec,
    check_config,
    config_file_problem,
    config_notes,
    auto_needs_gpu,
    distill_keys,
    distill_params,
    explain_config_error,
    frequency_mem_mb,
    human_label_problem,
    library_files,
    load_schema,
    no_gpu_note,
    noise_settings,
    train_mem_mb,
    train_params,
    train_time,
    with_defaults,
)
from selfdistill.dataset_files import dataset_problem
from selfdistill.studies import (
    apply_overrides,
    settings,
    snapshot_problem,
    study_name,
    variant_config,
    variant_problems,
    write_snapshot,
)
from selfdistill.device import PLANNED_DEVICE_ENV, gpu_visible, planned_device
from selfdistill.execution import without_execution

CONFIG_SCHEMA = workflow.source_path("../schemas/config.schema.yaml")

# Every config problem stops the plan before any job starts, in one line that names the key (or the file and line):
# a key YAML would silently drop (given twice in one file; Snakemake has read the files already), the schema's
# first violation, then what the schema cannot see (selfdistill.planning.check_config), for the study and for
# each of its variants.
for _file in workflow.configfiles:
    _problem = config_file_problem(os.path.abspath(_file))
    if _problem:
        raise WorkflowError(_problem)
# --config values arrive as strings (train='{lr: 0.02}' gives '0.02'): convert them by the schema's types
apply_overrides(config, workflow.config_settings.config, load_schema(CONFIG_SCHEMA))
try:
    validate(config, "../schemas/config.schema.yaml")
except WorkflowError:
    raise WorkflowError(explain_config_error(config, CONFIG_SCHEMA) or "invalid config") from None
STUDY = study_name(config, workflow.configfiles, workflow.config_settings.config)
NOISES = noise_settings(config)
SETTINGS = settings(list(NOISES), config)
# the config each setting trains with: the study's, with its variant's overrides
SETTING_CONFIG = {path: variant_config(config, setting.variant) for path, setting in SETTINGS.items()}
_problems = variant_problems(config, list(NOISES))
for _variant in config["variants"]:
    _problems += [f"variants.{_variant}: {p}" for p in check_config(variant_config(config, _variant), CONFIG_SCHEMA)]
_problems = check_config(config, CONFIG_SCHEMA) + _problems
if _problems:
    raise WorkflowError(_problems[0])
if workflow.is_main_process:
    logger.info(f"study {STUDY}: results in results/{STUDY}/")
    # values the pipeline adjusts (a frequency subset larger than its split) are said once, in the plan
    for _note in config_notes(config):
        logger.info(_note)

DATASET = config["dataset"]
NUM_CLASSES = DATASET_SHAPES[DATASET][1]
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
# (`auto` is resolved once by the planning process; cluster jobs re-parsing this file, and the jobs' scripts, inherit
# its answer)
TRAIN_DEVICE = planned_device(config["train"]["device"], inherit=not workflow.is_main_process)
if workflow.is_main_process and auto_needs_gpu(config, list(SETTING_CONFIG.values()), TRAIN_DEVICE):
    # a CIFAR-size network would be hours per epoch on this CPU: plan GPU jobs, as train.device: cuda does
    TRAIN_DEVICE = os.environ[PLANNED_DEVICE_ENV] = "cuda"
TRAIN_GPU = 1 if TRAIN_DEVICE.startswith("cuda") else 0
TRAIN_TIME = {path: train_time(setting_config, TRAIN_DEVICE) for path, setting_config in SETTING_CONFIG.items()}
# GPU jobs planned on a machine without a GPU (a login node; `cuda`, or `auto` above): say what they add up to, and
# plan on (-n works; a cluster runs them on its GPU nodes, a job started here stops at once with one line)
if workflow.is_main_process and TRAIN_GPU:
    _note = no_gpu_note(list(SETTING_CONFIG.values()), TRAIN_DEVICE, gpu_visible())
    if _note:
        logger.warning(_note)
RESULTS = f"results/{STUDY}"
# A study folder keeps the config it was made with (written by the study_config step): a config that would change its results
# stops every plan (-n and --touch too) instead of rebuilding or marking the folder with mixed results.
if workflow.is_main_process:
    _problem = snapshot_problem(RESULTS, config, STUDY, fill=lambda old: with_defaults(old, CONFIG_SCHEMA))
    if _problem:
        raise WorkflowError(_problem)
RUN = f"{RESULTS}/{{setting}}/seed{{seed}}/{{mode}}"


wildcard_constraints:
    noise="|".join(re.escape(name) for name in NOISES),
    setting="|".join(re.escape(path) for path in SETTINGS),
    seed=r"\d+",
    mode="|".join(MODES),


def code_of(script):
    """The library modules a script in workflow/scripts runs (read from its imports): inputs of its rule, so that
    editing a module reruns the steps that run it. The planning module is imported by no job: editing it reruns
    nothing."""
    return library_files(os.path.join(workflow.basedir, "workflow", "scripts", script))


def runs(wildcards):
    """Every (seed, mode) run of one setting, in config order, with the labels its tables carry."""
    noise = SETTINGS[wildcards.setting].noise
    return [dict(dataset=DATASET, noise=noise, seed=seed, mode=mode) for seed in SEEDS for mode in MODES]


def run_files(name):
    """Input function: one file per run of the requested setting (e.g. history.csv)."""

    def inner(wildcards):
        return [os.path.join(RUN.format(setting=wildcards.setting, **run), name) for run in runs(wildcards)]

    return inner


def run_data(wildcards):
    """Input function: the corrupted data of a run's noise setting and seed (shared by the study's variants)."""
    return f"{RESULTS}/{SETTINGS[wildcards.setting].noise}/seed{wildcards.seed}/data.h5"


def setting_config(section):
    """Params function: one section of the config the setting trains with (its variant's, if any)."""
    return lambda wildcards: SETTING_CONFIG[wildcards.setting][section]


def human_label_file(wildcards):
    """Input function: the label file of a human-noise setting (when it exists; see the check above)."""
    spec = NoiseSpec.from_config(NOISES[wildcards.noise])
    if spec.type == "human" and os.path.isfile(spec.label_file):
        return [spec.label_file]
    return []


def all_targets():
    """Every figure and summary of every setting of the study."""
    files = ["summary.csv", "summary.md", "summary.html", "histories.csv", "frequency.csv", "frequency_summary.md"]
    files += [f"figures/{figure}.png" for figure in FIGURES]
    study = [f"{RESULTS}/{name}" for name in ("config.yaml", "study.json", "summary.csv", "summary.md", "overview.png")]
    return study + [f"{RESULTS}/{setting}/{name}" for setting in SETTINGS for name in files]


# Rule figure: every figure of the figure table (selfdistill.figure_table) is one job. Per figure the table gives the
# tidy table it is drawn from, its plotter (a function of selfdistill.figures), its options and its report caption.
from selfdistill.figure_table import figure as figure_entry


def figure_table(wildcards):
    """Input function: the tidy table the figure is drawn from."""
    return f"{RESULTS}/{wildcards.setting}/{figure_entry(wildcards.figure).table}"


def figure_plotter(wildcards):
    """Params function: the name of the selfdistill.figures function that draws the figure."""
    return figure_entry(wildcards.figure).plotter


def figure_options(wildcards):
    """Params function: the keyword arguments of the figure's plotter."""
    return figure_entry(wildcards.figure).plot_options(config)


def figure_caption(wildcards):
    """Params function: the figure's caption, which workflow/report/figure.rst prints in the report."""
    return figure_entry(wildcards.figure).report_caption(config)
