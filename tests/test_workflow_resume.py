"""Through Snakemake: kill -9 the training jobs and Snakemake itself mid-run, unlock, rerun; the runs resume from
their checkpoints, lose at most one epoch of work each, and end exactly like an uninterrupted study."""

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

from selfdistill.io import TIMING_COLUMNS

pytestmark = [pytest.mark.workflow, pytest.mark.slow]
EPOCHS = 150
EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+) ")
RESUMED = re.compile(r"resumed from checkpoint at epoch (\d+) of \d+(?:, step \d+)? \((\d+) epochs done\)")


def runs() -> list[Path]:
    smoke = yaml.safe_load(SMOKE.read_text())
    return [SETTING / f"seed{seed}" / mode for seed in smoke["seeds"] for mode in smoke["modes"]]


def train_log(workdir: Path, run: Path) -> Path:
    return workdir / SETTING / "logs" / run.parent.name / f"train_{run.name}.log"


def last_logged_epoch(text: str) -> int:
    return max((int(m.group(1)) for m in EPOCH_LINE.finditer(text)), default=0)


@pytest.fixture(scope="module")
def longer(tmp_path_factory) -> Path:
    """An override of the smoke study whose training runs take several seconds each."""
    path = tmp_path_factory.mktemp("override") / "longer.yaml"
    # the same study name: the results land where the smoke study's would
    override = {"study": "smoke", "train": {"epochs": EPOCHS}, "frequency": {"record_epochs": {"every": 10}}}
    path.write_text(yaml.safe_dump(override))
    return path


def test_kill_9_of_snakemake_and_jobs_then_unlock_and_rerun_resumes(tmp_path_factory, longer):
    killed_dir, reference_dir = tmp_path_factory.mktemp("killed"), tmp_path_factory.mktemp("reference")
    # its own builds, not the session's smoke study: training runs of 150 epochs, long enough to be killed midway, and
    # an uninterrupted reference of the same config
    cmd = snakemake_command(killed_dir, configfile=[SMOKE, longer])
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # wait until two training jobs are well into their runs, then kill Snakemake and every job at once
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        logs = [train_log(killed_dir, r) for r in runs()]
        progress = [last_logged_epoch(p.read_text()) for p in logs if p.is_file()]
        if sum(e >= 20 for e in progress) >= 2:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = {
        r: last_logged_epoch(train_log(killed_dir, r).read_text()) for r in runs() if train_log(killed_dir, r).is_file()
    }
    interrupted = {r: e for r, e in before.items() if 0 < e < EPOCHS}
    assert interrupted, before

    # a killed Snakemake leaves its lock: the rerun needs --unlock first
    locked = snakemake(killed_dir, "-n", configfile=[SMOKE, longer], check=False)
    assert "LockException" in locked.stdout + locked.stderr or "locked" in (locked.stdout + locked.stderr).lower()
    snakemake(killed_dir, "--unlock", configfile=[SMOKE, longer])
    snakemake(killed_dir, configfile=[SMOKE, longer])

    for run, logged in interrupted.items():
        text = train_log(killed_dir, run).read_text()
        match = RESUMED.search(text)
        assert match, (run, text[:2000])
        done = int(match.group(2))
        # every epoch in the log was checkpointed before it was logged: at most the epoch in progress is lost
        assert done >= logged, (run, logged, done)
        print(f"{run}: {logged} epochs logged before the kill, resumed with {done} done")
        assert not (killed_dir / run / "checkpoint").exists()

    snakemake(reference_dir, configfile=[SMOKE, longer])
    timing = list(TIMING_COLUMNS)
    for run in runs():
        a = pd.read_csv(killed_dir / run / "history.csv").drop(columns=timing)
        b = pd.read_csv(reference_dir / run / "history.csv").drop(columns=timing)
        pd.testing.assert_frame_equal(a, b)
        with h5py.File(killed_dir / run / "outputs.h5") as x, h5py.File(reference_dir / run / "outputs.h5") as y:
            for key in ("epochs", "train_subset/probs", "test/logits"):
                assert np.array_equal(x[key][()], y[key][()]), (run, key)
    for name in ("summary.csv", "frequency.csv"):
        assert (killed_dir / SETTING / name).read_text() == (reference_dir / SETTING / name).read_text()
