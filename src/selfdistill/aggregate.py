"""Collect per-run CSVs into tidy tables and summarise the study's three accuracy columns per mode.

Test accuracy is reported at (STUDY.md §5): the last epoch; the early-stopped epoch, chosen by the best
accuracy on the *noisy* validation split (the honest protocol); and the best test epoch, an oracle upper bound
that uses test labels and is always labelled as such.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

import pandas as pd

from .io import atomic_output, logged_step, setup_logging

log = logging.getLogger(__name__)

RUN_KEYS = ("dataset", "noise", "seed", "mode")


def concat_runs(paths: Sequence[str | os.PathLike], runs: Sequence[dict]) -> pd.DataFrame:
    """Read one CSV per run and prepend the run's identifying columns (dataset, noise, seed, mode)."""
    if len(paths) != len(runs):
        raise ValueError(f"got {len(paths)} files for {len(runs)} runs")
    frames = []
    for path, run in zip(paths, runs, strict=True):
        frame = pd.read_csv(path, dtype={"epoch": "Int64"})  # frequency label rows have no epoch
        for i, key in enumerate(RUN_KEYS):
            frame.insert(i, key, run[key])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def per_run_summary(histories: pd.DataFrame) -> pd.DataFrame:
    """One row per run: test accuracy at the last, early-stopped (best noisy val) and oracle (best test) epochs.

    Ties go to the earliest epoch, as a practitioner stopping at the first peak would.
    """
    rows = []
    for key, run in histories.groupby(list(RUN_KEYS), sort=True):
        run = run.sort_values("epoch").reset_index(drop=True)
        last = run.iloc[-1]
        # without a validation split (val_fraction 0) there is no early-stopping signal: report NaN
        early = run.loc[run["val_acc"].idxmax()] if run["val_acc"].notna().any() else None
        oracle = run.loc[run["test_acc"].idxmax()]
        rows.append(
            dict(
                zip(RUN_KEYS, key, strict=True),
                last_epoch=int(last["epoch"]),
                last_test_acc=float(last["test_acc"]),
                early_stop_epoch=math.nan if early is None else int(early["epoch"]),
                early_stop_test_acc=math.nan if early is None else float(early["test_acc"]),
                oracle_epoch=int(oracle["epoch"]),
                oracle_test_acc=float(oracle["test_acc"]),
            )
        )
    return pd.DataFrame(rows)


def summarise(histories: pd.DataFrame, mode_order: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean and sample sd over seeds of the three accuracy columns, one row per (dataset, noise, mode)."""
    runs = per_run_summary(histories)
    agg = runs.groupby(["dataset", "noise", "mode"], sort=False).agg(
        n_seeds=("seed", "nunique"),
        last_mean=("last_test_acc", "mean"),
        last_sd=("last_test_acc", "std"),
        early_stop_mean=("early_stop_test_acc", "mean"),
        early_stop_sd=("early_stop_test_acc", "std"),
        early_stop_epoch_mean=("early_stop_epoch", "mean"),
        oracle_mean=("oracle_test_acc", "mean"),
        oracle_sd=("oracle_test_acc", "std"),
        oracle_epoch_mean=("oracle_epoch", "mean"),
    )
    agg = agg.reset_index()
    if mode_order is not None:
        rank = {m: i for i, m in enumerate(mode_order)}
        agg = agg.sort_values("mode", key=lambda s: s.map(rank).fillna(len(rank)), kind="stable")
    return agg.reset_index(drop=True)


def _pm(mean: float, sd: float) -> str:
    """Format a fraction as 'mm.mm ± s.ss' percent; sd is blank for a single seed."""
    if math.isnan(sd):
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * sd:.2f}"


def summary_markdown(summary: pd.DataFrame) -> str:
    """Render the summary as a Markdown table plus the study's verdict, in percent."""
    lines = [
        "| dataset | noise | mode | seeds | last epoch | early-stopped (best noisy val) | oracle best test |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary.itertuples(index=False):
        lines.append(
            f"| {row.dataset} | {row.noise} | {row.mode} | {row.n_seeds} | {_pm(row.last_mean, row.last_sd)} "
            f"| {_pm(row.early_stop_mean, row.early_stop_sd)} (epoch ≈ {row.early_stop_epoch_mean:.0f}) "
            f"| {_pm(row.oracle_mean, row.oracle_sd)} (epoch ≈ {row.oracle_epoch_mean:.0f}) |"
        )
    lines += [
        "",
        "Test accuracy in percent, mean ± sd over seeds. The oracle column picks the epoch by *test*",
    ]
    lines += ["accuracy and is an upper bound only, never a result."]
    lines += [""] + verdicts(summary)
    return "\n".join(lines) + "\n"


def verdicts(summary: pd.DataFrame) -> list[str]:
    """One sentence per non-ce mode: does its last epoch match early-stopped ce (STUDY.md §5)?

    The comparison is on the means over seeds; a gap smaller than the larger of the two sds is flagged as not
    distinguishable with these seeds, so a lucky draw is not read as a result.
    """
    out = []
    for (dataset, noise), group in summary.groupby(["dataset", "noise"], sort=False):
        ce = group[group["mode"] == "ce"]
        if ce.empty:
            continue
        ce_early, ce_sd = (
            float(ce["early_stop_mean"].iloc[0]),
            float(ce["early_stop_sd"].iloc[0]),
        )
        if math.isnan(ce_early):
            out.append(f"- {dataset}/{noise}: no validation split, so no early-stopped ce to compare with.")
            continue
        for row in group[group["mode"] != "ce"].itertuples(index=False):
            holds = row.last_mean >= ce_early
            gap = 100 * (row.last_mean - ce_early)
            spread = 100 * max((v for v in (row.last_sd, ce_sd) if not math.isnan(v)), default=math.nan)
            caveat = f" (gap {gap:+.2f} points is within one sd, {spread:.2f})" if abs(gap) < spread else ""
            out.append(
                f"- {dataset}/{noise}: last-epoch {row.mode} {100 * row.last_mean:.2f}% "
                f"{'≥' if holds else '<'} early-stopped ce {100 * ce_early:.2f}% — "
                f"{'matches or beats early stopping' if holds else 'early stopping wins'}{caveat}."
            )
    return out


@logged_step
def aggregate_histories(
    history_paths: Sequence[str | os.PathLike],
    runs: Sequence[dict],
    out_histories: str | os.PathLike,
    out_summary_csv: str | os.PathLike,
    out_summary_md: str | os.PathLike,
    mode_order: Sequence[str] | None = None,
    log_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Pipeline step: tidy all runs' histories and write the per-mode summary as CSV and Markdown."""
    if log_path is not None:
        setup_logging(log_path)
    histories = concat_runs(history_paths, runs)
    summary = summarise(histories, mode_order)
    with atomic_output(out_histories) as tmp:
        histories.to_csv(tmp, index=False)
    with atomic_output(out_summary_csv) as tmp:
        summary.to_csv(tmp, index=False)
    with atomic_output(out_summary_md) as tmp:
        tmp.write_text(summary_markdown(summary))
    log.info("aggregated %d runs into %s", len(runs), out_histories)
    return summary


@logged_step
def aggregate_frequency(
    frequency_paths: Sequence[str | os.PathLike],
    runs: Sequence[dict],
    out_csv: str | os.PathLike,
    log_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Pipeline step: tidy all runs' frequency tables into one CSV for the frequency figures."""
    if log_path is not None:
        setup_logging(log_path)
    table = concat_runs(frequency_paths, runs)
    with atomic_output(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    log.info("aggregated %d frequency tables into %s", len(runs), out_csv)
    return table
