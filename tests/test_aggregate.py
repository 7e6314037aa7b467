"""Tests of selfdistill.aggregate (docs/science.md, "Evaluation protocol") on a hand-built history table with hand-computed answers.

Two seeds × two modes × five epochs. The values are chosen so that the early-stopped epoch (best noisy val) has a
tie that must go to the earlier epoch, the oracle epoch (best test) has a tie too, and the rows are shuffled so
that the module must sort by epoch itself.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from reference_stats import paired_interval, t_quantile_by_integration

from selfdistill import aggregate as ag
from selfdistill import overview as ov
from selfdistill.io import InputFileError, atomic_output, check_producer, producer_record
from selfdistill.planning import summary_pointer

DATASET, NOISE = "digits", "pair40"

# (mode, seed): (val_acc per epoch 1..5, test_acc per epoch 1..5)
RUNS = {
    ("ce", 0): ([0.50, 0.70, 0.70, 0.60, 0.55], [0.60, 0.80, 0.85, 0.75, 0.65]),
    ("ce", 1): ([0.40, 0.60, 0.65, 0.65, 0.50], [0.50, 0.78, 0.82, 0.90, 0.70]),
    ("self_distill", 0): (
        [0.45, 0.60, 0.66, 0.67, 0.68],
        [0.55, 0.70, 0.86, 0.84, 0.86],
    ),
    ("self_distill", 1): (
        [0.50, 0.62, 0.64, 0.66, 0.63],
        [0.58, 0.74, 0.79, 0.83, 0.84],
    ),
}
# Per run, by hand: (last test, early epoch, early test, oracle epoch, oracle test)
EXPECTED_RUNS = {
    # val tie epochs 2 and 3 → 2
    ("ce", 0): (0.65, 2, 0.80, 3, 0.85),
    # val tie epochs 3 and 4 → 3
    ("ce", 1): (0.70, 3, 0.82, 4, 0.90),
    # test tie epochs 3 and 5 → 3
    ("self_distill", 0): (0.86, 5, 0.86, 3, 0.86),
    ("self_distill", 1): (0.84, 4, 0.83, 5, 0.84),
}


def make_history(mode, seed, val, test):
    """A history with every column the training step writes (ag.HISTORY_COLUMNS); the ones the summary does not read
    hold plausible numbers, distill_weight is empty for ce as in a real run."""
    epochs = list(range(1, len(val) + 1))
    frame = pd.DataFrame({"epoch": epochs})
    for col in ag.HISTORY_COLUMNS[1:]:
        frame[col] = [0.5 + 0.01 * e for e in epochs]
    frame["train_loss"] = [1.0 / e for e in epochs]
    frame["val_acc"], frame["test_acc"] = val, test
    frame["distill_weight"] = math.nan if mode == "ce" else 0.5
    return frame


def histories_frame(runs=RUNS, shuffle=True):
    frames = []
    for (mode, seed), (val, test) in runs.items():
        h = make_history(mode, seed, val, test)
        h.insert(0, "dataset", DATASET)
        h.insert(1, "noise", NOISE)
        h.insert(2, "seed", seed)
        h.insert(3, "mode", mode)
        frames.append(h)
    out = pd.concat(frames, ignore_index=True)
    if shuffle:
        out = out.iloc[np.random.default_rng(0).permutation(len(out))].reset_index(drop=True)
    return out


def mean(xs):
    return sum(xs) / len(xs)


def sample_sd(xs):
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


# ----------------------------------------------------------------------------------------------------------------
# per_run_summary and summarise
# ----------------------------------------------------------------------------------------------------------------


def test_per_run_summary():
    runs = ag.per_run_summary(histories_frame())
    assert len(runs) == 4
    for row in runs.itertuples(index=False):
        assert (row.dataset, row.noise) == (DATASET, NOISE)
        last, e_ep, e_acc, o_ep, o_acc = EXPECTED_RUNS[(row.mode, row.seed)]
        assert row.last_epoch == 5
        assert math.isclose(row.last_test_acc, last)
        assert row.early_stop_epoch == e_ep, (row.mode, row.seed)
        assert math.isclose(row.early_stop_test_acc, e_acc)
        assert row.oracle_epoch == o_ep, (row.mode, row.seed)
        assert math.isclose(row.oracle_test_acc, o_acc)


def test_per_run_summary_does_not_depend_on_row_order():
    a = ag.per_run_summary(histories_frame(shuffle=False))
    b = ag.per_run_summary(histories_frame(shuffle=True))
    pd.testing.assert_frame_equal(a, b)


def test_summarise_means_and_sample_sd():
    summary = ag.summarise(histories_frame())
    assert len(summary) == 2
    for mode in ("ce", "self_distill"):
        row = summary[summary["mode"] == mode].iloc[0]
        exp = [EXPECTED_RUNS[(mode, s)] for s in (0, 1)]
        assert row["n_seeds"] == 2
        for col, i in [("last", 0), ("early_stop", 2), ("oracle", 4)]:
            xs = [e[i] for e in exp]
            assert math.isclose(row[f"{col}_mean"], mean(xs), rel_tol=1e-12), col
            assert math.isclose(row[f"{col}_sd"], sample_sd(xs), rel_tol=1e-9), col
        assert math.isclose(row["early_stop_epoch_mean"], mean([e[1] for e in exp]))
        assert math.isclose(row["oracle_epoch_mean"], mean([e[3] for e in exp]))
    # hand values
    ce = summary[summary["mode"] == "ce"].iloc[0]
    assert math.isclose(ce["last_mean"], 0.675)
    # sample sd, not population (0.025)
    assert math.isclose(ce["last_sd"], 0.05 / math.sqrt(2))
    assert math.isclose(ce["early_stop_mean"], 0.81)
    assert math.isclose(ce["early_stop_epoch_mean"], 2.5)


def test_summarise_mode_order():
    summary = ag.summarise(histories_frame(), mode_order=["self_distill", "ce"])
    assert summary["mode"].tolist() == ["self_distill", "ce"]
    summary = ag.summarise(histories_frame(), mode_order=["ce", "self_distill"])
    assert summary["mode"].tolist() == ["ce", "self_distill"]
    # modes missing from mode_order go last
    summary = ag.summarise(histories_frame(), mode_order=["self_distill"])
    assert summary["mode"].tolist() == ["self_distill", "ce"]


def test_single_seed_sd_is_nan_and_markdown_has_no_pm():
    runs = {k: v for k, v in RUNS.items() if k[1] == 0}
    summary = ag.summarise(histories_frame(runs))
    assert summary["n_seeds"].tolist() == [1, 1]
    assert summary["last_sd"].isna().all()
    md = ag.summary_markdown(summary)
    table_rows = [line for line in md.splitlines() if line.startswith("| digits |")]
    assert len(table_rows) == 2
    assert all("±" not in line for line in table_rows)
    # ce seed 0, last epoch
    assert "| 65.00 |" in md


def test_per_run_summary_without_validation_split():
    h = histories_frame()
    h["val_acc"] = float("nan")
    runs = ag.per_run_summary(h)
    assert runs["early_stop_test_acc"].isna().all()
    assert runs["last_test_acc"].notna().all() and runs["oracle_test_acc"].notna().all()


def test_summary_markdown_without_validation_split_says_so_in_the_early_stopped_column():
    h = histories_frame()
    h["val_acc"] = float("nan")
    md = ag.summary_markdown(ag.summarise(h, mode_order=["ce", "self_distill"]))
    rows = [line.split(" | ") for line in md.splitlines() if line.startswith("| digits |")]
    assert rows and all(cells[5] == "n/a (no validation split)" for cells in rows)
    assert "nan" not in md
    # last epoch, oracle: numbers
    assert all(cells[4][0].isdigit() and cells[6][0].isdigit() for cells in rows)


# ----------------------------------------------------------------------------------------------------------------
# Markdown and verdicts
# ----------------------------------------------------------------------------------------------------------------


def test_summary_markdown_contents():
    summary = ag.summarise(histories_frame(), mode_order=["ce", "self_distill"])
    md = ag.summary_markdown(summary)
    header = md.splitlines()[0]
    assert "last epoch" in header and "early-stopped" in header and "oracle" in header
    assert "oracle" in md.lower()
    assert "upper bound" in md
    # ce row: last 67.50 ± 3.54, early-stopped 81.00 ± 1.41, oracle 87.50 ± 3.54
    ce_line = next(line for line in md.splitlines() if "| ce |" in line)
    assert "67.50 ± 3.54" in ce_line
    assert "81.00 ± 1.41" in ce_line
    assert "87.50 ± 3.54" in ce_line
    sd_line = next(line for line in md.splitlines() if "| self_distill |" in line)
    # last: (0.86 + 0.84) / 2
    assert "85.00 ± 1.41" in sd_line
    # early: (0.86 + 0.83) / 2
    assert "84.50 ± 2.12" in sd_line
    assert md.endswith("\n")


def test_verdict_distillation_not_detected_with_two_seeds():
    summary = ag.summarise(histories_frame())
    lines = ag.verdicts(summary)
    # self_distill last − ce early per seed: 0.86 − 0.80, 0.84 − 0.82: mean +4.00 points, wide interval (dof 1)
    (line,) = [x for x in lines if "self_distill − early-stopped ce" in x]
    assert "+4.00 points" in line and "95% t-interval over seeds" in line
    assert "2 paired seeds" in line and line.endswith("no difference detected (95% interval includes 0).")
    assert line in ag.summary_markdown(summary)
    assert "within one sd" not in ag.summary_markdown(summary)


def test_equal_differences_give_no_verdict():
    runs = dict(RUNS)
    # self_distill drops at the last epoch: last − ce early = 0.70 − 0.80 and 0.72 − 0.82, both −10 points
    for seed, last in [(0, 0.70), (1, 0.72)]:
        val, test = runs[("self_distill", seed)]
        runs[("self_distill", seed)] = (val, [*test[:4], last])
    summary = ag.summarise(histories_frame(runs))
    row = summary.set_index("mode").loc["self_distill"]
    assert row["last_minus_ce_early_verdict"] == "all 2 seeds differ by exactly -10.00"
    assert row["last_minus_ce_early_mean"] == pytest.approx(-0.10)
    (line,) = [x for x in ag.verdicts(summary) if "− early-stopped ce" in x]
    assert "-10.00 points (2 paired seeds, zero-width interval): all 2 seeds differ by exactly -10.00" in line
    assert "difference found" not in line


def test_verdict_early_stopping_wins():
    runs = dict(RUNS)
    # self_distill ends low: last − ce early = 0.70 − 0.80 and 0.71 − 0.82: −10 and −11 points
    for seed, last in [(0, 0.70), (1, 0.71)]:
        val, test = runs[("self_distill", seed)]
        runs[("self_distill", seed)] = (val, [*test[:4], last])
    summary = ag.summarise(histories_frame(runs))
    row = summary.set_index("mode").loc["self_distill"]
    assert row["last_minus_ce_early_verdict"] == "difference found (lower)"
    (line,) = [x for x in ag.verdicts(summary) if "− early-stopped ce" in x]
    assert "-10.50 points" in line and line.endswith(": difference found (lower).")


def test_verdict_single_seed_is_not_testable_and_draws_no_interval():
    runs = {
        # early stop epoch 2: 0.75
        ("ce", 0): ([0.1, 0.9, 0.2], [0.5, 0.75, 0.6]),
        # last 0.95
        ("self_distill", 0): ([0.1, 0.2, 0.3], [0.5, 0.6, 0.95]),
    }
    summary = ag.summarise(histories_frame(runs))
    row = summary.set_index("mode").loc["self_distill"]
    assert row["last_minus_ce_early_n_pairs"] == 1 and row["last_minus_ce_early_mean"] == pytest.approx(0.20)
    assert math.isnan(row["last_minus_ce_early_ci95_low"]) and math.isnan(row["last_minus_ce_early_ci95_high"])
    assert row["last_minus_ce_early_verdict"] == "not testable (1 seed)"
    (line,) = [x for x in ag.verdicts(summary) if "− early-stopped ce" in x]
    assert "no interval" in line and line.endswith("not testable (1 seed).")
    assert ag.difference_text(row_tuple(summary, "self_distill"), "last_minus_ce_early") == "+20.00 (1 seed)"
    md = ag.summary_markdown(summary)
    assert "none found" not in md and "inconclusive" not in md


def test_verdicts_without_ce_compare_each_mode_only_with_itself():
    runs = {k: v for k, v in RUNS.items() if k[0] != "ce"}
    summary = ag.summarise(histories_frame(runs))
    assert summary["last_minus_ce_early_verdict"].tolist() == ["no ce runs"]
    assert all("its own early-stopped epoch" in line for line in ag.verdicts(summary) if "no ce runs" not in line)


# ----------------------------------------------------------------------------------------------------------------
# End to end on CSV files
# ----------------------------------------------------------------------------------------------------------------


def test_aggregate_histories_end_to_end(tmp_path):
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    paths, runs = [], []
    for (mode, seed), (val, test) in RUNS.items():
        p = in_dir / f"{mode}_{seed}.csv"
        make_history(mode, seed, val, test).to_csv(p, index=False)
        paths.append(p)
        runs.append({"dataset": DATASET, "noise": NOISE, "seed": seed, "mode": mode})
    out = tmp_path / "out"
    summary = ag.aggregate_histories(
        paths,
        runs,
        out / "histories.csv",
        out / "summary.csv",
        out / "summary.md",
        mode_order=["ce", "self_distill"],
        epochs=5,
        val_fraction=0.1,
    )
    # the two tables with their producer records (hidden), and the Markdown
    assert sorted(os.listdir(out)) == [
        ".histories.csv.sha256",
        ".summary.csv.sha256",
        "histories.csv",
        "summary.csv",
        "summary.md",
    ]

    hist = pd.read_csv(out / "histories.csv")
    assert hist.columns.tolist()[:4] == ["dataset", "noise", "seed", "mode"]
    assert hist.columns.tolist()[4:] == list(ag.HISTORY_COLUMNS)
    assert len(hist) == 20
    for (mode, seed), (val, test) in RUNS.items():
        sub = hist[(hist["mode"] == mode) & (hist["seed"] == seed)].sort_values("epoch")
        assert sub["val_acc"].tolist() == val and sub["test_acc"].tolist() == test

    on_disk = pd.read_csv(out / "summary.csv")
    assert on_disk["mode"].tolist() == ["ce", "self_distill"]
    assert math.isclose(on_disk.loc[0, "early_stop_mean"], 0.81)
    assert math.isclose(on_disk.loc[1, "last_mean"], 0.85)
    assert summary["mode"].tolist() == ["ce", "self_distill"]
    assert (out / "summary.md").read_text() == ag.summary_markdown(summary)


def test_concat_runs_length_mismatch(tmp_path):
    p = tmp_path / "a.csv"
    make_history("ce", 0, *RUNS[("ce", 0)]).to_csv(p, index=False)
    with pytest.raises(ValueError, match="1 files for 2 runs"):
        ag.concat_runs([p], [{"dataset": "d", "noise": "n", "seed": 0, "mode": "ce"}] * 2)


def test_paired_differences_against_explicit_loops():
    """Every (mode, comparison) of the hand-built runs against reference_stats' loops and integrated t quantile."""
    t975 = t_quantile_by_integration(0.975, 1)
    summary = ag.summarise(histories_frame()).set_index("mode")
    for mode in ("ce", "self_distill"):
        last = [EXPECTED_RUNS[(mode, s)][0] for s in (0, 1)]
        ce_early = [EXPECTED_RUNS[("ce", s)][2] for s in (0, 1)]
        own_early = [EXPECTED_RUNS[(mode, s)][2] for s in (0, 1)]
        for name, ref in (("last_minus_ce_early", ce_early), ("last_minus_early", own_early)):
            mean, low, high = paired_interval(last, ref, t975)
            row = summary.loc[mode]
            assert row[f"{name}_n_pairs"] == 2
            assert row[f"{name}_mean"] == pytest.approx(mean, abs=1e-12)
            assert row[f"{name}_ci95_low"] == pytest.approx(low, abs=1e-9)
            assert row[f"{name}_ci95_high"] == pytest.approx(high, abs=1e-9)


def test_pairs_are_by_seed_and_unpaired_seeds_are_left_out():
    runs = dict(RUNS)
    # no ce run with seed 7
    runs[("self_distill", 7)] = RUNS[("self_distill", 0)]
    row = ag.summarise(histories_frame(runs)).set_index("mode").loc["self_distill"]
    assert row["last_minus_ce_early_n_pairs"] == 2 and row["last_minus_early_n_pairs"] == 3
    assert row["last_minus_ce_early_mean"] == pytest.approx(0.04)


def test_new_columns_are_appended_after_the_existing_ones():
    summary = ag.summarise(histories_frame())
    legacy = ["dataset", "noise", "mode", "n_seeds", "last_mean", "last_sd", "early_stop_mean", "early_stop_sd",
              "early_stop_epoch_mean", "oracle_mean", "oracle_sd", "oracle_epoch_mean"]  # fmt: skip
    parts = ("n_pairs", "mean", "ci95_low", "ci95_high", "verdict")
    new = [f"{name}_{part}" for name in ag.COMPARISONS for part in parts]
    collapse = ["n_collapsed_last", "n_collapsed_early_stop", "collapsed"]
    assert summary.columns.tolist() == legacy + new + collapse


def test_comparisons_are_per_variant():
    runs = ag.per_run_summary(histories_frame())
    tagged = pd.concat([runs.assign(variant="a"), runs.assign(variant="b")], ignore_index=True)
    table = ag.comparison_columns(tagged)
    assert len(table) == 4 and set(table["variant"]) == {"a", "b"}
    assert (table["last_minus_ce_early_n_pairs"] == 2).all()


def test_verdict_without_validation_split_says_so():
    summary = ag.summarise(histories_frame().assign(val_acc=math.nan, val_loss=math.nan))
    assert (summary["last_minus_ce_early_verdict"] == "no validation split").all()
    assert (summary["last_minus_early_verdict"] == "no validation split").all()
    assert summary["last_minus_ce_early_mean"].isna().all() and (summary["last_minus_early_n_pairs"] == 0).all()
    lines = ag.verdicts(summary)
    early = [line for line in lines if "early-stopped" in line]
    assert early and all("no numbers: no validation split" in line for line in early)
    assert "no validation split" in ag.summary_markdown(summary)


def test_without_a_validation_split_the_oracle_comparison_is_the_headline():
    summary = ag.summarise(histories_frame().assign(val_acc=math.nan, val_loss=math.nan))
    row = summary.set_index("mode").loc["self_distill"]
    # self_distill last − ce oracle per seed: 0.86 − 0.85, 0.84 − 0.90
    assert row["last_minus_ce_oracle_n_pairs"] == 2
    assert row["last_minus_ce_oracle_mean"] == pytest.approx((0.01 - 0.06) / 2)
    lines = [x for x in ag.verdicts(summary) if "self_distill" in x]
    assert "oracle epoch" in lines[0] and "conservative" in lines[0]
    assert "no difference detected" in lines[0]


# ----------------------------------------------------------------------------------------------------------------
# Checked reading of the per-run tables
# ----------------------------------------------------------------------------------------------------------------


def test_history_columns_restate_the_training_steps():
    """aggregate restates training.HISTORY_COLUMNS (it must not import torch); the two lists must not drift."""
    from selfdistill.training import HISTORY_COLUMNS

    assert ag.HISTORY_COLUMNS == tuple(HISTORY_COLUMNS)
    assert set(ag.FINITE_COLUMNS) | set(ag.VALIDATION_COLUMNS) <= set(ag.HISTORY_COLUMNS)


def test_frequency_columns_restate_the_frequency_steps():
    from selfdistill.frequency import CSV_COLUMNS

    assert ag.FREQUENCY_COLUMNS == tuple(CSV_COLUMNS)


def test_aggregate_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, selfdistill.aggregate; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_read_history_without_configured_epochs_needs_epochs_from_one(tmp_path):
    path = tmp_path / "history.csv"
    make_history("ce", 0, *RUNS[("ce", 0)]).iloc[1:].to_csv(path, index=False)
    with pytest.raises(ag.InputFileError, match=r"history.csv: has 4 of the 5 epochs .*\(epoch 1 is missing"):
        ag.read_history(path)
    make_history("ce", 0, *RUNS[("ce", 0)]).to_csv(path, index=False)
    frame = ag.read_history(path)
    assert frame["epoch"].tolist() == [1, 2, 3, 4, 5] and str(frame["epoch"].dtype) == "Int64"


def test_read_history_empty_columns_where_a_run_leaves_them_empty(tmp_path):
    """memorized / corrected (no noisy label) and distill_weight (plain ce) may be empty; the others may not."""
    path = tmp_path / "history.csv"
    h = make_history("ce", 0, *RUNS[("ce", 0)])
    h[["memorized", "corrected", "distill_weight"]] = math.nan
    h.to_csv(path, index=False)
    assert len(ag.read_history(path, epochs=5, val_fraction=0.1)) == 5
    h["epoch_seconds"] = math.nan
    h.to_csv(path, index=False)
    with pytest.raises(ag.InputFileError, match="column epoch_seconds is empty or not finite in 5 of 5 rows"):
        ag.read_history(path, epochs=5, val_fraction=0.1)


def test_read_history_validation_columns_all_or_none_without_config(tmp_path):
    path = tmp_path / "history.csv"
    h = make_history("ce", 0, *RUNS[("ce", 0)])
    h.assign(val_acc=math.nan, val_loss=math.nan).to_csv(path, index=False)
    assert ag.read_history(path)["val_acc"].isna().all()
    h.assign(val_loss=[math.nan, 1, 1, 1, 1]).to_csv(path, index=False)
    with pytest.raises(
        ag.InputFileError, match=r"column val_loss is empty or not finite in 1 of 5 rows \(first at epoch 1"
    ):
        ag.read_history(path)


def test_a_table_with_a_run_key_column_is_refused(tmp_path):
    path = tmp_path / "history.csv"
    make_history("ce", 0, *RUNS[("ce", 0)]).assign(seed=3).to_csv(path, index=False)
    with pytest.raises(ag.InputFileError, match="has a column seed, which is the run's key"):
        ag.concat_runs([path], [{"dataset": "d", "noise": "n", "seed": 0, "mode": "ce"}], ag.read_history)


# ----------------------------------------------------------------------------------------------------------------
# What a person sees: the report's rounded table and the console's pointer to the summaries
# ----------------------------------------------------------------------------------------------------------------


def test_summary_html_rounds_like_the_markdown_and_is_ascii():
    summary = ag.summarise(histories_frame(), mode_order=["ce", "self_distill"])
    page = ag.summary_html(summary)
    # ± and ≥ as character references, whatever encoding a viewer assumes
    page.encode("ascii")
    assert page.count("<table") == 1 and f"{DATASET} / {NOISE}" in page
    rows = [line for line in page.splitlines() if line.startswith("<tr><td>")]
    assert [row.split("</td>")[0] for row in rows] == ["<tr><td>ce", "<tr><td>self_distill"]
    # ce: last 67.50 ± 3.54, early-stopped 81.00 ± 1.41 at epoch 2.5 → "2", oracle 87.50 ± 3.54
    for text in ("67.50 &#177; 3.54", "81.00 &#177; 1.41", "87.50 &#177; 3.54"):
        assert text in rows[0]
    # the paired difference with early-stopped ce, and the verdict sentences under the table
    assert "upper bound" in page and "95% t-interval over seeds" in page and "<li>" in page
    # no unrounded fractions
    assert "0.675" not in page


def test_aggregate_histories_writes_the_html_table_only_when_asked(tmp_path):
    paths, runs = [], []
    for (mode, seed), (val, test) in RUNS.items():
        p = tmp_path / f"{mode}_{seed}.csv"
        make_history(mode, seed, val, test).to_csv(p, index=False)
        paths.append(p)
        runs.append({"dataset": DATASET, "noise": NOISE, "seed": seed, "mode": mode})
    out = tmp_path / "out"
    files = [out / name for name in ("histories.csv", "summary.csv", "summary.md")]
    summary = ag.aggregate_histories(paths, runs, *files, out_summary_html=out / "summary.html")
    assert (out / "summary.html").read_text() == ag.summary_html(summary)
    plain = tmp_path / "plain"
    ag.aggregate_histories(paths, runs, *(plain / f.name for f in files))
    assert not (plain / "summary.html").exists()
    assert (plain / "summary.csv").read_bytes() == (out / "summary.csv").read_bytes()


def test_summary_pointer_names_each_summary_with_its_table(tmp_path):
    summary = ag.summarise(histories_frame(), mode_order=["ce", "self_distill"])
    md = tmp_path / "pair40" / "summary.md"
    md.parent.mkdir()
    md.write_text(ag.summary_markdown(summary))
    lines = summary_pointer([md, tmp_path / "not_built" / "summary.md"])
    assert lines[0] == f"summary: {md} (test accuracy %, mean ± sd over seeds)"
    # header, rule, one row per mode
    assert lines[1:5] == ag.summary_markdown(summary).splitlines()[:4]
    assert lines[5:] == ["figures and summaries in one page: snakemake --report report.html"]
    assert summary_pointer([tmp_path / "none.md"]) == []


def row_tuple(summary, mode):
    """The summary row of ``mode`` as the named tuple the text helpers read."""
    return next(r for r in summary.itertuples(index=False) if r.mode == mode)


def test_last_minus_ce_oracle_against_explicit_loops():
    summary = ag.summarise(histories_frame())
    for mode in ("ce", "self_distill"):
        row = summary.set_index("mode").loc[mode]
        last = [EXPECTED_RUNS[(mode, s)][0] for s in (0, 1)]
        oracle = [EXPECTED_RUNS[("ce", s)][4] for s in (0, 1)]
        mean, low, high = paired_interval(last, oracle, t_quantile_by_integration(0.975, 1))
        assert row["last_minus_ce_oracle_mean"] == pytest.approx(mean, abs=1e-12)
        assert row["last_minus_ce_oracle_ci95_low"] == pytest.approx(low, rel=1e-6)
        assert row["last_minus_ce_oracle_ci95_high"] == pytest.approx(high, rel=1e-6)


def collapsed_history(mode, seed, val, test, top_share):
    frame = make_history(mode, seed, val, test)
    frame["test_pred_top_class"] = 3
    frame["test_pred_top_share"] = top_share
    return frame


def test_a_collapsed_run_is_flagged_at_the_last_and_the_early_stopped_epoch(tmp_path):
    paths, runs = [], []
    for (mode, seed), (val, test) in RUNS.items():
        # self_distill seed 1 predicts class 3 for 97% of the test images from epoch 4 on (its early stop is epoch 4)
        share = [0.2, 0.2, 0.2, 0.97, 0.97] if (mode, seed) == ("self_distill", 1) else [0.2] * 5
        path = tmp_path / f"{mode}_{seed}.csv"
        collapsed_history(mode, seed, val, test, share).to_csv(path, index=False)
        paths.append(path)
        runs.append({"dataset": DATASET, "noise": NOISE, "seed": seed, "mode": mode})
    out = tmp_path / "out"
    summary = ag.aggregate_histories(
        paths, runs, out / "h.csv", out / "s.csv", out / "s.md", log_path=out / "a.log", out_summary_html=out / "s.html"
    )
    row = summary.set_index("mode").loc["self_distill"]
    assert row["n_collapsed_last"] == 1 and row["n_collapsed_early_stop"] == 1
    assert "seed 1 at the last epoch: collapsed: predicts class 3 for 97% of test images" in row["collapsed"]
    assert summary.set_index("mode").loc["ce", "n_collapsed_last"] == 0
    md = (out / "s.md").read_text()
    assert "self_distill (1 of 2 seeds collapsed at the last epoch; 1 of 2 seeds collapsed at the early-stopped" in md
    assert "collapsed: predicts class 3 for 97% of test images" in md
    assert "collapsed: predicts class 3 for 97% of test images" in (out / "a.log").read_text()
    assert "collapsed" in (out / "s.html").read_text()


def test_the_collapse_threshold_is_inclusive():
    from selfdistill.collapse import COLLAPSE_SHARE, is_collapsed

    assert is_collapsed(COLLAPSE_SHARE) and not is_collapsed(COLLAPSE_SHARE - 1e-9) and COLLAPSE_SHARE == 0.95


def test_the_precision_of_each_run_reaches_the_summary(tmp_path):
    paths, infos, runs = [], [], []
    for (mode, seed), (val, test) in RUNS.items():
        path, info = tmp_path / f"{mode}_{seed}.csv", tmp_path / f"{mode}_{seed}.json"
        make_history(mode, seed, val, test).to_csv(path, index=False)
        info.write_text('{"precision": "float32", "device": "cpu"}')
        paths.append(path)
        infos.append(info)
        runs.append({"dataset": DATASET, "noise": NOISE, "seed": seed, "mode": mode})
    out = tmp_path / "out"
    summary = ag.aggregate_histories(paths, runs, out / "h.csv", out / "s.csv", out / "s.md", run_info_paths=infos)
    assert (summary["precision"] == "float32").all()
    assert "Precision: float32 (every run" in (out / "s.md").read_text()
    infos[0].write_text("{}")
    with pytest.raises(ag.InputFileError, match=str(infos[0])):
        ag.aggregate_histories(paths, runs, out / "h.csv", out / "s.csv", out / "s.md", run_info_paths=infos)


@pytest.mark.parametrize(
    ("column", "value", "what"),
    [
        ("test_acc", 1.5, "outside [0, 1] (an accuracy)"),
        ("val_acc", -0.1, "outside [0, 1] (an accuracy)"),
        ("val_loss", -0.2, "outside >= 0 (a loss)"),
        ("test_pred_top_share", 1.01, "outside [0, 1] (a share of the test images)"),
        ("distill_weight", 2.0, "outside [0, 1] (a share of the target)"),
    ],
)
def test_an_out_of_range_history_value_stops_the_aggregation_naming_the_file(tmp_path, column, value, what):
    frame = make_history("self_distill", 0, *RUNS[("self_distill", 0)])
    frame.loc[2, column] = value
    path = tmp_path / "history.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ag.InputFileError) as err:
        ag.read_history(path, epochs=5, val_fraction=0.1)
    message = str(err.value)
    assert message.startswith(f"{path}: column {column} has {value:g} at epoch 3, {what}")
    assert "\n" not in message and "rule train" in message


# ----------------------------------------------------------------------------------------------------------------
# Producer records: a table changed after the rule that wrote it is noticed by the step that reads it
# ----------------------------------------------------------------------------------------------------------------


def write_history(path, mode, seed, producer="rule train"):
    with atomic_output(path, producer) as tmp:
        make_history(mode, seed, *RUNS[(mode, seed)]).to_csv(tmp, index=False)


def test_a_record_names_the_producer_and_the_bytes(tmp_path):
    path = tmp_path / "history.csv"
    write_history(path, "ce", 0)
    assert producer_record(path).name == ".history.csv.sha256"
    check_producer(path)
    path.write_text(path.read_text() + "\n")
    with pytest.raises(InputFileError, match=r"history\.csv: changed after rule train wrote it"):
        check_producer(path)


def test_a_rewrite_without_a_producer_drops_the_old_record(tmp_path):
    path = tmp_path / "table.csv"
    write_history(path, "ce", 0)
    with atomic_output(path) as tmp:
        tmp.write_text("x\n1\n")
    assert not producer_record(path).exists()
    check_producer(path)


def test_a_hand_edited_history_within_range_stops_the_aggregation(tmp_path):
    """The edit of the issue: a test accuracy changed from 0.644 to 0.944, a value a run could have written."""
    paths, runs = [], []
    for mode, seed in RUNS:
        path = tmp_path / f"{mode}{seed}" / "history.csv"
        write_history(path, mode, seed)
        paths.append(path)
        runs.append({"dataset": DATASET, "noise": NOISE, "seed": seed, "mode": mode})
    out = tmp_path / "out"
    ag.aggregate_histories(paths, runs, out / "h.csv", out / "s.csv", out / "s.md")
    edited = paths[1]
    text = edited.read_text()
    assert "0.65" in text
    edited.write_text(text.replace("0.65", "0.95", 1))
    with pytest.raises(InputFileError) as err:
        ag.aggregate_histories(paths, runs, out / "h.csv", out / "s.csv", out / "s.md")
    message = str(err.value)
    assert message.startswith(f"{edited}: changed after rule train wrote it") and "\n" not in message


def test_a_hand_edited_setting_summary_stops_the_study_summary(tmp_path):
    paths, runs = [], []
    for mode, seed in RUNS:
        path = tmp_path / f"{mode}{seed}.csv"
        write_history(path, mode, seed)
        paths.append(path)
        runs.append({"dataset": DATASET, "noise": NOISE, "seed": seed, "mode": mode})
    summary = tmp_path / "summary.csv"
    ag.aggregate_histories(paths, runs, tmp_path / "h.csv", summary, tmp_path / "s.md")
    assert producer_record(summary).is_file()
    summary.write_text(summary.read_text().replace("ce", "cf", 1))
    with pytest.raises(InputFileError, match="changed after rule aggregate wrote it"):
        ov.write_study_summary([summary], [{"variant": "", "noise": NOISE}], tmp_path / "o.csv", tmp_path / "o.md")
