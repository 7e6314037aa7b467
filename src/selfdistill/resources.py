"""What each job asks the scheduler for: memory (:func:`train_mem_mb`, :func:`frequency_mem_mb`), runtime and
retries of the training runs (:func:`train_time`, from :data:`EPOCH_SECONDS`, which the GPU plan of
:mod:`selfdistill.gpu_plan` falls back on too), and whether a study planned for the
CPU by ``train.device: auto`` needs a GPU instead (:func:`auto_needs_gpu`, :func:`no_gpu_note`).

Only the standard library is imported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .dataset_files import CIFAR_FOLDERS, DATASET_SHAPES
from .epochs import output_bytes_per_epoch, recorded_epochs


def train_mem_mb(dataset: str) -> int:
    """Memory (MB) a training job asks for: digits and MNIST-1D are tiny; CIFAR holds 150 MB of uint8 images on the
    host, the HDF5 read buffers and the CUDA runtime (~2 GB)."""
    return 12000 if dataset in CIFAR_FOLDERS else 4000


#: Rough seconds per epoch (training + evaluation) by dataset family, network and device, for planning job runtimes
#: only; digits and MNIST-1D epochs take about a second or less (the 1 s fallback). ``train.epoch_seconds`` overrides
#: them.
EPOCH_SECONDS = {
    ("cifar", "shake_shake_26_2x32d", "cuda"): 30,
    ("cifar", "shake_shake_26_2x32d_original", "cuda"): 30,
    ("cifar", "preact_resnet18", "cuda"): 20,
    ("cifar", "fast_cnn", "cuda"): 5,
    ("cifar", "small_cnn", "cuda"): 5,
    ("cifar", "mlp", "cuda"): 3,
    ("cifar", "shake_shake_26_2x32d", "cpu"): 1200,
    ("cifar", "shake_shake_26_2x32d_original", "cpu"): 1200,
    ("cifar", "preact_resnet18", "cpu"): 2400,
    ("cifar", "fast_cnn", "cpu"): 600,
    ("cifar", "small_cnn", "cpu"): 120,
    ("cifar", "mlp", "cpu"): 30,
}


@dataclass(frozen=True)
class TrainTime:
    """The train rule's per-job ``runtime`` (minutes) and ``retries``, planned from the study."""

    estimate_min: float
    runtime_min: int
    retries: int


def epoch_seconds(config: Mapping, device: str) -> float:
    """Seconds of one epoch on ``device``: ``train.epoch_seconds``, else :data:`EPOCH_SECONDS` (1 s for digits and
    MNIST-1D)."""
    family = "cifar" if config["dataset"] in CIFAR_FOLDERS else config["dataset"]
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    return config["train"].get("epoch_seconds") or EPOCH_SECONDS.get(
        (family, config["model"]["arch"], device_type), 1.0
    )


def train_time(config: Mapping, device: str) -> TrainTime:
    """Estimated minutes of one run (epochs × seconds per epoch, +50% and 5 minutes of margin); the runtime of one
    job (``train.runtime``, else the whole estimate); and the retries a run needs to finish when each job may run
    only ``runtime`` minutes and resumes from its checkpoint (plus one for a transient failure)."""
    train = config["train"]
    estimate = train["epochs"] * epoch_seconds(config, device) * 1.5 / 60 + 5
    runtime = train.get("runtime") or math.ceil(estimate)
    return TrainTime(estimate, runtime, math.ceil(estimate / runtime))


#: Longest a training run planned for the CPU by ``device: auto`` may take: a longer one is planned as a GPU job.
CPU_AUTO_LIMIT_MIN = 120


def auto_needs_gpu(config: Mapping, setting_configs: Sequence[Mapping], device: str) -> bool:
    """Whether ``train.device: auto``, resolved to the CPU here (no GPU visible), would train runs that take longer
    than :data:`CPU_AUTO_LIMIT_MIN` each (a CIFAR-size network on a login node): such a study is planned as GPU
    jobs, as ``train.device: cuda`` plans it (and :func:`no_gpu_note` says so)."""
    if config["train"]["device"] != "auto" or device != "cpu":
        return False
    return max(train_time(c, "cpu").estimate_min for c in setting_configs) > CPU_AUTO_LIMIT_MIN


def no_gpu_note(device: str, gpu_here: bool) -> str | None:
    """One line when the study's runs are planned for a GPU that this machine does not have (the ``GPU plan:`` line
    before it gives their GPU-hours, :mod:`selfdistill.gpu_plan`): where to run them; ``None`` when they train on
    the CPU or a GPU is visible."""
    if not device.startswith("cuda") or gpu_here:
        return None
    return (
        "note: no GPU visible here: the GPU plan is for GPUs elsewhere; submit to a GPU machine or cluster "
        "(a job started here stops at once; train.device: cpu trains on this CPU)"
    )


def frequency_mem_mb(config: Mapping) -> int:
    """Memory (MB) a frequency job asks for, from the sizes it will hold: per split an n × n float64 distance
    matrix, one n × n kernel operator and its temporaries (3 n² × 8 bytes), and four n × m float64 blocks of the
    stacked outputs (m = stored epochs × classes × sources + label columns); n is the larger split analysed."""
    freq, dataset = config["frequency"], config["dataset"]
    n_images, n_classes = DATASET_SHAPES[dataset]
    n = max(freq["train_subset"], freq.get("test_subset") or n_images)
    n = min(n, n_images)
    n_test = min(freq.get("test_subset") or n_images, n_images)
    per_epoch = output_bytes_per_epoch(min(freq["train_subset"], n_images), n_test, n_classes)
    stored = len(recorded_epochs(config["train"]["epochs"], freq.get("record_epochs", "auto"), per_epoch))
    m = stored * n_classes * len(freq["sources"]) + 2 * n_classes
    return 1000 + math.ceil((3 * n * n + 4 * n * m) * 8 / 1e6)
