"""Label-noise models (STUDY.md §3): flip exactly round(r·n) training labels with a seeded generator.

Every model flips an exact count, so the realised rate equals the requested one to one sample, and the same
seed gives byte-identical labels. ``none`` returns the clean labels (the reference run).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .config import NOISE_TYPES, NoiseSpec

__all__ = [
    "NOISE_TYPES",
    "NoiseSpec",
    "class_map_for",
    "class_quotas",
    "corrupt_labels",
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
        raise ValueError(
            f"asymmetric noise on {dataset!r} needs noise.class_map (no default map for it)"
        )
    return dict(DEFAULT_CLASS_MAPS[dataset])


def corrupt_labels(
    labels: np.ndarray,
    noise_type: str,
    rate: float,
    num_classes: int,
    rng: np.random.Generator,
    class_map: Mapping[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(noisy_labels, is_noisy)`` with exactly round(rate·n_eligible) labels changed.

    The flips are spread over classes in proportion to their size (:func:`class_quotas`); which samples of a
    class are flipped is drawn by ``rng``.

    pair: y → (y+1) mod C. symmetric: y → uniform over the C−1 other classes. asymmetric: y → class_map[y],
    only samples whose class is a key of the map are eligible (rate is within those classes); a map entry
    y → y would not flip anything and is rejected.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if noise_type not in NOISE_TYPES:
        raise ValueError(
            f"unknown noise type {noise_type!r}; allowed: {', '.join(NOISE_TYPES)}"
        )
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"noise rate must lie in [0, 1), got {rate}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]"
        )
    noisy = labels.copy()
    if noise_type == "none":
        return noisy, np.zeros(labels.shape, dtype=bool)
    if noise_type == "asymmetric":
        if not class_map:
            raise ValueError("asymmetric noise needs a non-empty class_map")
        for src, dst in class_map.items():
            if not (0 <= src < num_classes and 0 <= dst < num_classes) or src == dst:
                raise ValueError(
                    f"invalid class_map entry {src}→{dst} for {num_classes} classes"
                )
        eligible = np.flatnonzero(np.isin(labels, list(class_map)))
    else:
        eligible = np.arange(labels.size)
    quotas = class_quotas(labels[eligible], rate, num_classes)
    chosen = np.sort(
        np.concatenate(
            [
                rng.choice(eligible[labels[eligible] == c], size=k, replace=False)
                for c, k in enumerate(quotas)
            ]
        )
    )
    n_flip = chosen.size
    if noise_type == "pair":
        noisy[chosen] = (labels[chosen] + 1) % num_classes
    elif noise_type == "symmetric":
        offsets = rng.integers(1, num_classes, size=n_flip)
        noisy[chosen] = (labels[chosen] + offsets) % num_classes
    else:
        lookup = np.arange(num_classes)
        for src, dst in class_map.items():
            lookup[src] = dst
        noisy[chosen] = lookup[labels[chosen]]
    is_noisy = noisy != labels
    return noisy, is_noisy


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


def transition_matrix(
    clean: np.ndarray, noisy: np.ndarray, num_classes: int
) -> np.ndarray:
    """Empirical T[i, j] = P(noisy = j | clean = i), rows of absent classes left at zero."""
    counts = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(counts, (np.asarray(clean), np.asarray(noisy)), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
