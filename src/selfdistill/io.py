"""Small I/O helpers shared by every pipeline step: atomic outputs and per-step logging."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

F = TypeVar("F", bound=Callable)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash or an exception leaves no half-written file under the final name (the temporary file is removed),
    so Snakemake never mistakes a partial output for a finished one.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


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


def logged_step(fn: F) -> F:
    """Decorate a pipeline step so that any exception it raises reaches the step's log (the rule's ``log:``, where
    Snakemake's ``show-failed-logs`` and a cluster user look): one summary line naming the step, then the traceback.
    The exception still propagates, so the job fails as before."""

    @functools.wraps(fn)
    def step(*args, **kwargs):
        try:
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
