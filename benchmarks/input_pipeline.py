"""Input pipeline: augmented batches from the device-resident dataset vs the original's PIL ``DataLoader``.

The project's path makes augmented, normalised batches from the device-resident uint8 dataset exactly as the
training loop does (``randperm`` per epoch, :func:`selfdistill.batches.make_batch`: gather, crop and flip,
normalise); the baseline is the original's torchvision ``DataLoader`` (2 workers) over PIL images with
``RandomCrop(32, padding)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``. Batch size and crop padding are
the original study's (``train.batch_size`` and ``train.crop_padding`` of ``config/cifar10_seed.yaml``). Images:
the CIFAR-10 training split when ``<data_root>/cifar-10-batches-py`` exists, else synthetic ones (``data`` column).

``python -m benchmarks.input_pipeline [--out CSV] [--quick] [--device D] [--data-root DIR]``
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from selfdistill import device as devices
from selfdistill.batches import DeviceImages, channel_stats, make_batch
from selfdistill.dataset_files import DEFAULT_DATA_ROOT

from .common import (
    IMAGE_SHAPE,
    ORIGINAL_CONFIG,
    cifar_dir,
    command_line,
    configure_device,
    device_name,
    finish,
    load_images,
    log,
    row,
    study_config,
    study_settings,
    sync,
)

NAME = "input_pipeline"
#: Sizes of ``--quick`` runs (seconds on a laptop; for smoke tests, not for numbers).
QUICK = {"n_images": 512, "batch_size": 64, "repeats": 1}


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


def original_transform(mean: Sequence[float], std: Sequence[float], padding: int):
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
    padding: int,
    data_root=None,
):
    """torchvision's ``CIFAR10`` (train split) when ``data_root`` holds it, else :class:`PilImages` over ``images``."""
    transform = original_transform(mean, std, padding)
    if data_root is not None and cifar_dir(data_root).is_dir():
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
        sync(dev)
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
        sync(device)
        return xb

    return run


def input_pipeline_benchmark(
    out=None,
    *,
    n_images: int = 50_000,
    batch_size: int | None = None,
    workers: int = 2,
    padding: int | None = None,
    device: str = "auto",
    device_threads: Sequence[int] = (1, 2),
    repeats: int = 3,
    data_root=DEFAULT_DATA_ROOT,
    seed: int = 0,
    config=ORIGINAL_CONFIG,
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

    ``batch_size`` and ``padding`` (the crop's) default to the study's ``train.batch_size`` and ``train.crop_padding``
    in ``config`` (the original study, ``config/cifar10_seed.yaml``).
    """
    settings = study_settings(study_config(config))
    batch_size = settings.batch_size if batch_size is None else batch_size
    padding = settings.crop_padding if padding is None else padding
    dev = configure_device(device, 1)
    thread_counts = list(device_threads) if dev.type == "cpu" else [1]
    images, labels, data = load_images(data_root, n_images, train=True, seed=seed)
    mean, std = channel_stats(images, 255.0)
    device_images = DeviceImages(images, dev, 255.0, mean, std)
    dataset = original_dataset(images, labels, mean.tolist(), std.tolist(), padding, data_root)
    warm = min(n_images, 4 * batch_size)
    # (variant, threads or workers)
    runs = [("torchvision_dataloader", workers)]
    runs += [("device", threads) for threads in thread_counts]

    def run_variant(key, count):
        # the warm-up runs without worker processes
        if key[0] == "torchvision_dataloader":
            w = workers if count == n_images else 0
            return _loader_batches(dataset, count, batch_size, w, dev, seed)()
        torch.set_num_threads(key[1])
        return _device_batches(device_images, count, batch_size, padding, seed)()

    times = _time_variants(runs, run_variant, n_images, warm, repeats)
    seconds = {key: float(np.median(t)) for key, t in times.items()}
    base = n_images / seconds[("torchvision_dataloader", workers)]
    rows = _rows(seconds, base, dev, data, batch_size, n_images)
    summary = _summary(rows, base, dev, data, n_images, batch_size, workers)
    return finish(rows, out, summary)


def _time_variants(
    runs: list[tuple[str, int]], run_variant: Callable, n_images: int, warm: int, repeats: int
) -> dict[tuple[str, int], list[float]]:
    """Seconds of each run of each variant: a short untimed warm-up each, then the device variants ``repeats``
    times around the baseline's one run, so that all see the same machine load."""
    for key in runs:
        run_variant(key, warm)
    times: dict[tuple[str, int], list[float]] = {key: [] for key in runs}
    device_keys = [key for key in runs if key[0] != "torchvision_dataloader"]
    order = device_keys * (repeats // 2) + [key for key in runs if key[0] == "torchvision_dataloader"]
    order += device_keys * (repeats - repeats // 2)
    for key in order:
        t0 = time.perf_counter()
        run_variant(key, n_images)
        times[key].append(time.perf_counter() - t0)
        log.info(
            "input pipeline %s (%d threads): %d images in %.3fs",
            *key,
            n_images,
            times[key][-1],
        )
    return times


def _rows(seconds: dict, base: float, dev, data: str, batch_size: int, n_images: int) -> list[dict]:
    """One row per (variant, threads): its median seconds and images/s, also relative to the DataLoader's."""
    return [
        row(
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


def _summary(rows: list[dict], base: float, dev, data: str, n_images: int, batch_size: int, workers: int) -> str:
    """The one-line summary: the DataLoader and the device path at its best thread count."""
    best = {}
    for r in rows:
        if r["throughput"] > best.get(r["variant"], (0, 0))[0]:
            best[r["variant"]] = (r["throughput"], r["threads"])

    def quote(name):
        thr, threads = best[name]
        return f"{thr:,.0f} images/s ({threads} threads) = {thr / base:.1f}x"

    return (
        f"input pipeline on {dev.type} ({device_name(dev)}), {data} data, {n_images} images, batch {batch_size}: "
        f"torchvision DataLoader ({workers} workers, PIL) {base:,.0f} images/s; device-resident "
        f"{quote('device')}"
    )


def run(out=None, *, device: str = "auto", threads: int = 2, data_root=DEFAULT_DATA_ROOT, **options) -> pd.DataFrame:
    """:func:`input_pipeline_benchmark` on ``device`` (a bare ``cuda`` claims a GPU slot); it picks its own threads."""
    with devices.acquire(device, threads, holder=f"benchmark {NAME}") as run_device:
        return input_pipeline_benchmark(out, device=str(run_device.torch_device), data_root=data_root, **options)


def main(argv: Sequence[str] | None = None) -> None:
    command_line(NAME, argv, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    main()
