"""Pipeline step ``train``: one run = one corrupted dataset × mode × seed, resumable at any instant.

The loop, as a table of contents (:func:`train_run`):

1. :func:`hold_run_then_log`: the run's lock (:mod:`selfdistill.run_guard`), then its log.
2. :func:`start_run`: ``TrainingRun(...)`` (data on the device, network, optimiser, schedule, random generators, the
   mode object), then :func:`resume`: restore the last checkpoint of this very run, if there is one (see
   :mod:`selfdistill.checkpoint`).
3. :func:`train_epochs`, per epoch :func:`run_epoch`: :func:`train_one_epoch` → :func:`evaluate` →
   ``mode.end_epoch`` → :func:`history_row` → :func:`store_outputs` → :func:`track_best` → :func:`checkpoint`.
4. :func:`write_results`: ``history.csv``, ``outputs.h5`` (:mod:`selfdistill.outputs`), ``model.pt``,
   ``model_early_stopped.pt`` and ``run.json`` (the device and the precision the run computed in), each
   atomically; then the checkpoint folder is deleted.

The training images stay on the device as one uint8 tensor and every batch is made there
(:mod:`selfdistill.batches`). The seed fixes the initialisation, the batch order and the augmentation, and is
shared by all modes of a seed, so modes are compared on identical starts and batch sequences. Every epoch the
network is evaluated on the full (un-augmented) training split, the noisy validation split and the clean test
split, which gives the history row and the outputs that the frequency analysis reads later without retraining.
A person watching sees a few lines on the console (:mod:`selfdistill.console`), the log has one per epoch.

SIGTERM and SIGUSR1 (a SLURM time limit's warning, a preemption) and SIGINT (Ctrl-C) make the run finish its
current step, write a checkpoint and stop with :class:`~selfdistill.signals.Preempted` (:mod:`selfdistill.signals`);
rerunning the job resumes exactly where it stopped. So does the death of the Snakemake process that started the
trainer, and a second trainer of a run that one still trains stops at once (:mod:`selfdistill.run_guard`).
"""

from __future__ import annotations

import contextlib
import copy
import enum
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .batches import DeviceImages, epoch_batches, make_batch, normalisation, predict_logits, select_subset
from .checkpoint import ATTEMPTS_FILE, CheckpointFolder, attempt, fault_point, fingerprint
from .collapse import collapse_text, is_collapsed
from .console import ConsoleProgress
from .data import read_corrupted
from .device import RunDevice, acquire, channels_last
from .epochs import output_bytes_per_epoch, recorded_epochs
from .execution import section_keys
from .io import (
    HISTORY_COLUMNS,
    atomic_output,
    file_digest,
    logged_step,
)
from .mode_names import TEACHER_OF
from .models import build_model, count_parameters, float32_head
from .modes import Mode, build_mode
from .outputs import write_outputs
from .run_guard import hold_run, watch_snakemake
from .schema import section_defaults
from .signals import Preempted, StopRequest, stop_on_signals
from .training_step import TrainingStep

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """The config's ``train`` section as the loop reads it. No defaults here: :func:`train_settings` fills the
    keys a caller leaves out from the schema, the one place defaults are written (a test checks that every
    result-changing ``train`` key of the schema is a field and every field a schema key)."""

    epochs: int
    batch_size: int
    # sgd | adam
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    nesterov: bool
    # cosine | constant
    schedule: str
    # step | epoch | epoch_ahead (see lr_schedule)
    schedule_unit: str
    # none | crop_flip
    augment: str
    #: "split" (the training split's own per-channel mean and std) or {"mean": [...], "std": [...]} on the [0, 1] scale
    normalize: Any
    crop_padding: int
    eval_batch_size: int
    # none | default | reduce-overhead (selfdistill.training_step: torch.compile of forward, loss and backward)
    compile: str
    # epochs between checkpoints; 0 = never
    checkpoint_every: int
    # auto | bf16 | tf32 | float32 (selfdistill.device.resolve_precision; the CPU always computes in float32)
    precision: str


def train_settings(train: Mapping) -> TrainSettings:
    """The config's ``train`` values as :class:`TrainSettings`, keys left out taking the schema's defaults; the
    execution-only keys that are not settings of the loop (device, threads, runtime, epoch_seconds: they arrive as
    arguments or only plan the job) are ignored, any other unknown key is a TypeError."""
    names = {f.name for f in fields(TrainSettings)}
    skip = set(section_keys("train")) - names
    defaults = {key: value for key, value in section_defaults("train").items() if key in names}
    return TrainSettings(**(defaults | {key: value for key, value in train.items() if key not in skip}))


def device_network(net: torch.nn.Module, dev: RunDevice) -> torch.nn.Module:
    """``net`` on ``dev`` as the engine runs it: channels_last on CUDA and, in bf16, a float32 head
    (:func:`~selfdistill.models.float32_head`) so that the logits - the loss's input and the outputs the frequency
    analysis reads - are not rounded to bf16. Unchanged in float32 and tf32."""
    net = channels_last(net.to(dev.torch_device))
    return float32_head(net) if dev.bf16 else net


def _acc(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return float((pred == labels).float().mean()) if labels.numel() else math.nan


def cosine_factor(t: int, horizon: int) -> float:
    """The cosine schedule's multiplier of the base lr after ``t`` scheduler steps of ``horizon``."""
    return 0.5 * (1 + math.cos(math.pi * min(t, horizon) / horizon))


def constant_factor(t: int) -> float:
    return 1.0


#: ``train.schedule_unit`` values: ``step`` - the schedule advances after every optimiser step; ``epoch`` - after
#: every epoch (epoch e, 0-based, trains with factor(e)); ``epoch_ahead`` - once per epoch *before* that epoch, the
#: original repository's, so epoch e trains with factor(e + 1) and the last epoch with factor(epochs) (0 for cosine).
SCHEDULE_UNITS = ("step", "epoch", "epoch_ahead")


def lr_schedule(
    optimiser: torch.optim.Optimizer, cfg: TrainSettings, n_train: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The run's lr scheduler (cosine or constant over ``cfg.epochs``, in ``cfg.schedule_unit``s).

    ``epoch_ahead`` is stepped after each epoch like ``epoch`` but its factor is one epoch ahead, which is the same as
    stepping before each epoch (and resumes alike from a checkpoint taken between epochs)."""
    if cfg.schedule_unit not in SCHEDULE_UNITS:
        raise ValueError(f"train.schedule_unit must be one of {', '.join(SCHEDULE_UNITS)}, got {cfg.schedule_unit!r}")
    horizon = cfg.epochs * (math.ceil(n_train / cfg.batch_size) if cfg.schedule_unit == "step" else 1)
    ahead = 1 if cfg.schedule_unit == "epoch_ahead" else 0
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda t: cosine_factor(t + ahead, horizon))
    return torch.optim.lr_scheduler.LambdaLR(optimiser, constant_factor)


# ------------------------------------------------------------------------------------------------------------------
# The run's state
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """What defines one run: everything here enters its checkpoint's fingerprint."""

    mode: str
    seed: int
    model: Mapping
    train: TrainSettings
    distill: Mapping
    freq_subset: int | None
    freq_test_subset: int | None
    record_epochs: Any
    #: sha256 of the teacher's weights file, for a mode that distils from one (``TEACHER_OF``)
    teacher_sha256: str | None = None

    def identity(self, dev: RunDevice) -> dict:
        """The fingerprinted parameters: all of the spec but the execution-only train settings
        (:data:`selfdistill.execution.EXECUTION_ONLY`: changing them keeps the checkpoint), plus the type of the
        device the run trains on and the precision it computes in (``auto`` is bf16 on one GPU and float32 on
        another; CPU float32 and GPU bf16 steps are never mixed in one run)."""
        execution = section_keys("train")
        train = {k: v for k, v in asdict(self.train).items() if k not in execution}
        spec = {k: v for k, v in asdict(self).items() if k != "teacher_sha256" or v is not None}
        return {**spec, "train": train, "device": dev.type, "precision": dev.precision}


@dataclass
class Progress:
    """Where a run stands: the epoch in progress, how many of its batches are done, and what the run has produced."""

    epoch: int = 1
    step: int = 0
    #: the epoch's batch order and running loss sum, kept while the epoch is under way (for a mid-epoch checkpoint)
    perm: torch.Tensor | None = None
    loss_sum: torch.Tensor | None = None
    #: lr of the last optimiser step (the history reports the lr of each epoch's last step)
    lr: float = math.nan
    rows: list[dict] = field(default_factory=list)
    #: the best noisy-validation epoch so far: {"epoch", "val_acc", "state_dict"} (the early-stopped network)
    best: dict | None = None


class TrainingRun:
    """One run in memory: data on the device, network, optimiser, schedule, generators, mode and progress."""

    def __init__(self, data_path: str | os.PathLike, spec: RunSpec, dev: RunDevice, run_name: str):
        self.spec, self.cfg, self.dev, self.run_name = spec, spec.train, dev, run_name
        self._load_data(data_path)
        self._build_network()
        self._build_optimiser()
        self.order_gen = torch.Generator().manual_seed(spec.seed)
        self.aug_gen = torch.Generator(device=dev.torch_device).manual_seed(spec.seed + 1)
        self.mode: Mode = build_mode(spec.mode, self.y_train, self.num_classes, dict(spec.distill))
        self.step = TrainingStep(self.net, self.mode, dev, self.cfg.compile)
        per_epoch = output_bytes_per_epoch(self.subset.size, self.test_subset.size, self.num_classes)
        self.stored_epochs = recorded_epochs(self.cfg.epochs, spec.record_epochs, per_epoch)
        self.progress = Progress()
        #: the teacher's weights file of a mode that distils from one (set by :func:`start_run`)
        self.teacher_file: str | None = None

    def _load_data(self, data_path) -> None:
        """Images on the device (uint8), labels, the noisy mask and the fixed subsets whose outputs are stored."""
        dev = self.dev.torch_device
        self.data_sha256 = file_digest(data_path)
        self.splits, attrs = read_corrupted(data_path)
        self.num_classes, pixel_max = int(attrs["num_classes"]), float(attrs["pixel_max"])
        mean, std = normalisation(self.cfg.normalize, self.splits["train"].images, pixel_max)
        self.norm_mean, self.norm_std = mean, std
        self.images = {name: DeviceImages(s.images, dev, pixel_max, mean, std) for name, s in self.splits.items()}
        self.labels = {
            name: (torch.from_numpy(s.labels_noisy).to(dev), torch.from_numpy(s.labels_clean).to(dev))
            for name, s in self.splits.items()
        }
        self.noisy_mask = torch.from_numpy(self.splits["train"].is_noisy).to(dev)
        self.y_train = self.labels["train"][0]
        self.n_train = len(self.images["train"])
        # training rows drawn with the run's seed (the training split depends on it); test rows with seed 0, so
        # every run stores the same test images
        self.subset = select_subset(self.n_train, self.spec.freq_subset, self.spec.seed)
        self.test_subset = select_subset(len(self.images["test"]), self.spec.freq_test_subset, 0)
        self.subset_t = torch.from_numpy(self.subset).to(dev)
        self.test_subset_t = torch.from_numpy(self.test_subset).to(dev)

    def _build_network(self) -> None:
        """The seeded network on the device (:attr:`step` trains it, compiled if asked; evaluation runs it eagerly)."""
        torch.manual_seed(self.spec.seed)
        model = self.spec.model
        shape = tuple(self.images["train"].data.shape[1:])
        net = build_model(model["arch"], shape, self.num_classes, model.get("width"), model.get("depth", 2))
        self.net = device_network(net, self.dev)

    def _build_optimiser(self) -> None:
        """SGD (or Adam, ``train.optimizer``) and its lr schedule (cosine over all steps or epochs, or constant)."""
        cfg = self.cfg
        if cfg.optimizer == "adam":
            self.optimiser = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            self.optimiser = torch.optim.SGD(
                self.net.parameters(),
                lr=cfg.lr,
                momentum=cfg.momentum,
                weight_decay=cfg.weight_decay,
                nesterov=cfg.nesterov,
            )
        self.scheduler = lr_schedule(self.optimiser, cfg, self.n_train)

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the rest of the run, as tensors and plain values (loadable with weights_only)."""
        p = self.progress
        cuda_rng = torch.cuda.get_rng_state(self.dev.torch_device) if self.dev.is_cuda else None
        return {
            "network": self.net.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {
                "torch_cpu": torch.get_rng_state(),
                "torch_cuda": cuda_rng,
                "order": self.order_gen.get_state(),
                "augment": self.aug_gen.get_state(),
            },
            "mode": self.mode.state_dict(),
            "progress": {k: getattr(p, k) for k in ("epoch", "step", "perm", "loss_sum", "lr", "rows", "best")},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (tensors move to this run's device)."""
        dev = self.dev.torch_device
        self.net.load_state_dict(state["network"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.scheduler.load_state_dict(state["scheduler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch_cpu"])
        if self.dev.is_cuda:
            torch.cuda.set_rng_state(rng["torch_cuda"], dev)
        self.order_gen.set_state(rng["order"])
        self.aug_gen.set_state(rng["augment"])
        self.mode.load_state_dict(state["mode"])
        saved = dict(state["progress"])
        for key in ("perm", "loss_sum"):
            if saved[key] is not None:
                saved[key] = saved[key].to(dev)
        self.progress = Progress(**saved)


# ------------------------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------------------------


def run_paths(checkpoint_dir, out_history, run_name, data_path, mode: str, seed: int) -> tuple[Path, str]:
    """The run's checkpoint folder (default: ``checkpoint/`` beside ``out_history``) and its name."""
    folder = Path(checkpoint_dir) if checkpoint_dir else Path(out_history).parent / "checkpoint"
    return folder, run_name or f"{data_path}:{mode}:seed{seed}"


@contextlib.contextmanager
def hold_run_then_log(args: Mapping[str, Any], start_log: Callable[..., None]) -> Iterator[None]:
    """:func:`train_run`'s prologue (:func:`~selfdistill.io.logged_step`): one trainer per run, the lock taken before
    anything of the run is read or written, its log included (:mod:`selfdistill.run_guard`); then the log, which for
    an attempt that resumes starts with the earlier attempts' lines (where and why they stopped)."""
    names = ("checkpoint_dir", "out_history", "run_name", "data_path", "mode", "seed")
    folder, run_name = run_paths(**{name: args[name] for name in names})
    with hold_run(folder, run_name, log_path=args["log_path"]) as lock:
        start_log(earlier=folder / ATTEMPTS_FILE)
        if lock.warning:
            log.warning(lock.warning)
        yield


@logged_step(prologue=hold_run_then_log)
def train_run(
    data_path: str | os.PathLike,
    out_history: str | os.PathLike,
    out_outputs: str | os.PathLike,
    out_model: str | os.PathLike,
    *,
    mode: str,
    seed: int,
    model: Mapping,
    train: Mapping,
    distill: Mapping | None = None,
    freq_subset: int | None = 1000,
    freq_test_subset: int | None = None,
    record_epochs: Any = "all",
    out_early_stopped: str | os.PathLike | None = None,
    out_run: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    device: str = "auto",
    threads: int = 1,
    run_name: str | None = None,
    log_path: str | os.PathLike | None = None,
    attempt_number: int = 1,
    console: TextIO | None = None,
    teacher: str | os.PathLike | None = None,
    runs_per_gpu: int = 1,
) -> pd.DataFrame:
    """Pipeline step: train one run, resuming from its checkpoint, and write its history, outputs and weights.

    ``freq_subset`` training rows and ``freq_test_subset`` test rows (None: all) get their outputs stored on the
    epochs ``record_epochs`` selects (:mod:`selfdistill.epochs`); the history's metrics always use the full splits.
    ``out_run`` (optional): ``run.json``, the run's device and resolved precision (``train["precision"]``, see
    :func:`selfdistill.device.resolve_precision`).
    ``checkpoint_dir`` (default: ``checkpoint/`` beside ``out_history``) holds the run's progress until it is
    complete. Raises :class:`~selfdistill.signals.Preempted` after checkpointing when SIGTERM or SIGUSR1 arrives, or when the Snakemake
    process that started the trainer dies; :class:`~selfdistill.run_guard.RunLocked` at once, before touching the
    run, when another trainer of the same run is alive (:mod:`selfdistill.run_guard`). ``attempt_number``:
    Snakemake's attempt; a retry after an error that a retry cannot fix stops at once (:func:`checkpoint.attempt`).
    ``console`` (a Snakemake job passes stderr): a few short progress lines for a person watching, see
    :class:`~selfdistill.console.ConsoleProgress`; the log keeps one line per epoch either way. ``teacher``: the
    teacher's ``model_early_stopped.pt`` for a mode that distils from one (``mode_names.TEACHER_OF``), else None.
    ``runs_per_gpu``: how many runs share one GPU (the slot claimed for a bare ``cuda``, :mod:`selfdistill.gpu_slots`).
    """
    checkpoint_dir, run_name = run_paths(checkpoint_dir, out_history, run_name, data_path, mode, seed)
    settings = train_settings(train)
    teacher_sha256 = check_teacher(mode, teacher)
    spec = RunSpec(
        mode,
        seed,
        dict(model),
        settings,
        dict(distill or {}),
        freq_subset,
        freq_test_subset,
        record_epochs,
        teacher_sha256,
    )
    with (
        attempt(checkpoint_dir, attempt_number),
        acquire(device, threads, holder=run_name, precision=settings.precision, runs_per_gpu=runs_per_gpu) as dev,
        stop_on_signals(watch_snakemake()) as stop,
    ):
        run, folder = start_run(data_path, spec, dev, run_name, checkpoint_dir, teacher)
        shown = ConsoleProgress(console, run_name, settings.epochs)
        shown.start(run.progress.epoch, str(dev.torch_device), log_path)
        train_epochs(run, folder, stop, shown)
        history = write_results(run, folder, out_history, out_outputs, out_model, out_early_stopped, out_run)
    folder.remove()
    # "done" only once every output is in place
    shown.done(run.progress)
    return history


def train_epochs(run: TrainingRun, folder: CheckpointFolder, stop: StopRequest, shown: ConsoleProgress) -> None:
    """Every epoch still to train (:func:`run_epoch`), each followed by a console line when one is due."""
    try:
        while run.progress.epoch <= run.cfg.epochs:
            run_epoch(run, folder, stop)
            shown.epoch_done(run.progress)
    except FloatingPointError:
        # a diverged run cannot be resumed into anything useful: forget its progress (not its log)
        folder.clear()
        raise


def start_run(
    data_path, spec: RunSpec, dev: RunDevice, run_name: str, checkpoint_dir: Path, teacher=None
) -> tuple[TrainingRun, CheckpointFolder]:
    """The run in memory and its checkpoint folder, resumed from its checkpoint when there is a valid one; a run
    that starts afresh and distils from a ``teacher`` gets its targets from it (a resumed one has them in its
    checkpoint)."""
    run = TrainingRun(data_path, spec, dev, run_name)
    folder = CheckpointFolder(checkpoint_dir, fingerprint(run.data_sha256, spec.identity(dev)))
    log_start(run)
    found = resume(run, folder)
    if found is Resume.UNUSABLE:
        # the run may be half restored: start from a freshly built one
        run = TrainingRun(data_path, spec, dev, run_name)
    run.teacher_file = None if teacher is None else str(teacher)
    if teacher is not None and found is not Resume.RESUMED:
        teach(run, teacher)
    return run, folder


def check_teacher(mode: str, teacher) -> str | None:
    """The sha256 of the teacher's weights file, which a mode of ``TEACHER_OF`` needs and no other mode takes."""
    if mode not in TEACHER_OF:
        if teacher is not None:
            raise ValueError(f"mode {mode} takes no teacher, got {teacher}")
        return None
    if teacher is None:
        raise ValueError(f"mode {mode} needs a teacher: the {TEACHER_OF[mode]} run's model_early_stopped.pt")
    if not Path(teacher).is_file():
        raise FileNotFoundError(f"teacher of mode {mode} not found: {teacher}")
    return file_digest(teacher)


def teach(run: TrainingRun, teacher) -> None:
    """Give the mode its teacher's eval-mode logits on the un-augmented training split, once, before the first
    step. The teacher is a copy of the run's network (no random numbers drawn) with the teacher's weights."""
    payload = torch.load(teacher, map_location="cpu", weights_only=True)
    if payload.get("state_dict") is None:
        raise ValueError(f"teacher {teacher} holds no network ({payload.get('what')})")
    spec = run.spec
    if payload.get("seed") != spec.seed or payload.get("model") != dict(spec.model):
        raise ValueError(
            f"teacher {teacher} is seed {payload.get('seed')} with model {payload.get('model')}; this run is seed "
            f"{spec.seed} with model {dict(spec.model)}"
        )
    net = copy.deepcopy(run.net)
    net.load_state_dict(payload["state_dict"])
    logits = predict_logits(net, run.images["train"], run.cfg.eval_batch_size, run.dev.autocast, run.num_classes)
    run.mode.set_teacher(logits)
    log.info("teacher: %s (epoch %s, sha256 %s)", teacher, payload.get("epoch"), spec.teacher_sha256)


def log_start(run: TrainingRun) -> None:
    log.info(
        "run %s: %s on %s in %s, %d parameters, %d train / %d val / %d test, mode %s, outputs stored on %d of %d "
        "epochs",
        run.run_name,
        run.spec.model["arch"],
        run.dev.torch_device,
        run.dev.precision,
        count_parameters(run.net),
        run.n_train,
        len(run.images["val"]),
        len(run.images["test"]),
        run.spec.mode,
        len(run.stored_epochs),
        run.cfg.epochs,
    )


class Resume(enum.Enum):
    """What :func:`resume` found."""

    #: the run continues where its checkpoint stopped
    RESUMED = "resumed"
    #: no checkpoint of this very run (or one whose stored outputs are missing): the run starts at epoch 1 as built
    FRESH = "fresh"
    #: a checkpoint whose state did not fit the run (a key or a tensor shape missing): the run may be half restored
    #: and must be built afresh
    UNUSABLE = "unusable"


def resume(run: TrainingRun, folder: CheckpointFolder) -> Resume:
    """Restore the run from its checkpoint when there is a valid one for this very run; what it found (a checkpoint
    that cannot be used is deleted)."""
    state = folder.load()
    if state is None:
        return Resume.FRESH
    epoch = int(state["progress"]["epoch"]) if isinstance(state.get("progress"), Mapping) else 0
    missing = folder.missing_epochs(e for e in run.stored_epochs if e < epoch)
    if missing:
        log.warning(
            "ignoring checkpoint in %s: stored outputs of epoch %d are missing; starting from epoch 1",
            folder.folder,
            missing[0],
        )
        folder.clear()
        return Resume.FRESH
    try:
        run.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        log.warning(
            "ignoring checkpoint in %s: its state does not fit this run (%r); starting from epoch 1", folder.folder, err
        )
        folder.clear()
        return Resume.UNUSABLE
    p = run.progress
    where = f"epoch {p.epoch} of {run.cfg.epochs}" + (f", step {p.step}" if p.step else "")
    log.info("resumed from checkpoint at %s (%d epochs done)", where, len(p.rows))
    return Resume.RESUMED


def run_epoch(run: TrainingRun, folder: CheckpointFolder, stop: StopRequest) -> None:
    """One epoch: train, evaluate, the mode's end-of-epoch update, history row, stored outputs, best, checkpoint."""
    p, epoch = run.progress, run.progress.epoch
    start = time.perf_counter()
    # train_one_epoch ends by reading the loss on the host, evaluate by synchronising: the split is the device's
    train_loss = train_one_epoch(run, folder, stop)
    trained = time.perf_counter()
    logits = evaluate(run)
    evaluated = time.perf_counter()
    run.mode.end_epoch(epoch, F.softmax(logits["train"], dim=1))
    row = history_row(run, epoch, logits, train_loss)
    store_outputs(run, folder, epoch, logits)
    row["epoch_seconds"] = time.perf_counter() - start
    row["train_seconds"], row["eval_seconds"] = trained - start, evaluated - trained
    p.rows.append(row)
    track_best(run, row)
    p.epoch, p.step, p.perm, p.loss_sum = epoch + 1, 0, None, None
    every = run.cfg.checkpoint_every
    saved = None
    if every and (epoch % every == 0 or stop.requested) and epoch < run.cfg.epochs:
        saved = checkpoint(run, folder)
    # logged after the checkpoint: an epoch in the log is an epoch that a rerun will not redo
    log_epoch(row, run.cfg.epochs, saved)
    if epoch == run.cfg.epochs:
        log_collapse(run)
    if stop.requested and epoch < run.cfg.epochs:
        preempt(run, stop, checkpointed=bool(every))


def train_one_epoch(run: TrainingRun, folder: CheckpointFolder, stop: StopRequest) -> float:
    """Train the rest of the current epoch (all of it, unless resumed mid-epoch); its mean training loss."""
    p, cfg = run.progress, run.cfg
    if p.step == 0:
        run.mode.start_epoch()
        p.perm = torch.randperm(run.n_train, generator=run.order_gen).to(run.dev.torch_device)
        p.loss_sum = torch.zeros((), device=run.dev.torch_device)
    chunks = epoch_batches(p.perm, cfg.batch_size)
    run.net.train()
    for idx in chunks[p.step :]:
        loss, p.lr = train_step(run, idx)
        p.loss_sum += loss * idx.numel()
        p.step += 1
        if p.step == len(chunks) // 2:
            fault_point("mid_epoch", p.epoch)
        if stop.requested and p.step < len(chunks):
            if cfg.checkpoint_every:
                checkpoint(run, folder)
            preempt(run, stop, checkpointed=bool(cfg.checkpoint_every))
    if cfg.schedule_unit in ("epoch", "epoch_ahead"):
        run.scheduler.step()
    train_loss = float(p.loss_sum) / sum(c.numel() for c in chunks)
    if not math.isfinite(train_loss):
        message = f"non-finite training loss in run {run.run_name} at epoch {p.epoch}"
        log.error(message)
        raise FloatingPointError(message)
    return train_loss


def train_step(run: TrainingRun, idx: torch.Tensor) -> tuple[torch.Tensor, float]:
    """One optimiser step on the training rows ``idx``; the batch's (detached) loss and the lr it used."""
    cfg = run.cfg
    padding = cfg.crop_padding if cfg.augment == "crop_flip" else None
    xb = make_batch(run.images["train"], idx, padding, run.aug_gen)
    loss = run.step(xb, run.y_train[idx], idx)
    lr = run.optimiser.param_groups[0]["lr"]
    run.optimiser.step()
    if cfg.schedule_unit == "step":
        run.scheduler.step()
    return loss.detach(), lr


def evaluate(run: TrainingRun) -> dict[str, torch.Tensor]:
    """Eval-mode float32 logits of the full (un-augmented) training, validation and test splits, computed by the
    time it returns (synchronised, so that the epoch's train/eval split of time is the device's)."""
    logits = {
        name: predict_logits(run.net, run.images[name], run.cfg.eval_batch_size, run.dev.autocast, run.num_classes)
        for name in ("train", "val", "test")
    }
    run.dev.synchronize()
    return logits


def history_row(run: TrainingRun, epoch: int, logits: Mapping[str, torch.Tensor], train_loss: float) -> dict:
    """The epoch's history row (all but its timing): accuracies, memorisation, losses and the distillation weight."""
    pred = {name: z.argmax(dim=1) for name, z in logits.items()}
    (y_noisy, y_clean), noisy = run.labels["train"], run.noisy_mask
    has_val = len(run.images["val"]) > 0
    return {
        "epoch": epoch,
        "lr": run.progress.lr,
        "train_loss": train_loss,
        "train_acc_noisy": _acc(pred["train"], y_noisy),
        "train_acc_clean": _acc(pred["train"], y_clean),
        "memorized": _acc(pred["train"][noisy], y_noisy[noisy]),
        "corrected": _acc(pred["train"][noisy], y_clean[noisy]),
        "val_loss": float(F.cross_entropy(logits["val"], run.labels["val"][0])) if has_val else math.nan,
        "val_acc": _acc(pred["val"], run.labels["val"][0]),
        "test_loss": float(F.cross_entropy(logits["test"], run.labels["test"][1])),
        "test_acc": _acc(pred["test"], run.labels["test"][1]),
        **_top_prediction(pred["test"], run.num_classes),
        "distill_weight": run.mode.distill_weight(),
    }


def _top_prediction(pred: torch.Tensor, num_classes: int) -> dict:
    """The most predicted class of ``pred`` and its share (ties to the lowest class), for collapse detection."""
    counts = torch.bincount(pred, minlength=num_classes)
    top = int(counts.argmax())
    return {"test_pred_top_class": top, "test_pred_top_share": float(counts[top]) / max(pred.numel(), 1)}


def log_collapse(run: TrainingRun) -> None:
    """After the last epoch: a warning for each of the last and the early-stopped epoch at which the test
    predictions collapsed onto one class (:mod:`selfdistill.collapse`)."""
    rows, best = run.progress.rows, run.progress.best
    epochs = {"last epoch": rows[-1]}
    if best is not None:
        epochs["early-stopped epoch"] = rows[best["epoch"] - 1]
    for at, row in epochs.items():
        if is_collapsed(row["test_pred_top_share"]):
            text = collapse_text(row["test_pred_top_class"], row["test_pred_top_share"])
            log.warning("run %s at the %s (epoch %d): %s", run.run_name, at, row["epoch"], text)


def store_outputs(run: TrainingRun, folder: CheckpointFolder, epoch: int, logits: Mapping[str, torch.Tensor]) -> None:
    """Keep the fixed subsets' logits and softmax outputs of a recorded epoch (one file per epoch until the end)."""
    if epoch not in run.stored_epochs:
        return
    arrays = {}
    for name, z in (("train_subset", logits["train"][run.subset_t]), ("test", logits["test"][run.test_subset_t])):
        arrays[f"{name}/logits"] = z.cpu().numpy()
        arrays[f"{name}/probs"] = F.softmax(z, dim=1).cpu().numpy()
    folder.save_epoch(epoch, arrays)


def track_best(run: TrainingRun, row: Mapping) -> None:
    """Keep a CPU copy of the weights of the best noisy-validation epoch (the first one on ties)."""
    best = run.progress.best
    if math.isnan(row["val_acc"]) or (best is not None and row["val_acc"] <= best["val_acc"]):
        return
    weights = {k: v.detach().to("cpu", copy=True) for k, v in run.net.state_dict().items()}
    run.progress.best = {"epoch": row["epoch"], "val_acc": row["val_acc"], "state_dict": weights}


def checkpoint(run: TrainingRun, folder: CheckpointFolder) -> float:
    """Write the run's state atomically into its checkpoint folder; the seconds it took."""
    start = time.perf_counter()
    p = run.progress
    # fault injection names the epoch in progress, or the one just finished
    folder.save(run.state_dict(), epoch=p.epoch if p.step else p.epoch - 1)
    return time.perf_counter() - start


def preempt(run: TrainingRun, stop: StopRequest, *, checkpointed: bool) -> None:
    """Stop after a SIGTERM/SIGUSR1 (or Snakemake's death): log where the run stands and raise :class:`Preempted`."""
    p, n = run.progress, run.cfg.epochs
    at = f"epoch {p.epoch} of {n} (step {p.step})" if p.step else f"epoch {p.epoch - 1} of {n}"
    if checkpointed:
        message = f"{stop.name}: checkpointed at {at}; rerun to resume"
    else:
        message = f"{stop.name}: stopped at {at} without a checkpoint (train.checkpoint_every is 0)"
    log.warning(message)
    raise Preempted(message)


def log_epoch(row: Mapping, epochs: int, checkpoint_seconds: float | None) -> None:
    """One line per epoch; the checkpoint's cost, when one was written, closes it."""
    log.info(
        "epoch %d/%d lr %.4g loss %.4f train(noisy) %.3f memorised %.3f corrected %.3f val %.3f test %.3f (%.2fs%s)",
        row["epoch"],
        epochs,
        row["lr"],
        row["train_loss"],
        row["train_acc_noisy"],
        row["memorized"],
        row["corrected"],
        row["val_acc"],
        row["test_acc"],
        row["epoch_seconds"],
        "" if checkpoint_seconds is None else f", checkpoint {checkpoint_seconds:.3f}s",
    )


# ------------------------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------------------------


def write_results(
    run: TrainingRun, folder: CheckpointFolder, out_history, out_outputs, out_model, out_early, out_run=None
) -> pd.DataFrame:
    """Write history.csv, outputs.h5 (from the stored epochs), model.pt, the early-stopped weights and run.json
    (last, so that it says the run is complete), each atomically."""
    history = pd.DataFrame(run.progress.rows, columns=list(HISTORY_COLUMNS))
    with atomic_output(out_history, "rule train") as tmp:
        history.to_csv(tmp, index=False)
    write_run_outputs(run, folder, out_outputs)
    last = run.progress.rows[-1]
    _save_model(out_model, run, run.net.state_dict(), last, "final weights after the last epoch")
    if out_early is not None:
        best = run.progress.best
        if best is None:
            _save_model(out_early, run, None, None, "no validation split (val_fraction 0): no early-stopped network")
        else:
            row = run.progress.rows[best["epoch"] - 1]
            _save_model(out_early, run, best["state_dict"], row, "weights of the best noisy-validation epoch")
    if out_run is not None:
        with atomic_output(out_run) as tmp:
            Path(tmp).write_text(json.dumps(run_record(run), indent=2) + "\n")
    return history


def write_run_outputs(run: TrainingRun, folder: CheckpointFolder, path) -> None:
    """outputs.h5 (:func:`selfdistill.outputs.write_outputs`) from the epochs stored in the checkpoint folder, with the
    producing run's identity, which the frequency step verifies: the data file it trained on, the precision the
    logits were computed in (resolved; bf16 runs' logits come from a float32 head) and the per-channel normalisation
    the network saw (float32 values, for ``frequency.inputs: normalised``)."""
    attrs = {
        "run": run.run_name,
        "mode": run.spec.mode,
        "seed": run.spec.seed,
        "epochs": run.cfg.epochs,
        "data_sha256": run.data_sha256,
        "precision": run.dev.precision,
        "norm_mean": run.norm_mean.numpy().astype(np.float64),
        "norm_std": run.norm_std.numpy().astype(np.float64),
    }
    rows = {"train_subset": (run.splits["train"], run.subset), "test": (run.splits["test"], run.test_subset)}
    needed = sum(folder.epoch_path(e).stat().st_size for e in run.stored_epochs) + (1 << 20)
    write_outputs(path, run.stored_epochs, rows, run.num_classes, folder.load_epoch, attrs, needed)


def run_record(run: TrainingRun) -> dict:
    """run.json: which run this is, the device it trained on and the precision it computed in (resolved: float32,
    tf32 or bf16; ``precision_setting`` is the config's ``train.precision``)."""
    return {
        "run": run.run_name,
        "mode": run.spec.mode,
        "seed": run.spec.seed,
        "device": str(run.dev.torch_device),
        "device_name": run.dev.name(),
        "precision": run.dev.precision,
        "precision_setting": run.cfg.precision,
        "compile": run.step.compile_mode,
        "torch": torch.__version__,
        **teacher_record(run),
    }


def teacher_record(run: TrainingRun) -> dict:
    """run.json's ``teacher`` (the weights file a distilling mode learnt from and its sha256), or nothing."""
    if run.spec.teacher_sha256 is None:
        return {}
    return {"teacher": {"file": run.teacher_file, "sha256": run.spec.teacher_sha256}}


def _save_model(path, run: TrainingRun, weights, row: Mapping | None, what: str) -> None:
    """A weights file that says what it is: the run, its hyper-parameters, the epoch and that epoch's metrics."""
    spec = run.spec
    payload = {
        "state_dict": weights,
        "what": what,
        "epoch": None if row is None else int(row["epoch"]),
        "metrics": None if row is None else {k: v for k, v in row.items() if k != "epoch"},
        "run": run.run_name,
        "mode": spec.mode,
        "seed": spec.seed,
        "model": dict(spec.model),
        "train": asdict(spec.train),
        "distill": dict(spec.distill),
        "num_classes": run.num_classes,
        "epochs": run.cfg.epochs,
        "device": str(run.dev.torch_device),
        "precision": run.dev.precision,
    }
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)
