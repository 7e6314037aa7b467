"""Small CIFAR-10/100 folders and a CIFAR-10N label file, written in the exact on-disk formats.

The real loaders (torchvision's CIFAR10/CIFAR100 classes, ``noise.load_label_file``) run on these offline. The
batches are pickles of dicts with a ``data`` uint8 (n, 3072) array (R, G, B planes of 32×32, row-major) and
``labels`` (CIFAR-10) or ``fine_labels``/``coarse_labels`` (CIFAR-100) lists, as in the official python version.
Their contents differ from the real files, so torchvision's md5 sums do not match: loaders are told
``verify_md5=False``, torchvision's documented existence-only check (``check_integrity`` with no md5).

Images are class-dependent colour blobs plus noise, so a network can learn them (the pipeline test trains on them).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def fake_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (n, 3072) rows in CIFAR's plane order: a class-coloured square at a class-dependent place + noise."""
    n = labels.size
    img = rng.integers(0, 60, size=(n, 3, 32, 32), dtype=np.int64)
    for i, y in enumerate(labels):
        r0, c0 = 4 + 2 * (y % 5), 4 + 3 * (y // 5) * 3
        img[i, y % 3, r0 : r0 + 12, c0 : c0 + 12] += 150 + 10 * (y // 3)
    return np.clip(img, 0, 255).astype(np.uint8).reshape(n, 3072)


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def write_fake_cifar10(
    root: Path, per_batch: int = 40, n_test: int = 60, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Write ``root/cifar-10-batches-py/``; return the (train, test) labels in torchvision's order."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train = []
    for b in range(1, 6):
        labels = rng.integers(0, 10, per_batch)
        train.append(labels)
        _dump(
            folder / f"data_batch_{b}",
            {
                "batch_label": f"training batch {b} of 5",
                "labels": labels.tolist(),
                "data": fake_images(labels, rng),
                "filenames": [f"img_{b}_{i}.png" for i in range(per_batch)],
            },
        )
    test = rng.integers(0, 10, n_test)
    _dump(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": test.tolist(),
            "data": fake_images(test, rng),
            "filenames": [f"test_{i}.png" for i in range(n_test)],
        },
    )
    _dump(
        folder / "batches.meta",
        {
            "label_names": CIFAR10_NAMES,
            "num_cases_per_batch": per_batch,
            "num_vis": 3072,
        },
    )
    return np.concatenate(train).astype(np.int64), test.astype(np.int64)


def write_fake_cifar100(
    root: Path, n_train: int = 200, n_test: int = 50, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Write ``root/cifar-100-python/``; return the (train, test) fine labels."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    for split, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n)
        labels[split] = fine.astype(np.int64)
        _dump(
            folder / split,
            {
                "filenames": [f"{split}_{i}.png" for i in range(n)],
                "batch_label": f"{split} batch",
                "fine_labels": fine.tolist(),
                "coarse_labels": (fine // 5).tolist(),
                "data": fake_images(fine % 10, rng),
            },
        )
    _dump(
        folder / "meta",
        {
            "fine_label_names": [f"class{i:02d}" for i in range(100)],
            "coarse_label_names": [f"super{i:02d}" for i in range(20)],
        },
    )
    return labels["train"], labels["test"]


def write_fake_cifar10n(
    path: Path,
    clean: np.ndarray,
    seed: int = 0,
    worse: float = 0.4,
    aggre: float = 0.09,
) -> dict[str, np.ndarray]:
    """Write a CIFAR-10N-style ``.pt`` (dict of int64 numpy arrays, saved with torch.save); return its arrays."""
    import torch

    rng = np.random.default_rng(seed)
    arrays = {"clean_label": np.asarray(clean, dtype=np.int64)}
    for key, rate in (
        ("worse_label", worse),
        ("aggre_label", aggre),
        ("random_label1", 0.17),
    ):
        noisy = arrays["clean_label"].copy()
        flip = rng.random(noisy.size) < rate
        noisy[flip] = (noisy[flip] + rng.integers(1, 10, flip.sum())) % 10
        arrays[key] = noisy
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(arrays, path)
    return arrays
