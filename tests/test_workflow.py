"""End-to-end: run the real Snakefile on config/smoke.yaml in a temporary directory.

The finished smoke study is the session's (``smoke_study``, read only); the test that deletes a file works on its own
copy (``smoke_copy``)."""

from __future__ import annotations

import shutil

import h5py
import pandas as pd
import pytest
import torch
import yaml
from helpers import FIGURES, REPO, SETTING, SMOKE, expected_targets, planned_jobs, snakemake

from selfdistill.io import TIMING_COLUMNS

# starts Snakemake: the smoke study itself is built once per session (tests/conftest.py, smoke_study)
pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def test_every_target_exists(smoke_study):
    missing = [str(p) for p in expected_targets() if not (smoke_study / p).is_file()]
    assert not missing, missing
    for fig in FIGURES:
        assert (smoke_study / SETTING / "figures" / f"{fig}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = pd.read_csv(smoke_study / SETTING / "summary.csv")
    assert summary["mode"].tolist() == ["ce", "self_distill", "self_distill_seq"]
    assert (summary["n_seeds"] == 2).all()
    leftovers = [p for p in smoke_study.rglob("*tmp-*")]
    assert not leftovers, leftovers
    logs = list((smoke_study / SETTING / "logs").rglob("train_*.log"))
    assert len(logs) == 6 and all("epoch 4/4" in log.read_text() for log in logs)


def test_second_run_has_nothing_to_do(smoke_study):
    result = snakemake(smoke_study, "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_deleting_one_figure_rebuilds_only_that_figure(smoke_copy):
    study = smoke_copy
    figure = SETTING / "figures" / "accuracy.png"
    others = [p for p in expected_targets() if p != figure]
    before = {p: (study / p).stat().st_mtime_ns for p in others}
    (study / figure).unlink()
    plan = snakemake(study, "-n", str(figure))
    assert planned_jobs(plan.stdout + plan.stderr) == {"figure": 1}
    snakemake(study, str(figure))
    assert (study / figure).is_file()
    assert {p: (study / p).stat().st_mtime_ns for p in others} == before
    assert "Nothing to be done" in (r := snakemake(study, "-n")).stdout + r.stderr


def test_cpu_training_is_reproducible(smoke_study, tmp_path):
    """A fresh directory, same config and seed: identical labels and identical history (timing aside)."""
    run = SETTING / "seed0" / "self_distill"
    snakemake(tmp_path, str(run / "history.csv"))
    first = pd.read_csv(smoke_study / run / "history.csv").drop(columns=list(TIMING_COLUMNS))
    second = pd.read_csv(tmp_path / run / "history.csv").drop(columns=list(TIMING_COLUMNS))
    pd.testing.assert_frame_equal(first, second)
    with (
        h5py.File(smoke_study / SETTING / "seed0/data.h5") as a,
        h5py.File(tmp_path / SETTING / "seed0/data.h5") as b,
    ):
        for split in ("train", "val"):
            assert a[f"{split}/labels_noisy"][()].tobytes() == b[f"{split}/labels_noisy"][()].tobytes()


@pytest.mark.parametrize(
    ("patch", "named"),
    [
        ({"train": {"lrr": 0.1}}, "lrr"),
        ({"noise": [{"type": "pair", "rate": 1.5}]}, "noise[0].rate"),
        ({"modes": ["ce", "distill"]}, "self_distill"),
        ({"dataset": "mnist"}, "digits"),
        ({"model": {"arch": "resnet"}}, "mlp"),
        ({"seeds": "0"}, "seeds"),
    ],
)
def test_malformed_config_fails_before_any_job(tmp_path, patch, named):
    config = yaml.safe_load(SMOKE.read_text())
    config.update(patch)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = snakemake(workdir, configfile=bad, check=False)
    assert result.returncode != 0
    message = [line for line in result.stderr.splitlines() if line.startswith("invalid config")]
    assert len(message) == 1 and named in message[0], result.stderr
    assert not (workdir / "results").exists()


def test_default_config_plans_the_whole_study(tmp_path):
    """`snakemake -n` with the shipped config.yaml plans 3 seeds × 3 modes and every figure."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    plan = snakemake(tmp_path, "-n", configfile=tmp_path / "config.yaml")
    jobs = planned_jobs(plan.stdout + plan.stderr)
    assert jobs["corrupt"] == 3 and jobs["train"] == 9 and jobs["frequency"] == 9
    assert jobs["figure"] == len(FIGURES)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_job_on_a_node_without_gpu_fails_fast(tmp_path):
    """A job planned for CUDA (it holds a `gpu` slot) that lands on a CPU-only node stops with a clear message."""
    config = yaml.safe_load(SMOKE.read_text())
    config["train"]["device"] = "cuda"
    configfile = tmp_path / "cuda.yaml"
    configfile.write_text(yaml.safe_dump(config))
    run = SETTING / "seed0" / "ce"
    plan = snakemake(tmp_path, "-n", str(run / "history.csv"), configfile=configfile)
    assert "gpu=1" in plan.stdout + plan.stderr
    failed = snakemake(tmp_path, str(run / "history.csv"), configfile=configfile, check=False)
    assert failed.returncode != 0
    log = (tmp_path / SETTING / "logs" / "seed0" / "train_ce.log").read_text()
    assert "device 'cuda' requested but no CUDA device is visible on node" in (log + failed.stdout + failed.stderr)
    assert not (tmp_path / run / "history.csv").exists()


def test_memorisation_rules_in_the_smoke_study(smoke_study):
    """Every run's per-sample table covers its training subset; the summary has ρ and q5 − q1 per mode and the share
    difference for every mode but the reference, at one agreement width (the smallest non-degenerate δ)."""
    smoke = yaml.safe_load(SMOKE.read_text())
    per_run = pd.read_csv(smoke_study / SETTING / "memorisation_runs.csv")
    assert len(per_run) == len(smoke["seeds"]) * len(smoke["modes"])
    assert per_run["delta_config"].nunique() == 1 and per_run["delta_config"].iloc[0] in smoke["frequency"]["deltas"]
    samples = pd.read_csv(smoke_study / SETTING / "seed0" / "ce" / "memorisation.csv")
    assert len(samples) == smoke["frequency"]["train_subset"] and samples["noisy"].any()
    summary = pd.read_csv(smoke_study / SETTING / "memorisation_summary.csv")
    assert set(summary["quantity"]) == {"rho", "q5_minus_q1", "share_minus_reference"}
    assert len(summary) == 3 * len(smoke["modes"]) - 1
