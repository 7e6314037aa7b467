"""GPU slot claims (selfdistill.gpu_slots) on fake slots: exclusivity, release, kill -9, waiting, Snakemake.

No GPU needed: a slot is just a lock file. Assertions are on recorded order and overlap, never on durations;
the workers in tests/gpu_slots/worker.py record while holding the lock and use gate files to force contention.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import snakemake

from selfdistill import gpu_slots
from selfdistill.gpu_slots import (
    GpuSlotTimeout,
    claim_cuda_device,
    claim_gpu_slot,
    default_lock_dir,
    lock_path,
    try_claim_gpu_slot,
)

HERE = Path(__file__).resolve().parent / "gpu_slots"
WORKER = HERE / "worker.py"

# holds slot 0 of 2 in a child process until its stdin closes
HOLDER = """
import sys
from selfdistill.gpu_slots import claim_gpu_slot
slot = claim_gpu_slot(2, sys.argv[1], holder="child")
print(slot.index, flush=True)
sys.stdin.read()
"""


def start_holder(lock_dir: Path) -> tuple[subprocess.Popen, int]:
    """A child process that claims a slot; returns it and the slot index it reported."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return child, int(child.stdout.readline())


def check_records(records: list[dict], n_workers: int, n_slots: int) -> None:
    """Every worker finished; no two holds of one slot overlap; every slot was used."""
    assert len(records) == n_workers
    assert len({r["name"] for r in records}) == n_workers
    assert not [r for r in records if r["collision"]], "two holders of one slot"
    assert all(r["gate_open"] for r in records), "a worker gave up waiting at its gate"
    assert {r["slot"] for r in records} == set(range(n_slots))
    for slot in range(n_slots):
        holds = sorted((r["t_acquire"], r["t_release"]) for r in records if r["slot"] == slot)
        for (_, end), (start, _) in itertools.pairwise(holds):
            assert end < start, f"overlapping holds on slot {slot}: {holds}"


def test_claim_gives_first_slot_and_release_frees_it(tmp_path):
    slot = claim_gpu_slot(2, tmp_path, holder="run-a")
    assert (slot.index, slot.n_slots, slot.device) == (0, 2, "cuda:0")
    assert slot.lock_path == tmp_path / "gpu0.lock"
    assert f"pid {os.getpid()} run-a" in slot.lock_path.read_text()
    slot.release()
    assert not slot.held
    assert slot.lock_path.read_text() == ""
    # idempotent
    slot.release()
    with claim_gpu_slot(2, tmp_path) as again:
        assert again.index == 0
    assert not again.held


def test_second_claim_in_same_process_gets_next_slot(tmp_path):
    with claim_gpu_slot(2, tmp_path) as first, claim_gpu_slot(2, tmp_path) as second:
        assert (first.index, second.index) == (0, 1)
        assert try_claim_gpu_slot(2, tmp_path) is None


def test_claim_in_another_process_gets_next_slot(tmp_path):
    child, index = start_holder(tmp_path)
    try:
        assert index == 0
        assert "child" in (tmp_path / "gpu0.lock").read_text()
        with claim_gpu_slot(2, tmp_path) as slot:
            assert slot.index == 1
    finally:
        child.communicate("", timeout=30)
    with claim_gpu_slot(2, tmp_path) as slot:
        assert slot.index == 0


def test_kill_9_of_holder_frees_its_slot(tmp_path):
    child, index = start_holder(tmp_path)
    assert index == 0
    with claim_gpu_slot(2, tmp_path) as other:
        assert other.index == 1
        assert try_claim_gpu_slot(2, tmp_path) is None
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        freed = try_claim_gpu_slot(2, tmp_path)
        assert freed is not None and freed.index == 0
        freed.release()


def test_timeout_names_lock_dir_slot_count_and_holders(tmp_path):
    with (
        claim_gpu_slot(2, tmp_path, holder="run-a"),
        claim_gpu_slot(2, tmp_path, holder="run-b"),
        pytest.raises(GpuSlotTimeout) as err,
    ):
        claim_gpu_slot(2, tmp_path, timeout=0.1, poll=0.02)
    message = str(err.value)
    assert "\n" not in message
    assert f"among 2 in {tmp_path}" in message
    assert "run-a" in message and "run-b" in message
    assert isinstance(err.value, TimeoutError)


def test_waiter_logs_once_and_gets_the_slot_that_frees(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="selfdistill.gpu_slots")
    waiting = threading.Event()

    class Signal(logging.Handler):
        def emit(self, record):
            if "waiting for one to free" in record.getMessage():
                waiting.set()

    handler = Signal()
    logging.getLogger("selfdistill.gpu_slots").addHandler(handler)
    got: list[int] = []
    try:
        first = claim_gpu_slot(2, tmp_path)
        second = claim_gpu_slot(2, tmp_path)
        thread = threading.Thread(target=lambda: got.append(claim_gpu_slot(2, tmp_path, poll=0.01).index))
        thread.start()
        assert waiting.wait(timeout=30)
        second.release()
        thread.join(timeout=30)
        first.release()
    finally:
        logging.getLogger("selfdistill.gpu_slots").removeHandler(handler)
    assert got == [1]
    waits = [r for r in caplog.records if "waiting for one to free" in r.message]
    assert len(waits) == 1
    assert f"all 2 GPU slots in {tmp_path} are held" in waits[0].message


def test_invalid_slot_counts(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        try_claim_gpu_slot(0, tmp_path)
    with pytest.raises(ValueError, match="2 lock keys given for 3 slots"):
        try_claim_gpu_slot(3, tmp_path, keys=["a", "b"])


def test_default_lock_dir_is_shared_per_user_and_created(tmp_path, monkeypatch):
    monkeypatch.delenv("SELFDISTILL_GPU_LOCK_DIR", raising=False)
    assert default_lock_dir() == Path(f"/tmp/selfdistill-gpu-locks-{os.getuid()}")
    target = tmp_path / "nested" / "locks"
    monkeypatch.setenv("SELFDISTILL_GPU_LOCK_DIR", str(target))
    assert default_lock_dir() == target
    with claim_gpu_slot(1) as slot:
        assert slot.lock_path == target / "gpu0.lock"


def test_lock_path_sanitises_keys(tmp_path):
    assert lock_path(tmp_path, 3) == tmp_path / "gpu3.lock"
    assert lock_path(tmp_path, "GPU-ab/c d") == tmp_path / "gpuGPU-ab_c_d.lock"


def test_unwritable_lock_file_still_locks(tmp_path, monkeypatch):
    """Another user's lock file that we cannot write: flock works on a read-only descriptor."""
    real_open = os.open

    def no_write(path, flags, *args):
        if flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    for key in (0, 1):
        lock_path(tmp_path, key).write_text("someone else's note\n")
    monkeypatch.setattr(gpu_slots.os, "open", no_write)
    with claim_gpu_slot(2, tmp_path) as slot:
        assert slot.index == 0
        assert try_claim_gpu_slot(2, tmp_path).index == 1
    assert slot.lock_path.read_text() == "someone else's note\n"


def test_unwritable_lock_dir_says_how_to_fix(tmp_path, monkeypatch):
    real_open = os.open

    def no_create(path, flags, *args):
        if flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(gpu_slots.os, "open", no_create)
    with pytest.raises(PermissionError, match="SELFDISTILL_GPU_LOCK_DIR"):
        claim_gpu_slot(2, tmp_path)


def test_claim_cuda_device_passes_explicit_devices_through(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_slots, "visible_cuda_devices", lambda: 2)
    for device in ("cpu", "cuda:1", "auto"):
        assert claim_cuda_device(device, lock_dir=tmp_path) == (device, None)
    assert list(tmp_path.iterdir()) == []


def test_claim_cuda_device_claims_one_visible_device_each(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="selfdistill.gpu_slots")
    monkeypatch.setattr(gpu_slots, "visible_cuda_devices", lambda: 2)
    monkeypatch.setattr(gpu_slots, "_device_uuids", lambda n: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    device, slot = claim_cuda_device("cuda", lock_dir=tmp_path, holder="run-a")
    other, slot_b = claim_cuda_device("cuda", lock_dir=tmp_path)
    try:
        assert (device, other) == ("cuda:0", "cuda:1")
        assert f"claimed GPU slot 0 of 2 (lock file {tmp_path / 'gpu0.lock'})" in (caplog.text)
        with pytest.raises(GpuSlotTimeout):
            claim_cuda_device("cuda", lock_dir=tmp_path, timeout=0)
    finally:
        slot.release()
        slot_b.release()


def test_claim_cuda_device_keys_locks_by_visible_device_ids(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_slots, "visible_cuda_devices", lambda: 2)
    monkeypatch.setattr(gpu_slots, "_device_uuids", lambda n: None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    device, slot = claim_cuda_device("cuda", lock_dir=tmp_path)
    with slot:
        assert device == "cuda:0"
        assert slot.lock_path == tmp_path / "gpu3.lock"


def test_jobs_that_each_see_their_own_gpu_as_cuda0_do_not_share_a_lock(tmp_path, monkeypatch):
    """SLURM with ConstrainDevices: every job has CUDA_VISIBLE_DEVICES=0, but the GPUs' UUIDs differ."""
    monkeypatch.setattr(gpu_slots, "visible_cuda_devices", lambda: 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(gpu_slots, "_device_uuids", lambda n: ["GPU-aaa"])
    device_a, slot_a = claim_cuda_device("cuda", lock_dir=tmp_path)
    monkeypatch.setattr(gpu_slots, "_device_uuids", lambda n: ["GPU-bbb"])
    device_b, slot_b = claim_cuda_device("cuda", lock_dir=tmp_path, timeout=0)
    with slot_a, slot_b:
        assert device_a == device_b == "cuda:0"
        assert slot_a.lock_path == tmp_path / "gpu-GPU-aaa.lock"
        assert slot_b.lock_path == tmp_path / "gpu-GPU-bbb.lock"
        # a third job on the first GPU waits for it (here: times out at once)
        monkeypatch.setattr(gpu_slots, "_device_uuids", lambda n: ["GPU-aaa"])
        with pytest.raises(GpuSlotTimeout):
            claim_cuda_device("cuda", lock_dir=tmp_path, timeout=0)


def test_claim_cuda_device_without_gpu_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_slots, "visible_cuda_devices", lambda: 0)
    with pytest.raises(RuntimeError, match="no CUDA device is visible"):
        claim_cuda_device("cuda", lock_dir=tmp_path)


def test_module_does_not_import_torch():
    code = "import sys, selfdistill.gpu_slots; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _run_workers(tmp_path, n_workers: int, n_slots: int, *extra: str) -> list[dict]:
    """Start ``n_workers`` slot-claiming processes at once (each holds its slot until all reached the lock) and
    return their records, checked for never sharing one of the ``n_slots`` slots."""
    state, records = tmp_path / "state", tmp_path / "records"
    records.mkdir()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                f"--name=w{i}",
                f"--n-slots={n_slots}",
                f"--lock-dir={tmp_path / 'locks'}",
                f"--state={state}",
                f"--record={records / f'w{i}.json'}",
                f"--gate={n_workers}",
                *extra,
            ]
        )
        for i in range(n_workers)
    ]
    assert [w.wait(timeout=120) for w in workers] == [0] * n_workers
    found = [json.loads(p.read_text()) for p in sorted(records.glob("*.json"))]
    check_records(found, n_workers, n_slots)
    return found


def test_more_concurrent_workers_than_slots_never_share_a_slot(tmp_path):
    """6 processes started at once on 2 slots: each holds until all 6 reached the lock, so 4 must wait."""
    n_workers, n_slots = 6, 2
    found = _run_workers(tmp_path, n_workers, n_slots)
    assert sum(r["waited"] for r in found) >= n_workers - n_slots


def test_four_jobs_per_fake_gpu_across_processes(tmp_path):
    """8 processes at once on 2 fake GPUs with 2 runs per GPU, as training jobs claim ``cuda``: 4 hold slots at
    once, 2 on each GPU, and the other 4 wait; no slot is ever shared."""
    n_workers, n_gpus, k = 8, 2, 2
    found = _run_workers(tmp_path, n_workers, n_gpus * k, f"--fake-gpus={n_gpus}")
    assert {r["device"] for r in found if r["slot"] % n_gpus == 0} == {"cuda:0"}
    assert {r["device"] for r in found if r["slot"] % n_gpus == 1} == {"cuda:1"}
    assert sum(r["waited"] for r in found) >= n_workers - n_gpus * k
    assert {p.name for p in (tmp_path / "locks").iterdir()} == {
        "gpu-GPU-0.lock",
        "gpu-GPU-1.lock",
        "gpu-GPU-0-slot1.lock",
        "gpu-GPU-1-slot1.lock",
    }


def run_snakemake(tmp_path: Path, gpus: int, n_slots: int, gate: int, fake_gpus: int = 0) -> list[dict]:
    """Run tests/gpu_slots/Snakefile (6 jobs, each ``gpu=1``) with ``--resources gpu=<gpus>``; its records."""
    workdir = tmp_path / "work"
    snakemake(
        workdir,
        "--workflow-profile",
        "none",
        "--resources",
        f"gpu={gpus}",
        "--config",
        f"n_slots={n_slots}",
        f"gate={gate}",
        f"lock_dir={tmp_path / 'locks'}",
        f"state={tmp_path / 'state'}",
        f"fake_gpus={fake_gpus}",
        snakefile=HERE / "Snakefile",
        configfile=None,
        cores=4,
        cwd=tmp_path,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"},
    )
    return [json.loads(p.read_text()) for p in (workdir / "records").glob("*.json")]


@pytest.mark.slow
def test_snakemake_gpu_count_equal_to_slots(tmp_path):
    """gpu=2 on 2 slots: two jobs hold slots 0 and 1 at once, nobody ever has to wait."""
    found = run_snakemake(tmp_path, gpus=2, n_slots=2, gate=2)
    check_records(found, 6, 2)
    assert not any(r["waited"] for r in found)


@pytest.mark.slow
def test_snakemake_gpu_count_above_slots_makes_jobs_wait(tmp_path):
    """gpu=4 on 2 slots: Snakemake runs 4 jobs at once, 2 of them wait for a slot, still no sharing."""
    found = run_snakemake(tmp_path, gpus=4, n_slots=2, gate=4)
    check_records(found, 6, 2)
    assert sum(r["waited"] for r in found) >= 2


def test_slot_keys_spread_over_gpus_before_packing_one():
    assert gpu_slots.slot_keys(["a", "b"]) == ["a", "b"]
    assert gpu_slots.slot_keys(["a", "b"], 3) == ["a", "b", "a-slot1", "b-slot1", "a-slot2", "b-slot2"]
    assert gpu_slots.slot_keys(["-GPU-x"], 2) == ["-GPU-x", "-GPU-x-slot1"]
    with pytest.raises(ValueError, match="runs_per_gpu must be at least 1, got 0"):
        gpu_slots.slot_keys(["a"], 0)


@pytest.mark.parametrize(("n_gpus", "k"), [(1, 4), (2, 2), (3, 3), (2, 8)])
def test_k_runs_per_gpu_give_k_jobs_each_gpu_and_no_more(tmp_path, monkeypatch, n_gpus, k):
    """n fake GPUs × k slots: n·k claims succeed, each GPU gets exactly k of them, spread evenly as they come
    (claim j lands on GPU j mod n), every lock file differs; the next claim waits (here: times out)."""
    monkeypatch.setattr(gpu_slots, "visible_cuda_devices", lambda: n_gpus)
    monkeypatch.setattr(gpu_slots, "_device_uuids", lambda n: [f"GPU-{i}" for i in range(n)])
    claims = [claim_cuda_device("cuda", lock_dir=tmp_path, runs_per_gpu=k, timeout=0) for _ in range(n_gpus * k)]
    try:
        devices = [device for device, _ in claims]
        assert devices == [f"cuda:{j % n_gpus}" for j in range(n_gpus * k)]
        assert {devices.count(f"cuda:{g}") for g in range(n_gpus)} == {k}
        assert len({slot.lock_path for _, slot in claims}) == n_gpus * k
        assert claims[0][1].lock_path == tmp_path / "gpu-GPU-0.lock"
        if k > 1:
            assert claims[n_gpus][1].lock_path == tmp_path / "gpu-GPU-0-slot1.lock"
        assert all(slot.n_slots == n_gpus * k for _, slot in claims)
        with pytest.raises(GpuSlotTimeout, match=f"among {n_gpus * k} in"):
            claim_cuda_device("cuda", lock_dir=tmp_path, runs_per_gpu=k, timeout=0)
        # a freed slot goes to the next claim, on its GPU
        freed = claims[-1][1]
        freed.release()
        device, again = claim_cuda_device("cuda", lock_dir=tmp_path, runs_per_gpu=k, timeout=0)
        assert (device, again.lock_path) == (freed.device, freed.lock_path)
        claims[-1] = (device, again)
    finally:
        for _, slot in claims:
            slot.release()


def test_claims_log_the_gpu_and_the_runs_per_gpu(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="selfdistill.gpu_slots")
    monkeypatch.setattr(gpu_slots, "visible_cuda_devices", lambda: 1)
    monkeypatch.setattr(gpu_slots, "_device_uuids", lambda n: None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    with (
        claim_cuda_device("cuda", lock_dir=tmp_path, runs_per_gpu=4)[1],
        claim_cuda_device("cuda", lock_dir=tmp_path, runs_per_gpu=4)[1],
    ):
        pass
    assert f"claimed GPU slot 1 of 4 on cuda:0, 4 runs per GPU (lock file {tmp_path / 'gpu2-slot1.lock'})" in (
        caplog.text
    )


def test_jobs_planned_with_different_k_share_the_slots_they_have_in_common(tmp_path, monkeypatch):
    """A k=1 job holds slot 0 of the GPU (the same file as before packing existed): k=2 jobs find one slot left."""
    monkeypatch.setattr(gpu_slots, "visible_cuda_devices", lambda: 1)
    monkeypatch.setattr(gpu_slots, "_device_uuids", lambda n: ["GPU-a"])
    _, alone = claim_cuda_device("cuda", lock_dir=tmp_path, runs_per_gpu=1)
    with alone:
        _, packed = claim_cuda_device("cuda", lock_dir=tmp_path, runs_per_gpu=2, timeout=0)
        with packed:
            assert packed.lock_path == tmp_path / "gpu-GPU-a-slot1.lock"
            with pytest.raises(GpuSlotTimeout):
                claim_cuda_device("cuda", lock_dir=tmp_path, runs_per_gpu=2, timeout=0)


def test_planned_runs_per_gpu_takes_the_planner_then_a_number_then_one(monkeypatch):
    monkeypatch.delenv(gpu_slots.RUNS_PER_GPU_ENV, raising=False)
    assert gpu_slots.planned_runs_per_gpu("auto") == 1
    assert gpu_slots.planned_runs_per_gpu(None) == 1
    assert gpu_slots.planned_runs_per_gpu(3) == 3
    assert gpu_slots.planned_runs_per_gpu(True) == 1
    monkeypatch.setenv(gpu_slots.RUNS_PER_GPU_ENV, "4")
    assert gpu_slots.planned_runs_per_gpu("auto") == 4
    assert gpu_slots.planned_runs_per_gpu(2) == 4
    monkeypatch.setenv(gpu_slots.RUNS_PER_GPU_ENV, "zero")
    assert gpu_slots.planned_runs_per_gpu(2) == 2


@pytest.mark.slow
def test_snakemake_one_gpu_four_runs_per_gpu(tmp_path):
    """One fake GPU with k = 4 and --resources gpu=4 (the documented command): four jobs train on cuda:0 at once
    and nobody waits."""
    found = run_snakemake(tmp_path, gpus=4, n_slots=4, gate=4, fake_gpus=1)
    check_records(found, 6, 4)
    assert {r["device"] for r in found} == {"cuda:0"}
    assert not any(r["waited"] for r in found)
