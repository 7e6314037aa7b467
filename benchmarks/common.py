"""What the benchmarks share: CSV columns and writing, device and timing helpers, images, study settings, CLI.

Every benchmark writes tidy rows (:data:`COLUMNS`) to a CSV and prints a one-line summary. Study settings
(network, batch size, augmentation, SGD) are read from the study configs in ``config/`` (:func:`study_config`),
never restated here. :func:`run_benchmark` runs one benchmark by name (the Snakemake rule ``benchmark`` calls it),
:func:`command_line` is each module's ``python -m benchmarks.NAME``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from selfdistill import device as devices
from selfdistill.dataset_files import DEFAULT_DATA_ROOT
from selfdistill.datasets import DatasetNotFoundError
from selfdistill.device import RunDevice, cpu_name
from selfdistill.execution import job_values
from selfdistill.io import atomic_output, logged_step, setup_logging
from selfdistill.planning import train_params
from selfdistill.training import TrainSettings, train_settings

# under the package's logger: setup_logging routes it
log = logging.getLogger("selfdistill.benchmarks")

#: The benchmarks that run on any machine (synthetic images without CIFAR-10): Snakemake's ``benchmarks`` target.
DEFAULT_BENCHMARKS = ("input_pipeline", "train_step", "frequency")
#: Every benchmark (a module of this package each); ``cifar_epoch`` needs the real CIFAR-10 files.
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
IMAGE_SHAPE = (32, 32, 3)

# ----------------------------------------------------------------------------------------------------------------
# Study settings, from config/*.yaml
# ----------------------------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "config"
#: The original study: its network (``model.arch``) is the reference of the ratios; its ``train`` settings (batch
#: size, crop padding, SGD) are those of the input pipeline and the train step, its ``frequency`` section sizes
#: the frequency benchmark.
ORIGINAL_CONFIG = CONFIG_DIR / "cifar10_seed.yaml"


def study_config(path: str | os.PathLike = ORIGINAL_CONFIG) -> dict:
    """A study config file (``config/*.yaml``) as read by Snakemake (plain YAML)."""
    with open(path) as fh:
        return yaml.safe_load(fh)


def study_train(config: Mapping) -> dict:
    """The ``train`` settings a study's training job trains with: the rule's params
    (:func:`selfdistill.planning.train_params`) and the execution-only values the job reads from its config
    (:func:`selfdistill.execution.job_values`) that are settings of the training loop."""
    loop = {f.name for f in fields(TrainSettings)}
    return {**train_params(config), **{k: v for k, v in job_values(config, "train").items() if k in loop}}


def study_settings(config: Mapping) -> TrainSettings:
    """The study's ``train`` settings with the library's defaults for the keys the config leaves out."""
    return train_settings(study_train(config))


# ----------------------------------------------------------------------------------------------------------------
# Devices, timing, images, CSV
# ----------------------------------------------------------------------------------------------------------------


def device_name(dev: torch.device) -> str:
    """The GPU's name for a CUDA device, else the CPU's model and the cores this process may use."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu_name()} ({cores} cores)"


def sync(dev: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU), so that a timer reads finished work."""
    RunDevice(dev).synchronize()


def configure_device(device: str, threads: int) -> torch.device:
    """Check the device on this machine and configure it (CPU threads, cuDNN autotuning)."""
    return devices.configure(devices.check_device(device), threads).torch_device


def cifar_dir(data_root) -> Path:
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
    if cifar_dir(data_root).is_dir():
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


def row(benchmark: str, **values) -> dict:
    """One CSV row: every column of :data:`COLUMNS`, empty unless given."""
    out = dict.fromkeys(COLUMNS)
    out.update(benchmark=benchmark, **values)
    return out


def finish(rows: list[dict], out, summary: str) -> pd.DataFrame:
    """Write the rows (if ``out``; atomically), log and print the one-line summary."""
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    if out is not None:
        with atomic_output(out) as tmp:
            df.to_csv(tmp, index=False)
    log.info("%s", summary)
    print(summary, flush=True)
    return df


# ----------------------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------------------


def benchmark_module(name: str):
    """The module of benchmark ``name`` (:data:`BENCHMARKS`); each has ``QUICK`` (``--quick`` sizes) and ``run``."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; allowed: {', '.join(BENCHMARKS)}")
    return importlib.import_module(f"{__package__}.{name}")


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
    the input pipeline tries 1 and 2 intra-op threads. ``options`` go to the benchmark function (``cifar_epoch``:
    ``verify_md5``, ``archs``, ``max_train_images``, ``epochs``).
    """
    module = benchmark_module(name)
    kwargs = {**(module.QUICK if quick else {}), **options}
    return module.run(out, device=device, threads=threads, data_root=data_root, **kwargs)


def command_line(
    name: str,
    argv: Sequence[str] | None = None,
    *,
    description: str = "",
    add_options: Callable[[argparse.ArgumentParser], None] | None = None,
    read_options: Callable[[argparse.Namespace], dict] | None = None,
) -> None:
    """``python -m benchmarks.NAME [--out CSV] [--quick] [--device D] [--threads N] [--data-root DIR] [--log F]``.

    ``add_options`` adds the benchmark's own options to the parser, ``read_options`` turns them into keyword
    arguments of its function. Missing CIFAR-10 files end it with the one-line message (exit status 1), without a
    traceback.
    """
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}.{name}", description=description)
    parser.add_argument("--out", help=f"CSV to write (default results/benchmarks/{name}.csv)")
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
    if add_options is not None:
        add_options(parser)
    args = parser.parse_args(argv)
    options = read_options(args) if read_options is not None else {}
    setup_logging(args.log)
    try:
        run_benchmark(
            name,
            args.out or f"results/benchmarks/{name}.csv",
            quick=args.quick,
            device=args.device,
            threads=args.threads,
            data_root=args.data_root,
            **options,
        )
    except DatasetNotFoundError as err:
        # without --log, the benchmark's log record already went to stderr
        if args.log:
            print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
