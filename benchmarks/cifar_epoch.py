"""One real CIFAR-10 epoch per network, with the training pipeline itself (no baseline).

A clean corrupted dataset (``noise: none``, the study's ``val_fraction``) is built once by
:func:`selfdistill.data.build_corrupted_dataset`, then :func:`selfdistill.training.train_run` trains each network
for one epoch with the ``train`` settings of its study config: the networks of ``config/cifar10_seed.yaml``
(Shake-Shake, the ratios' reference) and ``config/cifar10_sweep.yaml`` (PreAct ResNet-18) with their own configs,
``fast_cnn`` (in no config) with the sweep's. Per network: the epoch's seconds (the history's ``epoch_seconds``:
training and the full evaluation passes over the training, validation and test splits), training images/s, test
accuracy after the epoch and the parameter count. It needs the real CIFAR-10 files under
``<data_root>/cifar-10-batches-py`` and stops with a one-line message otherwise (no synthetic fallback: the point
is a real epoch), so it is not part of ``snakemake benchmarks``.

``python -m benchmarks.cifar_epoch [--out CSV] [--quick] [--device D] [--threads N] [--data-root DIR]
[--archs A,B] [--max-train-images N] [--epochs N] [--no-verify-md5]``
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import h5py
import pandas as pd
import torch

from selfdistill import device as devices
from selfdistill.data import SPLIT_FIELDS, build_corrupted_dataset
from selfdistill.dataset_files import DEFAULT_DATA_ROOT, dataset_problem
from selfdistill.datasets import DatasetNotFoundError
from selfdistill.models import ARCHITECTURES, build_model, count_parameters
from selfdistill.training import train_run

from .common import (
    CONFIG_DIR,
    command_line,
    configure_device,
    device_name,
    finish,
    log,
    row,
    study_config,
    study_train,
)

NAME = "cifar_epoch"
#: Sizes of ``--quick`` runs: still the real CIFAR-10 files, and the full validation and test splits.
QUICK = {"max_train_images": 512}
#: The CIFAR-10 study configs (in ``config/``) whose networks (``model.arch``) train, each with its config's
#: settings, in this order; the first one's network is the reference of the ratios.
STUDY_CONFIGS = ("cifar10_seed.yaml", "cifar10_sweep.yaml")
#: Networks in no study config, trained after those with the last config's settings (the sweep's recipe).
EXTRA_ARCHS = ("fast_cnn",)


def study_of(arch: str, config_dir: str | os.PathLike = CONFIG_DIR) -> Path:
    """The study config whose settings ``arch`` trains with: the first of :data:`STUDY_CONFIGS` whose network it
    is, else the last one."""
    paths = [Path(config_dir) / name for name in STUDY_CONFIGS]
    for path in paths:
        if study_config(path)["model"]["arch"] == arch:
            return path
    return paths[-1]


def cifar_epoch_archs(config_dir: str | os.PathLike = CONFIG_DIR) -> list[str]:
    """The networks trained by default: those of :data:`STUDY_CONFIGS`, then :data:`EXTRA_ARCHS`."""
    archs = [study_config(Path(config_dir) / name)["model"]["arch"] for name in STUDY_CONFIGS]
    return list(dict.fromkeys([*archs, *EXTRA_ARCHS]))


def cifar_epoch_settings(arch: str, epochs: int = 1, config_dir: str | os.PathLike = CONFIG_DIR) -> dict:
    """The ``train`` settings :func:`cifar_epoch_benchmark` gives :func:`selfdistill.training.train_run` for ``arch``:
    those a training job of its study (:func:`study_of`) receives, with ``epochs`` epochs (the cosine schedule spans
    them)."""
    return {**study_train(study_config(study_of(arch, config_dir))), "epochs": int(epochs)}


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
    config_dir: str | os.PathLike = CONFIG_DIR,
) -> pd.DataFrame:
    """Seconds, training images/s and test accuracy of one real CIFAR-10 epoch per network, with the pipeline's code.

    The clean dataset (``noise: none``, the first study's ``val_fraction``, seed ``seed``) is built once into a
    temporary folder by :func:`selfdistill.data.build_corrupted_dataset` from ``<data_root>/cifar-10-batches-py``
    (``verify_md5``: torchvision's md5 check; off only for test files); ``max_train_images`` keeps the first rows
    of its training split (``None``: all; for tests). Then each network of ``archs`` (default
    :func:`cifar_epoch_archs`) trains for ``epochs`` epochs (mode ``ce``, seed ``seed``) with
    :func:`selfdistill.training.train_run`, :func:`cifar_epoch_settings` and its study's stored-output subsets
    (``frequency.train_subset`` and ``test_subset``, so that the epoch writes what a study's run writes); the
    cosine schedule spans these epochs, so the accuracy is that of a one-epoch schedule, not of the first epoch of
    a long run. The studies are :data:`STUDY_CONFIGS` in ``config_dir``; the run is on ``device``, with its log
    records in this benchmark's log.

    Per network one row: ``seconds`` of the last epoch (the history's ``epoch_seconds``: the training pass and the
    full evaluation of the training, validation and test splits; with ``epochs`` > 1 the earlier epochs are
    warm-up), ``throughput`` = training images / seconds, ``test_acc`` after the last epoch, ``parameters``, and
    ``ratio``: images/s relative to the first study's network (NaN without it). The ``data`` column is
    ``cifar10``, or ``cifar10_unverified`` when the md5 check was off (files that may not be the real ones: their
    timings hold, their accuracies need not).

    Raises :class:`selfdistill.datasets.DatasetNotFoundError` with the one-line message of
    :func:`selfdistill.dataset_files.dataset_problem` when the files are missing: there is no synthetic fallback.
    """
    _check_options(data_root, epochs, max_train_images)
    reference = cifar_epoch_archs(config_dir)[0]
    archs = cifar_epoch_archs(config_dir) if archs is None else list(archs)
    unknown = [a for a in archs if a not in ARCHITECTURES]
    if unknown:
        raise ValueError(f"unknown architecture {unknown[0]!r}; allowed: {', '.join(ARCHITECTURES)}")
    val_fraction = study_config(Path(config_dir) / STUDY_CONFIGS[0])["val_fraction"]
    dev = configure_device(device, threads)
    data = "cifar10" if verify_md5 else "cifar10_unverified"
    with tempfile.TemporaryDirectory(prefix="selfdistill-cifar-epoch-") as tmp:
        tmp = Path(tmp)
        data_path = tmp / "data.h5"
        options = {"data_root": str(data_root), "verify_md5": verify_md5}
        n_train = _build_dataset(data_path, options, seed, val_fraction, max_train_images)
        rows = [
            _train_one(arch, data_path, tmp / arch, epochs, seed, dev, threads, config_dir, data, n_train)
            for arch in archs
        ]
    thr = {r["variant"]: r["throughput"] for r in rows}
    for r in rows:
        r["ratio"] = r["throughput"] / thr[reference] if reference in thr else math.nan
    return finish(rows, out, _summary(rows, dev, n_train, epochs))


def _check_options(data_root, epochs: int, max_train_images: int | None) -> None:
    """The CIFAR-10 files are there, and the sizes make sense."""
    problem = dataset_problem("cifar10", {"data_root": str(data_root)})
    if problem:
        raise DatasetNotFoundError(problem)
    if epochs < 1:
        raise ValueError("epochs must be >= 1")
    if max_train_images is not None and max_train_images < 1:
        raise ValueError("max_train_images must be >= 1 (or None for all)")


def _build_dataset(
    data_path: Path, dataset_options: dict, seed: int, val_fraction: float, max_train_images: int | None
) -> int:
    """The clean CIFAR-10 data.h5 (cut to ``max_train_images`` training rows if given); its training images."""
    t0 = time.perf_counter()
    build_corrupted_dataset(
        data_path,
        "cifar10",
        {"type": "none"},
        seed=seed,
        val_fraction=val_fraction,
        dataset_options=dataset_options,
    )
    if max_train_images is not None:
        kept = _keep_first_train_rows(data_path, int(max_train_images))
        log.info("cifar epoch: training split cut to its first %d images", kept)
    with h5py.File(data_path, "r") as h5:
        n_train = int(h5["train"]["labels_clean"].shape[0])
    log.info("cifar epoch: dataset built in %.1fs", time.perf_counter() - t0)
    return n_train


def _train_one(
    arch: str, data_path: Path, run_dir: Path, epochs: int, seed: int, dev, threads: int, config_dir, data: str, n_train
) -> dict:
    """Train ``arch`` for ``epochs`` epochs with the pipeline's :func:`train_run`; its row (without ``ratio``)."""
    run_dir.mkdir()
    train = cifar_epoch_settings(arch, epochs, config_dir)
    frequency = study_config(study_of(arch, config_dir))["frequency"]
    history = train_run(
        data_path,
        run_dir / "history.csv",
        run_dir / "outputs.h5",
        run_dir / "model.pt",
        mode="ce",
        seed=seed,
        model={"arch": arch, "width": None},
        train=train,
        freq_subset=frequency["train_subset"],
        freq_test_subset=frequency.get("test_subset"),
        device=str(dev),
        threads=threads,
        run_name=f"cifar_epoch:{arch}",
    )
    last = history.iloc[-1]
    sec = float(last["epoch_seconds"])
    return row(
        "cifar_epoch",
        variant=arch,
        device=dev.type,
        device_name=device_name(dev),
        threads=torch.get_num_threads(),
        data=data,
        batch_size=train["batch_size"],
        n_images=n_train,
        seconds=sec,
        throughput=n_train / sec,
        throughput_unit="images/s",
        n_epochs=epochs,
        test_acc=float(last["test_acc"]),
        parameters=count_parameters(build_model(arch, (3, 32, 32), 10)),
    )


def _summary(rows: list[dict], dev, n_train: int, epochs: int) -> str:
    """The benchmark's one-line summary."""
    parts = [
        f"{r['variant']} {r['seconds']:.1f}s ({r['throughput']:,.0f} images/s"
        + ("" if math.isnan(r["ratio"]) else f", {r['ratio']:.2f}x ref")
        + f", test acc {r['test_acc']:.3f}, {r['parameters'] / 1e6:.2f}M parameters)"
        for r in rows
    ]
    which = "one epoch" if epochs == 1 else f"epoch {epochs} of {epochs}"
    batches = "/".join(str(b) for b in dict.fromkeys(r["batch_size"] for r in rows))
    return (
        f"CIFAR-10 on {dev.type} ({device_name(dev)}), {n_train} training images, batch {batches}, "
        f"seconds of {which} incl. evaluation: " + "; ".join(parts)
    )


def run(out=None, *, device: str = "auto", threads: int = 2, data_root=DEFAULT_DATA_ROOT, **options) -> pd.DataFrame:
    """:func:`cifar_epoch_benchmark` on ``device`` (a bare ``cuda`` claims a GPU slot); missing or corrupt CIFAR-10
    files are one line in the log."""
    with devices.acquire(device, threads, holder=f"benchmark {NAME}") as run_device:
        try:
            return cifar_epoch_benchmark(
                out, device=str(run_device.torch_device), threads=threads, data_root=data_root, **options
            )
        except DatasetNotFoundError as err:
            # missing files or failed md5s: one line in the log
            log.error("%s", err)
            raise


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archs", help="comma-separated networks (default: the study configs', then fast_cnn)")
    parser.add_argument(
        "--max-train-images",
        type=int,
        help="keep the first N training images (default: all 45,000; for smoke tests)",
    )
    parser.add_argument("--epochs", type=int, help="epochs per network (default 1)")
    parser.add_argument(
        "--no-verify-md5",
        action="store_true",
        help="skip torchvision's md5 check of the CIFAR-10 files (test files only)",
    )


def _read_options(args: argparse.Namespace) -> dict:
    options = {}
    if args.archs:
        options["archs"] = [a.strip() for a in args.archs.split(",") if a.strip()]
    if args.max_train_images is not None:
        options["max_train_images"] = args.max_train_images
    if args.epochs is not None:
        options["epochs"] = args.epochs
    if args.no_verify_md5:
        options["verify_md5"] = False
    return options


def main(argv: Sequence[str] | None = None) -> None:
    command_line(
        NAME,
        argv,
        description=__doc__.split("\n")[0],
        add_options=_add_options,
        read_options=_read_options,
    )


if __name__ == "__main__":
    main()
