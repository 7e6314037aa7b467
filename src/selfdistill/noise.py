"""Label-noise models (docs/science.md, "Noise models"): flip exactly round(r·n) training labels with a seeded generator.

By default every model flips an exact count, so the realised rate equals the requested one to one sample; with
``count="bernoulli"`` each eligible sample is flipped by its own seeded coin of probability r instead (a binomial
count, the original repository's rule). The same seed gives byte-identical labels either way. ``none`` returns the clean labels (the reference run). ``human`` is not drawn
at all: it reads real annotators' labels (CIFAR-10N) from a file, checked against the dataset first.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .io import InputFileError
from .noise_spec import NOISE_COUNTS, NOISE_TYPES, NoiseSpec

__all__ = [
    "NOISE_COUNTS",
    "NOISE_TYPES",
    "NoiseSpec",
    "class_map_for",
    "class_quotas",
    "corrupt_labels",
    "human_labels",
    "load_label_file",
    "transition_matrix",
]

# Standard CIFAR-10 asymmetric map: truck→automobile, bird→airplane, deer→horse, cat↔dog.
CIFAR10_CLASS_MAP = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
# Digits: visually confusable pairs of handwritten digits (1↔7, 3→8, 5→6, 9→4); the same spirit as CIFAR's map.
DIGITS_CLASS_MAP = {1: 7, 7: 1, 3: 8, 5: 6, 9: 4}
DEFAULT_CLASS_MAPS = {"cifar10": CIFAR10_CLASS_MAP, "digits": DIGITS_CLASS_MAP}


def class_map_for(dataset: str, class_map: Mapping[int, int] | None) -> dict[int, int]:
    """The asymmetric map to use: the configured one, else the dataset's documented default."""
    if class_map is not None:
        return dict(class_map)
    if dataset not in DEFAULT_CLASS_MAPS:
        raise ValueError(f"asymmetric noise on {dataset!r} needs noise.class_map (no default map for it)")
    return dict(DEFAULT_CLASS_MAPS[dataset])


def corrupt_labels(
    labels: np.ndarray,
    noise_type: str,
    rate: float,
    num_classes: int,
    rng: np.random.Generator,
    class_map: Mapping[int, int] | None = None,
    count: str = "exact",
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(noisy_labels, is_noisy)`` with exactly round(rate·n_eligible) labels changed (``count="exact"``).

    The flips are spread over classes in proportion to their size (:func:`class_quotas`); which samples of a
    class are flipped is drawn by ``rng``. With ``count="bernoulli"`` one uniform float64 per eligible sample is
    drawn by ``rng`` (in index order) and the sample flips when it is below ``rate``.

    pair: y → (y+1) mod C. symmetric: y → uniform over the C−1 other classes. asymmetric: y → class_map[y],
    only samples whose class is a key of the map are eligible (rate is within those classes); a map entry
    y → y would not flip anything and is rejected.
    """
    labels = np.asarray(labels, dtype=np.int64)
    _check_corruption(labels, noise_type, rate, num_classes, count)
    if noise_type == "none":
        return labels.copy(), np.zeros(labels.shape, dtype=bool)
    eligible = _eligible_rows(labels, noise_type, num_classes, class_map)
    chosen = _chosen_rows(labels, eligible, rate, num_classes, rng, count)
    noisy = labels.copy()
    if noise_type == "pair":
        noisy[chosen] = (labels[chosen] + 1) % num_classes
    elif noise_type == "symmetric":
        offsets = rng.integers(1, num_classes, size=chosen.size)
        noisy[chosen] = (labels[chosen] + offsets) % num_classes
    else:
        lookup = np.arange(num_classes)
        for src, dst in class_map.items():
            lookup[src] = dst
        noisy[chosen] = lookup[labels[chosen]]
    is_noisy = noisy != labels
    return noisy, is_noisy


def _check_corruption(labels: np.ndarray, noise_type: str, rate: float, num_classes: int, count: str) -> None:
    """One-line errors for arguments :func:`corrupt_labels` cannot use."""
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"unknown noise type {noise_type!r}; allowed: {', '.join(NOISE_TYPES)}")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"noise rate must lie in [0, 1), got {rate}")
    if count not in NOISE_COUNTS:
        raise ValueError(f"unknown noise count {count!r}; allowed: {', '.join(NOISE_COUNTS)}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")


def _eligible_rows(
    labels: np.ndarray, noise_type: str, num_classes: int, class_map: Mapping[int, int] | None
) -> np.ndarray:
    """The rows noise may flip: all of them, or (asymmetric) those whose class is a key of a valid ``class_map``."""
    if noise_type != "asymmetric":
        return np.arange(labels.size)
    if not class_map:
        raise ValueError("asymmetric noise needs a non-empty class_map")
    for src, dst in class_map.items():
        if not (0 <= src < num_classes and 0 <= dst < num_classes) or src == dst:
            raise ValueError(f"invalid class_map entry {src}→{dst} for {num_classes} classes")
    return np.flatnonzero(np.isin(labels, list(class_map)))


def _chosen_rows(
    labels: np.ndarray, eligible: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator, count: str
) -> np.ndarray:
    """The rows to flip, sorted: a Bernoulli draw per eligible row, or exactly each class's quota."""
    if count == "bernoulli":
        return eligible[rng.random(eligible.size) < rate]
    quotas = class_quotas(labels[eligible], rate, num_classes)
    return np.sort(
        np.concatenate(
            [rng.choice(eligible[labels[eligible] == c], size=k, replace=False) for c, k in enumerate(quotas)]
        )
    )


def class_quotas(labels: np.ndarray, rate: float, num_classes: int) -> np.ndarray:
    """How many samples of each class to flip: round(rate·n) in total, spread in proportion to class size.

    Largest-remainder allocation: every class gets floor(rate·n_c), and the few flips left go to the classes
    with the largest fractional parts (lowest class index first on ties). The total is exactly round(rate·n)
    and each class's realised rate is within one sample of ``rate``, so the empirical transition matrix matches
    the nominal one instead of drifting with a per-sample coin (which, on a small dataset, can push a class past
    50% noise under pair flipping and silently change what the network can learn).
    """
    counts = np.bincount(labels, minlength=num_classes)
    exact = rate * counts
    quotas = np.floor(exact).astype(np.int64)
    left = round(rate * counts.sum()) - int(quotas.sum())
    if left > 0:
        # round the remainders so that mathematically equal ones (0.4 vs 0.40000000000000013) tie exactly
        order = np.argsort(-np.round(exact - quotas, 9), kind="stable")
        quotas[order[:left]] += 1
    return quotas


def transition_matrix(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """Empirical T[i, j] = P(noisy = j | clean = i), rows of absent classes left at zero."""
    counts = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(counts, (np.asarray(clean), np.asarray(noisy)), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


#: how a legacy (pre-zip) ``torch.save`` file starts: the pickled magic number torch checks first
_TORCH_LEGACY_HEADER = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."
#: what to do about a label file that cannot be used (never: load it unsafely)
_LABEL_FILE_FIX = (
    "replace it with CIFAR-10N's CIFAR-10_human.pt (download it again) or an .npz of its arrays "
    "(numpy.savez), and point noise.label_file at that"
)


def load_label_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Arrays of a label file (CIFAR-10N's ``CIFAR-10_human.pt``, or an ``.npz`` export of it), never executing
    pickled code: ``.pt`` goes through ``torch.load(weights_only=True)`` with only numpy's array reconstruction
    allowed, ``.npz`` through ``np.load(allow_pickle=False)``.

    A file that is not what its suffix says (random bytes, a truncated download, a plain pickle, an ``.npz`` with
    Python objects) raises :class:`~selfdistill.io.InputFileError`: one line naming the file, what it is not and
    what to use instead; the advice never is to load it unsafely.
    """

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} not found")
    if path.suffix == ".npz":
        return _load_npz(path)
    with open(path, "rb") as fh:
        head = fh.read(len(_TORCH_LEGACY_HEADER))
    if not zipfile.is_zipfile(path) and not head.startswith(_TORCH_LEGACY_HEADER):
        raise InputFileError(
            f"label file {path} is not a PyTorch file (neither a torch.save zip archive nor a legacy torch.save "
            f"file: truncated, or another format); {_LABEL_FILE_FIX}"
        )
    content = _load_arrays_only(path)
    if not isinstance(content, Mapping):
        raise InputFileError(
            f"label file {path} holds a {type(content).__name__}, expected a dict of label arrays; {_LABEL_FILE_FIX}"
        )
    return {str(k): np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in content.items()}


def _load_arrays_only(path: Path) -> object:
    """``torch.load`` of a label file that allows numpy arrays and nothing else; its failures as one line each."""
    import torch

    try:
        from numpy._core.multiarray import _reconstruct
    # numpy < 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct
    allowed = [
        _reconstruct,
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        *(type(np.dtype(t)) for t in ("int64", "int32", "uint8", "float32", "float64", "bool")),
    ]
    try:
        with torch.serialization.safe_globals(allowed):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is long and suggests loading unsafely: keep only the refused global, if there is one
        refused = re.search(r"GLOBAL (\S+)", str(err))
        if refused:
            raise InputFileError(
                f"label file {path} cannot be loaded without executing pickled code (it refers to GLOBAL "
                f"{refused.group(1)}, which is not an array); {_LABEL_FILE_FIX}"
            ) from None
        raise InputFileError(
            f"label file {path} is not a PyTorch file of arrays (its pickle is damaged or holds other objects); "
            f"{_LABEL_FILE_FIX}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile):
        raise InputFileError(
            f"label file {path} is not a PyTorch file (a damaged or truncated archive, or another zip format); "
            f"{_LABEL_FILE_FIX}"
        ) from None
    return content


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` label file, loaded without pickle; anything else is one :class:`InputFileError` naming the file."""
    what = f"label file {path} is not an .npz of integer arrays"
    if not zipfile.is_zipfile(path):
        raise InputFileError(f"{what} (not a zip archive: truncated, or another format); {_LABEL_FILE_FIX}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {}
            for key in npz.files:
                try:
                    arrays[key] = np.asarray(npz[key])
                # numpy refuses object arrays without pickle
                except ValueError:
                    raise InputFileError(f"{what} ({key!r} holds Python objects); {_LABEL_FILE_FIX}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        if isinstance(err, InputFileError):
            raise
        raise InputFileError(f"{what} (a member is not a readable .npy array); {_LABEL_FILE_FIX}") from None
    if not arrays:
        raise InputFileError(f"{what} (it holds no arrays); {_LABEL_FILE_FIX}")
    return arrays


def human_labels(
    path: str | os.PathLike, key: str, clean_labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy_labels, is_noisy)`` from a human-annotation file such as CIFAR-10N (docs/science.md, "Noise models").

    The file's ``clean_label`` must equal the dataset's training labels, element by element, so the annotations
    are known to be in the dataset's order; anything else is an error, not a warning.
    """
    arrays = load_label_file(path)
    clean_labels = np.asarray(clean_labels, dtype=np.int64)
    for needed in (key, "clean_label"):
        if needed not in arrays:
            raise ValueError(f"label file {path} has no {needed!r}; it has {', '.join(sorted(arrays))}")
    reference = np.asarray(arrays["clean_label"]).reshape(-1)
    if reference.shape != clean_labels.shape or not np.array_equal(reference, clean_labels):
        detail = (
            f"{reference.size} labels for {clean_labels.size} training images"
            if reference.size != clean_labels.size
            else f"{int((reference != clean_labels).sum())} of {reference.size} differ, first at index "
            f"{int(np.flatnonzero(reference != clean_labels)[0])}"
        )
        raise ValueError(
            f"label file {path}: clean_label does not match the dataset's training labels ({detail}); "
            f"is it the file for this dataset, in torchvision's order?"
        )
    noisy = np.asarray(arrays[key]).reshape(-1)
    if noisy.shape != clean_labels.shape:
        raise ValueError(f"label file {path}: {key} has {noisy.size} labels, expected {clean_labels.size}")
    if not np.issubdtype(noisy.dtype, np.integer) or noisy.min() < 0 or noisy.max() >= num_classes:
        raise ValueError(f"label file {path}: {key} must hold integer labels in [0, {num_classes})")
    noisy = noisy.astype(np.int64)
    return noisy, noisy != clean_labels
