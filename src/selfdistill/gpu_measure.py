"""The self-check's speed measurements (:mod:`selfdistill.gpu_check`): per network, precision and ``train.compile``
mode, training and evaluation images/s with 1, 2, 4 or 8 runs sharing the device (separate processes, as the
pipeline runs them), one run's peak memory, the CIFAR-10 epoch's split into training and evaluation, and the
projected wall time of every shipped CIFAR config. Rows in the format of :mod:`selfdistill.gpu_timings`.

Each run (:func:`measure_run`) trains with the engine's own step (:class:`selfdistill.training_step.TrainingStep`,
the reference mode, crop + flip batches made on the device, SGD) at the original study's batch size and evaluates
with the engine's evaluation (:func:`selfdistill.batches.predict_logits`) in batches of ``eval_batch``. Concurrent
runs warm up (and compile) first and wait for each other (a ready file each) before they time their steps.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .batches import DeviceImages, channel_stats, make_batch, predict_logits
from .device import RunDevice, configure
from .gpu_timings import EPOCH_EVAL_IMAGES, EPOCH_TRAIN_IMAGES, TimingRow
from .mode_names import REFERENCE_MODE
from .models import build_model
from .modes import build_mode
from .schema import SCHEMA_PATH
from .training import device_network
from .training_step import TrainingStep

#: the original study's batch size, at which the timings are taken
BATCH = 128


def _wait_for_peers(ready_dir: str | None, index: int, concurrent: int, timeout: float = 900.0) -> None:
    """Say this run is warm (a file in ``ready_dir``) and wait until all ``concurrent`` runs are."""
    if not ready_dir or concurrent <= 1:
        return
    Path(ready_dir, f"ready-{index}").touch()
    deadline = time.monotonic() + timeout
    while len(list(Path(ready_dir).glob("ready-*"))) < concurrent and time.monotonic() < deadline:
        time.sleep(0.05)


def measure_run(
    arch: str,
    device: str,
    precision: str,
    compile_mode: str,
    *,
    batch: int = BATCH,
    steps: int = 50,
    eval_images: int = 10_000,
    eval_batch: int = 2048,
    threads: int = 1,
    ready_dir: str | None = None,
    index: int = 0,
    concurrent: int = 1,
) -> dict:
    """One run's training and evaluation images/s, the compile mode it really ran, its resolved precision and peak
    device memory (MB, reserved by PyTorch plus the CUDA context estimate; ``None`` on the CPU)."""
    dev = configure(torch.device(device), threads, precision)
    torch.manual_seed(index)
    n = max(2 * batch, min(eval_images, 4 * batch))
    pixels = np.random.default_rng(index).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    mean, std = channel_stats(pixels, 255.0)
    images = DeviceImages(pixels, dev.torch_device, 255.0, mean, std)
    labels = torch.randint(0, 10, (n,), device=dev.torch_device)
    net = device_network(build_model(arch, (3, 32, 32), 10), dev)
    step = TrainingStep(net, build_mode(REFERENCE_MODE, labels, 10), dev, compile_mode)
    optimiser = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator(device=dev.torch_device).manual_seed(index)
    order = torch.randperm(n, device=dev.torch_device)
    rows = [order[(i * batch) % (n - batch + 1) :][:batch] for i in range(steps)]

    def train(idx: torch.Tensor) -> None:
        step(make_batch(images, idx, 4, gen), labels[idx], idx)
        optimiser.step()

    net.train()
    for idx in rows[:3]:  # warm-up, and compilation
        train(idx)
    predict_logits(net, images, eval_batch, dev.autocast, 10)
    dev.synchronize()
    _wait_for_peers(ready_dir, index, concurrent)
    net.train()
    train_rate = _rate(lambda: [train(idx) for idx in rows], batch * len(rows), dev)
    rounds = max(1, eval_images // n)
    eval_rate = _rate(
        lambda: [predict_logits(net, images, eval_batch, dev.autocast, 10) for _ in range(rounds)], rounds * n, dev
    )
    return {
        "train_img_s": train_rate,
        "eval_img_s": eval_rate,
        "peak_mem_mb": _peak_memory_mb(dev),
        "compile": step.compile_mode,
        "precision": dev.precision,
        "device_name": dev.name(),
        "gpu_mem_mb": torch.cuda.get_device_properties(dev.torch_device).total_memory / 1e6 if dev.is_cuda else None,
    }


def _rate(work: Callable[[], object], images: int, dev: RunDevice) -> float:
    """Images per second of ``work()``, timed up to the device's last kernel."""
    start = time.perf_counter()
    work()
    dev.synchronize()
    return images / (time.perf_counter() - start)


def _peak_memory_mb(dev: RunDevice) -> float | None:
    """The run's peak device memory (MB); ``None`` on the CPU."""
    if not dev.is_cuda:
        return None
    # PyTorch's reserved memory plus ~500 MB for the CUDA context, which PyTorch does not count
    return torch.cuda.max_memory_reserved(dev.torch_device) / 1e6 + 500


def measure_concurrent(concurrent: int, work: Path, **run_args) -> list[dict]:
    """``concurrent`` runs of :func:`measure_run` at once, each in its own process (``python -m
    selfdistill.gpu_measure``), timed together; one in this process when ``concurrent`` is 1."""
    if concurrent == 1:
        return [measure_run(**run_args)]
    ready = work / f"ready-{os.getpid()}-{time.monotonic_ns()}"
    ready.mkdir(parents=True)
    procs = []
    for index in range(concurrent):
        args = run_args | {"ready_dir": str(ready), "index": index, "concurrent": concurrent}
        cmd = [sys.executable, "-m", "selfdistill.gpu_measure", json.dumps(args)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=1200)
        if proc.returncode != 0:
            raise RuntimeError(f"a concurrent measurement failed: {err.strip().splitlines()[-1:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def timing_row(arch: str, batch: int, concurrent: int, results: Sequence[dict]) -> TimingRow:
    """The :class:`TimingRow` of ``concurrent`` runs' results: images/s of all runs together, one run's epoch."""
    first = results[0]
    train = sum(r["train_img_s"] for r in results)
    evals = sum(r["eval_img_s"] for r in results)
    train_s = EPOCH_TRAIN_IMAGES / (train / concurrent)
    eval_s = EPOCH_EVAL_IMAGES / (evals / concurrent)
    peaks = [r["peak_mem_mb"] for r in results if r["peak_mem_mb"] is not None]
    return TimingRow(
        arch=arch,
        batch_size=batch,
        precision=first["precision"],
        compile=first["compile"],
        device_name=first["device_name"],
        gpu_mem_mb=first["gpu_mem_mb"],
        concurrent=concurrent,
        peak_mem_mb=max(peaks) if peaks else None,
        train_img_s=train,
        eval_img_s=evals,
        train_s=train_s,
        eval_s=eval_s,
        epoch_s=train_s + eval_s,
    )


def measure_timings(
    archs: Sequence[str],
    device: str,
    precisions: Sequence[str],
    compile_modes: Sequence[str],
    concurrents: Sequence[int],
    work: Path,
    **sizes,
) -> list[TimingRow]:
    """Every combination's :class:`TimingRow`; the same resolved precision is measured once (the CPU computes
    every setting in float32)."""
    rows: list[TimingRow] = []
    for arch in archs:
        done = set()
        for precision in precisions:
            for compile_mode in compile_modes:
                for k in concurrents:
                    args = {"arch": arch, "device": device, "precision": precision, "compile_mode": compile_mode}
                    results = measure_concurrent(k, work, **args, **sizes)
                    key = (results[0]["precision"], results[0]["compile"], k)
                    if key not in done:
                        done.add(key)
                        rows.append(timing_row(arch, sizes.get("batch", BATCH), k, results))
    return rows


def _study_runs(config_path: Path, schema: Path) -> list[dict]:
    """Per setting of the study ``config_path`` (a standalone ``--configfile``): its runs, epochs, network,
    precision setting and compile mode (the schema's defaults filled in, variants applied)."""
    import yaml

    from .planning import plan_study

    config = yaml.safe_load(config_path.read_text())
    plan = plan_study(config, config_files=[config_path], overrides={}, schema_path=schema, is_main_process=False)
    return [
        {
            "dataset": c["dataset"],
            "runs": len(c["seeds"]) * len(c["modes"]),
            "epochs": c["train"]["epochs"],
            "arch": c["model"]["arch"],
            "precision": c["train"]["precision"],
            "compile": c["train"]["compile"],
        }
        for c in plan.setting_config.values()
    ]


def _best_row(rows: Sequence[TimingRow], arch: str, precision: str, compile_mode: str, runs: int) -> TimingRow | None:
    """The measured packing of ``arch`` in ``precision`` and ``compile_mode`` that finishes ``runs`` runs soonest
    within the device's memory (the single run when nothing else was measured)."""
    fits = [
        r
        for r in rows
        if (r.arch, r.precision, r.compile) == (arch, precision, compile_mode)
        and r.epoch_s
        and (r.concurrent == 1 or not r.gpu_mem_mb or not r.peak_mem_mb or r.concurrent * r.peak_mem_mb <= r.gpu_mem_mb)
    ]
    return min(fits, key=lambda r: r.epoch_s / min(r.concurrent, runs), default=None)


def projections(rows: Sequence[TimingRow], repo: Path, device_type: str) -> list[dict]:
    """The projected wall time on this device of every shipped CIFAR config (``config/*.yaml``), with the best
    measured packing for its network, precision and compile mode (empty where that was not measured)."""
    from .device import resolve_precision

    out = []
    for path in sorted((repo / "config").glob("*.yaml")):
        settings = _study_runs(path, SCHEMA_PATH)
        if not settings or not settings[0]["dataset"].startswith("cifar"):
            continue
        first = settings[0]
        precision = resolve_precision(first["precision"], device_type)
        runs = sum(s["runs"] for s in settings)
        best = _best_row(rows, first["arch"], precision, first["compile"], runs)
        run_epochs = sum(s["runs"] * s["epochs"] for s in settings)
        hours = None if best is None else run_epochs * best.epoch_s / min(best.concurrent, runs) / 3600
        out.append(
            {
                "config": f"config/{path.name}",
                "arch": first["arch"],
                "precision": precision,
                "compile": first["compile"],
                "runs": runs,
                "run_epochs": run_epochs,
                "concurrent": None if best is None else best.concurrent,
                "epoch_s": None if best is None else best.epoch_s,
                "wall_hours": hours,
            }
        )
    return out


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def timings_markdown(rows: Sequence[TimingRow], projected: Sequence[dict]) -> str:
    """One markdown table: a row per measurement, then a row per shipped CIFAR config's projected wall time."""
    lines = [
        (
            "| network / config | precision | compile | runs at once | train img/s | eval img/s | train s | eval s "
            "| epoch s | peak MB per run | projected hours |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = (r.arch, r.precision, r.compile, r.concurrent, r.train_img_s, r.eval_img_s, r.train_s, r.eval_s)
        lines.append("| " + " | ".join(_fmt(c) for c in (*cells, r.epoch_s, r.peak_mem_mb, None)) + " |")
    for p in projected:
        name = f"{p['config']} ({p['runs']} runs, {p['run_epochs']} run-epochs, {p['arch']})"
        cells = (name, p["precision"], p["compile"], p["concurrent"], None, None, None, None, p["epoch_s"], None)
        lines.append("| " + " | ".join(_fmt(c) for c in (*cells, p["wall_hours"])) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """A concurrent run's process: measure_run(**json) and print its result as one JSON line."""
    args = json.loads((argv if argv is not None else sys.argv[1:])[0])
    print(json.dumps(measure_run(**args)), flush=True)


if __name__ == "__main__":
    main()
