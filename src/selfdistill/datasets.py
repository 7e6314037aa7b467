"""Raw datasets as uint8 image arrays (N, H, W, C) with integer labels, before any label noise.

``digits`` is scikit-learn's bundled handwritten digits (1,797 8×8 images, pixel values 0–16, no download),
the embedded default that lets the whole study run in minutes on a laptop. Its train/test split is fixed
(stratified 80/20, ``split_seed``) and does not depend on the run seed, so every run is tested on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATASETS = ("digits",)


@dataclass(frozen=True)
class RawDataset:
    """Images stay in the dataset's own integer scale; ``pixel_max`` maps them to [0, 1]."""

    name: str
    train_images: np.ndarray  # uint8 (N, H, W, C)
    train_labels: np.ndarray  # int64 (N,)
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    pixel_max: float

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_digits(test_fraction: float = 0.2, split_seed: int = 0) -> RawDataset:
    """scikit-learn's digits with a fixed stratified train/test split."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    images = bunch.images.astype(np.uint8)[
        ..., None
    ]  # values 0..16 as stored, channel axis last
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(labels.size),
        test_size=test_fraction,
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


def load_dataset(name: str, **options) -> RawDataset:
    """Dispatch on the configured dataset name."""
    if name == "digits":
        return load_digits(**options)
    raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
