"""Tests of selfdistill.noise (docs/science.md, "Noise models") against independent, explicit-loop references written here.

Counts are checked against round(r·n) computed in the test, per-class allocations against the largest-remainder
rule (checked as a property, plus one exact-arithmetic reference), targets against the documented rule for each
noise type, and the transition matrix against a counting loop.
"""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

from selfdistill import noise as nz

# ----------------------------------------------------------------------------------------------------------------
# Helpers and slow references
# ----------------------------------------------------------------------------------------------------------------


def make_labels(counts, seed=123):
    """Labels with exactly ``counts[c]`` samples of class c, in a shuffled order."""
    labels = []
    for c, k in enumerate(counts):
        labels += [c] * k
    rng = np.random.default_rng(seed)
    return np.asarray(labels, dtype=np.int64)[rng.permutation(len(labels))]


def per_class_flips(clean, is_noisy, num_classes):
    out = [0] * num_classes
    for y, flipped in zip(clean.tolist(), is_noisy.tolist()):
        if flipped:
            out[y] += 1
    return out


def per_class_counts(clean, num_classes):
    out = [0] * num_classes
    for y in clean.tolist():
        out[y] += 1
    return out


def ref_transition_matrix(clean, noisy, num_classes):
    counts = [[0] * num_classes for _ in range(num_classes)]
    for a, b in zip(list(clean), list(noisy)):
        counts[int(a)][int(b)] += 1
    out = np.zeros((num_classes, num_classes))
    for i in range(num_classes):
        total = sum(counts[i])
        for j in range(num_classes):
            out[i, j] = counts[i][j] / total if total else 0.0
    return out


def ref_quotas_exact(counts, rate):
    """Largest-remainder allocation in exact rational arithmetic, ties to the lowest class index."""
    r = Fraction(str(rate))
    exact = [r * c for c in counts]
    quotas = [math.floor(e) for e in exact]
    left = round(sum(exact)) - sum(quotas)
    order = sorted(range(len(counts)), key=lambda i: (-(exact[i] - quotas[i]), i))
    for i in order[:left]:
        quotas[i] += 1
    return quotas


def check_largest_remainder(counts, flips, rate):
    """Each class gets floor(r·n_c) or one more; the extra flips go to the largest fractional parts."""
    total_expected = round(rate * sum(counts))
    assert sum(flips) == total_expected
    fracs = []
    for n_c, k in zip(counts, flips):
        exact = rate * n_c
        # floor(r·n_c), robust to r·n_c landing just below an integer
        low = math.floor(exact + 1e-9)
        assert abs(k - exact) < 1.0 + 1e-9, (n_c, k, exact)
        assert k in (low, low + 1), (n_c, k, exact)
        fracs.append((exact - low, k == low + 1))
    bumped = [f for f, up in fracs if up]
    kept = [f for f, up in fracs if not up]
    if bumped and kept:
        assert min(bumped) >= max(kept) - 1e-9


BALANCED = [50, 50, 50, 50, 50]
UNBALANCED = [3, 17, 40, 9, 61, 1, 0, 29]
RATES = [0.0, 0.1, 0.25, 0.3, 0.4, 0.45, 0.5, 0.9]


# ----------------------------------------------------------------------------------------------------------------
# Exact counts and per-class allocation
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise_type", ["pair", "symmetric"])
@pytest.mark.parametrize("counts", [BALANCED, UNBALANCED], ids=["balanced", "unbalanced"])
@pytest.mark.parametrize("rate", RATES)
def test_exact_flip_count_and_per_class_allocation(noise_type, counts, rate):
    C = len(counts)
    clean = make_labels(counts)
    _noisy, is_noisy = nz.corrupt_labels(clean, noise_type, rate, C, np.random.default_rng(7))
    n_flip = sum(bool(v) for v in is_noisy.tolist())
    assert n_flip == round(rate * len(clean))
    flips = per_class_flips(clean, is_noisy, C)
    check_largest_remainder(counts, flips, rate)


@pytest.mark.parametrize(
    "counts,rate",
    [
        # 2.5 in total, 1.25 per class
        ([5, 5], 0.25),
        # 1.5 in total, 0.5 per class: a three-way tie
        ([4, 4, 4], 0.125),
        # 2.5
        ([10], 0.25),
        # 1.5
        ([2, 2], 0.375),
        # 2.5, five-way tie
        ([1, 1, 1, 1, 1], 0.5),
    ],
)
@pytest.mark.parametrize("noise_type", ["pair", "symmetric"])
def test_half_fraction_totals(counts, rate, noise_type):
    """r·n exactly on .5 (representable in binary): the count is round(r·n), i.e. floor or ceil of it."""
    C = max(len(counts), 2)
    clean = make_labels(counts)
    exact = rate * len(clean)
    assert exact - math.floor(exact) == 0.5
    _, is_noisy = nz.corrupt_labels(clean, noise_type, rate, C, np.random.default_rng(0))
    n_flip = int(is_noisy.sum())
    assert n_flip == round(exact)
    assert n_flip in (math.floor(exact), math.ceil(exact))
    check_largest_remainder(counts + [0] * (C - len(counts)), per_class_flips(clean, is_noisy, C), rate)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.35])
def test_asymmetric_exact_count_within_eligible(rate):
    counts = [13, 30, 21, 44, 7, 38, 25, 19, 11, 52]
    cmap = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
    clean = make_labels(counts)
    _noisy, is_noisy = nz.corrupt_labels(clean, "asymmetric", rate, 10, np.random.default_rng(3), cmap)
    n_eligible = sum(counts[c] for c in cmap)
    assert int(is_noisy.sum()) == round(rate * n_eligible)
    flips = per_class_flips(clean, is_noisy, 10)
    eligible_counts = [counts[c] if c in cmap else 0 for c in range(10)]
    check_largest_remainder(eligible_counts, flips, rate)
    # rate measured within the eligible classes, not over the whole set
    if rate > 0:
        assert abs(int(is_noisy.sum()) / n_eligible - rate) <= 1 / n_eligible
        assert abs(int(is_noisy.sum()) / len(clean) - rate) > 0.05


def test_class_quotas_direct():
    counts = [3, 17, 40, 9, 61, 1, 0, 29]
    labels = make_labels(counts)
    for rate in RATES:
        q = nz.class_quotas(labels, rate, len(counts))
        assert q.shape == (len(counts),)
        check_largest_remainder(counts, [int(v) for v in q], rate)
        assert all(0 <= int(k) <= n for k, n in zip(q, counts))


def test_class_quotas_hand_values():
    # 0.4 * [3, 3, 4] = [1.2, 1.2, 1.6]; total 4; floors [1, 1, 1]; one extra to class 2 (fraction .6).
    assert nz.class_quotas(make_labels([3, 3, 4]), 0.4, 3).tolist() == [1, 1, 2]
    # 0.5 * [3, 3, 3] = 1.5 each; total round(4.5) = 4 (Python's round: half to even); floors 3; one extra, tie → lowest index.
    assert nz.class_quotas(make_labels([3, 3, 3]), 0.5, 3).tolist() == [2, 1, 1]
    # 0.3 * [10, 0, 5] = [3, 0, 1.5]; total round(4.5) = 4 (half to even); floors [3, 0, 1] already 4.
    assert nz.class_quotas(make_labels([10, 0, 5]), 0.3, 3).tolist() == [3, 0, 1]


def test_class_quotas_ties_go_to_lowest_index_exactly():
    # 0.1·n = 0.4, 1.4: equal remainders, total round(1.8) = 2
    counts = [4, 14]
    got = nz.class_quotas(make_labels(counts), 0.1, 2).tolist()
    assert got == ref_quotas_exact(counts, 0.1) == [1, 1]


# ----------------------------------------------------------------------------------------------------------------
# Targets of each noise type
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("counts", [BALANCED, UNBALANCED], ids=["balanced", "unbalanced"])
def test_pair_targets(counts):
    C = len(counts)
    clean = make_labels(counts)
    before = clean.copy()
    noisy, is_noisy = nz.corrupt_labels(clean, "pair", 0.4, C, np.random.default_rng(1))
    assert np.array_equal(clean, before), "input labels must not be modified"
    assert noisy.dtype == np.int64 and is_noisy.dtype == np.bool_
    assert noisy.shape == clean.shape == is_noisy.shape
    for y, z, f in zip(clean.tolist(), noisy.tolist(), is_noisy.tolist()):
        assert f == (z != y)
        if f:
            assert z == (y + 1) % C
        else:
            assert z == y
    assert is_noisy.sum() > 0


def test_symmetric_never_true_class_and_uniform_over_others():
    C = 5
    counts = [4000] * C
    clean = make_labels(counts, seed=5)
    noisy, is_noisy = nz.corrupt_labels(clean, "symmetric", 0.5, C, np.random.default_rng(11))
    cells = Counter()
    per_src = [0] * C
    for y, z, f in zip(clean.tolist(), noisy.tolist(), is_noisy.tolist()):
        assert f == (z != y)
        if f:
            assert 0 <= z < C and z != y
            cells[(y, z)] += 1
            per_src[y] += 1
    assert sum(per_src) == 10000
    # Pearson chi-square of the (source, target) table against uniform over the C−1 other classes.
    # df = C·(C−2) = 15; the 1e-6 tail is about 47. "Always y+1" would give ~ 3·10^4.
    chi2 = 0.0
    for y in range(C):
        expected = per_src[y] / (C - 1)
        for z in range(C):
            if z == y:
                continue
            chi2 += (cells[(y, z)] - expected) ** 2 / expected
    assert chi2 < 60.0, chi2
    # and every other class is actually reached from every source
    assert all(cells[(y, z)] > 0 for y in range(C) for z in range(C) if z != y)


@pytest.mark.parametrize(
    "cmap",
    [
        # CIFAR-10 convention
        {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
        # digits
        {1: 7, 7: 1, 3: 8, 5: 6, 9: 4},
        {0: 2},
    ],
)
def test_asymmetric_targets(cmap):
    counts = [20, 25, 30, 35, 40, 45, 50, 55, 60, 65]
    clean = make_labels(counts)
    noisy, is_noisy = nz.corrupt_labels(clean, "asymmetric", 0.4, 10, np.random.default_rng(2), cmap)
    for y, z, f in zip(clean.tolist(), noisy.tolist(), is_noisy.tolist()):
        assert f == (z != y)
        if y not in cmap:
            assert not f and z == y
        elif f:
            assert z == cmap[y]
    # every mapped class actually has some flips at 40%
    flips = per_class_flips(clean, is_noisy, 10)
    assert all(flips[c] > 0 for c in cmap)


def test_asymmetric_swap_pair_both_directions():
    """cat↔dog: both 3→5 and 5→3 are flips and both are marked noisy."""
    clean = make_labels([0, 0, 0, 50, 0, 50, 0, 0, 0, 0])
    noisy, is_noisy = nz.corrupt_labels(clean, "asymmetric", 0.2, 10, np.random.default_rng(0), {3: 5, 5: 3})
    pairs = Counter((y, z) for y, z, f in zip(clean.tolist(), noisy.tolist(), is_noisy.tolist()) if f)
    assert pairs == {(3, 5): 10, (5, 3): 10}


def test_default_class_maps():
    assert nz.class_map_for("cifar10", None) == {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
    assert nz.class_map_for("digits", None) == {1: 7, 7: 1, 3: 8, 5: 6, 9: 4}
    given = {0: 1}
    out = nz.class_map_for("cifar10", given)
    assert out == {0: 1}
    out[2] = 3
    assert given == {0: 1}, "the configured map must be copied, not aliased"
    # a returned default may be mutated without changing the module's default
    d = nz.class_map_for("digits", None)
    d[0] = 1
    assert nz.class_map_for("digits", None) == {1: 7, 7: 1, 3: 8, 5: 6, 9: 4}
    with pytest.raises(ValueError, match="svhn"):
        nz.class_map_for("svhn", None)


@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_none_leaves_labels_unchanged(rate):
    clean = make_labels(UNBALANCED)
    noisy, is_noisy = nz.corrupt_labels(clean, "none", rate, len(UNBALANCED), np.random.default_rng(0))
    assert noisy.tobytes() == clean.tobytes()
    assert not is_noisy.any() and is_noisy.shape == clean.shape
    assert noisy is not clean


@pytest.mark.parametrize("noise_type", ["pair", "symmetric", "asymmetric"])
def test_rate_zero_flips_nothing(noise_type):
    clean = make_labels(BALANCED)
    cmap = {0: 1} if noise_type == "asymmetric" else None
    noisy, is_noisy = nz.corrupt_labels(clean, noise_type, 0.0, 5, np.random.default_rng(0), cmap)
    assert np.array_equal(noisy, clean) and not is_noisy.any()


# ----------------------------------------------------------------------------------------------------------------
# Determinism
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise_type", ["pair", "symmetric", "asymmetric"])
def test_same_seed_identical_different_seed_different(noise_type):
    clean = make_labels([60, 70, 80, 90, 100, 110, 120, 130, 140, 150])
    cmap = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3} if noise_type == "asymmetric" else None

    def run(seed):
        return nz.corrupt_labels(clean, noise_type, 0.4, 10, np.random.default_rng(seed), cmap)

    a_noisy, a_flag = run(42)
    b_noisy, b_flag = run(42)
    c_noisy, c_flag = run(43)
    assert a_noisy.tobytes() == b_noisy.tobytes()
    assert a_flag.tobytes() == b_flag.tobytes()
    assert a_noisy.tobytes() != c_noisy.tobytes()
    assert a_flag.tobytes() != c_flag.tobytes()


# ----------------------------------------------------------------------------------------------------------------
# Transition matrix
# ----------------------------------------------------------------------------------------------------------------


def test_transition_matrix_against_loop():
    rng = np.random.default_rng(9)
    C = 6
    # class C−1 absent from the clean labels
    clean = rng.integers(0, C - 1, size=300)
    noisy = rng.integers(0, C, size=300)
    got = nz.transition_matrix(clean, noisy, C)
    ref = ref_transition_matrix(clean, noisy, C)
    assert got.shape == (C, C)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-15)
    for i in range(C - 1):
        assert math.isclose(float(got[i].sum()), 1.0, rel_tol=1e-12)
    assert np.all(got[C - 1] == 0.0)


def test_transition_matrix_of_pair_noise():
    counts = [40, 55, 60, 45]
    clean = make_labels(counts)
    noisy, _ = nz.corrupt_labels(clean, "pair", 0.4, 4, np.random.default_rng(0))
    got = nz.transition_matrix(clean, noisy, 4)
    np.testing.assert_allclose(got, ref_transition_matrix(clean, noisy, 4), atol=1e-15)
    for i, n_c in enumerate(counts):
        assert abs(got[i, (i + 1) % 4] - 0.4) <= 1 / n_c
        assert abs(got[i, i] - 0.6) <= 1 / n_c
        assert math.isclose(got[i, i] + got[i, (i + 1) % 4], 1.0)


# ----------------------------------------------------------------------------------------------------------------
# Invalid inputs
# ----------------------------------------------------------------------------------------------------------------


def _call(**kw):
    args = {
        "labels": np.array([0, 1, 2, 3]),
        "noise_type": "pair",
        "rate": 0.4,
        "num_classes": 4,
        "rng": np.random.default_rng(0),
        "class_map": None,
    }
    args.update(kw)
    return nz.corrupt_labels(**args)


@pytest.mark.parametrize(
    "kw,pattern",
    [
        ({"rate": 1.0}, r"rate.*1\.0"),
        ({"rate": -0.1}, r"rate.*-0\.1"),
        ({"rate": float("nan")}, r"rate.*nan"),
        ({"noise_type": "gauss"}, r"'gauss'"),
        ({"noise_type": "asymmetric", "class_map": {1: 1}}, r"1→1"),
        ({"noise_type": "asymmetric", "class_map": {1: 4}}, r"1→4"),
        ({"noise_type": "asymmetric", "class_map": {-1: 2}}, r"-1→2"),
        ({"noise_type": "asymmetric", "class_map": {}}, r"class_map"),
        ({"noise_type": "asymmetric", "class_map": None}, r"class_map"),
        ({"labels": np.array([0, 1, 4])}, r"labels.*4"),
        ({"labels": np.array([-1, 1, 2])}, r"labels.*-1"),
    ],
)
def test_invalid_inputs_raise(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        _call(**kw)


# ----------------------------------------------------------------------------------------------------------------
# NoiseSpec
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "type_,rate,name",
    [
        ("pair", 0.4, "pair40"),
        ("symmetric", 0.2, "sym20"),
        ("asymmetric", 0.4, "asym40"),
        ("none", 0.0, "none"),
        ("pair", 0.125, "pair12.5"),
        # 100·0.3 = 30.000000000000004 in float
        ("symmetric", 0.3, "sym30"),
        # 7.000000000000001
        ("pair", 0.07, "pair7"),
        # 28.999999999999996
        ("pair", 0.29, "pair29"),
    ],
)
def test_noise_spec_name(type_, rate, name):
    assert nz.NoiseSpec(type_, rate).name == name


def test_bernoulli_noise_has_its_own_name():
    assert nz.NoiseSpec.from_config({"type": "pair", "rate": 0.4, "count": "bernoulli"}).name == "pair40b"
    assert nz.NoiseSpec.from_config({"type": "pair", "rate": 0.4, "count": "exact"}).name == "pair40"
    assert nz.NoiseSpec.from_config({"type": "symmetric", "rate": 0.2, "count": "bernoulli"}).name == "sym20b"


def test_noise_spec_from_config():
    spec = nz.NoiseSpec.from_config({"type": "asymmetric", "rate": 0.4, "class_map": {"3": 5, "5": "3"}})
    assert spec.type == "asymmetric" and spec.rate == 0.4
    assert dict(spec.class_map) == {3: 5, 5: 3}
    assert all(type(k) is int and type(v) is int for k, v in spec.class_map.items())
    plain = nz.NoiseSpec.from_config({"type": "none"})
    assert plain.rate == 0.0 and plain.class_map is None and plain.name == "none"
    assert type(nz.NoiseSpec.from_config({"type": "pair", "rate": 1}).rate) is float


# ----------------------------------------------------------------------------------------------------------------
# Label files that are not what they claim (more cases: tests/test_bad_inputs.py)
# ----------------------------------------------------------------------------------------------------------------


def test_label_file_formats_that_load(tmp_path):
    import torch

    labels = {"clean_label": np.arange(6) % 3, "worse_label": (np.arange(6) + 1) % 3}
    torch.save({k: torch.from_numpy(v) for k, v in labels.items()}, tmp_path / "zip.pt")
    torch.save(
        {k: torch.from_numpy(v) for k, v in labels.items()},
        tmp_path / "legacy.pt",
        _use_new_zipfile_serialization=False,
    )
    torch.save(labels, tmp_path / "numpy.pt")
    np.savez(tmp_path / "labels.npz", **labels)
    for name in ("zip.pt", "legacy.pt", "numpy.pt", "labels.npz"):
        got = nz.load_label_file(tmp_path / name)
        assert sorted(got) == sorted(labels), name
        np.testing.assert_array_equal(got["worse_label"], labels["worse_label"])


def _saved(save, *args, **kwargs) -> bytes:
    """The bytes that ``save`` (np.save, np.savez) writes, whatever the file name would be."""
    import io

    buf = io.BytesIO()
    save(buf, *args, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        ("rand.pt", lambda p: p.write_bytes(bytes(range(256)) * 4), "is not a PyTorch file"),
        ("empty.pt", lambda p: p.write_bytes(b""), "is not a PyTorch file"),
        (
            "plain.pt",
            lambda p: p.write_bytes(__import__("pickle").dumps({"clean_label": [1, 2]})),
            "is not a PyTorch file",
        ),
        ("npz.pt", lambda p: p.write_bytes(_saved(np.savez, clean_label=np.arange(3))), "is not a PyTorch file"),
        ("rand.npz", lambda p: p.write_bytes(bytes(range(256)) * 4), "is not an .npz of integer arrays"),
        ("npy.npz", lambda p: p.write_bytes(_saved(np.save, np.arange(3))), "is not an .npz of integer arrays"),
        ("empty.npz", lambda p: np.savez(p), "is not an .npz of integer arrays (it holds no arrays)"),
    ],
)
def test_label_file_that_is_not_one(tmp_path, name, write, message):
    path = tmp_path / name
    write(path)
    with pytest.raises(ValueError) as err:
        nz.load_label_file(path)
    text = str(err.value)
    assert f"label file {path} {message}" in text and "\n" not in text
    assert "allow_pickle" not in text and "weights_only" not in text and "safe_globals" not in text
    assert type(err.value).__name__ == "InputFileError"


# ----------------------------------------------------------------------------------------------------------------
# count: bernoulli (the original repository's per-sample coin, seeded here)
# ----------------------------------------------------------------------------------------------------------------


def _bernoulli_reference(labels, rate, num_classes, seed, class_map=None):
    """One float64 coin per eligible sample, in index order, drawn one at a time; pair (no map) or map targets."""
    rng = np.random.default_rng(seed)
    noisy = [int(y) for y in labels]
    for i, y in enumerate(labels):
        if class_map is not None and int(y) not in class_map:
            continue
        # a Python float: one float64 uniform
        coin = rng.random()
        if coin < rate:
            noisy[i] = class_map[int(y)] if class_map is not None else (int(y) + 1) % num_classes
    return np.asarray(noisy, dtype=np.int64)


@pytest.mark.parametrize("cmap", [None, {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}])
def test_bernoulli_matches_an_explicit_loop(cmap):
    clean = make_labels([30, 50, 10, 40, 20, 25, 35, 15, 45, 5])
    kind = "pair" if cmap is None else "asymmetric"
    for seed in (0, 1, 2):
        noisy, is_noisy = nz.corrupt_labels(clean, kind, 0.4, 10, np.random.default_rng(seed), cmap, count="bernoulli")
        expected = _bernoulli_reference(clean, 0.4, 10, seed, cmap)
        np.testing.assert_array_equal(noisy, expected)
        np.testing.assert_array_equal(is_noisy, expected != clean)


@pytest.mark.parametrize("noise_type", ["pair", "symmetric", "asymmetric"])
def test_bernoulli_is_byte_identical_for_a_seed(noise_type):
    clean = make_labels([200] * 10)
    cmap = {9: 1, 2: 0} if noise_type == "asymmetric" else None

    def draw(seed):
        return nz.corrupt_labels(clean, noise_type, 0.4, 10, np.random.default_rng(seed), cmap, count="bernoulli")

    a, b, c = draw(5), draw(5), draw(6)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert a[0].tobytes() != c[0].tobytes()
    if noise_type == "symmetric":
        # never the true class
        assert not (a[0][a[1]] == clean[a[1]]).any()


def test_bernoulli_count_is_binomial():
    n, rate = 50_000, 0.4
    clean = make_labels([n // 10] * 10)
    # 109.5
    sd = math.sqrt(n * rate * (1 - rate))
    counts = []
    for seed in range(20):
        _, is_noisy = nz.corrupt_labels(clean, "pair", rate, 10, np.random.default_rng(seed), count="bernoulli")
        counts.append(int(is_noisy.sum()))
        assert abs(counts[-1] - n * rate) < 5 * sd
    # not an exact count
    assert len(set(counts)) > 10
    # the mean of 20 binomial draws lies within 4 standard errors of n·r, their sd within a factor 2 of the binomial's
    assert abs(np.mean(counts) - n * rate) < 4 * sd / math.sqrt(20)
    assert sd / 2 < np.std(counts, ddof=1) < 2 * sd


def test_unknown_count_is_refused():
    with pytest.raises(ValueError, match="unknown noise count 'coin'"):
        nz.corrupt_labels(np.zeros(4, dtype=np.int64), "pair", 0.4, 2, np.random.default_rng(0), count="coin")
