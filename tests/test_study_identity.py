"""One folder, one config: execution-only settings neither rename nor rebuild a study, and a finished study's
folder refuses a config that would change its results (-n and --touch included), in one line.

The finished study is the session's smoke study (tests/conftest.py, ``smoke_study``); every call on it is a dry run or
stops at planning, and the one that may touch files (``--touch``) works on its own copy (``smoke_copy``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import REPO, SMOKE, planned_jobs, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

STUDY = Path("results/smoke")
#: Execution-only values that differ from smoke.yaml's, as --config values (smoke is digits: no dataset_options).
EXECUTION_CHANGES = [
    "train={device: cuda}",
    "train={threads: 2}",
    "train={runtime: 30}",
    "train={epoch_seconds: 2.5}",
    "train={checkpoint_every: 3}",
    "train={eval_batch_size: 64}",
    "train={compile: reduce-overhead}",
]


def _problem(result) -> str:
    return result.stdout + result.stderr


def test_the_folder_keeps_the_config_it_was_made_with(smoke_study):
    snapshot = yaml.safe_load((smoke_study / STUDY / "config.yaml").read_text())
    assert snapshot["train"]["lr"] == yaml.safe_load(SMOKE.read_text())["train"]["lr"]
    # defaults filled in
    assert snapshot["train"]["schedule"] == "cosine" and snapshot["val_fraction"] == 0.1
    record = json.loads((smoke_study / STUDY / "study.json").read_text())
    assert record["study"] == "smoke" and len(record["digest"]) == 64
    assert "threads" not in record["settings"]["train"] and record["settings"]["train"]["lr"] == snapshot["train"]["lr"]


@pytest.mark.parametrize("change", EXECUTION_CHANGES)
def test_execution_only_changes_plan_nothing(smoke_study, change):
    plan = snakemake(smoke_study, "-n", "--config", change)
    assert "Nothing to be done" in plan.stdout, planned_jobs(plan.stdout)
    assert "study smoke: results in results/smoke/" in plan.stdout + plan.stderr


@pytest.mark.parametrize("extra", [["-n"], ["--touch"]])
def test_another_config_with_the_same_name_stops_at_planning(smoke_copy, tmp_path, extra):
    config = yaml.safe_load(SMOKE.read_text())
    config["train"]["lr"] = 0.5
    config["seeds"] = [0, 1, 2]
    config["train"]["threads"] = 2
    edited = tmp_path / "smoke.yaml"
    edited.write_text(yaml.safe_dump(config))
    before = {p: p.stat().st_mtime for p in (smoke_copy / STUDY).rglob("*") if p.is_file()}
    stopped = snakemake(smoke_copy, *extra, configfile=edited, check=False)
    assert stopped.returncode != 0
    lines = [line for line in _problem(stopped).splitlines() if "was made with another config" in line]
    assert len(lines) == 1, _problem(stopped)
    assert "train.lr 0.01 → 0.5" in lines[0] and "seeds [0, 1] → [0, 1, 2]" in lines[0]
    assert "threads" not in lines[0] and "study=" in lines[0] and "delete results/smoke/" in lines[0]
    # nothing was touched or written
    assert {p: p.stat().st_mtime for p in (smoke_copy / STUDY).rglob("*") if p.is_file()} == before


def test_a_command_line_study_name_with_another_config_stops_too(smoke_study):
    stopped = snakemake(smoke_study, "-n", "--config", "study=smoke", "train={epochs: 5}", check=False)
    assert stopped.returncode != 0 and "train.epochs 4 → 5" in _problem(stopped)


def test_a_dry_run_writes_no_snapshot(tmp_path):
    plan = snakemake(tmp_path, "-n")
    assert "study_config" in planned_jobs(plan.stdout)
    assert not (tmp_path / STUDY / "config.yaml").exists()


@pytest.mark.parametrize("name", ["original.yaml", "cifar10_seed.yaml"])
def test_a_gpu_study_plans_with_one_note_on_a_machine_without_gpu(tmp_path, monkeypatch, name):
    """train.device cuda (original) and auto (cifar10_seed) say the same at planning where no GPU is visible."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    plan = snakemake(tmp_path, "-n", configfile=REPO / "config" / name)
    out = plan.stdout + plan.stderr
    notes = [line for line in out.splitlines() if line.startswith("note: no GPU visible here: ")]
    assert len(notes) == 1 and "submit to a GPU machine or cluster" in notes[0], out
    plans = [line for line in out.splitlines() if line.startswith("GPU plan: ")]
    assert len(plans) == 1 and "GPU-hours, wall ≈" in plans[0] and "(none visible here)" in plans[0], out
    assert "gpu=1" in out and "gpu=0" not in out
