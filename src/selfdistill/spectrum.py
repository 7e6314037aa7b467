"""The frequency spectrum over the data (docs/science.md, "Frequency spectrum and convergence order").

The Gaussian kernel of the two-band filter (:mod:`selfdistill.frequency`, same width convention) defines a basis of
"frequencies over the data": the eigenvectors of its symmetric normalisation ``S = D^{-1/2} G D^{-1/2}``
(``G_ij = exp(-||p_i - p_j||^2 / (2 delta))``, ``D = diag(G 1)``), ordered by eigenvalue, largest first (largest =
smoothest over the points = lowest frequency). ``S`` is similar to the row-normalised low-pass ``K = D^{-1} G``, so
the two share eigenvalues. The n eigenvectors are split into ``B`` bands of equal counts (band 1 lowest); ``P_b``
projects onto band b. Per stored epoch and band this module computes

* ``rel_error_b = ||P_b (h - y)||_F / ||P_b y||_F`` of the softmax outputs ``h`` (n x C) against one-hot ``y``
  (noisy and clean labels; Xu et al.'s relative error per frequency);
* once per run, the share of energy ``||P_b f||_F^2 / ||f||_F^2`` of the clean labels and of the label noise
  ``y_noisy - y_clean`` in each band;
* the convergence epochs (:func:`convergence_epochs`) and their rank correlation with the band index.

The points ``p`` are the analysed subset's inputs (``space="input"``) or the penultimate-layer features of the same
seed's early-stopped reference model (``space="features"``); :func:`analysis_points` is the one place that choice is
made, and :func:`gaussian_kernel` builds the kernel from any points matrix.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .frequency import median_sq_dist, pairwise_sq_dists
from .frequency_stats import degenerate_reason
from .io import atomic_output, logged_step
from .mode_names import REFERENCE_MODE
from .outputs import STORED_SPLITS, StoredRun, check_inputs, read_inputs, read_outputs, stored_normalisation

log = logging.getLogger(__name__)

#: where the kernel's points live
SPACES = ("input", "features")
#: the targets of the per-band relative error
TARGETS = ("noisy", "clean")
#: the split the spectrum is computed on (the only one with noisy labels)
SPLIT = "train_subset"
#: columns of a run's spectrum.csv, spectrum_energy.csv and kernel.csv
SPECTRUM_COLUMNS = ("space", "delta_config", "delta", "band", "eig_max", "eig_min", "epoch", "target", "rel_error")
ENERGY_COLUMNS = ("space", "delta_config", "delta", "band", "eig_max", "eig_min", "clean_share", "noise_share")
KERNEL_COLUMNS = ("space", "delta_config", "delta", "self_weight", "label_ratio", "degenerate")


# ----------------------------------------------------------------------------------------------------------------
# Kernel, basis, bands
# ----------------------------------------------------------------------------------------------------------------


def gaussian_kernel(points: np.ndarray, delta: float, d2: np.ndarray | None = None) -> np.ndarray:
    """The symmetric Gaussian kernel ``G_ij = exp(-||p_i - p_j||^2 / (2 delta))`` (n x n float64) of the rows of
    ``points`` (n, d); ``d2`` may give their squared distances (:func:`selfdistill.frequency.pairwise_sq_dists`)."""
    delta = float(delta)
    if not (np.isfinite(delta) and delta > 0):
        raise ValueError(f"delta must be finite and > 0, got {delta}")
    d2 = pairwise_sq_dists(points) if d2 is None else np.asarray(d2, dtype=np.float64)
    return np.exp(-d2 / (2.0 * delta))


def spectral_basis(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(eigenvalues, U)`` of ``D^{-1/2} G D^{-1/2}``, eigenvalues descending (column j of ``U`` is the j-th lowest
    frequency); ``U`` is orthonormal, so ``||P_b f|| = ||U_b^T f||``."""
    g = np.asarray(kernel, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] == 0:
        raise ValueError(f"kernel must be a non-empty square matrix, got shape {g.shape}")
    d = g.sum(axis=1)
    if not (d > 0).all():
        raise ValueError("kernel has a row with no positive weight")
    s = g / np.sqrt(np.outer(d, d))
    s = 0.5 * (s + s.T)
    vals, vecs = np.linalg.eigh(s)
    return vals[::-1].copy(), vecs[:, ::-1].copy()


def band_slices(n: int, bands: int) -> list[slice]:
    """``bands`` consecutive slices of ``range(n)`` with equal counts (the first ``n % bands`` one larger)."""
    if not 1 <= bands <= n:
        raise ValueError(f"bands must lie in [1, n={n}], got {bands}")
    edges = np.cumsum([0] + [n // bands + (1 if b < n % bands else 0) for b in range(bands)])
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def band_energy(basis: np.ndarray, f: np.ndarray, bands: Sequence[slice]) -> np.ndarray:
    """``||P_b f||_F^2`` per band of ``f`` (n, C) or of every leading-axis slice of ``f`` (..., n, C): (..., B)."""
    coef = np.einsum("nk,...nc->...kc", basis, np.asarray(f, dtype=np.float64))
    sq = (coef**2).sum(axis=-1)
    return np.stack([sq[..., sl].sum(axis=-1) for sl in bands], axis=-1)


def band_relative_errors(basis: np.ndarray, outputs: np.ndarray, target: np.ndarray, bands) -> np.ndarray:
    """``||P_b (h_e - y)||_F / ||P_b y||_F`` for every epoch e of ``outputs`` (E, n, C) and band: (E, B); NaN where
    the target has no energy in a band."""
    err = np.sqrt(band_energy(basis, np.asarray(outputs, dtype=np.float64) - target, bands))
    ref = np.sqrt(band_energy(basis, target, bands))
    out = np.full(err.shape, np.nan)
    np.divide(err, ref, out=out, where=np.broadcast_to(ref > 0, err.shape))
    return out


def energy_shares(basis: np.ndarray, f: np.ndarray, bands) -> np.ndarray:
    """Each band's share of ``||f||_F^2`` (sums to 1; NaN for f = 0)."""
    e = band_energy(basis, f, bands)
    total = e.sum()
    return e / total if total > 0 else np.full(e.shape, np.nan)


def self_weight(kernel: np.ndarray) -> float:
    """Mean self-weight ``K_ii = G_ii / sum_j G_ij`` of the row-normalised kernel: 1 for the identity (no
    neighbour counts), 1/n for a global average."""
    g = np.asarray(kernel, dtype=np.float64)
    return float(np.mean(np.diag(g) / g.sum(axis=1)))


def lowpass_ratio(kernel: np.ndarray, f: np.ndarray) -> float:
    """The two-band filter's ratio ``||K f||^2 / (||K f||^2 + ||f - K f||^2)`` with ``K = D^{-1} G`` (float64)."""
    g = np.asarray(kernel, dtype=np.float64)
    low = (g / g.sum(axis=1, keepdims=True)) @ f
    lo, hi = float((low**2).sum()), float(((f - low) ** 2).sum())
    return lo / (lo + hi) if lo + hi > 0 else float("nan")


def one_hot(y: np.ndarray, num_classes: int) -> np.ndarray:
    """(n, C) float64 one-hot matrix of integer labels."""
    out = np.zeros((len(y), num_classes))
    out[np.arange(len(y)), np.asarray(y, dtype=np.int64)] = 1.0
    return out


# ----------------------------------------------------------------------------------------------------------------
# Convergence order
# ----------------------------------------------------------------------------------------------------------------


def convergence_epoch(errors: Sequence[float], epochs: Sequence[int], q: float) -> float:
    """The first epoch at which a band's error has made ``q`` of its total drop: drop = err[0] − min err (from the
    first stored epoch to the minimum), reached at the first t with err[0] − err[t] ≥ q·drop; NaN when the drop is
    not positive (the error never falls) or an error is NaN."""
    err = np.asarray(errors, dtype=np.float64)
    if err.size == 0 or not np.isfinite(err).all():
        return float("nan")
    drop = err[0] - err.min()
    if not drop > 0:
        return float("nan")
    t = int(np.flatnonzero(err[0] - err >= q * drop)[0])
    return float(np.asarray(epochs)[t])


# ----------------------------------------------------------------------------------------------------------------
# Points: inputs or features
# ----------------------------------------------------------------------------------------------------------------


def analysis_points(
    space: str,
    data_path: str | os.PathLike,
    run: StoredRun,
    split: str = SPLIT,
    inputs: str = "pixels",
    model_path: str | os.PathLike | None = None,
) -> np.ndarray:
    """The points (n, d) the kernel of ``run``'s stored ``split`` is built on: its inputs (``space="input"``, pixels
    in [0, 1] or normalised as ``frequency.inputs`` says) or the penultimate-layer features of the early-stopped
    reference model at ``model_path`` (``space="features"``; the network's own normalised, un-augmented inputs).
    The one place where the space is chosen."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    pixel_max = check_inputs(data_path, run)
    if space == "input":
        norm = stored_normalisation(run) if inputs == "normalised" else None
        return read_inputs(data_path, run, split, pixel_max=pixel_max, norm=norm)
    if model_path is None:
        raise ValueError(f"space 'features' needs the early-stopped {REFERENCE_MODE} model (model_path)")
    x = read_inputs(data_path, run, split, pixel_max=pixel_max, norm=stored_normalisation(run))
    return model_features(model_path, x, _image_shape(data_path, split), run.num_classes)


def _image_shape(data_path: str | os.PathLike, split: str) -> tuple[int, int, int]:
    """(H, W, C) of the images of data.h5's source of ``split``."""
    import h5py

    with h5py.File(data_path, "r") as h5:
        return tuple(int(v) for v in h5[STORED_SPLITS[split][0]]["images"].shape[1:])


def model_features(model_path, x: np.ndarray, shape_hwc, num_classes: int) -> np.ndarray:
    """Penultimate features (n, k) float64 of the flattened (H, W, C) normalised inputs ``x`` under the weights file
    ``model_path`` (as rule train writes it), on the CPU in float32."""
    import torch

    from .models import build_model, penultimate_features

    payload = torch.load(model_path, map_location="cpu", weights_only=True)
    if payload.get("state_dict") is None:
        raise ValueError(
            f"{model_path}: holds no weights ({payload.get('what')}); frequency.space: features needs a validation "
            "split (val_fraction > 0) so that the reference model is early-stopped"
        )
    h, w, c = shape_hwc
    model = payload["model"]
    net = build_model(model["arch"], (c, h, w), num_classes, model.get("width"), model.get("depth", 2))
    net.load_state_dict(payload["state_dict"])
    images = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, h, w, c).transpose(0, 3, 1, 2))).float()
    return penultimate_features(net, images).double().numpy()


# ----------------------------------------------------------------------------------------------------------------
# The step
# ----------------------------------------------------------------------------------------------------------------


def resolve_spectrum_delta(deltas: Sequence[float], spectrum_delta: float | None) -> float:
    """The configured width of the spectrum: ``spectrum_delta``, or (None) the middle of the sorted ``deltas``
    (the lower middle for an even count), as ``frequency.plot_delta`` is chosen."""
    if spectrum_delta is not None:
        return float(spectrum_delta)
    vals = np.unique(np.asarray(deltas, dtype=np.float64))
    return float(vals[(vals.size - 1) // 2])


def kernel_rows(space, d2, configured, scale_to, y_clean, num_classes) -> pd.DataFrame:
    """Per configured width: how far the kernel is from the identity (mean self-weight of the row-normalised
    kernel), the clean labels' low-pass ratio and, when degenerate, why (the two-band filter's rule,
    :func:`selfdistill.frequency_stats.degenerate_reason`)."""
    from .frequency_stats import NORMALISED_LOW, RATIO_HIGH, RATIO_LOW

    rows = []
    for rel in configured:
        g = gaussian_kernel(None, rel * scale_to, d2=d2)
        ratio = lowpass_ratio(g, one_hot(y_clean, num_classes))
        reason = degenerate_reason(ratio, ratio, RATIO_HIGH, RATIO_LOW, num_classes, NORMALISED_LOW)
        if reason is not None:
            log.warning("%s space, delta %g: %s", space, rel, reason)
        rows.append((space, rel, rel * scale_to, self_weight(g), ratio, reason or ""))
    return pd.DataFrame(rows, columns=list(KERNEL_COLUMNS))


def spectrum_tables(points, outputs, epochs, y_noisy, y_clean, delta, bands, space="input", delta_config=None, d2=None):
    """(spectrum, energy) tables of one run: per band and stored epoch the relative error against each target,
    and the clean labels' and the noise's energy shares per band. ``delta`` absolute; ``outputs`` (E, n, C); ``d2``
    the points' squared distances, if already computed."""
    num_classes = outputs.shape[2]
    vals, basis = spectral_basis(gaussian_kernel(points, delta, d2=d2))
    sl = band_slices(len(vals), bands)
    eig_max = [float(vals[s].max()) for s in sl]
    eig_min = [float(vals[s].min()) for s in sl]
    targets = {"noisy": one_hot(y_noisy, num_classes), "clean": one_hot(y_clean, num_classes)}
    head = {"space": space, "delta_config": delta if delta_config is None else delta_config, "delta": delta}
    parts = []
    for name, y in targets.items():
        err = band_relative_errors(basis, outputs, y, sl)
        parts.append(
            pd.DataFrame(
                {
                    **head,
                    "band": np.tile(np.arange(1, bands + 1), len(epochs)),
                    "eig_max": np.tile(eig_max, len(epochs)),
                    "eig_min": np.tile(eig_min, len(epochs)),
                    "epoch": np.repeat(np.asarray(epochs, dtype=np.int64), bands),
                    "target": name,
                    "rel_error": err.ravel(),
                }
            )
        )
    energy = pd.DataFrame(
        {
            **head,
            "band": np.arange(1, bands + 1),
            "eig_max": eig_max,
            "eig_min": eig_min,
            "clean_share": energy_shares(basis, targets["clean"], sl),
            "noise_share": energy_shares(basis, targets["noisy"] - targets["clean"], sl),
        }
    )
    spectrum = pd.concat(parts, ignore_index=True)[list(SPECTRUM_COLUMNS)]
    return spectrum, energy[list(ENERGY_COLUMNS)]


@logged_step
def analyse_spectrum(
    data_path: str | os.PathLike,
    outputs_path: str | os.PathLike,
    out_spectrum: str | os.PathLike,
    out_energy: str | os.PathLike,
    out_kernel: str | os.PathLike,
    deltas: Sequence[float],
    spectrum_delta: float | None = None,
    bands: int = 8,
    delta_scale: str = "median",
    inputs: str = "pixels",
    space: str = "input",
    model_path: str | os.PathLike | None = None,
    log_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Pipeline step (rule spectrum): one run's spectrum.csv, spectrum_energy.csv and kernel.csv on its stored
    training subset, the kernel built in ``space`` (:func:`analysis_points`) at the width ``spectrum_delta`` (None:
    the middle of ``deltas``; multiples of the median squared distance with ``delta_scale="median"``)."""
    run = read_outputs(outputs_path, ("probs",))
    stored = run.splits[SPLIT]
    points = analysis_points(space, data_path, run, SPLIT, inputs, model_path)
    d2 = pairwise_sq_dists(points)
    n = d2.shape[0]
    scale_to = median_sq_dist(d2) if delta_scale == "median" else 1.0
    if not scale_to > 0:
        raise ValueError(f"{outputs_path}: the median squared distance in {space} space is {scale_to}; no width")
    configured = np.asarray(deltas, dtype=np.float64)
    kernel = kernel_rows(space, d2, configured, scale_to, stored.labels["clean"], run.num_classes)
    rel = resolve_spectrum_delta(configured, spectrum_delta)
    spectrum, energy = spectrum_tables(
        points, stored.outputs["probs"], run.epochs, stored.labels["noisy"], stored.labels["clean"],
        rel * scale_to, bands, space, rel, d2,
    )  # fmt: skip
    for path, table, producer in (
        (out_spectrum, spectrum, "rule spectrum"),
        (out_energy, energy, None),
        (out_kernel, kernel, None),
    ):
        with atomic_output(path, producer) as tmp:
            table.to_csv(tmp, index=False)
    log.info("spectrum of %s: n=%d, %s space, delta %g, %d bands", outputs_path, n, space, rel, bands)
    return spectrum
