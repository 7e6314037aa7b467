"""Tests of selfdistill.frequency against an independent, deliberately slow float64 reference.

The reference below uses explicit Python loops only (coordinate sums for distances, a hand-written max shift for
the kernel rows, explicit sums for the filter and the norms), so it shares no code path with the module.
"""

from __future__ import annotations

import math
import statistics

import h5py
import numpy as np
import pandas as pd
import pytest

from selfdistill import frequency as fq
from selfdistill import outputs
from selfdistill.io import InputFileError, arrays_digest, file_digest

RTOL = 1e-6
ATOL = 1e-12


# ----------------------------------------------------------------------------------------------------------------
# Independent slow reference
# ----------------------------------------------------------------------------------------------------------------


def ref_sq_dists(x):
    """d2[i][j] = sum_k (x[i][k] - x[j][k])^2 by explicit loops (also for rectangular query/point sets)."""
    rows = [[float(v) for v in r] for r in np.asarray(x, dtype=np.float64)]
    n = len(rows)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            s = 0.0
            for a, b in zip(rows[i], rows[j]):
                s += (a - b) * (a - b)
            out[i, j] = s
    return out


def ref_cross_sq_dists(q, p):
    """Squared distances from every row of q to every row of p, by explicit loops."""
    out = np.zeros((len(q), len(p)))
    for i in range(len(q)):
        for j in range(len(p)):
            s = 0.0
            for a, b in zip(q[i], p[j]):
                s += (float(a) - float(b)) ** 2
            out[i, j] = s
    return out


def ref_kernel(d2, delta):
    """Row-normalised exp(-d2 / (2 delta)) with an explicit per-row max shift (survives tiny delta)."""
    m, n = d2.shape
    k = np.zeros((m, n))
    for i in range(m):
        logits = [-float(d2[i, j]) / (2.0 * delta) for j in range(n)]
        top = max(logits)
        w = [math.exp(v - top) for v in logits]
        tot = sum(w)
        for j in range(n):
            k[i, j] = w[j] / tot
    return k


def ref_apply(k, f):
    """f_low = K f by explicit loops."""
    n, c = f.shape
    out = np.zeros((n, c))
    for i in range(n):
        for col in range(c):
            s = 0.0
            for j in range(n):
                s += k[i, j] * f[j, col]
            out[i, col] = s
    return out


def ref_fro(a):
    """Frobenius norm by an explicit sum."""
    s = 0.0
    for v in np.asarray(a, dtype=np.float64).ravel():
        s += float(v) * float(v)
    return math.sqrt(s)


def ref_one_hot(y, c):
    out = np.zeros((len(y), c))
    for i, label in enumerate(y):
        out[i, int(label)] = 1.0
    return out


def ref_ratio(k, f):
    low = ref_apply(k, f)
    high = f - low
    a, b = ref_fro(low) ** 2, ref_fro(high) ** 2
    return a / (a + b)


def ref_errors(k, h, y):
    """(e_low, e_high) of outputs h against one-hot targets y."""
    h_low, y_low = ref_apply(k, h), ref_apply(k, y)
    h_high, y_high = h - h_low, y - y_low
    return ref_fro(h_low - y_low) / ref_fro(y_low), ref_fro(h_high - y_high) / ref_fro(y_high)


def label_ratio(x, labels, num_classes, deltas):
    """ratio of one-hot label matrices (the label-reference rows of analyse_run) for each absolute delta: a one-hot
    matrix filtered as a one-epoch output of frequency_table. labels (n,) -> (n_deltas,); (k, n) -> (k, n_deltas)."""
    rows = np.atleast_2d(labels)
    onehots = np.stack([np.eye(num_classes)[r] for r in rows])
    ratios = fq.frequency_table(x, onehots, deltas)["ratio"].to_numpy().reshape(len(rows), -1)
    return ratios[0] if np.ndim(labels) == 1 else ratios


def operator_kernel(d2, delta):
    """The low-pass kernel the module applies, K = I - diag(w) A from FrequencyFilter.highpass_operator."""
    a, w = fq.FrequencyFilter(d2=d2).highpass_operator(delta)
    return np.eye(len(d2)) - w[:, None] * a


def ref_median_offdiag(d2):
    n = d2.shape[0]
    vals = []
    for i in range(n):
        for j in range(i + 1, n):
            vals.append(float(d2[i, j]))
    return statistics.median(vals)


# ----------------------------------------------------------------------------------------------------------------
# Fixtures / data
# ----------------------------------------------------------------------------------------------------------------


def random_probs(rng, e, n, c):
    z = rng.normal(size=(e, n, c)) * 2.0
    p = np.exp(z - z.max(axis=2, keepdims=True))
    return p / p.sum(axis=2, keepdims=True)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# ----------------------------------------------------------------------------------------------------------------
# Distances
# ----------------------------------------------------------------------------------------------------------------


def test_pairwise_sq_dists_matches_reference(rng):
    x = rng.random((30, 9))
    d2 = fq.pairwise_sq_dists(x)
    assert d2.dtype == np.float64 and d2.shape == (30, 30)
    np.testing.assert_allclose(d2, ref_sq_dists(x), rtol=RTOL, atol=ATOL)
    assert np.all(np.diag(d2) == 0.0)
    assert np.all(d2 >= 0.0)
    assert np.array_equal(d2, d2.T)


def test_pairwise_sq_dists_duplicates_exactly_zero(rng):
    base = rng.random((20, 11)) * 0.7 + 0.1
    # rows 20, 21 copy row 3; row 22 copies row 7
    x = np.concatenate([base, base[[3, 3, 7]]])
    d2 = fq.pairwise_sq_dists(x)
    for i, j in [(3, 20), (3, 21), (20, 21), (7, 22)]:
        assert d2[i, j] == 0.0 and d2[j, i] == 0.0
    np.testing.assert_allclose(d2, ref_sq_dists(x), rtol=RTOL, atol=ATOL)
    off = ~np.eye(len(x), dtype=bool)
    dup = np.zeros_like(off)
    for g in ([3, 20, 21], [7, 22]):
        dup[np.ix_(g, g)] = True
    assert np.all(d2[off & ~dup] > 0)


def test_pairwise_sq_dists_rejects_bad_input():
    with pytest.raises(ValueError):
        fq.pairwise_sq_dists(np.zeros(5))
    with pytest.raises(ValueError):
        fq.pairwise_sq_dists(np.array([[0.0, np.nan], [1.0, 0.0]]))


# ----------------------------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [0.02, 0.3, 5.0, 1e4])
def test_kernel_moderate_delta(rng, delta):
    x = rng.random((28, 7))
    d2 = ref_sq_dists(x)
    k = operator_kernel(d2, delta)
    np.testing.assert_allclose(k.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(k, ref_kernel(d2, delta), rtol=RTOL, atol=ATOL)
    assert np.all(k >= 0)


def test_kernel_tiny_delta_survives_underflow(rng):
    """Rows where every exp(-d2/2delta) underflows: the naive normalisation is 0/0, the operator's is not."""
    delta = 1e-4
    # clusters of near-identical points, far apart: within-cluster weights are non-trivial at this delta
    centres = rng.random((4, 6))
    pts = np.concatenate([c + rng.normal(scale=3e-3, size=(5, 6)) for c in centres])
    d2 = ref_sq_dists(pts)
    # a row-shifted matrix (e.g. distances without a zero self-distance): the kernel's rows are shift-invariant
    shift = 1.0 + rng.random((len(pts), 1))
    shifted = d2 + shift
    with np.errstate(under="ignore", invalid="ignore", divide="ignore"):
        naive_g = np.exp(-shifted / (2 * delta))
        naive_k = naive_g / naive_g.sum(axis=1, keepdims=True)
    # proves the underflow really happens
    assert np.all(naive_g == 0.0)
    # and the naive normalisation is 0/0
    assert np.all(np.isnan(naive_k))
    ref = ref_kernel(d2, delta)
    # the case is not trivially the identity
    assert 0.05 < ref[0, 1] < 0.95
    np.testing.assert_allclose(ref_kernel(shifted, delta), ref, rtol=RTOL, atol=ATOL)
    for mat in (d2, shifted):
        k = operator_kernel(mat, delta)
        assert np.all(np.isfinite(k))
        np.testing.assert_allclose(k.sum(axis=1), 1.0, rtol=1e-12)
        np.testing.assert_allclose(k, ref, rtol=RTOL, atol=ATOL)


def test_tiny_delta_averages_over_exact_duplicates(rng):
    base = rng.random((12, 10)) * 0.9
    # row 2 appears 3 times, row 5 twice
    x = np.concatenate([base, base[[2, 2, 5]]])
    d2 = fq.pairwise_sq_dists(x)
    k = operator_kernel(d2, 1e-8)
    groups = {2: [2, 12, 13], 12: [2, 12, 13], 13: [2, 12, 13], 5: [5, 14], 14: [5, 14]}
    for i in range(len(x)):
        expected = np.zeros(len(x))
        g = groups.get(i, [i])
        expected[g] = 1.0 / len(g)
        np.testing.assert_allclose(k[i], expected, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("shift", [0.0, 1.5])
@pytest.mark.parametrize("delta", [1e-3, 0.05, 0.4, 50.0])
def test_highpass_operator_is_identity_minus_kernel(shift, delta):
    """diag(w) A = I - K (the factorisation the float32 products use), also for d2 with a non-zero diagonal."""
    rng = np.random.default_rng(11)
    d2 = fq.pairwise_sq_dists(rng.random((25, 6))) + shift * rng.random((25, 1))
    flt = fq.FrequencyFilter(d2=d2)
    a, w = flt.highpass_operator(delta)
    np.testing.assert_allclose(w[:, None] * a, np.eye(25) - ref_kernel(d2, delta), rtol=0, atol=1e-14)
    np.testing.assert_allclose(a.sum(axis=1), 0.0, atol=1e-12)
    a32, w32 = flt.highpass_operator(delta, np.float32)
    assert a32.dtype == np.float32 and np.array_equal(w32, w)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf])
def test_kernel_rejects_bad_delta(bad):
    with pytest.raises(ValueError):
        fq.FrequencyFilter(d2=np.zeros((2, 2))).highpass_operator(bad)


# ----------------------------------------------------------------------------------------------------------------
# Widths
# ----------------------------------------------------------------------------------------------------------------


def test_resolve_deltas(rng):
    x = rng.random((31, 8))
    d2 = fq.pairwise_sq_dists(x)
    flt = fq.FrequencyFilter(d2=d2)
    med = ref_median_offdiag(ref_sq_dists(x))
    np.testing.assert_allclose(flt.resolve([0.5, 2.0], "median"), [0.5 * med, 2.0 * med], rtol=RTOL)
    np.testing.assert_array_equal(flt.resolve([0.5, 2.0], "absolute"), [0.5, 2.0])
    np.testing.assert_allclose(fq.median_sq_dist(d2), med, rtol=RTOL)
    # 496 pairs: an even count, so the median averages two middle values
    x_even = rng.random((32, 8))
    np.testing.assert_allclose(
        fq.median_sq_dist(fq.pairwise_sq_dists(x_even)),
        ref_median_offdiag(ref_sq_dists(x_even)),
        rtol=RTOL,
    )
    with pytest.raises(ValueError):
        flt.resolve([1.0], "log")
    with pytest.raises(ValueError):
        flt.resolve([], "absolute")
    with pytest.raises(ValueError):
        # all points identical: median 0
        fq.FrequencyFilter(d2=np.zeros((3, 3))).resolve([1.0], "median")


# ----------------------------------------------------------------------------------------------------------------
# frequency_table (and the label reference)
# ----------------------------------------------------------------------------------------------------------------


def _ref_rows(x_d2, outputs, deltas, y_noisy, y_clean, c):
    """Reference table rows {(epoch_index, delta_pos): dict} for outputs (E, n, C)."""
    rows = {}
    yn = None if y_noisy is None else ref_one_hot(y_noisy, c)
    yc = None if y_clean is None else ref_one_hot(y_clean, c)
    for jd, delta in enumerate(deltas):
        k = ref_kernel(x_d2, delta)
        for e in range(outputs.shape[0]):
            h = np.asarray(outputs[e], dtype=np.float64)
            row = {"ratio": ref_ratio(k, h)}
            for name, y in (("noisy", yn), ("clean", yc)):
                lo, hi = ref_errors(k, h, y) if y is not None else (np.nan, np.nan)
                row[f"e_low_{name}"], row[f"e_high_{name}"] = lo, hi
            rows[(e, jd)] = row
    return rows


def test_frequency_table_matches_reference(rng):
    n, d, c, e = 30, 8, 4, 3
    x = rng.random((n, d))
    outputs = random_probs(rng, e, n, c)
    y_clean = rng.integers(0, c, n)
    y_noisy = y_clean.copy()
    flip = rng.random(n) < 0.4
    y_noisy[flip] = rng.integers(0, c, flip.sum())
    deltas = [0.05, 0.3, 2.0]
    df = fq.frequency_table(x, outputs, deltas, y_noisy=y_noisy, y_clean=y_clean, num_classes=c)
    assert list(df.columns) == list(fq.TABLE_COLUMNS)
    assert len(df) == e * len(deltas)
    ref = _ref_rows(ref_sq_dists(x), outputs, deltas, y_noisy, y_clean, c)
    for i, r in df.iterrows():
        jd = deltas.index(r["delta"])
        assert r["epoch_index"] == i // len(deltas) and jd == i % len(deltas)
        assert np.isnan(r["delta_rel"])
        for col, val in ref[(int(r["epoch_index"]), jd)].items():
            np.testing.assert_allclose(r[col], val, rtol=RTOL, atol=ATOL, err_msg=col)


def test_frequency_table_float32_logits_and_missing_targets(rng):
    n, d, c, e = 26, 6, 5, 2
    x = rng.random((n, d))
    logits = (rng.normal(size=(e, n, c)) * 3).astype(np.float32)
    y_clean = rng.integers(0, c, n)
    deltas = [0.1, 1.0]
    df = fq.frequency_table(x, logits, deltas, y_clean=y_clean)
    assert df[["e_low_noisy", "e_high_noisy"]].isna().all().all()
    ref = _ref_rows(ref_sq_dists(x), logits, deltas, None, y_clean, c)
    for _, r in df.iterrows():
        for col, val in ref[(int(r["epoch_index"]), deltas.index(r["delta"]))].items():
            if not np.isnan(val):
                np.testing.assert_allclose(r[col], val, rtol=RTOL, atol=ATOL, err_msg=col)
    df_none = fq.frequency_table(x, logits, deltas)
    assert df_none[["e_low_noisy", "e_high_noisy", "e_low_clean", "e_high_clean"]].isna().all().all()
    np.testing.assert_allclose(df_none["ratio"], df["ratio"], rtol=1e-12)
    with pytest.raises(ValueError):
        fq.frequency_table(x, logits, deltas, y_clean=y_clean, num_classes=c + 1)


def test_frequency_table_relative_deltas_and_filter_reuse(rng):
    n, d, c, e = 27, 10, 3, 2
    x = rng.random((n, d))
    outputs = random_probs(rng, e, n, c)
    y = rng.integers(0, c, n)
    rel = [0.1, 1.0]
    d2_ref = ref_sq_dists(x)
    med = ref_median_offdiag(d2_ref)
    flt = fq.FrequencyFilter(x)
    df = fq.frequency_table(flt, outputs, None, y_clean=y, delta_rel=rel)
    np.testing.assert_allclose(df["delta"], np.tile([r * med for r in rel], e), rtol=RTOL)
    np.testing.assert_allclose(df["delta_rel"], np.tile(rel, e))
    ref = _ref_rows(d2_ref, outputs, [r * med for r in rel], None, y, c)
    for _, r in df.iterrows():
        jd = int(np.argmin(np.abs(np.asarray(rel) * med - r["delta"])))
        for col in ("ratio", "e_low_clean", "e_high_clean"):
            np.testing.assert_allclose(r[col], ref[(int(r["epoch_index"]), jd)][col], rtol=RTOL, err_msg=col)


def test_label_ratio_matches_reference(rng):
    n, d, c = 33, 7, 6
    x = rng.random((n, d))
    y1, y2 = rng.integers(0, c, n), rng.integers(0, c, n)
    deltas = [0.05, 0.5, 3.0]
    d2_ref = ref_sq_dists(x)
    expected = np.array([[ref_ratio(ref_kernel(d2_ref, dl), ref_one_hot(y, c)) for dl in deltas] for y in (y1, y2)])
    np.testing.assert_allclose(label_ratio(x, y1, c, deltas), expected[0], rtol=RTOL)
    flt = fq.FrequencyFilter(x)
    np.testing.assert_allclose(label_ratio(flt, np.stack([y1, y2]), c, deltas), expected, rtol=RTOL)


def test_sanity_constant_and_perfect_outputs(rng):
    n, d, c = 40, 5, 4
    x = rng.random((n, d))
    y = rng.integers(0, c, n)
    const = np.broadcast_to(np.array([0.1, 0.2, 0.3, 0.4]), (n, c))
    perfect = np.eye(c)[y]
    outputs = np.stack([const, perfect])
    # float64: the product of the default float32 filter rounds each column block on its own, so perfect outputs
    # and their one-hot target can differ by ~1e-8 depending on the BLAS kernels of the machine
    df = fq.frequency_table(x, outputs, [0.05, 0.5], y_clean=y, precision="float64")
    c_rows, p_rows = df[df.epoch_index == 0], df[df.epoch_index == 1]
    # K is row-stochastic: K const = const
    np.testing.assert_allclose(c_rows["ratio"], 1.0, rtol=1e-12)
    # h_high = 0 -> ||y_high|| / ||y_high||
    np.testing.assert_allclose(c_rows["e_high_clean"], 1.0, rtol=1e-12)
    np.testing.assert_allclose(p_rows[["e_low_clean", "e_high_clean"]], 0.0, atol=1e-12)


def test_sanity_smooth_labels_have_more_low_frequency_than_noise(rng):
    n, c = 200, 4
    x = rng.random((n, 2))
    # class = bin of x0: a smooth function of x
    smooth = np.minimum((x[:, 0] * c).astype(int), c - 1)
    noise = rng.integers(0, c, n)
    ratios = label_ratio(x, np.stack([smooth, noise]), c, [0.002, 0.01])
    assert np.all(ratios[0] > ratios[1] + 0.1)
    # the high-frequency part of the smooth target is small relative to that of random labels
    flt = fq.FrequencyFilter(x)
    k = operator_kernel(flt.d2, 0.01)
    high_frac = [np.linalg.norm(yy - k @ yy) / np.linalg.norm(yy) for yy in (np.eye(c)[smooth], np.eye(c)[noise])]
    assert high_frac[0] < 0.6 * high_frac[1]


# ----------------------------------------------------------------------------------------------------------------
# analyse_run end to end
# ----------------------------------------------------------------------------------------------------------------


def _write_run(tmp_path, rng, n_train=40, n_sub=24, n_test=18, c=3, epochs=(5, 10), shape=(3, 3, 2)):
    pixel_max = 16.0
    data_path, out_path = tmp_path / "data.h5", tmp_path / "outputs.h5"
    info = {"pixel_max": pixel_max, "c": c, "epochs": np.asarray(epochs)}
    with h5py.File(data_path, "w") as f:
        f.attrs["pixel_max"] = pixel_max
        f.attrs["num_classes"] = c
        for split, n in (("train", n_train), ("val", 6), ("test", n_test)):
            g = f.create_group(split)
            images = rng.integers(0, 17, size=(n, *shape)).astype(np.uint8)
            clean = rng.integers(0, c, n).astype(np.int64)
            noisy = clean.copy()
            if split != "test":
                flip = rng.random(n) < 0.3
                noisy[flip] = (clean[flip] + 1) % c
            g["images"], g["labels_clean"], g["labels_noisy"] = images, clean, noisy
            g["is_noisy"] = noisy != clean
            g["index"] = np.arange(n, dtype=np.int64)
            info[split] = {"images": images, "clean": clean, "noisy": noisy}
    # unsorted on purpose
    idx = rng.permutation(n_train)[:n_sub].astype(np.int64)
    e = len(epochs)
    with h5py.File(out_path, "w") as f:
        f["epochs"] = np.asarray(epochs, dtype=np.int64)
        g = f.create_group("train_subset")
        g["indices"] = idx
        g["labels_noisy"] = info["train"]["noisy"][idx]
        g["labels_clean"] = info["train"]["clean"][idx]
        g["probs"] = random_probs(rng, e, n_sub, c).astype(np.float32)
        g["logits"] = rng.normal(size=(e, n_sub, c)).astype(np.float32)
        t = f.create_group("test")
        t["indices"] = np.arange(n_test, dtype=np.int64)
        t["labels_clean"] = info["test"]["clean"]
        t["probs"] = random_probs(rng, e, n_test, c).astype(np.float32)
        t["logits"] = rng.normal(size=(e, n_test, c)).astype(np.float32)
        info["out"] = {
            "train_subset": {s: g[s][()] for s in ("probs", "logits")},
            "test": {s: t[s][()] for s in ("probs", "logits")},
        }
    info["idx"] = idx
    seal(out_path, data_path)
    return data_path, out_path, info


def seal(out_path, data_path):
    """Write the producer attributes the training step writes into outputs.h5 (run length, data and array checksums),
    for the arrays the file holds now."""
    with h5py.File(out_path, "a") as f:
        f.attrs["epochs"] = int(f["epochs"][-1])
        f.attrs["data_sha256"] = file_digest(data_path)
        f.attrs["arrays_sha256"] = arrays_digest(f[key][()] for key in outputs.OUTPUT_ARRAYS)


@pytest.mark.parametrize("scale", ["absolute", "median"])
def test_analyse_run_end_to_end(tmp_path, rng, scale):
    data_path, out_path, info = _write_run(tmp_path, rng)
    c, epochs = info["c"], info["epochs"]
    configured = [0.05, 0.4] if scale == "median" else [0.2, 1.5]
    out_csv = tmp_path / "sub" / "freq.csv"
    df = fq.analyse_run(
        data_path,
        out_path,
        out_csv,
        configured,
        delta_scale=scale,
        sources=("probs", "logits"),
    )

    assert list(df.columns) == list(fq.CSV_COLUMNS)
    n_d, n_e = len(configured), len(epochs)
    assert len(df) == 2 * 2 * n_e * n_d + (2 + 1) * n_d
    counts = df.groupby(["split", "source"]).size().to_dict()
    assert counts == {
        ("train_subset", "probs"): n_e * n_d,
        ("train_subset", "logits"): n_e * n_d,
        ("train_subset", "labels_clean"): n_d,
        ("train_subset", "labels_noisy"): n_d,
        ("test", "probs"): n_e * n_d,
        ("test", "logits"): n_e * n_d,
        ("test", "labels_clean"): n_d,
    }
    test_rows = df[df.split == "test"]
    assert test_rows[["e_low_noisy", "e_high_noisy"]].isna().all().all()
    label_rows = df[df.source.str.startswith("labels_")]
    assert label_rows["epoch"].isna().all()
    assert label_rows[["e_low_noisy", "e_high_noisy", "e_low_clean", "e_high_clean"]].isna().all().all()
    out_rows = df[~df.source.str.startswith("labels_")]
    assert set(out_rows["epoch"].astype(int)) == set(epochs.tolist())
    if scale == "absolute":
        assert df["delta_rel"].isna().all()
    else:
        assert set(df["delta_rel"]) == set(configured)

    # CSV round trip: same table, empty cells for missing values
    back = pd.read_csv(out_csv)
    assert list(back.columns) == list(fq.CSV_COLUMNS)
    assert len(back) == len(df)
    assert back.loc[back.source == "labels_clean", "epoch"].isna().all()
    np.testing.assert_allclose(back["ratio"], df["ratio"], rtol=1e-12)

    # values against the reference
    pixel_max = info["pixel_max"]
    inputs = {
        "train_subset": info["train"]["images"][info["idx"]].reshape(len(info["idx"]), -1) / pixel_max,
        "test": info["test"]["images"].reshape(len(info["test"]["images"]), -1) / pixel_max,
    }
    labels = {
        "train_subset": {
            "noisy": info["train"]["noisy"][info["idx"]],
            "clean": info["train"]["clean"][info["idx"]],
        },
        "test": {"clean": info["test"]["clean"]},
    }
    for split, x in inputs.items():
        d2 = ref_sq_dists(x)
        scale_by = ref_median_offdiag(d2) if scale == "median" else 1.0
        abs_deltas = [v * scale_by for v in configured]
        sub = df[df.split == split]
        np.testing.assert_allclose(sorted(set(sub["delta"])), sorted(abs_deltas), rtol=RTOL)
        for jd, delta in enumerate(abs_deltas):
            k = ref_kernel(d2, delta)
            rows_d = sub[np.isclose(sub["delta"], delta, rtol=1e-9)]
            for name, y in labels[split].items():
                r = rows_d[rows_d.source == f"labels_{name}"]
                assert len(r) == 1
                np.testing.assert_allclose(r["ratio"].iloc[0], ref_ratio(k, ref_one_hot(y, c)), rtol=RTOL)
                if scale == "median":
                    assert r["delta_rel"].iloc[0] == configured[jd]
            for source in ("probs", "logits"):
                for ie, epoch in enumerate(epochs):
                    r = rows_d[(rows_d.source == source) & (rows_d.epoch == epoch)]
                    assert len(r) == 1
                    h = np.asarray(info["out"][split][source][ie], dtype=np.float64)
                    np.testing.assert_allclose(r["ratio"].iloc[0], ref_ratio(k, h), rtol=RTOL)
                    for name, y in labels[split].items():
                        lo, hi = ref_errors(k, h, ref_one_hot(y, c))
                        np.testing.assert_allclose(r[f"e_low_{name}"].iloc[0], lo, rtol=RTOL)
                        np.testing.assert_allclose(r[f"e_high_{name}"].iloc[0], hi, rtol=RTOL)


def test_analyse_run_default_source_and_label_mismatch(tmp_path, rng):
    data_path, out_path, info = _write_run(tmp_path, rng, epochs=(1, 2, 3))
    df = fq.analyse_run(data_path, out_path, tmp_path / "f.csv", [0.5])
    assert set(df.source) == {"probs", "labels_clean", "labels_noisy"}
    assert len(df) == 2 * 3 * 1 + 3 * 1
    with h5py.File(out_path, "a") as f:
        y = f["train_subset/labels_noisy"][()]
        f["train_subset/labels_noisy"][...] = (y + 1) % info["c"]
    with pytest.raises(ValueError, match="disagree"):
        fq.analyse_run(data_path, out_path, tmp_path / "g.csv", [0.5])
    assert not (tmp_path / "g.csv").exists()
    with pytest.raises(ValueError):
        fq.analyse_run(data_path, out_path, tmp_path / "h.csv", [0.5], sources=("softmax",))


def test_analyse_run_on_a_test_subset(tmp_path, rng):
    """outputs.h5 written with a test subset stores /test/indices; the inputs are those rows of data.h5."""
    data_path, out_path, info = _write_run(tmp_path, rng, n_test=18, epochs=(1, 2))
    idx = np.array([1, 4, 5, 9, 11, 16], dtype=np.int64)
    c = info["c"]
    probs = random_probs(rng, 2, idx.size, c).astype(np.float32)
    with h5py.File(out_path, "a") as f:
        del f["test"]
        t = f.create_group("test")
        t["indices"] = idx
        t["labels_clean"] = info["test"]["clean"][idx]
        t["probs"] = probs
        t["logits"] = rng.normal(size=(2, idx.size, c)).astype(np.float32)
    seal(out_path, data_path)
    df = fq.analyse_run(data_path, out_path, tmp_path / "f.csv", [0.7])
    x = info["test"]["images"][idx].reshape(idx.size, -1) / info["pixel_max"]
    k = ref_kernel(ref_sq_dists(x), 0.7)
    rows = df[(df.split == "test") & (df.source == "probs")].sort_values("epoch")
    for ie in range(2):
        np.testing.assert_allclose(
            rows["ratio"].iloc[ie],
            ref_ratio(k, probs[ie].astype(np.float64)),
            rtol=RTOL,
        )
    with h5py.File(out_path, "a") as f:
        # rows no longer match the stored labels
        f["test/indices"][...] = idx[::-1]
    with pytest.raises(ValueError, match="disagree"):
        fq.analyse_run(data_path, out_path, tmp_path / "g.csv", [0.7])


# ----------------------------------------------------------------------------------------------------------------
# Checks of outputs.h5 against its producer (full cases on a real training run: tests/test_bad_inputs.py)
# ----------------------------------------------------------------------------------------------------------------


def test_frequency_step_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, selfdistill.frequency; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("c", [2, 10, 100, 1000])
def test_float32_softmax_rows_pass_the_sum_check(rng, c):
    """The tolerance admits every float32 softmax (large logits, many classes) and nothing much wider."""
    logits = (rng.normal(size=(3, 500, c)) * 30).astype(np.float32)
    z = logits - logits.max(axis=2, keepdims=True)
    probs = (np.exp(z) / np.exp(z).sum(axis=2, keepdims=True)).astype(np.float32)
    outputs.check_output_array("o.h5", "test/probs", probs, (3, 500))
    probs[1, 7] *= np.float32(1.001)
    with pytest.raises(InputFileError, match=r"o.h5: /test/probs has 1 of 1500 rows that do not sum to 1"):
        outputs.check_output_array("o.h5", "test/probs", probs, (3, 500))


def test_analyse_run_refuses_outputs_without_producer_attributes(tmp_path, rng):
    data_path, out_path, _ = _write_run(tmp_path, rng, epochs=(1, 2))
    with h5py.File(out_path, "a") as f:
        del f.attrs["arrays_sha256"]
    with pytest.raises(InputFileError, match=r"outputs.h5: has no attribute arrays_sha256.*rule train rebuilds it"):
        fq.analyse_run(data_path, out_path, tmp_path / "f.csv", [0.5])
    assert not (tmp_path / "f.csv").exists()


def test_analyse_run_verifies_both_checksums(tmp_path, rng):
    data_path, out_path, _ = _write_run(tmp_path, rng, epochs=(1, 2))
    with h5py.File(out_path, "a") as f:
        f["test/logits"][0, 0, 0] += 1
    with pytest.raises(InputFileError, match="arrays_sha256 differs"):
        fq.analyse_run(data_path, out_path, tmp_path / "f.csv", [0.5])
    seal(out_path, data_path)
    fq.analyse_run(data_path, out_path, tmp_path / "f.csv", [0.5])
    with h5py.File(data_path, "a") as f:
        f.attrs["pixel_max"] = 17.0
    with pytest.raises(InputFileError, match=r"outputs.h5: was not produced from .*data.h5 \(data_sha256 differs"):
        fq.analyse_run(data_path, out_path, tmp_path / "g.csv", [0.5])


def test_csv_columns_are_the_tables_keyed_by_split_source_and_epoch():
    assert fq.CSV_COLUMNS == ("split", "source", "epoch", *fq.TABLE_COLUMNS[1:])


def _loop_sq_dists(images: np.ndarray, pixel_max: float, mean, std) -> np.ndarray:
    """Squared distances of per-channel normalised images ((n, H, W, C) uint8), pixel by pixel, in float64."""
    n, h, w, c = images.shape
    d2 = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            total = 0.0
            for a in range(h):
                for b in range(w):
                    for ch in range(c):
                        xi = (float(images[i, a, b, ch]) / pixel_max - mean[ch]) / std[ch]
                        xj = (float(images[j, a, b, ch]) / pixel_max - mean[ch]) / std[ch]
                        total += (xi - xj) ** 2
            d2[i, j] = total
    return d2


def _set_norm(out_path, mean, std):
    with h5py.File(out_path, "a") as f:
        f.attrs["norm_mean"] = np.asarray(mean, dtype=np.float64)
        f.attrs["norm_std"] = np.asarray(std, dtype=np.float64)


def test_analyse_run_on_normalised_inputs_matches_a_float64_loop(tmp_path, rng):
    """frequency.inputs: normalised - the kernel sees (pixels / pixel_max − mean) / std per channel, with the run's
    constants from outputs.h5; checked through the median distance and the ratios at absolute deltas."""
    data_path, out_path, info = _write_run(tmp_path, rng, n_train=20, n_sub=12, n_test=10)
    # two channels in this fixture
    mean, std = [0.4914, 0.4822], [0.2023, 0.1994]
    _set_norm(out_path, mean, std)
    pixel_max = info["pixel_max"]
    images = {"train_subset": info["train"]["images"][info["idx"]], "test": info["test"]["images"]}
    d2 = {split: _loop_sq_dists(im, pixel_max, mean, std) for split, im in images.items()}
    median = fq.analyse_run(
        data_path, out_path, tmp_path / "m.csv", [1.0], delta_scale="median", sources=("logits",), inputs="normalised"
    )
    for split, d in d2.items():
        want = np.median(d[np.triu_indices(len(d), k=1)])
        np.testing.assert_allclose(median.loc[median.split == split, "delta"].unique(), [want], rtol=1e-12)
    deltas = [1.0, 10.0, 100.0]
    df = fq.analyse_run(
        data_path,
        out_path,
        tmp_path / "a.csv",
        deltas,
        delta_scale="absolute",
        sources=("logits",),
        inputs="normalised",
    )
    pixels = fq.analyse_run(data_path, out_path, tmp_path / "p.csv", deltas, sources=("logits",))
    assert not np.allclose(df["ratio"], pixels["ratio"])
    for split, d in d2.items():
        for delta in deltas:
            k = ref_kernel(d, delta)
            for ie, epoch in enumerate(info["epochs"]):
                row = df[(df.split == split) & (df.source == "logits") & (df.epoch == epoch) & (df.delta == delta)]
                h = np.asarray(info["out"][split]["logits"][ie], dtype=np.float64)
                np.testing.assert_allclose(row["ratio"].iloc[0], ref_ratio(k, h), rtol=RTOL)


def test_normalised_inputs_need_the_runs_normalisation(tmp_path, rng):
    data_path, out_path, _ = _write_run(tmp_path, rng)
    with pytest.raises(InputFileError, match="norm_mean / norm_std"):
        fq.analyse_run(data_path, out_path, tmp_path / "f.csv", [1.0], inputs="normalised")
    _set_norm(out_path, [0.5, 0.5, 0.5], [0.2, 0.2, 0.2])
    with pytest.raises(InputFileError, match="norm_mean has 3 channels"):
        fq.analyse_run(data_path, out_path, tmp_path / "f.csv", [1.0], inputs="normalised")
