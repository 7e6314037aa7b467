"""Tests of selfdistill.frequency_stats on a hand-built tidy frequency table, against explicit loops
(tests/reference_stats.py) and, for the kernel self-weight, against the kernel written out with the math module."""

from __future__ import annotations

import logging
import math
import statistics

import numpy as np
import pandas as pd
import pytest
from reference_stats import paired_interval, t_quantile_by_integration

from selfdistill import frequency_stats as fs
from selfdistill.frequency import FrequencyFilter

SEEDS = (0, 1, 2)
# (mode, seed) -> last-epoch ratio at delta_rel 0.2 on train_subset/probs; epoch 1 holds other numbers that must not
# be used
LAST_RATIO = {("ce", 0): 0.50, ("ce", 1): 0.52, ("ce", 2): 0.49, ("sd", 0): 0.58, ("sd", 1): 0.57, ("sd", 2): 0.60}
LAST_E_HIGH_CLEAN = {("ce", 0): 1.0, ("ce", 1): 1.1, ("ce", 2): 0.9, ("sd", 0): 1.05, ("sd", 1): 1.0, ("sd", 2): 0.95}


def row(seed, mode, split, source, epoch, delta_rel, ratio, e_noisy=0.7, e_clean=0.9):
    """One tidy row; the absolute delta differs by seed, as with delta_scale median."""
    has_noisy = split == "train_subset" and not source.startswith("labels_")
    return {
        "dataset": "digits", "noise": "pair40", "seed": seed, "mode": mode, "split": split, "source": source,
        "epoch": epoch, "delta": delta_rel * (9 + seed), "delta_rel": delta_rel, "ratio": ratio,
        "e_low_noisy": 0.5, "e_high_noisy": e_noisy if has_noisy else math.nan, "e_low_clean": 0.5,
        "e_high_clean": math.nan if source.startswith("labels_") else e_clean,
    }  # fmt: skip


def table():
    rows = []
    for (mode, seed), ratio in LAST_RATIO.items():
        for split in ("train_subset", "test"):
            for delta_rel, label_ratio in ((0.02, 0.9999), (0.2, 0.3)):
                rows.append(row(seed, mode, split, "labels_clean", pd.NA, delta_rel, label_ratio))
                # not the last epoch
                rows.append(row(seed, mode, split, "probs", 1, delta_rel, 0.1, 5.0, 5.0))
                last = ratio if delta_rel == 0.2 else 0.99
                rows.append(row(seed, mode, split, "probs", 2, delta_rel, last, 0.7, LAST_E_HIGH_CLEAN[(mode, seed)]))
    frame = pd.DataFrame(rows)
    frame["epoch"] = frame["epoch"].astype("Int64")
    return frame


def test_degenerate_deltas_flags_the_identity_kernel():
    bad = fs.degenerate_deltas(table())
    assert sorted(zip(bad["split"], bad["delta_config"], strict=True)) == [("test", 0.02), ("train_subset", 0.02)]
    assert all("identity" in reason for reason in bad["reason"])


def test_degenerate_deltas_flags_a_vanishing_low_pass_part():
    frame = table()
    frame.loc[(frame["source"] == "labels_clean") & (frame["delta_rel"] == 0.2), "ratio"] = 0.0005
    bad = fs.degenerate_deltas(frame)
    assert set(bad["delta_config"]) == {0.02, 0.2} and any(
        "low-pass part of the labels vanishes" in r for r in bad["reason"]
    )


def test_drop_degenerate_logs_the_reason(caplog):
    with caplog.at_level(logging.WARNING, logger="selfdistill"):
        kept = fs.drop_degenerate(table())
    assert set(kept["delta_config"]) == {0.2}
    assert "train_subset delta 0.02" in caplog.text and "identity" in caplog.text


def test_differences_against_explicit_loops():
    got = fs.frequency_differences(table(), reference="ce")
    t975 = t_quantile_by_integration(0.975, len(SEEDS) - 1)
    for quantity, values in (("ratio", LAST_RATIO), ("e_high_clean", LAST_E_HIGH_CLEAN)):
        sd = [values[("sd", s)] for s in SEEDS]
        ce = [values[("ce", s)] for s in SEEDS]
        mean, low, high = paired_interval(sd, ce, t975)
        cell = got[(got["split"] == "train_subset") & (got["quantity"] == quantity)]
        assert len(cell) == 1
        assert cell["mean"].iloc[0] == pytest.approx(mean, abs=1e-12)
        assert cell["ci95_low"].iloc[0] == pytest.approx(low, abs=1e-9)
        assert cell["ci95_high"].iloc[0] == pytest.approx(high, abs=1e-9)
        assert cell["n_pairs"].iloc[0] == 3
        found = low > 0 or high < 0
        assert cell["verdict_uncorrected"].iloc[0].startswith("difference found" if found else "no difference detected")
    # ratio found uncorrected, e_high_clean not (by construction)
    train = got[got["split"] == "train_subset"].set_index("quantity")
    assert train.loc["ratio", "verdict_uncorrected"].startswith("difference found")
    assert train.loc["e_high_clean", "verdict_uncorrected"] == "no difference detected (95% interval includes 0)"


def test_holm_correction_over_every_cell_of_a_mode():
    got = fs.frequency_differences(table(), reference="ce")
    # the family: all testable cells of (digits/pair40, sd); e_high vs noisy labels is equal in every seed (no test)
    constant = got["p_value"].isna()
    assert constant.sum() == 1 and got.loc[constant, "verdict"].iloc[0] == "all 3 seeds differ by exactly +0"
    got = got[~constant].reset_index(drop=True)
    m = len(got)
    assert (got["holm_tests"] == m).all() and m == 4
    p = got["p_value"].tolist()
    order = sorted(range(m), key=lambda i: p[i])
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        assert got["p_holm"].iloc[i] == pytest.approx(running, rel=1e-12)
        want = "difference found" if running <= 0.05 else "no difference detected"
        assert got["verdict"].iloc[i].startswith(want)
    # the correction can only remove findings, never add them
    assert not (
        got["verdict"].str.startswith("difference found")
        & ~got["verdict_uncorrected"].str.startswith("difference found")
    ).any()


def test_differences_leave_out_degenerate_widths_label_rows_and_absent_quantities():
    got = fs.frequency_differences(table())
    assert set(got["delta_config"]) == {0.2} and set(got["source"]) == {"probs"} and set(got["mode"]) == {"sd"}
    assert "e_high_noisy" not in set(got.loc[got["split"] == "test", "quantity"])
    assert set(got.loc[got["split"] == "train_subset", "quantity"]) == set(fs.QUANTITIES)


def test_one_seed_is_not_testable_never_none_found(tmp_path):
    one = table().query("seed == 0")
    got = fs.frequency_differences(one)
    assert (got["n_pairs"] == 1).all() and got["ci95_low"].isna().all() and got["p_value"].isna().all()
    assert (got["verdict"] == "not testable (1 seed)").all()
    assert (got["verdict_uncorrected"] == "not testable (1 seed)").all()
    one.to_csv(tmp_path / "frequency.csv", index=False)
    fs.summarise_frequency(tmp_path / "frequency.csv", tmp_path / "fs.csv", tmp_path / "fs.md")
    md = (tmp_path / "fs.md").read_text()
    assert "none testable (not testable (1 seed))" in md
    assert "none found" not in md and "no difference detected" not in md.split("\n", 4)[-1].split("Widths")[0]


def test_markdown_says_per_setting_whether_a_difference_is_found(tmp_path):
    frame = table()
    frame.to_csv(tmp_path / "frequency.csv", index=False)
    out = fs.summarise_frequency(
        tmp_path / "frequency.csv", tmp_path / "fs.csv", tmp_path / "fs.md", out_html=tmp_path / "fs.html"
    )
    md = (tmp_path / "fs.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("- digits/pair40, sd − ce, low-frequency ratio:"))
    assert "2 of 2 cells tested (Holm over the mode's 4 tests)" in line and "uncorrected" in line
    assert "95% t-interval over seeds" in md and "Widths left out as degenerate" in md
    assert pd.read_csv(tmp_path / "fs.csv").shape == out.shape
    page = (tmp_path / "fs.html").read_text()
    assert page.isascii() and page.count("<tr>") == 1 + 3 and "found (Holm)" in page


def kernel_self_weight(x: np.ndarray, deltas, scale: str = "median") -> np.ndarray:
    """Mean diagonal weight ``mean_i K_ii`` of the analysis' low-pass kernel for each width: near 1 the kernel is about
    the identity (a diagnostic for choosing a width grid; the degeneracy rule reads the label ratios instead)."""
    flt = FrequencyFilter(x)
    return np.array([1.0 - float(np.mean(flt.highpass_operator(d)[1])) for d in flt.resolve(deltas, scale)])


def test_kernel_self_weight_against_the_written_out_kernel():
    x = np.array([[0.0, 0.1], [0.2, 0.0], [0.9, 0.8], [0.4, 0.4], [1.0, 0.0]])
    pts = x.tolist()
    d2 = [[sum((a - b) ** 2 for a, b in zip(p, q, strict=True)) for q in pts] for p in pts]
    median = statistics.median(d2[i][j] for i in range(5) for j in range(i + 1, 5))
    for rel, got in zip((0.05, 1.0), kernel_self_weight(x, [0.05, 1.0]), strict=True):
        delta = rel * median
        diag = [1.0 / sum(math.exp(-d / (2 * delta)) for d in d2[i]) for i in range(5)]
        assert got == pytest.approx(sum(diag) / 5, rel=1e-12)


def test_degenerate_deltas_flags_a_global_average_kernel_given_the_classes():
    frame = table()
    frame.loc[(frame["source"] == "labels_clean") & (frame["delta_rel"] == 0.2), "ratio"] = 0.105
    # without C: only the identity side
    assert set(fs.degenerate_deltas(frame)["delta_config"]) == {0.02}
    bad = fs.degenerate_deltas(frame, num_classes=10)
    # (0.105 - 0.1) / 0.9 = 0.0056 < 0.01
    assert set(bad["delta_config"]) == {0.02, 0.2} and any("global average" in r for r in bad["reason"])
    # 0.3 is well inside
    assert set(fs.degenerate_deltas(table(), num_classes=10)["delta_config"]) == {0.02}
