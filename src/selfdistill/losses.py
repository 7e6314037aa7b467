"""Training objectives for every mode (docs/science.md, "Training objectives"). Each returns ``(loss, weight)`` where ``weight`` is the
share of the target taken from the network itself (λ, α or 1−β), or ``None`` for plain cross-entropy.

All losses are computed in float32 from the logits and averaged over the mini-batch; targets built from the
network's own predictions are detached (no gradient flows through the teacher side).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of −Σ_k t_k log softmax(z)_k for soft targets ``t`` (rows summing to 1)."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, None]:
    """``ce``: cross-entropy with the (noisy) one-hot labels."""
    return F.cross_entropy(logits.float(), labels), None


def self_distill_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``self_distill``, the original repo's loss.

    λ = fraction of the batch whose argmax(z) equals y; t = (1−λ)·onehot(y) + λ·onehot(argmax z), detached;
    loss = KL(t ‖ p) = Σ t log t − Σ t log p (0·log 0 = 0), averaged over the batch.
    """
    logits = logits.float()
    num_classes = logits.shape[1]
    with torch.no_grad():
        pred = logits.argmax(dim=1)
        lam = (pred == labels).float().mean()
        targets = (1 - lam) * F.one_hot(labels, num_classes).float() + lam * F.one_hot(pred, num_classes).float()
    log_p = F.log_softmax(logits, dim=1)
    kl = (torch.xlogy(targets, targets) - targets * log_p).sum(dim=1).mean()
    return kl, lam


def bootstrap_soft_loss(logits: torch.Tensor, labels: torch.Tensor, beta: float = 0.95) -> tuple[torch.Tensor, float]:
    """``bootstrap_soft`` (Reed et al. 2014): t = β·onehot(y) + (1−β)·p, p detached; cross-entropy with t."""
    num_classes = logits.shape[1]
    with torch.no_grad():
        p = F.softmax(logits.float(), dim=1)
        targets = beta * F.one_hot(labels, num_classes).float() + (1 - beta) * p
    return soft_cross_entropy(logits, targets), 1 - beta


def bootstrap_hard_loss(logits: torch.Tensor, labels: torch.Tensor, beta: float = 0.8) -> tuple[torch.Tensor, float]:
    """``bootstrap_hard`` (Reed et al. 2014): t = β·onehot(y) + (1−β)·onehot(argmax z); cross-entropy with t."""
    num_classes = logits.shape[1]
    with torch.no_grad():
        pred = logits.argmax(dim=1)
        targets = beta * F.one_hot(labels, num_classes).float() + (1 - beta) * F.one_hot(pred, num_classes).float()
    return soft_cross_entropy(logits, targets), 1 - beta


def seq_alpha(epoch: int, value: float, warmup: int = 0, ramp: int = 0) -> float:
    """α_e for ``self_distill_seq`` after epoch ``epoch`` (1-based).

    0 during the first ``warmup`` epochs (soft labels stay the given labels while the network learns the
    clean majority), then a linear ramp over ``ramp`` epochs up to ``value`` (``ramp = 0``: constant ``value``).
    The exact schedule of Dong et al. was not available to us; this one is ours and is configurable.
    """
    if epoch <= warmup:
        return 0.0
    if ramp <= 0:
        return float(value)
    return float(value) * min(1.0, (epoch - warmup) / ramp)


def update_soft_labels(soft: torch.Tensor, probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """``self_distill_seq`` update after an epoch: ŷ ← (1−α)·ŷ + α·p (p: eval-mode prediction, un-augmented)."""
    return (1 - alpha) * soft + alpha * probs


def teacher_targets(
    teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float, label_weight: float
) -> torch.Tensor:
    """``distill_early_teacher``'s fixed per-sample targets: t = w·onehot(y) + (1−w)·softmax(z_teacher / T)."""
    soft = F.softmax(teacher_logits.float() / temperature, dim=1)
    return label_weight * F.one_hot(labels, soft.shape[1]).float() + (1 - label_weight) * soft


#: ELR's clamp of the softmax output (the authors' repository, ELR/model/loss.py)
ELR_CLAMP = 1e-4


def elr_loss(
    logits: torch.Tensor, labels: torch.Tensor, ensemble: torch.Tensor, lam: float, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``elr`` (Liu et al. 2020), as the authors' ELR/model/loss.py computes it; the loss and the batch's updated
    temporal-ensemble rows.

    p = clamp(softmax(z), 1e-4, 1−1e-4) (not renormalised); the ensemble rows move first, t ← β·t + (1−β)·p/Σp
    (detached), then loss = CE(z, y) + λ·mean log(1 − ⟨t, p⟩), with the updated t."""
    logits = logits.float()
    p = F.softmax(logits, dim=1).clamp(ELR_CLAMP, 1 - ELR_CLAMP)
    with torch.no_grad():
        q = p.detach()
        ensemble = beta * ensemble + (1 - beta) * q / q.sum(dim=1, keepdim=True)
    regulariser = torch.log(1 - (ensemble * p).sum(dim=1)).mean()
    return F.cross_entropy(logits, labels) + lam * regulariser, ensemble
