"""The GPU timings file, ``gpu_timings.csv``: what the GPU self-check measured, in the one format the planner reads.

One row per measurement: a network (``arch``) at a batch size, precision and compile mode on one GPU
(``device_name``, ``gpu_mem_mb``), with ``concurrent`` runs sharing that GPU (1 = the run alone; 2, 4, 8 = the
packing measurements). The self-check (:mod:`selfdistill.gpu_check`) writes it with :func:`write_timings`; the
planner (:mod:`selfdistill.gpu_plan`) reads it with :func:`read_timings` to plan how many runs share a GPU
(``resources.runs_per_gpu: auto``, from ``peak_mem_mb``) and the study's GPU-hours and wall time (from ``epoch_s``
and the packed rows' ``train_img_s``).

Where: ``resources.gpu_timings`` in the config, or :data:`DEFAULT_PATH` when that is null. Measured values that a row
does not have are empty cells (``None`` here). Columns the reader does not know are ignored, so a newer self-check's
file stays readable; a missing column or a value of the wrong type stops with one line naming the file, row and column.

Only the standard library is imported at module level (the planner reads this module).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

#: Where the self-check writes and the planner reads the timings when ``resources.gpu_timings`` is null (beside the
#: speed benchmarks' CSVs, docs/benchmarks.md).
DEFAULT_PATH = "results/benchmarks/gpu_timings.csv"

#: The columns of gpu_timings.csv, in order.
COLUMNS = (
    "arch",
    "batch_size",
    "precision",
    "compile",
    "device_name",
    "gpu_mem_mb",
    "concurrent",
    "peak_mem_mb",
    "train_img_s",
    "eval_img_s",
    "train_s",
    "eval_s",
    "epoch_s",
)
#: What one measured epoch holds: 45,000 training images (CIFAR-10 less its 10% validation split), then the evaluation
#: of the train, val and test splits (45,000 + 5,000 + 10,000 images).
EPOCH_TRAIN_IMAGES = 45_000
EPOCH_EVAL_IMAGES = 60_000
#: The columns every row must fill: what identifies the measurement.
KEY_COLUMNS = ("arch", "batch_size", "precision", "compile", "device_name", "concurrent")


@dataclass(frozen=True)
class TimingRow:
    """One measurement of one network on one GPU.

    - ``precision``: the resolved precision (``bf16``, ``tf32``, ``float32``); ``compile``: ``none``, ``default`` or
      ``reduce-overhead`` (``torch.compile``'s mode; ``none`` = eager).
    - ``gpu_mem_mb``: the GPU's total memory (MB, 10^6 bytes); ``concurrent``: runs sharing the GPU while measured.
    - ``peak_mem_mb``: peak GPU memory of ONE run (MB, reserved by its process's caching allocator plus the CUDA
      context), what packing must fit ``concurrent`` times.
    - ``train_img_s``, ``eval_img_s``: training and evaluation images/s of all ``concurrent`` runs together.
    - ``train_s``, ``eval_s``, ``epoch_s``: seconds of one run's CIFAR-10 epoch (45,000 training images, then the
      evaluation of the train, val and test splits) while ``concurrent`` runs share the GPU; ``epoch_s`` =
      ``train_s + eval_s`` when both are measured.
    """

    arch: str
    batch_size: int
    precision: str
    compile: str
    device_name: str
    gpu_mem_mb: float | None = None
    concurrent: int = 1
    peak_mem_mb: float | None = None
    train_img_s: float | None = None
    eval_img_s: float | None = None
    train_s: float | None = None
    eval_s: float | None = None
    epoch_s: float | None = None


_INT_COLUMNS = ("batch_size", "concurrent")
_TEXT_COLUMNS = ("arch", "precision", "compile", "device_name")


def _cell(value: object) -> str:
    """A value as its CSV cell: empty for ``None`` or NaN, floats in their shortest exact form."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def write_timings(path: str | os.PathLike, rows: Iterable[TimingRow]) -> None:
    """Write ``rows`` to ``path`` as gpu_timings.csv (header :data:`COLUMNS`), atomically (a crash leaves the old
    file or the new one, never half of one)."""
    from .io import atomic_output

    rows = list(rows)
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(_cell(value) for value in asdict(row).values())


def _parse(raw: dict[str, str | None], where: str) -> TimingRow:
    """One CSV record as a :class:`TimingRow`; ``ValueError`` naming ``where`` and the column for a bad cell."""
    values: dict[str, object] = {}
    for column in COLUMNS:
        text = (raw.get(column) or "").strip()
        if not text:
            if column in KEY_COLUMNS:
                raise ValueError(f"{where}: column {column} is empty")
            values[column] = None
            continue
        if column in _TEXT_COLUMNS:
            values[column] = text
            continue
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{where}: column {column} is {text!r}, not a number") from None
        if column in _INT_COLUMNS:
            if not number.is_integer() or number < 1:
                raise ValueError(f"{where}: column {column} is {text!r}, not a positive integer")
            number = int(number)
        elif not math.isfinite(number) or number < 0:
            raise ValueError(f"{where}: column {column} is {text!r}, not a finite number ≥ 0")
        values[column] = number
    return TimingRow(**values)


def read_timings(path: str | os.PathLike) -> list[TimingRow]:
    """The rows of the gpu_timings.csv at ``path`` (``FileNotFoundError`` if there is none; ``ValueError`` with one
    line naming the file, row and column for a missing column or a bad value)."""
    path = Path(path)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not a gpu_timings.csv: no column {missing[0]} (columns: {', '.join(COLUMNS)})")
        return [_parse(raw, f"{path}, row {number}") for number, raw in enumerate(reader, start=2)]
