"""Which edits of the library rerun which steps: `snakemake -n` on a finished smoke study in a copy of the repository.

Each test edits its own copy of the session's smoke study (tests/conftest.py, ``smoke_copy``: the repository's
workflow and library with the study built in it), so that an edit's new file time cannot leak into another test.

Each rule lists the library modules its script imports as inputs (read from the import graph), so an edit reruns
exactly the steps whose code changed, and what depends on their outputs; the planning module is imported by no job.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import planned_jobs, snakemake

from selfdistill.figure_table import (
    FIGURE_TABLE,
    FREQUENCY,
    MEMORISATION,
    SPECTRUM,
    SPECTRUM_CONVERGENCE,
    SPECTRUM_ENERGY,
)
from selfdistill.planning import FIGURES

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

ANALYSIS = {"frequency", "aggregate", "aggregate_frequency", "frequency_summary", "study_summary"}
# the memorisation analysis (its kernel is the frequency filter's, so it reruns with it)
MEMORISATION_RULES = {"memorisation", "memorisation_summary"}
# the spectrum (its distances are the frequency filter's; the memorisation analysis takes its points from it)
SPECTRUM_RULES = {"spectrum", "aggregate_spectrum", "spectrum_summary"}
ANALYSIS |= MEMORISATION_RULES | SPECTRUM_RULES
# the figures drawn from frequency.csv, and from memorisation.csv
FREQUENCY_FIGURES = [entry.name for entry in FIGURE_TABLE if entry.table == FREQUENCY]
MEMORISATION_FIGURES = [entry.name for entry in FIGURE_TABLE if entry.table == MEMORISATION]
SPECTRUM_FIGURES = [
    entry.name for entry in FIGURE_TABLE if entry.table in (SPECTRUM, SPECTRUM_ENERGY, SPECTRUM_CONVERGENCE)
]


def _figure_rules(jobs) -> set[str]:
    return {rule for rule in jobs if rule.startswith("figure")}


def _rerun_after_editing(copy: Path, module: str, edit=lambda text: text + "\n# an edit\n") -> dict[str, int]:
    """The jobs a dry run plans after ``edit`` (default: a comment appended) is applied to ``module``; the module is
    restored afterwards."""
    path = copy / "src" / "selfdistill" / module
    original = path.read_text()
    path.write_text(edit(original))
    try:
        jobs = planned_jobs(snakemake(copy, "-n").stdout)
    finally:
        path.write_text(original)
    jobs.pop("all", None)
    return jobs


def test_a_finished_study_has_nothing_to_do(smoke_copy):
    """Also what the other tests stand on: a copy of a finished study (times kept) is up to date."""
    assert "Nothing to be done" in snakemake(smoke_copy, "-n").stdout


@pytest.mark.parametrize("module", ["planning.py", "studies.py", "figure_table.py"])
def test_editing_the_planning_modules_reruns_nothing(smoke_copy, module):
    assert _rerun_after_editing(smoke_copy, module) == {}


def test_rewording_a_caption_reruns_nothing(smoke_copy):
    """The caption reaches the report as a rule parameter that Snakemake does not record (a ReportCaption)."""
    jobs = _rerun_after_editing(
        smoke_copy, "figure_table.py", lambda text: text.replace("Training loss (left)", "Loss")
    )
    assert jobs == {}


def test_editing_the_figures_reruns_only_the_figures(smoke_copy):
    jobs = _rerun_after_editing(smoke_copy, "figures.py")
    assert set(jobs) == _figure_rules(jobs) and sum(jobs.values()) == len(FIGURES)


def test_editing_the_frequency_analysis_reruns_it_and_its_figures_only(smoke_copy):
    jobs = _rerun_after_editing(smoke_copy, "frequency.py")
    assert (
        set(jobs) - _figure_rules(jobs)
        == {"frequency", "aggregate_frequency", "frequency_summary"} | MEMORISATION_RULES | SPECTRUM_RULES
    )
    figures = len(FREQUENCY_FIGURES) + len(MEMORISATION_FIGURES) + len(SPECTRUM_FIGURES)
    assert jobs["frequency"] == 6 and sum(jobs[rule] for rule in _figure_rules(jobs)) == figures


def test_editing_the_spectrum_reruns_it_the_memorisation_analysis_and_their_figures_only(smoke_copy):
    jobs = _rerun_after_editing(smoke_copy, "spectrum.py")
    assert set(jobs) - _figure_rules(jobs) == SPECTRUM_RULES | MEMORISATION_RULES
    figures = len(SPECTRUM_FIGURES) + len(MEMORISATION_FIGURES)
    assert jobs["spectrum"] == 6 and sum(jobs[rule] for rule in _figure_rules(jobs)) == figures


def test_editing_the_memorisation_analysis_reruns_it_and_its_figure_only(smoke_copy):
    jobs = _rerun_after_editing(smoke_copy, "memorisation.py")
    assert set(jobs) - _figure_rules(jobs) == MEMORISATION_RULES
    assert jobs["memorisation"] == 6 and sum(jobs[rule] for rule in _figure_rules(jobs)) == len(MEMORISATION_FIGURES)


def test_editing_training_reruns_training_and_what_depends_on_it(smoke_copy):
    jobs = _rerun_after_editing(smoke_copy, "training.py")
    assert set(jobs) - _figure_rules(jobs) == {"train"} | ANALYSIS
    assert jobs["train"] == 6 and sum(jobs[rule] for rule in _figure_rules(jobs)) == len(FIGURES)


def test_editing_the_noise_models_reruns_everything(smoke_copy):
    jobs = _rerun_after_editing(smoke_copy, "noise.py")
    assert {"corrupt", "train"} | ANALYSIS <= set(jobs) and jobs["corrupt"] == 2
