"""A collapsed run: a network whose test predictions fall (almost) all on one class has stopped discriminating, and
its accuracy is the share of that class, not a result about noisy labels.

The threshold is :data:`COLLAPSE_SHARE` (95% of the test images predicted as one class). The test splits here are
close to balanced (digits: 36 ± 1 images per class; CIFAR-10: 1,000 per class), so a network that still tells the
classes apart predicts each class for about 1/C of them; even a network that has memorised pair-flip noise
predicts ``y + 1`` for the classes it got wrong, which spreads its predictions over the classes. 95% leaves room for
a network that is merely poor (it may favour a few classes) and flags one that has collapsed to a constant.

The training step records, per epoch, the most predicted test class and its share (history columns
``test_pred_top_class``, ``test_pred_top_share``); the training log, the setting's summary and the study overview
flag the runs at or above the threshold at the last and at the early-stopped epoch.
"""

from __future__ import annotations

#: share of the test images predicted as one class at or above which a run is flagged as collapsed
COLLAPSE_SHARE = 0.95


def is_collapsed(share: float) -> bool:
    """True when ``share`` (of test images predicted as the most predicted class) reaches :data:`COLLAPSE_SHARE`."""
    return share >= COLLAPSE_SHARE


def collapse_text(top_class: int, share: float) -> str:
    """'collapsed: predicts class 3 for 97% of test images' (the words of every flag)."""
    return f"collapsed: predicts class {int(top_class)} for {100 * share:.0f}% of test images"
