"""Pipeline step ``train``: one run = one corrupted dataset × mode × seed.

The training images stay on the device as one uint8 tensor; each batch is (optionally) cropped and flipped for
the whole batch at once and normalised on the device, so there is no per-image Python in the loop. The seed
fixes the initialisation, the batch order and the augmentation, and is shared by all modes of a seed, so modes
are compared on identical starts and batch sequences. Every epoch the network is evaluated on the full
(un-augmented) training split, the noisy validation split and the clean test split, which gives the history
row and the outputs that the frequency analysis reads later without retraining.

Outputs: ``history.csv`` (one row per epoch, see ``HISTORY_COLUMNS``), ``outputs.h5`` (softmax outputs and
logits per epoch on a fixed training subset and a fixed test subset, all of the test set by default) and
``model.pt`` (final weights + metadata).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Mapping
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass

import h5py
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .data import read_corrupted
from .gpu_slots import claim_cuda_device
from .io import atomic_output, setup_logging
from .losses import (
    MODES,
    bootstrap_hard_loss,
    bootstrap_soft_loss,
    ce_loss,
    self_distill_loss,
    seq_alpha,
    soft_cross_entropy,
    update_soft_labels,
)
from .models import build_model, count_parameters

log = logging.getLogger(__name__)
_STATS_BLOCK = 1 << 20  # pixels per block of channel_stats

HISTORY_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc_noisy",
    "train_acc_clean",
    "memorized",
    "corrected",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "distill_weight",
    "epoch_seconds",
)


@dataclass(frozen=True)
class TrainSettings:
    """The config's ``train`` section (defaults equal the schema's; a test keeps them in step)."""

    epochs: int = 60
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    schedule: str = "cosine"  # cosine | constant
    schedule_unit: str = "step"  # step | epoch
    augment: str = "none"  # none | crop_flip
    crop_padding: int = 4
    eval_batch_size: int = 1024
    compile: bool = False  # torch.compile the network (worth it on CUDA for long runs)


@dataclass(frozen=True)
class DistillSettings:
    """The config's ``distill`` section: bootstrap βs and the sequential self-distillation α schedule."""

    bootstrap_soft_beta: float = 0.95
    bootstrap_hard_beta: float = 0.8
    seq_alpha: float = 0.3
    seq_warmup: int = 5
    seq_ramp: int = 0


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU is an error, not a silent fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {device!r} requested but no CUDA device is visible on node {socket.gethostname()} "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
        )
    return torch.device(device)


class DeviceImages:
    """A split's images resident on the device as uint8 NCHW, normalised per batch with train statistics."""

    def __init__(
        self,
        images: np.ndarray,
        device: torch.device,
        pixel_max: float,
        mean: torch.Tensor,
        std: torch.Tensor,
    ):
        self.data = torch.from_numpy(
            np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        ).to(device)
        self.scale = 1.0 / pixel_max
        self.mean = mean.to(device).view(1, -1, 1, 1)
        self.std = std.to(device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return self.data.shape[0]

    def normalise(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """(x / pixel_max − mean) / std as float32, in place on one new tensor (no temporaries per operation)."""
        out = batch_uint8.to(torch.float32, copy=True)
        return out.mul_(self.scale).sub_(self.mean).div_(self.std)


def channel_stats(
    images: np.ndarray, pixel_max: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the training images on the [0, 1] scale (std floored to avoid /0).

    Two passes in float64 over blocks of ``_STATS_BLOCK`` pixels, so CIFAR's 46 million pixels never become one
    float64 copy (1.1 GB); a dataset that fits one block (digits) gets exactly ``mean`` and ``std`` of numpy.
    """
    pixels = images.reshape(-1, images.shape[-1])
    n = pixels.shape[0]
    blocks = [pixels[i : i + _STATS_BLOCK] for i in range(0, n, _STATS_BLOCK)]
    mean = sum(b.astype(np.float64).sum(axis=0) / pixel_max for b in blocks) / n
    var = (
        sum(
            ((b.astype(np.float64) / pixel_max - mean) ** 2).sum(axis=0) for b in blocks
        )
        / n
    )
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(
        np.maximum(np.sqrt(var), 1e-3), dtype=torch.float32
    )


def crop_flip(
    batch: torch.Tensor, padding: int, generator: torch.Generator
) -> torch.Tensor:
    """Random crop (zero padding ``padding``) and horizontal flip for a whole NCHW batch at once, on its device.

    Draws ``dy``, ``dx`` (crop offsets in the padded image) and ``flip`` per sample from ``generator``. A
    zero-padded copy of the batch and of its mirror image sit in one buffer; every output row (sample, channel,
    y) is then a run of ``w`` values at a known offset of that buffer (a flipped crop at column offset ``dx`` is
    the mirror's crop at ``2·padding − dx``), and one ``index_select`` over overlapping row windows gathers them
    all into a contiguous batch. Copying whole rows instead of single pixels makes this ~6× faster on a CPU than
    per-pixel advanced indexing, with identical output (tests compare it with a per-pixel reference).
    """
    n, c, h, w = batch.shape
    dev, p = batch.device, padding
    dy = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=dev)
    flip = torch.rand(n, generator=generator, device=dev) < 0.5
    if n == 0:
        return batch.new_empty((0, c, h, w))
    big_h, big_w = h + 2 * p, w + 2 * p
    both = batch.new_zeros((n, 2, c, big_h, big_w))
    both[:, 0, :, p : p + h, p : p + w] = batch
    both[:, 1, :, p : p + h, p : p + w] = batch.flip(3)
    start = (torch.arange(n, device=dev) * 2 + flip) * (c * big_h * big_w)
    start = start + dy * big_w + torch.where(flip, 2 * p - dx, dx)
    offsets = (
        start[:, None, None]
        + torch.arange(c, device=dev)[None, :, None] * (big_h * big_w)
        + torch.arange(h, device=dev)[None, None, :] * big_w
    )
    flat = both.view(-1)
    windows = flat.as_strided((flat.numel() - w + 1, w), (1, 1))
    return windows.index_select(0, offsets.view(-1)).view(n, c, h, w)


@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module,
    images: DeviceImages,
    batch_size: int,
    autocast,
    num_classes: int,
) -> torch.Tensor:
    """Eval-mode float32 logits for every image of ``images``, in order."""
    model.eval()
    # start from an empty (0, C) block so that an empty split (val_fraction 0) gives (0, C) logits
    out = [torch.empty((0, num_classes), device=images.data.device)]
    for start in range(0, len(images), batch_size):
        rows = torch.arange(
            start, min(start + batch_size, len(images)), device=images.data.device
        )
        with autocast():
            out.append(model(make_batch(images, rows)).float())
    return torch.cat(out)


def make_batch(
    images: DeviceImages,
    idx: torch.Tensor,
    padding: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The network's input for rows ``idx`` of ``images``: gathered, cropped and flipped when ``padding`` is given
    (random crop with that zero padding, drawing from ``generator``), normalised, channels_last on CUDA.

    The one place where training, evaluation and the input-pipeline benchmark make batches.
    """
    xb = images.data.index_select(0, idx)
    if padding is not None:
        xb = crop_flip(xb, padding, generator)
    xb = images.normalise(xb)
    if xb.device.type == "cuda":
        xb = xb.contiguous(memory_format=torch.channels_last)
    return xb


def _acc(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return float((pred == labels).float().mean()) if labels.numel() else math.nan


def select_subset(n: int, size: int | None, seed: int) -> np.ndarray:
    """Fixed, sorted subset of rows for the frequency analysis (all rows if ``size`` is None or ≥ n)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(
        np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).choice(
            n, size, replace=False
        )
    )


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
    freq_subset: int = 1000,
    freq_test_subset: int | None = None,
    device: str = "auto",
    threads: int = 1,
    run_name: str | None = None,
    log_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Pipeline step: train one run and write its history, per-epoch outputs and final weights.

    ``freq_subset`` training rows (drawn with ``seed``, since the training split depends on it) and
    ``freq_test_subset`` test rows (None: all; drawn with seed 0, so every run stores the same test images) get
    their outputs stored every epoch; the history's metrics always use the full splits.
    """
    if log_path is not None:
        setup_logging(log_path)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    cfg = TrainSettings(**train)
    dis = DistillSettings(**(distill or {}))
    run_name = run_name or f"{data_path}:{mode}:seed{seed}"
    # a bare "cuda" claims a free GPU slot (several GPUs, several jobs: see gpu_slots); held until we return
    device_name, gpu_slot = claim_cuda_device(
        str(resolve_device(device)), holder=run_name
    )
    try:
        return _train(
            data_path,
            out_history,
            out_outputs,
            out_model,
            mode=mode,
            seed=seed,
            model=model,
            cfg=cfg,
            dis=dis,
            freq_subset=freq_subset,
            freq_test_subset=freq_test_subset,
            dev=torch.device(device_name),
            threads=threads,
            run_name=run_name,
        )
    finally:
        if gpu_slot is not None:
            gpu_slot.release()


def _train(
    data_path,
    out_history,
    out_outputs,
    out_model,
    *,
    mode: str,
    seed: int,
    model: Mapping,
    cfg: TrainSettings,
    dis: DistillSettings,
    freq_subset: int,
    freq_test_subset: int | None,
    dev: torch.device,
    threads: int,
    run_name: str,
) -> pd.DataFrame:
    """The body of :func:`train_run` on a resolved (and, for CUDA, claimed) device."""
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if dev.type == "cpu":
        torch.set_num_threads(max(1, int(threads)))
    else:
        torch.backends.cudnn.benchmark = True
    # bf16 autocast where the GPU computes in bf16 natively (Ampere and later); float32 elsewhere (V100/T4 would
    # emulate bf16 slowly, and fp16 would need loss scaling)
    bf16 = dev.type == "cuda" and torch.cuda.is_bf16_supported(
        including_emulation=False
    )
    if dev.type == "cuda" and not bf16:
        log.info("this GPU has no native bf16: training in float32")
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else nullcontext
    )

    splits, attrs = read_corrupted(data_path)
    num_classes, pixel_max = int(attrs["num_classes"]), float(attrs["pixel_max"])
    mean, std = channel_stats(splits["train"].images, pixel_max)
    images = {
        name: DeviceImages(s.images, dev, pixel_max, mean, std)
        for name, s in splits.items()
    }
    labels = {
        name: (
            torch.from_numpy(s.labels_noisy).to(dev),
            torch.from_numpy(s.labels_clean).to(dev),
        )
        for name, s in splits.items()
    }
    noisy_mask = torch.from_numpy(splits["train"].is_noisy).to(dev)
    y_train, _ = labels["train"]
    n_train = len(images["train"])
    subset = select_subset(n_train, freq_subset, seed)
    subset_t = torch.from_numpy(subset).to(dev)
    test_subset = select_subset(len(images["test"]), freq_test_subset, 0)
    test_subset_t = torch.from_numpy(test_subset).to(dev)

    torch.manual_seed(seed)
    net = build_model(
        model["arch"],
        tuple(images["train"].data.shape[1:]),
        num_classes,
        model.get("width"),
        model.get("depth", 2),
    ).to(dev)
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    # `forward` is what the loop calls; `net` keeps the plain module for saving its state_dict
    if cfg.compile and dev.type != "cuda":
        log.info("train.compile applies to CUDA runs only; running %s eagerly", dev)
    forward = torch.compile(net) if cfg.compile and dev.type == "cuda" else net
    log.info(
        "run %s: %s on %s, %d parameters, %d train / %d val / %d test, mode %s",
        run_name,
        model["arch"],
        dev,
        count_parameters(net),
        n_train,
        len(images["val"]),
        len(images["test"]),
        mode,
    )
    optimiser = torch.optim.SGD(
        net.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov,
    )
    batches_per_epoch = math.ceil(n_train / cfg.batch_size)
    horizon = cfg.epochs * (batches_per_epoch if cfg.schedule_unit == "step" else 1)
    if cfg.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimiser,
            lambda t: 0.5 * (1 + math.cos(math.pi * min(t, horizon) / horizon)),
        )
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda t: 1.0)
    order_gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator(device=dev).manual_seed(seed + 1)
    soft = (
        F.one_hot(y_train, num_classes).float() if mode == "self_distill_seq" else None
    )

    def objective(logits, yb, idx):
        if mode == "ce":
            return ce_loss(logits, yb)
        if mode == "self_distill":
            return self_distill_loss(logits, yb)
        if mode == "self_distill_seq":
            return soft_cross_entropy(logits, soft[idx]), None
        if mode == "bootstrap_soft":
            return bootstrap_soft_loss(logits, yb, dis.bootstrap_soft_beta)
        return bootstrap_hard_loss(logits, yb, dis.bootstrap_hard_beta)

    rows = []
    with ExitStack() as stack:
        tmp_outputs = stack.enter_context(atomic_output(out_outputs))
        h5 = stack.enter_context(h5py.File(tmp_outputs, "w"))
        sinks = _create_output_datasets(
            h5, splits, subset, test_subset, num_classes, cfg.epochs
        )
        for epoch in range(1, cfg.epochs + 1):
            start = time.perf_counter()
            forward.train()
            perm = torch.randperm(n_train, generator=order_gen).to(dev)
            chunks = list(perm.split(cfg.batch_size))
            if (
                len(chunks) > 1 and chunks[-1].numel() < 2
            ):  # BatchNorm cannot train on a single sample
                chunks = chunks[:-1]
            loss_sum = torch.zeros((), device=dev)
            weight_sum, weight_count = torch.zeros((), device=dev), 0
            for idx in chunks:
                padding = cfg.crop_padding if cfg.augment == "crop_flip" else None
                xb = make_batch(images["train"], idx, padding, aug_gen)
                with autocast():
                    logits = forward(xb)
                loss, weight = objective(logits, y_train[idx], idx)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                # the history reports the lr of the epoch's last step
                lr = optimiser.param_groups[0]["lr"]
                optimiser.step()
                if cfg.schedule_unit == "step":
                    scheduler.step()
                loss_sum += loss.detach() * idx.numel()
                if isinstance(weight, torch.Tensor):
                    weight_sum += weight
                    weight_count += 1
            if cfg.schedule_unit == "epoch":
                scheduler.step()
            train_loss = float(loss_sum) / sum(c.numel() for c in chunks)
            if not math.isfinite(train_loss):
                message = f"non-finite training loss in run {run_name} at epoch {epoch}"
                log.error(message)
                raise FloatingPointError(message)

            logits = {
                name: predict_logits(
                    forward, images[name], cfg.eval_batch_size, autocast, num_classes
                )
                for name in ("train", "val", "test")
            }
            pred = {name: z.argmax(dim=1) for name, z in logits.items()}
            alpha = None
            if mode == "self_distill_seq":
                alpha = seq_alpha(epoch, dis.seq_alpha, dis.seq_warmup, dis.seq_ramp)
                soft = update_soft_labels(
                    soft, F.softmax(logits["train"], dim=1), alpha
                )
            distill_weight = {
                "ce": None,
                "self_distill": float(weight_sum) / max(weight_count, 1),
                "self_distill_seq": alpha,
                "bootstrap_soft": 1 - dis.bootstrap_soft_beta,
                "bootstrap_hard": 1 - dis.bootstrap_hard_beta,
            }[mode]
            row = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": train_loss,
                "train_acc_noisy": _acc(pred["train"], labels["train"][0]),
                "train_acc_clean": _acc(pred["train"], labels["train"][1]),
                "memorized": _acc(
                    pred["train"][noisy_mask], labels["train"][0][noisy_mask]
                ),
                "corrected": _acc(
                    pred["train"][noisy_mask], labels["train"][1][noisy_mask]
                ),
                "val_loss": float(F.cross_entropy(logits["val"], labels["val"][0]))
                if len(images["val"])
                else math.nan,
                "val_acc": _acc(pred["val"], labels["val"][0]),
                "test_loss": float(F.cross_entropy(logits["test"], labels["test"][1])),
                "test_acc": _acc(pred["test"], labels["test"][1]),
                "distill_weight": distill_weight,
            }
            for name, z in (
                ("train_subset", logits["train"][subset_t]),
                ("test", logits["test"][test_subset_t]),
            ):
                sinks[name]["logits"][epoch - 1] = z.cpu().numpy()
                sinks[name]["probs"][epoch - 1] = F.softmax(z, dim=1).cpu().numpy()
            row["epoch_seconds"] = time.perf_counter() - start
            rows.append(row)
            log.info(
                "epoch %d/%d lr %.4g loss %.4f train(noisy) %.3f memorised %.3f corrected %.3f val %.3f test %.3f (%.2fs)",
                epoch,
                cfg.epochs,
                lr,
                train_loss,
                row["train_acc_noisy"],
                row["memorized"],
                row["corrected"],
                row["val_acc"],
                row["test_acc"],
                row["epoch_seconds"],
            )
        h5.attrs.update(
            {"run": run_name, "mode": mode, "seed": seed, "epochs": cfg.epochs}
        )

    history = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    with atomic_output(out_history) as tmp:
        history.to_csv(tmp, index=False)
    with atomic_output(out_model) as tmp:
        torch.save(
            {
                "state_dict": net.state_dict(),
                "model": dict(model),
                "mode": mode,
                "seed": seed,
                "num_classes": num_classes,
                "epochs": cfg.epochs,
                "run": run_name,
            },
            tmp,
        )
    return history


def _create_output_datasets(
    h5: h5py.File,
    splits,
    subset: np.ndarray,
    test_subset: np.ndarray,
    num_classes: int,
    epochs: int,
) -> dict:
    """Lay out outputs.h5: /epochs, /train_subset/{indices,labels_*,probs,logits},
    /test/{indices,labels_clean,probs,logits} (``indices`` are rows of data.h5's split).

    Arrays are (epochs, n, C) float32, chunked one epoch at a time so each epoch is written as it finishes.
    """
    h5.create_dataset("epochs", data=np.arange(1, epochs + 1, dtype=np.int64))
    sinks = {}
    for name, split in (("train_subset", splits["train"]), ("test", splits["test"])):
        group = h5.create_group(name)
        rows = subset if name == "train_subset" else test_subset
        group.create_dataset("indices", data=rows.astype(np.int64))
        if name == "train_subset":
            group.create_dataset("labels_noisy", data=split.labels_noisy[rows])
        group.create_dataset("labels_clean", data=split.labels_clean[rows])
        shape = (epochs, rows.size, num_classes)
        sinks[name] = {
            key: group.create_dataset(
                key, shape=shape, dtype=np.float32, chunks=(1, *shape[1:])
            )
            for key in ("probs", "logits")
        }
    return sinks
