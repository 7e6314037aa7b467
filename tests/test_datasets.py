"""Real loaders on fake files in the exact on-disk formats: torchvision's CIFAR classes and the CIFAR-10N file."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch
from fake_cifar import (
    CIFAR10_NAMES,
    write_fake_cifar10,
    write_fake_cifar10n,
    write_fake_cifar100,
)

from selfdistill.data import build_corrupted_dataset, read_corrupted
from selfdistill.datasets import DatasetNotFoundError, load_dataset
from selfdistill.noise import human_labels, load_label_file


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    train, test = write_fake_cifar10(root, per_batch=30, n_test=40)
    return root, train, test


def _planes_to_hwc(row: np.ndarray) -> np.ndarray:
    """Slow, obvious decoding of one CIFAR row (R, G, B planes of 32×32, row-major) into (32, 32, 3)."""
    out = np.zeros((32, 32, 3), dtype=np.uint8)
    for c in range(3):
        for r in range(32):
            for col in range(32):
                out[r, col, c] = row[c * 1024 + r * 32 + col]
    return out


def test_cifar10_loads_through_torchvision_in_file_order(cifar_root):
    root, train, test = cifar_root
    raw = load_dataset("cifar10", data_root=str(root), verify_md5=False)
    assert raw.train_images.shape == (150, 32, 32, 3)
    assert raw.train_images.dtype == np.uint8
    assert raw.test_images.shape == (40, 32, 32, 3)
    np.testing.assert_array_equal(raw.train_labels, train)
    np.testing.assert_array_equal(raw.test_labels, test)
    assert raw.class_names == tuple(CIFAR10_NAMES) and raw.pixel_max == 255.0
    with open(root / "cifar-10-batches-py" / "data_batch_2", "rb") as fh:
        batch = pickle.load(fh, encoding="latin1")
    np.testing.assert_array_equal(raw.train_images[30 + 7], _planes_to_hwc(batch["data"][7]))


def test_cifar100_uses_the_same_code_path(tmp_path):
    train, test = write_fake_cifar100(tmp_path, n_train=60, n_test=20)
    raw = load_dataset("cifar100", data_root=str(tmp_path), verify_md5=False)
    assert raw.num_classes == 100 and raw.train_images.shape == (60, 32, 32, 3)
    np.testing.assert_array_equal(raw.train_labels, train)
    np.testing.assert_array_equal(raw.test_labels, test)


def test_md5_sums_are_checked_by_default(cifar_root):
    root, _, _ = cifar_root
    with pytest.raises(DatasetNotFoundError, match="fail torchvision's md5 check") as info:
        load_dataset("cifar10", data_root=str(root))
    assert "\n" not in str(info.value)


def test_missing_files_name_the_folder_and_the_fix(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", data_root=str(tmp_path / "nowhere"))
    msg = str(info.value)
    assert f"expected {tmp_path / 'nowhere'}/cifar-10-batches-py/" in msg
    assert "dataset_options.download: true" in msg and "\n" not in msg


def test_options_of_another_dataset_are_rejected(cifar_root):
    root, _, _ = cifar_root
    with pytest.raises(ValueError, match="test_fraction do not apply to cifar10"):
        load_dataset("cifar10", data_root=str(root), test_fraction=0.5)
    with pytest.raises(ValueError, match="download do not apply to digits"):
        load_dataset("digits", download=True)


# ----------------------------------------------------------------------------------------------------------------
# CIFAR-10N human labels
# ----------------------------------------------------------------------------------------------------------------


def test_human_labels_round_trip_pt_and_npz(tmp_path, cifar_root):
    _, train, _ = cifar_root
    arrays = write_fake_cifar10n(tmp_path / "CIFAR-10_human.pt", train)
    noisy, is_noisy = human_labels(tmp_path / "CIFAR-10_human.pt", "worse_label", train, 10)
    np.testing.assert_array_equal(noisy, arrays["worse_label"])
    assert is_noisy.tolist() == [int(a) != int(b) for a, b in zip(noisy, train, strict=True)]
    np.savez(tmp_path / "labels.npz", **arrays)
    loaded = load_label_file(tmp_path / "labels.npz")
    assert sorted(loaded) == sorted(arrays)
    noisy_npz, _ = human_labels(tmp_path / "labels.npz", "aggre_label", train, 10)
    np.testing.assert_array_equal(noisy_npz, arrays["aggre_label"])


def test_human_labels_refuse_a_mismatched_clean_label(tmp_path, cifar_root):
    _, train, _ = cifar_root
    other = train.copy()
    other[[3, 9]] = (other[[3, 9]] + 1) % 10
    write_fake_cifar10n(tmp_path / "h.pt", other)
    with pytest.raises(
        ValueError,
        match=r"clean_label does not match.*2 of 150 differ, first at index 3",
    ):
        human_labels(tmp_path / "h.pt", "worse_label", train, 10)
    write_fake_cifar10n(tmp_path / "short.pt", train[:100])
    with pytest.raises(ValueError, match="100 labels for 150 training images"):
        human_labels(tmp_path / "short.pt", "worse_label", train, 10)


def test_human_labels_name_missing_keys(tmp_path, cifar_root):
    _, train, _ = cifar_root
    write_fake_cifar10n(tmp_path / "h.pt", train)
    with pytest.raises(ValueError, match=r"no 'worst_label'; it has aggre_label, clean_label"):
        human_labels(tmp_path / "h.pt", "worst_label", train, 10)


def test_label_file_never_executes_pickled_code(tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    torch.save({"clean_label": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="without executing pickled code.*GLOBAL"):
        load_label_file(tmp_path / "evil.pt")
    assert not marker.exists()


def test_corrupt_step_with_human_noise_on_cifar10(tmp_path, cifar_root):
    root, train, test = cifar_root
    arrays = write_fake_cifar10n(tmp_path / "CIFAR-10_human.pt", train)
    out = tmp_path / "data.h5"
    build_corrupted_dataset(
        out,
        "cifar10",
        {
            "type": "human",
            "key": "worse_label",
            "label_file": str(tmp_path / "CIFAR-10_human.pt"),
        },
        seed=1,
        val_fraction=0.2,
        dataset_options={"data_root": str(root), "verify_md5": False},
    )
    splits, attrs = read_corrupted(out)
    worse = arrays["worse_label"]
    for name in ("train", "val"):
        s = splits[name]
        np.testing.assert_array_equal(s.labels_noisy, worse[s.index])
        np.testing.assert_array_equal(s.labels_clean, train[s.index])
        assert s.images.dtype == np.uint8 and s.images.shape[1:] == (32, 32, 3)
    assert attrs["noise_name"] == "human_worse" and attrs["label_key"] == "worse_label"
    assert attrs["noise_rate_realised"] == pytest.approx(np.mean(worse != train))
    assert np.isnan(attrs["noise_rate_requested"])
    np.testing.assert_array_equal(splits["test"].labels_noisy, test)
    with h5py.File(out) as h5:
        assert h5["train/images"].dtype == np.uint8


def test_download_true_with_files_present_downloads_nothing(tmp_path):
    """torchvision's download() returns at once when the files check out; the lock serialises concurrent jobs."""
    train, _ = write_fake_cifar10(tmp_path, per_batch=5, n_test=5)
    raw = load_dataset("cifar10", data_root=str(tmp_path), download=True, verify_md5=False)
    np.testing.assert_array_equal(raw.train_labels, train)
    assert (tmp_path / ".cifar10-download.lock").is_file()


def test_a_failed_download_is_one_line_with_the_manual_way(tmp_path, monkeypatch):
    """No network: torchvision's download raises URLError; the corrupt step's log gets one clear line instead."""
    import urllib.error

    import torchvision.datasets.cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10", data_root=str(tmp_path), download=True)
    message = str(err.value)
    assert "\n" not in message and "could not be downloaded from https://" in message
    assert "Temporary failure in name resolution" in message and "cifar-10-python.tar.gz" in message
    assert str(tmp_path) in message and "dataset_options.download: false" in message
