"""One fake GPU job for the slot tests: claim a slot, record the hold, release.

The record is written while the lock is held, so its ``[t_acquire, t_release]`` interval lies inside the lock's
hold period. Gate files make the schedule deterministic without timing assumptions: a holder keeps its slot until
at least ``gate`` workers have reached the lock (acquired it or logged that they wait), so the first holders
overlap each other (every slot gets used) and, with more workers than slots, later ones really have to wait.
A ``busy`` marker per slot, created exclusively on acquire and removed before release, catches double holders.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

from selfdistill import gpu_slots
from selfdistill.gpu_slots import claim_cuda_device, claim_gpu_slot

GATE_LIMIT_S = 60.0


class _WaitMarker(logging.Handler):
    """Touch ``waiting-<name>`` when the library logs that this worker waits for a slot."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        if "waiting for one to free" in record.getMessage():
            self.path.touch()


def _reached(state: Path) -> int:
    """Workers that reached the lock so far: acquired it or waited for it."""
    names = {p.name.split("-", 1)[1] for p in state.glob("acquired-*")}
    names |= {p.name.split("-", 1)[1] for p in state.glob("waiting-*")}
    return len(names)


def claim(n_slots: int, lock_dir: Path, name: str, fake_gpus: int) -> gpu_slots.GpuSlot:
    """A slot of ``n_slots`` lock files, or with ``fake_gpus`` > 0 a ``cuda`` claim on that many fake GPUs (named
    GPU-0, GPU-1, …) with ``n_slots / fake_gpus`` runs per GPU, as a training job claims one."""
    if not fake_gpus:
        return claim_gpu_slot(n_slots, lock_dir, poll=0.02, holder=name)
    gpu_slots.visible_cuda_devices = lambda: fake_gpus
    gpu_slots._device_uuids = lambda n: [f"GPU-{i}" for i in range(n)]
    _, slot = claim_cuda_device("cuda", lock_dir=lock_dir, poll=0.02, holder=name, runs_per_gpu=n_slots // fake_gpus)
    return slot


def run(name: str, n_slots: int, lock_dir: Path, state: Path, record: Path, gate: int, fake_gpus: int = 0) -> None:
    """Claim, hold until the gate opens plus a short random time, record, release."""
    state.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("selfdistill.gpu_slots")
    logger.setLevel(logging.INFO)
    logger.addHandler(_WaitMarker(state / f"waiting-{name}"))
    with claim(n_slots, lock_dir, name, fake_gpus) as slot:
        t_acquire = time.monotonic_ns()
        try:
            os.close(os.open(state / f"busy{slot.index}", os.O_CREAT | os.O_EXCL))
            collision = False
        except FileExistsError:
            collision = True
        (state / f"acquired-{name}").touch()
        deadline = time.monotonic() + GATE_LIMIT_S
        while _reached(state) < gate and time.monotonic() < deadline:
            time.sleep(0.01)
        gate_open = _reached(state) >= gate
        time.sleep(random.uniform(0.0, 0.05))
        if not collision:
            (state / f"busy{slot.index}").unlink()
        result = {
            "name": name,
            "pid": os.getpid(),
            "slot": slot.index,
            "device": slot.device,
            "t_acquire": t_acquire,
            "t_release": time.monotonic_ns(),
            "collision": collision,
            "gate_open": gate_open,
            "waited": (state / f"waiting-{name}").exists(),
        }
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(record)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--n-slots", type=int, required=True)
    parser.add_argument("--lock-dir", type=Path, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--gate", type=int, default=1)
    parser.add_argument("--fake-gpus", type=int, default=0, help="claim as a cuda job on this many fake GPUs")
    args = parser.parse_args(argv)
    run(args.name, args.n_slots, args.lock_dir, args.state, args.record, args.gate, args.fake_gpus)


if __name__ == "__main__":
    main(sys.argv[1:])
