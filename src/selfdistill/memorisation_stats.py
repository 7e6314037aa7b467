"""The memorisation summary of one setting: per run the measures of :func:`selfdistill.memorisation.run_measures`,
then over seeds, with the 95% t-intervals and verdict rules of :mod:`selfdistill.stats`:

* per mode, the rank correlation ρ between agreement and memorisation epoch (its interval against 0);
* per mode, the share memorised in the highest minus the lowest agreement quintile, q5 − q1 (within each run, so
  paired by construction; against 0);
* each mode − the reference mode (:data:`selfdistill.mode_names.REFERENCE_MODE`) in the overall share of noisy
  samples memorised by the last epoch, paired by seed.

A run whose measure cannot be computed (ρ of a run with every noisy sample never memorised, an empty quintile) gives
no value, so it is left out of the interval; "cannot compute" never reads as "no difference".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .aggregate import concat_runs, paired_differences
from .io import atomic_output, logged_step, setting_keys
from .memorisation import QUINTILES, run_measures
from .mode_names import REFERENCE_MODE
from .stats import INTERVAL_NAME, t_interval, verdict

log = logging.getLogger(__name__)

#: the compared quantities: name -> words (``share_minus_reference`` is filled in with the reference mode)
QUANTITIES = {
    "rho": "Spearman ρ(agreement, memorisation epoch) of the noisy samples",
    "q5_minus_q1": "share memorised, highest − lowest agreement quintile",
    "share_minus_reference": "share of noisy samples memorised by the last epoch, mode − {reference}",
}
#: the columns of memorisation_summary.csv after the setting keys
SUMMARY_COLUMNS = ("mode", "quantity", "n_seeds", "mean", "ci95_low", "ci95_high", "p_value", "verdict")
#: the columns of the per-(run, quintile) table the figure draws, after the setting keys
QUINTILE_COLUMNS = ("seed", "mode", "delta_config", "quintile", "n", "agreement_mean", "share_memorised")


def read_samples(paths: Sequence[str | os.PathLike], runs: Sequence[dict]) -> pd.DataFrame:
    """All runs' memorisation.csv, with the run keys in front (:func:`selfdistill.aggregate.concat_runs`, whose
    reader checks each file against its producer record)."""
    return concat_runs(paths, runs)


def run_table(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per run: setting keys, seed, mode, the run's width ``delta_config`` and :func:`run_measures`."""
    keys = [*setting_keys(samples), "seed", "mode"]
    rows = []
    for values, run in samples.groupby(keys, sort=False):
        row = dict(zip(keys, values, strict=True), delta_config=float(run["delta_config"].iloc[0]))
        rows.append({**row, **run_measures(run)})
    return pd.DataFrame(rows)


def quintile_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Per run and agreement quintile of its noisy samples: the count, mean agreement and share memorised by the
    last epoch (an empty quintile has n 0 and NaN values)."""
    keys = [*setting_keys(samples), "seed", "mode"]
    rows = []
    for values, run in samples.groupby(keys, sort=False):
        noisy = run[run["noisy"].astype(bool) & run["quintile"].notna()]
        for q in QUINTILES:
            group = noisy[noisy["quintile"] == q]
            rows.append(
                {
                    **dict(zip(keys, values, strict=True)),
                    "delta_config": float(run["delta_config"].iloc[0]),
                    "quintile": q,
                    "n": len(group),
                    "agreement_mean": float(group["agreement"].mean()) if len(group) else np.nan,
                    "share_memorised": float(group["memorised"].astype(bool).mean()) if len(group) else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=[*setting_keys(samples), *QUINTILE_COLUMNS])


def memorisation_differences(runs: pd.DataFrame, reference: str = REFERENCE_MODE) -> pd.DataFrame:
    """Per (setting, mode, quantity of :data:`QUANTITIES`): the seeds' values (ρ, q5 − q1) or paired differences
    mode − ``reference`` (overall share memorised), their mean, 95% t-interval, t-test p-value and verdict. The
    reference mode has no row for the difference with itself."""
    keys = setting_keys(runs)
    shares = paired_differences(runs, "share_memorised", reference, "share_memorised")
    out = []
    for values, setting in runs.groupby(keys, sort=False):
        cell = dict(zip(keys, values, strict=True))
        mine = shares.merge(pd.DataFrame([cell]), on=keys) if keys else shares
        has_reference = (setting["mode"] == reference).any()
        for mode, group in setting.groupby("mode", sort=False):
            out.append(_row(cell, mode, "rho", group["rho"]))
            out.append(_row(cell, mode, "q5_minus_q1", group["q5_minus_q1"]))
            if mode != reference:
                diff = mine.loc[mine["mode"] == mode, "difference"]
                reason = None if has_reference else f"no {reference} runs"
                out.append(_row(cell, mode, "share_minus_reference", diff, reason))
    return pd.DataFrame(out, columns=[*keys, *SUMMARY_COLUMNS])


def _row(cell: dict, mode: str, quantity: str, values: pd.Series, reason: str | None = None) -> dict:
    """One summary row: the t-interval of ``values`` over seeds (NaNs, runs that could not be computed, left out)
    and its verdict, or ``reason`` as the verdict when there is nothing to compare."""
    interval = t_interval([] if reason else values.astype(float).tolist())
    return {
        **cell,
        "mode": mode,
        "quantity": quantity,
        "n_seeds": interval.n,
        "mean": interval.mean,
        "ci95_low": interval.low,
        "ci95_high": interval.high,
        "p_value": interval.p_value,
        "verdict": reason or verdict(interval).text,
    }


def memorisation_markdown(table: pd.DataFrame, runs: pd.DataFrame, reference: str = REFERENCE_MODE) -> str:
    """A Markdown section: the agreement width, then one line per (setting, mode, quantity) with the mean, its
    interval and the verdict."""
    widths = ", ".join(f"{d:g}" for d in sorted(runs["delta_config"].unique())) if len(runs) else "none"
    lines = [
        "## Memorisation of noisy labels by local label agreement",
        "",
        (
            f"Noisy training samples of the analysed subset; agreement kernel width δ = {widths} (frequency.delta_scale "
            f"unit). Per mode: mean over seeds and {INTERVAL_NAME}; ρ and q5 − q1 are tested against 0, the share "
            f"memorised against {reference} paired by seed. Negative ρ: low-agreement (high-frequency) noisy labels "
            "are memorised later, or never. No difference detected is not evidence of absence; with 1 seed nothing is "
            "testable; a run whose measure cannot be computed is left out (n_seeds)."
        ),
        "",
    ]
    for row in table.itertuples(index=False):
        setting = "/".join(str(getattr(row, k)) for k in setting_keys(table))
        what = QUANTITIES[row.quantity].format(reference=reference)
        lines.append(f"- {setting}, {row.mode}, {what}: {_value_text(row)}; {row.verdict}.")
    return "\n".join(lines) + "\n"


def _value_text(row) -> str:
    """'+0.123 [+0.05, +0.2] (3 seeds)', without an interval when there is none."""
    if row.n_seeds == 0:
        return "no value"
    bounds = "" if np.isnan(row.ci95_low) else f" [{row.ci95_low:+.3g}, {row.ci95_high:+.3g}]"
    return f"{row.mean:+.3g}{bounds} ({row.n_seeds} seed{'s' if row.n_seeds != 1 else ''})"


@logged_step
def summarise_memorisation(
    sample_paths: Sequence[str | os.PathLike],
    runs: Sequence[dict],
    out_quintiles: str | os.PathLike,
    out_runs: str | os.PathLike,
    out_csv: str | os.PathLike,
    out_md: str | os.PathLike,
    reference: str = REFERENCE_MODE,
    log_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Pipeline step: from every run's memorisation.csv (rule memorisation) write the setting's per-(run, quintile)
    table (the figure's), the per-run measures and the summary (CSV and Markdown)."""
    samples = read_samples(sample_paths, runs)
    per_run = run_table(samples)
    table = memorisation_differences(per_run, reference)
    with atomic_output(out_quintiles, "rule memorisation_summary") as tmp:
        quintile_table(samples).to_csv(tmp, index=False)
    with atomic_output(out_runs, "rule memorisation_summary") as tmp:
        per_run.to_csv(tmp, index=False)
    with atomic_output(out_csv, "rule memorisation_summary") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_output(out_md) as tmp:
        tmp.write_text(memorisation_markdown(table, per_run, reference))
    if per_run["delta_config"].nunique() > 1:
        log.warning("the runs used different agreement widths: %s", sorted(per_run["delta_config"].unique()))
    log.info("memorisation summary of %d runs written to %s", len(per_run), out_csv)
    return table
