"""Failures that explain themselves in the training step: a full disk, a killed earlier attempt, stale temporaries."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import attempts, run

from selfdistill.io import DiskFullError, atomic_output, disk_errors, remove_stale_temporaries

TMPFS = Path("/tmp/selfdistill-small-disk")


@pytest.fixture
def small_disk():
    """A 300 kB tmpfs (root only; elsewhere the patched-write test below covers the same path)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    TMPFS.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(TMPFS)], check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield TMPFS
    subprocess.run(["umount", str(TMPFS)], check=True)


@pytest.mark.slow
def test_full_disk_fails_at_the_epoch_it_happens_with_the_path_and_is_not_retried(digits_pair40, small_disk, tmp_path):
    out = small_disk / "run"
    failed = run(digits_pair40, out, "ce", train={"epochs": 60}, log_dir=tmp_path)
    assert failed.returncode != 0
    log = (tmp_path / "train.log").read_text()
    lines = [line for line in log.splitlines() if "no space left on the device while writing" in line]
    assert lines, log
    assert str(out / "checkpoint") in lines[0] and "free space and rerun" in lines[0]
    # found while training, not after the last epoch
    assert "epoch 60/60" not in log
    assert "train_run failed: DiskFullError" in log


def test_disk_errors_name_the_path_for_any_writer(tmp_path):
    def full(*_):
        raise OSError(28, "No space left on device")

    with (
        pytest.raises(DiskFullError, match=r"while writing .*table\.csv .*free space and rerun"),
        disk_errors(tmp_path / "table.csv"),
    ):
        full()
    # HDF5 reports the errno only in its message
    with pytest.raises(DiskFullError), disk_errors(tmp_path / "x.h5"):
        raise OSError("Can't write data (file write failed: errno = 28, error message = 'No space left on device')")
    # other errors pass unchanged
    with pytest.raises(PermissionError), disk_errors(tmp_path / "x"):
        raise PermissionError(13, "Permission denied")


def test_free_space_is_checked_before_a_large_write(tmp_path, monkeypatch):
    import shutil as sh

    from selfdistill import io

    monkeypatch.setattr(io.shutil, "disk_usage", lambda _: sh._ntuple_diskusage(10**9, 10**9 - 5 * 10**6, 5 * 10**6))
    io.ensure_free_space(tmp_path / "outputs.h5", 4 * 10**6)
    with pytest.raises(DiskFullError, match=r"while writing .*outputs\.h5 \(6\.0 MB needed, 5\.0 MB free\)"):
        io.ensure_free_space(tmp_path / "outputs.h5", 6 * 10**6)


@pytest.mark.slow
def test_a_killed_attempt_is_named_in_the_next_attempts_log(digits_pair40, tmp_path):
    assert run(digits_pair40, tmp_path, "ce", fault="mid_epoch:2").returncode == -signal.SIGKILL
    assert run(digits_pair40, tmp_path, "ce").returncode == 0
    earlier, last = attempts(tmp_path)
    assert "attempt started: 1" in earlier
    assert "the earlier attempt ended without a word: killed" in last


@pytest.mark.slow
def test_a_preempted_attempt_says_how_it_ended(digits_pair40, tmp_path):
    assert run(digits_pair40, tmp_path, "ce", fault="mid_epoch:2:TERM").returncode != 0
    assert run(digits_pair40, tmp_path, "ce").returncode == 0
    earlier, last = attempts(tmp_path)
    assert "attempt ended: Preempted (a rerun resumes from the last checkpoint)" in earlier
    assert "ended without a word" not in last


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path):
    final = tmp_path / "outputs.h5"
    stale = [tmp_path / ".outputs.h5.tmp-12345", tmp_path / ".outputs.h5.tmp-999"]
    for path in stale:
        path.write_bytes(b"half a file")
    other = tmp_path / ".history.csv.tmp-12345"
    other.write_text("x")
    assert sorted(remove_stale_temporaries(final)) == sorted(stale)
    for path in stale:
        path.write_bytes(b"half a file")
    with atomic_output(final) as tmp:
        tmp.write_text("done")
    assert final.read_text() == "done"
    assert not any(p.exists() for p in stale)
    # another output's temporary is that output's writer's business
    assert other.exists()
