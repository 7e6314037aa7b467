"""Train step: forward + backward + SGD step per network and batch size, with the training loop's settings.

CUDA: bf16 autocast, channels_last, cudnn.benchmark; CPU: float32. Ratios are relative to the original study's
network (``model.arch`` of ``config/cifar10_seed.yaml``) at the same batch size, and relative to the study's batch
size (its ``train.batch_size``) for the same network; SGD with the study's ``lr``, ``momentum``, ``weight_decay``
and ``nesterov``.

``python -m benchmarks.train_step [--out CSV] [--quick] [--device D] [--threads N]``
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext

import pandas as pd
import torch

from selfdistill import device as devices
from selfdistill.dataset_files import DEFAULT_DATA_ROOT
from selfdistill.losses import ce_loss
from selfdistill.models import ARCHITECTURES, SIGNAL_ARCHITECTURES, build_model, count_parameters

from .common import (
    COLUMNS,
    IMAGE_SHAPE,
    ORIGINAL_CONFIG,
    command_line,
    configure_device,
    device_name,
    finish,
    log,
    row,
    study_config,
    study_settings,
    sync,
)

NAME = "train_step"
#: Sizes of ``--quick`` runs (seconds on a laptop; for smoke tests, not for numbers).
QUICK = {"batch_sizes": (4, 8), "warmup": 1, "steps": 1}


def _time_steps(net, optimiser, xb, yb, autocast, warmup: int, steps: int) -> float:
    """Seconds of ``steps`` training steps (forward, cross-entropy, backward, SGD) after ``warmup`` untimed ones."""

    def step():
        with autocast():
            logits = net(xb)
        loss, _ = ce_loss(logits, yb)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    for _ in range(warmup):
        step()
    sync(xb.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(xb.device)
    return time.perf_counter() - t0


def train_step_benchmark(
    out=None,
    *,
    archs: Sequence[str] | None = None,
    batch_sizes: Sequence[int] | None = None,
    warmup: int | None = None,
    steps: int | None = None,
    device: str = "auto",
    threads: int = 2,
    seed: int = 0,
    config=ORIGINAL_CONFIG,
) -> pd.DataFrame:
    """Training images/s (forward + backward + SGD step) per architecture and batch size, on random inputs.

    ``archs`` defaults to every image architecture of :data:`selfdistill.models.ARCHITECTURES` but ``mlp`` (not the
    MNIST-1D networks, :data:`~selfdistill.models.SIGNAL_ARCHITECTURES`); warm-up
    and timed steps default to 5 and 20 on CUDA, 1 and 2 on CPU. ``ratio``: images/s relative to
    the study's network (``model.arch`` of ``config``, the original study ``config/cifar10_seed.yaml``) at the
    same batch size; ``ratio_batch``: relative to the same network at the first batch size. ``batch_sizes``
    defaults to the study's ``train.batch_size`` and four times it; SGD with the study's ``lr``, ``momentum``,
    ``weight_decay`` and ``nesterov``.
    """
    study = study_config(config)
    settings = study_settings(study)
    reference = study["model"]["arch"]
    batch_sizes = (settings.batch_size, 4 * settings.batch_size) if batch_sizes is None else tuple(batch_sizes)
    dev = configure_device(device, threads)
    cuda = dev.type == "cuda"
    images = [a for a in ARCHITECTURES if a != "mlp" and a not in SIGNAL_ARCHITECTURES]
    archs = images if archs is None else list(archs)
    warmup = (5 if cuda else 1) if warmup is None else warmup
    steps = (20 if cuda else 2) if steps is None else steps
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if cuda:
        torch.backends.cudnn.benchmark = True
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else nullcontext
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for arch in archs:
        torch.manual_seed(seed)
        rows += _arch_rows(arch, settings, batch_sizes, dev, gen, autocast, warmup, steps)
    summary = _ratios_and_summary(rows, archs, batch_sizes, reference, dev)
    return finish(rows, out, summary)


def _arch_rows(
    arch: str, settings, batch_sizes, dev, gen: torch.Generator, autocast, warmup: int, steps: int
) -> list[dict]:
    """The rows of one network (seeded by the caller), one per batch size: random batches drawn from ``gen``."""
    cuda = dev.type == "cuda"
    shape = (3, *IMAGE_SHAPE[:2])
    net = build_model(arch, shape, 10).to(dev)
    if cuda:
        net = net.to(memory_format=torch.channels_last)
    net.train()
    optimiser = torch.optim.SGD(
        net.parameters(),
        lr=settings.lr,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
        nesterov=settings.nesterov,
    )
    rows = []
    for batch_size in batch_sizes:
        xb = torch.randn((batch_size, *shape), generator=gen).to(dev)
        if cuda:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yb = torch.randint(0, 10, (batch_size,), generator=gen).to(dev)

        sec = _time_steps(net, optimiser, xb, yb, autocast, warmup, steps)
        log.info(
            "train step %s batch %d: %d steps in %.3fs (%d parameters)",
            arch,
            batch_size,
            steps,
            sec,
            count_parameters(net),
        )
        rows.append(
            row(
                "train_step",
                variant=arch,
                device=dev.type,
                device_name=device_name(dev),
                threads=torch.get_num_threads(),
                data="random",
                batch_size=batch_size,
                n_images=batch_size * steps,
                seconds=sec,
                throughput=batch_size * steps / sec,
                throughput_unit="images/s",
            )
        )
    return rows


def _ratios_and_summary(rows: list[dict], archs, batch_sizes, reference: str, dev) -> str:
    """Set each row's ``ratio`` and ``ratio_batch``; the one-line summary."""
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    thr = df.set_index(["variant", "batch_size"])["throughput"]
    for r in rows:
        ref = (reference, r["batch_size"])
        r["ratio"] = r["throughput"] / thr[ref] if ref in thr.index else math.nan
        r["ratio_batch"] = r["throughput"] / thr[(r["variant"], batch_sizes[0])]
    parts = []
    for arch in archs:
        per_batch = "/".join(f"{thr[(arch, b)]:,.0f}" for b in batch_sizes)
        ratios = "/".join(f"{r['ratio']:.2f}" for r in rows if r["variant"] == arch and not math.isnan(r["ratio"]))
        parts.append(f"{arch} {per_batch}" + (f" ({ratios}x ref)" if ratios else ""))
    return (
        f"train step on {dev.type} ({device_name(dev)}), images/s at batch "
        f"{'/'.join(map(str, batch_sizes))}, ref = {reference}: " + "; ".join(parts)
    )


def run(out=None, *, device: str = "auto", threads: int = 2, data_root=DEFAULT_DATA_ROOT, **options) -> pd.DataFrame:
    """:func:`train_step_benchmark` on ``device`` (a bare ``cuda`` claims a GPU slot); random inputs, no data."""
    with devices.acquire(device, threads, holder=f"benchmark {NAME}") as run_device:
        return train_step_benchmark(out, device=str(run_device.torch_device), threads=threads, **options)


def main(argv: Sequence[str] | None = None) -> None:
    command_line(NAME, argv, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    main()
