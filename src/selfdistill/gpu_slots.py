"""Give each concurrent CUDA job on one machine its own GPU slot, by an exclusive lock on one of N lock files.

Why: Snakemake schedules ``gpu`` as a count. ``snakemake --resources gpu=4`` guarantees that at most four jobs
declaring ``resources: gpu=1`` run at once, but does not tell a job *which* device to use (a long-standing
Snakemake request), so without help every job would train on ``cuda:0``. Here a job whose device is plain
``"cuda"`` claims a free *slot* ``i`` in ``0..N-1`` and trains on that slot's device. ``N`` = visible CUDA devices ×
runs per GPU (``resources.runs_per_gpu``, k): with k = 1 each job has a GPU to itself; with k > 1 up to k jobs share
one GPU, which small networks leave mostly idle (:func:`slot_keys`: slot ``i`` is on device ``i mod devices``).

How: slot ``i`` is the lock file ``<lock_dir>/gpu<key_i>.lock``. A claim tries the slots in order with an
exclusive, non-blocking ``fcntl.flock`` and keeps the file descriptor open for as long as the job holds the slot;
when every slot is held it logs once that it waits and polls until one frees (or raises ``GpuSlotTimeout``).

Guarantees:

- No two holders of the same slot at once, across processes and within one process (``flock`` locks belong to
  the open file description, so even a second claim in the same process gets another slot).
- The kernel releases the lock when the descriptor is closed, i.e. on ``GpuSlot.release()`` or on *any* exit of
  the process, ``kill -9`` and crashes included: a dead job never keeps a GPU claimed.
- The holder's pid and name are written into the lock file for humans (``cat /tmp/selfdistill-gpu-locks-*/*``);
  that text may be stale and is never used for correctness. Lock files are never deleted (deleting a lock file
  that another process is about to lock would break exclusivity).

Limits: waiting is polling, not first-come-first-served; the lock directory must be on a local filesystem
(``flock`` over NFS is not reliable); jobs coordinate only when they share the lock directory, which by default
is per user (``/tmp/selfdistill-gpu-locks-<uid>``; set ``SELFDISTILL_GPU_LOCK_DIR`` to a directory writable by
everyone concerned to coordinate several users). Lock files are named after the physical GPU: its UUID
when torch reports one, else its ``CUDA_VISIBLE_DEVICES`` entry, else its index (:func:`visible_device_keys`), so
jobs that see different device sets, or each see their own GPU as ``cuda:0`` (SLURM with ``ConstrainDevices``),
still lock the device they use and never queue behind each other. A job given an explicit device (``cuda:1``)
bypasses the claim. With k runs per GPU a GPU has the lock files ``gpu<key>.lock`` (slot 0, the same file as with
k = 1) and ``gpu<key>-slot1.lock`` … ``gpu<key>-slot<k-1>.lock``; a job counts only the first k of them, so jobs
planned with different k on one GPU agree on the slots they have in common (never more than the larger k at once).

This module imports ``torch`` only inside functions that count or name devices, so it is cheap to import.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import final

log = logging.getLogger(__name__)

LOCK_DIR_ENV = "SELFDISTILL_GPU_LOCK_DIR"
#: Environment variable through which every training job inherits the planner's runs per GPU
#: (``resources.runs_per_gpu``, ``auto`` resolved: :mod:`selfdistill.gpu_plan`).
RUNS_PER_GPU_ENV = "SELFDISTILL_RUNS_PER_GPU"
DEFAULT_POLL_S = 1.0


class GpuSlotTimeout(TimeoutError):
    """No slot became free within the timeout."""


@final
@dataclass(eq=False)
class GpuSlot:
    """A claimed slot: holds the locked file descriptor until ``release()`` or process exit.

    Usable as a context manager (``with claim_gpu_slot(...) as slot:``); ``release()`` is idempotent.
    """

    index: int
    n_slots: int
    lock_path: Path
    _fd: int | None = field(default=None, repr=False)
    #: the visible device this slot is on (``None``: one slot per device, the device is ``index``)
    gpu: int | None = None

    @property
    def device(self) -> str:
        """The CUDA device string of this slot, ``cuda:<gpu>`` (index among the visible devices)."""
        return f"cuda:{self.index if self.gpu is None else self.gpu}"

    @property
    def held(self) -> bool:
        """True until released."""
        return self._fd is not None

    def release(self) -> None:
        """Clear the holder note and close the descriptor, which drops the lock."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            # read-only descriptor (lock file owned by someone else): nothing to clear
            pass
        os.close(fd)

    def __enter__(self) -> GpuSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def default_lock_dir() -> Path:
    """``$SELFDISTILL_GPU_LOCK_DIR`` if set, else ``/tmp/selfdistill-gpu-locks-<uid>``: shared by a user's jobs."""
    env = os.environ.get(LOCK_DIR_ENV)
    if env:
        return Path(env)
    return Path("/tmp") / f"selfdistill-gpu-locks-{os.getuid()}"


def lock_path(lock_dir: str | os.PathLike, key: str | int) -> Path:
    """The lock file of slot key ``key``: ``<lock_dir>/gpu<key>.lock`` (unsafe characters replaced by ``_``)."""
    return Path(lock_dir) / f"gpu{re.sub(r'[^A-Za-z0-9_.-]', '_', str(key))}.lock"


def _open_lock_file(path: Path) -> int:
    """Open (creating) a lock file; read-only if another user's file is not writable, since flock needs no write."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        try:
            return os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise PermissionError(
                f"cannot create GPU lock file {path}: {path.parent} is not writable; "
                f"set {LOCK_DIR_ENV} to a writable local directory"
            ) from None


def _describe_holders(paths: Sequence[Path]) -> str:
    """The holder notes of ``paths`` for messages, e.g. ``gpu0=pid 12 run-a; gpu1=?`` (best effort)."""
    notes = []
    for path in paths:
        try:
            note = path.read_text().strip() or "?"
        except OSError:
            note = "?"
        notes.append(f"{path.stem}={note}")
    return "; ".join(notes)


def try_claim_gpu_slot(
    n_slots: int,
    lock_dir: str | os.PathLike | None = None,
    *,
    holder: str | None = None,
    keys: Sequence[str | int] | None = None,
) -> GpuSlot | None:
    """Claim the first free slot of ``n_slots`` without waiting; ``None`` if all are held.

    ``keys`` name the slots' lock files (default ``0..n_slots-1``); ``holder`` is written into the lock file.
    """
    if n_slots < 1:
        raise ValueError(f"n_slots must be at least 1, got {n_slots}")
    keys = list(range(n_slots)) if keys is None else list(keys)
    if len(keys) != n_slots:
        raise ValueError(f"{len(keys)} lock keys given for {n_slots} slots")
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    for index, key in enumerate(keys):
        path = lock_path(directory, key)
        fd = _open_lock_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        who = f"pid {os.getpid()}" + (f" {holder}" if holder else "")
        note = f"{who} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, note.encode(), 0)
        except OSError:
            # read-only descriptor: the note is for humans only
            pass
        return GpuSlot(index, n_slots, path, fd)
    return None


def claim_gpu_slot(
    n_slots: int,
    lock_dir: str | os.PathLike | None = None,
    *,
    timeout: float | None = None,
    poll: float = DEFAULT_POLL_S,
    holder: str | None = None,
    keys: Sequence[str | int] | None = None,
) -> GpuSlot:
    """Claim a free slot of ``n_slots``, waiting (polling every ``poll`` s) while all are held.

    ``timeout=None`` waits forever; otherwise ``GpuSlotTimeout`` is raised after ``timeout`` seconds, with a
    one-line message naming the lock directory, ``n_slots`` and the holders. Logs once when it starts waiting.
    """
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    start = time.monotonic()
    waiting = False
    while True:
        slot = try_claim_gpu_slot(n_slots, directory, holder=holder, keys=keys)
        if slot is not None:
            if waiting:
                log.info(
                    "GPU slot %d of %d freed after %.1f s of waiting",
                    slot.index,
                    n_slots,
                    time.monotonic() - start,
                )
            return slot
        paths = [lock_path(directory, k) for k in (keys if keys is not None else range(n_slots))]
        elapsed = time.monotonic() - start
        if timeout is not None and elapsed >= timeout:
            raise GpuSlotTimeout(
                f"no free GPU slot among {n_slots} in {directory} after {elapsed:.1f} s "
                f"(timeout {timeout:g} s); holders: {_describe_holders(paths)}"
            )
        if not waiting:
            waiting = True
            log.info(
                "all %d GPU slots in %s are held (%s); waiting for one to free",
                n_slots,
                directory,
                _describe_holders(paths),
            )
        pause = poll if timeout is None else min(poll, max(0.0, timeout - elapsed))
        time.sleep(pause)


def visible_cuda_devices() -> int:
    """Number of CUDA devices this process can see (imports torch lazily)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def visible_device_keys(n_devices: int) -> list[str]:
    """Lock keys of the visible devices, naming the physical GPU wherever possible.

    Preferred: each device's UUID (lock file ``gpu-<uuid>.lock``), which is the same for every process that sees that GPU, under
    whatever index: a scheduler that isolates devices (SLURM with ``ConstrainDevices``) shows each job its own GPU
    as ``cuda:0`` with ``CUDA_VISIBLE_DEVICES=0``, and index-named locks would make those jobs queue behind one
    lock file while their own GPUs idle. Without UUIDs (no CUDA here, an old torch): the ``CUDA_VISIBLE_DEVICES``
    entries when set, else ``0..n-1``.
    """
    uuids = _device_uuids(n_devices)
    if uuids is not None:
        return [f"-{u}" for u in uuids]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [e.strip() for e in visible.split(",") if e.strip()]
        if len(entries) >= n_devices:
            return entries[:n_devices]
    return [str(i) for i in range(n_devices)]


def _device_uuids(n_devices: int) -> list[str] | None:
    """The UUIDs of CUDA devices 0..n-1, or ``None`` when any is unavailable or they are not distinct."""
    import torch

    if n_devices < 1 or not torch.cuda.is_available():
        return None
    try:
        uuids = [str(torch.cuda.get_device_properties(i).uuid) for i in range(n_devices)]
    except (AttributeError, AssertionError, RuntimeError):
        return None
    if len(set(uuids)) != n_devices or not all(uuids):
        return None
    return uuids


def slot_keys(device_keys: Sequence[str], runs_per_gpu: int = 1) -> list[str]:
    """The lock keys of ``runs_per_gpu`` slots on each device, in claim order: slot 0 of every device first, then
    slot 1 of every device, …, so that jobs spread over the GPUs before any GPU takes a second one. Slot 0 of a
    device keeps the device's own key (``gpu<key>.lock``, as with one run per GPU), slot ``s`` > 0 is
    ``<key>-slot<s>`` (``gpu<key>-slot<s>.lock``). Slot ``i`` of the list is on device ``i % len(device_keys)``."""
    if runs_per_gpu < 1:
        raise ValueError(f"runs_per_gpu must be at least 1, got {runs_per_gpu}")
    return [key if s == 0 else f"{key}-slot{s}" for s in range(runs_per_gpu) for key in device_keys]


def planned_runs_per_gpu(setting: object = None) -> int:
    """How many training jobs share one GPU in this job: the planner's answer (:data:`RUNS_PER_GPU_ENV`, which
    the Snakefile sets and every job inherits), else ``setting`` when it is a whole number, else 1 (``auto``
    without a planner: one run per GPU, never oversubscribed)."""
    inherited = os.environ.get(RUNS_PER_GPU_ENV, "").strip()
    if inherited.isdigit() and int(inherited) >= 1:
        return int(inherited)
    if isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        return setting
    return 1


def claim_cuda_device(
    device: str,
    *,
    lock_dir: str | os.PathLike | None = None,
    timeout: float | None = None,
    poll: float = DEFAULT_POLL_S,
    holder: str | None = None,
    runs_per_gpu: int = 1,
) -> tuple[str, GpuSlot | None]:
    """Turn a planned device into the one to train on: ``"cuda"`` → ``("cuda:<i>", slot)``, else ``(device, None)``.

    For ``"cuda"`` without an index it claims a free slot among ``runs_per_gpu`` slots on each visible device
    (:func:`slot_keys`; waiting while all are held) and logs ``claimed GPU slot i of N (lock file ...)``. Keep the
    returned slot until the run ends and then ``release()`` it (process exit releases it too). Any other device
    (``cpu``, ``cuda:1``, ``auto``) is returned unchanged with no slot: resolve ``auto`` first. Raises
    ``RuntimeError`` when no CUDA device is visible.
    """
    if device != "cuda":
        return device, None
    n_devices = visible_cuda_devices()
    if n_devices < 1:
        raise RuntimeError("device 'cuda' requested but no CUDA device is visible on this node")
    keys = slot_keys(visible_device_keys(n_devices), runs_per_gpu)
    slot = claim_gpu_slot(len(keys), lock_dir, timeout=timeout, poll=poll, holder=holder, keys=keys)
    slot.gpu = slot.index % n_devices
    shared = f" on {slot.device}, {runs_per_gpu} runs per GPU" if runs_per_gpu > 1 else ""
    log.info("claimed GPU slot %d of %d%s (lock file %s)", slot.index, slot.n_slots, shared, slot.lock_path)
    return slot.device, slot
