"""The convergence order over the spectrum, per run and paired over seeds
(docs/science.md, "Frequency spectrum and convergence order").

Per run, target (noisy, clean labels) and fraction q (50%, 90%): each band's convergence epoch
(:func:`selfdistill.spectrum.convergence_epoch`) and Spearman's ρ between the band index (1 = lowest frequency) and
that epoch. ρ > 0 means higher bands converge later: low frequencies first. Over seeds, per mode: the mean ρ with its
95% t-interval and a verdict in the words of :mod:`selfdistill.stats` (an interval above 0: low frequencies first;
below 0: high frequencies first; a ρ that cannot be computed is "cannot compute", never "no difference"); and each
mode's ρ minus the reference mode's, paired by seed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .aggregate import concat_runs
from .io import atomic_output, check_producer, logged_step, setting_keys
from .mode_names import REFERENCE_MODE
from .spectrum import convergence_epoch
from .stats import (
    CONSTANT,
    FOUND,
    INTERVAL_NAME,
    NO_PAIRS,
    NOT_DETECTED,
    NOT_TESTABLE,
    spearman,
    t_interval,
    verdict,
)

log = logging.getLogger(__name__)

#: the fractions of a band's total drop whose epochs are compared
FRACTIONS = (0.5, 0.9)
#: columns of the convergence table after the run keys
CONVERGENCE_COLUMNS = ("space", "target", "q", "band", "epoch", "rho")
#: columns of spectrum_summary.csv after the setting keys
SUMMARY_COLUMNS = (
    "space", "target", "q", "mode", "comparison", "n_seeds", "n_undefined", "mean", "ci95_low", "ci95_high", "p_value",
    "verdict",
)  # fmt: skip


def convergence_table(spectrum: pd.DataFrame, fractions: Sequence[float] = FRACTIONS) -> pd.DataFrame:
    """Per run, target, q and band: the convergence epoch, and the run's ρ (band index vs epoch) on every row of
    its (target, q). ``spectrum``: the setting's tidy spectrum.csv."""
    run = [*setting_keys(spectrum), "seed", "mode", "space", "target"]
    rows = []
    for values, group in spectrum.groupby(run, sort=False):
        wide = group.pivot(index="epoch", columns="band", values="rel_error").sort_index()
        for q in fractions:
            epochs = [convergence_epoch(wide[b].to_numpy(), wide.index.to_numpy(), q) for b in wide.columns]
            rho = spearman(wide.columns.to_numpy(), epochs, min_pairs=3)
            for band, epoch in zip(wide.columns, epochs, strict=True):
                rows.append((*values, q, int(band), epoch, rho))
    return pd.DataFrame(rows, columns=[*run, *CONVERGENCE_COLUMNS[2:]])


def order_verdict(values: Sequence[float]) -> tuple[object, str]:
    """(interval, words) of the seeds' ρ: whether low frequencies converge first; seeds whose ρ is undefined are
    left out and said so."""
    finite = [v for v in values if np.isfinite(v)]
    interval, words = _order_words(finite, len(values))
    missing = len(values) - len(finite)
    if missing and finite:
        words += (
            f"; {missing} of {len(values)} seeds left out, ρ undefined (fewer than 3 bands whose error fell, or every "
            "band at the same epoch)"
        )
    return interval, words


def _order_words(finite: Sequence[float], n_values: int) -> tuple[object, str]:
    """(interval, words) of the finite ρ of :func:`order_verdict`."""
    interval = t_interval(finite)
    kind = verdict(interval).kind
    if kind == NO_PAIRS:
        return interval, f"cannot compute (no seed of {n_values} has a defined ρ: fewer than 3 bands whose error fell)"
    if kind == NOT_TESTABLE:
        return interval, "not testable (1 seed)"
    if kind == CONSTANT:
        return interval, f"all {interval.n} seeds give exactly ρ = {interval.mean:+.4g}: no interval"
    if kind == FOUND:
        first = "low" if interval.mean > 0 else "high"
        side = "above" if interval.mean > 0 else "below"
        return interval, f"{first} frequencies converge first (95% interval {side} 0)"
    assert kind == NOT_DETECTED
    return interval, "no order detected (95% interval includes 0)"


def order_summary(convergence: pd.DataFrame, reference: str = REFERENCE_MODE) -> pd.DataFrame:
    """Per (setting, space, target, q, mode): the mean ρ over seeds with its interval and the order verdict; then per
    mode other than ``reference`` the paired difference of ρ from it, with :func:`selfdistill.stats.verdict`."""
    per_run = convergence.drop_duplicates([*setting_keys(convergence), "seed", "mode", "space", "target", "q"])
    cell = [*setting_keys(per_run), "space", "target", "q"]
    rows = []
    for values, group in per_run.groupby(cell, sort=False):
        head = dict(zip(cell, values, strict=True))
        ref = group[group["mode"] == reference].set_index("seed")["rho"]
        for mode, runs in group.groupby("mode", sort=False):
            interval, words = order_verdict(runs["rho"].tolist())
            rows.append(_row(head, mode, "rho", interval, words, int(runs["rho"].isna().sum())))
            if mode != reference and not ref.empty:
                diff = (runs.set_index("seed")["rho"] - ref).dropna()
                interval = t_interval(diff.tolist())
                words = verdict(interval).text if len(diff) else "cannot compute (no seed has both ρ finite)"
                undefined = len(set(runs["seed"]) | set(ref.index)) - len(diff)
                rows.append(_row(head, mode, f"rho - {reference}", interval, words, undefined))
    return pd.DataFrame(rows, columns=[*setting_keys(per_run), *SUMMARY_COLUMNS])


def _row(head: dict, mode: str, comparison: str, interval, words: str, undefined: int) -> dict:
    """One row of :func:`order_summary`; ``undefined``: the seeds left out because their ρ is undefined."""
    return {
        **head,
        "mode": mode,
        "comparison": comparison,
        "n_seeds": interval.n,
        "n_undefined": undefined,
        "mean": interval.mean,
        "ci95_low": interval.low,
        "ci95_high": interval.high,
        "p_value": interval.p_value,
        "verdict": words,
    }


def summary_markdown(summary: pd.DataFrame, energy: pd.DataFrame, kernel: pd.DataFrame) -> str:
    """The Markdown section: where the label noise lives (energy shares per band, mean over seeds), how far each
    space's kernel is from the identity, and the convergence order per mode, target and q."""
    lines = ["## Frequency spectrum: where the label noise lives", ""]
    shares = energy.groupby(["space", "band"], sort=True)[["clean_share", "noise_share"]].mean().reset_index()
    lines += ["| space | band | clean-label energy share | noise energy share |", "|---|---|---|---|"]
    lines += [
        f"| {r.space} | {r.band} | {r.clean_share:.3f} | {r.noise_share:.3f} |" for r in shares.itertuples(index=False)
    ]
    lines += ["", "## Kernel against the identity (mean self-weight of the row-normalised kernel, mean over seeds)", ""]
    kernel = kernel.assign(degenerate=kernel["degenerate"].fillna("").astype(str))
    weights = kernel.groupby(["space", "delta_config"], sort=True).agg(
        self_weight=("self_weight", "mean"),
        label_ratio=("label_ratio", "mean"),
        degenerate=("degenerate", lambda s: next((v for v in s if v), "")),
    )
    lines += ["| space | δ | self-weight | clean-label ratio | degenerate |", "|---|---|---|---|---|"]
    for (space, delta), r in weights.iterrows():
        lines.append(f"| {space} | {delta:g} | {r.self_weight:.4f} | {r.label_ratio:.4f} | {r.degenerate} |")
    lines += [
        "",
        "## Convergence order: Spearman ρ between band (1 = lowest frequency) and convergence epoch",
        "",
        f"Per mode: mean ρ over seeds and {INTERVAL_NAME} (uncorrected); ρ > 0: low frequencies converge first.",
        "",
    ]
    for r in summary.itertuples(index=False):
        bounds = "no interval" if np.isnan(r.ci95_low) else f"[{r.ci95_low:+.3f}, {r.ci95_high:+.3f}]"
        lines.append(
            f"- {r.space}, {r.target} labels, {int(r.q * 100)}% of the drop, {r.mode} ({r.comparison}): "
            f"{r.mean:+.3f} {bounds} ({r.n_seeds} seeds{f'; {r.n_undefined} undefined' if r.n_undefined else ''}): "
            f"{r.verdict}."
        )
    return "\n".join(lines) + "\n"


@logged_step
def aggregate_spectrum(
    spectrum_paths: Sequence[str | os.PathLike],
    energy_paths: Sequence[str | os.PathLike],
    kernel_paths: Sequence[str | os.PathLike],
    runs: Sequence[dict],
    out_spectrum: str | os.PathLike,
    out_energy: str | os.PathLike,
    out_kernel: str | os.PathLike,
    log_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Pipeline step (rule aggregate_spectrum): the runs' three spectrum tables, each as one tidy table of the
    setting with the run keys in front."""
    out = None
    for paths, target, producer in (
        (spectrum_paths, out_spectrum, "rule aggregate_spectrum"),
        (energy_paths, out_energy, "rule aggregate_spectrum"),
        (kernel_paths, out_kernel, "rule aggregate_spectrum"),
    ):
        table = concat_runs(paths, runs)
        with atomic_output(target, producer) as tmp:
            table.to_csv(tmp, index=False)
        out = table if out is None else out
    return out


@logged_step
def summarise_spectrum(
    spectrum_csv: str | os.PathLike,
    energy_csv: str | os.PathLike,
    kernel_csv: str | os.PathLike,
    out_csv: str | os.PathLike,
    out_md: str | os.PathLike,
    out_convergence: str | os.PathLike,
    reference: str = REFERENCE_MODE,
    log_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Pipeline step (rule spectrum_summary): the setting's convergence table (spectrum_convergence.csv), the order
    verdicts (spectrum_summary.csv) and the Markdown section with the noise energy and kernel tables."""
    check_producer(spectrum_csv)
    spectrum = pd.read_csv(spectrum_csv)
    convergence = convergence_table(spectrum)
    summary = order_summary(convergence, reference)
    with atomic_output(out_convergence, "rule spectrum_summary") as tmp:
        convergence.to_csv(tmp, index=False)
    with atomic_output(out_csv, "rule spectrum_summary") as tmp:
        summary.to_csv(tmp, index=False)
    with atomic_output(out_md) as tmp:
        tmp.write_text(summary_markdown(summary, pd.read_csv(energy_csv), pd.read_csv(kernel_csv)))
    log.info("%d convergence-order rows written to %s", len(summary), out_csv)
    return summary
