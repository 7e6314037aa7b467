"""Which epochs' outputs a run stores (``frequency.record_epochs``), shared by the planner and the training job.

Per-epoch outputs grow linearly with the run: a 1800-epoch CIFAR-10 run at the seed study's subset sizes would
store ~1 GB. The history keeps every epoch; ``outputs.h5`` (and so the frequency analysis) keeps a bounded set:

- ``all``: every epoch;
- ``auto`` (default): every epoch while that fits in :data:`AUTO_BUDGET_BYTES`, else as many log-spaced epochs as fit;
- ``{every: k}``: epochs k, 2k, 3k, … and always the first and the last;
- ``{log: n}``: about ``n`` log-spaced epochs (dense early, where the network changes fastest), first and last
  included.

Pure Python (no numpy), so the Snakefile can size the frequency jobs with it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping

#: ``auto`` keeps a run's stored outputs below this many bytes (float32 probs + logits of both subsets)
AUTO_BUDGET_BYTES = 200 * 10**6


def log_spaced(epochs: int, n: int) -> list[int]:
    """``n`` distinct epochs in 1..``epochs``, log-spaced, always with 1 and ``epochs`` (all if n ≥ epochs).

    Each next epoch is the previous one times the constant ratio that would reach ``epochs`` in the picks left,
    rounded, at least one more than the previous, and never so large that the picks left would not fit: O(n).
    """
    if n >= epochs:
        return list(range(1, epochs + 1))
    picks = [1]
    for left in range(max(n, 2) - 1, 0, -1):
        ratio = (epochs / picks[-1]) ** (1 / left)
        picks.append(min(max(picks[-1] + 1, round(picks[-1] * ratio)), epochs - left + 1))
    return picks


def recorded_epochs(epochs: int, setting: str | Mapping = "auto", bytes_per_epoch: int = 0) -> list[int]:
    """The sorted 1-based epochs whose outputs are stored, for a run of ``epochs`` epochs.

    ``bytes_per_epoch``: the size of one epoch's stored outputs, used by ``auto``.
    """
    if setting == "all":
        return list(range(1, epochs + 1))
    if setting == "auto":
        fits = AUTO_BUDGET_BYTES // max(int(bytes_per_epoch), 1)
        return log_spaced(epochs, max(int(fits), 2))
    if isinstance(setting, Mapping) and set(setting) == {"every"}:
        every = int(setting["every"])
        return sorted({1, epochs} | set(range(every, epochs + 1, every)))
    if isinstance(setting, Mapping) and set(setting) == {"log"}:
        return log_spaced(epochs, int(setting["log"]))
    raise ValueError(f"frequency.record_epochs = {setting!r}: expected all, auto, {{every: k}} or {{log: n}}")


def output_bytes_per_epoch(n_train_subset: int, n_test_subset: int, num_classes: int) -> int:
    """Bytes of one stored epoch: float32 probabilities and logits of the training and test subsets."""
    return (n_train_subset + n_test_subset) * num_classes * 2 * 4
