"""One trainer per run, and none outliving its Snakemake: real processes, as after ``kill -9`` of Snakemake.

The orphan case starts a stand-in Snakemake (an executable named ``snakemake``) that runs the trainer through a
shell that stays in between (as older bash, conda and container wrappers do), kills it with SIGKILL and watches
the trainer checkpoint and exit. The lock case starts a second trainer while the first one trains.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfdistill.checkpoint import ATTEMPT_START, ATTEMPTS_FILE, FAILURE_FILE, STATE_FILE
from selfdistill.io import setup_logging
from selfdistill.run_guard import Process, RunLocked, SnakemakeWatch, is_snakemake, read_process
from selfdistill.training import train_run

MODEL = {"arch": "mlp", "width": 32, "depth": 1}
# long enough that a trainer that did not stop would still be training when the tests look
EPOCHS = 3000
TRAIN = {"epochs": EPOCHS, "batch_size": 256, "lr": 0.05}
# the lock test lets its first trainer finish: long enough to try a second one meanwhile, short enough to wait for
LOCK_TRAIN = TRAIN | {"epochs": 600}
RUNNER = """
import json, os, sys
from pathlib import Path
from selfdistill.training import train_run
args = json.loads(sys.argv[1])
out = Path(args.pop("out"))
(out / "trainer.pid").write_text(str(os.getpid()))
train_run(args.pop("data"), out / "history.csv", out / "outputs.h5", out / "model.pt",
          out_early_stopped=out / "model_early_stopped.pt", **args)
"""
# a stand-in for Snakemake: runs the trainer through a shell that does not exec it, then waits
FAKE_SNAKEMAKE = """#!{python}
import subprocess, sys, time
subprocess.Popen(["bash", "-c", 'set -euo pipefail; "$0" -c "$1" "$2"; true', {python!r}, {runner!r}, sys.argv[1]])
time.sleep(3600)
"""


def trainer_args(data, out: Path, log: Path, **extra) -> str:
    args = {
        "data": str(data),
        "out": str(out),
        "log_path": str(log),
        "mode": "ce",
        "seed": 0,
        "model": MODEL,
        "train": TRAIN,
        "freq_subset": 50,
        "record_epochs": {"log": 3},
        "device": "cpu",
        "run_name": "guard/ce/seed0",
    } | extra
    return json.dumps(args)


def start_trainer(data, out: Path, log: Path, **extra) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    args = trainer_args(data, out, log, **extra)
    return subprocess.Popen([sys.executable, "-c", RUNNER, args], stderr=subprocess.DEVNULL)


def wait_for(predicate, timeout: float = 120.0, what: str = "") -> float:
    """Poll until ``predicate()``; the seconds it took."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


def training(log: Path, epochs: int = EPOCHS) -> bool:
    """The trainer logged its second epoch (data loaded, a checkpoint written)."""
    return log.is_file() and f"epoch 2/{epochs}" in log.read_text()


def gone(pid: int) -> bool:
    proc = read_process(pid)
    return proc is None or proc.state in "ZX"


@pytest.mark.slow
def test_second_trainer_of_a_live_run_stops_at_once_and_touches_nothing(digits_pair40, tmp_path):
    out, log = tmp_path / "run", tmp_path / "first.log"
    first = start_trainer(digits_pair40, out, log, train=LOCK_TRAIN)
    try:
        wait_for(lambda: training(log, LOCK_TRAIN["epochs"]), what="the first trainer")
        folder = out / "checkpoint"
        # a temporary file of the first trainer's, as if caught between write and rename
        planted = folder / ".state.pt.tmp-999999999"
        planted.write_bytes(b"half a checkpoint")
        start = time.monotonic()
        second_log = tmp_path / "second.log"
        # a Snakemake retry (attempt 2) of the same run while the first trainer lives
        with pytest.raises(RunLocked) as raised:
            train_run(
                digits_pair40,
                out / "history.csv",
                out / "outputs.h5",
                out / "model.pt",
                out_early_stopped=out / "model_early_stopped.pt",
                mode="ce",
                seed=0,
                model=MODEL,
                train=LOCK_TRAIN,
                freq_subset=50,
                record_epochs={"log": 3},
                device="cpu",
                run_name="guard/ce/seed0",
                log_path=second_log,
                attempt_number=2,
            )
        assert time.monotonic() - start < 5
        message = str(raised.value)
        assert "\n" not in message
        assert f"pid {first.pid} on host {socket.gethostname()}" in message
        assert f"kill {first.pid}" in message and "wait for it to finish" in message
        assert second_log.read_text().count("\n") == 1 and message in second_log.read_text()
        # nothing of the run was touched: the temporary file, the attempts' log and no failure recorded
        assert planted.is_file()
        attempts = (folder / ATTEMPTS_FILE).read_text()
        assert attempts.count(ATTEMPT_START) == 1
        assert "ended without a word" not in attempts
        assert not (folder / FAILURE_FILE).exists()
        assert first.poll() is None
        # the first trainer goes on to the end
        assert first.wait(timeout=600) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        setup_logging(None)
    text = log.read_text()
    assert "ended without a word" not in text
    assert f"epoch {LOCK_TRAIN['epochs']}/{LOCK_TRAIN['epochs']}" in text
    # a complete run: its outputs, no checkpoint folder, no stale failure
    assert (out / "outputs.h5").is_file() and (out / "model.pt").is_file()
    assert not (out / "checkpoint").exists()
    # the lock file stays (it is never deleted), naming no holder
    assert (out / "checkpoint.lock").read_text() == ""


@pytest.mark.slow
@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_trainer_whose_snakemake_is_killed_checkpoints_and_exits(digits_pair40, tmp_path, reaped):
    out, log = tmp_path / "run", tmp_path / "train.log"
    out.mkdir()
    fake = tmp_path / "bin" / "snakemake"
    fake.parent.mkdir()
    fake.write_text(FAKE_SNAKEMAKE.format(python=sys.executable, runner=RUNNER))
    fake.chmod(0o755)
    snakemake = subprocess.Popen([str(fake), trainer_args(digits_pair40, out, log)], stderr=subprocess.DEVNULL)
    trainer = None
    try:
        wait_for(lambda: training(log), what="the trainer")
        trainer = int((out / "trainer.pid").read_text())
        parent = read_process(read_process(trainer).ppid)
        assert parent.argv[0] == "bash"  # a shell in between: the trainer's parent survives Snakemake
        snakemake.kill()
        if reaped:
            snakemake.wait()
        # it notices within a second of its next optimiser step; the generous bound only absorbs a loaded machine
        wait_for(lambda: gone(trainer), timeout=60, what="the orphaned trainer to exit")
    finally:
        if trainer is not None and not gone(trainer):
            os.kill(trainer, signal.SIGKILL)
        snakemake.kill()
        snakemake.wait()
    text = log.read_text()
    assert f"Snakemake (pid {snakemake.pid}), which started this trainer, has died" in text
    assert "has died: checkpointed at epoch" in text and "; rerun to resume" in text
    assert "attempt ended: Preempted" in text
    assert (out / "checkpoint" / STATE_FILE).is_file()
    assert not (out / "history.csv").exists()
    if reaped:
        # resumable: a rerun starts from that checkpoint (and is stopped as soon as it has)
        resumed_log = tmp_path / "resumed.log"
        rerun = start_trainer(digits_pair40, out, resumed_log)
        try:
            wait_for(lambda: resumed_log.is_file() and "resumed from checkpoint" in resumed_log.read_text())
        finally:
            rerun.send_signal(signal.SIGTERM)
            rerun.wait(timeout=60)
        assert "ended without a word" not in resumed_log.read_text()


def test_snakemake_command_lines():
    assert is_snakemake(("/usr/bin/python3", "/opt/env/bin/snakemake", "--cores", "2"))
    assert is_snakemake(("snakemake", "--profile", "profiles/slurm"))
    assert is_snakemake(("python", "-m", "snakemake", "--target-jobs", "train:seed=0"))
    # a Snakemake script job, a SLURM step, pytest: none of them is Snakemake
    assert not is_snakemake(("/usr/bin/python3", "/work/.snakemake/scripts/tmpab12.train.py"))
    assert not is_snakemake(("/usr/bin/slurmstepd",))
    assert not is_snakemake(("python", "-m", "pytest", "tests/test_snakemake.py"))


def test_watch_sees_a_dead_or_reused_pid_at_most_once_a_second():
    now = [0.0]
    me = read_process(os.getpid())
    alive = SnakemakeWatch(me, clock=lambda: now[0])
    now[0] = 5.0
    assert not alive.died()
    # the same pid, started at another time: another process
    reused = SnakemakeWatch(Process(me.pid, me.ppid, "S", me.start + 1, me.argv), clock=lambda: now[0])
    assert not reused.died()  # not checked before its interval
    now[0] = 10.0
    assert reused.died() and reused.died()
