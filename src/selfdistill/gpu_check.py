"""GPU self-check: one command that shows whether the training code works and is fast on a GPU, in one table.

    python -m selfdistill.gpu_check                      # the machine's GPU (CUDA when present), full sizes
    python -m selfdistill.gpu_check --device cpu --tiny  # seconds on a laptop: checks that everything runs
    python -m selfdistill.gpu_check --precision float32  # the same in true float32 (default: auto, as training)

No Snakemake and no dataset download: the data are synthetic CIFAR-shaped uint8 images written to a temporary
data.h5. Per network (:data:`ARCHS`) it measures

- ``train_step``: training images/s of forward + backward + SGD step (in ``--precision``, resolved as the
  training engine resolves ``train.precision``, channels_last on CUDA), and with ``torch.compile`` on CUDA;
- ``forward_cpu_vs_device``: the largest |difference| of float32 eval-mode logits between the CPU and the device;
- ``resume``: a short run interrupted by SIGUSR1 half-way through epoch 2 and resumed, against the same run
  uninterrupted (largest |difference| of the history's losses and accuracies: 0 on the CPU, small on a GPU whose
  kernels are not bit-reproducible);
- ``checkpoint``: seconds to write the network's checkpoint, and that as a share of one full CIFAR-10 epoch
  (45,000 training images at the measured train-step rate);

and once: ``input_pipeline`` (images/s of device-resident batches with crop + flip) and ``frequency`` (seconds of
the frequency analysis of a run's stored outputs).

Then the timings (:mod:`selfdistill.gpu_measure`), written to ``--timings`` (default
:data:`selfdistill.gpu_timings.DEFAULT_PATH`, the file the planner reads) and printed as a second table: per
network, training and evaluation images/s at batch 128 for each precision (``--precisions``) and compile mode
(``--compile-modes``) with one run, and with 2, 4 and 8 concurrent runs (``--concurrent``, separate processes,
``--pack-compile`` mode, each precision); each run's peak memory; the CIFAR-10 epoch's training and evaluation
seconds; and the projected wall time of every shipped CIFAR config on this device.

    python -m selfdistill.gpu_check --archs shake_shake_26_2x32d_original   # one network, about 6 minutes
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .batches import DeviceImages, channel_stats, make_batch
from .checkpoint import FAULT_ENV, CheckpointFolder
from .data import _write_split
from .device import PRECISIONS, RunDevice, acquire, configure
from .frequency import frequency_table
from .gpu_measure import BATCH, measure_timings, projections, timings_markdown
from .gpu_timings import DEFAULT_PATH, TimingRow, write_timings
from .io import atomic_output, setup_logging
from .models import build_model
from .signals import Preempted
from .training import RunSpec, TrainingRun, device_network, train_run, train_settings

log = logging.getLogger("selfdistill.gpu_check")

ARCHS = ("shake_shake_26_2x32d", "preact_resnet18", "fast_cnn")
#: the compile mode of the CUDA resume check
RO = "reduce-overhead"
CIFAR_TRAIN_IMAGES = 45_000
#: the timings' sizes (steps timed per run, images evaluated) of a full check and of ``--tiny``
TIMING_SIZES = {
    False: {"batch": BATCH, "steps": 50, "eval_images": 10_000, "eval_batch": 2048},
    True: {"batch": 8, "steps": 2, "eval_images": 64, "eval_batch": 32},
}
#: what the timings measure by default: a full check, and ``--tiny`` (the same code paths, CPU-sized)
TIMING_GRID = {
    False: {
        "precisions": ("bf16", "tf32", "float32"),
        "compile_modes": ("none", "reduce-overhead"),
        "concurrent": (1, 2, 4, 8),
        "pack_compile": "none",
    },
    True: {"precisions": ("float32",), "compile_modes": ("none",), "concurrent": (1, 2), "pack_compile": "none"},
}
#: sizes of a full check and of ``--tiny``
SIZES = {
    False: {"n_train": 4096, "batch": 256, "steps": 20, "resume_epochs": 3, "freq_n": 5000, "freq_epochs": 20},
    True: {"n_train": 40, "batch": 8, "steps": 1, "resume_epochs": 2, "freq_n": 100, "freq_epochs": 3},
}


def synthetic_dataset(path: Path, n_train: int, seed: int = 0) -> None:
    """A CIFAR-shaped data.h5 (uint8 32×32×3, 10 classes, 40% pair noise) in the pipeline's layout."""
    rng = np.random.default_rng(seed)
    sizes = {"train": n_train, "val": max(n_train // 10, 2), "test": max(n_train // 5, 2)}
    protos = (rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8) >> 1).repeat(4, axis=1).repeat(4, axis=2)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as h5:
        for name, n in sizes.items():
            clean = rng.integers(0, 10, n)
            images = (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) >> 1) + protos[clean]
            flip = (rng.random(n) < 0.4) & (name != "test")
            noisy = np.where(flip, (clean + 1) % 10, clean)
            _write_split(h5, name, images, clean, noisy, flip, np.arange(n))
        h5.attrs.update({"num_classes": 10, "pixel_max": 255.0, "class_names": [str(i) for i in range(10)]})


def _row(check: str, arch: str, value: float, unit: str, note: str = "") -> dict:
    return {"check": check, "arch": arch, "value": value, "unit": unit, "note": note}


def train_step_rate(arch: str, dev: RunDevice, batch: int, steps: int, compiled: bool = False) -> float:
    """Training images/s of ``arch`` on random CIFAR-shaped batches, after untimed warm-up steps."""
    torch.manual_seed(0)
    net = device_network(build_model(arch, (3, 32, 32), 10), dev)
    forward = torch.compile(net) if compiled else net
    optimiser = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32, device=dev.torch_device)
    x = x.contiguous(memory_format=torch.channels_last) if dev.is_cuda else x
    y = torch.randint(0, 10, (batch,), device=dev.torch_device)

    def step() -> None:
        with dev.autocast():
            loss = F.cross_entropy(forward(x).float(), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    for _ in range(3 if compiled else 1):
        step()
    dev.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    dev.synchronize()
    return batch * steps / (time.perf_counter() - start)


def forward_difference(arch: str, dev: RunDevice, batch: int = 64) -> float:
    """Largest |logit difference| of one float32 eval-mode forward pass on the CPU and on ``dev``."""
    torch.manual_seed(0)
    net = build_model(arch, (3, 32, 32), 10).eval()
    x = torch.randn(batch, 3, 32, 32)
    with torch.no_grad():
        on_cpu = net(x)
        on_device = net.to(dev.torch_device)(x.to(dev.torch_device)).cpu()
    return float((on_cpu - on_device).abs().max())


def input_pipeline_rate(dev: RunDevice, n: int, batch: int, rounds: int = 3) -> float:
    """Images/s of the training engine's batches (gather, crop + flip, normalise) from device-resident uint8."""
    images = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    mean, std = channel_stats(images, 255.0)
    resident = DeviceImages(images, dev.torch_device, 255.0, mean, std)
    gen = torch.Generator(device=dev.torch_device).manual_seed(0)
    order = torch.randperm(n, device=dev.torch_device)
    make_batch(resident, order[:batch], 4, gen)
    dev.synchronize()
    start = time.perf_counter()
    for _ in range(rounds):
        for idx in order.split(batch):
            make_batch(resident, idx, 4, gen)
    dev.synchronize()
    return rounds * n / (time.perf_counter() - start)


def resume_difference(
    arch: str,
    data: Path,
    work: Path,
    device: str,
    epochs: int,
    batch: int,
    precision: str = "auto",
    compile_mode: str = "none",
) -> float:
    """Largest |difference| of history values between a run interrupted by SIGUSR1 in epoch 2 and resumed, and the
    same run uninterrupted, in ``train.compile`` mode ``compile_mode`` (``nan`` if the interrupted run did not stop
    as planned)."""
    settings = {"epochs": epochs, "batch_size": batch, "lr": 0.05, "augment": "crop_flip", "weight_decay": 5e-4}
    settings |= {"precision": precision, "compile": compile_mode}

    def train(folder: str) -> pd.DataFrame:
        out = work / arch / compile_mode / folder
        return train_run(
            data,
            out / "history.csv",
            out / "outputs.h5",
            out / "model.pt",
            mode="self_distill",
            seed=0,
            model={"arch": arch, "width": None},
            train=settings,
            freq_subset=64,
            freq_test_subset=64,
            device=device,
            run_name=f"gpu_check/{arch}/{folder}",
        )

    whole = train("whole")
    os.environ[FAULT_ENV] = "mid_epoch:2:USR1"
    try:
        train("resumed")
        return math.nan
    except Preempted:
        pass
    finally:
        os.environ.pop(FAULT_ENV, None)
    resumed = train("resumed")
    columns = ["train_loss", "train_acc_noisy", "val_acc", "test_loss", "test_acc"]
    return float((whole[columns] - resumed[columns]).abs().to_numpy().max())


def checkpoint_seconds(
    arch: str, data: Path, work: Path, dev: RunDevice, repeats: int = 3, precision: str = "auto"
) -> float:
    """Median seconds to write ``arch``'s full training checkpoint (weights, momentum, RNG, history) atomically."""
    settings = train_settings({"epochs": 2, "precision": precision})
    spec = RunSpec("ce", 0, {"arch": arch, "width": None}, settings, {}, 64, 64, "all")
    run = TrainingRun(data, spec, dev, f"gpu_check/{arch}/checkpoint")
    folder = CheckpointFolder(work / arch / "checkpoint", "gpu-check")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        folder.save(run.state_dict(), epoch=1)
        times.append(time.perf_counter() - start)
    folder.remove()
    return float(np.median(times))


def frequency_seconds(n: int, epochs: int) -> float:
    """Seconds of the frequency analysis (kernels over ``n`` inputs, 3 deltas) of ``epochs`` epochs of outputs."""
    rng = np.random.default_rng(0)
    x = rng.random((n, 3 * 32 * 32), dtype=np.float32)
    outputs = rng.dirichlet(np.ones(10), (epochs, n)).astype(np.float32)
    labels = rng.integers(0, 10, n)
    start = time.perf_counter()
    frequency_table(x, outputs, y_noisy=labels, y_clean=labels, num_classes=10, delta_rel=[0.05, 0.2, 1.0])
    return time.perf_counter() - start


def arch_rows(
    arch: str, data: Path, work: Path, dev: RunDevice, size: dict, compiled: bool, precision: str = "auto"
) -> list[dict]:
    """Every per-network measurement of the table (``precision``: the setting, ``dev.precision`` its resolution)."""
    rate = train_step_rate(arch, dev, size["batch"], size["steps"])
    how = {"bf16": "bf16 autocast, float32 head", "tf32": "float32 with TF32", "float32": "float32"}[dev.precision]
    how += ", channels_last" if dev.is_cuda else ""
    rows = [_row("train_step", arch, rate, "images/s", f"batch {size['batch']}, {how}")]
    if compiled and dev.is_cuda:
        fast = train_step_rate(arch, dev, size["batch"], size["steps"], compiled=True)
        rows.append(_row("train_step_compiled", arch, fast, "images/s", f"torch.compile, {fast / rate:.2f}x eager"))
    rows.append(_row("forward_cpu_vs_device", arch, forward_difference(arch, dev), "max |logit diff|", "float32"))
    device = str(dev.torch_device)
    diff = resume_difference(arch, data, work, device, size["resume_epochs"], size["batch"], precision)
    rows.append(_row("resume", arch, diff, "max |history diff|", "SIGUSR1 in epoch 2, resumed vs uninterrupted"))
    if compiled and dev.is_cuda:
        diff = resume_difference(arch, data, work, device, size["resume_epochs"], size["batch"], precision, RO)
        rows.append(_row("resume_compiled", arch, diff, "max |history diff|", f"the same, train.compile {RO}"))
    seconds = checkpoint_seconds(arch, data, work, dev, precision=precision)
    share = seconds / (CIFAR_TRAIN_IMAGES / rate)
    rows.append(_row("checkpoint", arch, seconds, "s", f"{100 * share:.3g}% of a 45,000-image epoch's training"))
    return rows


def gpu_check(
    device: str = "auto",
    *,
    tiny: bool = False,
    archs: Sequence[str] = ARCHS,
    compiled: bool = True,
    out: str | os.PathLike | None = None,
    precision: str = "auto",
) -> pd.DataFrame:
    """Run the whole check in ``precision`` (a ``train.precision`` setting) and return (and, with ``out``, write as
    CSV) the table; logs it as markdown."""
    size = SIZES[tiny]
    threads = os.cpu_count() or 1
    with (
        acquire(device, threads=threads, holder="gpu_check", precision=precision) as dev,
        tempfile.TemporaryDirectory() as tmp,
    ):
        work = Path(tmp)
        data = work / "data.h5"
        synthetic_dataset(data, size["n_train"])
        rows = [_row("device", "", math.nan, "", f"{dev.name()}, precision {dev.precision}")]
        for arch in archs:
            rows += arch_rows(arch, data, work, dev, size, compiled, precision)
            # train_run's own acquire reconfigured the process; restore this check's settings
            configure(dev.torch_device, threads, precision)
        n = size["n_train"]
        rows.append(_row("input_pipeline", "", input_pipeline_rate(dev, n, size["batch"]), "images/s", "crop + flip"))
        seconds = frequency_seconds(size["freq_n"], size["freq_epochs"])
        note = f"{size['freq_n']} inputs, {size['freq_epochs']} epochs x 10 classes, 3 deltas (CPU, float32)"
        rows.append(_row("frequency", "", seconds, "s", note))
    table = pd.DataFrame(rows)
    if out is not None:
        with atomic_output(out) as tmp_out:
            table.to_csv(tmp_out, index=False)
    return table


def gpu_timings(
    device: str = "auto",
    *,
    tiny: bool = False,
    archs: Sequence[str] = ARCHS,
    out: str | os.PathLike | None = DEFAULT_PATH,
    **grid,
) -> tuple[list[TimingRow], list[dict]]:
    """The timings (:data:`TIMING_GRID`, overridden by ``grid``) and the shipped CIFAR configs' projected wall
    times; the rows are written to ``out`` (gpu_timings.csv) unless it is None. Single runs for every precision
    and compile mode; packed runs (2, 4, 8) in the ``pack_compile`` mode for every precision."""
    grid = TIMING_GRID[tiny] | grid
    sizes = TIMING_SIZES[tiny]
    device = device if device != "auto" else _auto()
    dev_type = torch.device(device).type
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = measure_timings(archs, device, grid["precisions"], grid["compile_modes"], (1,), work, **sizes)
        packed = [k for k in grid["concurrent"] if k > 1]
        if packed:
            rows += measure_timings(archs, device, grid["precisions"], (grid["pack_compile"],), packed, work, **sizes)
    if out is not None:
        write_timings(out, rows)
    repo = Path(__file__).resolve().parents[2]
    projected = projections(rows, repo, dev_type) if (repo / "config").is_dir() else []
    return rows, projected


def _auto() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def to_markdown(table: pd.DataFrame) -> str:
    """The table as markdown rows (values with 4 significant digits)."""
    lines = ["| check | network | value | unit | note |", "|---|---|---|---|---|"]
    for row in table.itertuples():
        value = "" if row.check == "device" else f"{row.value:.4g}"
        lines.append(f"| {row.check} | {row.arch} | {value} | {row.unit} | {row.note} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m selfdistill.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cuda:N or cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: checks that everything runs, in seconds")
    parser.add_argument("--archs", default=",".join(ARCHS), help="comma-separated networks")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="as train.precision: auto (default), bf16, tf32, float32",
    )
    parser.add_argument("--out", help="also write the table as CSV here")
    parser.add_argument("--timings", default=DEFAULT_PATH, help=f"the timings CSV (default {DEFAULT_PATH})")
    parser.add_argument("--precisions", help="comma-separated precisions of the timings (default bf16,tf32,float32)")
    parser.add_argument("--compile-modes", help="comma-separated train.compile modes (default none,reduce-overhead)")
    parser.add_argument("--concurrent", help="comma-separated runs sharing the device (default 1,2,4,8)")
    parser.add_argument("--pack-compile", help="the compile mode of the packed runs (default none)")
    args = parser.parse_args(argv)
    grid = {
        key: tuple(int(v) if key == "concurrent" else v for v in value.split(","))
        for key, value in (
            ("precisions", args.precisions),
            ("compile_modes", args.compile_modes),
            ("concurrent", args.concurrent),
        )
        if value
    }
    if args.pack_compile:
        grid["pack_compile"] = args.pack_compile
    setup_logging(None)
    with contextlib.suppress(BrokenPipeError):
        table = gpu_check(
            args.device,
            tiny=args.tiny,
            archs=args.archs.split(","),
            compiled=not args.no_compile,
            out=args.out,
            precision=args.precision,
        )
        print(to_markdown(table))
        rows, projected = gpu_timings(
            args.device, tiny=args.tiny, archs=args.archs.split(","), out=args.timings, **grid
        )
        print()
        print(timings_markdown(rows, projected))


if __name__ == "__main__":
    main()
