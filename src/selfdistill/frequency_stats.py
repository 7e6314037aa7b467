"""The frequency claim with the same paired treatment as the accuracy summary: at the last epoch, per (split,
source, delta), each mode minus ``ce`` of the low-frequency ratio and of e_high against the noisy and the clean
labels, paired by seed, with a 95% t-interval over seeds and a verdict (difference found / none found).

Degenerate widths are dropped first, with a logged reason (:func:`degenerate_deltas`): when the kernel is about the
identity (small delta) the labels keep almost all their energy in the low-pass part, the high-pass part of the
labels vanishes and e_high, which divides by it, is meaningless (on digits at delta = 0.02 x median: clean-label
ratio 1.000, e_high up to ~180).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from .io import atomic_output, logged_step, setting_keys, setup_logging
from .stats import INTERVAL_NAME, t_interval, verdict

log = logging.getLogger(__name__)

#: the quantities compared between modes, and how the outputs name them
QUANTITIES = {
    "ratio": "low-frequency ratio",
    "e_high_noisy": "e_high vs noisy labels",
    "e_high_clean": "e_high vs clean labels",
}
#: a width is degenerate when the clean labels' low-frequency ratio is above / below these
RATIO_HIGH, RATIO_LOW = 0.999, 0.001
#: with ``num_classes`` C known, a width is also degenerate when the clean labels' ratio, rescaled so that the
#: constant function's 1/C (balanced classes) is 0 and 1 is 1, is below this: the kernel is about a global average
NORMALISED_LOW = 0.01
#: the columns of :func:`frequency_differences`' table after the setting keys
DIFFERENCE_COLUMNS = (
    "split",
    "source",
    "delta_config",
    "mode",
    "quantity",
    "n_pairs",
    "mean",
    "ci95_low",
    "ci95_high",
    "verdict",
)
FOUND, NONE_FOUND = "difference found", "none found"


def with_delta_config(frequency: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``delta_config``: the configured width (``delta_rel`` with delta_scale median, else the absolute
    ``delta``). Rows are paired across seeds by it, as a seed's own median distance changes the absolute width."""
    out = frequency.copy()
    out["delta_config"] = out["delta_rel"].fillna(out["delta"]) if "delta_rel" in out else out["delta"]
    return out


def degenerate_deltas(
    frequency: pd.DataFrame,
    high: float = RATIO_HIGH,
    low: float = RATIO_LOW,
    num_classes: int | None = None,
    normalised_low: float = NORMALISED_LOW,
) -> pd.DataFrame:
    """The (setting, split, delta_config) whose clean-label reference ratio is degenerate in any run, with the
    worst ratio and the reason in words: above ``high`` (the kernel is about the identity: the labels' high-pass
    part vanishes and e_high divides by it), below ``low``, or, given ``num_classes`` C, with
    ``(ratio - 1/C) / (1 - 1/C)`` below ``normalised_low`` (the kernel is about a global average: the low-pass part
    of the labels is only their class mean). Columns: setting keys, split, delta_config, label_ratio, reason."""
    freq = with_delta_config(frequency)
    keys = [*setting_keys(freq), "split", "delta_config"]
    labels = freq[freq["source"] == "labels_clean"]
    rows = []
    for values, group in labels.groupby(keys, sort=True):
        hi, lo = float(group["ratio"].max()), float(group["ratio"].min())
        reason = _degenerate_reason(hi, lo, high, low, num_classes, normalised_low)
        if reason is not None:
            ratio = hi if hi > high else lo
            rows.append({**dict(zip(keys, values, strict=True)), "label_ratio": ratio, "reason": reason})
    return pd.DataFrame(rows, columns=[*keys, "label_ratio", "reason"])


def _degenerate_reason(hi, lo, high, low, num_classes, normalised_low) -> str | None:
    """Why a width with clean-label ratios in [lo, hi] is degenerate, or None."""
    if hi > high:
        return f"clean-label ratio {hi:.4f} > {high}: the kernel is about the identity (delta too small)"
    if lo < low:
        return f"clean-label ratio {lo:.4f} < {low}: the low-pass part of the labels vanishes (delta too large)"
    if num_classes is not None:
        floor = 1.0 / num_classes
        normalised = (lo - floor) / (1.0 - floor)
        if normalised < normalised_low:
            return (
                f"clean-label ratio {lo:.4f} is {normalised:.4f} of the way from 1/C = {floor:.4g} to 1 "
                f"(< {normalised_low}): the kernel is about a global average (delta too large)"
            )
    return None


def drop_degenerate(frequency: pd.DataFrame, degenerate: pd.DataFrame | None = None) -> pd.DataFrame:
    """``frequency`` without the rows of degenerate widths (:func:`degenerate_deltas` unless given), each dropped
    width logged with its reason; for summaries and figures."""
    degenerate = degenerate_deltas(frequency) if degenerate is None else degenerate
    freq = with_delta_config(frequency)
    if degenerate.empty:
        return freq
    keys = [c for c in degenerate.columns if c not in ("label_ratio", "reason")]
    for row in degenerate.itertuples(index=False):
        where = "/".join(str(getattr(row, k)) for k in keys[:-2])
        log.warning("dropped %s %s delta %g: %s", where, row.split, row.delta_config, row.reason)
    marked = freq.merge(degenerate[keys].assign(_drop=True), on=keys, how="left")
    return freq[marked["_drop"].isna().to_numpy()].reset_index(drop=True)


def last_epoch_rows(frequency: pd.DataFrame) -> pd.DataFrame:
    """The network-output rows (not the label references) at each run's last recorded epoch."""
    outputs = frequency[~frequency["source"].astype(str).str.startswith("labels_")]
    run = [*setting_keys(outputs), "seed", "mode"]
    last = outputs.groupby(run, sort=False)["epoch"].transform("max")
    return outputs[outputs["epoch"] == last]


def frequency_differences(
    frequency: pd.DataFrame, reference: str = "ce", degenerate: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per (setting, split, source, delta_config, mode other than ``reference``, quantity of :data:`QUANTITIES`):
    the seeds' paired differences mode − ``reference`` at the last epoch, their mean, 95% t-interval and verdict.
    Degenerate widths are dropped first (logged); a quantity without values (e_high vs noisy labels on the test
    split) is left out. ``degenerate``: the widths to drop (default :func:`degenerate_deltas` with its defaults)."""
    rows = last_epoch_rows(drop_degenerate(frequency, degenerate))
    cell = [*setting_keys(rows), "split", "source", "delta_config"]
    out = []
    for values, group in rows.groupby(cell, sort=True):
        ref = group[group["mode"] == reference].set_index("seed")
        for mode, runs in group[group["mode"] != reference].groupby("mode", sort=False):
            runs = runs.set_index("seed")
            for quantity in QUANTITIES:
                diff = (runs[quantity] - ref[quantity]).dropna()
                if diff.empty:
                    continue
                out.append(_difference_row(dict(zip(cell, values, strict=True)), mode, quantity, diff))
    return pd.DataFrame(out, columns=[*setting_keys(rows), *DIFFERENCE_COLUMNS])


def _difference_row(cell: dict, mode: str, quantity: str, differences: pd.Series) -> dict:
    """One row of :func:`frequency_differences`."""
    interval = t_interval(differences.tolist())
    found = verdict(interval, FOUND, FOUND)
    return {
        **cell,
        "mode": mode,
        "quantity": quantity,
        "n_pairs": interval.n,
        "mean": interval.mean,
        "ci95_low": interval.low,
        "ci95_high": interval.high,
        "verdict": NONE_FOUND if found == "inconclusive" else FOUND,
    }


def frequency_markdown(table: pd.DataFrame, degenerate: pd.DataFrame | None = None, reference: str = "ce") -> str:
    """A Markdown section: one line per (setting, mode, quantity) saying in how many (split, source, delta) cells a
    difference from ``reference`` is found, with each found cell's interval; then the dropped widths."""
    lines = [
        f"## Frequency measures at the last epoch: each mode − {reference}",
        "",
        f"Per seed paired differences, mean and {INTERVAL_NAME}; a difference is found when the interval excludes 0.",
        "",
    ]
    keys = [*setting_keys(table), "mode", "quantity"]
    for values, group in table.groupby(keys, sort=False):
        *setting, mode, quantity = values
        found = group[group["verdict"] == FOUND]
        cells = "; ".join(_cell_text(row) for row in found.itertuples(index=False))
        head = f"- {'/'.join(map(str, setting))}, {mode} − {reference}, {QUANTITIES[quantity]}: "
        if found.empty:
            lines.append(f"{head}none found in {len(group)} (split, source, δ) cells.")
        else:
            lines.append(f"{head}difference found in {len(found)} of {len(group)} cells: {cells}.")
    if degenerate is not None and not degenerate.empty:
        lines += ["", "Widths left out as degenerate:"]
        for row in degenerate.itertuples(index=False):
            lines.append(f"- {row.split} δ {row.delta_config:g}: {row.reason}.")
    return "\n".join(lines) + "\n"


def _cell_text(row) -> str:
    """'train_subset/probs δ 0.2: +0.0123 [+0.0050, +0.0196] (3 seeds)'."""
    if np.isnan(row.ci95_low):
        bounds = "no interval"
    else:
        bounds = f"[{row.ci95_low:+.4g}, {row.ci95_high:+.4g}]"
    return f"{row.split}/{row.source} δ {row.delta_config:g}: {row.mean:+.4g} {bounds} ({row.n_pairs} seeds)"


@logged_step
def summarise_frequency(
    frequency_csv: str | os.PathLike,
    out_csv: str | os.PathLike,
    out_md: str | os.PathLike,
    reference: str = "ce",
    num_classes: int | None = None,
    log_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Pipeline step: from one setting's tidy frequency.csv (rule aggregate_frequency) write
    frequency_summary.csv (:func:`frequency_differences`) and its Markdown section; ``num_classes`` (the
    dataset's) also drops widths whose kernel is about a global average (:func:`degenerate_deltas`)."""
    if log_path is not None:
        setup_logging(log_path)
    frequency = pd.read_csv(frequency_csv)
    degenerate = degenerate_deltas(frequency, num_classes=num_classes)
    table = frequency_differences(frequency, reference, degenerate)
    with atomic_output(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_output(out_md) as tmp:
        tmp.write_text(frequency_markdown(table, degenerate, reference))
    log.info("%d paired frequency comparisons written to %s", len(table), out_csv)
    return table
