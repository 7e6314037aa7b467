"""The study-level summary across all noise settings and variants: one table (summary.csv / summary.md) and one
overview figure.

Inputs are the per-setting summary tables of :func:`selfdistill.aggregate.summarise` (with their paired
comparisons), each tagged with its ``variant`` and ``noise`` (strings); nothing here assumes a single variant.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .aggregate import COMPARISON_LEGEND, difference_text, percent_pm
from .io import atomic_output, check_producer, logged_step
from .mode_names import REFERENCE_MODE
from .published import published_cell

log = logging.getLogger(__name__)

#: the study table's columns, in order (``published_ce`` only for CIFAR studies)
STUDY_COLUMNS = (
    "dataset",
    "variant",
    "noise",
    "mode",
    "n_seeds",
    "last_mean",
    "last_sd",
    "early_stop_mean",
    "early_stop_sd",
    "oracle_mean",
    "oracle_sd",
    "last_minus_ce_early_n_pairs",
    "last_minus_ce_early_mean",
    "last_minus_ce_early_ci95_low",
    "last_minus_ce_early_ci95_high",
    "last_minus_ce_early_verdict",
    "last_minus_ce_oracle_n_pairs",
    "last_minus_ce_oracle_mean",
    "last_minus_ce_oracle_ci95_low",
    "last_minus_ce_oracle_ci95_high",
    "last_minus_ce_oracle_verdict",
    "n_collapsed_last",
    "n_collapsed_early_stop",
)
#: columns a study table carries when its summaries have them (older summaries lack them)
OPTIONAL_COLUMNS = ("precision", "collapsed")


def study_summary(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Stack the per-setting summary tables (each with one ``variant`` and one ``noise`` value, as strings) into the
    study table of :data:`STUDY_COLUMNS`, in the order given; a CIFAR study gets ``published_ce``, the published
    CE number at the nearest protocol with its source (:mod:`selfdistill.published`)."""
    parts = []
    for i, table in enumerate(tables):
        for key in ("variant", "noise"):
            if key not in table.columns or table[key].nunique() != 1:
                raise ValueError(f"summary table {i} must be tagged with exactly one {key}")
        parts.append(table.astype({"variant": str, "noise": str}))
    if not parts:
        raise ValueError("no summary tables given")
    study = pd.concat(parts, ignore_index=True)
    missing = [col for col in STUDY_COLUMNS if col not in study.columns]
    if missing:
        raise ValueError(f"the summary tables lack the columns {', '.join(missing)}")
    study = study[list(STUDY_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in study.columns]]
    if study["dataset"].astype(str).str.startswith("cifar").any():
        study["published_ce"] = [published_cell(d, n) for d, n in zip(study["dataset"], study["noise"], strict=True)]
    return study


def _pct(mean: float, sd: float) -> str:
    """'mm.mm ± s.ss' percent; '—' without a value, no sd with one seed."""
    return "—" if math.isnan(mean) else percent_pm(mean, sd)


def study_markdown(study: pd.DataFrame) -> str:
    """The study table as Markdown, in percent, with the legend saying what each column is; the comparison with ce's
    oracle epoch (conservative) sits beside the one with early-stopped ce, and collapsed runs are counted."""
    published = "published_ce" in study.columns
    # a study without variants has one unnamed variant: no column for it
    variants = bool((study["variant"] != "").any())
    head = "| variant " * variants + "| noise | mode | seeds | last epoch | early-stopped | oracle (upper bound) "
    head += "| last − early-stopped ce | verdict | last − ce oracle (conservative) | verdict | collapsed runs |"
    head += " published CE (source, table, what) |" if published else ""
    lines = [head, "|" + "---|" * (11 + variants + published)]
    for row in study.itertuples(index=False):
        cells = [row.variant] * variants + [
            row.noise,
            row.mode,
            str(row.n_seeds),
            _pct(row.last_mean, row.last_sd),
            _pct(row.early_stop_mean, row.early_stop_sd),
            _pct(row.oracle_mean, row.oracle_sd),
            difference_text(row, "last_minus_ce_early"),
            row.last_minus_ce_early_verdict,
            difference_text(row, "last_minus_ce_oracle"),
            row.last_minus_ce_oracle_verdict,
            _collapsed_cell(row),
        ]
        # CE numbers: on the ce rows only (the CSV has them on every row)
        if published:
            cells.append((row.published_ce or "none") if row.mode == REFERENCE_MODE else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        (
            "Test accuracy in percent, mean ± sd over seeds; early-stopped: the epoch of best accuracy on the noisy "
            "validation split; oracle: the epoch of best test accuracy, an upper bound only. Collapsed runs: seeds "
            "whose test predictions fell on one class for at least 95% of the test images, at the last / the "
            "early-stopped epoch."
        ),
        COMPARISON_LEGEND,
    ]
    if "precision" in study.columns:
        values = ", ".join(dict.fromkeys(study["precision"].astype(str)))
        lines.append(f"Precision the runs trained in: {values}.")
    if published:
        lines.append("Published numbers come from other networks and recipes: context, not a target.")
    return "\n".join(lines) + "\n"


def _collapsed_cell(row) -> str:
    """'2 of 3 (last)', '1 of 3 (early-stopped)', both, or '0'."""
    parts = [
        f"{int(n)} of {row.n_seeds} ({at})"
        for n, at in ((row.n_collapsed_last, "last"), (row.n_collapsed_early_stop, "early-stopped"))
        if not math.isnan(n) and n
    ]
    return "; ".join(parts) or "0"


def overview_figure(study: pd.DataFrame, out_png: str | os.PathLike) -> None:
    """Last-epoch test accuracy per mode across noise settings (mean ± sd over seeds), early-stopped ce as the
    black reference marker and each mode's oracle as a faint upper bound; one panel per variant. PNG, atomic."""
    variants = list(dict.fromkeys(study["variant"]))
    noises = list(dict.fromkeys(study["noise"]))
    modes = list(dict.fromkeys(study["mode"]))
    colours = dict(zip(modes, sns.color_palette("colorblind", len(modes)), strict=True))
    # each panel wide enough for its settings' labels and the variant's name
    panel = max(2.0, 1.0 + 0.9 * len(noises))
    fig, axes = plt.subplots(1, len(variants), figsize=(1.2 + panel * len(variants), 3.6), sharey=True, squeeze=False)
    for ax, variant in zip(axes[0], variants, strict=True):
        _overview_panel(ax, study[study["variant"] == variant], noises, modes, colours)
        ax.set_title(variant)
    axes[0][0].set_ylabel("test accuracy (%)")
    fig.supxlabel("noise setting")
    fig.tight_layout()
    handles, labels = axes[0][0].get_legend_handles_labels()
    # below the panels, as many columns as the figure's width holds
    ncol = max(1, min(len(labels), int(fig.get_figwidth() // 2.6)))
    fig.legend(handles, labels, loc="upper center", ncol=ncol, bbox_to_anchor=(0.5, 0.0))
    try:
        with atomic_output(out_png) as tmp:
            fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")
    finally:
        plt.close(fig)


def _overview_panel(ax, rows: pd.DataFrame, noises: list[str], modes: list[str], colours: dict) -> None:
    """One variant: per noise setting a group of points (one per mode) at x = setting index + offset."""
    width = 0.7 / max(len(modes), 1)
    for j, mode in enumerate(modes):
        for i, noise in enumerate(noises):
            cell = rows[(rows["mode"] == mode) & (rows["noise"] == noise)]
            if cell.empty:
                continue
            r = cell.iloc[0]
            x = i + (j - (len(modes) - 1) / 2) * width
            first = i == 0
            # one seed: the point alone (an sd of one value is undefined; a zero-length bar would suggest certainty)
            sd = None if math.isnan(r["last_sd"]) else 100 * r["last_sd"]
            ax.errorbar(x, 100 * r["last_mean"], yerr=sd, fmt="o", color=colours[mode], capsize=3,
                        label=f"{mode} (last epoch)" if first else None)  # fmt: skip
            if r.get("n_collapsed_last", 0):
                ax.plot(x, 100 * r["last_mean"], "x", color="black", markersize=9,
                        label="collapsed run(s): one class predicted" if first and j == 0 else None)  # fmt: skip
            ax.plot(x, 100 * r["oracle_mean"], "^", color=colours[mode], alpha=0.3, markersize=5,
                    label="oracle best test (upper bound)" if first and j == 0 else None)  # fmt: skip
            if mode == REFERENCE_MODE and not math.isnan(r["early_stop_mean"]):
                ax.hlines(100 * r["early_stop_mean"], i - 0.4, i + 0.4, colors="black", linewidth=1.5,
                          label="early-stopped ce" if first else None)  # fmt: skip
    ax.set_xticks(range(len(noises)), noises)
    ax.grid(axis="y", alpha=0.3)


@logged_step
def write_study_summary(
    summary_paths: Sequence[str | os.PathLike],
    settings: Sequence[dict],
    out_csv: str | os.PathLike,
    out_md: str | os.PathLike,
    out_png: str | os.PathLike | None = None,
    log_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Pipeline step: read each setting's summary.csv, tag it with its ``settings`` entry (``variant``, ``noise``),
    and write the study's summary.csv, summary.md and, given ``out_png``, the overview figure."""
    if len(summary_paths) != len(settings):
        raise ValueError(f"got {len(summary_paths)} summary files for {len(settings)} settings")
    for path in summary_paths:
        check_producer(path)
    tables = [
        pd.read_csv(path).assign(variant=str(s["variant"]), noise=str(s["noise"]))
        for path, s in zip(summary_paths, settings, strict=True)
    ]
    study = study_summary(tables)
    with atomic_output(out_csv, "rule study_summary") as tmp:
        study.to_csv(tmp, index=False)
    with atomic_output(out_md) as tmp:
        tmp.write_text(study_markdown(study))
    if out_png is not None:
        overview_figure(study, out_png)
    log.info("study summary of %d settings written to %s", len(tables), out_csv)
    return study
