"""Figures of the study: accuracy, loss, memorisation and frequency curves per training mode.

Every public ``plot_*`` function reads the tidy CSV(s) written by :mod:`selfdistill.aggregate`, draws one figure
for one (dataset, noise) setting and writes one PNG atomically (via :func:`selfdistill.io.atomic_output`), so a
crash never leaves a half-written image under the final name. Curves are means over seeds with a ±1 sd band
(no band for a single seed). Each mode keeps the same colour in every figure (:func:`mode_palette`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from . import frequency_stats
from .aggregate import per_run_summary
from .io import atomic_output, check_producer, logged_step
from .mode_names import REFERENCE_MODE
from .stats import t_interval

log = logging.getLogger(__name__)

MODE_ORDER = (
    REFERENCE_MODE,
    "self_distill",
    "self_distill_seq",
    "bootstrap_soft",
    "bootstrap_hard",
)
DPI = 130
# inches; the brief caps figures at 12
FIG_WIDTH = 11.0
MAX_DELTA_PANELS = 4
TRAIN_SPLIT = "train_subset"
LABEL_SOURCES = {"labels_clean": "clean labels", "labels_noisy": "noisy labels"}
LABEL_COLOURS = {"labels_clean": "black", "labels_noisy": "tab:red"}
SOURCE_NAMES = {"probs": "softmax probabilities", "logits": "logits"}

PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------------------------------
# helpers (pure, tested)
# --------------------------------------------------------------------------------------------------------------


def mode_palette(modes: Sequence[str] = ()) -> dict[str, tuple]:
    """Colour per mode, fixed by the canonical order so a mode looks the same in every figure.

    Modes outside :data:`MODE_ORDER` get the next colours of the palette in the order given.
    """
    extra = [m for m in dict.fromkeys(modes) if m not in MODE_ORDER]
    colours = sns.color_palette("colorblind", len(MODE_ORDER) + len(extra))
    return {m: colours[i] for i, m in enumerate(list(MODE_ORDER) + extra)}


def ordered_modes(present: Sequence[str], mode_order: Sequence[str] | None = None) -> list[str]:
    """Modes present in the data, sorted by ``mode_order`` (default canonical); unlisted ones follow, sorted."""
    order = list(mode_order) if mode_order is not None else list(MODE_ORDER)
    present = sorted(set(present))
    listed = [m for m in order if m in present]
    return listed + [m for m in present if m not in listed]


def delta_column(freq: pd.DataFrame) -> str:
    """Column that identifies δ across runs: ``delta_rel`` when every row has it, else the absolute ``delta``."""
    if "delta_rel" in freq.columns and freq["delta_rel"].notna().all() and len(freq):
        return "delta_rel"
    return "delta"


def select_deltas(
    available: Sequence[float],
    requested: Sequence[float] | None = None,
    max_n: int = MAX_DELTA_PANELS,
) -> list[float]:
    """Pick the δ values to plot.

    With ``requested`` None: at most ``max_n`` values spread evenly (by rank) over the sorted available list, ends
    included. Otherwise: for each requested value the nearest available one (ties to the smaller), duplicates
    dropped, request order kept.
    """
    avail = np.unique(np.asarray(available, dtype=float))
    avail = avail[np.isfinite(avail)]
    if avail.size == 0:
        raise ValueError("no δ values available")
    if requested is None:
        if avail.size <= max_n:
            return [float(v) for v in avail]
        idx = np.unique(np.round(np.linspace(0, avail.size - 1, max_n)).astype(int))
        return [float(avail[i]) for i in idx]
    chosen: list[float] = []
    for r in requested:
        # argmin takes the first (smaller) on ties
        v = float(avail[int(np.argmin(np.abs(avail - float(r))))])
        if v not in chosen:
            chosen.append(v)
    return chosen


def middle_delta(available: Sequence[float]) -> float:
    """The middle value of the sorted distinct δ list (the lower middle for an even count)."""
    avail = np.unique(np.asarray(available, dtype=float))
    avail = avail[np.isfinite(avail)]
    if avail.size == 0:
        raise ValueError("no δ values available")
    return float(avail[(avail.size - 1) // 2])


def early_stop_points(hist: pd.DataFrame, col: str) -> pd.DataFrame:
    """Marker positions: each run's early-stop epoch (best noisy val, from ``per_run_summary``) and the mode's
    mean ``col`` over seeds at that epoch, so the marker sits on the plotted mean curve.

    Returns columns mode, seed, early_stop_epoch, ``col``.
    """
    stops = per_run_summary(hist)[["mode", "seed", "early_stop_epoch"]]
    mean = hist.groupby(["mode", "epoch"], as_index=False)[col].mean()
    mean = mean.rename(columns={"epoch": "early_stop_epoch"})
    return stops.merge(mean, on=["mode", "early_stop_epoch"], how="left")


def ratio_difference(freq: pd.DataFrame, key: str, baseline: str = REFERENCE_MODE) -> pd.DataFrame:
    """Per seed, epoch and δ: ratio(mode) − ratio(baseline) for every other mode, paired on the same seed.

    ``freq`` holds the per-epoch rows of one source and split. Seeds or epochs missing from either side are
    dropped. Returns columns mode, seed, epoch, ``key``, diff (empty when the baseline is absent).
    """
    cols = ["mode", "seed", "epoch", key, "diff"]
    base = freq[freq["mode"] == baseline]
    if base.empty:
        return pd.DataFrame(columns=cols)
    on = ["seed", "epoch", key]
    base = base.groupby(on, as_index=False)["ratio"].mean().rename(columns={"ratio": "ratio_base"})
    other = freq[freq["mode"] != baseline].groupby(["mode", *on], as_index=False)["ratio"].mean()
    merged = other.merge(base, on=on, how="inner")
    merged["diff"] = merged["ratio"] - merged["ratio_base"]
    return merged[cols].reset_index(drop=True)


def label_reference(freq: pd.DataFrame, key: str, split: str = TRAIN_SPLIT) -> pd.DataFrame:
    """Ratio of the clean and noisy one-hot label matrices per δ, mean over seeds (columns source, ``key``, ratio).

    Label rows repeat across modes of one seed, so each seed counts once.
    """
    rows = freq[freq["source"].isin(list(LABEL_SOURCES)) & (freq["split"] == split)]
    per_seed = rows.groupby(["source", key, "seed"], as_index=False)["ratio"].mean()
    return per_seed.groupby(["source", key], as_index=False)["ratio"].mean()


def last_epoch_rows(freq: pd.DataFrame) -> pd.DataFrame:
    """The rows of network outputs at each run's last recorded epoch (label rows dropped), integer epochs."""
    out = frequency_stats.last_epoch_rows(freq).reset_index(drop=True)
    return out.assign(epoch=out["epoch"].astype(int))


def mean_sd(data: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Mean, sample sd (NaN for one seed) and seed count of ``y`` per ``x`` over the rows (seeds) of each ``x``;
    a seed with several rows at one ``x`` counts once (its mean)."""
    per_seed = data.groupby([x, "seed"], as_index=False)[y].mean()
    return per_seed.groupby(x)[y].agg(mean="mean", sd="std", n="count").reset_index()


#: the three test accuracies of :func:`selfdistill.aggregate.per_run_summary`: column and bar label
ACCURACY_PROTOCOLS = (
    ("last_test_acc", "last epoch"),
    ("early_stop_test_acc", "early-stopped (best noisy val)"),
    ("oracle_test_acc", "oracle (best test epoch)"),
)


def accuracy_protocols(hist: pd.DataFrame) -> pd.DataFrame:
    """Per run and protocol, the test accuracy (long table: mode, seed, protocol, test_acc), from
    :func:`selfdistill.aggregate.per_run_summary`. Without a validation split (no run has a ``val_acc`` value) there
    is no early-stopped accuracy and that protocol is left out."""
    if "val_acc" not in hist.columns:
        hist = hist.assign(val_acc=np.nan)
    runs = per_run_summary(hist)
    protocols = [(col, name) for col, name in ACCURACY_PROTOCOLS if runs[col].notna().any()]
    frames = [runs[["mode", "seed"]].assign(protocol=name, test_acc=runs[col]) for col, name in protocols]
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------------------------
# shared drawing plumbing
# --------------------------------------------------------------------------------------------------------------


def _style():
    """Context managers equivalent to ``sns.set_theme(style="whitegrid", context="paper")``, applied locally."""
    return sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.15)


def _setting_title(df: pd.DataFrame) -> str:
    """'dataset · noise noise' for the suptitle; refuses a table that mixes settings."""
    settings = df[["dataset", "noise"]].drop_duplicates()
    if len(settings) != 1:
        pairs = ", ".join(f"{d}/{n}" for d, n in settings.itertuples(index=False))
        raise ValueError(f"expected one (dataset, noise) setting per figure, got {len(settings)}: {pairs}")
    dataset, noise = settings.iloc[0]
    return f"{dataset} · noise: {noise}"


def _n_seeds_text(df: pd.DataFrame) -> str:
    """'mean ± sd over N seeds' (or the per-mode range), for the suptitle."""
    counts = df.groupby("mode")["seed"].nunique()
    lo, hi = int(counts.min()), int(counts.max())
    n = str(lo) if lo == hi else f"{lo}–{hi}"
    return "1 seed (no sd band)" if hi == 1 else f"mean ± sd over {n} seeds"


def _save(fig: plt.Figure, out_png: PathLike) -> None:
    """Write the figure atomically as PNG and close it."""
    try:
        with atomic_output(out_png) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)


def _lines(ax, data, y, modes, palette, **kw) -> None:
    """Mean ± sd over seeds of ``y`` against epoch, one line per mode."""
    sns.lineplot(
        data=data,
        x="epoch",
        y=y,
        hue="mode",
        hue_order=modes,
        palette=palette,
        estimator="mean",
        errorbar="sd",
        legend=False,
        ax=ax,
        **kw,
    )
    ax.set_xlabel("epoch")
    _integer_epochs(ax)


def _integer_epochs(ax) -> None:
    """Integer epoch ticks (matters for runs with only a few epochs)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _epoch_tick_columns(epochs: Sequence[int], max_ticks: int = 10) -> np.ndarray:
    """Heat-map column indices to label: the columns nearest to round epoch numbers, at most ~``max_ticks``."""
    epochs = np.asarray(epochs, dtype=float)
    if epochs.size <= max_ticks:
        return np.arange(epochs.size)
    nice = MaxNLocator(nbins=max_ticks - 1, integer=True).tick_values(epochs.min(), epochs.max())
    nice = nice[(nice >= epochs.min()) & (nice <= epochs.max())]
    return np.unique([int(np.argmin(np.abs(epochs - v))) for v in nice])


def _mode_handles(modes, palette) -> list[Line2D]:
    """Legend handles, one coloured line per mode."""
    return [Line2D([], [], color=palette[m], lw=2, label=m) for m in modes]


def _fig_legend(fig, handles, ncol=None) -> None:
    """One legend for the whole figure, centred under the panels."""
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=ncol or min(len(handles), 6),
        frameon=False,
    )


def _read_histories(histories_csv: PathLike, mode_order) -> tuple[pd.DataFrame, list[str], dict]:
    """Histories table, the modes to draw (ordered) and the palette."""
    check_producer(histories_csv)
    hist = pd.read_csv(histories_csv)
    if hist.empty:
        raise ValueError(f"{histories_csv}: no rows")
    modes = ordered_modes(hist["mode"].unique(), mode_order)
    hist = hist[hist["mode"].isin(modes)]
    return hist, modes, mode_palette(modes)


def _percent(df: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    """Copy with fraction columns rescaled to percent."""
    out = df.copy()
    for c in cols:
        out[c] = 100 * out[c]
    return out


# --------------------------------------------------------------------------------------------------------------
# training-history figures
# --------------------------------------------------------------------------------------------------------------


def _history_figure(
    histories_csv: PathLike,
    out_png: PathLike,
    mode_order: Sequence[str] | None,
    panels: Sequence[tuple[str, str, str]],
    what: str,
    percent: bool = False,
    sharey: bool = False,
    decorate=None,
    extra_handles: Sequence[Line2D] = (),
) -> None:
    """Side-by-side panels of history columns vs epoch, one mean ± sd line per mode.

    ``panels`` holds (column, panel title, y label); ``decorate(ax, data, column, modes, palette)`` may add to
    each panel after its lines are drawn.
    """
    hist, modes, palette = _read_histories(histories_csv, mode_order)
    data = _percent(hist, [col for col, _, _ in panels]) if percent else hist
    axes_style, context = _style()
    with axes_style, context:
        fig, axes = plt.subplots(1, len(panels), figsize=(FIG_WIDTH, 4.2), sharex=True, sharey=sharey)
        for ax, (col, panel_title, ylabel) in zip(axes, panels, strict=True):
            _lines(ax, data, col, modes, palette)
            if decorate is not None:
                decorate(ax, data, col, modes, palette)
            ax.set_title(panel_title)
            ax.set_ylabel(ylabel)
            ax.tick_params(labelleft=True)
        _fig_legend(fig, _mode_handles(modes, palette) + list(extra_handles))
        fig.suptitle(f"{_setting_title(hist)} — {what}, {_n_seeds_text(hist)}")
        fig.tight_layout()
        _save(fig, out_png)


def _mark_early_stops(ax, data, col, modes, palette) -> None:
    """A ▼ on each mode's mean curve at every seed's early-stopping epoch."""
    points = early_stop_points(data, col)
    for m in modes:
        pts = points[points["mode"] == m]
        ax.scatter(
            pts["early_stop_epoch"],
            pts[col],
            marker="v",
            s=55,
            color=palette[m],
            edgecolor="black",
            linewidth=0.6,
            zorder=5,
        )


def plot_accuracy(histories_csv: PathLike, out_png: PathLike, mode_order: Sequence[str] | None = None) -> None:
    """Test and noisy-validation accuracy per mode vs epoch, with each seed's early-stopping epoch marked.

    The early-stopping epoch is the best noisy-validation epoch (docs/science.md, "Evaluation protocol", ties → earliest); a ▼ sits on the
    mode's mean curve at each seed's early-stop epoch, in both panels.
    """
    marker = Line2D(
        [],
        [],
        ls="",
        marker="v",
        markersize=7,
        color="grey",
        markeredgecolor="black",
        label="early stop (best noisy val), one per seed",
    )
    _history_figure(
        histories_csv,
        out_png,
        mode_order,
        panels=[
            ("test_acc", "test accuracy", "test accuracy (%, clean labels)"),
            (
                "val_acc",
                "noisy validation accuracy (early-stopping signal)",
                "validation accuracy (%, noisy labels)",
            ),
        ],
        what="accuracy",
        percent=True,
        decorate=_mark_early_stops,
        extra_handles=[marker],
    )


def plot_loss(histories_csv: PathLike, out_png: PathLike, mode_order: Sequence[str] | None = None) -> None:
    """Training loss (each mode's own objective, on noisy targets) and test loss per mode vs epoch."""
    _history_figure(
        histories_csv,
        out_png,
        mode_order,
        panels=[
            (
                "train_loss",
                "training loss",
                "training loss (mode's objective, noisy targets)",
            ),
            ("test_loss", "test loss", "test loss (cross-entropy, clean labels)"),
        ],
        what="loss",
    )


def plot_memorization(histories_csv: PathLike, out_png: PathLike, mode_order: Sequence[str] | None = None) -> None:
    """Share of noisy-labelled training samples predicted as their noisy label (memorised) or clean label."""
    ylabel = "% of noisy-labelled training samples"
    _history_figure(
        histories_csv,
        out_png,
        mode_order,
        panels=[
            ("memorized", "memorised: predicted = noisy label", ylabel),
            ("corrected", "corrected: predicted = clean label", ylabel),
        ],
        what="memorisation of wrong labels",
        percent=True,
        sharey=True,
    )


# --------------------------------------------------------------------------------------------------------------
# frequency figures
# --------------------------------------------------------------------------------------------------------------


def _read_frequency(frequency_csv: PathLike, source: str, mode_order):
    """The opening of both frequency figures: the training-subset rows of ``source`` (epochs as int), the
    label-reference rows, the δ key column, the modes to draw (ordered), their palette and the setting's title."""
    check_producer(frequency_csv)
    freq = pd.read_csv(frequency_csv)
    title = _setting_title(freq)
    epochs = freq[freq["source"] == source]
    if epochs.empty:
        have = sorted(freq["source"].unique())
        raise ValueError(f"{frequency_csv}: no rows with source={source!r} (have {have})")
    key = delta_column(epochs)
    modes = ordered_modes(epochs["mode"].unique(), mode_order)
    epochs = epochs[epochs["mode"].isin(modes)].copy()
    epochs["epoch"] = epochs["epoch"].astype(int)
    train = epochs[epochs["split"] == TRAIN_SPLIT]
    if train.empty:
        raise ValueError(f"{frequency_csv}: no {TRAIN_SPLIT} rows for source={source!r}")
    labels = freq[freq["source"].isin(list(LABEL_SOURCES))]
    return train, labels, key, modes, mode_palette(modes), title


def _delta_text(key: str, value: float, rows: pd.DataFrame) -> str:
    """Panel label for one δ; for relative δ also the mean absolute width."""
    if key == "delta_rel":
        absolute = rows.loc[np.isclose(rows[key], value), "delta"].mean()
        return f"δ_rel = {value:.3g} (δ ≈ {absolute:.3g})"
    return f"δ = {value:.3g}"


def _label_handles(present) -> list[Line2D]:
    """Legend handles of the dashed label-matrix references, for the label sources in ``present``."""
    return [
        Line2D([], [], color=LABEL_COLOURS[s], ls="--", lw=1.2, label=f"ratio of {n}")
        for s, n in LABEL_SOURCES.items()
        if s in present
    ]


def _ratio_panel(ax, rows: pd.DataFrame, key: str, value: float, refs: pd.DataFrame, modes, palette) -> None:
    """One δ of the ratio figure's top row: the modes' ratio vs epoch and the label matrices' ratios (dashed)."""
    _lines(ax, rows, "ratio", modes, palette)
    for src in LABEL_SOURCES:
        ref = refs[(refs["source"] == src) & np.isclose(refs[key].astype(float), value)]
        if not ref.empty:
            ax.axhline(
                float(ref["ratio"].iloc[0]),
                color=LABEL_COLOURS[src],
                ls="--",
                lw=1.2,
            )


def _ratio_difference_panel(ax, diffs: pd.DataFrame, key: str, value: float, modes, palette, first: bool) -> None:
    """One δ of the ratio figure's bottom row: ratio(mode) − ratio(ce) vs epoch, ce's zero line."""
    d = diffs[np.isclose(diffs[key], value)]
    _lines(ax, d, "diff", modes, palette)
    ax.axhline(0.0, color=palette[REFERENCE_MODE], lw=1.2)
    ax.set_ylabel("ratio(mode) − ratio(ce)" if first else "")


def plot_frequency_ratio(
    frequency_csv: PathLike,
    out_png: PathLike,
    deltas: Sequence[float] | None = None,
    mode_order: Sequence[str] | None = None,
    source: str = "probs",
) -> None:
    """Low-frequency energy fraction of the network's outputs on the training subset, per mode and δ.

    Top row: ratio vs epoch (one panel per δ) with the clean and noisy label matrices' ratios as dashed
    references. Bottom row (only when ``ce`` is present): ratio(mode) − ratio(ce), paired by seed.
    ``deltas`` are matched to the nearest available value of ``delta_rel`` (when present) or ``delta``.
    """
    train, labels, key, modes, palette, title = _read_frequency(frequency_csv, source, mode_order)
    chosen = select_deltas(train[key].unique(), deltas)
    refs = label_reference(labels, key) if key in labels.columns else pd.DataFrame(columns=["source", key, "ratio"])
    diffs = ratio_difference(train, key)
    diff_modes = [m for m in modes if m != REFERENCE_MODE and m in set(diffs["mode"])]
    n_rows = 2 if diff_modes else 1
    n_cols = len(chosen)
    axes_style, context = _style()
    with axes_style, context:
        fig, axes = plt.subplots(
            n_rows,
            n_cols,
            figsize=(min(FIG_WIDTH, 3.0 * n_cols + 1.0), 3.4 * n_rows + 0.4),
            sharex=True,
            squeeze=False,
            gridspec_kw={"height_ratios": [1.3, 1.0][:n_rows]},
        )
        for j, value in enumerate(chosen):
            ax = axes[0, j]
            rows = train[np.isclose(train[key], value)]
            _ratio_panel(ax, rows, key, value, refs, modes, palette)
            ax.set_title(_delta_text(key, value, rows))
            ax.set_ylabel("low-frequency energy fraction" if j == 0 else "")
            if n_rows == 2:
                ax.set_xlabel("")
                _ratio_difference_panel(axes[1, j], diffs, key, value, diff_modes, palette, first=j == 0)
        handles = _mode_handles(modes, palette) + _label_handles(set(refs["source"]) if not refs.empty else set())
        _fig_legend(fig, handles, ncol=min(len(handles), 4))
        note = "" if n_rows == 2 else " (no ce runs: difference row skipped)"
        fig.suptitle(
            f"{title} — low-frequency energy fraction of {SOURCE_NAMES.get(source, source)}\n"
            f"training subset, {_n_seeds_text(train)}{note}"
        )
        fig.tight_layout()
        _save(fig, out_png)


def _error_layout(n: int):
    """The frequency-error figure: its height, the figure and its grid (two curve panels, a spacer row, one heat-map
    row per mode)."""
    height = 3.6 + 0.5 + 0.85 * n + 0.9
    fig = plt.figure(figsize=(FIG_WIDTH, height))
    grid = fig.add_gridspec(
        2 + n,
        2,
        height_ratios=[3.6, 0.5] + [0.85] * n,
        hspace=0.3,
        wspace=0.22,
        top=1 - 0.9 / height,
    )
    return height, fig, grid


def _error_heatmap(ax, cax, sub: pd.DataFrame, cols: dict, epochs, vmin, vmax, target: str, first: bool) -> None:
    """One mode's heat map of the frequency-error figure: rows low/high, columns epochs; the first one draws the
    shared colour bar into ``cax``."""
    matrix = pd.DataFrame(
        [
            sub[cols["low"]].reindex(epochs),
            sub[cols["high"]].reindex(epochs),
        ],
        index=["low", "high"],
    ).astype(float)
    sns.heatmap(
        matrix,
        ax=ax,
        cmap="viridis",
        vmin=vmin,
        vmax=vmax,
        cbar=first,
        cbar_ax=cax if first else None,
        cbar_kws={"label": f"e (vs {target} labels)"},
        xticklabels=False,
        yticklabels=True,
    )
    ax.set_yticklabels(["low", "high"], rotation=0)


def _error_heatmaps(fig, grid, per_mode: pd.DataFrame, cols: dict, epochs, modes, palette, target: str) -> None:
    """One heat map per mode under the curves, all on one colour scale with a single colour bar on the right."""
    n = len(modes)
    vmin = float(np.nanmin(per_mode.to_numpy())) if per_mode.size else 0.0
    vmax = float(np.nanmax(per_mode.to_numpy())) if per_mode.size else 1.0
    heat_grid = grid[2:, :].subgridspec(n, 2, width_ratios=[60, 1], hspace=0.25, wspace=0.02)
    cax = fig.add_subplot(heat_grid[:, 1])
    tick_idx = _epoch_tick_columns(epochs)
    for i, m in enumerate(modes):
        ax = fig.add_subplot(heat_grid[i, 0])
        sub = per_mode.loc[m] if m in per_mode.index.get_level_values(0) else pd.DataFrame(columns=cols.values())
        _error_heatmap(ax, cax, sub, cols, epochs, vmin, vmax, target, first=i == 0)
        ax.set_ylabel(m, rotation=0, ha="right", va="center", color=palette[m], fontweight="bold")
        ax.set_xticks(tick_idx + 0.5)
        last = i == n - 1
        ax.set_xticklabels([str(epochs[k]) for k in tick_idx] if last else [], rotation=0)
        ax.set_xlabel("epoch" if last else "")


def plot_frequency_error(
    frequency_csv: PathLike,
    out_png: PathLike,
    delta: float | None = None,
    mode_order: Sequence[str] | None = None,
    source: str = "probs",
    target: str = "noisy",
) -> None:
    """Relative error of the low- and high-frequency parts (Xu et al.) on the training subset, for one δ.

    Top: e_low and e_high vs epoch per mode (mean ± sd). Below: Xu et al.'s heat map per mode (rows low/high,
    columns epochs, mean over seeds) on one shared colour scale. ``target`` picks the noisy (default) or clean
    one-hot labels as the reference; ``delta`` defaults to the middle of the available list.
    """
    if target not in ("noisy", "clean"):
        raise ValueError(f"target must be 'noisy' or 'clean', got {target!r}")
    train, _, key, modes, palette, title = _read_frequency(frequency_csv, source, mode_order)
    avail = train[key].unique()
    value = middle_delta(avail) if delta is None else select_deltas(avail, [delta])[0]
    rows = train[np.isclose(train[key], value)]
    cols = {"low": f"e_low_{target}", "high": f"e_high_{target}"}
    per_mode = rows.groupby(["mode", "epoch"])[list(cols.values())].mean()
    all_epochs = sorted(rows["epoch"].unique())
    axes_style, context = _style()
    with axes_style, context:
        height, fig, grid = _error_layout(len(modes))
        ax_low = fig.add_subplot(grid[0, 0])
        ax_high = fig.add_subplot(grid[0, 1], sharex=ax_low)
        for ax, (band, col) in zip((ax_low, ax_high), cols.items(), strict=True):
            _lines(ax, rows, col, modes, palette)
            ax.set_title(f"{band}-frequency error e_{band}")
            ax.set_ylabel(f"‖h_{band} − y_{band}‖ / ‖y_{band}‖")
        _error_heatmaps(fig, grid, per_mode, cols, all_epochs, modes, palette, target)
        _fig_legend(fig, _mode_handles(modes, palette))
        fig.suptitle(
            f"{title} — frequency-resolved error of {SOURCE_NAMES.get(source, source)} vs {target} labels\n"
            f"training subset, {_delta_text(key, value, rows)}; curves: {_n_seeds_text(rows)}; "
            "heat maps: mean over seeds, one colour scale",
            y=1 - 0.05 / height,
            va="top",
        )
        _save(fig, out_png)


def _mode_curves(ax, data: pd.DataFrame, x: str, y: str, modes, palette, **kw) -> dict[str, float]:
    """Mean ± sd over seeds of ``y`` against ``x``, one line (labelled with its mode) per mode; returns each mode's
    mean at its largest ``x``."""
    ends = {}
    for m in modes:
        stats = mean_sd(data[data["mode"] == m], x, y).dropna(subset=["mean"])
        if stats.empty:
            continue
        ax.plot(stats[x], stats["mean"], color=palette[m], lw=1.8, label=m, **kw)
        band = stats.dropna(subset=["sd"])
        if not band.empty:
            ax.fill_between(
                band[x], band["mean"] - band["sd"], band["mean"] + band["sd"], color=palette[m], alpha=0.2, lw=0
            )
        ends[m] = float(stats["mean"].iloc[-1])
    return ends


def _seed_range(df: pd.DataFrame) -> str:
    """'N seeds' (or the per-mode range)."""
    counts = df.groupby("mode")["seed"].nunique()
    lo, hi = int(counts.min()), int(counts.max())
    n = str(lo) if lo == hi else f"{lo}–{hi}"
    return f"{n} seed{'s' if hi > 1 else ''}"


def _last_epoch_outputs(frequency_csv: PathLike, mode_order):
    """The opening of the δ figure: the whole table, the rows of network outputs at each run's last epoch (modes
    drawn only), the δ key column, the modes (ordered), their palette and the setting's title."""
    check_producer(frequency_csv)
    freq = pd.read_csv(frequency_csv)
    title = _setting_title(freq)
    last = last_epoch_rows(freq)
    if last.empty:
        raise ValueError(f"{frequency_csv}: no rows of network outputs")
    key = delta_column(last)
    modes = ordered_modes(last["mode"].unique(), mode_order)
    last = last[last["mode"].isin(modes)]
    return freq, last, key, modes, mode_palette(modes), title


def _panel_order(last: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The δ figure's rows (sources: probabilities, logits, then any other) and columns (splits: training subset,
    test, then any other)."""
    present = set(last["source"])
    sources = [s for s in SOURCE_NAMES if s in present] + sorted(present - set(SOURCE_NAMES))
    splits = [s for s in (TRAIN_SPLIT, "test") if s in set(last["split"])]
    splits += sorted(set(last["split"]) - set(splits))
    return sources, splits


def _by_delta_panel(ax, rows: pd.DataFrame, labels: pd.DataFrame, key: str, split: str, modes, palette) -> None:
    """One (source, split) panel of the δ figure: the modes' last-epoch ratio against δ and the label matrices'
    ratios (dashed), on a log δ axis."""
    _mode_curves(ax, rows, key, "ratio", modes, palette, marker="o", ms=4)
    refs = label_reference(labels, key, split) if key in labels.columns else pd.DataFrame()
    for src in LABEL_SOURCES:
        ref = refs[refs["source"] == src].sort_values(key) if not refs.empty else refs
        if not ref.empty:
            ax.plot(ref[key], ref["ratio"], color=LABEL_COLOURS[src], ls="--", lw=1.2, label=src)
    ax.set_xscale("log")


def plot_frequency_by_delta(
    frequency_csv: PathLike,
    out_png: PathLike,
    mode_order: Sequence[str] | None = None,
) -> None:
    """Low-frequency energy fraction of the network's outputs at each run's last epoch against δ (log scale).

    One line per mode (mean ± sd over seeds), with the ratio of the clean and noisy one-hot label matrices as dashed
    references (the test split has no noisy labels); one panel per source (rows) and split (columns) present.
    """
    freq, last, key, modes, palette, title = _last_epoch_outputs(frequency_csv, mode_order)
    labels = freq[freq["source"].isin(list(LABEL_SOURCES))]
    sources, splits = _panel_order(last)
    epochs = sorted(last["epoch"].unique())
    epoch_text = f"epoch {epochs[0]}" if len(epochs) == 1 else "each run's last epoch"
    split_names = {TRAIN_SPLIT: "training subset", "test": "test split"}
    axes_style, context = _style()
    with axes_style, context:
        fig, axes = plt.subplots(
            len(sources),
            len(splits),
            figsize=(FIG_WIDTH, 3.6 * len(sources) + 0.6),
            sharex=True,
            sharey="row",
            squeeze=False,
        )
        for i, source in enumerate(sources):
            for j, split in enumerate(splits):
                ax = axes[i, j]
                rows = last[(last["source"] == source) & (last["split"] == split)]
                _by_delta_panel(ax, rows, labels, key, split, modes, palette)
                ax.set_title(f"{split_names.get(split, split)} · {SOURCE_NAMES.get(source, source)}")
                ax.set_ylabel("low-frequency energy fraction" if j == 0 else "")
                ax.tick_params(labelleft=True)
                last_row = i == len(sources) - 1
                ax.set_xlabel(("δ / median squared distance" if key == "delta_rel" else "δ") if last_row else "")
        handles = _mode_handles(modes, palette) + _label_handles(set(labels["source"]))
        _fig_legend(fig, handles, ncol=min(len(handles), 5))
        fig.suptitle(
            f"{title} — low-frequency energy fraction at {epoch_text} against the filter width δ\n"
            f"{_n_seeds_text(last)}; dashed: the same fraction of the one-hot label matrices"
        )
        fig.tight_layout()
        _save(fig, out_png)


def plot_frequency_clean_vs_noisy(
    frequency_csv: PathLike,
    out_png: PathLike,
    delta: float | None = None,
    mode_order: Sequence[str] | None = None,
    source: str = "probs",
) -> None:
    """e_low and e_high of the outputs on the training subset against the noisy (left) and the clean (right) one-hot
    labels, per mode vs epoch (mean ± sd over seeds), for one δ (nearest available; default the middle one).

    Each panel's legend gives every mode's mean at the last epoch.
    """
    train, _, key, modes, palette, title = _read_frequency(frequency_csv, source, mode_order)
    avail = train[key].unique()
    value = middle_delta(avail) if delta is None else select_deltas(avail, [delta])[0]
    rows = train[np.isclose(train[key], value)]
    axes_style, context = _style()
    with axes_style, context:
        fig, axes = plt.subplots(2, 2, figsize=(FIG_WIDTH, 7.4), sharex=True, sharey="row")
        for i, band in enumerate(("low", "high")):
            for j, target in enumerate(("noisy", "clean")):
                ax = axes[i, j]
                ends = _mode_curves(ax, rows, "epoch", f"e_{band}_{target}", modes, palette)
                ax.legend(
                    handles=[Line2D([], [], color=palette[m], lw=1.8, label=f"{m}: {v:.2f}") for m, v in ends.items()],
                    title="last epoch",
                    loc="best",
                    fontsize="small",
                    title_fontsize="small",
                )
                ax.set_title(f"e_{band} against the {target.upper()} labels")
                ax.set_ylabel(f"‖h_{band} − y_{band}‖ / ‖y_{band}‖" if j == 0 else "")
                ax.tick_params(labelleft=True)
                ax.set_xlabel("epoch" if i == 1 else "")
                _integer_epochs(ax)
        _fig_legend(fig, _mode_handles(modes, palette))
        fig.suptitle(
            f"{title} — frequency-resolved error of {SOURCE_NAMES.get(source, source)}: noisy vs clean targets\n"
            f"training subset, {_delta_text(key, value, rows)}; {_n_seeds_text(rows)}"
        )
        fig.tight_layout()
        _save(fig, out_png)


#: bar style per protocol (alpha, hatch): the mode's colour, solid for the last epoch
PROTOCOL_STYLE = {
    "last epoch": (1.0, None),
    "early-stopped (best noisy val)": (0.55, "//"),
    "oracle (best test epoch)": (0.25, ".."),
}
EARLY_STOPPED = "early-stopped (best noisy val)"


def _bar_mean_label(ax, x: float, top: float, mean: float) -> None:
    """The mean's value just above a bar's top (its error bar or highest seed)."""
    ax.annotate(
        f"{mean:.1f}",
        (x, top),
        xytext=(0, 3),
        textcoords="offset points",
        ha="center",
        va="bottom",
        fontsize="small",
        bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
        zorder=6,
    )


def _protocol_bars(ax, sub: pd.DataFrame, name: str, xs: np.ndarray, width: float, modes, palette) -> list[float]:
    """One stopping rule's bars (one per mode): mean over seeds, ±1 sd error bar, one dot per seed, the mean's
    value on top. Returns each bar's top."""
    alpha, hatch = PROTOCOL_STYLE[name]
    stats = sub.groupby("mode")["test_acc"].agg(mean="mean", sd="std").reindex(modes)
    ax.bar(
        xs,
        stats["mean"],
        width * 0.92,
        color=[(*palette[m][:3], alpha) for m in modes],
        edgecolor="black",
        linewidth=0.7,
        hatch=hatch,
        label=name,
        zorder=2,
    )
    # no error bar where one seed leaves the sd undefined (a zero-length bar would suggest certainty)
    has_sd = stats["sd"].notna().to_numpy()
    if has_sd.any():
        ax.errorbar(xs[has_sd], stats["mean"][has_sd], yerr=stats["sd"][has_sd], fmt="none", ecolor="black",
                    capsize=3, lw=1, zorder=3)  # fmt: skip
    sd = stats["sd"].fillna(0.0)
    tops = []
    for xi, m in zip(xs, modes, strict=True):
        seeds = sub[sub["mode"] == m]["test_acc"].to_numpy()
        jitter = np.linspace(-0.25, 0.25, seeds.size) * width if seeds.size > 1 else np.zeros(1)
        ax.scatter(xi + jitter[: seeds.size], seeds, s=12, color="black", zorder=4, lw=0)
        top = np.nanmax([stats.loc[m, "mean"] + sd[m], *seeds]) if seeds.size else np.nan
        tops.append(top)
        if np.isfinite(stats.loc[m, "mean"]):
            _bar_mean_label(ax, xi, top, stats.loc[m, "mean"])
    return tops


def _bars_legend_handles(ax, acc: pd.DataFrame, protocols, palette) -> list:
    """Legend handles of the bar figure: one grey patch per stopping rule, the seed dot and, when there is a
    validation split, early-stopped ce's mean, which is drawn here as a dashed line across the panel."""
    handles = [
        Patch(facecolor=(0.5, 0.5, 0.5, PROTOCOL_STYLE[n][0]), edgecolor="black", hatch=PROTOCOL_STYLE[n][1], label=n)
        for n in protocols
    ]
    handles.append(Line2D([], [], ls="", marker="o", ms=4, color="black", label="one seed"))
    ce_early = acc[(acc["mode"] == REFERENCE_MODE) & (acc["protocol"] == EARLY_STOPPED)]["test_acc"].mean()
    if np.isfinite(ce_early):
        ax.axhline(ce_early, color=palette[REFERENCE_MODE], ls="--", lw=1.2, zorder=1)
        handles.append(
            Line2D(
                [], [], color=palette[REFERENCE_MODE], ls="--", lw=1.2, label=f"early-stopped {REFERENCE_MODE} (mean)"
            )
        )
    return handles


def plot_accuracy_bars(histories_csv: PathLike, out_png: PathLike, mode_order: Sequence[str] | None = None) -> None:
    """Test accuracy at the last, early-stopped (best noisy val) and oracle (best test) epoch per mode: grouped
    bars of the mean over seeds with ±1 sd error bars and one dot per seed; the dashed line is early-stopped ce, the
    accuracy a mode's last epoch has to reach. Without a validation split only the last and oracle bars are drawn.
    """
    hist, modes, palette = _read_histories(histories_csv, mode_order)
    title = _setting_title(hist)
    acc = _percent(accuracy_protocols(hist), ["test_acc"])
    protocols = [name for _, name in ACCURACY_PROTOCOLS if name in set(acc["protocol"])]
    width = 0.8 / len(protocols)
    x = np.arange(len(modes))
    axes_style, context = _style()
    with axes_style, context:
        fig, ax = plt.subplots(figsize=(min(FIG_WIDTH, 2.2 * len(modes) + 3.0), 4.8))
        tops = []
        for k, name in enumerate(protocols):
            xs = x + (k - (len(protocols) - 1) / 2) * width
            tops += _protocol_bars(ax, acc[acc["protocol"] == name], name, xs, width, modes, palette)
        handles = _bars_legend_handles(ax, acc, protocols, palette)
        ax.set_xticks(x, modes)
        for tick, m in zip(ax.get_xticklabels(), modes, strict=True):
            tick.set_color(palette[m])
            tick.set_fontweight("bold")
        ax.set_ylim(0, min(110.0, float(np.nanmax(tops)) + 9))
        ax.set_ylabel("test accuracy (%, clean labels)")
        _fig_legend(fig, handles, ncol=min(len(handles), 3))
        note = (
            ""
            if EARLY_STOPPED in protocols
            else "\nno validation split: no early-stopping signal, so no early-stopped bar"
        )
        fig.suptitle(f"{title} — test accuracy by stopping rule, mean ± sd over {_seed_range(acc)}{note}")
        fig.tight_layout()
        _save(fig, out_png)


# --------------------------------------------------------------------------------------------------------------
# memorisation by local label agreement
# --------------------------------------------------------------------------------------------------------------


def interval_by(data: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Mean and 95% t-interval over seeds (:func:`selfdistill.stats.t_interval`; NaN bounds for one seed) of ``y``
    per ``x``; a seed's NaN (an empty quintile) is left out."""
    rows = []
    for value, group in data.groupby(x, sort=True):
        interval = t_interval(group[y].tolist())
        rows.append({x: value, "mean": interval.mean, "low": interval.low, "high": interval.high, "n": interval.n})
    return pd.DataFrame(rows, columns=[x, "mean", "low", "high", "n"])


def plot_memorisation_by_agreement(
    memorisation_csv: PathLike, out_png: PathLike, mode_order: Sequence[str] | None = None
) -> None:
    """Share of the noisy samples memorised by the last epoch (%) against their agreement quintile, one line per
    mode, mean over seeds with a 95% t-interval band."""
    check_producer(memorisation_csv)
    table = pd.read_csv(memorisation_csv)
    if table.empty:
        raise ValueError(f"{memorisation_csv}: no rows")
    title = _setting_title(table)
    modes = ordered_modes(table["mode"].unique(), mode_order)
    palette = mode_palette(modes)
    table = _percent(table[table["mode"].isin(modes)], ["share_memorised"])
    widths = ", ".join(f"{d:g}" for d in sorted(table["delta_config"].unique()))
    axes_style, context = _style()
    with axes_style, context:
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        for m in modes:
            stats = interval_by(table[table["mode"] == m], "quintile", "share_memorised").dropna(subset=["mean"])
            ax.plot(stats["quintile"], stats["mean"], color=palette[m], lw=1.8, marker="o", label=m)
            band = stats.dropna(subset=["low"])
            if not band.empty:
                ax.fill_between(band["quintile"], band["low"], band["high"], color=palette[m], alpha=0.2, lw=0)
        ax.set_xticks(list(range(1, 6)), ["q1\nlowest", "q2", "q3", "q4", "q5\nhighest"])
        ax.set_xlabel("local label agreement of the noisy sample (quintile)")
        ax.set_ylabel("memorised by the last epoch (%)")
        ax.set_ylim(-2, 102)
        ax.legend(loc="best", frameon=False)
        fig.suptitle(
            f"{title} — noisy labels memorised by local label agreement (δ = {widths})\n"
            f"mean over {_seed_range(table)}, band: 95% t-interval over seeds"
        )
        fig.tight_layout()
        _save(fig, out_png)


#: Every figure's drawing function, by its name: the ``plot_*`` functions of this module. The figure table
#: (:mod:`selfdistill.figure_table`) names the one each figure calls; this module does not read the table, so editing a
#: caption reruns no figure.
# --------------------------------------------------------------------------------------------------------------
# spectrum figures (selfdistill.spectrum)
# --------------------------------------------------------------------------------------------------------------

SPECTRUM_TARGETS = ("noisy", "clean")


def _read_spectrum_table(path: PathLike, mode_order):
    """A spectrum table of one setting, the modes to draw (ordered), their palette and the setting's title."""
    check_producer(path)
    table = pd.read_csv(path)
    if table.empty:
        raise ValueError(f"{path}: no rows")
    modes = ordered_modes(table["mode"].unique(), mode_order)
    return table[table["mode"].isin(modes)], modes, mode_palette(modes), _setting_title(table)


def _space_text(table: pd.DataFrame) -> str:
    """'input space, δ 0.1' for a title: the kernel's space and configured width."""
    spaces = ", ".join(sorted(set(table["space"].astype(str))))
    deltas = ", ".join(f"{d:g}" for d in sorted(set(table["delta_config"])))
    return f"kernel in {spaces} space, δ {deltas}"


def plot_spectrum_error(spectrum_csv: PathLike, out_png: PathLike, mode_order: Sequence[str] | None = None) -> None:
    """Heat maps of the relative error per band (rows, 1 = lowest frequency) and stored epoch (columns), mean over
    seeds: one column of panels per mode, rows for the noisy and the clean labels, one colour scale per row."""
    table, modes, palette, title = _read_spectrum_table(spectrum_csv, mode_order)
    epochs = sorted(table["epoch"].astype(int).unique())
    mean = table.groupby(["target", "mode", "band", "epoch"])["rel_error"].mean()
    axes_style, context = _style()
    with axes_style, context:
        fig, axes = plt.subplots(
            len(SPECTRUM_TARGETS), len(modes), figsize=(FIG_WIDTH, 2.8 * len(SPECTRUM_TARGETS) + 1), squeeze=False
        )
        tick_idx = _epoch_tick_columns(epochs)
        for r, target in enumerate(SPECTRUM_TARGETS):
            values = mean.loc[target] if target in mean.index.get_level_values(0) else pd.Series(dtype=float)
            finite = values[np.isfinite(values)]
            vmax = float(np.quantile(finite, 0.98)) if len(finite) else 1.0
            for c, mode in enumerate(modes):
                ax = axes[r, c]
                sub = values.loc[mode].unstack("epoch").reindex(columns=epochs) if mode in values.index else None
                if sub is None:
                    ax.set_axis_off()
                    continue
                sns.heatmap(sub, ax=ax, cmap="viridis", vmin=0.0, vmax=vmax, cbar=c == len(modes) - 1,
                            cbar_kws={"label": f"relative error vs {target}"}, xticklabels=False)  # fmt: skip
                ax.set_xticks(tick_idx + 0.5)
                ax.set_xticklabels([str(epochs[k]) for k in tick_idx], rotation=0)
                ax.set_xlabel("epoch")
                ax.set_ylabel(f"band (vs {target} labels)" if c == 0 else "")
                ax.set_title(mode, color=palette[mode], fontweight="bold")
        fig.suptitle(
            f"{title} — relative error ‖P_b(h − y)‖ / ‖P_b y‖ per frequency band (1 = lowest)\n"
            f"training subset, softmax outputs, {_space_text(table)}; mean over seeds"
        )
        fig.tight_layout()
        _save(fig, out_png)


def plot_noise_spectrum(
    spectrum_energy_csv: PathLike, out_png: PathLike, mode_order: Sequence[str] | None = None
) -> None:
    """Share of the energy of the clean one-hot labels and of the label noise (noisy − clean) per band, mean ± sd
    over seeds (one row per seed: every mode of a seed has the same labels and kernel)."""
    table, _, _, title = _read_spectrum_table(spectrum_energy_csv, mode_order)
    per_seed = table.drop_duplicates(["seed", "band"])
    long = per_seed.melt(id_vars=["seed", "band"], value_vars=["clean_share", "noise_share"], var_name="what")
    long["what"] = long["what"].map({"clean_share": "clean labels", "noise_share": "label noise (noisy − clean)"})
    axes_style, context = _style()
    with axes_style, context:
        fig, ax = plt.subplots(figsize=(FIG_WIDTH * 0.7, 4.2))
        sns.barplot(data=long, x="band", y="value", hue="what", errorbar="sd", ax=ax,
                    palette={"clean labels": "black", "label noise (noisy − clean)": "tab:red"})  # fmt: skip
        ax.set_xlabel("frequency band (1 = lowest, equal counts of eigenvectors)")
        ax.set_ylabel("share of ‖f‖² in the band")
        ax.legend(title=None, frameon=False)
        n = per_seed["seed"].nunique()
        fig.suptitle(f"{title} — where the labels and the label noise live\n{_space_text(table)}; {n} seed(s)")
        fig.tight_layout()
        _save(fig, out_png)


def plot_spectrum_convergence(
    spectrum_convergence_csv: PathLike, out_png: PathLike, mode_order: Sequence[str] | None = None
) -> None:
    """The epoch at which each band's error makes 50% (top) and 90% (bottom) of its drop against the band, per mode
    (mean ± sd over seeds), against the noisy (left) and the clean (right) labels; the legend gives each mode's mean
    Spearman ρ (ρ > 0: low frequencies first)."""
    table, modes, palette, title = _read_spectrum_table(spectrum_convergence_csv, mode_order)
    fractions = sorted(table["q"].unique())
    axes_style, context = _style()
    with axes_style, context:
        fig, axes = plt.subplots(len(fractions), len(SPECTRUM_TARGETS), figsize=(FIG_WIDTH, 3.4 * len(fractions)),
                                 squeeze=False, sharex=True)  # fmt: skip
        for r, q in enumerate(fractions):
            for c, target in enumerate(SPECTRUM_TARGETS):
                ax, rows = axes[r, c], table[(table["q"] == q) & (table["target"] == target)]
                rho = rows.drop_duplicates(["seed", "mode"]).groupby("mode")["rho"].mean()
                for mode in modes:
                    sub = rows[rows["mode"] == mode]
                    if sub["epoch"].notna().any():
                        sns.lineplot(data=sub, x="band", y="epoch", color=palette[mode], errorbar="sd", marker="o",
                                     ax=ax, label=f"{mode} (ρ {rho.get(mode, np.nan):+.2f})")  # fmt: skip
                ax.set_title(f"{int(q * 100)}% of the drop, vs {target} labels")
                ax.set_ylabel("epoch")
                ax.set_xlabel("frequency band (1 = lowest)")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                if ax.get_legend() is not None:
                    ax.legend(frameon=False, fontsize="small")
        fig.suptitle(f"{title} — convergence epoch per frequency band\n{_n_seeds_text(table)}")
        fig.tight_layout()
        _save(fig, out_png)


PLOTTERS = {name: fn for name, fn in sorted(globals().items()) if name.startswith("plot_") and callable(fn)}


def plotter(name: str):
    """The drawing function ``name`` (a key of :data:`PLOTTERS`), as the figure table names it."""
    if name not in PLOTTERS:
        raise ValueError(f"unknown plotter {name!r}; selfdistill.figures has: {', '.join(PLOTTERS)}")
    return PLOTTERS[name]


@logged_step
def plot(
    plotter_name: str,
    in_csv: PathLike,
    out_png: PathLike,
    log_path: PathLike | None = None,
    **options,
) -> None:
    """Pipeline step: draw a figure with the plotter ``plotter_name`` (a key of :data:`PLOTTERS`) from its CSV into
    ``out_png``; ``options`` are the plotter's keyword arguments."""
    plotter(plotter_name)(in_csv, out_png, **options)
    log.info("wrote %s", out_png)
