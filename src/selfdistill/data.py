"""Pipeline step ``corrupt``: load a dataset, flip labels, carve a noisy validation split, write one HDF5 file.

HDF5 layout (one file per dataset × noise × seed)::

    /train, /val, /test            groups, each with
        images        uint8 (N, H, W, C), as stored by the dataset (float32 in [0, 1] for mnist1d)
        labels_clean  int64 (N,)
        labels_noisy  int64 (N,)        (test: equal to clean; test labels are never corrupted)
        is_noisy      bool  (N,)
        index         int64 (N,)        row in the dataset's original train (or test) array
    attributes: dataset, class_names, num_classes, pixel_max, seed, val_fraction, noise_name, noise_type, noise_count
        (exact or bernoulli; "" for none and human),
        noise_rate_requested, noise_rate_realised, n_flipped, transition_matrix (C×C, P(noisy=j | clean=i)),
        class_map (JSON; "{}" unless asymmetric), label_file and label_key (human noise only; "" otherwise),
        package_version

Noise is applied to the whole training set first; the validation split is then carved from the noisy training
set, so early stopping only ever sees noisy labels (docs/science.md, "Evaluation protocol").
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import h5py
import numpy as np

from . import __version__
from .datasets import RawDataset, load_dataset
from .io import InputFileError, atomic_output, logged_step, reading_hdf5
from .noise import (
    NoiseSpec,
    class_map_for,
    corrupt_labels,
    human_labels,
    transition_matrix,
)
from .splits import validation_count

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SPLIT_FIELDS = ("images", "labels_clean", "labels_noisy", "is_noisy", "index")


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for the label flips and the validation split, both fixed by ``seed``."""
    noise_seq, split_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(noise_seq), np.random.default_rng(split_seq)


@logged_step
def build_corrupted_dataset(
    out: str | os.PathLike,
    dataset: str,
    noise: Mapping,
    seed: int,
    val_fraction: float = 0.1,
    dataset_options: Mapping | None = None,
    log_path: str | os.PathLike | None = None,
) -> None:
    """Pipeline step: write ``out`` (HDF5) for one dataset × noise setting × seed."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    spec = NoiseSpec.from_config(noise)
    raw = load_dataset(dataset, **dict(dataset_options or {}))
    noise_rng, split_rng = _rngs(seed)
    class_map = class_map_for(dataset, spec.class_map) if spec.type == "asymmetric" else None
    noisy, is_noisy = _noisy_labels(raw, spec, noise_rng, class_map)
    n = raw.train_labels.size
    order = split_rng.permutation(n)
    n_val = validation_count(n, val_fraction)
    parts = {"val": np.sort(order[:n_val]), "train": np.sort(order[n_val:])}

    with atomic_output(out) as tmp, h5py.File(tmp, "w") as h5:
        for split, rows in parts.items():
            _write_split(h5, split, raw.train_images[rows], raw.train_labels[rows], noisy[rows], is_noisy[rows], rows)
        test_rows = np.arange(raw.test_labels.size)
        clean = np.zeros(test_rows.size, bool)
        _write_split(h5, "test", raw.test_images, raw.test_labels, raw.test_labels, clean, test_rows)
        attrs = _file_attrs(raw, spec, noisy, is_noisy, class_map, dataset, seed, val_fraction)
        h5.attrs.update(attrs)
    log.info(
        "%s/%s seed %d: flipped %d of %d training labels (realised rate %.4f); train %d, val %d, test %d",
        dataset,
        spec.name,
        seed,
        attrs["n_flipped"],
        n,
        attrs["noise_rate_realised"],
        parts["train"].size,
        parts["val"].size,
        raw.test_labels.size,
    )


def _noisy_labels(
    raw: RawDataset, spec: NoiseSpec, rng: np.random.Generator, class_map: dict[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy, is_noisy)`` for the training split: the annotators' labels (human noise) or a draw from ``rng``."""
    if spec.type == "human":
        return human_labels(spec.label_file, spec.key, raw.train_labels, raw.num_classes)
    return corrupt_labels(raw.train_labels, spec.type, spec.rate, raw.num_classes, rng, class_map, count=spec.count)


def _file_attrs(
    raw: RawDataset,
    spec: NoiseSpec,
    noisy: np.ndarray,
    is_noisy: np.ndarray,
    class_map: dict[int, int] | None,
    dataset: str,
    seed: int,
    val_fraction: float,
) -> dict:
    """The file's attributes: where the data came from, the noise asked for and the noise realised."""
    n = raw.train_labels.size
    eligible = n if class_map is None else int(np.isin(raw.train_labels, list(class_map)).sum())
    return {
        "dataset": dataset,
        "class_names": np.array(raw.class_names, dtype=h5py.string_dtype()),
        "num_classes": raw.num_classes,
        "pixel_max": raw.pixel_max,
        "seed": seed,
        "val_fraction": val_fraction,
        "noise_name": spec.name,
        "noise_type": spec.type,
        "noise_count": spec.count if spec.type not in ("none", "human") else "",
        # human noise has no requested rate: its rate is the annotators'
        "noise_rate_requested": spec.rate if spec.type != "human" else math.nan,
        "noise_rate_realised": float(is_noisy.sum() / eligible) if eligible else 0.0,
        "n_flipped": int(is_noisy.sum()),
        "transition_matrix": transition_matrix(raw.train_labels, noisy, raw.num_classes),
        "class_map": json.dumps(class_map or {}),
        "label_file": spec.label_file if spec.type == "human" else "",
        "label_key": spec.key if spec.type == "human" else "",
        "package_version": __version__,
    }


#: The dtypes images are stored in: uint8 (the image datasets) or float32 (MNIST-1D's signals).
IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))


def _write_split(h5: h5py.File, name: str, images, clean, noisy, is_noisy, index) -> None:
    group = h5.create_group(name)
    dtype = images.dtype if images.dtype in IMAGE_DTYPES else np.uint8
    group.create_dataset("images", data=np.ascontiguousarray(images, dtype=dtype), compression="gzip")
    group.create_dataset("labels_clean", data=np.asarray(clean, dtype=np.int64))
    group.create_dataset("labels_noisy", data=np.asarray(noisy, dtype=np.int64))
    group.create_dataset("is_noisy", data=np.asarray(is_noisy, dtype=bool))
    group.create_dataset("index", data=np.asarray(index, dtype=np.int64))


@dataclass(frozen=True)
class Split:
    """One split of a corrupted dataset, loaded into memory."""

    images: np.ndarray
    labels_clean: np.ndarray
    labels_noisy: np.ndarray
    is_noisy: np.ndarray
    index: np.ndarray


#: the rule that writes data.h5 (named in the advice of every error about the file)
_REBUILD_DATA = "delete it and rerun snakemake (rule corrupt rebuilds it; the runs trained on it are redone too)"
_DATA_ATTRS = ("class_names", "num_classes", "pixel_max")


def read_corrupted(path: str | os.PathLike) -> tuple[dict[str, Split], dict]:
    """Load all splits and the attributes of a file written by :func:`build_corrupted_dataset`.

    A missing, truncated or damaged file, or one that lacks a split, a field or an attribute the steps use, or whose
    fields disagree (row counts, labels outside the classes), raises :class:`InputFileError` naming the file.
    """
    if not os.path.isfile(path):
        raise InputFileError(f"{path}: file not found; rerun snakemake (rule corrupt builds it)")
    with reading_hdf5(path, _REBUILD_DATA) as h5:
        missing = [f"/{name}/{f}" for name in SPLITS for f in SPLIT_FIELDS if f"{name}/{f}" not in h5]
        missing += [f"attribute {key}" for key in _DATA_ATTRS if key not in h5.attrs]
        if missing:
            raise InputFileError(f"{path}: {missing[0]} is missing (not a complete data file); {_REBUILD_DATA}")
        splits = {name: Split(**{f: h5[name][f][()] for f in SPLIT_FIELDS}) for name in SPLITS}
        attrs = {k: v for k, v in h5.attrs.items()}
    attrs["class_names"] = [c.decode() if isinstance(c, bytes) else str(c) for c in attrs["class_names"]]
    _check_splits(path, splits, attrs)
    return splits, attrs


def _check_splits(path, splits: dict[str, Split], attrs: dict) -> None:
    """Row counts, image layout and label ranges of every split agree with each other and with the attributes."""
    num_classes = int(attrs["num_classes"])
    if num_classes < 2 or len(attrs["class_names"]) != num_classes:
        raise InputFileError(
            f"{path}: attribute num_classes is {num_classes} but class_names has {len(attrs['class_names'])} "
            f"names; {_REBUILD_DATA}"
        )
    for name, split in splits.items():
        if split.images.ndim != 4 or split.images.dtype not in IMAGE_DTYPES:
            raise InputFileError(
                f"{path}: /{name}/images is {split.images.dtype} {split.images.shape}, expected uint8 or float32 "
                f"(N, H, W, C); "
                f"{_REBUILD_DATA}"
            )
        n = split.images.shape[0]
        for field in SPLIT_FIELDS[1:]:
            values = getattr(split, field)
            if values.shape != (n,):
                raise InputFileError(
                    f"{path}: /{name}/{field} has shape {values.shape}, /{name}/images has {n} rows; {_REBUILD_DATA}"
                )
        for field in ("labels_clean", "labels_noisy"):
            values = getattr(split, field)
            if values.size and (
                not np.issubdtype(values.dtype, np.integer) or values.min() < 0 or values.max() >= num_classes
            ):
                raise InputFileError(
                    f"{path}: /{name}/{field} holds values outside the classes 0..{num_classes - 1}; {_REBUILD_DATA}"
                )
        if not np.array_equal(split.is_noisy, split.labels_noisy != split.labels_clean):
            raise InputFileError(
                f"{path}: /{name}/is_noisy disagrees with labels_noisy != labels_clean; {_REBUILD_DATA}"
            )
    if splits["train"].images.shape[0] == 0:
        raise InputFileError(f"{path}: /train has no rows; {_REBUILD_DATA}")
