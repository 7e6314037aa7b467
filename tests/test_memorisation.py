"""Tests for selfdistill.memorisation and selfdistill.memorisation_stats against slow float64 loop references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from reference_stats import loop_ranks, loop_spearman

from selfdistill import memorisation as mem
from selfdistill import memorisation_stats as ms
from selfdistill.io import InputFileError, atomic_output
from selfdistill.mode_names import REFERENCE_MODE

# ----------------------------------------------------------------------------------------------------------------
# references: plain loops in float64
# ----------------------------------------------------------------------------------------------------------------


def loop_agreement(x, y, delta):
    """a_i = sum_{j != i} K_ij [y_j = y_i] / sum_{j != i} K_ij, K_ij = exp(-|x_i - x_j|^2 / (2 delta)), by loops."""
    n = len(x)
    out = []
    for i in range(n):
        num = den = 0.0
        for j in range(n):
            if j == i:
                continue
            d2 = sum((float(a) - float(b)) ** 2 for a, b in zip(x[i], x[j], strict=True))
            k = math.exp(-d2 / (2 * delta))
            den += k
            num += k * (y[j] == y[i])
        out.append(num / den if den > 0 else math.nan)
    return np.array(out)


def loop_memorisation_epoch(pred_column, label, epochs):
    """The first stored epoch from which every later prediction equals the label, by a loop; NaN for never."""
    first = math.nan
    for k in range(len(epochs) - 1, -1, -1):
        if pred_column[k] != label:
            break
        first = epochs[k]
    return first


# ----------------------------------------------------------------------------------------------------------------
# agreement
# ----------------------------------------------------------------------------------------------------------------


def test_agreement_matches_the_loop_with_self_excluded():
    rng = np.random.default_rng(0)
    x = rng.random((25, 4))
    y = rng.integers(0, 3, 25)
    for delta in (0.05, 0.3, 5.0):
        weights, absolute = mem.neighbour_weights(x, delta)
        assert absolute == delta
        assert np.all(np.diag(weights) == 0)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)
        np.testing.assert_allclose(mem.local_agreement(weights, y), loop_agreement(x, y, delta), rtol=1e-10)


def test_agreement_with_duplicate_points():
    """A duplicate is a neighbour at distance 0: at a tiny width it takes all the weight, so the agreement is whether
    the duplicate carries the same label; the sample itself never counts."""
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [5.0, 5.0], [5.1, 5.0]])
    y = np.array([0, 1, 2, 2, 3, 4])
    weights, _ = mem.neighbour_weights(x, 1e-4)
    got = mem.local_agreement(weights, y)
    np.testing.assert_allclose(got[:4], [0.0, 0.0, 1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(got[4:], [0.0, 0.0], atol=1e-12)
    for delta in (0.2, 3.0):
        weights, _ = mem.neighbour_weights(x, delta)
        np.testing.assert_allclose(mem.local_agreement(weights, y), loop_agreement(x, y, delta), rtol=1e-10, atol=1e-15)


def test_agreement_width_relative_to_the_median_distance():
    rng = np.random.default_rng(1)
    x = rng.random((12, 3))
    y = rng.integers(0, 2, 12)
    d2 = [sum((a - b) ** 2 for a, b in zip(x[i], x[j], strict=True)) for i in range(12) for j in range(i + 1, 12)]
    weights, absolute = mem.neighbour_weights(x, 0.5, "median")
    assert absolute == pytest.approx(0.5 * float(np.median(d2)), rel=1e-12)
    np.testing.assert_allclose(mem.local_agreement(weights, y), loop_agreement(x, y, absolute), rtol=1e-10)


def test_agreement_without_neighbour_weight_is_undefined():
    x = np.array([[0.0], [1.0], [100.0]])
    weights, _ = mem.neighbour_weights(x, 1e-3)
    got = mem.local_agreement(weights, np.array([0, 0, 0]))
    assert got[0] == got[1] == 1.0 and np.isnan(got[2])


# ----------------------------------------------------------------------------------------------------------------
# memorisation epoch
# ----------------------------------------------------------------------------------------------------------------


def test_memorisation_epoch_edge_cases():
    epochs = np.array([1, 2, 5, 10])
    label = np.array([3, 3, 3, 3, 3])
    predicted = np.array(
        [
            # from the first stored epoch / forgotten then relearned / never / lost at the end / only at the end
            [3, 3, 0, 3, 0],
            [3, 0, 3, 3, 0],
            [3, 3, 0, 3, 0],
            [3, 3, 3, 0, 3],
        ]
    )
    got = mem.memorisation_epochs(predicted, label, epochs)
    np.testing.assert_array_equal(got, [1, 5, 10, np.nan, 10])
    assert np.isnan(got[3])


def test_memorisation_epoch_matches_the_loop():
    rng = np.random.default_rng(2)
    epochs = np.array([1, 2, 3, 7, 8, 20])
    labels = rng.integers(0, 3, 200)
    predicted = np.where(rng.random((6, 200)) < 0.7, labels, rng.integers(0, 3, (6, 200)))
    got = mem.memorisation_epochs(predicted, labels, epochs)
    want = [loop_memorisation_epoch(predicted[:, i], labels[i], epochs) for i in range(200)]
    np.testing.assert_array_equal(got, want)


def test_predictions_take_the_first_of_tied_classes():
    out = np.array([[[0.1, 0.5, 0.5], [0.9, 0.0, 0.1]]])
    np.testing.assert_array_equal(mem.predictions(out), [[1, 0]])


# ----------------------------------------------------------------------------------------------------------------
# rank correlation and quintiles
# ----------------------------------------------------------------------------------------------------------------


def loop_quintile(values, i):
    return math.floor(5 * (loop_ranks(values)[i] - 1) / len(values)) + 1


def test_quintiles_equal_counts_and_ties_together():
    np.testing.assert_array_equal(mem.quintiles(np.arange(10.0)[::-1]), [5, 5, 4, 4, 3, 3, 2, 2, 1, 1])
    rng = np.random.default_rng(4)
    values = np.round(rng.random(37), 1)
    got = mem.quintiles(values)
    np.testing.assert_array_equal(got, [loop_quintile(values, i) for i in range(37)])
    for v in np.unique(values):
        assert len(set(got[values == v])) == 1
    assert set(got) <= set(mem.QUINTILES)


def test_run_measures_by_hand():
    epochs = np.array([1, 2, 3])
    # ten noisy samples with agreements 0.0 … 0.9; the first six never memorised, the others from epochs 3, 3, 2, 1
    clean = np.zeros(12, dtype=np.int64)
    noisy_labels = np.array([1] * 10 + [0, 0])
    agreement = np.array([*np.arange(10) / 10, 0.5, 0.5])
    last = np.where(np.arange(12) >= 6, noisy_labels, 2)
    predicted = np.stack([last.copy(), last.copy(), last.copy()])
    predicted[0, 6:8] = 2
    predicted[1, 6:8] = 2
    predicted[0, 8] = 2
    table = mem.sample_table(agreement, noisy_labels, clean, predicted, epochs)
    assert table["noisy"].sum() == 10
    np.testing.assert_array_equal(table["quintile"].to_numpy(dtype=float)[:10], [1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
    assert table["quintile"].isna().sum() == 2
    measures = mem.run_measures(table)
    assert measures["n_noisy"] == 10 and measures["n_memorised"] == 4
    assert measures["share_memorised"] == pytest.approx(0.4)
    assert [measures[f"share_q{q}"] for q in mem.QUINTILES] == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert measures["q5_minus_q1"] == 1.0
    # never memorised ranks after the last epoch (epoch 4 here)
    epoch = [4, 4, 4, 4, 4, 4, 3, 3, 2, 1]
    assert measures["rho"] == pytest.approx(loop_spearman(agreement[:10], epoch), rel=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# the summary over seeds
# ----------------------------------------------------------------------------------------------------------------


def fake_runs(seeds=(0, 1, 2)) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        for mode, share in ((REFERENCE_MODE, 0.8), ("self_distill", 0.3)):
            rows.append(
                {
                    "dataset": "digits",
                    "noise": "pair40",
                    "seed": seed,
                    "mode": mode,
                    "delta_config": 0.05,
                    "share_memorised": share + 0.01 * seed,
                    "rho": -0.5 + 0.1 * seed if mode == REFERENCE_MODE else np.nan,
                    "q5_minus_q1": 0.2 + 0.05 * seed,
                }
            )
    return pd.DataFrame(rows)


def test_differences_use_the_t_interval_and_say_cannot_compute():
    table = ms.memorisation_differences(fake_runs())
    row = table[(table["mode"] == "self_distill") & (table["quantity"] == "share_minus_reference")].iloc[0]
    assert row["n_seeds"] == 3 and row["mean"] == pytest.approx(-0.5)
    assert row["verdict"] == "all 3 seeds differ by exactly -0.5"
    rho = table[(table["mode"] == REFERENCE_MODE) & (table["quantity"] == "rho")].iloc[0]
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert rho["mean"] == pytest.approx(-0.4)
    assert rho["ci95_low"] == pytest.approx(-0.4 - half) and rho["ci95_high"] == pytest.approx(-0.4 + half)
    assert rho["verdict"] == "difference found (lower)"
    none = table[(table["mode"] == "self_distill") & (table["quantity"] == "rho")].iloc[0]
    assert none["n_seeds"] == 0 and none["verdict"] == "no paired seeds"
    assert not ((table["mode"] == REFERENCE_MODE) & (table["quantity"] == "share_minus_reference")).any()
    one = ms.memorisation_differences(fake_runs(seeds=(0,)))
    assert set(one["verdict"]) <= {"not testable (1 seed)", "no paired seeds"}
    text = ms.memorisation_markdown(table, fake_runs())
    assert "δ = 0.05" in text and "no value; no paired seeds" in text


def test_summary_step_writes_its_tables(tmp_path):
    rng = np.random.default_rng(5)
    paths, runs = [], []
    for seed in (0, 1):
        for mode in (REFERENCE_MODE, "self_distill"):
            labels = rng.integers(0, 3, 50)
            clean = np.where(rng.random(50) < 0.4, (labels + 1) % 3, labels)
            predicted = np.where(rng.random((4, 50)) < 0.6, labels, clean)
            table = mem.sample_table(rng.random(50), labels, clean, predicted, np.array([1, 2, 3, 4]))
            table.insert(0, "row", np.arange(50))
            table["delta"], table["delta_config"] = 1.0, 0.05
            path = tmp_path / f"{seed}_{mode}.csv"
            table.to_csv(path, index=False)
            paths.append(path)
            runs.append({"dataset": "digits", "noise": "pair40", "seed": seed, "mode": mode})
    out = {name: tmp_path / "out" / f"{name}.csv" for name in ("quintiles", "runs", "summary")}
    ms.summarise_memorisation(paths, runs, out["quintiles"], out["runs"], out["summary"], tmp_path / "out" / "s.md")
    quint = pd.read_csv(out["quintiles"])
    assert len(quint) == 4 * 5 and list(quint.columns) == ["dataset", "noise", *ms.QUINTILE_COLUMNS]
    per_run = pd.read_csv(out["runs"])
    samples = pd.read_csv(paths[0])
    assert per_run.iloc[0]["share_memorised"] == pytest.approx(samples.loc[samples["noisy"], "memorised"].mean())
    assert quint.groupby(["seed", "mode"])["n"].sum().tolist() == per_run["n_noisy"].tolist()
    assert (tmp_path / "out" / "s.md").read_text().startswith("## Memorisation")


def test_the_default_width_is_the_smallest_non_degenerate_delta(tmp_path):
    rows = []
    for seed in (0, 1):
        for rel, ratio in ((0.02, 0.9995 if seed else 0.99), (0.05, 0.9), (0.2, 0.6)):
            for split in ("train_subset", "test"):
                rows.append(
                    {"seed": seed, "split": split, "source": "labels_clean", "delta": 3 * rel, "delta_rel": rel}
                )
                rows[-1]["ratio"] = ratio if split == "train_subset" else 0.5
    path = tmp_path / "frequency.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    # δ 0.02 is about the identity in one run of the setting, so it is skipped
    assert mem.agreement_delta(None, path, num_classes=10) == 0.05
    assert mem.agreement_delta(0.02, path, num_classes=10) == 0.02
    pd.DataFrame(rows).assign(ratio=0.9999).to_csv(path, index=False)
    with pytest.raises(mem.InputFileError, match="set frequency.agreement_delta"):
        mem.agreement_delta(None, path, num_classes=10)


def test_a_run_table_changed_after_its_rule_wrote_it_is_named(tmp_path):
    """The summary reads each run's memorisation.csv only as rule memorisation wrote it (its producer record)."""
    path = tmp_path / "memorisation.csv"
    with atomic_output(path, "rule memorisation") as tmp:
        pd.DataFrame({"row": [0, 1], "agreement": [0.5, 0.25]}).to_csv(tmp, index=False)
    run = {"dataset": "digits", "noise": "pair40", "seed": 0, "mode": REFERENCE_MODE}
    assert len(ms.read_samples([path], [run])) == 2
    path.write_text(path.read_text().replace("0.25", "0.75"))
    with pytest.raises(InputFileError, match="memorisation.csv"):
        ms.read_samples([path], [run])
