"""Cheap hardware probes for planning (no torch import, so the Snakefile parses fast)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def gpu_visible() -> bool:
    """True when an NVIDIA GPU looks usable on this node: a driver is present and CUDA_VISIBLE_DEVICES allows one."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or shutil.which(
        "nvidia-smi"
    ) is not None


def uses_gpu(device: str) -> bool:
    """Whether a training job configured with ``device`` will run on a GPU (``auto`` resolves on this node)."""
    if device.startswith("cuda"):
        return True
    return device == "auto" and gpu_visible()
