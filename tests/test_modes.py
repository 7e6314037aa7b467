"""Training modes (selfdistill.modes): the registry, each mode's loss against a float64 pure-Python reference, the
per-epoch hooks and the resumable state.

The references are tests/helpers.py's loops, as in tests/test_losses.py (math.exp / math.log over Python floats);
the modes compute in float32, so values are compared with rtol 1e-5.
"""

from __future__ import annotations

import math

import numpy as np
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
    ref_grad,
    ref_kl,
    ref_log_softmax,
    ref_self_distill_targets,
    ref_soft_ce,
    ref_softmax,
)

from selfdistill.mode_names import TEACHER_OF
from selfdistill.modes import REGISTRY, Mode, build_mode
from selfdistill.schema import section_defaults

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
        "distill_early_teacher",
        "elr",
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


def test_left_out_parameters_take_the_schemas_defaults():
    """The schema is the parameters' one source of defaults: a mode built without them has the schema's values."""
    defaults = section_defaults("distill")
    mode = build_mode("self_distill_seq", torch.zeros(3, dtype=torch.long), 2, {"seq_ramp": 7})
    assert (mode.alpha, mode.warmup, mode.ramp) == (defaults["seq_alpha"], defaults["seq_warmup"], 7)
    assert build_mode("interp_agree", torch.zeros(3, dtype=torch.long), 2).temperature is None


def test_a_parameter_missing_from_the_schema_stops_the_mode_definition():
    with pytest.raises(
        ValueError, match=r"mode 'no_such_mode': parameter no_such_weight has no default in the distill"
    ):

        class NoSuchMode(Mode):
            name = "no_such_mode"

            def __init__(self, labels, num_classes, *, seq_alpha, no_such_weight):
                super().__init__(labels, num_classes)

    assert "no_such_mode" not in REGISTRY


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
    if name in TEACHER_OF:
        mode.set_teacher(torch.randn(N_TRAIN, z.shape[1]))
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


# ----------------------------------------------------------------------------------------------------------------
# distill_early_teacher and elr
# ----------------------------------------------------------------------------------------------------------------


def ref_teacher_targets(teacher, labels, temperature, weight):
    """w·onehot(y) + (1−w)·softmax(z_T / T), row by row."""
    out = []
    for row, k in zip(teacher, labels):
        soft = ref_softmax([v / temperature for v in row])
        out.append([weight * a + (1 - weight) * b for a, b in zip(onehot(k, len(row)), soft)])
    return out


@pytest.mark.parametrize(("temperature", "weight"), [(1.0, 0.0), (2.5, 0.3)])
def test_distill_early_teacher_mode_loss_and_gradient(temperature, weight):
    mode, z, y, idx = batch_and_mode(
        "distill_early_teacher", teacher_temperature=temperature, teacher_label_weight=weight
    )
    teacher = 2.0 * torch.randn(N_TRAIN, z.shape[1], generator=torch.Generator().manual_seed(8))
    mode.set_teacher(teacher)
    targets = ref_teacher_targets(as_rows(teacher), mode.labels.tolist(), temperature, weight)
    rows = idx.flip(0)  # the batch's rows in another order: the targets are indexed by row
    z = z.clone().requires_grad_(True)
    loss = mode.loss(z, y, rows)
    batch_targets = [targets[i] for i in rows.tolist()]
    assert close(loss.detach(), ref_soft_ce(as_rows(z), batch_targets))
    loss.backward()
    assert np.allclose(z.grad.double().numpy(), ref_grad(as_rows(z), batch_targets), rtol=1e-4, atol=1e-6)
    assert close(mode.distill_weight(), 1 - weight)


def test_distill_early_teacher_needs_its_teacher():
    mode, z, y, idx = batch_and_mode("distill_early_teacher")
    with pytest.raises(RuntimeError, match="no teacher targets"):
        mode.loss(z, y, idx)
    with pytest.raises(ValueError, match=r"teacher logits have shape \(3, 7\), expected \(40, 7\)"):
        mode.set_teacher(torch.zeros(3, z.shape[1]))


ELR_CLAMP = 1e-4


def ref_elr_probs(row):
    """softmax, each value clamped to [1e-4, 1 − 1e-4] (not renormalised)."""
    return [min(max(v, ELR_CLAMP), 1 - ELR_CLAMP) for v in ref_softmax(row)]


def ref_elr_targets(z, ensemble, beta):
    """The temporal ensemble after one visit: t ← β·t + (1−β)·p/Σp, p the clamped softmax."""
    out = []
    for row, t in zip(z, ensemble):
        p = ref_elr_probs(row)
        s = sum(p)
        out.append([beta * a + (1 - beta) * b / s for a, b in zip(t, p)])
    return out


def ref_elr_objective(z, y, targets, lam):
    """CE(z, y) + λ·mean log(1 − ⟨t, p⟩) with the targets t held fixed."""
    total = 0.0
    for row, k, t in zip(z, y, targets):
        p = ref_elr_probs(row)
        total += -ref_log_softmax(row)[k] + lam * math.log(1 - sum(a * b for a, b in zip(t, p)))
    return total / len(z)


def test_elr_mode_loss_and_its_temporal_ensemble():
    """First visit: the ensemble moves from 0; second visit: from the first visit's value; other rows stay 0."""
    lam, beta = 3.0, 0.7
    mode, z, y, idx = batch_and_mode("elr", elr_lambda=lam, elr_beta=beta)
    rows, c = as_rows(z), z.shape[1]
    zero = [[0.0] * c for _ in rows]
    first = ref_elr_targets(rows, zero, beta)
    assert close(mode.loss(z, y, idx), ref_elr_objective(rows, y.tolist(), first, lam))
    z2, _ = make_batch(n_match=2, seed=9)
    second = ref_elr_targets(as_rows(z2), first, beta)
    assert close(mode.loss(z2, y, idx), ref_elr_objective(as_rows(z2), y.tolist(), second, lam))
    assert np.allclose(mode.ensemble[idx].double().numpy(), np.array(second), rtol=1e-5, atol=1e-7)
    assert not mode.ensemble[len(y) :].any()
    assert mode.distill_weight() is None


def test_elr_gradient_holds_the_ensemble_fixed():
    """d loss / d z by central finite differences of the float64 objective with the updated targets held fixed (they
    are detached), against autograd through the mode's loss; the batch includes clamped probabilities."""
    lam, beta = 3.0, 0.7
    mode, z, y, idx = batch_and_mode("elr", elr_lambda=lam, elr_beta=beta)
    # a first visit, so that the second one's ensemble is not just the batch's own prediction
    mode.loss(make_batch(n_match=4, seed=5)[0], y, idx)
    rows = as_rows(z)
    assert any(v < ELR_CLAMP for row in rows for v in ref_softmax(row))
    targets = ref_elr_targets(rows, as_rows(mode.ensemble[idx]), beta)
    z = z.clone().requires_grad_(True)
    mode.loss(z, y, idx).backward()
    h = 1e-6
    for i, row in enumerate(rows):
        for j in range(len(row)):
            up = [r[:] for r in rows]
            down = [r[:] for r in rows]
            up[i][j] += h
            down[i][j] -= h
            numeric = (
                ref_elr_objective(up, y.tolist(), targets, lam) - ref_elr_objective(down, y.tolist(), targets, lam)
            ) / (2 * h)
            assert math.isclose(float(z.grad[i, j]), numeric, rel_tol=1e-3, abs_tol=1e-5), (i, j)
