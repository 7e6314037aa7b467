"""Collect per-run CSVs into tidy tables and summarise the study's three accuracy columns per mode.

Test accuracy is reported at (docs/science.md, "Evaluation protocol"): the last epoch; the early-stopped epoch,
chosen by the best accuracy on the *noisy* validation split (the honest protocol); and the best test epoch, an oracle
upper bound that uses test labels and is always labelled as such. Paired comparisons over seeds carry the verdicts
of :mod:`selfdistill.stats`; a run whose test predictions collapse onto one class is flagged
(:mod:`selfdistill.collapse`); the precision each run trained in comes from its ``run.json``.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .collapse import COLLAPSE_SHARE, collapse_text
from .io import (
    FREQUENCY_CSV_COLUMNS,
    HISTORY_COLUMNS,
    TIMING_COLUMNS,
    InputFileError,
    atomic_output,
    check_producer,
    logged_step,
    setting_keys,
)
from .mode_names import REFERENCE_MODE
from .stats import INTERVAL_NAME, t_interval, verdict

log = logging.getLogger(__name__)

RUN_KEYS = ("dataset", "noise", "seed", "mode")
#: the paired comparisons appended to summary.csv: name -> (this mode's column, reference mode or None for the same
#: run, reference column); each gives the columns {name}_n_pairs, _mean, _ci95_low, _ci95_high and _verdict.
#: ``last_minus_ce_oracle`` compares with ce's best *test* epoch, an upper bound on any stopping rule: a mode that
#: beats it beats every way of stopping ce, so the comparison is conservative (the headline without a validation split)
COMPARISONS = {
    "last_minus_ce_early": ("last_test_acc", REFERENCE_MODE, "early_stop_test_acc"),
    "last_minus_early": ("last_test_acc", None, "early_stop_test_acc"),
    "last_minus_ce_oracle": ("last_test_acc", REFERENCE_MODE, "oracle_test_acc"),
}
NO_VALIDATION = "no validation split"

#: history columns that hold a finite number in every row of a finished run
FINITE_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc_noisy",
    "train_acc_clean",
    "test_loss",
    "test_acc",
    "test_pred_top_class",
    "test_pred_top_share",
    *TIMING_COLUMNS,
)
#: history columns of the validation split: finite in every row when the run has one, empty in every row otherwise
VALIDATION_COLUMNS = ("val_loss", "val_acc")
#: the range every (non-empty) value of a history column must lie in, and what the column is
HISTORY_RANGES = {
    **{col: (0.0, 1.0, "an accuracy") for col in ("train_acc_noisy", "train_acc_clean", "val_acc", "test_acc")},
    **{col: (0.0, 1.0, "a share of the training samples") for col in ("memorized", "corrected")},
    "test_pred_top_share": (0.0, 1.0, "a share of the test images"),
    "test_pred_top_class": (0.0, math.inf, "a class index"),
    **{col: (0.0, math.inf, "a loss") for col in ("val_loss", "test_loss")},
    # the training loss of elr is negative once its regulariser, a log of a number below 1, outweighs the CE
    "train_loss": (-math.inf, math.inf, "a training loss"),
    "lr": (0.0, math.inf, "a learning rate"),
    "distill_weight": (0.0, 1.0, "a share of the target"),
    **{col: (0.0, math.inf, "a duration") for col in TIMING_COLUMNS},
}
FREQUENCY_COLUMNS = FREQUENCY_CSV_COLUMNS
FREQUENCY_SPLITS = ("train_subset", "test")
#: what to do about a bad per-run table: the rule that rebuilds it
HISTORY_FIX = "delete it and rerun snakemake (rule train reruns the training run)"
FREQUENCY_FIX = "delete it and rerun snakemake (rule frequency rebuilds it)"


def concat_runs(
    paths: Sequence[str | os.PathLike],
    runs: Sequence[dict],
    read: Callable[[str | os.PathLike], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Read one CSV per run with ``read`` (a checking reader such as :func:`read_history`; default: any CSV, its
    ``epoch`` column as nullable integers) and prepend the run's identifying columns (dataset, noise, seed, mode)."""
    if len(paths) != len(runs):
        raise ValueError(f"got {len(paths)} files for {len(runs)} runs")
    read = read or _read_any
    frames = []
    for path, run in zip(paths, runs, strict=True):
        frame = read(path)
        clash = [key for key in RUN_KEYS if key in frame.columns]
        if clash:
            raise InputFileError(
                f"{path}: has a column {clash[0]}, which is the run's key, so it is not a per-run table; delete it and "
                f"rerun snakemake"
            )
        for i, key in enumerate(RUN_KEYS):
            frame.insert(i, key, run[key])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def read_history(
    path: str | os.PathLike,
    epochs: int | None = None,
    val_fraction: float | None = None,
) -> pd.DataFrame:
    """One run's history.csv, checked: every column of :data:`HISTORY_COLUMNS`, numbers only; exactly one row per
    epoch 1..``epochs`` (the configured ``train.epochs``; 1..its last epoch when None); finite values in
    :data:`FINITE_COLUMNS`; the validation columns finite in every row when ``val_fraction`` > 0, empty in every row
    when it is 0 (all or none when None). Any problem raises :class:`InputFileError`, one line naming the file, the
    column and what to do."""
    frame = _read_csv(path, HISTORY_COLUMNS, HISTORY_FIX)
    numbers = {col: _numeric(path, frame, col, HISTORY_FIX) for col in HISTORY_COLUMNS}
    for col in FINITE_COLUMNS:
        _require_finite(path, numbers[col], col, numbers["epoch"], HISTORY_FIX)
    epoch = _epochs(path, numbers["epoch"], HISTORY_FIX)
    _check_epoch_rows(path, epoch, epochs)
    for col in VALIDATION_COLUMNS:
        values = numbers[col]
        finite = np.isfinite(values.to_numpy(dtype=float))
        if val_fraction is not None and val_fraction > 0:
            _require_finite(
                path,
                values,
                col,
                numbers["epoch"],
                HISTORY_FIX,
                f", although the configured run has a validation split (val_fraction {val_fraction})",
            )
        elif val_fraction is not None and finite.any():
            raise InputFileError(
                f"{path}: column {col} has values although the configured run has no validation split (val_fraction "
                f"0): the file is from another configuration; {HISTORY_FIX}"
            )
        elif finite.any() and not finite.all():
            _require_finite(path, values, col, numbers["epoch"], HISTORY_FIX)
    for col, (low, high, what) in HISTORY_RANGES.items():
        _require_range(path, numbers[col], col, numbers["epoch"], low, high, what)
    for col in HISTORY_COLUMNS:
        frame[col] = numbers[col]
    frame["epoch"] = epoch
    return frame


def _require_range(path, values: pd.Series, col: str, epoch: pd.Series, low: float, high: float, what: str) -> None:
    """Every non-empty value of ``values`` lies in [low, high], else one line naming the column, the value and its
    epoch: a value no training run can write means the file was changed or damaged after it was written."""
    v = values.to_numpy(dtype=float)
    bad = ~np.isnan(v) & ~((v >= low) & (v <= high))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        span = f"[{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
        raise InputFileError(
            f"{path}: column {col} has {v[first]:g} at epoch {epoch.iloc[first]:g}, outside {span} ({what}): the file "
            f"was changed or damaged after rule train wrote it; {HISTORY_FIX}"
        )


def read_frequency_table(path: str | os.PathLike) -> pd.DataFrame:
    """One run's frequency.csv, checked: every column of :data:`FREQUENCY_COLUMNS`, at least one row, both splits of
    :data:`FREQUENCY_SPLITS` and no other, numbers in the numeric columns, a finite positive ``delta`` and a finite
    ``ratio`` in every row, an integer ``epoch`` >= 1 in every row of network outputs (label rows have none) and one
    row per delta for every (split, source, epoch). Any problem raises :class:`InputFileError`, one line naming the
    file, the column and what to do."""
    frame = _read_csv(path, FREQUENCY_COLUMNS, FREQUENCY_FIX)
    split = frame["split"].astype(str)
    unknown = sorted(set(split) - set(FREQUENCY_SPLITS))
    if unknown:
        raise InputFileError(
            f"{path}: column split has {unknown[0]!r}, expected one of {', '.join(FREQUENCY_SPLITS)}; {FREQUENCY_FIX}"
        )
    if frame["source"].isna().any():
        raise InputFileError(f"{path}: column source is empty in some rows; {FREQUENCY_FIX}")
    numbers = {col: _numeric(path, frame, col, FREQUENCY_FIX) for col in FREQUENCY_COLUMNS[2:]}
    delta = numbers["delta"].to_numpy(dtype=float)
    if not (np.isfinite(delta) & (delta > 0)).all():
        raise InputFileError(f"{path}: column delta is empty, not finite or not positive in some rows; {FREQUENCY_FIX}")
    _require_finite(path, numbers["ratio"], "ratio", None, FREQUENCY_FIX)
    outputs = ~frame["source"].astype(str).str.startswith("labels_")
    _require_finite(path, numbers["epoch"][outputs], "epoch", None, FREQUENCY_FIX, " of network outputs")
    epoch = _epochs(path, numbers["epoch"], FREQUENCY_FIX, allow_empty=True)
    for col in FREQUENCY_COLUMNS[3:]:
        frame[col] = numbers[col]
    frame["epoch"] = epoch
    _check_frequency_rows(path, frame)
    return frame


def _check_frequency_rows(path, frame: pd.DataFrame) -> None:
    """Both splits are present, and every (split, source, epoch) has one row for each delta of its split (a file cut
    at a row boundary leaves its last group short)."""
    absent = [split for split in FREQUENCY_SPLITS if not (frame["split"] == split).any()]
    if absent:
        raise InputFileError(f"{path}: has no rows for split {absent[0]} (the file is incomplete); {FREQUENCY_FIX}")
    # the absolute widths differ between splits with delta_scale median (each split has its own median distance)
    deltas = {split: np.sort(group["delta"].unique()) for split, group in frame.groupby("split")}
    keys = frame[["split", "source"]].astype(str).assign(epoch=frame["epoch"].astype("float").fillna(0))
    for (split, source, epoch), group in frame.groupby([keys["split"], keys["source"], keys["epoch"]], sort=False):
        got, want = np.sort(group["delta"].to_numpy()), deltas[split]
        if got.size != want.size or not np.array_equal(got, want):
            at = f" at epoch {int(epoch)}" if epoch else ""
            raise InputFileError(
                f"{path}: {split}/{source} has {got.size} row{'s' if got.size != 1 else ''}{at}, expected one for each "
                f"of the split's {want.size} deltas (the file is incomplete); {FREQUENCY_FIX}"
            )


def _read_any(path: str | os.PathLike) -> pd.DataFrame:
    """Any per-run CSV with at least one row; its ``epoch`` column, if any, as nullable integers."""
    fix = "delete it and rerun snakemake"
    frame = _read_csv(path, (), fix)
    if "epoch" in frame.columns:
        frame["epoch"] = _epochs(path, _numeric(path, frame, "epoch", fix), fix, allow_empty=True)
    return frame


def _read_csv(path: str | os.PathLike, columns: Sequence[str], fix: str) -> pd.DataFrame:
    """A CSV file with at least one row and every column of ``columns``, or one :class:`InputFileError` line."""
    if not os.path.isfile(path):
        raise InputFileError(f"{path}: file not found; rerun snakemake")
    check_producer(path)
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise InputFileError(f"{path}: cannot be read as a CSV table ({reason}); {fix}") from None
    missing = [col for col in columns if col not in frame.columns]
    if len(missing) == 1:
        raise InputFileError(f"{path}: column {missing[0]} is missing; {fix}")
    if missing:
        raise InputFileError(f"{path}: columns {', '.join(missing)} are missing; {fix}")
    if frame.empty:
        raise InputFileError(f"{path}: has a header but no rows; {fix}")
    return frame


def _numeric(path, frame: pd.DataFrame, col: str, fix: str) -> pd.Series:
    """Column ``col`` as float64 (empty cells NaN); a cell that is not a number is an error naming its line."""
    raw = frame[col]
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    bad = values.isna() & raw.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputFileError(f"{path}: column {col} has {raw.iloc[row]!r} on line {row + 2}, not a number; {fix}")
    return values


def _require_finite(path, values: pd.Series, col: str, epoch: pd.Series | None, fix: str, why: str = "") -> None:
    """Every value of ``values`` is a finite number, else one line naming the column, the count and the first row."""
    bad = ~np.isfinite(values.to_numpy(dtype=float))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        where = (
            f"first at epoch {epoch.iloc[first]:g}"
            if epoch is not None and np.isfinite(epoch.iloc[first])
            else f"first on line {values.index[first] + 2}"
        )
        raise InputFileError(
            f"{path}: column {col} is empty or not finite in {int(bad.sum())} of {bad.size} rows ({where}){why}; {fix}"
        )


def _epochs(path, values: pd.Series, fix: str, allow_empty: bool = False) -> pd.Series:
    """The ``epoch`` column as nullable integers; a fractional, negative or zero epoch is an error."""
    v = values.to_numpy(dtype=float)
    present = ~np.isnan(v)
    if not allow_empty and not present.all():
        raise InputFileError(f"{path}: column epoch is empty in some rows; {fix}")
    bad = present & ~(np.isfinite(v) & (np.mod(v, 1) == 0) & (v >= 1))
    if bad.any():
        raise InputFileError(f"{path}: column epoch has {v[bad][0]:g}, not an epoch number (1, 2, ...); {fix}")
    return values.astype("Int64")


def _check_epoch_rows(path, epoch: pd.Series, epochs: int | None) -> None:
    """Exactly one row per epoch 1..epochs (1..the last epoch in the file when ``epochs`` is None)."""
    counts = epoch.value_counts()
    repeated = counts[counts > 1]
    if len(repeated):
        raise InputFileError(
            f"{path}: epoch {int(repeated.index.min())} has {int(repeated.max())} rows, expected one per epoch; "
            f"{HISTORY_FIX}"
        )
    last = int(epoch.max())
    expected = last if epochs is None else int(epochs)
    if last > expected:
        raise InputFileError(
            f"{path}: has epoch {last} but the run is configured for {expected} epochs (train.epochs): the file is "
            f"from another configuration; {HISTORY_FIX}"
        )
    missing = sorted(set(range(1, expected + 1)) - set(epoch.astype(int)))
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        shown = f"epoch {shown} is" if len(missing) == 1 else f"epochs {shown} are"
        raise InputFileError(
            f"{path}: has {len(epoch)} of the {expected} epochs the run is configured for ({shown} missing: the run "
            f"stopped early or the file was truncated); {HISTORY_FIX}"
        )


def per_run_summary(histories: pd.DataFrame) -> pd.DataFrame:
    """One row per run: test accuracy at the last, early-stopped (best noisy val) and oracle (best test) epochs, and
    the most predicted test class with its share at the last and at the early-stopped epoch (collapse detection).

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
                **_top_class("last", last),
                **_top_class("early_stop", early),
            )
        )
    return pd.DataFrame(rows)


def _top_class(prefix: str, row) -> dict:
    """The most predicted test class and its share at one epoch's history ``row`` (NaN without one)."""
    if row is None or "test_pred_top_share" not in row:
        return {f"{prefix}_top_class": math.nan, f"{prefix}_top_share": math.nan}
    return {
        f"{prefix}_top_class": float(row["test_pred_top_class"]),
        f"{prefix}_top_share": float(row["test_pred_top_share"]),
    }


#: the epochs at which a run is checked for collapse, and how the flags name them
COLLAPSE_EPOCHS = {"last": "last epoch", "early_stop": "early-stopped epoch"}


def collapsed_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of :func:`per_run_summary`'s table that collapsed at the last or at the early-stopped epoch, one row
    per (run, epoch kind): setting keys, mode, seed, ``at`` (last epoch / early-stopped epoch) and the flag's words."""
    rows = []
    keys = [*setting_keys(runs), "mode", "seed"]
    for row in runs.itertuples(index=False):
        for prefix, at in COLLAPSE_EPOCHS.items():
            share = getattr(row, f"{prefix}_top_share", math.nan)
            if not math.isnan(share) and share >= COLLAPSE_SHARE:
                text = collapse_text(getattr(row, f"{prefix}_top_class"), share)
                rows.append({**{k: getattr(row, k) for k in keys}, "at": at, "flag": text})
    return pd.DataFrame(rows, columns=[*keys, "at", "flag"])


def _collapse_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, mode): how many seeds collapsed at the last / early-stopped epoch and the flags in words."""
    flags = collapsed_runs(runs)
    keys = [*setting_keys(runs), "mode"]
    out = []
    for values, group in runs.groupby(keys, sort=False):
        cell = dict(zip(keys, values, strict=True))
        mine = flags.merge(pd.DataFrame([cell]), on=keys) if len(flags) else flags
        out.append(
            {
                **cell,
                "n_collapsed_last": int((mine["at"] == COLLAPSE_EPOCHS["last"]).sum()),
                "n_collapsed_early_stop": int((mine["at"] == COLLAPSE_EPOCHS["early_stop"]).sum()),
                "collapsed": "; ".join(f"seed {r.seed} at the {r.at}: {r.flag}" for r in mine.itertuples()),
            }
        )
    return pd.DataFrame(out, columns=[*keys, "n_collapsed_last", "n_collapsed_early_stop", "collapsed"])


def summarise(
    histories: pd.DataFrame, mode_order: Sequence[str] | None = None, precision: Mapping | None = None
) -> pd.DataFrame:
    """Mean and sample sd over seeds of the three accuracy columns, one row per (dataset, noise, mode), with the
    paired comparisons (:data:`COMPARISONS`), the collapse flags and, given ``precision`` ((mode, seed) -> the
    precision the run trained in, from its run.json), the precisions of the mode's runs."""
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
    on = ["dataset", "noise", "mode"]
    agg = agg.merge(comparison_columns(runs), on=on, how="left", validate="one_to_one")
    agg = agg.merge(_collapse_cells(runs), on=on, how="left", validate="one_to_one")
    if precision is not None:
        agg["precision"] = [
            ", ".join(sorted({str(precision.get((mode, int(seed)), "unknown")) for seed in group["seed"]}))
            for mode, group in ((m, runs[runs["mode"] == m]) for m in agg["mode"])
        ]
    if mode_order is not None:
        rank = {m: i for i, m in enumerate(mode_order)}
        agg = agg.sort_values("mode", key=lambda s: s.map(rank).fillna(len(rank)), kind="stable")
    return agg.reset_index(drop=True)


def percent_pm(mean: float, sd: float) -> str:
    """Format a fraction as 'mm.mm ± s.ss' percent; sd is blank for a single seed."""
    if math.isnan(sd):
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * sd:.2f}"


#: the early-stopped cell of a run without a validation split (val_fraction 0): nothing chooses an epoch
NO_VALIDATION_CELL = f"n/a ({NO_VALIDATION})"


def _early_cell(row) -> str:
    if math.isnan(row.early_stop_mean):
        return NO_VALIDATION_CELL
    return f"{percent_pm(row.early_stop_mean, row.early_stop_sd)} (epoch ≈ {row.early_stop_epoch_mean:.0f})"


def _mode_cell(row) -> str:
    """The mode's name, flagged when some of its runs collapsed (:mod:`selfdistill.collapse`)."""
    counts = [(getattr(row, f"n_collapsed_{k}", 0) or 0, at) for k, at in COLLAPSE_EPOCHS.items()]
    flags = [f"{int(n)} of {row.n_seeds} seeds collapsed at the {at}" for n, at in counts if n]
    return f"{row.mode} ({'; '.join(flags)})" if flags else str(row.mode)


def precision_line(summary: pd.DataFrame) -> list[str]:
    """'Trained in float32 (every run).' or per mode, from the summary's ``precision`` column (none without it)."""
    if "precision" not in summary.columns:
        return []
    values = list(dict.fromkeys(summary["precision"].astype(str)))
    if len(values) == 1:
        return [f"Precision: {values[0]} (every run; from each run's run.json)."]
    per_mode = ", ".join(f"{r.mode} {r.precision}" for r in summary.itertuples(index=False))
    return [f"Precision: {per_mode} (from each run's run.json)."]


def summary_markdown(summary: pd.DataFrame) -> str:
    """Render the summary as a Markdown table plus the study's verdict, in percent."""
    lines = [
        "| dataset | noise | mode | seeds | last epoch | early-stopped (best noisy val) | oracle best test |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary.itertuples(index=False):
        lines.append(
            f"| {row.dataset} | {row.noise} | {_mode_cell(row)} | {row.n_seeds} "
            f"| {percent_pm(row.last_mean, row.last_sd)} | {_early_cell(row)} "
            f"| {percent_pm(row.oracle_mean, row.oracle_sd)} (epoch ≈ {row.oracle_epoch_mean:.0f}) |"
        )
    lines += [
        "",
        "Test accuracy in percent, mean ± sd over seeds. The oracle column picks the epoch by *test*",
    ]
    lines += ["accuracy and is an upper bound only, never a result."]
    lines += precision_line(summary)
    lines += [""] + comparison_markdown(summary) + [""] + verdicts(summary)
    return "\n".join(lines) + "\n"


def paired_differences(runs: pd.DataFrame, column: str, ref_mode: str | None, ref_column: str) -> pd.DataFrame:
    """Per run (setting, mode, seed): ``column`` minus ``ref_column`` of the same seed's ``ref_mode`` run (of the
    same run when ``ref_mode`` is None). Paired by seed because a seed fixes the data, the initialisation and the
    batch order; a seed without a reference run has no difference (it is dropped and logged)."""
    keys = setting_keys(runs)
    on = [*keys, "seed"] if ref_mode is not None else [*keys, "mode", "seed"]
    ref = runs if ref_mode is None else runs[runs["mode"] == ref_mode]
    ref = ref[[*on, ref_column]].rename(columns={ref_column: "_reference"})
    both = runs[[*keys, "mode", "seed", column]].merge(ref, on=on, how="inner", validate="many_to_one")
    if ref_mode is not None and len(both) < len(runs) and (runs["mode"] == ref_mode).any():
        log.info(
            "%d runs have no %s run with the same seed: left out of the paired differences",
            len(runs) - len(both),
            ref_mode,
        )
    both["difference"] = both[column] - both["_reference"]
    return both[[*keys, "mode", "seed", "difference"]]


def comparison_columns(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, mode) of :func:`per_run_summary`'s table: for every comparison of
    :data:`COMPARISONS` the paired seeds, the mean difference, its 95% t-interval over seeds and the verdict."""
    keys = setting_keys(runs)
    rows = []
    for values, setting in runs.groupby(keys, sort=False):
        diffs = {name: paired_differences(setting, *spec) for name, spec in COMPARISONS.items()}
        for mode in setting["mode"].unique():
            row = dict(zip(keys, values, strict=True), mode=mode)
            for name, (_, ref_mode, ref_column) in COMPARISONS.items():
                mine = diffs[name].loc[diffs[name]["mode"] == mode, "difference"]
                row.update(_comparison_cells(name, setting, mine, ref_mode, ref_column))
            rows.append(row)
    return pd.DataFrame(rows)


def _comparison_cells(name: str, setting: pd.DataFrame, differences: pd.Series, ref_mode, ref_column) -> dict:
    """The five cells of one comparison, the verdict by :func:`selfdistill.stats.verdict`; no numbers, and the
    reason as the verdict, when the setting has no validation split or no reference runs."""
    interval = t_interval(differences.tolist())
    if not setting[ref_column].notna().any():
        reason = NO_VALIDATION
    elif ref_mode is not None and not (setting["mode"] == ref_mode).any():
        reason = f"no {ref_mode} runs"
    else:
        reason = None
    if reason is not None:
        interval = t_interval([])
    return {
        f"{name}_n_pairs": interval.n,
        f"{name}_mean": interval.mean,
        f"{name}_ci95_low": interval.low,
        f"{name}_ci95_high": interval.high,
        f"{name}_verdict": reason or verdict(interval, _points).text,
    }


def _points(x: float) -> str:
    """A difference of fractions as signed percentage points."""
    return f"{100 * x:+.2f}"


def difference_text(row, name: str) -> str:
    """Comparison ``name`` of a summary row as '+1.23 [-0.50, +2.96]' percentage points (mean and interval),
    '+1.23 (1 seed)' with one pair, '+0.28 (every seed)' when all pairs differ equally, or '—' without pairs."""
    mean, low, high = (getattr(row, f"{name}_{part}") for part in ("mean", "ci95_low", "ci95_high"))
    if math.isnan(mean):
        return "—"
    if math.isnan(low):
        return f"{_points(mean)} (1 seed)"
    if low == high:
        return f"{_points(mean)} (every seed)"
    return f"{_points(mean)} [{_points(low)}, {_points(high)}]"


def _interval_text(row, name: str) -> str:
    """'+1.23 points, 95% t-interval over seeds [-0.50, +2.96] (3 paired seeds): <verdict>', or why there are no
    numbers."""
    n, mean, low, high = (getattr(row, f"{name}_{part}") for part in ("n_pairs", "mean", "ci95_low", "ci95_high"))
    text = getattr(row, f"{name}_verdict")
    if not n or math.isnan(mean):
        return f"no numbers: {text}"
    seeds = f"{int(n)} paired seed{'s' if n != 1 else ''}"
    if math.isnan(low):
        return f"{_points(mean)} points ({seeds}, no interval): {text}"
    if low == high:
        return f"{_points(mean)} points ({seeds}, zero-width interval): {text}"
    return f"{_points(mean)} points, {INTERVAL_NAME} [{_points(low)}, {_points(high)}] ({seeds}): {text}"


#: the columns of the paired-comparison table: (comparison, heading)
_COMPARISON_HEADINGS = {
    "last_minus_ce_early": "last − early-stopped ce",
    "last_minus_early": "last − own early-stopped",
    "last_minus_ce_oracle": "last − ce oracle (conservative)",
}


def comparison_markdown(summary: pd.DataFrame) -> list[str]:
    """The paired comparisons of :func:`comparison_columns` as a Markdown table, one row per (setting, mode)."""
    keys = [k for k in setting_keys(summary) if k != "dataset"]
    head = " | ".join([*keys, "mode", *(f"{h} | verdict" for h in _COMPARISON_HEADINGS.values())])
    lines = [f"| {head} |", "|" + "---|" * (len(keys) + 1 + 2 * len(_COMPARISON_HEADINGS))]
    for row in summary.itertuples(index=False):
        cells = []
        for name in _COMPARISON_HEADINGS:
            cells += [difference_text(row, name), getattr(row, f"{name}_verdict")]
        lines.append(f"| {' | '.join(str(getattr(row, k)) for k in keys)} | {row.mode} | {' | '.join(cells)} |")
    lines += ["", COMPARISON_LEGEND]
    return lines


#: what the comparison table's numbers and verdicts mean (docs/science.md, "Verdicts")
COMPARISON_LEGEND = (
    "Differences in percentage points, per seed paired (same data, initialisation and batch order), mean and "
    f"{INTERVAL_NAME} (Student t, n − 1 degrees of freedom). Verdict: difference found (higher / lower) when the "
    "interval excludes 0; no difference detected when it includes 0 (not evidence of absence); not testable with 1 "
    "seed; no verdict when every seed differs by exactly the same amount (a zero-width interval). The ce oracle is "
    "ce's best *test* epoch, an upper bound on any stopping rule: a mode found higher than it beats early-stopped ce "
    "whatever the stopping rule (a conservative comparison)."
)


def verdicts(summary: pd.DataFrame) -> list[str]:
    """One sentence per (setting, mode) and comparison from the paired intervals: does the mode's last epoch beat
    early-stopped ce and even ce's oracle epoch, and would early stopping still help the mode (docs/science.md,
    "Evaluation protocol")? Without a validation split the comparison with ce's oracle comes first, as the headline.
    """
    out = []
    for row in summary.itertuples(index=False):
        where = "/".join(str(getattr(row, k)) for k in setting_keys(summary))
        early = (
            f"- {where}: last-epoch {row.mode} − early-stopped {REFERENCE_MODE}: "
            f"{_interval_text(row, 'last_minus_ce_early')}."
        )
        oracle = (
            f"- {where}: last-epoch {row.mode} − {REFERENCE_MODE}'s oracle epoch (its best test epoch, an upper bound "
            f"on any stopping rule: conservative): {_interval_text(row, 'last_minus_ce_oracle')}."
        )
        if row.mode != REFERENCE_MODE:
            has_validation = row.last_minus_ce_early_verdict != NO_VALIDATION
            out += [early, oracle] if has_validation else [oracle, early]
        out.append(
            f"- {where}: last-epoch {row.mode} − its own early-stopped epoch (negative: early stopping would still "
            f"help): {_interval_text(row, 'last_minus_early')}."
        )
        if getattr(row, "collapsed", ""):
            out.append(f"- {where}: {row.mode}: {row.collapsed}.")
    return out


#: the HTML summary's look: it is shown on its own (the report's viewer) and inside the report's landing page, in a
#: column narrower than the window. Numbers stay on one line, the comparisons wrap (but not to a word a line), and
#: each table sits in a horizontally scrolling box of its own (a pixel wider than the table, for its outer border),
#: so that a narrow column scrolls it instead of cutting it.
_SUMMARY_STYLE = (
    ".selfdistill-scroll{overflow-x:auto;max-width:100%;padding:0 1px}"
    "table.selfdistill-summary{border-collapse:collapse;font-size:0.9em;margin:0.5em 0}"
    ".selfdistill-summary th,.selfdistill-summary td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:left}"
    ".selfdistill-summary td.num{text-align:right;white-space:nowrap}"
    ".selfdistill-summary td:first-child{min-width:8em}.selfdistill-summary td.comparison{min-width:12em}"
)
_SUMMARY_HEAD = (
    "<thead><tr><th>mode</th><th>seeds</th><th>last epoch</th><th>early-stopped (best noisy val)</th>"
    "<th>epoch</th><th>oracle best test (upper bound)</th><th>epoch</th>"
    "<th>last &minus; early-stopped ce</th><th>last &minus; ce oracle (conservative)</th></tr></thead>"
)


def _comparison_cell_html(row, name: str) -> str:
    """A paired comparison in two short lines: the difference in points (with its interval) and the verdict."""
    return f"{html.escape(difference_text(row, name))}<br>{html.escape(str(getattr(row, f'{name}_verdict')))}"


def _summary_row_html(row) -> str:
    """One mode's row of :func:`summary_html`."""
    numbers = [
        row.n_seeds,
        percent_pm(row.last_mean, row.last_sd),
        percent_pm(row.early_stop_mean, row.early_stop_sd),
        f"{row.early_stop_epoch_mean:.0f}",
        percent_pm(row.oracle_mean, row.oracle_sd),
        f"{row.oracle_epoch_mean:.0f}",
    ]
    cells = "".join(f'<td class="num">{html.escape(str(v))}</td>' for v in numbers)
    cells += "".join(
        f'<td class="comparison">{_comparison_cell_html(row, n)}</td>'
        for n in ("last_minus_ce_early", "last_minus_ce_oracle")
    )
    return f"<tr><td>{html.escape(_mode_cell(row))}</td>{cells}</tr>"


def summary_html(summary: pd.DataFrame) -> str:
    """The summary as a small HTML fragment for the Snakemake report: one table per dataset/noise setting (test
    accuracy in percent, mean ± sd over seeds, rounded as in :func:`summary_markdown`, and the paired differences
    with early-stopped ce and with ce's oracle), then the verdicts.

    ASCII only (other characters as references), so that it reads the same whatever encoding a viewer assumes.
    """
    parts = [f"<style>{_SUMMARY_STYLE}</style>"]
    for (dataset, noise), group in summary.groupby(["dataset", "noise"], sort=False):
        parts += [
            '<div class="selfdistill-scroll"><table class="selfdistill-summary">',
            f"<caption>Test accuracy (%), {html.escape(str(dataset))} / {html.escape(str(noise))}</caption>",
            _SUMMARY_HEAD,
            "<tbody>",
            *(_summary_row_html(row) for row in group.itertuples(index=False)),
            "</tbody>",
            "</table></div>",
        ]
    notes = "Mean &plusmn; sd over seeds; epochs are means over seeds. The oracle column picks the epoch by "
    notes += "<em>test</em> accuracy and is an upper bound only, never a result. "
    parts.append(f"<p>{notes}{html.escape(' '.join(precision_line(summary)))}</p>")
    lines = [html.escape(line.removeprefix("- ")) for line in verdicts(summary)]
    if lines:
        parts.append("<ul>" + "".join(f"<li>{line}</li>" for line in lines) + "</ul>")
    return "\n".join(parts).encode("ascii", "xmlcharrefreplace").decode("ascii") + "\n"


@logged_step
def aggregate_histories(
    history_paths: Sequence[str | os.PathLike],
    runs: Sequence[dict],
    out_histories: str | os.PathLike,
    out_summary_csv: str | os.PathLike,
    out_summary_md: str | os.PathLike,
    mode_order: Sequence[str] | None = None,
    log_path: str | os.PathLike | None = None,
    epochs: int | None = None,
    val_fraction: float | None = None,
    out_summary_html: str | os.PathLike | None = None,
    run_info_paths: Sequence[str | os.PathLike] | None = None,
) -> pd.DataFrame:
    """Pipeline step: tidy all runs' histories and write the per-mode summary as CSV (full precision), Markdown and,
    given ``out_summary_html``, the rounded HTML table of the report; ``run_info_paths`` (each run's run.json, in
    the order of ``runs``) give the precision each run trained in.

    Every history is checked first (:func:`read_history`, against the configured ``epochs`` and ``val_fraction``):
    a malformed one stops the step with one line naming the file and the column, and nothing is written.
    """
    read = functools.partial(read_history, epochs=epochs, val_fraction=val_fraction)
    histories = concat_runs(history_paths, runs, read)
    precision = None if run_info_paths is None else read_precisions(run_info_paths, runs)
    summary = summarise(histories, mode_order, precision)
    for flag in collapsed_runs(per_run_summary(histories)).itertuples(index=False):
        log.warning("%s seed %s at the %s: %s", flag.mode, flag.seed, flag.at, flag.flag)
    with atomic_output(out_histories, "rule aggregate") as tmp:
        histories.to_csv(tmp, index=False)
    with atomic_output(out_summary_csv, "rule aggregate") as tmp:
        summary.to_csv(tmp, index=False)
    with atomic_output(out_summary_md) as tmp:
        tmp.write_text(summary_markdown(summary))
    if out_summary_html is not None:
        with atomic_output(out_summary_html) as tmp:
            tmp.write_text(summary_html(summary))
    log.info("aggregated %d runs into %s", len(runs), out_histories)
    return summary


def read_precisions(paths: Sequence[str | os.PathLike], runs: Sequence[dict]) -> dict[tuple[str, int], str]:
    """(mode, seed) -> the precision each run trained in, from its run.json (written by the train step); a file
    that cannot be read or lacks the key is one :class:`InputFileError` line naming it."""
    if len(paths) != len(runs):
        raise ValueError(f"got {len(paths)} run.json files for {len(runs)} runs")
    out = {}
    for path, run in zip(paths, runs, strict=True):
        try:
            info = json.loads(Path(path).read_text())
            out[(run["mode"], int(run["seed"]))] = str(info["precision"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputFileError(
                f"{path}: cannot read the run's precision ({type(err).__name__}: {err}); {HISTORY_FIX}"
            ) from None
    return out


@logged_step
def aggregate_frequency(
    frequency_paths: Sequence[str | os.PathLike],
    runs: Sequence[dict],
    out_csv: str | os.PathLike,
    log_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Pipeline step: tidy all runs' frequency tables into one CSV for the frequency figures (each checked first
    with :func:`read_frequency_table`)."""
    table = concat_runs(frequency_paths, runs, read_frequency_table)
    with atomic_output(out_csv, "rule aggregate_frequency") as tmp:
        table.to_csv(tmp, index=False)
    log.info("aggregated %d frequency tables into %s", len(runs), out_csv)
    return table
