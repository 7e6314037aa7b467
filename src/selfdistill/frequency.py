"""Frequency analysis by Gaussian low-pass filtering over the inputs (the filtering method, docs/science.md, "Frequency analysis").

For inputs ``x_i`` (flattened images scaled to [0, 1], or with ``inputs="normalised"`` mean/std-normalised per channel
as the network saw them, un-augmented: the original repository's choice) and a width ``delta`` the low-pass operator is the
row-normalised Gaussian kernel ``K_ij = G_ij / sum_j G_ij`` with ``G_ij = exp(-||x_i - x_j||^2 / (2 delta))``.
For function values ``f`` (n x C) ``f_low = K f`` and ``f_high = f - f_low``, and

* ``ratio = ||f_low||_F^2 / (||f_low||_F^2 + ||f_high||_F^2)`` (the original repo's Delta);
* ``e_low = ||h_low - y_low||_F / ||y_low||_F`` and ``e_high = ||h_high - y_high||_F / ||y_high||_F``
  (Xu et al.), ``h`` the network outputs, ``y`` one-hot targets (noisy and clean).

Cost structure: the distance matrix depends only on the inputs, so it is computed once per input set
(:class:`FrequencyFilter`); each delta's kernel is built once, one at a time, and applied to every epoch, every
output source and every label matrix in one matrix product.

Numerics of that product (``precision``): ``I - K = diag(w) A`` with ``w_i = 1 - K_ii`` and ``A = I - (K's
off-diagonal part, rows scaled to sum 1)`` (:meth:`FrequencyFilter.highpass_operator`), so ``f_high = w * (A f)``
and ``f_low = f - f_high``. ``w`` and the weights are float64; the product ``A (f - mean f)`` is taken in float32
by default (``"float32"``; ``"float64"`` for a float64 product). As ``f - K f`` is never formed, nothing cancels
when ``K`` is close to the identity (small delta): the rounding of ``f_high`` is about 1e-7 of the spread of
``f`` among the neighbours, times ``w``. The ratio is within ~1e-7 of the float64 value (the benchmark
``python -m benchmarks.frequency`` checks 1e-6 at n = 2,000); the float32 product is about twice as
fast and its matrix takes half the memory (n = 10,000: 400 MB next to the 800 MB distance matrix).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from selfdistill.io import FREQUENCY_CSV_COLUMNS, atomic_output, logged_step
from selfdistill.outputs import (
    OUTPUT_SOURCES,
    StoredRun,
    check_inputs,
    read_inputs,
    read_outputs,
    stored_normalisation,
)

log = logging.getLogger(__name__)


#: Columns of :func:`frequency_table`, in order.
TABLE_COLUMNS = ("epoch_index", *FREQUENCY_CSV_COLUMNS[3:])
#: Columns of the CSV written by :func:`analyse_run`, in order: the table's, keyed by split, source and epoch.
CSV_COLUMNS = FREQUENCY_CSV_COLUMNS
DELTA_SCALES = ("absolute", "median")
#: what the inputs x are: ``pixels`` - images / pixel_max in [0, 1]; ``normalised`` - (pixels − mean) / std per channel
#: with the run's normalisation (outputs.h5 attributes ``norm_mean``, ``norm_std``), as the network saw them
INPUT_KINDS = ("pixels", "normalised")
#: dtypes of the filter product (see the module docstring): float32 (default) or float64.
PRECISIONS = ("float32", "float64")
_TARGETS = ("noisy", "clean")
# row block for the blockwise passes over n x n matrices (bounds temporaries)
_BLOCK = 1024
# elements per row block when building a kernel (a 2 MB float64 block stays in cache)
_WEIGHT_BLOCK_ELEMS = 1 << 18


# ----------------------------------------------------------------------------------------------------------------
# Distances, kernels, widths
# ----------------------------------------------------------------------------------------------------------------


def pairwise_sq_dists(x: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``x`` (n, d), as an (n, n) float64 matrix.

    Uses ``||a||^2 + ||b||^2 - 2 a.b`` (one BLAS product, fast for d = 3072) on column-centred float64 data
    (centring leaves distances unchanged and reduces cancellation), clamps rounding negatives at 0, sets the
    diagonal to exactly 0 and gives exact duplicate rows exactly 0 (the Gram formula alone need not), so that a
    tiny delta averages over exact duplicates. The result is exactly symmetric.
    """
    x = _as_inputs(x)
    n, d = x.shape
    xc = x - x.mean(axis=0)
    sq = np.einsum("ij,ij->i", xc, xc)
    d2 = xc @ xc.T
    del xc
    # an exact duplicate pair has |d2| <= ~4 d eps sq (rounding of the Gram formula): rows with another row
    # within a generous bound of that are candidates, grouped by exact equality below
    tol = max(1e-9, 8 * d * np.finfo(np.float64).eps)
    candidate = np.zeros(n, dtype=bool)
    # d2 = sq_i + sq_j - 2 G_ij, blockwise to bound temporaries
    for i0 in range(0, n, _BLOCK):
        i1 = min(i0 + _BLOCK, n)
        rows = d2[i0:i1]
        rows *= -2.0
        rows += sq[i0:i1, None] + sq[None, :]
        near = rows <= tol * (sq[i0:i1].max() + sq.max())
        near[np.arange(i1 - i0), np.arange(i0, i1)] = False
        candidate[i0:i1] = near.any(axis=1)
    np.maximum(d2, 0.0, out=d2)
    _symmetrise_inplace(d2)
    for group in _duplicate_groups(x, np.flatnonzero(candidate)):
        d2[np.ix_(group, group)] = 0.0
    np.fill_diagonal(d2, 0.0)
    return d2


def median_sq_dist(d2: np.ndarray) -> float:
    """Median of the off-diagonal squared distances ``d2[i, j]``, i < j (the scale for relative widths)."""
    d2 = _as_square(d2)
    n = d2.shape[0]
    if n < 2:
        raise ValueError("need at least two points for a median distance")
    upper = np.concatenate([d2[i, i + 1 :] for i in range(n - 1)])
    return float(np.median(upper, overwrite_input=True))


class FrequencyFilter:
    """The input-dependent half of the analysis: the distance matrix of one input set, computed once.

    Pass it wherever a function here accepts ``x`` to reuse its distances; :meth:`kernels` builds one kernel at a
    time so that at most one n x n kernel is alive next to ``d2``.
    """

    def __init__(self, x: np.ndarray | None = None, *, d2: np.ndarray | None = None):
        if (x is None) == (d2 is None):
            raise ValueError("give exactly one of x and d2")
        if x is not None:
            t0 = time.perf_counter()
            self.d2 = pairwise_sq_dists(x)
            log.debug("pairwise distances n=%d in %.2fs", self.n, time.perf_counter() - t0)
        else:
            self.d2 = _as_square(d2)
        # 0 when the diagonal is 0, as for distances from x
        row_min = self.d2.min(axis=1)
        self._row_min = row_min if np.any(row_min != 0) else None

    @property
    def n(self) -> int:
        """Number of points."""
        return self.d2.shape[0]

    def resolve(self, deltas, scale: str = "absolute") -> np.ndarray:
        """Absolute kernel widths: ``deltas`` as given (``"absolute"``) or times the median i<j squared distance.

        With ``"median"`` a configured value of 1 means "delta equals the median squared distance", which makes the
        same configuration meaningful across datasets with very different input dimension.
        """
        vals = _check_deltas(deltas)
        if scale == "absolute":
            return vals.copy()
        if scale == "median":
            med = median_sq_dist(self.d2)
            if not med > 0:
                raise ValueError(f"median off-diagonal squared distance is {med}; cannot scale deltas by it")
            return vals * med
        raise ValueError(f"scale must be one of {DELTA_SCALES}, got {scale!r}")

    def highpass_operator(
        self, delta: float, dtype=np.float64, out: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(A, w)`` with ``I - K = diag(w) A``, ``A`` in ``dtype``, so that ``f_high = w * (A f)``.

        With ``G_ij = exp(-(d2_ij - min_j d2_ij) / (2 delta))`` (each row's largest weight is 1, so no row
        underflows), ``r_i`` the off-diagonal row sum and ``s_i = G_ii + r_i``: ``w = r / s = 1 - K_ii`` and
        ``A = I - G_offdiag / r`` (rows of ``A`` sum to 0; a row with ``r_i = 0`` is 0). ``r``, ``s`` and ``w``
        are float64, computed before any rounding to ``dtype``; every row of ``A`` is scaled to order 1, so a
        float32 ``A`` keeps full relative precision even when the off-diagonal weights are far below float32's
        range. ``f - K f`` is never formed, so nothing cancels when ``K`` is close to the identity. Built row
        block by row block (no n x n float64 temporary); ``out`` may supply the (n, n) result array.
        """
        delta = _check_delta(delta)
        d2 = self.d2
        n = d2.shape[0]
        a = np.empty((n, n), dtype=dtype) if out is None else out
        if a.shape != (n, n) or a.dtype != np.dtype(dtype):
            raise ValueError(f"out must be a ({n}, {n}) {np.dtype(dtype)} array")
        scale = -0.5 / delta
        w = np.empty(n)
        rows_per_block = max(1, _WEIGHT_BLOCK_ELEMS // n)
        tmp = np.empty((min(rows_per_block, n), n))
        for i0 in range(0, n, rows_per_block):
            i1 = min(i0 + rows_per_block, n)
            t, local, cols = tmp[: i1 - i0], np.arange(i1 - i0), np.arange(i0, i1)
            if self._row_min is None:
                np.multiply(d2[i0:i1], scale, out=t)
            else:
                np.subtract(d2[i0:i1], self._row_min[i0:i1, None], out=t)
                t *= scale
            np.exp(t, out=t)
            diag = t[local, cols]
            t[local, cols] = 0.0
            r = t.sum(axis=1)
            w[i0:i1] = r / (diag + r)
            neg_inv = np.divide(-1.0, r, out=np.zeros_like(r), where=r > 0)
            np.multiply(t, neg_inv[:, None], out=a[i0:i1], casting="same_kind")
            a[cols, cols] = r > 0
        return a, w


# ----------------------------------------------------------------------------------------------------------------
# Filtering many matrices with one kernel
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class _Stats:
    """Per-(block, delta) results of :func:`_filter_stats`."""

    # (n_blocks, n_deltas), every block (outputs and labels)
    ratio: np.ndarray
    # target name -> (n_output_blocks, n_deltas)
    e_low: dict[str, np.ndarray]
    e_high: dict[str, np.ndarray]


def _filter_stats(
    flt: FrequencyFilter,
    deltas: np.ndarray,
    stacked: np.ndarray,
    num_classes: int,
    n_output_blocks: int,
    targets: Mapping[str, int],
    precision: str = "float32",
) -> _Stats:
    """Filter the (n, B*C) matrix ``stacked`` (B blocks of C columns) with each delta's kernel, one product each.

    The first ``n_output_blocks`` blocks are network outputs; ``targets`` maps a target name to the index of the
    block holding its one-hot matrix. Returns the ratio of every block and e_low / e_high of every output block
    against every target. Because filtering is linear, ``h_low - y_low`` is the difference of filtered blocks.
    ``f_high = w * (A (f - mean f))`` with :meth:`FrequencyFilter.highpass_operator` (the rows of ``A`` sum to
    0, so the column means drop out of ``f_high``), the product in ``precision``; ``f_low = f - f_high``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    dtype = np.dtype(precision)
    n, width = stacked.shape
    n_blocks = width // num_classes
    ratio = np.empty((n_blocks, len(deltas)))
    e_low = {name: np.empty((n_output_blocks, len(deltas))) for name in targets}
    e_high = {name: np.empty((n_output_blocks, len(deltas))) for name in targets}
    centred = (stacked - stacked.mean(axis=0)).astype(dtype, copy=False)
    op = np.empty((n, n), dtype=dtype)
    prod = np.empty((n, width), dtype=dtype)
    high = np.empty((n, width))
    low = np.empty((n, width))
    low3 = low.reshape(n, n_blocks, num_classes)
    high3 = high.reshape(n, n_blocks, num_classes)
    for j, delta in enumerate(deltas):
        t0 = time.perf_counter()
        a, w = flt.highpass_operator(delta, dtype, out=op)
        np.matmul(a, centred, out=prod)
        np.multiply(prod, w[:, None], out=high)
        np.subtract(stacked, high, out=low)
        low_sq = np.einsum("nbc,nbc->b", low3, low3)
        high_sq = np.einsum("nbc,nbc->b", high3, high3)
        ratio[:, j] = _safe_div(low_sq, low_sq + high_sq)
        for name, b in targets.items():
            for part, part3, part_sq in (
                (e_low, low3, low_sq),
                (e_high, high3, high_sq),
            ):
                diff = part3[:, :n_output_blocks, :] - part3[:, b : b + 1, :]
                err_sq = np.einsum("nbc,nbc->b", diff, diff)
                part[name][:, j] = _safe_div(np.sqrt(err_sq), np.sqrt(part_sq[b]))
        log.debug(
            "delta=%g: filtered %d columns in %.2fs",
            delta,
            width,
            time.perf_counter() - t0,
        )
    return _Stats(ratio=ratio, e_low=e_low, e_high=e_high)


def _stack_blocks(
    sources: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    n: int,
    num_classes: int,
) -> tuple[np.ndarray, dict[str, slice], dict[str, int]]:
    """Stack (E, n, C) outputs per source and (n, C) one-hot labels as one (n, B*C) float64 matrix.

    Returns the matrix, each source's slice of output blocks (epoch order) and each label's block index.
    """
    parts, source_slices, label_blocks, b = [], {}, {}, 0
    for name, out in sources.items():
        e = out.shape[0]
        parts.append(np.asarray(out, dtype=np.float64).transpose(1, 0, 2).reshape(n, e * num_classes))
        source_slices[name] = slice(b, b + e)
        b += e
    for name, onehot in labels.items():
        parts.append(onehot)
        label_blocks[name] = b
        b += 1
    return np.concatenate(parts, axis=1), source_slices, label_blocks


# ----------------------------------------------------------------------------------------------------------------
# Public tables
# ----------------------------------------------------------------------------------------------------------------


def frequency_table(
    x: np.ndarray | FrequencyFilter,
    outputs: np.ndarray,
    deltas=None,
    y_noisy: np.ndarray | None = None,
    y_clean: np.ndarray | None = None,
    num_classes: int | None = None,
    delta_rel=None,
    precision: str = "float32",
) -> pd.DataFrame:
    """ratio, e_low and e_high of network outputs for every (epoch index, delta).

    ``x`` (n, d) inputs in [0, 1] (or a :class:`FrequencyFilter` to reuse its distances); ``outputs`` (E, n, C);
    ``y_noisy`` / ``y_clean`` integer labels (n,) or None (their e_* columns are then NaN). Widths: ``deltas``
    absolute; or only ``delta_rel``, meaning ``delta_rel * median i<j squared distance``; or both (same length,
    ``deltas`` already resolved, ``delta_rel`` recorded). Columns: :data:`TABLE_COLUMNS`, one row per
    (epoch_index, delta), epoch-major. All epochs are filtered in one product per delta, in ``precision``
    (see the module docstring).
    """
    flt = x if isinstance(x, FrequencyFilter) else FrequencyFilter(x)
    outputs = _as_outputs(outputs, flt.n)
    n_epochs, _, c = outputs.shape
    if num_classes is not None and int(num_classes) != c:
        raise ValueError(f"num_classes={num_classes} but outputs have {c} columns")
    abs_deltas, rel = _resolve_pair(flt, deltas, delta_rel)
    labels = {
        name: _one_hot(y, c, flt.n, f"y_{name}") for name, y in zip(_TARGETS, (y_noisy, y_clean)) if y is not None
    }
    stacked, _, label_blocks = _stack_blocks({"out": outputs}, labels, flt.n, c)
    stats = _filter_stats(flt, abs_deltas, stacked, c, n_epochs, label_blocks, precision)

    keys = {"epoch_index": np.repeat(np.arange(n_epochs), len(abs_deltas))}
    return _rows(keys, stats, slice(0, n_epochs), abs_deltas, rel, TABLE_COLUMNS)


@logged_step
def analyse_run(
    data_path: str | os.PathLike,
    outputs_path: str | os.PathLike,
    out_csv: str | os.PathLike,
    deltas,
    delta_scale: str = "absolute",
    sources: Sequence[str] = ("probs",),
    log_path: str | os.PathLike | None = None,
    precision: str = "float32",
    inputs: str = "pixels",
) -> pd.DataFrame:
    """Frequency table of one training run on its train subset and the test set; write it as a tidy CSV.

    Reads inputs from ``data_path`` (data.h5; pixels / ``pixel_max``, and with ``inputs="normalised"`` then
    normalised per channel with the mean and std the run trained with, stored in outputs.h5) and per-epoch outputs from
    ``outputs_path`` (outputs.h5). Per split the distance matrix is built once and each delta's kernel once,
    applied in one product to every epoch of every source in ``sources`` and to the one-hot label matrices (which
    serve both as targets and as the label-reference rows). With ``delta_scale="median"`` the absolute widths are
    ``deltas`` times that split's median i<j squared distance. Columns: :data:`CSV_COLUMNS`; ``epoch`` is 1-based
    (empty for label rows); the test split has no noisy labels (e_*_noisy NaN, no labels_noisy row).
    ``precision``: dtype of the filter products (see the module docstring).

    Both files are checked before any analysis (:func:`selfdistill.outputs.read_outputs`,
    :func:`~selfdistill.outputs.check_inputs`): outputs.h5 must carry the identity of the run that wrote it and match
    it (its arrays' checksum, the checksum of this data.h5), hold complete, finite outputs and softmax probabilities,
    and agree with data.h5 on classes, rows and labels. A file that fails raises
    :class:`~selfdistill.io.InputFileError`, one line naming it and what to do; nothing is written then.
    """
    sources = _check_step_options(sources, delta_scale, inputs)
    configured = _check_deltas(deltas)
    run = read_outputs(outputs_path, sources)
    pixel_max = check_inputs(data_path, run)
    norm = stored_normalisation(run) if inputs == "normalised" else None
    split_inputs = functools.partial(read_inputs, data_path, run, pixel_max=pixel_max, norm=norm)
    frames = [
        _analyse_split(split_inputs, run, split, sources, configured, delta_scale, precision)
        for split in ("train_subset", "test")
    ]
    df = pd.concat(frames, ignore_index=True)
    with atomic_output(out_csv, "rule frequency") as tmp:
        df.to_csv(tmp, index=False)
    return df


def _check_step_options(sources: Sequence[str], delta_scale: str, inputs: str) -> tuple[str, ...]:
    """:func:`analyse_run`'s choices, checked; ``sources`` as a tuple."""
    sources = tuple(sources)
    bad = [s for s in sources if s not in OUTPUT_SOURCES]
    if not sources or bad or len(set(sources)) != len(sources):
        raise ValueError(f"sources must be distinct names from {OUTPUT_SOURCES}, got {sources}")
    if delta_scale not in DELTA_SCALES:
        raise ValueError(f"delta_scale must be one of {DELTA_SCALES}, got {delta_scale!r}")
    if inputs not in INPUT_KINDS:
        raise ValueError(f"inputs must be one of {INPUT_KINDS}, got {inputs!r}")
    return sources


def _analyse_split(
    split_inputs: Callable[[str], np.ndarray],
    run: StoredRun,
    split: str,
    sources: tuple[str, ...],
    configured: np.ndarray,
    delta_scale: str,
    precision: str,
) -> pd.DataFrame:
    """The tidy rows of one stored split of ``run`` (its inputs from ``split_inputs``): one distance matrix, each delta's kernel once,
    applied to every epoch of every source and to the one-hot labels (:func:`_split_frame`)."""
    t0 = time.perf_counter()
    stored = run.splits[split]
    out_by_source = {s: stored.outputs[s] for s in sources}
    # the inputs are needed only for the distances
    flt = FrequencyFilter(split_inputs(split))
    abs_deltas = flt.resolve(configured, delta_scale)
    rel = configured if delta_scale == "median" else np.full(len(configured), np.nan)
    onehots = {name: _one_hot(y, run.num_classes, flt.n, f"{split} labels_{name}") for name, y in stored.labels.items()}
    stacked, slices, label_blocks = _stack_blocks(out_by_source, onehots, flt.n, run.num_classes)
    n_out_blocks = sum(sl.stop - sl.start for sl in slices.values())
    stats = _filter_stats(flt, abs_deltas, stacked, run.num_classes, n_out_blocks, label_blocks, precision)
    frame = _split_frame(split, stats, slices, label_blocks, run.epochs, abs_deltas, rel)
    log.info(
        "frequency %s: n=%d, %d deltas, %d output columns in %.1fs",
        split,
        flt.n,
        len(abs_deltas),
        stacked.shape[1],
        time.perf_counter() - t0,
    )
    return frame


# ----------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------


def _rows(
    keys: Mapping[str, object],
    stats: _Stats,
    blocks: slice,
    deltas: np.ndarray,
    rel: np.ndarray,
    columns: Sequence[str],
    errors: bool = True,
) -> pd.DataFrame:
    """The rows of the filtered blocks ``blocks`` (block-major, then delta): the ``keys`` columns, then delta,
    delta_rel, ratio and e_* (NaN for a target that was not given, and for every target with ``errors=False``, as
    for the label blocks, which have no errors). Every table of this module is built here, in ``columns`` order."""
    n_b = blocks.stop - blocks.start
    cols = {
        **keys,
        "delta": np.tile(deltas, n_b),
        "delta_rel": np.tile(rel, n_b),
        "ratio": stats.ratio[blocks].ravel(),
    }
    for name in _TARGETS:
        for kind, part in (("low", stats.e_low), ("high", stats.e_high)):
            have = errors and name in part
            cols[f"e_{kind}_{name}"] = part[name][blocks].ravel() if have else np.full(n_b * len(deltas), np.nan)
    return pd.DataFrame(cols, columns=list(columns))


def _split_frame(
    split: str,
    stats: _Stats,
    slices: Mapping[str, slice],
    label_blocks: Mapping[str, int],
    epochs: np.ndarray,
    deltas: np.ndarray,
    rel: np.ndarray,
) -> pd.DataFrame:
    """Tidy rows of one split: every (source, epoch, delta), then every (label reference, delta)."""
    n_d = len(deltas)
    parts = []
    for source, sl in slices.items():
        keys = {"split": split, "source": source, "epoch": pd.array(np.repeat(epochs, n_d), dtype="Int64")}
        parts.append(_rows(keys, stats, sl, deltas, rel, CSV_COLUMNS))
    for name in ("clean", "noisy"):
        if name in label_blocks:
            keys = {"split": split, "source": f"labels_{name}", "epoch": pd.array([pd.NA] * n_d, dtype="Int64")}
            b = label_blocks[name]
            parts.append(_rows(keys, stats, slice(b, b + 1), deltas, rel, CSV_COLUMNS, errors=False))
    return pd.concat(parts, ignore_index=True)


def _as_inputs(x: np.ndarray) -> np.ndarray:
    """Validated (n, d) float64 C-contiguous copy-or-view of the inputs."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty (n, d) matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values")
    return x


def _as_square(d2: np.ndarray) -> np.ndarray:
    """Validated square float64 distance matrix."""
    d2 = np.asarray(d2, dtype=np.float64)
    if d2.ndim != 2 or d2.shape[0] != d2.shape[1] or d2.shape[0] == 0:
        raise ValueError(f"d2 must be a non-empty square matrix, got shape {d2.shape}")
    return d2


def _as_outputs(outputs: np.ndarray, n: int, n_epochs: int | None = None) -> np.ndarray:
    """Validated (E, n, C) outputs (dtype kept; converted to float64 when stacked)."""
    out = np.asarray(outputs)
    if out.ndim != 3 or out.shape[1] != n or out.shape[0] == 0 or out.shape[2] == 0:
        raise ValueError(f"outputs must be (E, n={n}, C), got shape {out.shape}")
    if n_epochs is not None and out.shape[0] != n_epochs:
        raise ValueError(f"outputs have {out.shape[0]} epochs, /epochs has {n_epochs}")
    if not np.isfinite(out).all():
        raise ValueError("outputs contain NaN or infinite values")
    return out


def _one_hot(y: np.ndarray, num_classes: int, n: int, what: str) -> np.ndarray:
    """(n, C) float64 one-hot matrix of integer labels, validated."""
    y = np.asarray(y)
    if y.shape != (n,) or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise ValueError(f"{what} must be {n} integer labels, got shape {y.shape} dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{what} outside [0, {num_classes})")
    onehot = np.zeros((n, num_classes))
    onehot[np.arange(n), y] = 1.0
    return onehot


def _check_delta(delta: float) -> float:
    delta = float(delta)
    if not (np.isfinite(delta) and delta > 0):
        raise ValueError(f"delta must be finite and > 0, got {delta}")
    return delta


def _check_deltas(deltas) -> np.ndarray:
    """Validated non-empty 1-D float64 array of positive widths."""
    vals = np.atleast_1d(np.asarray(deltas, dtype=np.float64))
    if vals.ndim != 1 or vals.size == 0:
        raise ValueError(f"deltas must be a non-empty 1-D sequence, got shape {vals.shape}")
    for d in vals:
        _check_delta(d)
    return vals


def _resolve_pair(flt: FrequencyFilter, deltas, delta_rel) -> tuple[np.ndarray, np.ndarray]:
    """(absolute deltas, delta_rel column) from the frequency_table arguments."""
    if deltas is None and delta_rel is None:
        raise ValueError("give deltas (absolute) and/or delta_rel (multiples of the median squared distance)")
    if deltas is None:
        rel = _check_deltas(delta_rel)
        return flt.resolve(rel, "median"), rel
    abs_deltas = _check_deltas(deltas)
    if delta_rel is None:
        return abs_deltas, np.full(len(abs_deltas), np.nan)
    rel = _check_deltas(delta_rel)
    if rel.shape != abs_deltas.shape:
        raise ValueError("deltas and delta_rel must have the same length")
    return abs_deltas, rel


def _safe_div(num: np.ndarray, den) -> np.ndarray:
    """num / den with NaN where den == 0 (e.g. e_high when K is the identity and y_high = 0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.broadcast_to(np.asarray(den, dtype=np.float64), num.shape)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _symmetrise_inplace(a: np.ndarray) -> None:
    """Make ``a`` exactly symmetric by averaging mirrored blocks (the BLAS product need not be)."""
    n = a.shape[0]
    for i0 in range(0, n, _BLOCK):
        i1 = min(i0 + _BLOCK, n)
        for j0 in range(i0, n, _BLOCK):
            j1 = min(j0 + _BLOCK, n)
            m = 0.5 * (a[i0:i1, j0:j1] + a[j0:j1, i0:i1].T)
            a[i0:i1, j0:j1] = m
            a[j0:j1, i0:i1] = m.T


def _duplicate_groups(x: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
    """Index groups (size > 1) of bit-identical rows of ``x`` among ``rows`` (-0.0 and 0.0 treated as equal)."""
    seen: dict[bytes, list[int]] = {}
    for i in rows.tolist():
        seen.setdefault((x[i] + 0.0).tobytes(), []).append(i)
    return [np.asarray(g) for g in seen.values() if len(g) > 1]
