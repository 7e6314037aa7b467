"""Frequency analysis: :func:`selfdistill.frequency.frequency_table` vs the original's per-epoch approach.

The project computes the distances once, each kernel once and all epochs in one product per delta; the baseline,
:func:`original_frequency_ratio`, re-implements the original repository's approach (distance matrix and kernels
recomputed every epoch, float64 numpy). Inputs: the first ``frequency.test_subset`` CIFAR-10 test images of the
original study (``config/cifar10_seed.yaml``; synthetic images without the files), 50 epochs of drifting
10-class logits, 12 deltas log-spaced over the study's ``frequency.deltas`` range (times the median squared
distance); also the largest absolute difference of the ratio between the two. CPU only.

``python -m benchmarks.frequency [--out CSV] [--quick] [--threads N] [--data-root DIR]``
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from selfdistill.dataset_files import DEFAULT_DATA_ROOT
from selfdistill.frequency import frequency_table, median_sq_dist, pairwise_sq_dists

from .common import (
    ORIGINAL_CONFIG,
    command_line,
    device_name,
    finish,
    load_images,
    log,
    row,
    study_config,
)

NAME = "frequency"
#: Sizes of ``--quick`` runs (seconds on a laptop; for smoke tests, not for numbers).
QUICK = {"n": 120, "epochs": 4, "n_deltas": 3, "repeats": 2}


def original_frequency_ratio(x: np.ndarray, outputs: np.ndarray, deltas: Sequence[float]) -> np.ndarray:
    """The original's approach: every epoch, distances and kernels from scratch in float64; ratios (E, n_deltas).

    Per epoch: squared distances by the Gram formula ``|x_i|^2 + |x_j|^2 - 2 x_i.x_j`` (clamped at 0); per delta:
    ``K = exp(-d2 / (2 delta))`` normalised by its row sums, ``f_low = K f``, ``f_high = f - f_low``, and
    ``ratio = |f_low|^2 / (|f_low|^2 + |f_high|^2)`` (Frobenius norms) of that epoch's outputs ``f`` (n, C).
    """
    x = np.asarray(x, dtype=np.float64)
    ratios = np.empty((len(outputs), len(deltas)))
    for e, out in enumerate(outputs):
        sq = (x * x).sum(axis=1)
        d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
        np.maximum(d2, 0.0, out=d2)
        f = np.asarray(out, dtype=np.float64)
        for j, delta in enumerate(deltas):
            kernel = np.exp(-d2 / (2.0 * delta))
            kernel /= kernel.sum(axis=1, keepdims=True)
            low = kernel @ f
            high = f - low
            low_sq, high_sq = (low * low).sum(), (high * high).sum()
            ratios[e, j] = low_sq / (low_sq + high_sq)
    return ratios


def synthetic_logits(labels: np.ndarray, epochs: int, num_classes: int = 10, seed: int = 0) -> np.ndarray:
    """(epochs, n, C) float32 logits drifting over epochs: a random walk pulled towards ``labels``."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    target = np.eye(num_classes)[labels]
    z = rng.normal(size=(n, num_classes))
    out = np.empty((epochs, n, num_classes), dtype=np.float32)
    for e in range(epochs):
        z = z + 0.3 * rng.normal(size=z.shape) + 0.2 * target
        out[e] = z
    return out


def frequency_benchmark(
    out=None,
    *,
    n: int | None = None,
    epochs: int = 50,
    n_deltas: int = 12,
    num_classes: int = 10,
    delta_rel: tuple[float, float] | None = None,
    precision: str = "float32",
    repeats: int = 6,
    threads: int = 2,
    data_root=DEFAULT_DATA_ROOT,
    seed: int = 0,
    config=ORIGINAL_CONFIG,
) -> pd.DataFrame:
    """Seconds of :func:`selfdistill.frequency.frequency_table` vs :func:`original_frequency_ratio`, same data.

    Inputs: the first ``n`` CIFAR-10 test images (or synthetic ones), flattened, pixels / 255. Outputs:
    :func:`synthetic_logits`. Deltas: ``n_deltas`` values log-spaced over ``delta_rel`` times the median
    off-diagonal squared distance (fixed before timing; both get the same absolute values). The baseline runs
    every epoch (no extrapolation), in ``repeats - 1`` chunks of epochs; the project's time is the median of
    ``repeats`` runs, one before the baseline and one after each chunk, so both see the same machine load. CPU
    only (numpy), BLAS limited to ``threads`` threads.

    ``n`` and ``delta_rel`` default to the study's ``frequency.test_subset`` and the smallest and largest of its
    ``frequency.deltas`` (times the median squared distance unless its ``delta_scale`` is ``absolute``), from
    ``config`` (the original study, ``config/cifar10_seed.yaml``).
    """
    x, outputs, deltas, data = _inputs(config, n, delta_rel, n_deltas, epochs, num_classes, data_root, seed)
    project, baseline, times, t_baseline = _timed_runs(x, outputs, deltas, precision, repeats, threads)
    t_project = float(np.median(times))
    log.info("frequency project: %s s", ", ".join(f"{t:.3f}" for t in times))
    log.info("frequency original approach: %.3f s", t_baseline)
    diff = float(np.max(np.abs(project - baseline)))
    cpu = torch.device("cpu")
    common = {"device": "cpu", "device_name": device_name(cpu), "threads": threads, "data": data, "n_images": len(x)}
    rows = [
        row(
            "frequency",
            variant=name,
            **common,
            seconds=sec,
            throughput=epochs / sec,
            throughput_unit="epochs/s",
            ratio=t_baseline / sec,
            n_epochs=epochs,
            n_deltas=n_deltas,
            max_abs_diff=diff,
        )
        for name, sec in ((f"project_{precision}", t_project), ("original_per_epoch", t_baseline))
    ]
    summary = (
        f"frequency analysis on cpu ({device_name(cpu)}), {data} data, {len(x)} images x {x.shape[1]} dims, "
        f"{n_deltas} deltas, {epochs} epochs: project {t_project:.2f}s vs original approach {t_baseline:.2f}s "
        f"= {t_baseline / t_project:.1f}x, max |ratio difference| {diff:.1e}"
    )
    return finish(rows, out, summary)


def _inputs(
    config, n: int | None, delta_rel, n_deltas: int, epochs: int, num_classes: int, data_root, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(inputs x, synthetic outputs, absolute deltas, the data's name) of :func:`frequency_benchmark`."""
    frequency = study_config(config)["frequency"]
    n = int(frequency["test_subset"]) if n is None else n
    delta_rel = (min(frequency["deltas"]), max(frequency["deltas"])) if delta_rel is None else delta_rel

    images, labels, data = load_images(data_root, n, train=False, seed=seed + 1)
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    outputs = synthetic_logits(labels, epochs, num_classes, seed)
    # the study's deltas are multiples of the median squared distance unless its delta_scale is absolute
    scale = 1.0 if frequency.get("delta_scale") == "absolute" else median_sq_dist(pairwise_sq_dists(x))
    deltas = np.geomspace(*delta_rel, n_deltas) * scale
    return x, outputs, deltas, data


def _timed_runs(
    x: np.ndarray, outputs: np.ndarray, deltas: np.ndarray, precision: str, repeats: int, threads: int
) -> tuple[np.ndarray, np.ndarray, list[float], float]:
    """(project's ratios, baseline's ratios, the project's times, the baseline's time), BLAS limited to
    ``threads``. The project's runs are spread over the baseline's (one before it, one after each chunk of its
    epochs), so that both see the same machine load; the baseline still runs every epoch, in order."""
    # scikit-learn's dependency
    from threadpoolctl import threadpool_limits

    epochs, n_deltas = outputs.shape[0], len(deltas)
    times: list[float] = []

    def project_run() -> np.ndarray:
        t0 = time.perf_counter()
        table = frequency_table(x, outputs, deltas, precision=precision)
        times.append(time.perf_counter() - t0)
        return table["ratio"].to_numpy().reshape(epochs, n_deltas)

    with threadpool_limits(limits=max(1, int(threads))):
        project = project_run()
        parts, t_baseline = [], 0.0
        for chunk in np.array_split(np.arange(epochs), max(1, repeats - 1)):
            t0 = time.perf_counter()
            parts.append(original_frequency_ratio(x, outputs[chunk], deltas))
            t_baseline += time.perf_counter() - t0
            if repeats > 1:
                project_run()
    return project, np.concatenate(parts), times, t_baseline


def run(out=None, *, device: str = "auto", threads: int = 2, data_root=DEFAULT_DATA_ROOT, **options) -> pd.DataFrame:
    """:func:`frequency_benchmark` with BLAS limited to ``threads``; numpy on the CPU whatever ``device`` says."""
    return frequency_benchmark(out, threads=threads, data_root=data_root, **options)


def main(argv: Sequence[str] | None = None) -> None:
    command_line(NAME, argv, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    main()
