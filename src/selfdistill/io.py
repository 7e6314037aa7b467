"""Small I/O helpers shared by every pipeline step: atomic outputs and per-step logging."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import inspect
import json
import logging
import os
import shutil
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

F = TypeVar("F", bound=Callable)

#: the history columns that time an epoch (seconds): all of it, its training and its evaluation; they differ from
#: one run of the same config to the next, the other columns do not
TIMING_COLUMNS = ("epoch_seconds", "train_seconds", "eval_seconds")
#: the columns of a run's history.csv, in order (written by the train step, checked by the aggregate step)
HISTORY_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc_noisy",
    "train_acc_clean",
    "memorized",
    "corrected",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "test_pred_top_class",
    "test_pred_top_share",
    "distill_weight",
    *TIMING_COLUMNS,
)
#: the columns of a run's frequency.csv, in order (written by the frequency step, checked by the aggregate step)
FREQUENCY_CSV_COLUMNS = (
    "split",
    "source",
    "epoch",
    "delta",
    "delta_rel",
    "ratio",
    "e_low_noisy",
    "e_high_noisy",
    "e_low_clean",
    "e_high_clean",
)
#: the columns that name one setting in the tidy tables (a study's variant only in tables tagged with one)
SETTING_KEYS = ("dataset", "variant", "noise")


def setting_keys(columns) -> list[str]:
    """The :data:`SETTING_KEYS` among ``columns`` (a table's columns, or the table): a study's tables carry
    ``variant``, one setting's may not, and every grouping by setting must work for both."""
    return [key for key in SETTING_KEYS if key in columns]


class InputFileError(ValueError):
    """A file that a step reads is missing, unreadable or inconsistent with what wrote it. The message is one line:
    the file, what is wrong with it and what to do (usually: delete it and rerun snakemake, naming the rule that
    rebuilds it). A ValueError: a retry of the same job cannot fix it."""


def error_reason(err: BaseException) -> str:
    """The first line of an exception's message (its type when it has none), whitespace collapsed."""
    text = " ".join(str(err).strip().splitlines()[0].split()) if str(err).strip() else ""
    return text or type(err).__name__


@contextlib.contextmanager
def reading_hdf5(path: str | os.PathLike, advice: str) -> Iterator[Any]:
    """Open ``path`` for reading with h5py; a missing file, or h5py's errors inside the block (a truncated or damaged
    file, a missing object), become one :class:`InputFileError` line naming the file and ``advice``."""
    import h5py

    if not os.path.isfile(path):
        raise InputFileError(f"{path}: file not found; rerun snakemake")
    try:
        with h5py.File(path, "r") as h5:
            yield h5
    except InputFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as err:
        raise InputFileError(
            f"{path}: cannot be read as HDF5, the file is truncated or damaged ({error_reason(err)}); {advice}"
        ) from err


class DiskFullError(OSError):
    """The disk (or quota) filled up while a step wrote ``path``: a retry cannot help until space is freed."""

    def __init__(self, path: str | os.PathLike, err: OSError):
        super().__init__(
            err.errno,
            f"no space left on the device while writing {path} ({err.strerror or err}); free space and rerun "
            "(a training run resumes from its last checkpoint)",
        )
        self.path = str(path)

    def __str__(self) -> str:
        return self.strerror


def is_disk_full(err: BaseException) -> bool:
    """True for ENOSPC/EDQUOT, also where HDF5 only names the errno in its message."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(err) or "errno = 28" in str(err)


@contextlib.contextmanager
def disk_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full disk while writing ``path`` into one :class:`DiskFullError` that names ``path``."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as err:
        if is_disk_full(err):
            raise DiskFullError(path, err) from err
        raise


def ensure_free_space(path: str | os.PathLike, needed: int) -> None:
    """Raise :class:`DiskFullError` naming ``path`` unless its folder's file system has ``needed`` bytes free."""
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed:
        short = OSError(errno.ENOSPC, f"{needed / 1e6:.1f} MB needed, {free / 1e6:.1f} MB free")
        raise DiskFullError(path, short)


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed writers of ``path`` left beside it (``.<name>.tmp-<pid>``); a killed
    attempt's half-written file must not survive the next attempt (it can be a gigabyte)."""
    final = Path(path)
    stale = [p for p in final.parent.glob(f".{final.name}.tmp-*") if p.name != f".{final.name}.tmp-{os.getpid()}"]
    for p in stale:
        p.unlink(missing_ok=True)
        logging.getLogger("selfdistill").info("removed %s, left by a killed earlier attempt", p)
    return stale


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, producer: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash or an exception leaves no half-written file under the final name (the temporary file is removed),
    so Snakemake never mistakes a partial output for a finished one; temporaries of killed earlier writers are
    removed first; a full disk ends in one :class:`DiskFullError` naming ``path``. With ``producer`` (e.g.
    ``"rule train"``) the file gets a producer record (:func:`record_producer`) that readers check
    (:func:`check_producer`); any earlier record of ``path`` is removed first, so it never vouches for new bytes.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    producer_record(final).unlink(missing_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        with disk_errors(final):
            yield tmp
            os.replace(tmp, final)
            if producer is not None:
                record_producer(final, producer)
    finally:
        if tmp.exists():
            tmp.unlink()


def producer_record(path: str | os.PathLike) -> Path:
    """Where ``path``'s producer record lives: the hidden file ``.<name>.sha256`` beside it."""
    final = Path(path)
    return final.with_name(f".{final.name}.sha256")


def record_producer(path: str | os.PathLike, producer: str) -> None:
    """Record who wrote ``path`` and the SHA-256 of the bytes it wrote (JSON, written atomically): a table carries
    its producer's checksum as outputs.h5 carries its arrays', so an edit after the fact is noticed by the reader."""
    record = producer_record(path)
    tmp = record.with_name(f"{record.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"producer": producer, "sha256": file_digest(path)}) + "\n")
    os.replace(tmp, record)


def check_producer(path: str | os.PathLike) -> None:
    """When ``path`` has a producer record, check that its bytes are the ones its producer wrote; a changed file is
    one :class:`InputFileError` line naming the file, the rule that wrote it and what to do. A file without a record
    (written outside the pipeline, e.g. by hand for a notebook) is read as it is."""
    record = producer_record(path)
    if not record.is_file():
        return
    try:
        info = json.loads(record.read_text())
        producer, expected = str(info["producer"]), str(info["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputFileError(
            f"{record}: unreadable producer record of {path}; delete both and rerun snakemake"
        ) from None
    if file_digest(path) != expected:
        raise InputFileError(
            f"{path}: changed after {producer} wrote it (its SHA-256 differs from the one recorded in {record.name}); "
            f"delete it and rerun snakemake ({producer} writes it again)"
        )


def setup_logging(
    log_path: str | os.PathLike | None = None,
    level: int = logging.INFO,
    *,
    earlier: str | os.PathLike | None = None,
) -> logging.Logger:
    """Send the package's log records to ``log_path`` (the rule's ``log:``), or to stderr without one.

    ``earlier``: a file that collects the lines of every attempt of a job that may be rerun (Snakemake deletes a
    job's log before rerunning it). Its lines so far open ``log_path``, followed by a separator, and this attempt's
    lines are added to both, so the last attempt's log tells where and why the earlier ones stopped.
    """
    logger = logging.getLogger("selfdistill")
    logger.setLevel(level)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_path is None:
        handlers: list[logging.Handler] = [logging.StreamHandler()]
    else:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        before = Path(earlier).read_text() if earlier is not None and Path(earlier).is_file() else ""
        with open(log_path, "w") as fh:
            if before:
                fh.write(
                    f"{before}----- new attempt (pid {os.getpid()}); the lines above are from earlier ones -----\n"
                )
        handlers = [logging.FileHandler(log_path, mode="a")]
        if earlier is not None:
            Path(earlier).parent.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.FileHandler(earlier, mode="a"))
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    logger.propagate = False
    return logger


#: ``prologue`` of :func:`logged_step`: called with the step's arguments (by name, defaults applied) and a function
#: that sets up the step's log (its keywords go to :func:`setup_logging`); returns a context manager held for the step
StepPrologue = Callable[[Mapping[str, Any], Callable[..., None]], contextlib.AbstractContextManager]


def logged_step(fn: F | None = None, *, prologue: StepPrologue | None = None) -> F | Callable[[F], F]:
    """Decorate a pipeline step: when its ``log_path`` argument (the rule's ``log:``) is not None, the package's log
    records go to that file (:func:`setup_logging`) before the step runs, and any exception it raises reaches that
    log (where Snakemake's ``show-failed-logs`` and a cluster user look): one summary line naming the step, then the
    traceback. The exception still propagates, so the job fails as before.

    ``prologue`` (:data:`StepPrologue`) replaces the plain setup for a step that must do something before its log
    exists and hold it for the whole step, e.g. the training step's run lock, which is taken before the log is
    opened and whose log continues the earlier attempts' lines (``earlier``).
    """
    if fn is None:
        return functools.partial(logged_step, prologue=prologue)
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def step(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        log_path = bound.arguments.get("log_path")

        def start_log(**options) -> None:
            if log_path is not None:
                setup_logging(log_path, **options)

        try:
            if prologue is None:
                start_log()
                return fn(*args, **kwargs)
            with prologue(bound.arguments, start_log):
                return fn(*args, **kwargs)
        except Exception as err:
            logger = logging.getLogger("selfdistill")
            summary = str(err).strip().splitlines()[0] if str(err).strip() else ""
            logger.error("%s failed: %s%s", fn.__name__, type(err).__name__, f": {summary}" if summary else "")
            logger.error("traceback of the failure:\n%s", traceback.format_exc().rstrip())
            raise

    return step  # type: ignore[return-value]


def file_digest(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes, read in 4 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def arrays_digest(arrays) -> str:
    """SHA-256 over the C-order bytes of ``arrays`` in the given order (with their dtypes and shapes), so a reader
    can verify that the arrays it got are the ones that were written."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
