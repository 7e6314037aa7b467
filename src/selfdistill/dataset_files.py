"""What each dataset is (images, classes, channels, fixed splits), where its files live and which loader options it
takes: shared by the loaders (jobs) and the planner.

Only the standard library is imported, so the Snakefile can check for missing files before any job starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

DATASETS = ("digits", "mnist1d", "cifar10", "cifar100")
#: (images, classes) of each dataset (digits: all 1,797 images, whatever the split).
DATASET_SHAPES = {
    "digits": (1797, 10),
    "mnist1d": (5000, 10),
    "cifar10": (60000, 10),
    "cifar100": (60000, 100),
}
#: Image channels of each dataset (the digits are 8×8 grey images: 1 channel, also for the MLP on flat pixels; an
#: MNIST-1D signal is one channel of 1×40).
DATASET_CHANNELS = {"digits": 1, "mnist1d": 1, "cifar10": 3, "cifar100": 3}
#: (training images, test images) of the datasets with a fixed split; digits' split is drawn with
#: ``dataset_options.test_fraction`` (:func:`selfdistill.splits.split_sizes`). The validation split is taken from
#: the training images.
FIXED_SPLITS = {"mnist1d": (4000, 1000), "cifar10": (50000, 10000), "cifar100": (50000, 10000)}
#: Share of the digits in their test split when ``dataset_options.test_fraction`` is not given.
DIGITS_TEST_FRACTION = 0.2
#: The ``dataset_options`` keys each dataset's loader takes (the config schema lists them all).
DATASET_OPTIONS = {
    "digits": ("test_fraction", "split_seed"),
    "mnist1d": (),
    "cifar10": ("data_root", "download", "verify_md5"),
    "cifar100": ("data_root", "download", "verify_md5"),
}
DEFAULT_DATA_ROOT = "resources/data"
#: The folder torchvision reads below ``data_root``, its files, and the archive's size (for the error message).
CIFAR_FOLDERS = {
    "cifar10": (
        "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
        + ("test_batch", "batches.meta"),
        "163 MB",
    ),
    "cifar100": ("cifar-100-python", ("train", "test", "meta"), "161 MB"),
}


def dataset_problem(name: str, options: Mapping) -> str | None:
    """One line saying why dataset ``name`` cannot be loaded with ``options`` (its ``dataset_options``), or
    ``None`` when it can (or torchvision will download it). Cheap: checks that the files exist under
    ``data_root``; their md5 sums are checked when loading.
    """
    if name not in CIFAR_FOLDERS or options.get("download", False):
        return None
    data_root = options.get("data_root", DEFAULT_DATA_ROOT)
    folder, files, size = CIFAR_FOLDERS[name]
    where = Path(data_root) / folder
    missing = [f for f in files if not (where / f).is_file()]
    if not missing:
        return None
    return (
        f"{name} not found: expected {where}/ ({', '.join(missing)} missing); set dataset_options.download: "
        f"true to let torchvision fetch it ({size}), or extract the dataset's python version into {data_root}/"
    )


def dataset_option_problem(dataset: str, options: Mapping) -> str | None:
    """One line naming ``dataset_options`` keys that do not apply to ``dataset``, or ``None``."""
    foreign = sorted(set(options) - set(DATASET_OPTIONS[dataset]))
    if not foreign:
        return None
    takes = ", ".join(DATASET_OPTIONS[dataset]) or "none"
    return f"invalid config: dataset_options {', '.join(foreign)} do not apply to {dataset}; it takes {takes}"
