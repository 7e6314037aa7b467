"""Checkpoint and resume: a run killed at any point and rerun ends exactly like an uninterrupted run.

Each interrupted run is a real process killed with SIGKILL (or sent SIGTERM/SIGUSR1) at a chosen point through the
``SELFDISTILL_FAULT`` hook, then rerun; its history (timing aside), every array of outputs.h5 and the tensors of
both weight files must equal an uninterrupted run's, bit for bit, on the CPU.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import DISTILL, MODEL, TRAIN, attempts, run

from selfdistill.checkpoint import STATE_FILE
from selfdistill.io import TIMING_COLUMNS, setup_logging
from selfdistill.mode_names import TEACHER_OF
from selfdistill.modes import REGISTRY
from selfdistill.training import train_run

# trains in new processes (helpers.run), killed and rerun; the few tests that read the in-process reference runs only
# ride along
pytestmark = pytest.mark.slow


def run_here(data, out: Path, mode="ce", train=None, **extra) -> pd.DataFrame:
    """The same run as :func:`run`, in this process."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        return train_run(
            data,
            out / "history.csv",
            out / "outputs.h5",
            out / "model.pt",
            out_early_stopped=out / "model_early_stopped.pt",
            mode=mode,
            seed=0,
            model=MODEL,
            train=TRAIN | (train or {}),
            distill=DISTILL,
            freq_subset=100,
            device="cpu",
            record_epochs=extra.pop("record_epochs", "all"),
            **extra,
        )
    finally:
        setup_logging(None)


def teacher_of(root: Path, mode: str) -> dict:
    """The ``teacher`` argument of a mode that distils from another run: that run's early-stopped weights in ``root``."""
    return {"teacher": str(root / TEACHER_OF[mode] / "model_early_stopped.pt")} if mode in TEACHER_OF else {}


def assert_same_run(a: Path, b: Path) -> None:
    """history (timing aside), outputs.h5 arrays and both weight files are identical."""
    timing = list(TIMING_COLUMNS)
    pd.testing.assert_frame_equal(
        pd.read_csv(a / "history.csv").drop(columns=timing), pd.read_csv(b / "history.csv").drop(columns=timing)
    )
    with h5py.File(a / "outputs.h5") as x, h5py.File(b / "outputs.h5") as y:
        keys = []
        x.visititems(lambda name, obj: keys.append(name) if isinstance(obj, h5py.Dataset) else None)
        assert keys
        for key in keys:
            assert np.array_equal(x[key][()], y[key][()]), key
    for name in ("model.pt", "model_early_stopped.pt"):
        wa = torch.load(a / name, weights_only=True)
        wb = torch.load(b / name, weights_only=True)
        assert wa["epoch"] == wb["epoch"], name
        assert wa["state_dict"].keys() == wb["state_dict"].keys()
        for key in wa["state_dict"]:
            assert torch.equal(wa["state_dict"][key], wb["state_dict"][key]), (name, key)


@pytest.fixture(scope="module")
def reference(digits_pair40, tmp_path_factory):
    """Uninterrupted runs of every mode, made once."""
    root = tmp_path_factory.mktemp("reference")
    # a teacher's run comes first (the reference mode is the registry's first)
    for mode in REGISTRY:
        run_here(digits_pair40, root / mode, mode, **teacher_of(root, mode))
    return root


@pytest.mark.parametrize("mode", list(REGISTRY))
def test_kill_in_the_middle_of_an_epoch_resumes_exactly(digits_pair40, reference, tmp_path, mode):
    teacher = teacher_of(reference, mode)
    killed = run(digits_pair40, tmp_path, mode, fault="mid_epoch:3", **teacher)
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / "checkpoint" / STATE_FILE).is_file()
    assert not (tmp_path / "history.csv").exists()
    resumed = run(digits_pair40, tmp_path, mode, **teacher)
    assert resumed.returncode == 0, resumed.stderr
    earlier, log = attempts(tmp_path)
    # the killed attempt's lines are kept above the new attempt's
    assert "fault injection: SIGKILL at mid_epoch of epoch 3" in earlier and "epoch 2/4" in earlier
    # the first two epochs come from the checkpoint: at most the killed epoch's work is redone
    assert "resumed from checkpoint at epoch 3 of 4 (2 epochs done)" in log
    assert "epoch 1/4" not in log
    if teacher:
        # the teacher's targets come from the checkpoint: the teacher is read once, at the start of the run
        assert "teacher: " in earlier and "teacher: " not in log
    assert_same_run(reference / mode, tmp_path)
    assert not (tmp_path / "checkpoint").exists()


def test_crash_between_temporary_file_and_rename_keeps_the_previous_checkpoint(digits_pair40, reference, tmp_path):
    killed = run(digits_pair40, tmp_path, "self_distill_seq", fault="before_rename:3")
    assert killed.returncode == -signal.SIGKILL
    leftovers = [p.name for p in (tmp_path / "checkpoint").iterdir() if p.name.startswith(".")]
    assert leftovers and all(".tmp-" in name for name in leftovers)
    resumed = run(digits_pair40, tmp_path, "self_distill_seq")
    assert resumed.returncode == 0, resumed.stderr
    # the checkpoint after epoch 2 was complete; the one after epoch 3 never replaced it
    assert "resumed from checkpoint at epoch 3 of 4" in (tmp_path / "train.log").read_text()
    assert_same_run(reference / "self_distill_seq", tmp_path)


def test_kill_right_after_a_checkpoint(digits_pair40, reference, tmp_path):
    killed = run(digits_pair40, tmp_path, "interp_stored", fault="after_checkpoint:2")
    assert killed.returncode == -signal.SIGKILL
    assert run(digits_pair40, tmp_path, "interp_stored").returncode == 0
    assert "resumed from checkpoint at epoch 3 of 4" in (tmp_path / "train.log").read_text()
    assert_same_run(reference / "interp_stored", tmp_path)


@pytest.mark.parametrize("signame", ["TERM", "USR1", "INT"])
def test_signal_checkpoints_mid_epoch_and_exits_non_zero(digits_pair40, reference, tmp_path, signame):
    stopped = run(digits_pair40, tmp_path, "self_distill", fault=f"mid_epoch:2:{signame}")
    assert stopped.returncode != 0
    log = (tmp_path / "train.log").read_text()
    assert f"SIG{signame}: checkpointed at epoch 2 of 4 (step " in log
    assert "; rerun to resume" in log
    assert "Preempted" in stopped.stderr
    resumed = run(digits_pair40, tmp_path, "self_distill")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from checkpoint at epoch 2 of 4, step " in (tmp_path / "train.log").read_text()
    assert_same_run(reference / "self_distill", tmp_path)


def test_sigterm_from_outside_stops_within_seconds(digits_pair40, tmp_path):
    """A real SIGTERM from another process, as SLURM sends it: checkpointed and stopped quickly."""
    proc = run(digits_pair40, tmp_path, "ce", train={"epochs": 400}, wait=False)
    log = tmp_path / "train.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.is_file() and "epoch 2/400" in log.read_text()):
        time.sleep(0.1)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert time.monotonic() - sent < 10
    assert proc.returncode != 0
    assert "SIGTERM: checkpointed at epoch" in log.read_text()
    assert (tmp_path / "checkpoint" / STATE_FILE).is_file()


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(random.Random(0).randbytes(4096)),
        lambda p: p.write_bytes(b"\x80\x02" + random.Random(1).randbytes(4096)),
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        lambda p: p.write_bytes(b""),
    ],
    ids=["garbage", "garbage_pickle", "truncated", "empty"],
)
def test_corrupt_checkpoint_is_logged_and_ignored(digits_pair40, reference, tmp_path, damage):
    assert run(digits_pair40, tmp_path, "self_distill_seq", fault="mid_epoch:3").returncode == -signal.SIGKILL
    damage(tmp_path / "checkpoint" / STATE_FILE)
    resumed = run(digits_pair40, tmp_path, "self_distill_seq")
    assert resumed.returncode == 0, resumed.stderr
    _, log = attempts(tmp_path)
    lines = [line for line in log.splitlines() if "ignoring unreadable checkpoint" in line]
    assert len(lines) == 1 and "starting from epoch 1" in lines[0]
    assert "epoch 1/4" in log
    assert_same_run(reference / "self_distill_seq", tmp_path)


@pytest.mark.parametrize("drop", ["network", "optimiser", "mode", "progress"])
def test_checkpoint_with_the_right_fingerprint_but_missing_state_restarts(digits_pair40, reference, tmp_path, drop):
    """A readable checkpoint of this very run that lacks part of the state is ignored, not half loaded."""
    assert run(digits_pair40, tmp_path, "self_distill_seq", fault="mid_epoch:3").returncode == -signal.SIGKILL
    path = tmp_path / "checkpoint" / STATE_FILE
    state = torch.load(path, weights_only=True)
    del state[drop]
    torch.save(state, path)
    resumed = run(digits_pair40, tmp_path, "self_distill_seq")
    assert resumed.returncode == 0, resumed.stderr
    _, log = attempts(tmp_path)
    assert "its state does not fit this run" in log and "epoch 1/4" in log
    assert_same_run(reference / "self_distill_seq", tmp_path)


def test_a_pickled_payload_in_the_checkpoint_never_runs(digits_pair40, reference, tmp_path):
    assert run(digits_pair40, tmp_path, "ce", fault="mid_epoch:3").returncode == -signal.SIGKILL
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"fingerprint": "x", "evil": Payload()}, tmp_path / "checkpoint" / STATE_FILE)
    assert run(digits_pair40, tmp_path, "ce").returncode == 0
    assert not marker.exists()
    assert "ignoring unreadable checkpoint" in (tmp_path / "train.log").read_text()
    assert_same_run(reference / "ce", tmp_path)


def test_checkpoint_of_another_run_is_never_resumed(digits_pair40, tmp_path):
    """A changed hyper-parameter (or data file, or library code) makes a different fingerprint: start over."""
    assert run(digits_pair40, tmp_path, "ce", fault="mid_epoch:3").returncode == -signal.SIGKILL
    other = run(digits_pair40, tmp_path, "ce", train={"lr": 0.02})
    assert other.returncode == 0, other.stderr
    log = (tmp_path / "train.log").read_text()
    assert "belongs to a different run" in log and "starting from epoch 1" in log
    fresh = tmp_path / "fresh"
    run_here(digits_pair40, fresh, "ce", train={"lr": 0.02})
    assert_same_run(fresh, tmp_path)


def test_missing_stored_epoch_file_restarts(digits_pair40, reference, tmp_path):
    assert run(digits_pair40, tmp_path, "ce", fault="mid_epoch:4").returncode == -signal.SIGKILL
    (tmp_path / "checkpoint" / "epoch_00002.npz").unlink()
    assert run(digits_pair40, tmp_path, "ce").returncode == 0
    assert "stored outputs of epoch 2 are missing; starting from epoch 1" in (tmp_path / "train.log").read_text()
    assert_same_run(reference / "ce", tmp_path)


def test_checkpoint_every_zero_writes_no_state(digits_pair40, reference, tmp_path):
    killed = run(digits_pair40, tmp_path, "ce", fault="mid_epoch:3", train={"checkpoint_every": 0})
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "checkpoint" / STATE_FILE).exists()
    assert run(digits_pair40, tmp_path, "ce", train={"checkpoint_every": 0}).returncode == 0
    assert "epoch 1/4" in attempts(tmp_path)[1]
    assert_same_run(reference / "ce", tmp_path)


def test_checkpoint_every_two_epochs_loses_at_most_two(digits_pair40, reference, tmp_path):
    assert run(digits_pair40, tmp_path, "ce", fault="mid_epoch:4", train={"checkpoint_every": 2}).returncode < 0
    assert run(digits_pair40, tmp_path, "ce", train={"checkpoint_every": 2}).returncode == 0
    assert "resumed from checkpoint at epoch 3 of 4" in (tmp_path / "train.log").read_text()
    assert_same_run(reference / "ce", tmp_path)


def test_weight_files_say_what_they_are(reference):
    history = pd.read_csv(reference / "ce" / "history.csv")
    final = torch.load(reference / "ce" / "model.pt", weights_only=True)
    early = torch.load(reference / "ce" / "model_early_stopped.pt", weights_only=True)
    assert final["epoch"] == 4 and final["train"]["lr"] == 0.05 and final["model"] == MODEL
    assert final["metrics"]["test_acc"] == pytest.approx(history["test_acc"].iloc[-1])
    best = history.loc[history["val_acc"].idxmax()]
    assert early["epoch"] == best["epoch"]
    assert early["metrics"]["val_acc"] == pytest.approx(best["val_acc"])
    assert "best noisy-validation epoch" in early["what"]


def test_early_stopped_weights_reproduce_the_best_epochs_test_accuracy(digits_pair40, reference):
    """Evaluated independently (numpy normalisation, plain forward pass), the early-stopped network scores exactly
    the test accuracy its epoch's history row reports."""
    from selfdistill.models import build_model

    early = torch.load(reference / "ce" / "model_early_stopped.pt", weights_only=True)
    with h5py.File(digits_pair40) as data:
        train_x = data["train/images"][()].astype(np.float64) / data.attrs["pixel_max"]
        test_x = data["test/images"][()].astype(np.float64) / data.attrs["pixel_max"]
        test_y = data["test/labels_clean"][()]
    mean = train_x.reshape(-1, train_x.shape[-1]).mean(axis=0)
    std = np.maximum(train_x.reshape(-1, train_x.shape[-1]).std(axis=0), 1e-3)
    x = torch.from_numpy(((test_x - mean) / std).transpose(0, 3, 1, 2)).float()
    net = build_model("mlp", tuple(x.shape[1:]), 10, MODEL["width"], MODEL["depth"])
    net.load_state_dict(early["state_dict"])
    net.eval()
    with torch.no_grad():
        accuracy = float((net(x).argmax(dim=1).numpy() == test_y).mean())
    # the history's accuracies are float32 means: equal counts of correct images, within float32 rounding
    assert accuracy == pytest.approx(early["metrics"]["test_acc"], abs=1e-6)


@pytest.mark.parametrize(("setting", "expected"), [({"every": 3}, [1, 3, 4]), ({"log": 2}, [1, 4])])
def test_recorded_epochs_only_are_stored(digits_pair40, reference, tmp_path, setting, expected):
    history = run_here(digits_pair40, tmp_path, "ce", record_epochs=setting)
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    with h5py.File(tmp_path / "outputs.h5") as out:
        assert out["epochs"][()].tolist() == expected
        assert out["test/probs"].shape[0] == len(expected)
        logits = out["train_subset/logits"][()]
    with h5py.File(reference / "ce" / "outputs.h5") as full:
        rows = [e - 1 for e in expected]
        assert np.array_equal(full["train_subset/logits"][()][rows], logits)
