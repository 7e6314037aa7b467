"""How many images each split holds: the one rule that the loaders and the corrupt step draw their splits by
(:func:`selfdistill.datasets.load_digits`, :func:`selfdistill.data.build_corrupted_dataset`) and that the planner
checks a config with, before any job runs.

Only the standard library is imported, so the Snakefile can size the splits without NumPy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .dataset_files import DATASET_SHAPES, DIGITS_TEST_FRACTION, FIXED_SPLITS


def drawn_test_size(images: int, test_fraction: float) -> int:
    """Images in a drawn test split: ``ceil(test_fraction × images)`` (scikit-learn's ``train_test_split`` rounds a
    fractional test size up the same way)."""
    return math.ceil(test_fraction * images)


def validation_count(pool: int, val_fraction: float) -> int:
    """Training images held out for validation: ``round(val_fraction × pool)``."""
    return round(val_fraction * pool)


@dataclass(frozen=True)
class SplitSizes:
    """Images per split as the corrupt step makes them (the same for every seed): ``pool`` training images, of
    which ``val`` are held out for validation and ``train`` are trained on; ``test`` test images."""

    pool: int
    train: int
    val: int
    test: int
    classes: int


def split_sizes(config: Mapping) -> SplitSizes:
    """The split sizes of ``config``'s dataset (:func:`drawn_test_size` test images for the digits, a fixed split for
    CIFAR; :func:`validation_count` validation images)."""
    dataset = config.get("dataset", "digits")
    n_images, classes = DATASET_SHAPES[dataset]
    if dataset in FIXED_SPLITS:
        pool, test = FIXED_SPLITS[dataset]
    else:
        fraction = config.get("dataset_options", {}).get("test_fraction", DIGITS_TEST_FRACTION)
        test = drawn_test_size(n_images, fraction)
        pool = n_images - test
    val = validation_count(pool, config.get("val_fraction", 0.1))
    return SplitSizes(pool, pool - val, val, test, classes)
