"""Training modes (selfdistill.modes): the registry, each mode's loss against a float64 pure-Python reference, the
per-epoch hooks and the resumable state.

The references are tests/helpers.py's loops, as in tests/test_losses.py (math.exp / math.log over Python floats);
the modes compute in float32, so values are compared with rtol 1e-5.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import (
    as_rows,
    close,
    make_batch,
    onehot,
    ref_argmax,
    ref_bootstrap_hard_targets,
    ref_bootstrap_soft_targets,
    ref_kl,
    ref_self_distill_targets,
    ref_soft_ce,
    ref_softmax,
)

from selfdistill.modes import REGISTRY, Mode, build_mode

N_TRAIN = 40


def batch_and_mode(name, n_match=6, **params):
    """A mode built on N_TRAIN noisy labels whose first B rows are the batch's labels, and that batch."""
    logits, labels = make_batch(n_match)
    all_labels = torch.cat([labels, torch.randint(0, logits.shape[1], (N_TRAIN - len(labels),))])
    mode = build_mode(name, all_labels, logits.shape[1], params)
    return mode, logits, labels, torch.arange(len(labels))


def ref_interp_kl(z, y, teacher, lam):
    n = len(z[0])
    targets = [[(1 - lam) * a + lam * b for a, b in zip(onehot(k, n), q)] for k, q in zip(y, teacher)]
    return ref_kl(z, targets)


def test_registry_names_every_mode_once():
    assert list(REGISTRY) == [
        "ce",
        "self_distill",
        "self_distill_seq",
        "bootstrap_soft",
        "bootstrap_hard",
        "interp_soft",
        "interp_stored",
        "interp_hard",
        "interp_agree",
    ]
    assert all(issubclass(cls, Mode) and cls.name == name for name, cls in REGISTRY.items())


def test_unknown_mode_is_one_line():
    with pytest.raises(ValueError, match=r"unknown mode 'distill'; allowed: ce, self_distill"):
        build_mode("distill", torch.zeros(3, dtype=torch.long), 2)


def test_parameters_of_other_modes_are_ignored():
    mode = build_mode(
        "bootstrap_soft", torch.zeros(3, dtype=torch.long), 2, {"seq_alpha": 0.9, "bootstrap_soft_beta": 0.5}
    )
    assert mode.beta == 0.5


# ----------------------------------------------------------------------------------------------------------------
# The five original modes: the same values as the float64 references of the loss functions
# ----------------------------------------------------------------------------------------------------------------


def test_ce_mode():
    mode, z, y, idx = batch_and_mode("ce")
    assert close(mode.loss(z, y, idx), ref_soft_ce(as_rows(z), [onehot(k, z.shape[1]) for k in y.tolist()]))
    assert mode.distill_weight() is None


def test_self_distill_mode_reports_the_epoch_mean_lambda():
    mode, z, y, idx = batch_and_mode("self_distill", n_match=6)
    targets, lam = ref_self_distill_targets(as_rows(z), y.tolist())
    mode.start_epoch()
    assert close(mode.loss(z, y, idx), ref_kl(as_rows(z), targets))
    z2, y2 = make_batch(n_match=11, seed=3)
    _, lam2 = ref_self_distill_targets(as_rows(z2), y2.tolist())
    mode.loss(z2, y2, idx)
    assert close(mode.distill_weight(), (lam + lam2) / 2)
    mode.start_epoch()
    assert mode.distill_weight() == 0.0


@pytest.mark.parametrize(
    "name,ref,key,beta",
    [
        ("bootstrap_soft", ref_bootstrap_soft_targets, "bootstrap_soft_beta", 0.7),
        ("bootstrap_hard", ref_bootstrap_hard_targets, "bootstrap_hard_beta", 0.6),
    ],
)
def test_bootstrap_modes(name, ref, key, beta):
    mode, z, y, idx = batch_and_mode(name, **{key: beta})
    assert close(mode.loss(z, y, idx), ref_soft_ce(as_rows(z), ref(as_rows(z), y.tolist(), beta)))
    assert close(mode.distill_weight(), 1 - beta)


def test_sequential_mode_updates_its_soft_labels_after_each_epoch():
    """Soft labels start one-hot, stay during warm-up, then move by α towards the eval-mode prediction."""
    mode, z, y, _ = batch_and_mode("self_distill_seq", seq_alpha=0.4, seq_warmup=1, seq_ramp=0)
    idx = torch.arange(len(y))
    c = z.shape[1]
    assert close(mode.loss(z, y, idx), ref_soft_ce(as_rows(z), [onehot(k, c) for k in y.tolist()]))
    probs = torch.softmax(torch.randn(N_TRAIN, c, generator=torch.Generator().manual_seed(5)), dim=1)
    mode.end_epoch(1, probs)
    assert mode.distill_weight() == 0.0
    mode.end_epoch(2, probs)
    assert mode.distill_weight() == 0.4
    p, labels = as_rows(probs), mode.labels.tolist()
    soft = [[0.6 * a + 0.4 * b for a, b in zip(onehot(k, c), row)] for k, row in zip(labels, p)]
    assert close(mode.loss(z, y, idx), ref_soft_ce(as_rows(z), soft[: len(y)]))


# ----------------------------------------------------------------------------------------------------------------
# The original repository's four unused interpolation losses
# ----------------------------------------------------------------------------------------------------------------


def test_interp_soft_mode():
    mode, z, y, idx = batch_and_mode("interp_soft", interp_soft_lambda=0.3)
    teacher = [ref_softmax(row) for row in as_rows(z)]
    assert close(mode.loss(z, y, idx), ref_interp_kl(as_rows(z), y.tolist(), teacher, 0.3))
    assert mode.distill_weight() == 0.3


def test_interp_hard_mode():
    mode, z, y, idx = batch_and_mode("interp_hard", interp_hard_lambda=0.1)
    c = z.shape[1]
    teacher = [onehot(ref_argmax(row), c) for row in as_rows(z)]
    assert close(mode.loss(z, y, idx), ref_interp_kl(as_rows(z), y.tolist(), teacher, 0.1))


def test_interp_stored_mode_uses_the_prediction_of_the_samples_last_visit():
    mode, z, y, idx = batch_and_mode("interp_stored", interp_stored_lambda=0.25)
    c = z.shape[1]
    # first visit: the stored prediction is the noisy one-hot label itself, so the loss is plain cross-entropy
    first = [onehot(k, c) for k in y.tolist()]
    assert close(mode.loss(z, y, idx), ref_interp_kl(as_rows(z), y.tolist(), first, 0.25))
    # second visit with other logits: the teacher is the softmax of the first visit's logits
    z2, _ = make_batch(n_match=2, seed=9)
    teacher = [ref_softmax(row) for row in as_rows(z)]
    assert close(mode.loss(z2, y, idx), ref_interp_kl(as_rows(z2), y.tolist(), teacher, 0.25))
    # rows that were never in a batch keep their one-hot label
    untouched = mode.stored[len(y) :]
    assert torch.equal(untouched, torch.nn.functional.one_hot(mode.labels[len(y) :], c).float())


@pytest.mark.parametrize("temperature", [None, 2.0])
def test_interp_agree_mode(temperature):
    mode, z, y, idx = batch_and_mode(
        "interp_agree", n_match=6, interp_agree_scale=0.9, interp_agree_temperature=temperature
    )
    rows, c = as_rows(z), z.shape[1]
    agreement = sum(1 for row, k in zip(rows, y.tolist()) if ref_argmax(row) == k) / len(rows)
    lam = 0.9 * agreement
    if temperature is None:
        teacher = [onehot(ref_argmax(row), c) for row in rows]
    else:
        teacher = [ref_softmax([v / temperature for v in row]) for row in rows]
    assert close(mode.loss(z, y, idx), ref_interp_kl(rows, y.tolist(), teacher, lam))
    assert close(mode.distill_weight(), lam)


@pytest.mark.parametrize("name", ["interp_soft", "interp_stored", "interp_hard", "interp_agree"])
def test_interpolation_gradient_is_p_minus_t(name):
    """The teacher side is detached: d loss / d z = (softmax(z) − t) / B for the mode's own target t."""
    mode, z, y, idx = batch_and_mode(name)
    z = z.clone().requires_grad_(True)
    if name == "interp_stored":
        mode.stored[idx] = torch.softmax(torch.randn(len(y), z.shape[1], generator=torch.Generator().manual_seed(2)), 1)
    stored = mode.stored[idx].clone() if name == "interp_stored" else None
    mode.loss(z, y, idx).backward()
    rows, c, b = as_rows(z), z.shape[1], len(y)
    preds = [ref_argmax(row) for row in rows]
    if name == "interp_soft":
        lam, teacher = 0.2, [ref_softmax(row) for row in rows]
    elif name == "interp_stored":
        lam, teacher = 0.1, as_rows(stored)
    elif name == "interp_hard":
        lam, teacher = 0.1, [onehot(p, c) for p in preds]
    else:
        lam = 0.9 * sum(p == k for p, k in zip(preds, y.tolist())) / b
        teacher = [onehot(p, c) for p in preds]
    for i, (row, k) in enumerate(zip(rows, y.tolist())):
        p = ref_softmax(row)
        for j in range(c):
            t = (1 - lam) * onehot(k, c)[j] + lam * teacher[i][j]
            assert math.isclose(float(z.grad[i, j]), (p[j] - t) / b, rel_tol=1e-4, abs_tol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# State
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(REGISTRY))
def test_state_dict_round_trip_restores_the_next_loss(name):
    """A mode rebuilt from its state_dict (after torch.save/load with weights_only) continues identically."""
    import io

    mode, z, y, idx = batch_and_mode(name)
    mode.start_epoch()
    mode.loss(z, y, idx)
    mode.end_epoch(7, torch.softmax(torch.randn(N_TRAIN, z.shape[1]), dim=1))
    buffer = io.BytesIO()
    torch.save(mode.state_dict(), buffer)
    buffer.seek(0)
    clone = build_mode(name, mode.labels, z.shape[1])
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    z2, _ = make_batch(n_match=3, seed=4)
    assert torch.equal(mode.loss(z2, y, idx), clone.loss(z2, y, idx))
    assert mode.distill_weight() == clone.distill_weight()
