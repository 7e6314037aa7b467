"""Speed benchmarks: input pipeline, train step, frequency analysis, one real CIFAR-10 epoch.

Each of the first three times the project's implementation and a baseline in the same process, on the device that
is present (CUDA when available, else CPU), writes tidy rows to a CSV (:data:`COLUMNS`) and prints a one-line
summary with the ratio; the fourth measures the training pipeline itself on CIFAR-10. Nothing here asserts a speed;
the tests only run the code at tiny sizes.

* ``input_pipeline``: augmented, normalised batches from the device-resident uint8 dataset, exactly as the
  training loop makes them (``randperm`` per epoch, :func:`selfdistill.training.make_batch`: gather, crop and
  flip, normalise), versus the original's torchvision
  ``DataLoader`` (2 workers) over PIL images with ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``,
  ``ToTensor``, ``Normalize``.
* ``train_step``: forward + backward + SGD step per architecture at batch 128 and 512, with the training loop's
  settings (CUDA: bf16 autocast, channels_last, cudnn.benchmark; CPU: float32); ratios relative to the original
  network (``shake_shake_26_2x32d``) at the same batch size, and batch 512 relative to 128.
* ``frequency``: :func:`selfdistill.frequency.frequency_table` (distances once, each kernel once, all epochs in
  one product per delta) versus :func:`original_frequency_ratio`, the original's approach (distance matrix and
  kernels recomputed every epoch, float64 numpy), on 2,000 images x 3,072 dims, 12 deltas, 50 epochs of
  10-class logits; also the largest absolute difference of the ratio between the two.

* ``cifar_epoch``: no baseline; one real CIFAR-10 epoch per architecture (``shake_shake_26_2x32d``,
  ``preact_resnet18``, ``fast_cnn``) with the training pipeline itself: a clean corrupted dataset (``noise: none``,
  10% validation split) built once by :func:`selfdistill.data.build_corrupted_dataset`, then
  :func:`selfdistill.training.train_run` for one epoch with the hyper-parameters of ``config/cifar10_seed.yaml``
  (Shake-Shake) or ``config/cifar10_sweep.yaml`` (the others), see :func:`cifar_epoch_settings`. Per network: the
  epoch's seconds (the history's ``epoch_seconds``: training and the full evaluation passes over the training,
  validation and test splits), training images/s, test accuracy after the epoch and the parameter count. It needs
  the real CIFAR-10 files under ``<data_root>/cifar-10-batches-py`` and stops with a one-line message otherwise
  (no synthetic fallback: the point is a real epoch), so it is not part of ``snakemake benchmarks``.

The first three read CIFAR-10 when ``<data_root>/cifar-10-batches-py`` exists (with torchvision's ``CIFAR10``),
otherwise synthetic uint8 images of the same shape; the ``data`` column says which.

Command line: ``python -m selfdistill.benchmarks input_pipeline|train_step|frequency|cifar_epoch [--out CSV]
[--quick]``; Snakemake: ``snakemake --cores 2 benchmarks`` (the first three, on any machine),
``snakemake --cores 2 results/benchmarks/frequency.csv`` (one of them), and
``snakemake --cores 2 results/benchmarks/cifar_epoch.csv`` (needs CIFAR-10 in ``resources/data``; on a GPU machine
it runs on the GPU). ``--cores 2`` runs the benchmarks one after the other (each asks for 2 threads), so that they
do not disturb each other's timings.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from . import device as devices
from .data import SPLIT_FIELDS, build_corrupted_dataset
from .dataset_files import DEFAULT_DATA_ROOT, dataset_problem
from .datasets import DatasetNotFoundError
from .device import RunDevice, cpu_name
from .frequency import frequency_table, median_sq_dist, pairwise_sq_dists
from .io import atomic_output, logged_step, setup_logging
from .losses import ce_loss
from .models import ARCHITECTURES, build_model, count_parameters
from .training import (
    DeviceImages,
    channel_stats,
    make_batch,
    train_run,
)

log = logging.getLogger("selfdistill.benchmarks")  # also when run as __main__

#: The benchmarks that run on any machine (synthetic images without CIFAR-10): Snakemake's ``benchmarks`` target.
DEFAULT_BENCHMARKS = ("input_pipeline", "train_step", "frequency")
#: Every benchmark; ``cifar_epoch`` needs the real CIFAR-10 files.
BENCHMARKS = (*DEFAULT_BENCHMARKS, "cifar_epoch")
#: Columns of every benchmark CSV, in order (empty where a column does not apply). ``threads``: CPU threads
#: (torch intra-op, or BLAS for the frequency analysis), or worker processes for the DataLoader baseline.
#: ``test_acc`` and ``parameters``: the network's test accuracy after the run and its trainable parameters
#: (``cifar_epoch`` only).
COLUMNS = (
    "benchmark",
    "variant",
    "device",
    "device_name",
    "threads",
    "data",
    "batch_size",
    "n_images",
    "seconds",
    "throughput",
    "throughput_unit",
    "ratio",
    "ratio_batch",
    "n_epochs",
    "n_deltas",
    "max_abs_diff",
    "test_acc",
    "parameters",
)
#: The original network, the reference of the train-step ratios.
REFERENCE_ARCH = "shake_shake_26_2x32d"
IMAGE_SHAPE = (32, 32, 3)


# ----------------------------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------------------------


def device_name(dev: torch.device) -> str:
    """The GPU's name for a CUDA device, else the CPU's model and the cores this process may use."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu_name()} ({cores} cores)"


def _sync(dev: torch.device) -> None:
    RunDevice(dev).synchronize()


def _cifar_dir(data_root) -> Path:
    return Path(data_root) / "cifar-10-batches-py"


def synthetic_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 (n, 32, 32, 3) images in 10 classes (half a blocky class prototype, half pixel noise), labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    protos = rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    protos = protos.repeat(4, axis=1).repeat(4, axis=2) >> 1
    images = rng.integers(0, 256, (n, *IMAGE_SHAPE), dtype=np.uint8) >> 1
    images += protos[labels]
    return images, labels.astype(np.int64)


def load_images(data_root, n: int | None, train: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """The first ``n`` CIFAR-10 images of a split (all for ``None``) if the files exist, else synthetic ones.

    Returns uint8 (n, 32, 32, 3) images, int64 labels and the data's name (``cifar10`` or ``synthetic``).
    """
    if _cifar_dir(data_root).is_dir():
        from torchvision.datasets import CIFAR10

        ds = CIFAR10(str(data_root), train=train, download=False)
        stop = len(ds.data) if n is None else n
        return (
            np.ascontiguousarray(ds.data[:stop]),
            np.asarray(ds.targets[:stop], dtype=np.int64),
            "cifar10",
        )
    images, labels = synthetic_images(50_000 if n is None else n, seed)
    return images, labels, "synthetic"


def _row(benchmark: str, **values) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(benchmark=benchmark, **values)
    return row


def _finish(rows: list[dict], out, summary: str) -> pd.DataFrame:
    """Write the rows (if ``out``), log and print the one-line summary."""
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    if out is not None:
        with atomic_output(out) as tmp:
            df.to_csv(tmp, index=False)
    log.info("%s", summary)
    print(summary, flush=True)
    return df


# ----------------------------------------------------------------------------------------------------------------
# 1. Input pipeline
# ----------------------------------------------------------------------------------------------------------------


class PilImages(torch.utils.data.Dataset):
    """uint8 (N, H, W, C) images served the way torchvision's ``CIFAR10.__getitem__`` does (PIL, then transform)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform=None):
        self.data, self.targets, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        from PIL import Image

        img, target = Image.fromarray(self.data[index]), int(self.targets[index])
        if self.transform is not None:
            img = self.transform(img)
        return img, target


def original_transform(mean: Sequence[float], std: Sequence[float], padding: int = 4):
    """The original's training transform: RandomCrop(32, padding), RandomHorizontalFlip, ToTensor, Normalize."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.RandomCrop(IMAGE_SHAPE[0], padding=padding),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(list(mean), list(std)),
        ]
    )


def original_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    mean,
    std,
    padding: int = 4,
    data_root=None,
):
    """torchvision's ``CIFAR10`` (train split) when ``data_root`` holds it, else :class:`PilImages` over ``images``."""
    transform = original_transform(mean, std, padding)
    if data_root is not None and _cifar_dir(data_root).is_dir():
        from torchvision.datasets import CIFAR10

        return CIFAR10(str(data_root), train=True, download=False, transform=transform)
    return PilImages(images, labels, transform)


def _device_batches(
    images: DeviceImages,
    n_images: int,
    batch_size: int,
    padding: int,
    seed: int,
) -> Callable[[], torch.Tensor]:
    """A function that makes ``n_images`` augmented batches as the training loop does; returns the last batch."""
    dev = images.data.device

    def run() -> torch.Tensor:
        order_gen = torch.Generator().manual_seed(seed)
        aug_gen = torch.Generator(device=dev).manual_seed(seed + 1)
        seen, xb = 0, None
        while seen < n_images:
            perm = torch.randperm(len(images), generator=order_gen).to(dev)
            for idx in perm.split(batch_size):
                xb = make_batch(images, idx, padding, aug_gen)
                seen += idx.numel()
                if seen >= n_images:
                    break
        _sync(dev)
        return xb

    return run


def _loader_batches(
    dataset, n_images: int, batch_size: int, workers: int, device, seed: int
) -> Callable[[], torch.Tensor]:
    """A function that draws ``n_images`` batches from a fresh shuffling DataLoader (moved to ``device``)."""

    def run() -> torch.Tensor:
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            num_workers=workers,
            generator=torch.Generator().manual_seed(seed),
        )
        seen, xb = 0, None
        while seen < n_images:
            for xb, yb in loader:
                if device.type == "cuda":
                    xb, yb = xb.to(device), yb.to(device)
                seen += len(xb)
                if seen >= n_images:
                    break
        _sync(device)
        return xb

    return run


def input_pipeline_benchmark(
    out=None,
    *,
    n_images: int = 50_000,
    batch_size: int = 128,
    workers: int = 2,
    padding: int = 4,
    device: str = "auto",
    device_threads: Sequence[int] = (1, 2),
    repeats: int = 3,
    data_root=DEFAULT_DATA_ROOT,
    seed: int = 0,
) -> pd.DataFrame:
    """Images/s of the device-resident path versus the original's DataLoader, same images, batch size and count.

    The dataset is the CIFAR-10 training split (or ``n_images`` synthetic images); every variant makes
    ``n_images`` augmented, normalised batches (one epoch when ``n_images`` is the dataset size), timed end to
    end: worker start-up included for the DataLoader (the original pays it every epoch), one ``randperm`` per
    epoch for the device path. A short untimed pass warms each variant up first; the baseline runs once, the
    device variants ``repeats`` times around it (median), so that all see the same machine load. On CPU the
    device variants run once per intra-op thread count in ``device_threads`` (one row each; a batch's tensors
    are small, so one thread can win on a busy machine), the DataLoader with its ``workers`` processes; the
    ``threads`` column records these counts and the summary quotes each variant at its best count.
    """
    dev = _device(device, 1)
    thread_counts = list(device_threads) if dev.type == "cpu" else [1]
    images, labels, data = load_images(data_root, n_images, train=True, seed=seed)
    mean, std = channel_stats(images, 255.0)
    device_images = DeviceImages(images, dev, 255.0, mean, std)
    dataset = original_dataset(images, labels, mean.tolist(), std.tolist(), padding, data_root)
    warm = min(n_images, 4 * batch_size)
    # (variant, threads or workers)
    runs = [("torchvision_dataloader", workers)]
    runs += [("device", threads) for threads in thread_counts]

    def run(key, count):
        if key[0] == "torchvision_dataloader":  # the warm-up runs without worker processes
            w = workers if count == n_images else 0
            return _loader_batches(dataset, count, batch_size, w, dev, seed)()
        torch.set_num_threads(key[1])
        return _device_batches(device_images, count, batch_size, padding, seed)()

    for key in runs:
        run(key, warm)
    times: dict[tuple[str, int], list[float]] = {key: [] for key in runs}
    device_keys = [key for key in runs if key[0] != "torchvision_dataloader"]
    order = device_keys * (repeats // 2) + [("torchvision_dataloader", workers)]
    order += device_keys * (repeats - repeats // 2)
    for key in order:
        t0 = time.perf_counter()
        run(key, n_images)
        times[key].append(time.perf_counter() - t0)
        log.info(
            "input pipeline %s (%d threads): %d images in %.3fs",
            *key,
            n_images,
            times[key][-1],
        )
    seconds = {key: float(np.median(t)) for key, t in times.items()}
    base = n_images / seconds[("torchvision_dataloader", workers)]
    rows = [
        _row(
            "input_pipeline",
            variant=name,
            device=dev.type,
            device_name=device_name(dev),
            threads=threads,
            data=data,
            batch_size=batch_size,
            n_images=n_images,
            seconds=sec,
            throughput=n_images / sec,
            throughput_unit="images/s",
            ratio=(n_images / sec) / base,
        )
        for (name, threads), sec in seconds.items()
    ]
    best = {}
    for r in rows:
        if r["throughput"] > best.get(r["variant"], (0, 0))[0]:
            best[r["variant"]] = (r["throughput"], r["threads"])

    def quote(name):
        thr, threads = best[name]
        return f"{thr:,.0f} images/s ({threads} threads) = {thr / base:.1f}x"

    summary = (
        f"input pipeline on {dev.type} ({device_name(dev)}), {data} data, {n_images} images, batch {batch_size}: "
        f"torchvision DataLoader ({workers} workers, PIL) {base:,.0f} images/s; device-resident "
        f"{quote('device')}"
    )
    return _finish(rows, out, summary)


# ----------------------------------------------------------------------------------------------------------------
# 2. Train step
# ----------------------------------------------------------------------------------------------------------------


def _time_steps(net, optimiser, xb, yb, autocast, warmup: int, steps: int) -> float:
    """Seconds of ``steps`` training steps (forward, cross-entropy, backward, SGD) after ``warmup`` untimed ones."""

    def step():
        with autocast():
            logits = net(xb)
        loss, _ = ce_loss(logits, yb)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    for _ in range(warmup):
        step()
    _sync(xb.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(xb.device)
    return time.perf_counter() - t0


def train_step_benchmark(
    out=None,
    *,
    archs: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = (128, 512),
    warmup: int | None = None,
    steps: int | None = None,
    device: str = "auto",
    threads: int = 2,
    lr: float = 0.2,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> pd.DataFrame:
    """Training images/s (forward + backward + SGD step) per architecture and batch size, on random inputs.

    ``archs`` defaults to every architecture of :data:`selfdistill.models.ARCHITECTURES` but ``mlp``; warm-up
    and timed steps default to 5 and 20 on CUDA, 1 and 2 on CPU. ``ratio``: images/s relative to
    :data:`REFERENCE_ARCH` at the same batch size; ``ratio_batch``: relative to the same network at the first
    batch size. SGD with the original's settings (lr 0.2, momentum 0.9, weight decay 1e-4).
    """
    dev = _device(device, threads)
    cuda = dev.type == "cuda"
    archs = [a for a in ARCHITECTURES if a != "mlp"] if archs is None else list(archs)
    warmup = (5 if cuda else 1) if warmup is None else warmup
    steps = (20 if cuda else 2) if steps is None else steps
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if cuda:
        torch.backends.cudnn.benchmark = True
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else nullcontext
    shape = (3, *IMAGE_SHAPE[:2])
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for arch in archs:
        torch.manual_seed(seed)
        net = build_model(arch, shape, 10).to(dev)
        if cuda:
            net = net.to(memory_format=torch.channels_last)
        net.train()
        optimiser = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        for batch_size in batch_sizes:
            xb = torch.randn((batch_size, *shape), generator=gen).to(dev)
            if cuda:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = torch.randint(0, 10, (batch_size,), generator=gen).to(dev)

            sec = _time_steps(net, optimiser, xb, yb, autocast, warmup, steps)
            log.info(
                "train step %s batch %d: %d steps in %.3fs (%d parameters)",
                arch,
                batch_size,
                steps,
                sec,
                count_parameters(net),
            )
            rows.append(
                _row(
                    "train_step",
                    variant=arch,
                    device=dev.type,
                    device_name=device_name(dev),
                    threads=torch.get_num_threads(),
                    data="random",
                    batch_size=batch_size,
                    n_images=batch_size * steps,
                    seconds=sec,
                    throughput=batch_size * steps / sec,
                    throughput_unit="images/s",
                )
            )
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    thr = df.set_index(["variant", "batch_size"])["throughput"]
    for row in rows:
        ref = (REFERENCE_ARCH, row["batch_size"])
        row["ratio"] = row["throughput"] / thr[ref] if ref in thr.index else math.nan
        row["ratio_batch"] = row["throughput"] / thr[(row["variant"], batch_sizes[0])]
    parts = []
    for arch in archs:
        per_batch = "/".join(f"{thr[(arch, b)]:,.0f}" for b in batch_sizes)
        ratios = "/".join(f"{r['ratio']:.2f}" for r in rows if r["variant"] == arch and not math.isnan(r["ratio"]))
        parts.append(f"{arch} {per_batch}" + (f" ({ratios}x ref)" if ratios else ""))
    summary = (
        f"train step on {dev.type} ({device_name(dev)}), images/s at batch "
        f"{'/'.join(map(str, batch_sizes))}, ref = {REFERENCE_ARCH}: " + "; ".join(parts)
    )
    return _finish(rows, out, summary)


# ----------------------------------------------------------------------------------------------------------------
# 3. Frequency analysis
# ----------------------------------------------------------------------------------------------------------------


def original_frequency_ratio(x: np.ndarray, outputs: np.ndarray, deltas: Sequence[float]) -> np.ndarray:
    """The original's approach: every epoch, distances and kernels from scratch in float64; ratios (E, n_deltas).

    Per epoch: squared distances by the Gram formula ``|x_i|^2 + |x_j|^2 - 2 x_i.x_j`` (clamped at 0); per delta:
    ``K = exp(-d2 / (2 delta))`` normalised by its row sums, ``f_low = K f``, ``f_high = f - f_low``, and
    ``ratio = |f_low|^2 / (|f_low|^2 + |f_high|^2)`` (Frobenius norms) of that epoch's outputs ``f`` (n, C).
    """
    x = np.asarray(x, dtype=np.float64)
    ratios = np.empty((len(outputs), len(deltas)))
    for e, out in enumerate(outputs):
        sq = (x * x).sum(axis=1)
        d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
        np.maximum(d2, 0.0, out=d2)
        f = np.asarray(out, dtype=np.float64)
        for j, delta in enumerate(deltas):
            kernel = np.exp(-d2 / (2.0 * delta))
            kernel /= kernel.sum(axis=1, keepdims=True)
            low = kernel @ f
            high = f - low
            low_sq, high_sq = (low * low).sum(), (high * high).sum()
            ratios[e, j] = low_sq / (low_sq + high_sq)
    return ratios


def synthetic_logits(labels: np.ndarray, epochs: int, num_classes: int = 10, seed: int = 0) -> np.ndarray:
    """(epochs, n, C) float32 logits drifting over epochs: a random walk pulled towards ``labels``."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    target = np.eye(num_classes)[labels]
    z = rng.normal(size=(n, num_classes))
    out = np.empty((epochs, n, num_classes), dtype=np.float32)
    for e in range(epochs):
        z = z + 0.3 * rng.normal(size=z.shape) + 0.2 * target
        out[e] = z
    return out


def frequency_benchmark(
    out=None,
    *,
    n: int = 2_000,
    epochs: int = 50,
    n_deltas: int = 12,
    num_classes: int = 10,
    delta_rel: tuple[float, float] = (0.02, 1.0),
    precision: str = "float32",
    repeats: int = 6,
    threads: int = 2,
    data_root=DEFAULT_DATA_ROOT,
    seed: int = 0,
) -> pd.DataFrame:
    """Seconds of :func:`selfdistill.frequency.frequency_table` vs :func:`original_frequency_ratio`, same data.

    Inputs: the first ``n`` CIFAR-10 test images (or synthetic ones), flattened, pixels / 255. Outputs:
    :func:`synthetic_logits`. Deltas: ``n_deltas`` values log-spaced over ``delta_rel`` times the median
    off-diagonal squared distance (fixed before timing; both get the same absolute values). The baseline runs
    every epoch (no extrapolation), in ``repeats - 1`` chunks of epochs; the project's time is the median of
    ``repeats`` runs, one before the baseline and one after each chunk, so both see the same machine load. CPU
    only (numpy), BLAS limited to ``threads`` threads.
    """
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency

    images, labels, data = load_images(data_root, n, train=False, seed=seed + 1)
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    outputs = synthetic_logits(labels, epochs, num_classes, seed)
    deltas = np.geomspace(*delta_rel, n_deltas) * median_sq_dist(pairwise_sq_dists(x))
    times: list[float] = []

    def project_run() -> np.ndarray:
        t0 = time.perf_counter()
        table = frequency_table(x, outputs, deltas, precision=precision)
        times.append(time.perf_counter() - t0)
        return table["ratio"].to_numpy().reshape(epochs, n_deltas)

    # the project's runs are spread over the baseline's (one before it, one after each chunk of its epochs), so
    # that both see the same machine load; the baseline still runs every epoch, in order
    with threadpool_limits(limits=max(1, int(threads))):
        project = project_run()
        parts, t_baseline = [], 0.0
        for chunk in np.array_split(np.arange(epochs), max(1, repeats - 1)):
            t0 = time.perf_counter()
            parts.append(original_frequency_ratio(x, outputs[chunk], deltas))
            t_baseline += time.perf_counter() - t0
            if repeats > 1:
                project_run()
    baseline = np.concatenate(parts)
    t_project = float(np.median(times))
    log.info("frequency project: %s s", ", ".join(f"{t:.3f}" for t in times))
    log.info("frequency original approach: %.3f s", t_baseline)
    diff = float(np.max(np.abs(project - baseline)))
    cpu = torch.device("cpu")
    rows = [
        _row(
            "frequency",
            variant=name,
            device="cpu",
            device_name=device_name(cpu),
            threads=threads,
            data=data,
            n_images=len(x),
            seconds=sec,
            throughput=epochs / sec,
            throughput_unit="epochs/s",
            ratio=t_baseline / sec,
            n_epochs=epochs,
            n_deltas=n_deltas,
            max_abs_diff=diff,
        )
        for name, sec in (
            (f"project_{precision}", t_project),
            ("original_per_epoch", t_baseline),
        )
    ]
    summary = (
        f"frequency analysis on cpu ({device_name(cpu)}), {data} data, {len(x)} images x {x.shape[1]} dims, "
        f"{n_deltas} deltas, {epochs} epochs: project {t_project:.2f}s vs original approach {t_baseline:.2f}s "
        f"= {t_baseline / t_project:.1f}x, max |ratio difference| {diff:.1e}"
    )
    return _finish(rows, out, summary)


# ----------------------------------------------------------------------------------------------------------------
# 4. One real CIFAR-10 epoch per architecture
# ----------------------------------------------------------------------------------------------------------------

#: The networks of the CIFAR-10 studies, in the order they are trained (the first is the ratios' reference).
CIFAR_EPOCH_ARCHS = (REFERENCE_ARCH, "preact_resnet18", "fast_cnn")
#: ``train`` settings shared by the CIFAR-10 configs (``config/cifar10_seed.yaml``, ``config/cifar10_sweep.yaml``).
CIFAR_TRAIN = {
    "batch_size": 128,
    "momentum": 0.9,
    "nesterov": False,
    "schedule": "cosine",
    "schedule_unit": "step",
    "augment": "crop_flip",
    "crop_padding": 4,
    "eval_batch_size": 2048,
    "compile": False,
}
#: Learning rate and weight decay per network: the original's for Shake-Shake (``cifar10_seed.yaml``), the
#: DivideMix / PES recipe of ``cifar10_sweep.yaml`` for the others (a test keeps both in step with the configs).
CIFAR_OPTIMISER = {
    REFERENCE_ARCH: {"lr": 0.2, "weight_decay": 1e-4},
    "default": {"lr": 0.02, "weight_decay": 5e-4},
}
#: The configs' stored-output subsets (``frequency.train_subset`` and ``test_subset``), so that the epoch writes
#: the same per-epoch outputs as a study's run.
CIFAR_FREQ_SUBSETS = (5000, 2000)


def cifar_epoch_settings(arch: str, epochs: int = 1) -> dict:
    """The ``train`` settings :func:`cifar_epoch_benchmark` gives :func:`selfdistill.training.train_run` for ``arch``.

    ``shake_shake_26_2x32d``: ``config/cifar10_seed.yaml`` (lr 0.2, weight decay 1e-4); any other network:
    ``config/cifar10_sweep.yaml`` (lr 0.02, weight decay 5e-4). Both: SGD momentum 0.9, batch 128, cosine schedule
    per step over ``epochs``, random crop with 4-pixel padding + flip, evaluation batches of 2048, no compile.
    """
    return {
        **CIFAR_TRAIN,
        **CIFAR_OPTIMISER.get(arch, CIFAR_OPTIMISER["default"]),
        "epochs": int(epochs),
    }


def _keep_first_train_rows(path, n: int) -> int:
    """Cut the ``train`` split of a corrupted-dataset file to its first ``n`` rows; returns the rows kept."""
    with h5py.File(path, "r+") as h5:
        group = h5["train"]
        kept = min(n, group["labels_clean"].shape[0])
        for field in SPLIT_FIELDS:
            data = group[field][:kept]
            compression = group[field].compression
            del group[field]
            group.create_dataset(field, data=data, compression=compression)
    return kept


def cifar_epoch_benchmark(
    out=None,
    *,
    data_root=DEFAULT_DATA_ROOT,
    verify_md5: bool = True,
    archs: Sequence[str] | None = None,
    max_train_images: int | None = None,
    epochs: int = 1,
    device: str = "auto",
    threads: int = 2,
    seed: int = 0,
) -> pd.DataFrame:
    """Seconds, training images/s and test accuracy of one real CIFAR-10 epoch per network, with the pipeline's code.

    The clean dataset (``noise: none``, 10% validation split, seed ``seed``) is built once into a temporary folder
    by :func:`selfdistill.data.build_corrupted_dataset` from ``<data_root>/cifar-10-batches-py`` (``verify_md5``:
    torchvision's md5 check; off only for test files); ``max_train_images`` keeps the first rows of its training
    split (``None``: all 45,000; for tests). Then each network of ``archs`` (default
    :data:`CIFAR_EPOCH_ARCHS`) trains for ``epochs`` epochs (mode ``ce``, seed ``seed``) with
    :func:`selfdistill.training.train_run` and :func:`cifar_epoch_settings` (the cosine schedule spans these
    epochs, so the accuracy is that of a one-epoch schedule, not of the first epoch of a long run), on ``device``,
    with its log records in this benchmark's log. Per network one row: ``seconds`` of the last epoch (the
    history's ``epoch_seconds``: the training pass and the full evaluation of the training, validation and test
    splits; with ``epochs`` > 1 the earlier epochs are warm-up), ``throughput`` = training images / seconds,
    ``test_acc`` after the last epoch, ``parameters``, and ``ratio``: images/s relative to :data:`REFERENCE_ARCH`
    (NaN without it). The ``data``
    column is ``cifar10``, or ``cifar10_unverified`` when the md5 check was off (files that may not be the real
    ones: their timings hold, their accuracies need not).

    Raises :class:`selfdistill.datasets.DatasetNotFoundError` with the one-line message of
    :func:`selfdistill.dataset_files.dataset_problem` when the files are missing: there is no synthetic fallback.
    """
    problem = dataset_problem("cifar10", {"data_root": str(data_root)})
    if problem:
        raise DatasetNotFoundError(problem)
    if epochs < 1:
        raise ValueError("epochs must be >= 1")
    if max_train_images is not None and max_train_images < 1:
        raise ValueError("max_train_images must be >= 1 (or None for all)")
    archs = list(CIFAR_EPOCH_ARCHS if archs is None else archs)
    unknown = [a for a in archs if a not in ARCHITECTURES]
    if unknown:
        raise ValueError(f"unknown architecture {unknown[0]!r}; allowed: {', '.join(ARCHITECTURES)}")
    dev = _device(device, threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="selfdistill-cifar-epoch-") as tmp:
        tmp = Path(tmp)
        data_path = tmp / "data.h5"
        t0 = time.perf_counter()
        build_corrupted_dataset(
            data_path,
            "cifar10",
            {"type": "none"},
            seed=seed,
            val_fraction=0.1,
            dataset_options={"data_root": str(data_root), "verify_md5": verify_md5},
        )
        if max_train_images is not None:
            kept = _keep_first_train_rows(data_path, int(max_train_images))
            log.info("cifar epoch: training split cut to its first %d images", kept)
        with h5py.File(data_path, "r") as h5:
            n_train = int(h5["train"]["labels_clean"].shape[0])
        log.info("cifar epoch: dataset built in %.1fs", time.perf_counter() - t0)
        for arch in archs:
            run_dir = tmp / arch
            run_dir.mkdir()
            train = cifar_epoch_settings(arch, epochs)
            history = train_run(
                data_path,
                run_dir / "history.csv",
                run_dir / "outputs.h5",
                run_dir / "model.pt",
                mode="ce",
                seed=seed,
                model={"arch": arch, "width": None},
                train=train,
                freq_subset=CIFAR_FREQ_SUBSETS[0],
                freq_test_subset=CIFAR_FREQ_SUBSETS[1],
                device=str(dev),
                threads=threads,
                run_name=f"cifar_epoch:{arch}",
            )
            last = history.iloc[-1]
            sec = float(last["epoch_seconds"])
            params = count_parameters(build_model(arch, (3, 32, 32), 10))
            rows.append(
                _row(
                    "cifar_epoch",
                    variant=arch,
                    device=dev.type,
                    device_name=device_name(dev),
                    threads=torch.get_num_threads(),
                    data="cifar10" if verify_md5 else "cifar10_unverified",
                    batch_size=train["batch_size"],
                    n_images=n_train,
                    seconds=sec,
                    throughput=n_train / sec,
                    throughput_unit="images/s",
                    n_epochs=epochs,
                    test_acc=float(last["test_acc"]),
                    parameters=params,
                )
            )
    thr = {r["variant"]: r["throughput"] for r in rows}
    for row in rows:
        row["ratio"] = row["throughput"] / thr[REFERENCE_ARCH] if REFERENCE_ARCH in thr else math.nan
    parts = [
        f"{r['variant']} {r['seconds']:.1f}s ({r['throughput']:,.0f} images/s"
        + ("" if math.isnan(r["ratio"]) else f", {r['ratio']:.2f}x ref")
        + f", test acc {r['test_acc']:.3f}, {r['parameters'] / 1e6:.2f}M parameters)"
        for r in rows
    ]
    which = "one epoch" if epochs == 1 else f"epoch {epochs} of {epochs}"
    summary = (
        f"CIFAR-10 on {dev.type} ({device_name(dev)}), {n_train} training images, batch "
        f"{CIFAR_TRAIN['batch_size']}, seconds of {which} incl. evaluation: " + "; ".join(parts)
    )
    return _finish(rows, out, summary)


# ----------------------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------------------

#: Sizes of ``--quick`` runs (seconds on a laptop; for smoke tests, not for numbers).
QUICK = {
    "input_pipeline": {"n_images": 512, "batch_size": 64, "repeats": 1},
    "train_step": {"batch_sizes": (4, 8), "warmup": 1, "steps": 1},
    "frequency": {"n": 120, "epochs": 4, "n_deltas": 3, "repeats": 2},
    # still the real CIFAR-10 files, and the full validation and test splits in the evaluation
    "cifar_epoch": {"max_train_images": 512},
}


def _device(device: str, threads: int) -> torch.device:
    """Check the device on this machine and configure it (CPU threads, cuDNN autotuning)."""
    return devices.configure(devices.check_device(device), threads).torch_device


@logged_step
def run_benchmark(
    name: str,
    out=None,
    *,
    quick: bool = False,
    device: str = "auto",
    threads: int = 2,
    data_root=DEFAULT_DATA_ROOT,
    log_path=None,
    **options,
) -> pd.DataFrame:
    """Run one benchmark by name (:data:`BENCHMARKS`), ``quick`` for tiny sizes; a bare ``cuda`` claims a GPU slot.

    ``threads``: CPU threads of the train step and the CIFAR-10 epoch (torch) and of the frequency analysis (BLAS);
    the input pipeline tries 1 and 2 intra-op threads (see :func:`input_pipeline_benchmark`). ``options`` go to the
    benchmark function (``cifar_epoch``: ``verify_md5``, ``archs``, ``max_train_images``, ``epochs``).
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; allowed: {', '.join(BENCHMARKS)}")
    if log_path is not None:
        setup_logging(log_path)
    kwargs = {**(QUICK[name] if quick else {}), **options}
    if name == "frequency":
        return frequency_benchmark(out, threads=threads, data_root=data_root, **kwargs)
    with devices.acquire(device, threads, holder=f"benchmark {name}") as run_device:
        dev = str(run_device.torch_device)
        if name == "input_pipeline":
            return input_pipeline_benchmark(out, device=dev, data_root=data_root, **kwargs)
        if name == "cifar_epoch":
            try:
                return cifar_epoch_benchmark(out, device=dev, threads=threads, data_root=data_root, **kwargs)
            except DatasetNotFoundError as err:
                log.error("%s", err)  # missing files or failed md5s: one line in the log
                raise
        return train_step_benchmark(out, device=dev, threads=threads, **kwargs)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m selfdistill.benchmarks NAME [--out CSV] [--quick] [--device D] [--threads N] [--data-root DIR]``.

    ``cifar_epoch`` also takes ``[--archs A,B] [--max-train-images N] [--epochs N] [--no-verify-md5]``; missing
    CIFAR-10 files end it with the one-line message (exit status 1), without a traceback.
    """
    parser = argparse.ArgumentParser(prog="python -m selfdistill.benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("benchmark", choices=BENCHMARKS)
    parser.add_argument("--out", help="CSV to write (default results/benchmarks/NAME.csv)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test, not numbers)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="CPU threads of train_step, cifar_epoch and frequency (default 2)",
    )
    parser.add_argument(
        "--data-root",
        default=DEFAULT_DATA_ROOT,
        help="folder that may hold (cifar_epoch: must hold) cifar-10-batches-py/",
    )
    parser.add_argument("--log", help="log file (default: stderr)")
    cifar = parser.add_argument_group("cifar_epoch only")
    cifar.add_argument(
        "--archs",
        help=f"comma-separated networks (default {','.join(CIFAR_EPOCH_ARCHS)})",
    )
    cifar.add_argument(
        "--max-train-images",
        type=int,
        help="keep the first N training images (default: all 45,000; for smoke tests)",
    )
    cifar.add_argument("--epochs", type=int, help="epochs per network (default 1)")
    cifar.add_argument(
        "--no-verify-md5",
        action="store_true",
        help="skip torchvision's md5 check of the CIFAR-10 files (test files only)",
    )
    args = parser.parse_args(argv)
    options = {}
    if args.archs:
        options["archs"] = [a.strip() for a in args.archs.split(",") if a.strip()]
    if args.max_train_images is not None:
        options["max_train_images"] = args.max_train_images
    if args.epochs is not None:
        options["epochs"] = args.epochs
    if args.no_verify_md5:
        options["verify_md5"] = False
    if options and args.benchmark != "cifar_epoch":
        parser.error("--archs, --max-train-images, --epochs and --no-verify-md5 apply to cifar_epoch only")
    setup_logging(args.log)
    try:
        run_benchmark(
            args.benchmark,
            args.out or f"results/benchmarks/{args.benchmark}.csv",
            quick=args.quick,
            device=args.device,
            threads=args.threads,
            data_root=args.data_root,
            **options,
        )
    except DatasetNotFoundError as err:
        if args.log:  # without --log, the benchmark's log record already went to stderr
            print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
