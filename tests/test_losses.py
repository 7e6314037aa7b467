"""Tests of selfdistill.losses (docs/science.md, "Training objectives") against a float64 pure-Python reference
(math.exp / math.log loops, in tests/helpers.py).

The module computes in float32, so values are compared with rtol 1e-5. Gradients are compared with the analytic
gradient of a cross-entropy against a *detached* target, (p − t)/B, computed by the same loops.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import (
    B,
    C,
    as_rows,
    close,
    make_batch,
    onehot,
    ref_bootstrap_hard_targets,
    ref_bootstrap_soft_targets,
    ref_ce,
    ref_grad,
    ref_kl,
    ref_log_softmax,
    ref_self_distill_targets,
    ref_soft_ce,
)

from selfdistill import losses as L

# ----------------------------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def batch():
    return make_batch(n_match=6)


# ----------------------------------------------------------------------------------------------------------------
# Values
# ----------------------------------------------------------------------------------------------------------------


def test_batch_fixture_is_mixed(batch):
    logits, labels = batch
    match = (logits.argmax(1) == labels).tolist()
    assert sum(match) == 6 and not all(match)


def test_soft_cross_entropy(batch):
    logits, _ = batch
    g = torch.Generator().manual_seed(1)
    targets = torch.softmax(torch.randn(B, C, generator=g), dim=1)
    got = L.soft_cross_entropy(logits, targets)
    assert got.dim() == 0 and got.dtype == torch.float32
    assert close(got, ref_soft_ce(as_rows(logits), as_rows(targets)))


def test_ce_loss(batch):
    logits, labels = batch
    loss, weight = L.ce_loss(logits, labels)
    assert weight is None
    assert close(loss, ref_ce(as_rows(logits), labels.tolist()))


def test_self_distill_loss_mixed(batch):
    logits, labels = batch
    z, y = as_rows(logits), labels.tolist()
    t, lam = ref_self_distill_targets(z, y)
    assert lam == 6 / 17
    loss, got_lam = L.self_distill_loss(logits, labels)
    assert close(got_lam, lam)
    assert close(loss, ref_kl(z, t))
    # KL differs from the plain CE with t whenever some row of t is not one-hot (Σ t log t < 0)
    assert not close(loss, ref_soft_ce(z, t))
    assert float(loss) >= 0.0


@pytest.mark.parametrize("n_match", [0, B])
def test_self_distill_loss_extremes_reduce_to_ce(n_match):
    """λ = 0: t = onehot(y). λ = 1: argmax = y everywhere, so t = onehot(y) again. Both give plain CE."""
    logits, labels = make_batch(n_match=n_match, seed=3)
    z, y = as_rows(logits), labels.tolist()
    loss, lam = L.self_distill_loss(logits, labels)
    assert float(lam) == n_match / B
    assert close(loss, ref_ce(z, y))


def test_self_distill_targets_use_batch_lambda():
    """Hand case: B=4, two rows match, λ=1/2; a mismatched row has t = ½ onehot(y) + ½ onehot(argmax)."""
    logits = torch.tensor(
        [
            # argmax 0, y 0 (match)
            [2.0, 0.0, -1.0],
            # argmax 1, y 1 (match)
            [0.0, 3.0, 0.5],
            # argmax 0, y 2
            [1.0, -2.0, 0.0],
            # argmax 2, y 1
            [0.2, 0.1, 1.5],
        ]
    )
    labels = torch.tensor([0, 1, 2, 1])
    z = as_rows(logits)
    t = [
        [1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.5, 0.0, 0.5],
        [0.0, 0.5, 0.5],
    ]
    expected = 0.0
    for row, trow in zip(z, t):
        logp = ref_log_softmax(row)
        for tk, lp in zip(trow, logp):
            expected += (tk * math.log(tk) if tk > 0 else 0.0) - tk * lp
    expected /= 4
    loss, lam = L.self_distill_loss(logits, labels)
    assert float(lam) == 0.5
    assert close(loss, expected)


@pytest.mark.parametrize("beta", [0.95, 0.6, 1.0])
def test_bootstrap_soft(batch, beta):
    logits, labels = batch
    z, y = as_rows(logits), labels.tolist()
    loss, weight = L.bootstrap_soft_loss(logits, labels, beta=beta)
    assert math.isclose(weight, 1 - beta, abs_tol=1e-12)
    assert close(loss, ref_soft_ce(z, ref_bootstrap_soft_targets(z, y, beta)))


@pytest.mark.parametrize("beta", [0.8, 0.5, 0.0])
def test_bootstrap_hard(batch, beta):
    logits, labels = batch
    z, y = as_rows(logits), labels.tolist()
    loss, weight = L.bootstrap_hard_loss(logits, labels, beta=beta)
    assert math.isclose(weight, 1 - beta, abs_tol=1e-12)
    assert close(loss, ref_soft_ce(z, ref_bootstrap_hard_targets(z, y, beta)))


def test_default_betas(batch):
    logits, labels = batch
    z, y = as_rows(logits), labels.tolist()
    soft, w_soft = L.bootstrap_soft_loss(logits, labels)
    hard, w_hard = L.bootstrap_hard_loss(logits, labels)
    assert math.isclose(w_soft, 0.05, abs_tol=1e-12)
    assert math.isclose(w_hard, 0.2, abs_tol=1e-12)
    assert close(soft, ref_soft_ce(z, ref_bootstrap_soft_targets(z, y, 0.95)))
    assert close(hard, ref_soft_ce(z, ref_bootstrap_hard_targets(z, y, 0.8)))


def test_half_precision_logits_are_upcast():
    logits, labels = make_batch(n_match=5, seed=4)
    half = logits.half()
    # the reference sees exactly the float16 values
    z, y = (
        as_rows(half),
        labels.tolist(),
    )
    t, _ = ref_self_distill_targets(z, y)
    for fn, ref in [
        (L.ce_loss, ref_ce(z, y)),
        (L.self_distill_loss, ref_kl(z, t)),
        (L.bootstrap_soft_loss, ref_soft_ce(z, ref_bootstrap_soft_targets(z, y, 0.95))),
        (L.bootstrap_hard_loss, ref_soft_ce(z, ref_bootstrap_hard_targets(z, y, 0.8))),
    ]:
        loss, _ = fn(half, labels)
        assert loss.dtype == torch.float32, fn.__name__
        assert close(loss, ref), fn.__name__


# ----------------------------------------------------------------------------------------------------------------
# Gradients: the teacher side is detached
# ----------------------------------------------------------------------------------------------------------------


def _grad(fn, logits, labels, **kw):
    z = logits.clone().requires_grad_(True)
    loss, _ = fn(z, labels, **kw)
    loss.backward()
    return z.grad.double().numpy()


def test_grad_self_distill_is_p_minus_t(batch):
    logits, labels = batch
    z, y = as_rows(logits), labels.tolist()
    t, _ = ref_self_distill_targets(z, y)
    np.testing.assert_allclose(_grad(L.self_distill_loss, logits, labels), ref_grad(z, t), rtol=1e-4, atol=1e-7)


def test_grad_ce(batch):
    logits, labels = batch
    z, y = as_rows(logits), labels.tolist()
    t = [onehot(k, C) for k in y]
    np.testing.assert_allclose(_grad(L.ce_loss, logits, labels), ref_grad(z, t), rtol=1e-4, atol=1e-7)


def test_grad_bootstrap_soft_target_detached(batch):
    """With p in the target detached the gradient is (p − t)/B = β(p − onehot)/B; not detached it would differ."""
    logits, labels = batch
    z, y = as_rows(logits), labels.tolist()
    beta = 0.7
    t = ref_bootstrap_soft_targets(z, y, beta)
    got = _grad(L.bootstrap_soft_loss, logits, labels, beta=beta)
    np.testing.assert_allclose(got, ref_grad(z, t), rtol=1e-4, atol=1e-7)


def test_grad_bootstrap_hard(batch):
    logits, labels = batch
    z, y = as_rows(logits), labels.tolist()
    t = ref_bootstrap_hard_targets(z, y, 0.8)
    np.testing.assert_allclose(
        _grad(L.bootstrap_hard_loss, logits, labels),
        ref_grad(z, t),
        rtol=1e-4,
        atol=1e-7,
    )


def test_grad_self_distill_numeric_with_frozen_teacher(batch):
    """Central differences of KL(t‖softmax(z)) in float64 with t frozen at the unperturbed batch's targets."""
    logits, labels = batch
    z, y = as_rows(logits), labels.tolist()
    t, _ = ref_self_distill_targets(z, y)
    got = _grad(L.self_distill_loss, logits, labels)
    h = 1e-6
    for b, k in [(0, 0), (3, 2), (6, 5), (10, 1), (16, 6)]:
        plus = [row[:] for row in z]
        minus = [row[:] for row in z]
        plus[b][k] += h
        minus[b][k] -= h
        numeric = (ref_kl(plus, t) - ref_kl(minus, t)) / (2 * h)
        assert math.isclose(got[b, k], numeric, rel_tol=1e-3, abs_tol=1e-6), (b, k)


def test_self_distill_lambda_has_no_grad(batch):
    logits, labels = batch
    z = logits.clone().requires_grad_(True)
    loss, lam = L.self_distill_loss(z, labels)
    assert loss.requires_grad
    assert not torch.is_tensor(lam) or not lam.requires_grad


# ----------------------------------------------------------------------------------------------------------------
# self_distill_seq: α schedule and soft-label update
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "epoch,value,warmup,ramp,expected",
    [
        # constant after warm-up
        (1, 0.3, 5, 0, 0.0),
        (5, 0.3, 5, 0, 0.0),
        (6, 0.3, 5, 0, 0.3),
        (60, 0.3, 5, 0, 0.3),
        # no warm-up, constant
        (1, 0.25, 0, 0, 0.25),
        # warm-up 2 then linear ramp over 4 epochs to 0.4
        (2, 0.4, 2, 4, 0.0),
        (3, 0.4, 2, 4, 0.1),
        (4, 0.4, 2, 4, 0.2),
        (5, 0.4, 2, 4, 0.3),
        (6, 0.4, 2, 4, 0.4),
        (7, 0.4, 2, 4, 0.4),
        (100, 0.4, 2, 4, 0.4),
        # ramp without warm-up
        (1, 1.0, 0, 2, 0.5),
        (2, 1.0, 0, 2, 1.0),
    ],
)
def test_seq_alpha(epoch, value, warmup, ramp, expected):
    got = L.seq_alpha(epoch, value, warmup=warmup, ramp=ramp)
    assert type(got) is float
    assert math.isclose(got, expected, rel_tol=1e-12, abs_tol=1e-15)


def test_seq_alpha_defaults():
    assert L.seq_alpha(1, 0.3) == 0.3


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_update_soft_labels(alpha):
    g = torch.Generator().manual_seed(5)
    soft = torch.softmax(torch.randn(9, 4, generator=g), dim=1)
    probs = torch.softmax(torch.randn(9, 4, generator=g), dim=1)
    got = L.update_soft_labels(soft, probs, alpha)
    s, p = as_rows(soft), as_rows(probs)
    assert got.shape == soft.shape
    for i in range(9):
        for k in range(4):
            expected = (1 - alpha) * s[i][k] + alpha * p[i][k]
            assert math.isclose(float(got[i, k]), expected, rel_tol=1e-6, abs_tol=1e-7)
        assert math.isclose(float(got[i].sum()), 1.0, rel_tol=1e-6)
