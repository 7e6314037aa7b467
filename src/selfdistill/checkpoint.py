"""Checkpoints of a training run: written atomically, loaded safely, never resumed when the run differs.

A run's checkpoint folder (``<run>/checkpoint/``, beside but not among the rule's declared outputs, because
Snakemake deletes a job's outputs before it reruns the job) holds:

- ``state.pt``: everything that decides the rest of the run (see ``training.TrainingRun.state_dict``) plus a
  fingerprint of what defines the run. Written to a temporary name, fsynced, renamed, and the folder fsynced, so a
  crash at any instant leaves either the previous checkpoint or the new one, never half of one.
- ``epoch_XXXXX.npz``: the stored outputs of each recorded epoch so far, one small atomic file per epoch.
- ``attempts.log``: every attempt's log lines (Snakemake deletes the rule's log before a rerun; the new attempt's
  log starts with these).

Loading uses ``torch.load(weights_only=True)`` (tensors and plain containers only: no pickled code runs). A file
that cannot be read, lacks a key or carries another fingerprint is reported in one log line and ignored: the run
starts from epoch 1 instead of resuming from wrong state.

Fault injection for tests: the environment variable ``SELFDISTILL_FAULT=<point>:<epoch>[:<signal>]`` sends this
process a signal (default KILL, as a power cut or ``kill -9`` would) at that point of that epoch (points:
:data:`FAULT_POINTS`); e.g. ``mid_epoch:2:USR1`` is a SLURM warning arriving half-way through epoch 2.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
ATTEMPTS_FILE = "attempts.log"
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
    """SHA-256 over the library's source files: a checkpoint never resumes under changed code."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
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
    """Write ``path`` through ``write(tmp_path)``, fsync it, rename it into place and fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
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
        write_atomic(
            self.folder / STATE_FILE,
            lambda tmp: torch.save({**state, "fingerprint": self.fingerprint}, tmp),
            epoch=epoch,
        )
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
            elif path.name != ATTEMPTS_FILE:
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
