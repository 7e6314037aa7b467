"""How a run is asked to stop: SIGTERM, SIGUSR1 and SIGINT, or the death of the Snakemake that started it, become a
:class:`StopRequest` that the training loop checks after every optimiser step; the run then checkpoints and raises
:class:`Preempted`, and rerunning the job resumes it (:mod:`selfdistill.training`, :mod:`selfdistill.run_guard`)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

from .run_guard import SnakemakeWatch

log = logging.getLogger(__name__)


#: the signals that ask a run to checkpoint and stop: SLURM sends TERM before a time limit or a preemption (USR1
#: is the conventional alternative), and Ctrl-C sends INT to every process of the terminal's foreground group
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class Preempted(RuntimeError):
    """The run was asked to stop (SIGTERM/SIGUSR1) and has checkpointed; rerunning the job resumes it."""


class StopRequest:
    """Set by SIGTERM/SIGUSR1 while a run trains, or by the death of the Snakemake that started it (``watch``,
    see :mod:`selfdistill.run_guard`); the loop checks it after every optimiser step."""

    def __init__(self, watch: SnakemakeWatch | None = None) -> None:
        self.signum: int | None = None
        self.watch = watch
        self.orphaned = False

    @property
    def requested(self) -> bool:
        if self.signum is None and not self.orphaned and self.watch is not None and self.watch.died():
            self.orphaned = True
            log.warning("%s: stopping at the next checkpoint", self.watch.reason)
        return self.signum is not None or self.orphaned

    @property
    def name(self) -> str:
        if self.signum:
            return signal.Signals(self.signum).name
        return self.watch.reason if self.orphaned and self.watch is not None else "stop"


@contextlib.contextmanager
def stop_on_signals(watch: SnakemakeWatch | None = None) -> Iterator[StopRequest]:
    """Turn SIGTERM and SIGUSR1 into a :class:`StopRequest` for the block (handlers can only be set in the main
    thread; elsewhere only ``watch`` sets it), restoring the previous handlers after it."""
    stop = StopRequest(watch)
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request(signum, frame):
        stop.signum = signum

    previous = {sig: signal.signal(sig, request) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
