"""Everything about the device a run trains on, in one place: planning, checking, claiming and configuring it.

- **Planning** (:func:`planned_device`, :func:`gpu_visible`): the Snakefile resolves ``device: auto`` once, on the
  machine that plans the workflow, without importing torch, and hands each job a concrete device, so the ``gpu``
  resource a job holds and the device it trains on always agree. Cluster jobs re-parse the workflow on their node
  and inherit the planner's decision through :data:`PLANNED_DEVICE_ENV` instead of probing that node.
- **On the node** (:func:`acquire`): check that the planned device exists (``cuda`` without a GPU is an error, not a
  silent CPU run), claim a free GPU slot for a bare ``cuda`` (see :mod:`selfdistill.gpu_slots`), and set the CPU
  thread count, cuDNN autotuning and bf16 autocast. The result is a :class:`RunDevice` that the training engine,
  the benchmarks and the GPU self-check share.

torch is imported inside the functions that need it, so the planner can import this module cheaply.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .gpu_slots import GpuSlot, claim_cuda_device

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Environment variable through which cluster jobs inherit the planner's ``auto`` decision.
PLANNED_DEVICE_ENV = "SELFDISTILL_PLANNED_DEVICES"


def gpu_visible() -> bool:
    """True when an NVIDIA GPU is usable here: CUDA_VISIBLE_DEVICES allows one and the driver lists a GPU."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listing.returncode == 0 and any(line.startswith("GPU ") for line in listing.stdout.splitlines())


def planned_device(setting: str, *, inherit: bool = False) -> str:
    """The concrete device a training job will be told to use: ``auto`` → ``cuda`` if a GPU is visible, else ``cpu``.

    The planner (``inherit=False``) probes this machine and records its answer in :data:`PLANNED_DEVICE_ENV`; a
    process that re-parses the workflow for one job (``inherit=True``, e.g. on a cluster node) takes the recorded
    answer when there is one, so the plan does not change with the node a job lands on.
    """
    if setting != "auto":
        return setting
    inherited = os.environ.get(PLANNED_DEVICE_ENV)
    if inherit and inherited:
        return inherited
    device = "cuda" if gpu_visible() else "cpu"
    os.environ[PLANNED_DEVICE_ENV] = device
    return device


def check_device(setting: str) -> torch.device:
    """The torch device for ``setting`` on this node: ``auto`` → CUDA when present, else CPU; ``cuda`` without a
    visible GPU raises a one-line ``RuntimeError`` naming the node."""
    import torch

    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {setting!r} requested but no CUDA device is visible on node {socket.gethostname()} "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
        )
    return torch.device(setting)


@dataclass
class RunDevice:
    """A checked, claimed and configured device: what a run needs to place tensors and pick its precision."""

    torch_device: torch.device
    #: bf16 autocast on GPUs that compute bf16 natively (Ampere and later); float32 everywhere else
    bf16: bool = False
    slot: GpuSlot | None = field(default=None, repr=False)

    @property
    def type(self) -> str:
        return self.torch_device.type

    @property
    def is_cuda(self) -> bool:
        return self.torch_device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context in which forward passes run: bf16 autocast on capable GPUs, a no-op otherwise."""
        import torch

        return torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def synchronize(self) -> None:
        """Wait for queued GPU work (for timing); nothing to wait for on the CPU."""
        import torch

        if self.is_cuda:
            torch.cuda.synchronize(self.torch_device)

    def name(self) -> str:
        """The device's product name (``NVIDIA H100 80GB HBM3``) or the CPU's model name."""
        import torch

        if self.is_cuda:
            return torch.cuda.get_device_name(self.torch_device)
        return cpu_name()


def channels_last(x: Any) -> Any:
    """A tensor or network in channels_last memory layout on CUDA (faster convolutions), unchanged on the CPU."""
    import torch

    if isinstance(x, torch.nn.Module):
        on_cuda = any(p.is_cuda for p in x.parameters())
        return x.to(memory_format=torch.channels_last) if on_cuda else x
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` is empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def configure(dev: torch.device, threads: int = 1) -> RunDevice:
    """Set this process up for ``dev``: CPU threads, or the current CUDA device, cuDNN autotuning and bf16."""
    import torch

    if dev.type == "cpu":
        torch.set_num_threads(max(1, int(threads)))
        return RunDevice(dev)
    torch.cuda.set_device(dev)
    torch.backends.cudnn.benchmark = True
    # V100/T4 would emulate bf16 slowly and fp16 would need loss scaling: those GPUs train in float32
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    if not bf16:
        log.info("this GPU has no native bf16: training in float32")
    return RunDevice(dev, bf16=bf16)


@contextlib.contextmanager
def acquire(setting: str, threads: int = 1, holder: str | None = None) -> Iterator[RunDevice]:
    """Check ``setting`` on this node, claim a GPU slot for a bare ``cuda`` and configure the device; the slot is
    released when the block ends (and by the kernel if the process dies)."""
    name, slot = claim_cuda_device(str(check_device(setting)), holder=holder)
    try:
        run_device = configure(_torch_device(name), threads)
        run_device.slot = slot
        yield run_device
    finally:
        if slot is not None:
            slot.release()


def _torch_device(name: str) -> torch.device:
    import torch

    return torch.device(name)
