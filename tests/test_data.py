"""Tests of the ``corrupt`` step (selfdistill.data) on scikit-learn's digits and of selfdistill.io.atomic_output.

Every file is written to its own tmp folder, so the test can also check that no temporary file is left beside it.
Expected values (val size, flip count, realised rate, transition matrix) are recomputed here with loops.
"""

from __future__ import annotations

import json
import math
import os

import h5py
import numpy as np
import pytest

import selfdistill
from selfdistill.data import build_corrupted_dataset, read_corrupted
from selfdistill.datasets import load_dataset
from selfdistill.io import atomic_output

SPLITS = ("train", "val", "test")
FIELDS = {"images", "labels_clean", "labels_noisy", "is_noisy", "index"}
ATTRS = {
    "dataset",
    "class_names",
    "num_classes",
    "pixel_max",
    "seed",
    "val_fraction",
    "noise_name",
    "noise_type",
    "noise_count",
    "noise_rate_requested",
    "noise_rate_realised",
    "n_flipped",
    "transition_matrix",
    "class_map",
    "label_file",
    "label_key",
    "package_version",
}
DIGITS_MAP = {1: 7, 7: 1, 3: 8, 5: 6, 9: 4}


def _build(factory, noise, seed, val_fraction=0.1):
    folder = factory.mktemp("corrupt")
    path = folder / "data.h5"
    build_corrupted_dataset(path, "digits", noise, seed=seed, val_fraction=val_fraction)
    return path


def _read_all(path):
    """Every dataset of every group and every attribute, read with plain h5py."""
    with h5py.File(path, "r") as h5:
        groups = {g: {f: h5[g][f][()] for f in h5[g]} for g in h5}
        attrs = dict(h5.attrs.items())
    return groups, attrs


@pytest.fixture(scope="module")
def raw():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def pair_s0(tmp_path_factory):
    return _build(tmp_path_factory, {"type": "pair", "rate": 0.4}, seed=0)


@pytest.fixture(scope="module")
def pair_s0_again(tmp_path_factory):
    return _build(tmp_path_factory, {"type": "pair", "rate": 0.4}, seed=0)


@pytest.fixture(scope="module")
def pair_s1(tmp_path_factory):
    return _build(tmp_path_factory, {"type": "pair", "rate": 0.4}, seed=1)


@pytest.fixture(scope="module")
def asym_s0(tmp_path_factory):
    return _build(tmp_path_factory, {"type": "asymmetric", "rate": 0.4}, seed=0)


@pytest.fixture(scope="module")
def none_s2(tmp_path_factory):
    return _build(tmp_path_factory, {"type": "none"}, seed=2)


def _train_val_in_original_order(groups):
    """Noisy/clean labels of train+val put back in the original training order via ``index``."""
    index = np.concatenate([groups["train"]["index"], groups["val"]["index"]])
    n = index.size
    clean = np.full(n, -1, dtype=np.int64)
    noisy = np.full(n, -1, dtype=np.int64)
    for split in ("train", "val"):
        for i, c, z in zip(
            groups[split]["index"].tolist(),
            groups[split]["labels_clean"].tolist(),
            groups[split]["labels_noisy"].tolist(),
        ):
            clean[i] = c
            noisy[i] = z
    return clean, noisy


# ----------------------------------------------------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------------------------------------------------


def test_layout(pair_s0):
    with h5py.File(pair_s0, "r") as h5:
        assert set(h5.keys()) == set(SPLITS)
        for split in SPLITS:
            g = h5[split]
            assert isinstance(g, h5py.Group)
            assert set(g.keys()) == FIELDS
            n = g["labels_clean"].shape[0]
            assert n > 0
            assert g["images"].dtype == np.uint8 and g["images"].shape == (n, 8, 8, 1)
            for f in ("labels_clean", "labels_noisy", "index"):
                assert g[f].dtype == np.int64 and g[f].shape == (n,), (split, f)
            assert g["is_noisy"].dtype == np.bool_ and g["is_noisy"].shape == (n,)


def test_attributes(pair_s0):
    groups, attrs = _read_all(pair_s0)
    assert set(attrs) == ATTRS
    assert attrs["dataset"] == "digits"
    assert [str(c) for c in attrs["class_names"]] == [str(i) for i in range(10)]
    assert int(attrs["num_classes"]) == 10
    assert float(attrs["pixel_max"]) == 16.0
    assert int(attrs["seed"]) == 0
    assert float(attrs["val_fraction"]) == 0.1
    assert attrs["noise_count"] == "exact"
    assert attrs["noise_name"] == "pair40"
    assert attrs["noise_type"] == "pair"
    assert float(attrs["noise_rate_requested"]) == 0.4
    assert isinstance(attrs["noise_rate_realised"], (float, np.floating))
    assert isinstance(attrs["n_flipped"], (int, np.integer))
    assert attrs["transition_matrix"].shape == (10, 10)
    assert attrs["transition_matrix"].dtype == np.float64
    assert json.loads(attrs["class_map"]) == {}
    assert attrs["package_version"] == selfdistill.__version__
    # images keep the dataset's own scale (0..16 for digits)
    assert max(int(groups[s]["images"].max()) for s in SPLITS) == 16


def test_splits_partition_training_rows(pair_s0, raw):
    groups, _ = _read_all(pair_s0)
    n_total = raw.train_labels.size
    tr, va = groups["train"]["index"].tolist(), groups["val"]["index"].tolist()
    assert len(tr) + len(va) == n_total
    assert len(va) == round(0.1 * n_total)
    assert sorted(tr + va) == list(range(n_total))
    assert not set(tr) & set(va)
    assert tr == sorted(tr) and va == sorted(va)
    for split in ("train", "val"):
        idx = groups[split]["index"]
        assert np.array_equal(groups[split]["images"], raw.train_images[idx])
        assert np.array_equal(groups[split]["labels_clean"], raw.train_labels[idx])


def test_test_split_is_clean(pair_s0, raw):
    groups, _ = _read_all(pair_s0)
    t = groups["test"]
    assert np.array_equal(t["labels_noisy"], t["labels_clean"])
    assert not t["is_noisy"].any()
    assert np.array_equal(t["index"], np.arange(raw.test_labels.size))
    assert np.array_equal(t["labels_clean"], raw.test_labels)
    assert np.array_equal(t["images"], raw.test_images)
    # digits: 1,797 images in all, 8×8
    assert raw.train_labels.size + raw.test_labels.size == 1797


def test_pair_noise_in_file(pair_s0):
    groups, attrs = _read_all(pair_s0)
    n_flipped = 0
    n = 0
    for split in ("train", "val"):
        g = groups[split]
        for y, z, f in zip(
            g["labels_clean"].tolist(),
            g["labels_noisy"].tolist(),
            g["is_noisy"].tolist(),
        ):
            n += 1
            assert f == (z != y)
            if f:
                n_flipped += 1
                assert z == (y + 1) % 10
    assert int(attrs["n_flipped"]) == n_flipped == round(0.4 * n)
    realised = float(attrs["noise_rate_realised"])
    assert math.isclose(realised, n_flipped / n, rel_tol=1e-12)
    assert abs(realised - 0.4) <= 1 / n
    # the noisy validation split really is noisy (about 40% too)
    val_rate = groups["val"]["is_noisy"].mean()
    assert 0.25 < val_rate < 0.55


def test_transition_matrix_attribute(pair_s0):
    groups, attrs = _read_all(pair_s0)
    clean, noisy = _train_val_in_original_order(groups)
    counts = [[0] * 10 for _ in range(10)]
    for a, b in zip(clean.tolist(), noisy.tolist()):
        counts[a][b] += 1
    ref = np.zeros((10, 10))
    for i in range(10):
        tot = sum(counts[i])
        for j in range(10):
            ref[i, j] = counts[i][j] / tot
    np.testing.assert_allclose(attrs["transition_matrix"], ref, rtol=0, atol=1e-15)
    np.testing.assert_allclose(attrs["transition_matrix"].sum(axis=1), 1.0, rtol=1e-12)


def test_same_seed_is_byte_identical(pair_s0, pair_s0_again):
    a_groups, a_attrs = _read_all(pair_s0)
    b_groups, b_attrs = _read_all(pair_s0_again)
    assert a_groups.keys() == b_groups.keys()
    for split in SPLITS:
        for f in FIELDS:
            a, b = a_groups[split][f], b_groups[split][f]
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes(), (split, f)
    assert a_attrs.keys() == b_attrs.keys()
    for k in a_attrs:
        assert np.array_equal(np.asarray(a_attrs[k]), np.asarray(b_attrs[k])), k


def test_different_seed_changes_noise_and_split_not_test(pair_s0, pair_s1):
    a_groups, a_attrs = _read_all(pair_s0)
    b_groups, b_attrs = _read_all(pair_s1)
    a_clean, a_noisy = _train_val_in_original_order(a_groups)
    b_clean, b_noisy = _train_val_in_original_order(b_groups)
    assert np.array_equal(a_clean, b_clean)
    assert not np.array_equal(a_noisy, b_noisy)
    assert not np.array_equal(a_groups["val"]["index"], b_groups["val"]["index"])
    for f in FIELDS:
        assert a_groups["test"][f].tobytes() == b_groups["test"][f].tobytes(), f
    # the flip count does not depend on the seed
    assert int(a_attrs["n_flipped"]) == int(b_attrs["n_flipped"])
    assert int(b_attrs["seed"]) == 1


def test_asymmetric_file(asym_s0, raw):
    groups, attrs = _read_all(asym_s0)
    assert attrs["noise_name"] == "asym40" and attrs["noise_type"] == "asymmetric"
    assert {int(k): v for k, v in json.loads(attrs["class_map"]).items()} == DIGITS_MAP
    clean, noisy = _train_val_in_original_order(groups)
    n_eligible = sum(1 for y in raw.train_labels.tolist() if y in DIGITS_MAP)
    n_flipped = 0
    for y, z in zip(clean.tolist(), noisy.tolist()):
        if z != y:
            n_flipped += 1
            assert y in DIGITS_MAP and z == DIGITS_MAP[y]
    assert int(attrs["n_flipped"]) == n_flipped == round(0.4 * n_eligible)
    realised = float(attrs["noise_rate_realised"])
    assert math.isclose(realised, n_flipped / n_eligible, rel_tol=1e-12)
    assert abs(realised - 0.4) <= 1 / n_eligible


def test_none_file(none_s2):
    groups, attrs = _read_all(none_s2)
    assert attrs["noise_name"] == "none" and attrs["noise_type"] == "none"
    assert int(attrs["n_flipped"]) == 0 and float(attrs["noise_rate_realised"]) == 0.0
    np.testing.assert_array_equal(attrs["transition_matrix"], np.eye(10))
    for split in SPLITS:
        g = groups[split]
        assert np.array_equal(g["labels_noisy"], g["labels_clean"])
        assert not g["is_noisy"].any()


@pytest.mark.parametrize("fixture", ["pair_s0", "pair_s1", "asym_s0", "none_s2"])
def test_no_temp_file_left(fixture, request):
    path = request.getfixturevalue(fixture)
    assert sorted(os.listdir(path.parent)) == ["data.h5"]


def test_read_corrupted_round_trip(pair_s0):
    groups, attrs = _read_all(pair_s0)
    splits, got_attrs = read_corrupted(pair_s0)
    assert set(splits) == set(SPLITS)
    for split in SPLITS:
        for f in FIELDS:
            got = getattr(splits[split], f)
            assert got.dtype == groups[split][f].dtype, (split, f)
            assert np.array_equal(got, groups[split][f]), (split, f)
    assert set(got_attrs) == set(attrs)
    assert got_attrs["class_names"] == [str(i) for i in range(10)]
    assert all(type(c) is str for c in got_attrs["class_names"])
    for k in ATTRS - {"class_names"}:
        assert np.array_equal(np.asarray(got_attrs[k]), np.asarray(attrs[k])), k


@pytest.mark.parametrize("val_fraction", [1.0, -0.1])
def test_bad_val_fraction_writes_nothing(tmp_path, val_fraction):
    out = tmp_path / "data.h5"
    with pytest.raises(ValueError, match="val_fraction"):
        build_corrupted_dataset(out, "digits", {"type": "pair", "rate": 0.4}, 0, val_fraction)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------------------------
# atomic_output
# ----------------------------------------------------------------------------------------------------------------


def test_atomic_output_success(tmp_path):
    final = tmp_path / "sub" / "dir" / "out.txt"
    with atomic_output(final) as tmp:
        assert tmp != final and tmp.parent == final.parent
        tmp.write_text("hello")
        assert not final.exists()
    assert final.read_text() == "hello"
    assert os.listdir(final.parent) == ["out.txt"]


def test_atomic_output_exception_leaves_nothing(tmp_path):
    final = tmp_path / "out.txt"

    class Boom(RuntimeError):
        pass

    with pytest.raises(Boom), atomic_output(final) as tmp:
        tmp.write_text("half written")
        raise Boom
    assert not final.exists()
    assert os.listdir(tmp_path) == []


def test_atomic_output_exception_keeps_previous_file(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old")
    with pytest.raises(KeyError), atomic_output(final) as tmp:
        tmp.write_text("new")
        raise KeyError("x")
    assert final.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]
    with atomic_output(final) as tmp:
        tmp.write_text("new")
    assert final.read_text() == "new"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_output_with_h5py_exception(tmp_path):
    """The pattern data.py uses: an error while writing HDF5 leaves neither the file nor a temporary."""
    final = tmp_path / "data.h5"
    with (
        pytest.raises(ValueError, match="boom"),
        atomic_output(final) as tmp,
        h5py.File(tmp, "w") as h5,
    ):
        h5.create_dataset("x", data=np.arange(3))
        raise ValueError("boom")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------------------------
# Reading a damaged file (more cases on real files: tests/test_bad_inputs.py)
# ----------------------------------------------------------------------------------------------------------------


def _damaged_copy(src, tmp_path, edit):
    import shutil

    path = tmp_path / "data.h5"
    shutil.copyfile(src, path)
    with h5py.File(path, "a") as h5:
        edit(h5)
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h5: h5.attrs.__delitem__("num_classes"), r"attribute num_classes is missing"),
        (lambda h5: h5.__delitem__("test/index"), r"/test/index is missing"),
        (
            lambda h5: (h5.__delitem__("train/index"), h5.create_dataset("train/index", data=np.arange(3))),
            r"/train/index has shape \(3,\), /train/images has \d+ rows",
        ),
        (lambda h5: h5["val/is_noisy"].__setitem__(0, not h5["val/is_noisy"][0]), r"/val/is_noisy disagrees"),
    ],
    ids=["no num_classes", "no test index", "short index", "is_noisy flipped"],
)
def test_read_corrupted_names_the_file_and_what_is_wrong(pair_s0, tmp_path, edit, message):
    path = _damaged_copy(pair_s0, tmp_path, edit)
    with pytest.raises(ValueError, match=rf"^{tmp_path}/data.h5: {message}.*delete it and rerun snakemake") as err:
        read_corrupted(path)
    assert type(err.value).__name__ == "InputFileError" and "\n" not in str(err.value)


def test_read_corrupted_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"nope.h5: file not found; rerun snakemake"):
        read_corrupted(tmp_path / "nope.h5")
