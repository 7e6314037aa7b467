"""Everything about the device a run trains on, in one place: planning, checking, claiming and configuring it.

- **Planning** (:func:`planned_device`, :func:`gpu_visible`): the Snakefile resolves ``device: auto`` once, on the
  machine that plans the workflow, without importing torch, and hands each job a concrete device, so the ``gpu``
  resource a job holds and the device it trains on always agree. Cluster jobs re-parse the workflow on their node
  and inherit the planner's decision through :data:`PLANNED_DEVICE_ENV` instead of probing that node.
- **On the node** (:func:`acquire`): check that the planned device exists (``cuda`` without a GPU is an error, not a
  silent CPU run), claim a free GPU slot for a bare ``cuda`` (see :mod:`selfdistill.gpu_slots`), and set the CPU
  thread count, cuDNN autotuning and the numerical precision. The result is a :class:`RunDevice` that the training
  engine, the benchmarks and the GPU self-check share.
- **Precision** (:func:`resolve_precision`, :func:`apply_precision`): the config's ``train.precision`` (``auto``,
  ``bf16``, ``tf32``, ``float32``) becomes the precision the run really computes in on this device (``bf16``,
  ``tf32`` or ``float32``), which the run records in its outputs.

torch is imported inside the functions that need it, so the planner can import this module cheaply.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .gpu_slots import GpuSlot, claim_cuda_device

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Environment variable through which cluster jobs inherit the planner's ``auto`` decision.
PLANNED_DEVICE_ENV = "SELFDISTILL_PLANNED_DEVICES"

#: ``train.precision`` settings: ``auto`` - bf16 on GPUs that compute bf16 natively, float32 elsewhere; ``bf16`` -
#: bf16 autocast (float32 on a GPU without native bf16); ``tf32`` - float32 tensors, TF32 matmuls and convolutions;
#: ``float32`` - true float32 (TF32 off). The CPU always computes in float32.
PRECISIONS = ("auto", "bf16", "tf32", "float32")
#: what a run can resolve to
RESOLVED_PRECISIONS = ("bf16", "tf32", "float32")


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


def resolve_precision(setting: str, device_type: str, bf16_native: Callable[[], bool] | None = None) -> str:
    """The precision a run computes in: ``setting`` (one of :data:`PRECISIONS`) on a ``device_type`` device.

    The CPU computes in float32 whatever the setting (a line in the log says so when bf16 or tf32 was asked). On
    CUDA, ``auto`` and ``bf16`` give bf16 when ``bf16_native()`` says the GPU computes bf16 natively (Ampere and later;
    default: ask torch) and float32 otherwise: V100/T4 would emulate bf16 slowly, and fp16 would need loss scaling.
    """
    if setting not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {setting!r}")
    if device_type != "cuda":
        if setting in ("bf16", "tf32"):
            log.info("train.precision %s applies to CUDA runs only: the %s computes in float32", setting, device_type)
        return "float32"
    if setting in ("tf32", "float32"):
        return setting
    if bf16_native is None:
        bf16_native = _cuda_bf16_native
    if bf16_native():
        return "bf16"
    log.info("this GPU has no native bf16: training in float32")
    return "float32"


def _cuda_bf16_native() -> bool:
    import torch

    return torch.cuda.is_bf16_supported(including_emulation=False)


def apply_precision(precision: str) -> None:
    """Set this process's CUDA float32 math for a resolved ``precision``: TF32 matmuls and cuDNN convolutions on for
    ``tf32``, off for ``float32`` (PyTorch's default lets cuDNN use TF32), PyTorch's defaults under ``bf16`` (what
    autocast leaves in float32 keeps TF32 convolutions and IEEE matmuls). Set every time, because one process (the
    GPU self-check) may configure several precisions in turn. Only called for CUDA devices."""
    import torch

    if precision not in RESOLVED_PRECISIONS:
        raise ValueError(f"not a resolved precision: {precision!r}")
    matmul_tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
    torch.set_float32_matmul_precision("high" if matmul_tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = precision != "float32"


@dataclass
class RunDevice:
    """A checked, claimed and configured device: what a run needs to place tensors and pick its precision."""

    torch_device: torch.device
    #: the resolved precision (:data:`RESOLVED_PRECISIONS`): bf16 autocast, float32 with TF32, or true float32
    precision: str = "float32"
    slot: GpuSlot | None = field(default=None, repr=False)

    @property
    def bf16(self) -> bool:
        """Whether forward passes run under bf16 autocast."""
        return self.precision == "bf16"

    @property
    def type(self) -> str:
        return self.torch_device.type

    @property
    def is_cuda(self) -> bool:
        return self.torch_device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context in which forward passes run: bf16 autocast when the precision is bf16, a no-op otherwise."""
        import torch

        return torch.autocast(self.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

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


def configure(dev: torch.device, threads: int = 1, precision: str = "auto") -> RunDevice:
    """Set this process up for ``dev``: CPU threads (float32), or the current CUDA device, cuDNN autotuning and the
    ``precision`` setting (:func:`resolve_precision`, :func:`apply_precision`)."""
    import torch

    resolved = resolve_precision(precision, dev.type)
    if dev.type == "cpu":
        torch.set_num_threads(max(1, int(threads)))
        return RunDevice(dev, resolved)
    torch.cuda.set_device(dev)
    torch.backends.cudnn.benchmark = True
    apply_precision(resolved)
    return RunDevice(dev, resolved)


@contextlib.contextmanager
def acquire(
    setting: str, threads: int = 1, holder: str | None = None, precision: str = "auto", runs_per_gpu: int = 1
) -> Iterator[RunDevice]:
    """Check ``setting`` on this node, claim a GPU slot for a bare ``cuda`` (one of ``runs_per_gpu`` per GPU) and
    configure the device in ``precision``; the slot is released when the block ends (and by the kernel if the
    process dies)."""
    name, slot = claim_cuda_device(str(check_device(setting)), holder=holder, runs_per_gpu=runs_per_gpu)
    try:
        run_device = configure(_torch_device(name), threads, precision)
        run_device.slot = slot
        yield run_device
    finally:
        if slot is not None:
            slot.release()


def _torch_device(name: str) -> torch.device:
    import torch

    return torch.device(name)
