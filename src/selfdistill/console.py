"""What a person waiting for a run sees on the console: a few short lines (:class:`ConsoleProgress`), durations
at a glance (:func:`format_duration`). The per-epoch lines go to the run's log (:mod:`selfdistill.training`)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any, TextIO


class ConsoleProgress:
    """A few short lines on the console (Snakemake shows a job's stderr) for a person waiting for a run.

    Each line starts with the run's name (dataset/noise/seed/mode). One when the run starts (with the epoch it
    resumes at and a ``tail -f`` hint for the per-epoch log), one when it ends (accuracy at the last and at the
    early-stopped epoch), and in between epoch k/n with accuracies, elapsed time and ETA: after every ``fraction``
    of the epochs but never sooner than ``min_seconds`` after the previous line, and at the latest after
    ``max_seconds`` (checked at each epoch's end). A digits run of a few seconds thus prints two lines; a CIFAR run
    of hours, one every few minutes. ``stream`` None prints nothing.
    """

    def __init__(
        self,
        stream: TextIO | None,
        run_name: str,
        epochs: int,
        *,
        min_seconds: float = 30.0,
        max_seconds: float = 300.0,
        fraction: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stream, self.run_name, self.epochs = stream, run_name, epochs
        self.min_seconds, self.max_seconds = min_seconds, max_seconds
        self.every = max(1, math.ceil(fraction * epochs))
        self.clock = clock
        self.started = self.last_time = clock()
        self.first_epoch, self.last_epoch = 1, 0

    def say(self, text: str) -> None:
        if self.stream is None:
            return
        try:
            print(f"[{self.run_name}] {text}", file=self.stream, flush=True)
        except OSError:
            # the console is gone (a pipe whose reader died with Snakemake): the log keeps everything, and the
            # run must go on to its checkpoint rather than die of a progress line
            self.stream = None

    def start(self, first_epoch: int, device: str, log_path: str | os.PathLike | None) -> None:
        """The run starts (or resumes) at ``first_epoch``."""
        self.started = self.last_time = self.clock()
        self.first_epoch, self.last_epoch = first_epoch, first_epoch - 1
        where = f"resuming at epoch {first_epoch}/{self.epochs}" if first_epoch > 1 else f"{self.epochs} epochs"
        follow = f"; per-epoch log: tail -f {log_path}" if log_path is not None else ""
        self.say(f"training, {where} on {device}{follow}")

    def epoch_done(self, progress: Any) -> None:
        """An epoch has ended (``progress.rows[-1]``); print a line if one is due (none at the last epoch: the
        run is not done before its outputs are written, see :meth:`done`)."""
        row, now = progress.rows[-1], self.clock()
        epoch, since = int(row["epoch"]), now - self.last_time
        if epoch >= self.epochs:
            return
        if since >= self.max_seconds or (epoch - self.last_epoch >= self.every and since >= self.min_seconds):
            done = epoch - self.first_epoch + 1
            eta = (now - self.started) / done * (self.epochs - epoch)
            self.say(
                f"epoch {epoch}/{self.epochs} ({100 * epoch // self.epochs}%) test {row['test_acc']:.3f} "
                f"val {row['val_acc']:.3f} train(noisy) {row['train_acc_noisy']:.3f}, "
                f"elapsed {format_duration(now - self.started)}, ETA {format_duration(eta)}"
            )
        else:
            return
        self.last_time, self.last_epoch = now, epoch

    def done(self, progress: Any) -> None:
        """The run is complete, its outputs written: the final line."""
        self.say(self.final_line(progress, self.clock() - self.started))

    def final_line(self, progress: Any, seconds: float) -> str:
        last = progress.rows[-1]
        text = (
            f"done: {self.epochs} epochs in {format_duration(seconds)}; test {last['test_acc']:.3f} at the last epoch"
        )
        if progress.best is not None:
            epoch = progress.best["epoch"]
            text += f", {progress.rows[epoch - 1]['test_acc']:.3f} early-stopped (best noisy val, epoch {epoch})"
        return text


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``: a duration to read at a glance."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
