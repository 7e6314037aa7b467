"""Small I/O helpers shared by every pipeline step: atomic outputs and per-step logging."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path


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
