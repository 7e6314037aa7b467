"""Checkpoints of a training run: written atomically, loaded safely, never resumed when the run differs.

A run's checkpoint folder (``<run>/checkpoint/``, beside but not among the rule's declared outputs, because
Snakemake deletes a job's outputs before it reruns the job) holds:

- ``state.pt``: everything that decides the rest of the run (see ``training.TrainingRun.state_dict``) plus a
  fingerprint of what defines the run. Written to a temporary name, fsynced, renamed, and the folder fsynced, so a
  crash at any instant leaves either the previous checkpoint or the new one, never half of one.
- ``epoch_XXXXX.npz``: the stored outputs of each recorded epoch so far, one small atomic file per epoch.
- ``attempts.log``: every attempt's log lines (Snakemake deletes the rule's log before a rerun; the new attempt's
  log starts with these).
- ``failure.txt``: the error of an attempt that failed in a way a retry cannot fix (:data:`RETRY_CANNOT_HELP`);
  Snakemake's retry of the same job then stops at once with it instead of training again (see :func:`attempt`).

Loading uses ``torch.load(weights_only=True)`` (tensors and plain containers only: no pickled code runs). A file
that cannot be read, lacks a key or carries another fingerprint is reported in one log line and ignored: the run
starts from epoch 1 instead of resuming from wrong state.

Fault injection for tests: the environment variable ``SELFDISTILL_FAULT=<point>:<epoch>[:<signal>]`` sends this
process a signal (default KILL, as a power cut or ``kill -9`` would) at that point of that epoch (points:
:data:`FAULT_POINTS`); e.g. ``mid_epoch:2:USR1`` is a SLURM warning arriving half-way through epoch 2.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .imports import module_files
from .io import DiskFullError, disk_errors

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
ATTEMPTS_FILE = "attempts.log"
FAILURE_FILE = "failure.txt"
#: errors that a retry of the same job cannot fix (a diverged loss, bad input, a full disk, missing permissions):
#: the job fails once instead of repeating the run; anything else (a kill, a preemption, a transient CUDA error,
#: host memory) is retried and resumes
RETRY_CANNOT_HELP = (
    FloatingPointError,
    ValueError,
    KeyError,
    TypeError,
    FileNotFoundError,
    PermissionError,
    DiskFullError,
)
ATTEMPT_START, ATTEMPT_END = "attempt started:", "attempt ended"
FAULT_ENV = "SELFDISTILL_FAULT"
#: where a test may kill the process: half-way through an epoch's batches, after a checkpoint's temporary file is
#: complete but before its rename, and right after the rename
FAULT_POINTS = ("mid_epoch", "before_rename", "after_checkpoint")


def fault_point(point: str, epoch: int) -> None:
    """Signal this process if ``SELFDISTILL_FAULT`` names this point and epoch (a test hook; see the module doc)."""
    wanted = os.environ.get(FAULT_ENV, "").split(":")
    if wanted[:2] != [point, str(epoch)]:
        return
    signum = signal.Signals[f"SIG{wanted[2] if len(wanted) > 2 else 'KILL'}"]
    log.warning("fault injection: %s at %s of epoch %d", signum.name, point, epoch)
    if signum == signal.SIGKILL:
        logging.shutdown()
    os.kill(os.getpid(), signum)


def library_digest() -> str:
    """SHA-256 over the source of the library modules a training job runs (the train rule's code inputs): a
    checkpoint never resumes under changed training code, while an edit of, say, the figures leaves it valid."""
    digest = hashlib.sha256()
    for path in module_files(Path(__file__).with_name("training.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def fingerprint(data_sha256: str, params: Mapping[str, Any]) -> str:
    """What defines a run: the data file's checksum, the run's parameters and the library's code and version."""
    from . import __version__

    identity = {
        "data_sha256": data_sha256,
        "params": params,
        "library": __version__,
        "library_sha256": library_digest(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write, *, epoch: int = 0) -> None:
    """Write ``path`` through ``write(tmp_path)``, fsync it, rename it into place and fsync the folder; a full disk
    is one :class:`~selfdistill.io.DiskFullError` naming ``path``, at the epoch it happens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with disk_errors(path):
            write(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            if path.name == STATE_FILE:
                fault_point("before_rename", epoch)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


class CheckpointFolder:
    """A run's checkpoint folder: the state, the stored epochs' outputs and the best weights."""

    def __init__(self, folder: str | os.PathLike, run_fingerprint: str):
        self.folder = Path(folder)
        self.fingerprint = run_fingerprint

    # -------------------------------------------------------------------------------------------------- state

    def save(self, state: dict[str, Any], epoch: int) -> None:
        """Atomically replace ``state.pt`` by ``state`` (a dict of tensors and plain values), tagged with the fingerprint."""
        # serialised in memory first: torch's zip writer reports a full disk as an opaque RuntimeError, a plain
        # file write as ENOSPC
        buffer = io.BytesIO()
        torch.save({**state, "fingerprint": self.fingerprint}, buffer)
        write_atomic(self.folder / STATE_FILE, lambda tmp: tmp.write_bytes(buffer.getbuffer()), epoch=epoch)
        fault_point("after_checkpoint", epoch)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or ``None`` (logged in one line) when there is none, it is unreadable or it belongs to
        another run; a folder that cannot be resumed is emptied so its stale files never mix with a new run's."""
        path = self.folder / STATE_FILE
        for stale in self.folder.glob(".*.tmp-*"):
            # a killed writer's temporary file: never complete by definition
            stale.unlink(missing_ok=True)
        if not path.is_file():
            self.clear()
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or "fingerprint" not in state:
                raise ValueError("not a selfdistill checkpoint")
        # weights_only guarantees that no code runs, but an unpickler fed random bytes can fail with nearly any
        # exception (IndexError, UnicodeDecodeError, ...): every one means "not a checkpoint", never a crash
        except Exception as err:  # noqa: BLE001
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            log.warning("ignoring unreadable checkpoint %s (%s); starting from epoch 1", path, reason[:200])
            self.clear()
            return None
        if state["fingerprint"] != self.fingerprint:
            log.warning(
                "ignoring checkpoint %s: it belongs to a different run (data, parameters or library code changed); "
                "starting from epoch 1",
                path,
            )
            self.clear()
            return None
        return state

    def clear(self) -> None:
        """Forget the run's progress: remove everything but the attempts' log."""
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.name not in (ATTEMPTS_FILE, FAILURE_FILE):
                path.unlink(missing_ok=True)

    def remove(self) -> None:
        """Remove the folder and everything in it (the run is complete, or can never be resumed)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    # ------------------------------------------------------------------------------------------ stored epochs

    def epoch_path(self, epoch: int) -> Path:
        return self.folder / f"epoch_{epoch:05d}.npz"

    def save_epoch(self, epoch: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Store one epoch's outputs (e.g. ``train_subset/probs``) in their own atomic file."""

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{key.replace("/", "__"): value for key, value in arrays.items()})

        write_atomic(self.epoch_path(epoch), write)

    def load_epoch(self, epoch: int) -> dict[str, np.ndarray]:
        """One stored epoch's outputs, as saved (never unpickles)."""
        with np.load(self.epoch_path(epoch), allow_pickle=False) as npz:
            return {key.replace("__", "/"): npz[key] for key in npz.files}

    def missing_epochs(self, epochs) -> list[int]:
        """Which of ``epochs`` have no stored outputs file."""
        return [e for e in epochs if not self.epoch_path(e).is_file()]


@contextlib.contextmanager
def attempt(folder: str | os.PathLike, number: int = 1) -> Iterator[None]:
    """Bookkeeping of one attempt (Snakemake's ``attempt``, 1 for a fresh run) of a job whose run folder is ``folder``.

    A retry (``number`` > 1) of a job whose earlier attempt failed with an error in :data:`RETRY_CANNOT_HELP` stops
    at once with that error's message; a fresh run forgets old failures. An earlier attempt that ended without a
    word (SIGKILL, out of memory, a node lost) is named in the log. Every attempt's end is logged.
    """
    folder = Path(folder)
    failure = folder / FAILURE_FILE
    if number > 1 and failure.is_file():
        reason = failure.read_text().strip()
        raise RuntimeError(f"not retried: attempt {number - 1} failed with an error a retry cannot fix: {reason}")
    failure.unlink(missing_ok=True)
    attempts = folder / ATTEMPTS_FILE
    earlier = attempts.read_text() if attempts.is_file() else ""
    if earlier.strip() and ATTEMPT_END not in earlier.rpartition(ATTEMPT_START)[2]:
        log.warning("the earlier attempt ended without a word: killed (SIGKILL, out of memory, a lost node or power)")
    log.info("%s %d", ATTEMPT_START, number)
    try:
        yield
    except RETRY_CANNOT_HELP as err:
        summary = str(err).strip().splitlines()[0] if str(err).strip() else ""
        try:
            folder.mkdir(parents=True, exist_ok=True)
            failure.write_text(f"{type(err).__name__}: {summary}\n")
        except OSError as record_err:
            # e.g. the disk that just filled up: the retry will then resume and meet the error again, quickly
            log.warning("could not record the failure in %s: %s", failure, record_err)
        log.error("%s: %s (a retry cannot fix this; it will not train again)", ATTEMPT_END, type(err).__name__)
        raise
    except BaseException as err:
        log.error("%s: %s (a rerun resumes from the last checkpoint)", ATTEMPT_END, type(err).__name__)
        raise
