"""Training modes: one class per mode, and the registry that maps the config's mode names to them.

A mode is everything that differs between the ways of training on noisy labels: the loss of a mini-batch, what
happens at the end of an epoch, the share of the target taken from the network itself (the history's
``distill_weight``), and the state that must survive a restart. The training loop knows nothing else about modes.

A mini-batch's loss is split in three, so that it can be compiled (:mod:`selfdistill.training_step`): the rows of the
mode's per-sample state the batch needs, gathered outside (:meth:`Mode.batch_state`); the loss as a pure function of
the logits, the labels and those tensors (:meth:`Mode.batch_loss`, which also returns what the mode records); and
the update of the mode's state from that record, outside again (:meth:`Mode.after_step`). :meth:`Mode.loss` is the
three in a row.

To add a mode: write a subclass of :class:`Mode` here with ``name = "my_mode"`` (its keyword-only arguments,
without defaults, are its parameters), add the name to ``modes`` in ``src/selfdistill/config.schema.yaml`` and its
parameters with their defaults to the schema's ``distill`` section (each with ``x-mode: my_mode``, so that only its
own runs rerun when they change), and test its loss against a float64 reference in ``tests/test_modes.py``. The
schema is the parameters' one source of defaults: a parameter it lacks stops the import of this module.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from .losses import (
    bootstrap_hard_loss,
    bootstrap_soft_loss,
    ce_loss,
    elr_loss,
    self_distill_loss,
    seq_alpha,
    soft_cross_entropy,
    teacher_targets,
    update_soft_labels,
)
from .schema import SCHEMA_PATH, section_defaults

#: name → class, filled by :class:`Mode` subclasses as they are defined
REGISTRY: dict[str, type[Mode]] = {}


class Mode:
    """Base class: plain behaviour for every hook, so a mode overrides only what it changes.

    ``labels`` are the noisy training labels of the whole training split (row ``i`` = the sample the loop calls
    ``idx = i``); ``num_classes`` the number of classes.
    """

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # helper bases without a name of their own (``_BatchMeanWeight``) are not modes
        if "name" in cls.__dict__:
            cls.parameters()  # a parameter without a schema default stops the definition, before registering
            REGISTRY[cls.name] = cls

    def __init__(self, labels: torch.Tensor, num_classes: int):
        self.labels = labels
        self.num_classes = num_classes

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """The mode's parameters (its keyword-only arguments: the config's ``distill`` keys it reads) and their
        defaults, read from the schema's ``distill`` section; a parameter missing there is a ValueError."""
        names = [p.name for p in inspect.signature(cls.__init__).parameters.values() if p.kind is p.KEYWORD_ONLY]
        defaults = section_defaults("distill")
        missing = [name for name in names if name not in defaults]
        if missing:
            raise ValueError(
                f"mode {cls.name!r}: parameter {', '.join(missing)} has no default in the distill section of "
                f"{SCHEMA_PATH} (add it there with x-mode: {cls.name})"
            )
        return {name: defaults[name] for name in names}

    def start_epoch(self) -> None:
        """Called before an epoch's first batch (reset per-epoch accumulators)."""

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The mini-batch loss from the network's ``logits``, the batch's noisy ``labels`` and its row ``idx``
        (:meth:`batch_state`, :meth:`batch_loss` and :meth:`after_step` in a row)."""
        loss, record = self.batch_loss(logits, labels, *self.batch_state(idx))
        self.after_step(idx, record)
        return loss

    def batch_state(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The rows ``idx`` of the mode's per-sample state that :meth:`batch_loss` reads (copies; none by default)."""
        return ()

    def batch_loss(self, logits: torch.Tensor, labels: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """The loss and what :meth:`after_step` records, as a pure function of the logits, the noisy labels and the
        :meth:`batch_state` tensors: it reads only the mode's fixed parameters and changes nothing (it may run
        compiled)."""
        raise NotImplementedError

    def after_step(self, idx: torch.Tensor, record: Any) -> None:
        """Update the mode's state from :meth:`batch_loss`'s record (nothing by default)."""

    def end_epoch(self, epoch: int, train_probs: torch.Tensor) -> None:
        """Called after epoch ``epoch`` (1-based) with eval-mode softmax outputs of the un-augmented training split."""

    def distill_weight(self) -> float | None:
        """The epoch's share of the target taken from the network itself (λ, α or 1−β); ``None`` for plain CE."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the rest of the run (tensors and plain numbers only: loaded with weights_only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""


def build_mode(name: str, labels: torch.Tensor, num_classes: int, params: dict | None = None) -> Mode:
    """The mode ``name`` for a run, with its parameters from the config's ``distill`` section ``params`` (others
    ignored), those left out taking the schema's defaults."""
    if name not in REGISTRY:
        raise ValueError(f"unknown mode {name!r}; allowed: {', '.join(REGISTRY)}")
    cls = REGISTRY[name]
    defaults = cls.parameters()
    own = {key: value for key, value in (params or {}).items() if key in defaults}
    return cls(labels, num_classes, **(defaults | own))


class _BatchMeanWeight(Mode):
    """A mode whose weight is a per-batch tensor (λ): the history reports its mean over the epoch's batches."""

    def __init__(self, labels, num_classes):
        super().__init__(labels, num_classes)
        self.start_epoch()

    def start_epoch(self) -> None:
        self._weight_sum = torch.zeros((), device=self.labels.device)
        self._weight_count = 0

    def after_step(self, idx, record: torch.Tensor) -> None:
        """``record`` is the batch's weight."""
        self._weight_sum += record
        self._weight_count += 1

    def distill_weight(self) -> float:
        return float(self._weight_sum) / max(self._weight_count, 1)

    def state_dict(self) -> dict[str, Any]:
        return {"weight_sum": self._weight_sum, "weight_count": self._weight_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._weight_sum = state["weight_sum"].to(self.labels.device)
        self._weight_count = int(state["weight_count"])


class CrossEntropy(Mode):
    """``ce``: cross-entropy with the noisy one-hot labels."""

    name = "ce"

    def batch_loss(self, logits, labels):
        return ce_loss(logits, labels)[0], None


class SelfDistill(_BatchMeanWeight):
    """``self_distill``, the original repository's loss: λ = the batch's agreement between argmax and label;
    t = (1−λ)·onehot(y) + λ·onehot(argmax z), detached; loss KL(t ‖ p)."""

    name = "self_distill"

    def batch_loss(self, logits, labels):
        return self_distill_loss(logits, labels)


class SequentialSelfDistill(Mode):
    """``self_distill_seq`` (after Dong et al. 2019): each sample keeps a soft label ŷ, initialised to its noisy
    one-hot label and moved after every epoch towards the eval-mode prediction, ŷ ← (1−α_e)·ŷ + α_e·p; training
    minimises the cross-entropy with ŷ. α_e: 0 for ``seq_warmup`` epochs, then a ramp over ``seq_ramp`` epochs to
    ``seq_alpha``."""

    name = "self_distill_seq"

    def __init__(self, labels, num_classes, *, seq_alpha: float, seq_warmup: int, seq_ramp: int):
        super().__init__(labels, num_classes)
        self.alpha, self.warmup, self.ramp = seq_alpha, seq_warmup, seq_ramp
        self.soft = F.one_hot(labels, num_classes).float()
        self._alpha_e = None

    def batch_state(self, idx):
        return (self.soft[idx],)

    def batch_loss(self, logits, labels, soft):
        return soft_cross_entropy(logits, soft), None

    def end_epoch(self, epoch, train_probs):
        self._alpha_e = seq_alpha(epoch, self.alpha, self.warmup, self.ramp)
        self.soft = update_soft_labels(self.soft, train_probs, self._alpha_e)

    def distill_weight(self):
        return self._alpha_e

    def state_dict(self):
        return {"soft": self.soft, "alpha": self._alpha_e}

    def load_state_dict(self, state):
        self.soft = state["soft"].to(self.labels.device)
        self._alpha_e = state["alpha"]


class BootstrapSoft(Mode):
    """``bootstrap_soft`` (Reed et al. 2014): t = β·onehot(y) + (1−β)·p, p detached; cross-entropy with t."""

    name = "bootstrap_soft"

    def __init__(self, labels, num_classes, *, bootstrap_soft_beta: float):
        super().__init__(labels, num_classes)
        self.beta = bootstrap_soft_beta

    def batch_loss(self, logits, labels):
        return bootstrap_soft_loss(logits, labels, self.beta)[0], None

    def distill_weight(self):
        return 1 - self.beta


class BootstrapHard(Mode):
    """``bootstrap_hard`` (Reed et al. 2014): t = β·onehot(y) + (1−β)·onehot(argmax z); cross-entropy with t."""

    name = "bootstrap_hard"

    def __init__(self, labels, num_classes, *, bootstrap_hard_beta: float):
        super().__init__(labels, num_classes)
        self.beta = bootstrap_hard_beta

    def batch_loss(self, logits, labels):
        return bootstrap_hard_loss(logits, labels, self.beta)[0], None

    def distill_weight(self):
        return 1 - self.beta


# ------------------------------------------------------------------------------------------------------------------
# The four other interpolation losses of the original repository's loss file, which it never trained with. Like
# ``self_distill`` they minimise KL(t ‖ p) = Σ t log t − Σ t log p with a detached target
# t = (1−λ)·onehot(y) + λ·q; they differ in the teacher q and in how λ is chosen.
# ------------------------------------------------------------------------------------------------------------------


def interpolation_kl(logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, lam) -> torch.Tensor:
    """Mean over the batch of KL(t ‖ softmax(z)) for t = (1−λ)·onehot(y) + λ·teacher (teacher rows sum to 1)."""
    logits = logits.float()
    with torch.no_grad():
        targets = (1 - lam) * F.one_hot(labels, logits.shape[1]).float() + lam * teacher.float()
    log_p = F.log_softmax(logits, dim=1)
    return (torch.xlogy(targets, targets) - targets * log_p).sum(dim=1).mean()


class InterpolateSoft(Mode):
    """``interp_soft``: fixed λ (``interp_soft_lambda``) towards the network's own softmax prediction, q = p
    (detached)."""

    name = "interp_soft"

    def __init__(self, labels, num_classes, *, interp_soft_lambda: float):
        super().__init__(labels, num_classes)
        self.lam = interp_soft_lambda

    def batch_loss(self, logits, labels):
        return interpolation_kl(logits, labels, F.softmax(logits.detach().float(), dim=1), self.lam), None

    def distill_weight(self):
        return self.lam


class InterpolateStored(Mode):
    """``interp_stored``: fixed λ (``interp_stored_lambda``) towards a stored earlier prediction: q_i is the softmax
    output the network gave sample ``i`` the last time it trained on it (its one-hot noisy label before the first
    time)."""

    name = "interp_stored"

    def __init__(self, labels, num_classes, *, interp_stored_lambda: float):
        super().__init__(labels, num_classes)
        self.lam = interp_stored_lambda
        self.stored = F.one_hot(labels, num_classes).float()

    def batch_state(self, idx):
        return (self.stored[idx],)

    def batch_loss(self, logits, labels, stored):
        """The loss, and the batch's softmax outputs, which :meth:`after_step` stores."""
        return interpolation_kl(logits, labels, stored, self.lam), F.softmax(logits.detach().float(), dim=1)

    def after_step(self, idx, record):
        self.stored[idx] = record

    def distill_weight(self):
        return self.lam

    def state_dict(self):
        return {"stored": self.stored}

    def load_state_dict(self, state):
        self.stored = state["stored"].to(self.labels.device)


class InterpolateHard(Mode):
    """``interp_hard``: fixed λ (``interp_hard_lambda``) towards the network's hard prediction,
    q = onehot(argmax z)."""

    name = "interp_hard"

    def __init__(self, labels, num_classes, *, interp_hard_lambda: float):
        super().__init__(labels, num_classes)
        self.lam = interp_hard_lambda

    def batch_loss(self, logits, labels):
        teacher = F.one_hot(logits.detach().argmax(dim=1), self.num_classes)
        return interpolation_kl(logits, labels, teacher, self.lam), None

    def distill_weight(self):
        return self.lam


class InterpolateAgreement(_BatchMeanWeight):
    """``interp_agree``: λ = ``interp_agree_scale`` × the batch's agreement between argmax z and y, towards the
    hard prediction (``interp_agree_temperature: null``) or the temperature-softened prediction softmax(z / T)."""

    name = "interp_agree"

    def __init__(
        self,
        labels,
        num_classes,
        *,
        interp_agree_scale: float,
        interp_agree_temperature: float | None,
    ):
        super().__init__(labels, num_classes)
        self.scale, self.temperature = interp_agree_scale, interp_agree_temperature

    def batch_loss(self, logits, labels):
        z = logits.detach().float()
        pred = z.argmax(dim=1)
        lam = self.scale * (pred == labels).float().mean()
        if self.temperature is None:
            teacher = F.one_hot(pred, self.num_classes)
        else:
            teacher = F.softmax(z / self.temperature, dim=1)
        return interpolation_kl(logits, labels, teacher, lam), lam


# ------------------------------------------------------------------------------------------------------------------
# Two modes from the literature on early learning: distillation from an early-stopped teacher and ELR
# ------------------------------------------------------------------------------------------------------------------


class DistillEarlyTeacher(Mode):
    """``distill_early_teacher`` (after Dong et al. 2019, "distillation ≈ early stopping"): a fresh network trained
    for the whole schedule on t = w·onehot(y) + (1−w)·softmax(z_T / T), where z_T are the logits of the same seed's
    early-stopped reference-mode network (``selfdistill.mode_names.TEACHER_OF``) on the un-augmented training split
    in eval mode; loss = cross-entropy with t. The targets are made once, before the first step
    (:meth:`set_teacher`), and kept in the checkpoint."""

    name = "distill_early_teacher"

    def __init__(self, labels, num_classes, *, teacher_temperature: float, teacher_label_weight: float):
        super().__init__(labels, num_classes)
        self.temperature, self.label_weight = teacher_temperature, teacher_label_weight
        self.targets: torch.Tensor | None = None

    def set_teacher(self, teacher_logits: torch.Tensor) -> None:
        """The teacher's eval-mode logits of every training row (row i = sample ``idx = i``) → the fixed targets."""
        if teacher_logits.shape != (len(self.labels), self.num_classes):
            raise ValueError(
                f"teacher logits have shape {tuple(teacher_logits.shape)}, expected ({len(self.labels)}, "
                f"{self.num_classes}) (one row per training sample)"
            )
        self.targets = teacher_targets(teacher_logits, self.labels, self.temperature, self.label_weight)

    def batch_state(self, idx):
        if self.targets is None:
            raise RuntimeError("distill_early_teacher has no teacher targets: set_teacher was never called")
        return (self.targets[idx],)

    def batch_loss(self, logits, labels, targets):
        return soft_cross_entropy(logits, targets), None

    def distill_weight(self):
        return 1 - self.label_weight

    def state_dict(self):
        return {"targets": self.targets}

    def load_state_dict(self, state):
        targets = state["targets"]
        if targets is None:
            raise ValueError("distill_early_teacher's checkpoint holds no teacher targets")
        self.targets = targets.to(self.labels.device)


class EarlyLearningRegularization(Mode):
    """``elr`` (Liu et al. 2020, "Early-Learning Regularization Prevents Memorization of Noisy Labels"):
    loss = CE(z, y) + λ·mean log(1 − ⟨tᵢ, pᵢ⟩), tᵢ a per-sample temporal ensemble of the clamped predictions,
    updated at every visit before the loss (:func:`selfdistill.losses.elr_loss`) and starting at 0, as in the
    authors' ELR/model/loss.py. The schema's defaults are their ELR/config_cifar10.json's (symmetric noise)
    (ELR/config_cifar10_asym.json uses λ = 1, β = 0.9). The history reports no weight (λ is not a share)."""

    name = "elr"

    def __init__(self, labels, num_classes, *, elr_lambda: float, elr_beta: float):
        super().__init__(labels, num_classes)
        self.lam, self.beta = elr_lambda, elr_beta
        self.ensemble = torch.zeros(len(labels), num_classes, device=labels.device)

    def batch_state(self, idx):
        return (self.ensemble[idx],)

    def batch_loss(self, logits, labels, ensemble):
        """The loss and the batch's updated ensemble rows (written back by :meth:`after_step`)."""
        return elr_loss(logits, labels, ensemble, self.lam, self.beta)

    def after_step(self, idx, record):
        self.ensemble[idx] = record

    def state_dict(self):
        return {"ensemble": self.ensemble}

    def load_state_dict(self, state):
        self.ensemble = state["ensemble"].to(self.labels.device)
