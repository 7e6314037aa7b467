"""The frequency claim with the same paired treatment as the accuracy summary: at the last epoch, per (split,
source, delta), each mode minus ``ce`` of the low-frequency ratio and of e_high against the noisy and the clean
labels, paired by seed, with a 95% t-interval over seeds and the verdict rules of :mod:`selfdistill.stats`. Each mode
is compared in many (split, source, delta, quantity) cells, so the verdict is Holm-corrected over all of a mode's
cells (the family-wise error rate stays 5%); the uncorrected interval and verdict are kept beside it.

Degenerate widths are dropped first, with a logged reason (:func:`degenerate_deltas`): when the kernel is about the
identity (small delta) the labels keep almost all their energy in the low-pass part, the high-pass part of the
labels vanishes and e_high, which divides by it, is meaningless (on digits at delta = 0.02 x median: clean-label
ratio 1.000, e_high up to ~180).
"""

from __future__ import annotations

import html
import logging
import os

import numpy as np
import pandas as pd

from .io import atomic_output, check_producer, logged_step, setting_keys
from .mode_names import REFERENCE_MODE
from .stats import ALPHA, INTERVAL_NAME, holm, t_interval, verdict

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
    "p_value",
    "verdict_uncorrected",
    "holm_tests",
    "p_holm",
    "verdict",
)


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
        reason = degenerate_reason(hi, lo, high, low, num_classes, normalised_low)
        if reason is not None:
            ratio = hi if hi > high else lo
            rows.append({**dict(zip(keys, values, strict=True)), "label_ratio": ratio, "reason": reason})
    return pd.DataFrame(rows, columns=[*keys, "label_ratio", "reason"])


def degenerate_reason(hi, lo, high, low, num_classes, normalised_low) -> str | None:
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
    frequency: pd.DataFrame, reference: str = REFERENCE_MODE, degenerate: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per (setting, split, source, delta_config, mode other than ``reference``, quantity of :data:`QUANTITIES`):
    the seeds' paired differences mode − ``reference`` at the last epoch, their mean, 95% t-interval, paired t-test
    p-value and uncorrected verdict, then the Holm-adjusted p-value over all of the (setting, mode)'s cells and the
    verdict from it. Degenerate widths are dropped first (logged); a quantity without values (e_high vs noisy labels
    on the test split) is left out. ``degenerate``: the widths to drop (default :func:`degenerate_deltas`)."""
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
    table = pd.DataFrame(out, columns=[*setting_keys(rows), *DIFFERENCE_COLUMNS, "_interval"])
    return _holm_columns(table)


def _difference_row(cell: dict, mode: str, quantity: str, differences: pd.Series) -> dict:
    """One row of :func:`frequency_differences` before the Holm correction."""
    interval = t_interval(differences.tolist())
    return {
        **cell,
        "mode": mode,
        "quantity": quantity,
        "n_pairs": interval.n,
        "mean": interval.mean,
        "ci95_low": interval.low,
        "ci95_high": interval.high,
        "p_value": interval.p_value,
        "verdict_uncorrected": verdict(interval).text,
        "_interval": interval,
    }


def _holm_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``holm_tests`` (the number of testable cells of the row's (setting, mode)), ``p_holm`` and ``verdict``."""
    table = table.copy()
    table["holm_tests"], table["p_holm"], table["verdict"] = 0, np.nan, ""
    if table.empty:
        return table.drop(columns="_interval")
    for _, group in table.groupby([*setting_keys(table), "mode"], sort=False):
        adjusted, rejected = holm(group["p_value"].tolist(), ALPHA)
        table.loc[group.index, "holm_tests"] = int(group["p_value"].notna().sum())
        table.loc[group.index, "p_holm"] = adjusted
        table.loc[group.index, "verdict"] = [
            verdict(interval, reject=reject).text for interval, reject in zip(group["_interval"], rejected, strict=True)
        ]
    return table.drop(columns="_interval")


def _found(verdicts: pd.Series) -> pd.Series:
    return verdicts.astype(str).str.startswith("difference found")


def frequency_markdown(
    table: pd.DataFrame, degenerate: pd.DataFrame | None = None, reference: str = REFERENCE_MODE
) -> str:
    """A Markdown section: one line per (setting, mode, quantity) saying in how many (split, source, delta) cells
    it was tested and in how many a difference from ``reference`` is found after the Holm correction (and
    uncorrected), with each found cell's interval; then the dropped widths."""
    lines = [
        f"## Frequency measures at the last epoch: each mode − {reference}",
        "",
        (
            f"Per seed paired differences, mean and {INTERVAL_NAME} (uncorrected). A difference is found when the "
            "Holm-corrected paired t-test rejects 0 at a family-wise 5% over all of a mode's cells (split, source, δ and "
            "quantity); 'uncorrected' counts the cells whose own interval excludes 0. No difference detected is not "
            "evidence of absence; with 1 seed nothing is testable."
        ),
        "",
    ]
    keys = [*setting_keys(table), "mode", "quantity"]
    for values, group in table.groupby(keys, sort=False):
        *setting, mode, quantity = values
        lines.append(
            f"- {'/'.join(map(str, setting))}, {mode} − {reference}, {QUANTITIES[quantity]}: {_summary(group)}"
        )
    if degenerate is not None and not degenerate.empty:
        lines += ["", "Widths left out as degenerate:"]
        for row in degenerate.itertuples(index=False):
            lines.append(f"- {row.split} δ {row.delta_config:g}: {row.reason}.")
    return "\n".join(lines) + "\n"


def _summary(group: pd.DataFrame) -> str:
    """In words: how many cells, how many testable, and what was found (Holm, then uncorrected)."""
    n = len(group)
    testable = group["p_value"].notna()
    if not testable.any():
        reasons = "; ".join(sorted(set(group["verdict"])))
        return f"{n} cells, none testable ({reasons})."
    found, raw = _found(group["verdict"]), _found(group["verdict_uncorrected"])
    head = (
        f"{int(testable.sum())} of {n} cells tested (Holm over the mode's {int(group['holm_tests'].iloc[0])} tests); "
        f"difference found in {int(found.sum())} after correction, {int(raw.sum())} uncorrected"
    )
    shown = group[found] if found.any() else group[raw]
    label = "found" if found.any() else "uncorrected only"
    cells = "; ".join(_cell_text(row) for row in shown.itertuples(index=False))
    return f"{head}{f' ({label}: {cells})' if cells else ''}."


def _cell_text(row) -> str:
    """'train_subset/probs δ 0.2: +0.0123 [+0.0050, +0.0196], p_Holm 0.04 (3 seeds)'."""
    if np.isnan(row.ci95_low):
        bounds = "no interval"
    else:
        bounds = f"[{row.ci95_low:+.4g}, {row.ci95_high:+.4g}]"
    p = "" if np.isnan(row.p_holm) else f", p_Holm {row.p_holm:.2g}"
    return f"{row.split}/{row.source} δ {row.delta_config:g}: {row.mean:+.4g} {bounds}{p} ({row.n_pairs} seeds)"


def frequency_html(table: pd.DataFrame, reference: str = REFERENCE_MODE) -> str:
    """A short table for the report: per (setting, mode, quantity) the cells tested and found (Holm, uncorrected)
    and the cell with the smallest p-value with its interval; the detail stays in frequency_summary.csv. ASCII."""
    rows = []
    keys = [*setting_keys(table), "mode", "quantity"]
    for values, group in table.groupby(keys, sort=False):
        *setting, mode, quantity = values
        testable = group[group["p_value"].notna()]
        best = next(testable.loc[[testable["p_value"].idxmin()]].itertuples(index=False)) if len(testable) else None
        strongest = "&mdash;" if best is None else html.escape(_cell_text(best))
        cells = [
            "/".join(map(str, setting)),
            f"{mode} &minus; {reference}",
            html.escape(QUANTITIES[quantity]),
            f"{len(testable)} of {len(group)}",
            str(int(_found(group["verdict"]).sum())),
            str(int(_found(group["verdict_uncorrected"]).sum())),
            strongest,
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = (
        "<thead><tr><th>setting</th><th>comparison</th><th>quantity</th><th>cells tested</th>"
        "<th>found (Holm)</th><th>found (uncorrected)</th><th>smallest p: difference [95% interval]</th></tr></thead>"
    )
    note = (
        "<p>Last epoch, paired by seed. A cell is one (split, output source, &delta;); Holm-corrected over all of a "
        "mode's cells. Every cell's numbers: frequency_summary.csv.</p>"
    )
    body = f'<table class="selfdistill-summary">{head}<tbody>{"".join(rows)}</tbody></table>{note}'
    return body.encode("ascii", "xmlcharrefreplace").decode("ascii") + "\n"


@logged_step
def summarise_frequency(
    frequency_csv: str | os.PathLike,
    out_csv: str | os.PathLike,
    out_md: str | os.PathLike,
    reference: str = REFERENCE_MODE,
    num_classes: int | None = None,
    log_path: str | os.PathLike | None = None,
    out_html: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Pipeline step: from one setting's tidy frequency.csv (rule aggregate_frequency) write
    frequency_summary.csv (:func:`frequency_differences`) and its Markdown section; ``num_classes`` (the
    dataset's) also drops widths whose kernel is about a global average (:func:`degenerate_deltas`); ``out_html``:
    the report's short table (:func:`frequency_html`)."""
    check_producer(frequency_csv)
    frequency = pd.read_csv(frequency_csv)
    degenerate = degenerate_deltas(frequency, num_classes=num_classes)
    table = frequency_differences(frequency, reference, degenerate)
    with atomic_output(out_csv, "rule frequency_summary") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_output(out_md) as tmp:
        tmp.write_text(frequency_markdown(table, degenerate, reference))
    if out_html is not None:
        with atomic_output(out_html) as tmp:
            tmp.write_text(frequency_html(table, reference))
    log.info("%d paired frequency comparisons written to %s", len(table), out_csv)
    return table
