"""Which edits of the library rerun which steps: `snakemake -n` on a finished smoke study in a copy of the repository.

Each rule lists the library modules its script imports as inputs (read from the import graph), so an edit reruns
exactly the steps whose code changed, and what depends on their outputs; the planning module is imported by no job.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_workflow import planned_jobs

from selfdistill.figure_table import FIGURE_TABLE, FREQUENCY
from selfdistill.planning import FIGURES

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.workflow

ANALYSIS = {"frequency", "aggregate", "aggregate_frequency", "frequency_summary", "study_summary"}
# the figures drawn from frequency.csv
FREQUENCY_FIGURES = [entry.name for entry in FIGURE_TABLE if entry.table == FREQUENCY]


def _figure_rules(jobs) -> set[str]:
    return {rule for rule in jobs if rule.startswith("figure")}


@pytest.fixture(scope="module")
def finished_copy(tmp_path_factory) -> Path:
    """A copy of the workflow and library with the smoke study built in it."""
    copy = tmp_path_factory.mktemp("repo")
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, copy / name)
    for name in ("workflow", "src", "config", "profiles", "envs"):
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _snakemake(copy, "--cores", "2")
    return copy


def _snakemake(copy: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = ["snakemake", "--configfile", "config/smoke.yaml", *args]
    result = subprocess.run(cmd, check=False, cwd=copy, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _rerun_after_editing(copy: Path, module: str, edit=lambda text: text + "\n# an edit\n") -> dict[str, int]:
    """The jobs a dry run plans after ``edit`` (default: a comment appended) is applied to ``module``; the module is
    restored afterwards."""
    path = copy / "src" / "selfdistill" / module
    original = path.read_text()
    path.write_text(edit(original))
    try:
        jobs = planned_jobs(_snakemake(copy, "-n").stdout)
    finally:
        path.write_text(original)
    jobs.pop("all", None)
    return jobs


def test_a_finished_study_has_nothing_to_do(finished_copy):
    assert "Nothing to be done" in _snakemake(finished_copy, "-n").stdout


@pytest.mark.parametrize("module", ["planning.py", "studies.py", "figure_table.py"])
def test_editing_the_planning_modules_reruns_nothing(finished_copy, module):
    assert _rerun_after_editing(finished_copy, module) == {}


def test_rewording_a_caption_reruns_nothing(finished_copy):
    """The caption reaches the report as a rule parameter that Snakemake does not record (a ReportCaption)."""
    jobs = _rerun_after_editing(
        finished_copy, "figure_table.py", lambda text: text.replace("Training loss (left)", "Loss")
    )
    assert jobs == {}


def test_editing_the_figures_reruns_only_the_figures(finished_copy):
    jobs = _rerun_after_editing(finished_copy, "figures.py")
    assert set(jobs) == _figure_rules(jobs) and sum(jobs.values()) == len(FIGURES)


def test_editing_the_frequency_analysis_reruns_it_and_its_figures_only(finished_copy):
    jobs = _rerun_after_editing(finished_copy, "frequency.py")
    assert set(jobs) - _figure_rules(jobs) == {"frequency", "aggregate_frequency", "frequency_summary"}
    assert jobs["frequency"] == 6 and sum(jobs[rule] for rule in _figure_rules(jobs)) == len(FREQUENCY_FIGURES)


def test_editing_training_reruns_training_and_what_depends_on_it(finished_copy):
    jobs = _rerun_after_editing(finished_copy, "training.py")
    assert set(jobs) - _figure_rules(jobs) == {"train"} | ANALYSIS
    assert jobs["train"] == 6 and sum(jobs[rule] for rule in _figure_rules(jobs)) == len(FIGURES)


def test_editing_the_noise_models_reruns_everything(finished_copy):
    jobs = _rerun_after_editing(finished_copy, "noise.py")
    assert {"corrupt", "train"} | ANALYSIS <= set(jobs) and jobs["corrupt"] == 2
