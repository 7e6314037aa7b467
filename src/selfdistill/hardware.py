"""Cheap hardware probes for planning (no torch import, so the Snakefile parses fast).

The planner resolves ``device: auto`` once, on the machine that plans the workflow, and hands the job a concrete
device; the job then fails fast if that device is missing (``training.resolve_device``), so the ``gpu`` resource a
job holds and the device it trains on always agree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


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
        listing = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listing.returncode == 0 and any(
        line.startswith("GPU ") for line in listing.stdout.splitlines()
    )


def planned_device(device: str) -> str:
    """The concrete device a training job will be told to use: ``auto`` → ``cuda`` if a GPU is visible, else ``cpu``."""
    if device == "auto":
        return "cuda" if gpu_visible() else "cpu"
    return device
