"""The GPU side of a study's plan: how many runs share one GPU (``resources.runs_per_gpu``) and the one
``GPU plan:`` line with the study's GPU-hours and wall time, printed when Snakemake plans a study that trains on CUDA.

Sources, best first, each named in the line:

- **epoch seconds** of one run alone on the GPU: ``train.epoch_seconds`` when set, else the GPU self-check's
  measurement in the GPU timings file (:mod:`selfdistill.gpu_timings`, ``resources.gpu_timings``) for the run's
  network, batch size, precision and compile mode (its training and evaluation seconds scaled to the run's split
  sizes when both are measured), else the built-in estimate
  (:data:`selfdistill.resources.EPOCH_SECONDS`, the one table the job runtimes use too);
- **peak GPU memory of one run**: the timings file, else :data:`PEAK_MEM_MB`, a deliberately high built-in estimate;
- **packing speed-up** of k runs sharing a GPU (their images/s together over one run's): the timings file's rows
  with ``concurrent`` = k (or the largest measured below k), else none assumed (×1: k runs take k times as long each,
  an upper bound of the wall time);
- **GPUs**: the ones ``nvidia-smi`` lists here (``CUDA_VISIBLE_DEVICES`` respected); none visible - one GPU.

``runs_per_gpu: auto`` is ``min(8, floor(0.9 × GPU memory / peak memory of one run))`` (at least 1), the smallest
over the study's networks, and 1 where no GPU is visible (a cluster gives each job its own GPU).

Only the standard library is imported (the planner reads this module; no job does).
"""

from __future__ import annotations

import heapq
import math
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .gpu_timings import DEFAULT_PATH, EPOCH_EVAL_IMAGES, EPOCH_TRAIN_IMAGES, TimingRow, read_timings
from .resources import epoch_seconds
from .splits import split_sizes

#: Built-in peak GPU memory of one run (MB) by network, as (fixed, per image of the batch): deliberately high (CUDA
#: context and cuDNN workspaces, the dataset resident on the GPU, weights, gradients, momentum, activations), so
#: that ``auto`` never packs more runs than fit. The self-check's measurement replaces them.
PEAK_MEM_MB = {
    "mlp": (1000, 2),
    "small_cnn": (1000, 4),
    "fast_cnn": (1000, 8),
    "shake_shake_26_2x32d": (1000, 16),
    "shake_shake_26_2x32d_original": (1000, 16),
    "preact_resnet18": (1200, 20),
}
#: The most runs ``auto`` puts on one GPU, and the share of its memory they may fill.
MAX_AUTO_RUNS_PER_GPU = 8
MEMORY_SHARE = 0.9


@dataclass(frozen=True)
class Gpu:
    """One GPU visible here: its name and total memory (MB)."""

    name: str
    memory_mb: float


def visible_gpus() -> list[Gpu]:
    """The GPUs this process may use, from ``nvidia-smi`` (which lists every GPU of the machine; the
    ``CUDA_VISIBLE_DEVICES`` entries that are indices select among them, other entries count); ``[]`` without one."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return []
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    query = [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"]
    try:
        listing = subprocess.run(query, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in listing.stdout.splitlines() if listing.returncode == 0 else []:
        name, _, memory = line.rpartition(",")
        try:
            gpus.append(Gpu(name.strip(), float(memory) * 1.048576))  # MiB → MB
        except ValueError:
            continue
    if visible is None:
        return gpus
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if all(e.isdigit() for e in entries):
        return [gpus[int(e)] for e in entries if int(e) < len(gpus)]
    return gpus[: len(entries)]


def timings_path(config: Mapping) -> Path:
    """The GPU timings file of the study: ``resources.gpu_timings``, else :data:`DEFAULT_PATH`."""
    return Path((config.get("resources") or {}).get("gpu_timings") or DEFAULT_PATH)


def load_timings(config: Mapping) -> tuple[list[TimingRow], Path]:
    """The rows of the study's GPU timings file (none when it does not exist) and its path; ``ValueError`` with one
    line for a file that is not a timings file."""
    path = timings_path(config)
    try:
        return read_timings(path), path
    except FileNotFoundError:
        return [], path


def _compile_mode(value: object) -> str:
    """``train.compile`` as the timings file names it: ``none``, ``default`` or a ``torch.compile`` mode."""
    if value in (None, False, "none"):
        return "none"
    return "default" if value is True else str(value)


def matching_rows(config: Mapping, rows: Sequence[TimingRow], gpu_name: str | None) -> list[TimingRow]:
    """The rows measured for ``config``'s network, batch size, precision and compile mode, on ``gpu_name`` (or, with
    no GPU here, on the first GPU the file names for them). Precision ``auto`` takes bf16 rows, else float32."""
    train = config["train"]
    wanted = {"bf16": ["bf16"], "tf32": ["tf32"], "float32": ["float32"]}.get(
        train.get("precision"), ["bf16", "float32"]
    )
    same = [
        row
        for row in rows
        if row.arch == config["model"]["arch"]
        and row.batch_size == train["batch_size"]
        and row.compile == _compile_mode(train.get("compile"))
        and (gpu_name is None or row.device_name == gpu_name)
    ]
    for precision in wanted:
        chosen = [row for row in same if row.precision == precision]
        if chosen:
            return [row for row in chosen if row.device_name == chosen[0].device_name]
    return []


def peak_memory_mb(config: Mapping, rows: Sequence[TimingRow]) -> tuple[float, bool]:
    """Peak GPU memory of one run (MB) and whether it was measured: the largest of the matching ``rows``, else
    :data:`PEAK_MEM_MB` at the run's batch size."""
    measured = [row.peak_mem_mb for row in rows if row.peak_mem_mb]
    if measured:
        return max(measured), True
    fixed, per_image = PEAK_MEM_MB.get(config["model"]["arch"], (2000, 32))
    return float(fixed + per_image * config["train"]["batch_size"]), False


def auto_runs_per_gpu(peak_mb: float, gpu_memory_mb: float | None) -> int:
    """Runs that fit on one GPU: ``min(8, floor(0.9 × memory / peak))``, at least 1; 1 when the memory is unknown."""
    if not gpu_memory_mb:
        return 1
    return max(1, min(MAX_AUTO_RUNS_PER_GPU, math.floor(MEMORY_SHARE * gpu_memory_mb / peak_mb)))


def run_epoch_seconds(config: Mapping, rows: Sequence[TimingRow]) -> tuple[float, str]:
    """Seconds of one epoch of one run alone on the GPU, and where the number comes from."""
    if config["train"].get("epoch_seconds"):
        return float(config["train"]["epoch_seconds"]), "train.epoch_seconds"
    alone = [row for row in rows if row.concurrent == 1 and row.epoch_s]
    if alone:
        row, sizes = alone[0], split_sizes(config)
        seconds = row.epoch_s
        if row.train_s is not None and row.eval_s is not None:
            # the measured epoch's training and evaluation, scaled to this run's split sizes
            seconds = row.train_s * sizes.train / EPOCH_TRAIN_IMAGES
            seconds += row.eval_s * (sizes.train + sizes.val + sizes.test) / EPOCH_EVAL_IMAGES
        return seconds, f"measured on {row.device_name}"
    return float(epoch_seconds(config, "cuda")), "built-in estimate"


def _throughput(row: TimingRow, measure: str) -> float | None:
    """Training speed of all of ``row``'s runs together: its ``train_img_s``, or its runs over one run's ``epoch_s``."""
    if measure == "train_img_s":
        return row.train_img_s
    return row.concurrent / row.epoch_s if row.epoch_s else None


def packing_speedup(rows: Sequence[TimingRow], k: int) -> tuple[float, int | None]:
    """How much faster ``k`` runs sharing a GPU train together than one alone, from the row with ``concurrent`` = k
    or the largest measured below it (which it was; ``None``: not measured, 1): their ``train_img_s`` over one
    run's, or where those are missing, k × one run's ``epoch_s`` over the packed runs' ``epoch_s``."""
    if k == 1:
        return 1.0, 1
    for measure in ("train_img_s", "epoch_s"):
        alone = next((_throughput(r, measure) for r in rows if r.concurrent == 1 and _throughput(r, measure)), None)
        packed = sorted(
            (r.concurrent, _throughput(r, measure)) for r in rows if 1 < r.concurrent <= k and _throughput(r, measure)
        )
        if alone and packed:
            concurrent, together = packed[-1]
            return max(1.0, together / alone), concurrent
    return 1.0, None


def planned_runs_per_gpu(
    config: Mapping, setting_configs: Sequence[Mapping], rows: Sequence[TimingRow], gpus: Sequence[Gpu]
) -> tuple[int, str]:
    """``resources.runs_per_gpu`` resolved, and why: a number as given; ``auto``/null from the GPU's memory and the
    peak memory of the study's largest run (:func:`auto_runs_per_gpu`; 1 with no GPU visible here)."""
    setting = (config.get("resources") or {}).get("runs_per_gpu", "auto")
    explicit = isinstance(setting, int) and not isinstance(setting, bool)
    if not gpus:
        return (setting, "resources.runs_per_gpu") if explicit else (1, "auto: no GPU visible here")
    memory = min(gpu.memory_mb for gpu in gpus)
    peaks = [peak_memory_mb(c, matching_rows(c, rows, gpus[0].name)) for c in setting_configs]
    peak, measured = max(peaks)
    if explicit:
        fit = math.floor(MEMORY_SHARE * memory / peak)
        warning = f"; more than the {fit} that fit in {MEMORY_SHARE:g} of the GPU's memory" if setting > fit else ""
        return setting, f"resources.runs_per_gpu{warning}"
    k = auto_runs_per_gpu(peak, memory)
    return k, (
        f"auto: {MEMORY_SHARE:g} × {memory:,.0f} MB / {peak:,.0f} MB a run "
        f"({'measured' if measured else 'built-in estimate'}), at most {MAX_AUTO_RUNS_PER_GPU}"
    )


def _longest_slot(run_seconds: Sequence[float], slots: int) -> float:
    """Wall time of runs handed, longest first, to whichever of ``slots`` frees first (as Snakemake starts them)."""
    loads = [0.0] * max(1, slots)
    for seconds in sorted(run_seconds, reverse=True):
        heapq.heapreplace(loads, loads[0] + seconds)
    return max(loads)


@dataclass(frozen=True)
class GpuPlan:
    """What the planner says about a CUDA study: runs per GPU, GPUs, GPU-hours, wall time and the line that says it."""

    runs_per_gpu: int
    gpus: int
    #: whether the GPUs are visible here (else ``gpus`` is 1, a GPU elsewhere)
    gpus_here: bool
    gpu_hours: float
    wall_hours: float
    line: str


def plan_gpus(
    config: Mapping,
    setting_configs: Sequence[Mapping],
    gpus: Sequence[Gpu],
    rows: Sequence[TimingRow] = (),
    timings_file: str | os.PathLike = DEFAULT_PATH,
    gpu_jobs: int | None = None,
) -> GpuPlan:
    """The study's GPU plan on ``gpus`` (none visible: one GPU elsewhere) with the self-check's ``rows``:
    ``runs_per_gpu`` (k), and per run ``epochs × epoch seconds × k' / speed-up(k')`` where k' ≤ k runs really share
    a GPU (fewer when the study has fewer runs, or ``--resources gpu=<gpu_jobs>`` allows fewer); the runs are
    handed to the ``gpus × k'`` slots longest first. GPU-hours = the runs' seconds / k' (the GPU time they occupy)."""
    name = gpus[0].name if gpus else None
    k, k_source = planned_runs_per_gpu(config, setting_configs, rows, gpus)
    n_gpus = max(1, len(gpus))
    runs = []  # (runs, epochs, epoch seconds, source, the matching rows) per setting
    for c in setting_configs:
        matched = matching_rows(c, rows, name)
        seconds, source = run_epoch_seconds(c, matched)
        runs.append((len(c["seeds"]) * len(c["modes"]), c["train"]["epochs"], seconds, source, matched))
    n_runs = sum(n for n, *_ in runs)
    slots = min(n_gpus * k, gpu_jobs or n_gpus * k, n_runs)
    sharing = max(1, math.ceil(slots / n_gpus))
    speedups = [packing_speedup(matched, sharing) for *_, matched in runs]
    run_seconds = [
        epochs * seconds * sharing / speedup
        for (n, epochs, seconds, *_), (speedup, _) in zip(runs, speedups, strict=True)
        for _ in range(n)
    ]
    gpu_hours = sum(run_seconds) / sharing / 3600
    wall_hours = _longest_slot(run_seconds, slots) / 3600
    line = _plan_line(runs, speedups, k, k_source, sharing, gpu_hours, wall_hours, n_gpus, bool(gpus), timings_file)
    return GpuPlan(k, n_gpus, bool(gpus), gpu_hours, wall_hours, line)


def _plan_line(runs, speedups, k, k_source, sharing, gpu_hours, wall_hours, n_gpus, here, timings_file) -> str:
    """The one ``GPU plan:`` line (:func:`plan_gpus`)."""
    n_runs = sum(n for n, *_ in runs)
    shapes = sorted({(epochs, seconds, source) for _, epochs, seconds, source, _ in runs})
    if len(shapes) == 1:
        epochs, seconds, source = shapes[0]
        work = f"{n_runs} runs × {epochs} epochs × {seconds:.3g} s an epoch"
    else:
        work = f"{n_runs} runs of {min(s[0] for s in shapes)}-{max(s[0] for s in shapes)} epochs"
        source = "; ".join(sorted({s[2] for s in shapes}))
    if source.startswith("measured"):
        source += f", {timings_file}"
    elif source == "built-in estimate" and Path(timings_file).is_file():
        source += f"; {timings_file} has no row for it"
    elif source == "built-in estimate":
        source += f"; {timings_file} not measured: python -m selfdistill.gpu_check"
    measured = sorted({c for _, c in speedups if c is not None and c > 1})
    if sharing == 1:
        packing = "one at a time on a GPU"
    elif measured:
        factor = "/".join(f"{s:.2f}" for s, _ in speedups)
        packing = f"{sharing} at once, ×{factor} as fast together (measured with {'/'.join(map(str, measured))})"
    else:
        packing = f"{sharing} at once, no packing speed-up assumed (not measured)"
    where = f"{n_gpus} GPU{'s' if n_gpus > 1 else ''}" if here else "1 GPU (none visible here)"
    return (
        f"GPU plan: {work} ({source}); {k} run{'s' if k > 1 else ''} per GPU ({k_source}), {packing}: "
        f"{gpu_hours:.1f} GPU-hours, wall ≈ {wall_hours:.1f} h on {where}"
    )
