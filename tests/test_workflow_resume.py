"""Through Snakemake: kill -9 the training jobs and Snakemake itself mid-run, unlock, rerun; the runs resume from
their checkpoints, lose at most one epoch of work each, and end exactly like an uninterrupted study.

The killed study is the smoke study (config/smoke.yaml) built in its own folder; its uninterrupted reference is the
session's smoke study (tests/conftest.py, ``smoke_study``), the same config built once for every test. So that the
kill lands mid-run without racing a timer, every training job of the killed build stops itself (SIGSTOP, through
the ``SELFDISTILL_FAULT`` hook of selfdistill.checkpoint) half-way through its second epoch, after its first epoch
was checkpointed and logged; with two cores Snakemake then waits on two frozen jobs, and the test kills the lot.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import SETTING, SMOKE, snakemake, snakemake_command

from selfdistill.checkpoint import FAULT_ENV
from selfdistill.io import TIMING_COLUMNS

pytestmark = [pytest.mark.workflow, pytest.mark.slow]
EPOCHS = yaml.safe_load(SMOKE.read_text())["train"]["epochs"]
#: where each training job of the killed build freezes: half-way through epoch 2, one epoch checkpointed
FREEZE = "mid_epoch:2:STOP"
FROZEN = "fault injection: SIGSTOP at mid_epoch of epoch 2"
EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+) ")
#: the setting's tables compared with the uninterrupted study's
COMPARED = ("summary.csv", "frequency.csv")
RESUMED = re.compile(r"resumed from checkpoint at epoch (\d+) of \d+(?:, step \d+)? \((\d+) epochs done\)")


def runs() -> list[Path]:
    smoke = yaml.safe_load(SMOKE.read_text())
    return [SETTING / f"seed{seed}" / mode for seed in smoke["seeds"] for mode in smoke["modes"]]


def train_log(workdir: Path, run: Path) -> Path:
    return workdir / SETTING / "logs" / run.parent.name / f"train_{run.name}.log"


def last_logged_epoch(text: str) -> int:
    return max((int(m.group(1)) for m in EPOCH_LINE.finditer(text)), default=0)


def kill_mid_run(workdir: Path) -> dict[Path, int]:
    """Start the smoke study in ``workdir``, wait until two training jobs are frozen mid-run, then SIGKILL Snakemake
    and every job at once; {run: last epoch its log shows} of the runs that had started."""
    env = os.environ | {FAULT_ENV: FREEZE}
    cmd = snakemake_command(workdir)
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            logs = [train_log(workdir, r) for r in runs()]
            if sum(FROZEN in p.read_text() for p in logs if p.is_file()) >= 2:
                break
            assert proc.poll() is None, "Snakemake ended before two training jobs were mid-run"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    return {r: last_logged_epoch(train_log(workdir, r).read_text()) for r in runs() if train_log(workdir, r).is_file()}


def test_kill_9_of_snakemake_and_jobs_then_unlock_and_rerun_resumes(smoke_study, tmp_path):
    killed_dir = tmp_path / "killed"
    killed_dir.mkdir()
    before = kill_mid_run(killed_dir)
    interrupted = {r: e for r, e in before.items() if 0 < e < EPOCHS}
    assert len(interrupted) >= 2, before

    # a killed Snakemake leaves its lock: the rerun needs --unlock first
    locked = snakemake(killed_dir, "-n", check=False)
    assert "LockException" in locked.stdout + locked.stderr or "locked" in (locked.stdout + locked.stderr).lower()
    snakemake(killed_dir, "--unlock")
    # what the comparison below reads: every run, its frequency analysis and the setting's two tables (the figures
    # and the other analyses after them would only add jobs that start after training)
    snakemake(killed_dir, *(str(SETTING / name) for name in COMPARED))

    for run, logged in interrupted.items():
        text = train_log(killed_dir, run).read_text()
        match = RESUMED.search(text)
        assert match, (run, text[:2000])
        done = int(match.group(2))
        # every epoch in the log was checkpointed before it was logged: at most the epoch in progress is lost
        assert done >= logged, (run, logged, done)
        print(f"{run}: {logged} epochs logged before the kill, resumed with {done} done")
        assert not (killed_dir / run / "checkpoint").exists()

    # the uninterrupted reference: the session's smoke study, the same config built without a kill
    reference_dir = smoke_study
    timing = list(TIMING_COLUMNS)
    for run in runs():
        a = pd.read_csv(killed_dir / run / "history.csv").drop(columns=timing)
        b = pd.read_csv(reference_dir / run / "history.csv").drop(columns=timing)
        pd.testing.assert_frame_equal(a, b)
        with h5py.File(killed_dir / run / "outputs.h5") as x, h5py.File(reference_dir / run / "outputs.h5") as y:
            for key in ("epochs", "train_subset/probs", "test/logits"):
                assert np.array_equal(x[key][()], y[key][()]), (run, key)
    for name in COMPARED:
        assert (killed_dir / SETTING / name).read_text() == (reference_dir / SETTING / name).read_text()
