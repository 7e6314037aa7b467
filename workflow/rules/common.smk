"""The study's plan (selfdistill.planning.plan_study), wildcard constraints, and the input and params functions
shared by all rules."""

import os
import re

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from selfdistill.figure_table import figure as figure_entry
from selfdistill.mode_names import REFERENCE_MODE, TEACHER_OF
from selfdistill.planning import FIGURES, MEMORISATION_TARGETS, PlanError, library_files, plan_study
from selfdistill.noise_spec import NoiseSpec
from selfdistill.schema import SCHEMA_PATH

# `--resources gpu=N` as given (None when not: Snakemake 9 wraps resources in objects, 8 keeps plain values)
GIVEN_GPU = getattr(workflow.global_resources.get("gpu"), "value", workflow.global_resources.get("gpu"))

# Every config problem stops the plan before any job starts, in one line that names the key (or the file and line);
# the plan fills the schema's defaults into `config`, and says where the results go, the values it adjusts, missing
# data and GPU jobs planned without a GPU.
try:
    PLAN = plan_study(
        config,
        config_files=workflow.configfiles,
        overrides=workflow.config_settings.config,
        schema_path=SCHEMA_PATH,
        is_main_process=workflow.is_main_process,
        log=logger,
        gpu_jobs=GIVEN_GPU,
    )
except PlanError as err:
    raise WorkflowError(str(err)) from None

# `--resources gpu=N` means "N training jobs on GPUs at once". Without it, a local run may hold as many GPU jobs as
# there are GPU slots here (visible GPUs × resources.runs_per_gpu); a cluster run leaves gpu to the cluster.
if workflow.local_exec and PLAN.gpu_jobs and GIVEN_GPU is None:
    workflow.register_resource("gpu", PLAN.gpu_jobs)

# the paths every rule writes below
RESULTS = PLAN.results
RUN = f"{RESULTS}/{{setting}}/seed{{seed}}/{{mode}}"
MODES = PLAN.modes


# Missing data stops a real run with jobs to do in one line before any job starts (onstart runs only for those, so
# a study can still be planned with -n before its data is downloaded, and figures rebuilt without raw data).
onstart:
    if PLAN.data_problems and any(job.rule.name == "corrupt" for job in workflow.dag.needrun_jobs()):
        raise WorkflowError(PLAN.data_problems[0])


wildcard_constraints:
    noise="|".join(re.escape(name) for name in PLAN.noises),
    setting="|".join(re.escape(path) for path in PLAN.settings),
    seed=r"\d+",
    mode="|".join(MODES),


def code_of(script):
    """The library modules a script in workflow/scripts runs (read from its imports): inputs of its rule, so that
    editing a module reruns the steps that run it. The planning module is imported by no job: editing it reruns
    nothing."""
    return library_files(os.path.join(workflow.basedir, "workflow", "scripts", script))


def runs(wildcards):
    """Every (seed, mode) run of one setting, in config order, with the labels its tables carry."""
    return PLAN.runs(wildcards.setting)


def run_files(name):
    """Input function: one file per run of the requested setting (e.g. history.csv)."""

    def inner(wildcards):
        return [os.path.join(RUN.format(setting=wildcards.setting, **run), name) for run in runs(wildcards)]

    return inner


def run_data(wildcards):
    """Input function: the corrupted data of a run's noise setting and seed (shared by the study's variants)."""
    return f"{RESULTS}/{PLAN.settings[wildcards.setting].noise}/seed{wildcards.seed}/data.h5"


def teacher_weights(wildcards):
    """Input function: the early-stopped weights of the same seed's teacher run for a mode that distils from one
    (selfdistill.mode_names.TEACHER_OF), nothing for the other modes."""
    teacher = TEACHER_OF.get(wildcards.mode)
    if teacher is None:
        return []
    run = RUN.format(setting=wildcards.setting, seed=wildcards.seed, mode=teacher)
    return f"{run}/model_early_stopped.pt"


def spectrum_model(wildcards):
    """Input function: with frequency.space features, the same seed's early-stopped reference model, whose
    penultimate features the spectrum's kernel is built on; nothing in input space."""
    if config["frequency"]["space"] != "features":
        return []
    return [f"{RESULTS}/{wildcards.setting}/seed{wildcards.seed}/{REFERENCE_MODE}/model_early_stopped.pt"]


def setting_config(section):
    """Params function: one section of the config the setting trains with (its variant's, if any)."""
    return lambda wildcards: PLAN.setting_config[wildcards.setting][section]


def human_label_file(wildcards):
    """Input function: the label file of a human-noise setting (when it exists; see the check above)."""
    spec = NoiseSpec.from_config(PLAN.noises[wildcards.noise])
    if spec.type == "human" and os.path.isfile(spec.label_file):
        return [spec.label_file]
    return []


def all_targets():
    """Every figure and summary of every setting of the study."""
    files = ["summary.csv", "summary.md", "summary.html", "histories.csv", "frequency.csv", "frequency_summary.md"]
    files += ["spectrum_summary.md"]
    files += [f"figures/{figure}.png" for figure in FIGURES]
    files += list(MEMORISATION_TARGETS)
    study = [f"{RESULTS}/{name}" for name in ("config.yaml", "study.json", "summary.csv", "summary.md", "overview.png")]
    return study + [f"{RESULTS}/{setting}/{name}" for setting in PLAN.settings for name in files]


# Rule figure: every figure of the figure table (selfdistill.figure_table) is one job. Per figure the table gives the
# tidy table it is drawn from, its plotter (a function of selfdistill.figures), its options and its report caption.


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
