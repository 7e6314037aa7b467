"""Raw datasets as image arrays (N, H, W, C) with integer labels, before any label noise: uint8 for the image
datasets, float32 in [0, 1] for MNIST-1D.

``digits`` is scikit-learn's bundled handwritten digits (1,797 8×8 images, pixel values 0–16, no download),
the embedded default that lets the whole study run in minutes on a laptop. Its train/test split is fixed
(stratified 80/20, ``split_seed``) and does not depend on the run seed, so every run is tested on the same images.

``mnist1d`` is the MNIST-1D benchmark (Greydanus 2020): 5,000 one-dimensional signals of length 40, 10 classes,
made offline by the ``mnist1d`` package's own generator (``make_dataset`` with ``get_dataset_args()``'s defaults,
seed 42; never its download path), split as the package splits them (the first 4,000 for training, the last 1,000
for testing). Each signal is an image of 1×40 pixels and one channel; the package's values (standardised over all
5,000) are mapped affinely onto [0, 1] with the minimum and maximum over all 5,000, so that the pipeline's
[0, 1] pixel scale holds (the per-channel normalisation of training undoes the map).

``cifar10`` and ``cifar100`` are read by torchvision's own dataset classes from ``data_root`` (the python
version, ``cifar-10-batches-py/`` or ``cifar-100-python/``), in torchvision's order, which is also the order of the
CIFAR-10N label file. torchvision verifies every file's md5 sum; ``download=True`` lets torchvision fetch and
verify the archive. ``verify_md5=False`` skips the md5 comparison and only requires the files to exist: it is meant
for test fixtures written in the same format (and for copies verified by other means), never for real runs.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dataset_files import (
    CIFAR_FOLDERS,
    DATASETS,
    DEFAULT_DATA_ROOT,
    DIGITS_TEST_FRACTION,
    dataset_option_problem,
    dataset_problem,
)
from .splits import drawn_test_size

__all__ = [
    "DATASETS",
    "DatasetNotFoundError",
    "RawDataset",
    "dataset_problem",
    "load_cifar",
    "load_dataset",
    "load_digits",
    "load_mnist1d",
]


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are missing (or fail their checksums) and downloading is off."""


@dataclass(frozen=True)
class RawDataset:
    """Images stay in the dataset's own scale; ``pixel_max`` maps them to [0, 1]."""

    name: str
    # uint8 (N, H, W, C); float32 in [0, 1] for mnist1d
    train_images: np.ndarray
    # int64 (N,)
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    pixel_max: float

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_digits(test_fraction: float = DIGITS_TEST_FRACTION, split_seed: int = 0) -> RawDataset:
    """scikit-learn's digits with a fixed stratified train/test split (:func:`selfdistill.splits.drawn_test_size`
    test images)."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    # values 0..16 as stored, channel axis last
    images = bunch.images.astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(labels.size),
        test_size=drawn_test_size(labels.size, test_fraction),
        random_state=split_seed,
        stratify=labels,
    )
    idx_train, idx_test = np.sort(idx_train), np.sort(idx_test)
    return RawDataset(
        name="digits",
        train_images=images[idx_train],
        train_labels=labels[idx_train],
        test_images=images[idx_test],
        test_labels=labels[idx_test],
        class_names=tuple(str(c) for c in bunch.target_names),
        pixel_max=16.0,
    )


def _mnist1d_arrays() -> dict:
    """The package's ``make_dataset`` with its default arguments. It seeds NumPy's and Python's global generators
    (``set_seed(42)``) and draws from them; their states are restored afterwards, so loading changes nothing else."""
    import random

    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as err:
        raise DatasetNotFoundError(
            f"mnist1d needs the mnist1d package, which generates it ({err}); install it with pip install 'mnist1d>=0.0.2' "
            f"(a dependency of this project: pip install -e .)"
        ) from None

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        return make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def load_mnist1d() -> RawDataset:
    """MNIST-1D as the ``mnist1d`` package generates it by default (4,000 train / 1,000 test signals of length 40),
    as float32 images (N, 1, 40, 1) mapped onto [0, 1]."""
    data = _mnist1d_arrays()
    lo = min(data["x"].min(), data["x_test"].min())
    hi = max(data["x"].max(), data["x_test"].max())

    def images(x: np.ndarray) -> np.ndarray:
        scaled = np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
        return np.ascontiguousarray(scaled[:, None, :, None])

    return RawDataset(
        name="mnist1d",
        train_images=images(data["x"]),
        train_labels=np.asarray(data["y"], dtype=np.int64),
        test_images=images(data["x_test"]),
        test_labels=np.asarray(data["y_test"], dtype=np.int64),
        class_names=tuple(str(c) for c in range(10)),
        pixel_max=1.0,
    )


def _torchvision_class(name: str, verify_md5: bool):
    """torchvision's CIFAR10/CIFAR100 class, or a subclass whose files carry no md5 (existence check only).

    torchvision's ``check_integrity(path, md5=None)`` only tests that the file exists, so clearing the md5
    entries is the way to read fixture files written in the exact format but with other contents.
    """
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    if verify_md5:
        return cls
    return type(
        f"Unverified{cls.__name__}",
        (cls,),
        {
            "train_list": [[f, None] for f, _ in cls.train_list],
            "test_list": [[f, None] for f, _ in cls.test_list],
            "meta": {**cls.meta, "md5": None},
        },
    )


def _download(cls, name: str, root: str) -> None:
    """Let torchvision fetch and extract ``name`` into ``root``; a failed download (no network, a proxy, a server
    error: urllib's URLError and other OSErrors) is one :class:`DatasetNotFoundError` line with the manual way."""
    try:
        cls(root, train=True, download=True)
    except OSError as err:
        reason = getattr(err, "reason", None) or err
        folder = Path(root) / CIFAR_FOLDERS[name][0]
        raise DatasetNotFoundError(
            f"{name} could not be downloaded from {cls.url} ({reason}); without network access here, download "
            f"{cls.filename} on a machine that has it and extract it into {root}/ (it holds {folder.name}/), then "
            f"set dataset_options.download: false"
        ) from None


def load_cifar(
    name: str,
    data_root: str | os.PathLike = DEFAULT_DATA_ROOT,
    download: bool = False,
    verify_md5: bool = True,
) -> RawDataset:
    """CIFAR-10 or CIFAR-100 through torchvision's dataset classes (50,000 train / 10,000 test, uint8 HWC)."""
    problem = dataset_problem(name, {"data_root": data_root, "download": download})
    if problem:
        raise DatasetNotFoundError(problem)
    cls = _torchvision_class(name, verify_md5)
    root = str(data_root)
    try:
        if download:
            # several corrupt jobs start at once: one downloads and extracts, the others wait and then find it
            Path(root).mkdir(parents=True, exist_ok=True)
            with open(Path(root) / f".{name}-download.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                _download(cls, name, root)
        train = cls(root, train=True, download=False)
        test = cls(root, train=False, download=False)
    # torchvision: "Dataset not found or corrupted ..."
    except RuntimeError as err:
        folder = Path(root) / CIFAR_FOLDERS[name][0]
        raise DatasetNotFoundError(
            f"{name} files under {folder}/ fail torchvision's md5 check ({err}); delete the folder and set "
            f"dataset_options.download: true, or replace it with the official python version"
        ) from None
    return RawDataset(
        name=name,
        train_images=np.ascontiguousarray(train.data, dtype=np.uint8),
        train_labels=np.asarray(train.targets, dtype=np.int64),
        test_images=np.ascontiguousarray(test.data, dtype=np.uint8),
        test_labels=np.asarray(test.targets, dtype=np.int64),
        class_names=tuple(train.classes),
        pixel_max=255.0,
    )


def load_dataset(name: str, **options) -> RawDataset:
    """Dispatch on the configured dataset name; options that belong to another dataset are an error."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    problem = dataset_option_problem(name, options)
    if problem:
        raise ValueError(problem)
    if name == "digits":
        return load_digits(**options)
    if name == "mnist1d":
        return load_mnist1d()
    return load_cifar(name, **options)
