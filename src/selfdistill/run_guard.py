"""One trainer per run, and no trainer without the Snakemake that started it.

**The run lock.** A trainer holds an exclusive ``fcntl.flock`` on ``<run>/checkpoint.lock`` (beside the checkpoint
folder, which a complete run deletes, named after it) for its whole life. A second trainer of the same run (a
rerun started while an orphaned trainer of a killed Snakemake still runs) fails at once with :class:`RunLocked`,
before it reads or writes anything of the run: no temporary file removed, no line in the attempts' log, no
``failure.txt``. As in :mod:`selfdistill.gpu_slots`: the kernel releases the lock on *any* exit of the holder,
``kill -9`` included, so a dead trainer never blocks its run; the holder's pid, host and run are written into the
file for humans and for the error message only (that text may be stale; the lock alone decides); the file is
never deleted (deleting a lock file that another process is about to lock would break exclusivity). Where the
filesystem refuses locks (Lustre mounted without ``flock``), the trainer logs a warning and runs unguarded.

**Orphans.** Snakemake runs a ``script:`` job as ``bash -c "set -euo pipefail; python <script>"``; bash 5.1+
replaces itself by python, older shells and conda or container wrappers stay in between. ``kill -9`` of
Snakemake kills none of them: the trainer would run on, unseen, and collide with the rerun. So at its start a
trainer looks up its nearest ancestor that is a Snakemake process (:func:`snakemake_ancestor`, from ``/proc``)
and, between optimiser steps, checks (at most once a second) that this very process (pid and start time) is
still alive; when it is gone (or a zombie), the trainer checkpoints and stops like after SIGTERM. A trainer with
no Snakemake ancestor (the Python API, a test) is never watched, and the SLURM job step that runs a cluster job
is no Snakemake process, so a cluster never triggers it spuriously. ``prctl(PR_SET_PDEATHSIG)`` is not used: it
watches the direct parent (the surviving shell, where there is one) and fires when the parent *thread* that
forked the job ends, which in Snakemake's thread pool need not mean that Snakemake has died.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: at most this often (seconds) a trainer looks whether its Snakemake still lives
WATCH_INTERVAL_S = 1.0


class RunLocked(RuntimeError):
    """Another trainer, still alive, holds the run.

    Deliberately not one of :data:`checkpoint.RETRY_CANNOT_HELP`: it is raised before :func:`checkpoint.attempt`,
    so it writes no ``failure.txt`` (that file belongs to the live trainer's run, and would stop a later legitimate
    retry). A Snakemake retry does not loop on it either: the retries that ``retries:`` allows each stop again
    as soon as Python has started while the holder lives (the lock is taken before any data is read), and one that
    comes after the holder has gone is a legitimate rerun that resumes its checkpoint.
    """


def lock_path(checkpoint_dir: str | os.PathLike) -> Path:
    """The run's lock file: ``<run>/checkpoint.lock`` for the checkpoint folder ``<run>/checkpoint``."""
    folder = Path(checkpoint_dir)
    return folder.with_name(f"{folder.name}.lock")


@dataclass
class RunLock:
    """A held run lock (``path`` None: the filesystem has no locks and the run is unguarded, see ``warning``)."""

    path: Path | None
    warning: str | None = None


@contextlib.contextmanager
def hold_run(
    checkpoint_dir: str | os.PathLike, holder: str, *, log_path: str | os.PathLike | None = None
) -> Iterator[RunLock]:
    """Hold the run's lock for the block; :class:`RunLocked` at once when another trainer holds it.

    On a conflict the error's one line is also appended to ``log_path`` (the job's log, where Snakemake's
    ``show-failed-logs`` looks): appended, since the holder may still be writing that very file.
    """
    path = lock_path(checkpoint_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        note = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        os.close(fd)
        err = RunLocked(locked_message(holder, note, path))
        if log_path is not None:
            with contextlib.suppress(OSError), open(log_path, "a") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} ERROR {__name__}: {err}\n")
        raise err from None
    except OSError as err:
        # ENOLCK/ENOSYS/EINVAL: locks are not supported here (e.g. Lustre without the flock mount option)
        os.close(fd)
        yield RunLock(None, f"cannot lock {path} ({err.strerror}): nothing stops a second trainer of this run")
        return
    note = (
        f"pid {os.getpid()} on host {socket.gethostname()} trains {holder} since {time.strftime('%Y-%m-%dT%H:%M:%S')}"
    )
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{note}\n".encode(), 0)
        yield RunLock(path)
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def locked_message(run: str, note: str, path: Path) -> str:
    """The one line of :class:`RunLocked`: who holds the run (the lock file's note) and what to do."""
    found = re.match(r"pid (\d+) on host (\S+)", note)
    if found:
        pid, host = found.groups()
        who, stop = f"{note}", f"stop it with `kill {pid}` on {host} (it checkpoints and exits)"
    else:
        who, stop = "another trainer (its note is missing)", "stop that trainer (it checkpoints and exits)"
    return (
        f"not started: {run} is being trained by another process: {who} (lock {path}); "
        f"wait for it to finish, or {stop}, then run the same command again"
    )


# ------------------------------------------------------------------------------------------------------------------
# Orphans
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Process:
    """A process as ``/proc`` shows it: pid, parent, state letter, start time (clock ticks since boot), argv."""

    pid: int
    ppid: int
    state: str
    start: int
    argv: tuple[str, ...]


def read_process(pid: int) -> Process | None:
    """``/proc/<pid>``, or None when there is no such process (or no ``/proc``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may contain anything: the fields after its last ")"
    fields = stat[stat.rfind(")") + 2 :].split()
    return Process(
        pid, int(fields[1]), fields[0], int(fields[19]), tuple(a.decode(errors="replace") for a in argv if a)
    )


def is_snakemake(argv: tuple[str, ...]) -> bool:
    """Whether a command line runs Snakemake: ``snakemake ...``, ``python .../snakemake ...``, ``python -m snakemake``."""
    if any(Path(arg).name == "snakemake" for arg in argv[:2]):
        return True
    return any(argv[i] == "-m" and argv[i + 1] == "snakemake" for i in range(min(len(argv) - 1, 3)))


def snakemake_ancestor(pid: int | None = None) -> Process | None:
    """The nearest ancestor of ``pid`` (default: this process) that runs Snakemake; None when there is none."""
    proc = read_process(os.getpid() if pid is None else pid)
    for _ in range(64):
        if proc is None or proc.ppid <= 1:
            return None
        proc = read_process(proc.ppid)
        if proc is not None and is_snakemake(proc.argv):
            return proc
    return None


class SnakemakeWatch:
    """Whether the Snakemake process that started this trainer has died (checked at most every ``interval`` s)."""

    def __init__(
        self, ancestor: Process, *, interval: float = WATCH_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ):
        self.ancestor, self.interval, self.clock = ancestor, interval, clock
        self.next_check = clock() + interval
        self.dead = False

    @property
    def reason(self) -> str:
        return f"Snakemake (pid {self.ancestor.pid}), which started this trainer, has died"

    def died(self) -> bool:
        if self.dead or self.clock() < self.next_check:
            return self.dead
        self.next_check = self.clock() + self.interval
        now = read_process(self.ancestor.pid)
        # gone, a zombie not yet reaped, or its pid reused by another process
        self.dead = now is None or now.state in "ZX" or now.start != self.ancestor.start
        return self.dead


def watch_snakemake() -> SnakemakeWatch | None:
    """A watch on this trainer's Snakemake ancestor, or None when it has none (or the system has no ``/proc``)."""
    ancestor = snakemake_ancestor()
    return None if ancestor is None else SnakemakeWatch(ancestor)
