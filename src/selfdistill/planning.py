"""What the Snakefile needs to plan the study: :func:`plan_study` checks the config and returns the
:class:`StudyPlan` the rules read (study name, settings, runs, params, devices, runtimes, data problems).

The pieces live in their own modules: the one-line wording of config errors (:mod:`selfdistill.config_errors`),
what the schema cannot see (:mod:`selfdistill.config_checks`), the jobs' memory, runtimes and retries
(:mod:`selfdistill.resources`) and the split sizes (:mod:`selfdistill.splits`); their names are importable from
here too.

Only the standard library, jsonschema and PyYAML (both Snakemake dependencies) are imported here, so the workflow
parses fast and in an environment that has Snakemake alone (``--sdm conda`` runs the jobs elsewhere).
"""

from __future__ import annotations

import itertools
import logging
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .config_checks import (
    ASYMMETRIC_DEFAULT_MAP,
    check_config,
    config_notes,
    config_problems,
    distill_keys,
    distill_params,
    human_label_problem,
    noise_problems,
    noise_settings,
    with_defaults,
)
from .config_errors import config_file_problem, explain_config_error, load_schema, schema_error
from .dataset_files import DATASET_CHANNELS, DATASET_SHAPES, FIXED_SPLITS, dataset_problem
from .device import PLANNED_DEVICE_ENV, gpu_visible, planned_device
from .execution import without_execution
from .figure_table import FIGURE_TABLE
from .gpu_plan import GpuPlan, load_timings, plan_gpus, visible_gpus
from .gpu_slots import RUNS_PER_GPU_ENV, planned_runs_per_gpu
from .imports import module_files
from .resources import (
    CPU_AUTO_LIMIT_MIN,
    EPOCH_SECONDS,
    TrainTime,
    auto_needs_gpu,
    epoch_seconds,
    frequency_mem_mb,
    no_gpu_note,
    train_mem_mb,
    train_time,
)
from .splits import SplitSizes, split_sizes
from .studies import Setting, apply_overrides, settings, snapshot_problem, study_name, variant_config, variant_problems

__all__ = [
    "ASYMMETRIC_DEFAULT_MAP",
    "CPU_AUTO_LIMIT_MIN",
    "DATASET_CHANNELS",
    "DATASET_SHAPES",
    "EPOCH_SECONDS",
    "FIGURES",
    "FIXED_SPLITS",
    "MEMORISATION_TARGETS",
    "PlanError",
    "SplitSizes",
    "StudyPlan",
    "TrainTime",
    "auto_needs_gpu",
    "check_config",
    "config_file_problem",
    "config_notes",
    "config_problems",
    "distill_keys",
    "distill_params",
    "epoch_seconds",
    "explain_config_error",
    "frequency_mem_mb",
    "human_label_problem",
    "library_files",
    "load_schema",
    "no_gpu_note",
    "noise_problems",
    "noise_settings",
    "plan_study",
    "run_arguments",
    "split_sizes",
    "summary_pointer",
    "train_mem_mb",
    "train_params",
    "train_time",
    "with_defaults",
]

#: Every figure the pipeline builds per dataset/noise setting (file stem = name), in the figure table's order.
FIGURES = tuple(entry.name for entry in FIGURE_TABLE)
#: The memorisation analysis's outputs per setting (rule memorisation_summary), targets of the study.
MEMORISATION_TARGETS = (
    "memorisation.csv",
    "memorisation_runs.csv",
    "memorisation_summary.csv",
    "memorisation_summary.md",
)


def train_params(config: Mapping) -> dict:
    """The result-changing ``train`` settings: the train rule's params (the execution-only ones,
    :data:`selfdistill.execution.EXECUTION_ONLY`, reach the job through its config, so changing them reruns
    nothing)."""
    return without_execution("train", config["train"])


def library_files(script: str | os.PathLike) -> list[str]:
    """The library modules ``script`` runs (:func:`selfdistill.imports.module_files`), as paths relative to the
    working directory when they lie below it: a rule's inputs, so editing a module reruns the steps that run it."""
    here = Path.cwd().resolve()
    return [str(path.relative_to(here)) if path.is_relative_to(here) else str(path) for path in module_files(script)]


class PlanError(ValueError):
    """The study cannot be planned; the message is the one line the user sees."""


@dataclass(frozen=True)
class StudyPlan:
    """Everything the rules read, planned once from the checked config (the workflow's ``config``, with the
    command-line values merged in and the schema's defaults filled in)."""

    config: dict
    study: str
    #: noise setting name (``pair40``) -> its config entry
    noises: dict[str, dict]
    #: setting path (``pair40`` or ``pair40/lr0.001``) -> its noise setting and variant
    settings: dict[str, Setting]
    #: setting path -> the config it trains with: the study's, with its variant's overrides
    setting_config: dict[str, dict]
    #: the ``distill`` keys each mode reads (the schema's ``x-mode`` annotations)
    distill_keys: dict[str, tuple[str, ...]]
    #: the concrete device of the training jobs (``auto`` resolved by the planning process)
    train_device: str
    #: setting path -> runtime and retries of its training jobs
    train_time: dict[str, TrainTime]
    #: missing data, one line each (the corrupt step stops on the first)
    data_problems: list[str]
    #: training jobs that share one GPU (``resources.runs_per_gpu``, ``auto`` resolved by the planning process)
    runs_per_gpu: int = 1
    #: the planning process's GPU plan of a CUDA study (:func:`selfdistill.gpu_plan.plan_gpus`), else ``None``
    gpu_plan: GpuPlan | None = None

    @property
    def results(self) -> str:
        """The study's results folder."""
        return f"results/{self.study}"

    @property
    def dataset(self) -> str:
        return self.config["dataset"]

    @property
    def num_classes(self) -> int:
        return DATASET_SHAPES[self.dataset][1]

    @property
    def seeds(self) -> list[int]:
        return self.config["seeds"]

    @property
    def modes(self) -> list[str]:
        return self.config["modes"]

    @property
    def train_gpu(self) -> int:
        """The ``gpu`` slots a training job holds: 1 exactly when it trains on a GPU."""
        return 1 if self.train_device.startswith("cuda") else 0

    @property
    def gpu_jobs(self) -> int:
        """Training jobs that may hold a GPU at once here: visible GPUs × runs per GPU (0 without a GPU plan or a
        GPU here): the ``gpu`` resource the Snakefile registers when ``--resources gpu=N`` does not set it."""
        if self.gpu_plan is None or not self.gpu_plan.gpus_here:
            return 0
        return self.gpu_plan.gpus * self.runs_per_gpu

    @property
    def train_retries(self) -> int:
        """Attempts beyond the first that the longest setting's runs need (:func:`train_time`)."""
        return max(time.retries for time in self.train_time.values())

    @property
    def train_mem_mb(self) -> int:
        return train_mem_mb(self.dataset)

    @property
    def frequency_mem_mb(self) -> int:
        return frequency_mem_mb(self.config)

    @property
    def dataset_options(self) -> dict:
        """The result-changing ``dataset_options`` (the corrupt job reads data_root, download and verify_md5 from
        the config)."""
        return without_execution("dataset_options", self.config["dataset_options"])

    def runs(self, setting: str) -> list[dict]:
        """Every (seed, mode) run of one setting, in config order, with the labels its tables carry."""
        noise = self.settings[setting].noise
        return [
            {"dataset": self.dataset, "noise": noise, "seed": seed, "mode": mode}
            for seed in self.seeds
            for mode in self.modes
        ]

    def train_params(self, setting: str) -> dict:
        """The result-changing ``train`` settings of one setting (:func:`train_params`)."""
        return train_params(self.setting_config[setting])

    def distill_params(self, setting: str, mode: str) -> dict:
        """The ``distill`` settings ``mode`` reads, from one setting's config (:func:`distill_params`)."""
        return distill_params(self.setting_config[setting]["distill"], mode, self.distill_keys)


def _checked_config(
    config: dict, config_files: Sequence[str | os.PathLike], overrides: Mapping, schema: Mapping
) -> None:
    """Stop with the first problem of the config files, else merge ``overrides`` into ``config`` by the schema's
    types, stop with the schema's first violation, and fill in the schema's defaults (as Snakemake's ``validate``
    fills them)."""
    for path in config_files:
        problem = config_file_problem(os.path.abspath(path))
        if problem:
            raise PlanError(problem)
    # --config values arrive as strings (train='{lr: 0.02}' gives '0.02'): convert them by the schema's types
    apply_overrides(config, overrides, schema)
    error = schema_error(config, schema)
    if error:
        raise PlanError(error)
    filled = with_defaults(config, schema)
    config.clear()
    config.update(filled)


def _settings_problem(config: Mapping, noises: Sequence[str], schema_path: str | os.PathLike) -> str | None:
    """The first problem the schema cannot see, of the study's config and then of each variant's."""
    problems = variant_problems(config, noises)
    for variant in config["variants"]:
        problems += [f"variants.{variant}: {p}" for p in check_config(variant_config(config, variant), schema_path)]
    problems = check_config(config, schema_path) + problems
    return problems[0] if problems else None


def _train_device(config: Mapping, setting_configs: Sequence[Mapping], is_main_process: bool) -> str:
    """The concrete training device. ``auto`` is resolved once by the planning process (cluster jobs re-parsing
    the workflow, and the jobs' scripts, inherit its answer); a CIFAR-size network that would take hours per epoch
    on this CPU is planned as GPU jobs, as ``train.device: cuda`` plans it."""
    device = planned_device(config["train"]["device"], inherit=not is_main_process)
    if is_main_process and auto_needs_gpu(config, setting_configs, device):
        device = os.environ[PLANNED_DEVICE_ENV] = "cuda"
    return device


def _gpu_plan(
    config: Mapping, setting_configs: Sequence[Mapping], device: str, gpu_jobs: int | None
) -> tuple[int, GpuPlan | None]:
    """Runs per GPU and the GPU plan of a CUDA study (:mod:`selfdistill.gpu_plan`), planned by the planning process
    on the GPUs it sees and recorded in :data:`~selfdistill.gpu_slots.RUNS_PER_GPU_ENV` for the jobs; a bad GPU
    timings file stops the plan in one line."""
    try:
        rows, path = load_timings(config)
    except ValueError as err:
        raise PlanError(str(err)) from None
    gpus = visible_gpus()
    if device.startswith("cuda:"):
        index = int(device.split(":")[1])
        gpus = gpus[index : index + 1]
    plan = plan_gpus(config, setting_configs, gpus, rows, path, gpu_jobs)
    os.environ[RUNS_PER_GPU_ENV] = str(plan.runs_per_gpu)
    return plan.runs_per_gpu, plan


def plan_study(
    config: dict,
    *,
    config_files: Sequence[str | os.PathLike],
    overrides: Mapping,
    schema_path: str | os.PathLike,
    is_main_process: bool,
    log: logging.Logger | None = None,
    gpu_jobs: int | None = None,
) -> StudyPlan:
    """Check the workflow's ``config`` and plan the study; raise :class:`PlanError` with one line (naming the key,
    or the file and line) when it cannot be planned.

    ``config`` is modified in place as Snakemake's ``validate`` would: the command-line ``overrides``
    (``--config``) merged in by the schema's types, the schema's defaults filled in. The planning process (``is_main_process``) says in ``log`` where the
    results go, the values the pipeline adjusts, missing data and GPU jobs planned without a GPU; it stops when
    the study folder was made with another config. Cluster jobs re-parsing the workflow inherit its device and its
    runs per GPU. ``gpu_jobs``: ``--resources gpu=N``, the GPU jobs Snakemake may run at once (for the GPU plan)."""
    log = log or logging.getLogger(__name__)
    _checked_config(config, config_files, overrides, load_schema(schema_path))
    study = study_name(config, config_files, overrides)
    try:
        noises = noise_settings(config)
    except ValueError as err:
        raise PlanError(str(err)) from None
    setting_paths = settings(list(noises), config)
    setting_config = {path: variant_config(config, setting.variant) for path, setting in setting_paths.items()}
    problem = _settings_problem(config, list(noises), schema_path)
    if problem:
        raise PlanError(problem)
    data_problems = [
        p for p in (dataset_problem(config["dataset"], config["dataset_options"]), human_label_problem(noises)) if p
    ]
    if is_main_process:
        log.info(f"study {study}: results in results/{study}/")
        for note in config_notes(config):
            log.info(note)
        if data_problems:
            log.warning(f"warning: {data_problems[0]}")
    device = _train_device(config, list(setting_config.values()), is_main_process)
    runs_per_gpu, gpu_plan = planned_runs_per_gpu(config["resources"]["runs_per_gpu"]), None
    if is_main_process and device.startswith("cuda"):
        runs_per_gpu, gpu_plan = _gpu_plan(config, list(setting_config.values()), device, gpu_jobs)
    plan = StudyPlan(
        config=config,
        study=study,
        noises=noises,
        settings=setting_paths,
        setting_config=setting_config,
        distill_keys=distill_keys(schema_path),
        train_device=device,
        train_time={path: train_time(c, device) for path, c in setting_config.items()},
        data_problems=data_problems,
        runs_per_gpu=runs_per_gpu,
        gpu_plan=gpu_plan,
    )
    if is_main_process:
        _check_folder(plan, schema_path, log)
    return plan


def _check_folder(plan: StudyPlan, schema_path: str | os.PathLike, log: logging.Logger) -> None:
    """Print the GPU plan of a CUDA study and, on a machine without a GPU, where to run it (a login node: -n works,
    a cluster runs the jobs on its GPU nodes); stop when the study folder keeps a config that would change its
    results (instead of rebuilding it, or marking it with mixed results)."""
    if plan.gpu_plan is not None:
        log.info(plan.gpu_plan.line)
    if plan.train_gpu:
        note = no_gpu_note(plan.train_device, gpu_visible())
        if note:
            log.warning(note)
    problem = snapshot_problem(plan.results, plan.config, plan.study, fill=lambda old: with_defaults(old, schema_path))
    if problem:
        raise PlanError(problem)


def _config_value(value) -> str:
    """A ``--config`` value as the command line gave it (a nested value in YAML flow style; Snakemake hands nested
    leaves over as the strings that were typed)."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {_config_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_config_value, value)) + "]"
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


def run_arguments(config_files: Sequence[str | os.PathLike] = (), overrides: Mapping | None = None) -> str:
    """The ``--configfile`` and ``--config`` arguments that name a run's study, quoted for a shell ("" for none)."""
    words, here = [], Path.cwd().resolve()
    if config_files:
        paths = [Path(path).resolve() for path in config_files]
        words += ["--configfile", *(str(p.relative_to(here) if p.is_relative_to(here) else p) for p in paths)]
    if overrides:
        words += ["--config", *(f"{key}={_config_value(value)}" for key, value in overrides.items())]
    return shlex.join(words)


def summary_pointer(
    summary_md_paths: Sequence[str | os.PathLike],
    config_files: Sequence[str | os.PathLike] = (),
    overrides: Mapping | None = None,
) -> list[str]:
    """What the console says after a successful run: each existing summary.md with its table (the Markdown table
    without the notes and verdicts under it), then how to build the report of the same study (with the run's
    ``config_files`` given by --configfile and ``overrides`` given by --config). Empty when no summary exists yet."""
    lines = []
    for path in map(Path, summary_md_paths):
        if not path.is_file():
            continue
        table = list(itertools.takewhile(str.strip, path.read_text().splitlines()))
        lines += [f"summary: {path} (test accuracy %, mean ± sd over seeds)", *table]
    if lines:
        arguments = run_arguments(config_files, overrides)
        lines.append(
            f"figures and summaries in one page: snakemake {arguments + ' ' if arguments else ''}--report report.html"
        )
    return lines
