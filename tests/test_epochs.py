"""frequency.record_epochs: which epochs' outputs a run stores (selfdistill.epochs)."""

from __future__ import annotations

import itertools

import pytest

from selfdistill.epochs import AUTO_BUDGET_BYTES, log_spaced, output_bytes_per_epoch, recorded_epochs


def test_all_and_every():
    assert recorded_epochs(5, "all") == [1, 2, 3, 4, 5]
    assert recorded_epochs(10, {"every": 4}) == [1, 4, 8, 10]
    assert recorded_epochs(3, {"every": 10}) == [1, 3]


@pytest.mark.parametrize("epochs,n", [(1800, 200), (1800, 50), (200, 30), (60, 10), (7, 3)])
def test_log_spaced_is_about_n_dense_early_and_keeps_first_and_last(epochs, n):
    picks = log_spaced(epochs, n)
    assert picks[0] == 1 and picks[-1] == epochs
    assert picks == sorted(set(picks))
    assert len(picks) == n
    gaps = [b - a for a, b in itertools.pairwise(picks)]
    # log spacing: the gaps never shrink by more than rounding as epochs grow
    assert all(later >= earlier - 1 for earlier, later in itertools.pairwise(gaps))


def test_log_spaced_is_fast_for_long_runs():
    """Planning calls it for every study: 100,000 epochs must not take noticeable time (it is O(n))."""
    picks = log_spaced(100_000, 90_000)
    assert len(picks) == 90_000 and picks[-1] == 100_000


def test_log_spaced_with_more_picks_than_epochs_is_all():
    assert log_spaced(5, 9) == [1, 2, 3, 4, 5]


def test_auto_keeps_everything_that_fits_and_bounds_the_rest():
    digits = output_bytes_per_epoch(1000, 360, 10)
    assert recorded_epochs(60, "auto", digits) == list(range(1, 61))
    # the CIFAR-10 seed study's subsets (5,000 train + 2,000 test images) over the original's 1800 epochs
    cifar = output_bytes_per_epoch(5000, 2000, 10)
    assert 1800 * cifar > 5 * AUTO_BUDGET_BYTES
    stored = recorded_epochs(1800, "auto", cifar)
    assert len(stored) * cifar <= AUTO_BUDGET_BYTES * 1.01
    assert len(stored) >= 0.9 * AUTO_BUDGET_BYTES // cifar
    assert stored[0] == 1 and stored[-1] == 1800


def test_bad_setting_names_the_key():
    with pytest.raises(ValueError, match="frequency.record_epochs"):
        recorded_epochs(10, {"sometimes": 2})
