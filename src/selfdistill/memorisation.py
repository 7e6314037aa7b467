"""Which noisy labels get memorised, and when (docs/science.md, "Memorisation of noisy labels, sample by sample").

Per training sample of the analysed subset (outputs.h5's ``train_subset``, the samples the frequency analysis uses):

* its **local label agreement** ``a_i = sum_{j != i} K_ij [y_j = y_i] / sum_{j != i} K_ij``: the kernel-weighted
  share of its neighbours, itself excluded, that carry its noisy label ``y_i``, with the Gaussian kernel of the
  frequency filter (:func:`neighbour_weights`) at one width delta. A low agreement means the label is a
  high-frequency feature of the label function: its neighbours say otherwise;
* its **memorisation epoch**: the first stored epoch from which the prediction (the argmax of the stored logits)
  equals the noisy label at every later stored epoch, to the end; "never" (empty) when it does not at the last one.

For the noisy samples (noisy label != clean label) of one run, :func:`run_measures` gives the Spearman rank
correlation between agreement and memorisation epoch (never memorised ranks after the last epoch), the share
memorised by the last epoch per agreement quintile and overall. :mod:`selfdistill.memorisation_stats` pairs them over
seeds.

The kernel is built by one function of the points and the width, :func:`neighbour_weights`, so that another space
(e.g. a network's features) only changes the points handed to it.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from .frequency import FrequencyFilter
from .frequency_stats import degenerate_deltas, with_delta_config
from .io import InputFileError, atomic_output, check_producer, logged_step
from .outputs import read_outputs
from .spectrum import analysis_points
from .stats import average_ranks, spearman

log = logging.getLogger(__name__)

#: the agreement quintiles, q1 (lowest agreement) … q5
QUINTILES = (1, 2, 3, 4, 5)
#: the columns of a run's memorisation.csv, in order
SAMPLE_COLUMNS = (
    "row",
    "label_noisy",
    "label_clean",
    "noisy",
    "agreement",
    "quintile",
    "memorisation_epoch",
    "memorised",
    "last_epoch",
    "delta",
    "delta_config",
)
#: the output source whose argmax is the prediction (the probabilities' argmax up to float32 ties)
PREDICTION_SOURCE = "logits"
_SPLIT = "train_subset"


# ----------------------------------------------------------------------------------------------------------------
# The maths, on arrays
# ----------------------------------------------------------------------------------------------------------------


def neighbour_weights(points: np.ndarray, delta: float, delta_scale: str = "absolute") -> tuple[np.ndarray, float]:
    """The self-excluded, row-normalised Gaussian kernel of the frequency filter over ``points`` (n, d), and the
    absolute width: ``P_ij = G_ij / sum_{k != i} G_ik`` for j != i, ``P_ii = 0``, ``G_ij = exp(-||x_i - x_j||^2 /
    (2 delta))``, with the distances and kernel of :class:`selfdistill.frequency.FrequencyFilter` (exact duplicates
    at distance 0). ``delta_scale="median"``: ``delta`` is a multiple of the median i<j squared distance. A row whose
    neighbour weights all underflow is 0 (its agreement is undefined)."""
    flt = FrequencyFilter(points)
    absolute = float(flt.resolve([delta], delta_scale)[0])
    # I - K = diag(w) A with A = I - G_offdiag / r on rows with r > 0 and 0 elsewhere: -A off the diagonal is P
    weights, _ = flt.highpass_operator(absolute, np.float64)
    np.negative(weights, out=weights)
    np.fill_diagonal(weights, 0.0)
    return weights, absolute


def local_agreement(weights: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``a_i = sum_j P_ij [y_j = y_i] / sum_j P_ij`` for a self-excluded kernel ``weights`` (n, n) and integer
    ``labels`` (n,); NaN for a row without neighbour weight."""
    labels = np.asarray(labels)
    n = labels.shape[0]
    if weights.shape != (n, n):
        raise ValueError(f"weights must be ({n}, {n}), got {weights.shape}")
    classes, codes = np.unique(labels, return_inverse=True)
    onehot = np.zeros((n, classes.size))
    onehot[np.arange(n), codes] = 1.0
    same = (weights @ onehot)[np.arange(n), codes]
    total = weights.sum(axis=1)
    out = np.full(n, np.nan)
    np.divide(same, total, out=out, where=total > 0)
    return out


def predictions(outputs: np.ndarray) -> np.ndarray:
    """The predicted class (argmax; the first of tied classes) per stored epoch and sample: (E, n) from (E, n, C)."""
    return np.asarray(outputs).argmax(axis=2)


def memorisation_epochs(predicted: np.ndarray, labels: np.ndarray, epochs: np.ndarray) -> np.ndarray:
    """Per sample, the first stored epoch (of ``epochs``) from which ``predicted`` (E, n) equals ``labels`` (n,) at
    every later stored epoch; NaN ("never") when it does not at the last stored epoch."""
    predicted, epochs = np.asarray(predicted), np.asarray(epochs)
    if predicted.ndim != 2 or predicted.shape[0] != epochs.size or predicted.shape[1] != np.asarray(labels).size:
        raise ValueError(f"predicted must be ({epochs.size} epochs, {np.asarray(labels).size} samples)")
    match = predicted == np.asarray(labels)[None, :]
    # held[k, i]: the prediction equals the label at stored epochs k, k + 1, …, the last
    held = np.logical_and.accumulate(match[::-1], axis=0)[::-1]
    count = held.sum(axis=0)
    out = np.full(predicted.shape[1], np.nan)
    memorised = count > 0
    out[memorised] = epochs[epochs.size - count[memorised]]
    return out


def quintiles(values: np.ndarray) -> np.ndarray:
    """The quintile (1 = lowest … 5) of each value by its average rank r among the m values: ``floor(5 (r - 1) / m)
    + 1``, so the groups hold m/5 values each (±1) and tied values always share a quintile (a tie across a boundary
    goes where its mean rank falls, and that group grows)."""
    values = np.asarray(values, dtype=float)
    if np.isnan(values).any():
        raise ValueError("quintiles of NaN values")
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    ranks = average_ranks(values)
    return (np.floor(5 * (ranks - 1) / values.size) + 1).astype(np.int64)


def sample_table(
    agreement: np.ndarray,
    label_noisy: np.ndarray,
    label_clean: np.ndarray,
    predicted: np.ndarray,
    epochs: np.ndarray,
) -> pd.DataFrame:
    """One run's per-sample table (the columns of :data:`SAMPLE_COLUMNS` from ``noisy`` to ``last_epoch``, plus
    the label columns): agreement quintiles are taken among the noisy samples with a defined agreement."""
    noisy = np.asarray(label_noisy) != np.asarray(label_clean)
    epoch = memorisation_epochs(predicted, label_noisy, epochs)
    quintile = pd.array([pd.NA] * noisy.size, dtype="Int64")
    ranked = noisy & ~np.isnan(agreement)
    quintile[ranked] = quintiles(agreement[ranked])
    return pd.DataFrame(
        {
            "label_noisy": np.asarray(label_noisy, dtype=np.int64),
            "label_clean": np.asarray(label_clean, dtype=np.int64),
            "noisy": noisy,
            "agreement": agreement,
            "quintile": quintile,
            "memorisation_epoch": pd.array(np.where(np.isnan(epoch), pd.NA, epoch), dtype="Int64"),
            "memorised": ~np.isnan(epoch),
            "last_epoch": int(np.asarray(epochs)[-1]),
        }
    )


def run_measures(samples: pd.DataFrame) -> dict:
    """The measures of one run over its noisy samples (``samples``: a run's memorisation.csv): ``n_noisy``,
    ``n_memorised``, ``share_memorised``, ``rho`` (Spearman between agreement and memorisation epoch, never
    memorised = one rank after the last epoch, all tied; samples without agreement left out), ``share_q1`` …
    ``share_q5`` (share memorised by the last epoch per agreement quintile; NaN for an empty quintile) and
    ``q5_minus_q1``."""
    noisy = samples[samples["noisy"].astype(bool)]
    memorised = noisy["memorised"].astype(bool)
    out = {
        "n_noisy": len(noisy),
        "n_memorised": int(memorised.sum()),
        "share_memorised": float(memorised.mean()) if len(noisy) else float("nan"),
    }
    ranked = noisy[noisy["agreement"].notna()]
    after_last = ranked["last_epoch"].astype(float) + 1
    epoch = ranked["memorisation_epoch"].astype(float).fillna(after_last)
    out["rho"] = spearman(ranked["agreement"].to_numpy(float), epoch.to_numpy(float))
    for q in QUINTILES:
        group = ranked.loc[ranked["quintile"] == q, "memorised"].astype(bool)
        out[f"share_q{q}"] = float(group.mean()) if len(group) else float("nan")
    out["q5_minus_q1"] = out["share_q5"] - out["share_q1"]
    return out


# ----------------------------------------------------------------------------------------------------------------
# The pipeline step
# ----------------------------------------------------------------------------------------------------------------


def agreement_delta(configured: float | None, frequency_csv: str | os.PathLike, num_classes: int | None) -> float:
    """The width of the agreement kernel in the ``frequency.delta_scale`` unit: ``configured`` when given, else the
    smallest of the setting's analysed widths (its frequency.csv, rule aggregate_frequency) that is not degenerate on
    the training subset by the frequency summary's rule (:func:`selfdistill.frequency_stats.degenerate_deltas`)."""
    check_producer(frequency_csv)
    frequency = pd.read_csv(frequency_csv)
    train = with_delta_config(frequency[frequency["split"] == _SPLIT])
    degenerate = degenerate_deltas(train, num_classes=num_classes)
    dropped = set(degenerate["delta_config"])
    if configured is not None:
        if any(np.isclose(configured, d, rtol=1e-9) for d in dropped):
            log.warning("frequency.agreement_delta %g is degenerate on the training subset", configured)
        return float(configured)
    usable = sorted(d for d in train["delta_config"].unique() if d not in dropped)
    if not usable:
        raise InputFileError(
            f"{frequency_csv}: every width of frequency.deltas is degenerate on the training subset, so there is no "
            "default agreement width; set frequency.agreement_delta"
        )
    for row in degenerate.itertuples(index=False):
        log.info("agreement width: skipped delta %g (%s)", row.delta_config, row.reason)
    return float(usable[0])


@logged_step
def analyse_memorisation(
    data_path: str | os.PathLike,
    outputs_path: str | os.PathLike,
    frequency_csv: str | os.PathLike,
    out_csv: str | os.PathLike,
    delta: float | None = None,
    delta_scale: str = "absolute",
    inputs: str = "pixels",
    num_classes: int | None = None,
    space: str = "input",
    model_path: str | os.PathLike | None = None,
    log_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Pipeline step: one run's per-sample agreement and memorisation epoch on its training subset, as
    memorisation.csv (:data:`SAMPLE_COLUMNS`). Inputs and stored outputs are read and checked as the frequency step
    reads them (:func:`selfdistill.outputs.read_outputs`, :func:`~selfdistill.outputs.check_inputs`,
    :func:`~selfdistill.outputs.read_inputs`); ``delta`` (``frequency.agreement_delta``, None: the default of
    :func:`agreement_delta`) is in the ``delta_scale`` unit. ``space`` (``frequency.space``) and ``model_path``
    choose the points the kernel is built on, as for the spectrum (:func:`selfdistill.spectrum.analysis_points`)."""
    chosen = agreement_delta(delta, frequency_csv, num_classes)
    run = read_outputs(outputs_path, (PREDICTION_SOURCE,))
    points = analysis_points(space, data_path, run, _SPLIT, inputs, model_path)
    stored = run.splits[_SPLIT]
    weights, absolute = neighbour_weights(points, chosen, delta_scale)
    agreement = local_agreement(weights, stored.labels["noisy"])
    del weights
    undefined = int(np.isnan(agreement).sum())
    if undefined:
        log.warning("%d samples have no neighbour weight at delta %g: their agreement is undefined", undefined, chosen)
    predicted = predictions(stored.outputs[PREDICTION_SOURCE])
    table = sample_table(agreement, stored.labels["noisy"], stored.labels["clean"], predicted, run.epochs)
    table.insert(0, "row", stored.indices)
    table["delta"], table["delta_config"] = absolute, chosen
    with atomic_output(out_csv, "rule memorisation") as tmp:
        table.to_csv(tmp, index=False)
    measures = run_measures(table)
    log.info(
        "memorisation: delta %g (%g absolute), %d noisy samples, %.3f memorised, rho %.3f",
        chosen,
        absolute,
        measures["n_noisy"],
        measures["share_memorised"],
        measures["rho"],
    )
    return table
