"""A run's ``outputs.h5``: the writer (the ``train`` step) and the checked reader (the ``frequency`` step), together.

Layout: ``/epochs`` (the stored epochs, 1-based), ``/train_subset/{indices,labels_noisy,labels_clean,probs,logits}``
and ``/test/{indices,labels_clean,probs,logits}``; ``indices`` are rows of data.h5's split, the arrays are
(stored epochs, n, C) float32, chunked one epoch at a time. The attributes record the producing run: its name,
mode, seed and number of epochs, the checksum of the data file it trained on (``data_sha256``), the precision the
logits were computed in, the per-channel normalisation the network saw, and a checksum of the stored arrays
(``arrays_sha256``, over :data:`OUTPUT_ARRAYS` in that order). The reader verifies all of it, and checks data.h5
against the run, before any analysis; every problem is one :class:`~selfdistill.io.InputFileError` line naming
the file and the rule that rebuilds it.

No torch here: the frequency step runs without it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from .io import InputFileError, arrays_digest, atomic_output, ensure_free_space, file_digest, reading_hdf5

#: the per-epoch arrays of outputs.h5, in the order of its ``arrays_sha256`` checksum
OUTPUT_ARRAYS = ("train_subset/probs", "train_subset/logits", "test/probs", "test/logits")
#: the output sources stored per split
OUTPUT_SOURCES = ("probs", "logits")
#: the attributes with which the training step records the run that wrote outputs.h5
OUTPUT_ATTRS = ("data_sha256", "arrays_sha256", "epochs")
#: outputs.h5's splits -> (data.h5's split, the label vectors stored with them)
STORED_SPLITS = {"train_subset": ("train", ("noisy", "clean")), "test": ("test", ("clean",))}
#: what to do about a bad outputs.h5 / data.h5 (the rule that rebuilds each)
_REBUILD_OUTPUTS = "delete it and rerun snakemake (rule train rebuilds it)"
_REBUILD_DATA = "delete it and rerun snakemake (rule corrupt rebuilds it; the runs trained on it are redone too)"


@dataclass
class StoredSplit:
    """One split of outputs.h5: rows of data.h5's split, their labels and the per-epoch outputs (E, n, C)."""

    indices: np.ndarray
    # "noisy" (train subset only) and "clean"
    labels: dict[str, np.ndarray]
    # source ("probs", "logits") -> float32 (stored epochs, n, C)
    outputs: dict[str, np.ndarray]


@dataclass
class StoredRun:
    """The content of one outputs.h5, checked (:func:`read_outputs`)."""

    path: str
    # the stored epochs, 1-based, strictly increasing, ending at the run's last epoch
    epochs: np.ndarray
    num_classes: int
    attrs: dict
    # "train_subset" and "test"
    splits: dict[str, StoredSplit]


def read_outputs(path: str | os.PathLike, sources: Sequence[str] = OUTPUT_SOURCES) -> StoredRun:
    """Read outputs.h5 and check it before any analysis: the producer's identity (attributes ``data_sha256``,
    ``arrays_sha256``, ``epochs``) is present and the arrays match their checksum; ``/epochs`` is strictly
    increasing within 1..``epochs`` and ends at the last epoch; every array has the shape (stored epochs, rows, C);
    outputs are finite; probabilities are non-negative and every row sums to 1 within float32 rounding. Only the
    outputs of ``sources`` are kept.

    Every problem raises :class:`InputFileError`, one line naming the file, the dataset and what to do.
    """
    needed = [f"{split}/{field}" for split, (_, names) in STORED_SPLITS.items() for field in _fields(names)]
    with reading_hdf5(path, _REBUILD_OUTPUTS) as h5:
        missing = [key for key in OUTPUT_ATTRS if key not in h5.attrs]
        if missing:
            raise InputFileError(
                f"{path}: has no attribute {missing[0]}, so the run that wrote it cannot be verified (it predates the "
                f"producer checksums of the training step, or another program wrote it); {_REBUILD_OUTPUTS}"
            )
        missing = [key for key in ("epochs", *OUTPUT_ARRAYS, *needed) if key not in h5]
        if missing:
            raise InputFileError(f"{path}: dataset /{missing[0]} is missing; {_REBUILD_OUTPUTS}")
        attrs = dict(h5.attrs.items())
        epochs = h5["epochs"][()]
        arrays: dict[str, np.ndarray] = {}
        digest = arrays_digest(arrays.setdefault(key, h5[key][()]) for key in OUTPUT_ARRAYS)
        rest = {key: h5[key][()] for key in needed}
    if digest != str(attrs["arrays_sha256"]):
        raise InputFileError(
            f"{path}: its arrays do not match the checksum the training step wrote with them (arrays_sha256 differs: "
            f"the file was changed or damaged after it was written); {_REBUILD_OUTPUTS}"
        )
    epochs = check_epochs(path, epochs, attrs["epochs"])
    splits, classes = {}, set()
    for split, (_, names) in STORED_SPLITS.items():
        indices = rest[f"{split}/indices"]
        if indices.ndim != 1 or indices.size == 0 or not np.issubdtype(indices.dtype, np.integer):
            raise InputFileError(
                f"{path}: /{split}/indices is {indices.dtype} {indices.shape}, expected a non-empty integer vector; "
                f"{_REBUILD_OUTPUTS}"
            )
        n = indices.size
        labels = {name: rest[f"{split}/labels_{name}"] for name in names}
        for name, y in labels.items():
            if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
                raise InputFileError(
                    f"{path}: /{split}/labels_{name} is {y.dtype} {y.shape}, expected {n} integer labels (one per "
                    f"row of /{split}/indices); {_REBUILD_OUTPUTS}"
                )
        for source in OUTPUT_SOURCES:
            out = arrays[f"{split}/{source}"]
            check_output_array(path, f"{split}/{source}", out, (epochs.size, n))
            classes.add(out.shape[2])
        outputs = {source: arrays.pop(f"{split}/{source}") for source in OUTPUT_SOURCES if source in sources}
        labels = {name: y.astype(np.int64) for name, y in labels.items()}
        splits[split] = StoredSplit(indices.astype(np.int64), labels, outputs)
    if len(classes) != 1:
        raise InputFileError(
            f"{path}: the stored outputs disagree on the number of classes ({sorted(classes)}); {_REBUILD_OUTPUTS}"
        )
    return StoredRun(str(path), epochs, classes.pop(), attrs, splits)


def _fields(names) -> tuple[str, ...]:
    """A stored split's index and label datasets."""
    return ("indices", *(f"labels_{name}" for name in names))


def check_epochs(path, epochs: np.ndarray, n_epochs) -> np.ndarray:
    """``/epochs``: a non-empty, strictly increasing integer vector within 1..n_epochs that ends at n_epochs (every
    ``frequency.record_epochs`` setting stores the last epoch)."""
    try:
        n_epochs = int(n_epochs)
    except (TypeError, ValueError):
        raise InputFileError(f"{path}: attribute epochs is {n_epochs!r}, not a number; {_REBUILD_OUTPUTS}") from None
    if epochs.ndim != 1 or epochs.size == 0 or not np.issubdtype(epochs.dtype, np.integer):
        raise InputFileError(
            f"{path}: /epochs is {epochs.dtype} {epochs.shape}, expected a non-empty integer vector; {_REBUILD_OUTPUTS}"
        )
    epochs = epochs.astype(np.int64)
    if np.any(np.diff(epochs) <= 0):
        raise InputFileError(f"{path}: /epochs {epochs.tolist()} is not strictly increasing; {_REBUILD_OUTPUTS}")
    if epochs[0] < 1 or epochs[-1] > n_epochs:
        raise InputFileError(
            f"{path}: /epochs runs from {epochs[0]} to {epochs[-1]}, outside the run's epochs 1..{n_epochs}; "
            f"{_REBUILD_OUTPUTS}"
        )
    if epochs[-1] != n_epochs:
        raise InputFileError(
            f"{path}: /epochs ends at epoch {epochs[-1]} but the run trained {n_epochs} epochs and always stores the "
            f"last (the file is incomplete); {_REBUILD_OUTPUTS}"
        )
    return epochs


def check_output_array(path, key: str, out: np.ndarray, lead: tuple[int, int]) -> None:
    """One stored output array: float (E, n, C) with C >= 2, finite; probabilities non-negative, rows summing to 1."""
    if out.ndim != 3 or out.shape[:2] != lead or out.shape[2] < 2:
        raise InputFileError(
            f"{path}: /{key} has shape {out.shape}, expected ({lead[0]} stored epochs, {lead[1]} rows, classes); "
            f"{_REBUILD_OUTPUTS}"
        )
    if not np.issubdtype(out.dtype, np.floating) or not np.isfinite(out).all():
        raise InputFileError(f"{path}: /{key} holds NaN, infinite or non-float values; {_REBUILD_OUTPUTS}")
    if not key.endswith("/probs"):
        return
    if out.min() < 0:
        raise InputFileError(f"{path}: /{key} holds negative probabilities (min {out.min():.3g}); {_REBUILD_OUTPUTS}")
    # a float32 softmax row of C values sums to 1 within a few C float32 ulps
    tol = max(1e-5, 8 * out.shape[2] * float(np.finfo(np.float32).eps))
    sums = out.sum(axis=2, dtype=np.float64)
    bad = np.abs(sums - 1.0) > tol
    if bad.any():
        e, i = (int(v[0]) for v in np.nonzero(bad))
        raise InputFileError(
            f"{path}: /{key} has {int(bad.sum())} of {bad.size} rows that do not sum to 1, so they are not softmax "
            f"outputs (first: stored epoch {e + 1}, row {i}, sum {sums[e, i]:.6g}; tolerance {tol:.1e}); "
            f"{_REBUILD_OUTPUTS}"
        )


def check_inputs(path: str | os.PathLike, run: StoredRun) -> float:
    """Check that data.h5 is the file ``run`` (from :func:`read_outputs`) trained on (``data_sha256``), that the class
    counts agree, that the stored indices lie within data.h5's splits and that the stored labels are data.h5's at
    those rows; return its ``pixel_max``. Every problem raises :class:`InputFileError` naming the file to delete."""
    needed = [f"{src}/{field}" for src, names in STORED_SPLITS.values() for field in ("images", *_fields(names)[1:])]
    with reading_hdf5(path, _REBUILD_DATA) as h5:
        missing = [f"attribute {k}" for k in ("pixel_max", "num_classes") if k not in h5.attrs]
        missing += [f"dataset /{k}" for k in needed if k not in h5]
        if missing:
            raise InputFileError(f"{path}: {missing[0]} is missing (not a complete data file); {_REBUILD_DATA}")
        pixel_max, num_classes = float(h5.attrs["pixel_max"]), int(h5.attrs["num_classes"])
        if file_digest(path) != str(run.attrs["data_sha256"]):
            raise InputFileError(
                f"{run.path}: was not produced from {path} (data_sha256 differs from that file's checksum: the data "
                f"were rebuilt or changed after training); delete {run.path} and rerun snakemake (rule train retrains "
                f"the run on the current data)"
            )
        if num_classes != run.num_classes:
            raise InputFileError(
                f"{run.path}: stores outputs for {run.num_classes} classes, {path} has {num_classes}; {_REBUILD_OUTPUTS}"
            )
        for split, (src, names) in STORED_SPLITS.items():
            stored, group = run.splits[split], h5[src]
            n_total = group["images"].shape[0]
            outside = stored.indices[(stored.indices < 0) | (stored.indices >= n_total)]
            if outside.size:
                raise InputFileError(
                    f"{run.path}: /{split}/indices has row {int(outside[0])}, outside {path} /{src} (rows "
                    f"0..{n_total - 1}); {_REBUILD_OUTPUTS}"
                )
            # h5py wants increasing indices
            uniq, inv = np.unique(stored.indices, return_inverse=True)
            for name in names:
                ref = group[f"labels_{name}"][uniq][inv]
                if ref.shape != stored.labels[name].shape or not np.array_equal(stored.labels[name], ref):
                    differ = int((stored.labels[name] != ref).sum()) if ref.shape == stored.labels[name].shape else -1
                    raise InputFileError(
                        f"{run.path}: /{split}/labels_{name} disagree with {path} /{src}/labels_{name} at the stored "
                        f"rows ({differ} of {ref.size} differ); {_REBUILD_OUTPUTS}"
                    )
    return pixel_max


def stored_normalisation(run: StoredRun) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel (mean, std) the run trained with, from outputs.h5's attributes."""
    if "norm_mean" not in run.attrs or "norm_std" not in run.attrs:
        raise InputFileError(
            f"{run.path}: has no attributes norm_mean / norm_std (the run's input normalisation), which "
            f"frequency.inputs: normalised needs; {_REBUILD_OUTPUTS}"
        )
    mean, std = (np.asarray(run.attrs[k], dtype=np.float64).reshape(-1) for k in ("norm_mean", "norm_std"))
    if mean.shape != std.shape or not (np.isfinite(mean).all() and (std > 0).all()):
        raise InputFileError(
            f"{run.path}: attributes norm_mean / norm_std are not a valid normalisation; {_REBUILD_OUTPUTS}"
        )
    return mean, std


def read_inputs(
    path: str | os.PathLike,
    run: StoredRun,
    split: str,
    pixel_max: float,
    norm: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The inputs (n, d) of the rows of data.h5 that ``run`` stored for ``split``, scaled to [0, 1] by ``pixel_max``
    (checked first with :func:`check_inputs`), then, given ``norm`` = (mean, std) per channel, normalised."""
    src = STORED_SPLITS[split][0]
    uniq, inv = np.unique(run.splits[split].indices, return_inverse=True)
    with reading_hdf5(path, _REBUILD_DATA) as h5:
        images = h5[src]["images"][uniq][inv]
    # (n, H, W, C)
    x = images.astype(np.float64) / pixel_max
    if x.size and not (x.min() >= 0 and x.max() <= 1):
        raise InputFileError(
            f"{path}: /{src}/images lie outside [0, 1] after dividing by pixel_max={pixel_max}; {_REBUILD_DATA}"
        )
    if norm is not None:
        mean, std = norm
        if mean.size != images.shape[-1]:
            raise InputFileError(
                f"{run.path}: norm_mean has {mean.size} channels, {path} /{src}/images {images.shape[-1]}; "
                f"{_REBUILD_OUTPUTS}"
            )
        x = (x - mean) / std
    return x.reshape(x.shape[0], -1)


def write_outputs(
    path: str | os.PathLike,
    epochs: Sequence[int],
    rows: Mapping[str, tuple[Any, np.ndarray]],
    num_classes: int,
    epoch_arrays: Callable[[int], Mapping[str, np.ndarray]],
    attrs: Mapping[str, Any],
    needed_bytes: int,
) -> None:
    """Write outputs.h5 atomically (the layout of the module docstring).

    ``rows`` maps each stored split (:data:`STORED_SPLITS`) to (data.h5's split as :func:`selfdistill.data.read_corrupted`
    gives it, the stored rows of it); ``epoch_arrays(epoch)`` gives a stored epoch's :data:`OUTPUT_ARRAYS`; ``attrs``
    the producing run's identity, to which ``arrays_sha256`` is added. HDF5 can crash instead of reporting a disk
    that fills up while it writes, so ``needed_bytes`` of room are checked first.
    """
    ensure_free_space(path, needed_bytes)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("epochs", data=np.asarray(epochs, dtype=np.int64))
        sinks = {}
        for name, (_, labels) in STORED_SPLITS.items():
            split, indices = rows[name]
            group = h5.create_group(name)
            group.create_dataset("indices", data=indices.astype(np.int64))
            for label in labels:
                group.create_dataset(f"labels_{label}", data=getattr(split, f"labels_{label}")[indices])
            shape = (len(epochs), indices.size, num_classes)
            for source in OUTPUT_SOURCES:
                sinks[f"{name}/{source}"] = group.create_dataset(
                    source, shape=shape, dtype=np.float32, chunks=(1, *shape[1:])
                )
        for i, epoch in enumerate(epochs):
            for key, values in epoch_arrays(epoch).items():
                sinks[key][i] = values
        h5.attrs.update({**attrs, "arrays_sha256": arrays_digest(sinks[key][()] for key in OUTPUT_ARRAYS)})
