"""Training step: determinism, output layout, NaN handling, on-device augmentation."""

from __future__ import annotations

import io
import itertools
import json
import math

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from selfdistill.batches import DeviceImages, crop_flip
from selfdistill.checkpoint import CheckpointFolder
from selfdistill.console import ConsoleProgress, format_duration
from selfdistill.data import build_corrupted_dataset
from selfdistill.device import check_device as resolve_device
from selfdistill.io import HISTORY_COLUMNS, TIMING_COLUMNS, setup_logging
from selfdistill.models import build_model, count_parameters
from selfdistill.training import Progress, lr_schedule, train_run, train_settings

MODEL = {"arch": "mlp", "width": 32, "depth": 1}
TRAIN = {"epochs": 3, "batch_size": 64, "lr": 0.05}


def _train(data, out_dir, mode="ce", seed=0, **overrides):
    train = TRAIN | overrides.pop("train", {})
    return train_run(
        data,
        out_dir / "history.csv",
        out_dir / "outputs.h5",
        out_dir / "model.pt",
        mode=mode,
        seed=seed,
        model=overrides.pop("model", MODEL),
        train=train,
        distill=overrides.pop("distill", {"seq_alpha": 0.5, "seq_warmup": 1, "seq_ramp": 1}),
        freq_subset=overrides.pop("freq_subset", 100),
        freq_test_subset=overrides.pop("freq_test_subset", None),
        device="cpu",
        run_name=f"test/{mode}/seed{seed}",
        log_path=overrides.pop("log_path", None),
        attempt_number=overrides.pop("attempt_number", 1),
        console=overrides.pop("console", None),
        out_early_stopped=overrides.pop("out_early_stopped", None),
        out_run=overrides.pop("out_run", None),
        teacher=overrides.pop("teacher", None),
    )


@pytest.mark.parametrize(
    "mode",
    ["ce", "self_distill", "self_distill_seq", "bootstrap_soft", "bootstrap_hard"],
)
def test_same_seed_gives_identical_history_and_outputs(digits_pair40, tmp_path, mode):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _train(digits_pair40, tmp_path / "a", mode)
    second = _train(digits_pair40, tmp_path / "b", mode)
    timing = list(TIMING_COLUMNS)
    pd.testing.assert_frame_equal(first.drop(columns=timing), second.drop(columns=timing))
    on_disk = pd.read_csv(tmp_path / "a" / "history.csv")
    assert list(on_disk.columns) == list(HISTORY_COLUMNS)
    with (
        h5py.File(tmp_path / "a" / "outputs.h5") as a,
        h5py.File(tmp_path / "b" / "outputs.h5") as b,
    ):
        for key in ("train_subset/logits", "test/probs"):
            assert a[key][()].tobytes() == b[key][()].tobytes()


def test_different_seed_changes_the_run(digits_pair40, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _train(digits_pair40, tmp_path / "a", seed=0)
    second = _train(digits_pair40, tmp_path / "b", seed=1)
    assert not np.allclose(first["train_loss"], second["train_loss"])


def test_history_and_outputs_are_consistent(digits_pair40, tmp_path):
    # freq_subset larger than the training split: the stored "subset" is the whole split, so every history
    # column about the training split can be recomputed from outputs.h5 and data.h5 independently
    history = _train(digits_pair40, tmp_path, "self_distill_seq", freq_subset=10**6)
    assert history["epoch"].tolist() == [1, 2, 3]
    # α_e by hand for seq_alpha 0.5, warm-up 1 epoch, linear ramp over 1 epoch: 0, then 0.5, 0.5
    assert history["distill_weight"].tolist() == pytest.approx([0.0, 0.5, 0.5])
    with h5py.File(digits_pair40) as data, h5py.File(tmp_path / "outputs.h5") as out:
        noisy, clean = data["train/labels_noisy"][()], data["train/labels_clean"][()]
        is_noisy = data["train/is_noisy"][()]
        assert out["epochs"][()].tolist() == [1, 2, 3]
        assert out["train_subset/indices"][()].tolist() == list(range(noisy.size))
        np.testing.assert_array_equal(out["train_subset/labels_noisy"][()], noisy)
        np.testing.assert_array_equal(out["train_subset/labels_clean"][()], clean)
        np.testing.assert_array_equal(out["test/labels_clean"][()], data["test/labels_clean"][()])
        train_logits = out["train_subset/logits"][()]
        logits, probs = out["test/logits"][()], out["test/probs"][()]
        test_labels = out["test/labels_clean"][()]
    for e in range(3):
        pred = train_logits[e].argmax(axis=1)
        row = history.iloc[e]
        assert row["train_acc_noisy"] == pytest.approx(np.mean(pred == noisy))
        assert row["train_acc_clean"] == pytest.approx(np.mean(pred == clean))
        assert row["memorized"] == pytest.approx(np.mean(pred[is_noisy] == noisy[is_noisy]))
        assert row["corrected"] == pytest.approx(np.mean(pred[is_noisy] == clean[is_noisy]))
        assert row["test_acc"] == pytest.approx(np.mean(probs[e].argmax(axis=1) == test_labels))
    assert probs.shape == (3, test_labels.size, 10) and probs.dtype == np.float32
    z = logits.astype(np.float64)
    reference = np.exp(z - z.max(axis=2, keepdims=True))
    reference /= reference.sum(axis=2, keepdims=True)
    np.testing.assert_allclose(probs, reference, rtol=1e-5, atol=1e-7)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert saved["mode"] == "self_distill_seq" and saved["epochs"] == 3


def test_sequential_distillation_follows_ce_until_the_soft_labels_move(digits_pair40, tmp_path):
    """Soft labels start as one-hot(y) and α_1 = 0, so epochs 1–2 equal ce; after α_2 = 0.5 they differ."""
    for name in ("ce", "seq"):
        (tmp_path / name).mkdir()
    ce = _train(digits_pair40, tmp_path / "ce", "ce")
    seq = _train(digits_pair40, tmp_path / "seq", "self_distill_seq")
    cols = ["train_loss", "test_acc", "memorized"]
    np.testing.assert_allclose(seq.loc[:1, cols], ce.loc[:1, cols], rtol=1e-5)
    assert not np.isclose(seq.loc[2, "train_loss"], ce.loc[2, "train_loss"], rtol=1e-3)


def test_distill_early_teacher_and_elr_train_end_to_end(digits_pair40, tmp_path, monkeypatch):
    """Tiny runs of the two modes after the ce run that is distill_early_teacher's teacher: the teacher's logits
    are exactly the ce run's stored training-split logits of its best validation epoch, run.json names the
    teacher, and with teacher_label_weight 1 the target is the noisy label again, so the run follows ce."""
    from selfdistill.io import file_digest
    from selfdistill.modes import DistillEarlyTeacher

    for name in ("ce", "teacher", "labels", "elr"):
        (tmp_path / name).mkdir()
    ce = _train(digits_pair40, tmp_path / "ce", "ce", freq_subset=10**6, out_early_stopped=tmp_path / "ce" / "es.pt")
    teacher = tmp_path / "ce" / "es.pt"
    seen = []
    original = DistillEarlyTeacher.set_teacher
    monkeypatch.setattr(DistillEarlyTeacher, "set_teacher", lambda self, z: (seen.append(z), original(self, z))[1])
    run_json = tmp_path / "teacher" / "run.json"
    student = _train(digits_pair40, tmp_path / "teacher", "distill_early_teacher", teacher=teacher, out_run=run_json)
    assert len(seen) == 1
    best = int(ce["val_acc"].idxmax())
    with h5py.File(tmp_path / "ce" / "outputs.h5") as out:
        np.testing.assert_allclose(seen[0].numpy(), out["train_subset/logits"][best], rtol=1e-6, atol=1e-6)
    assert student["distill_weight"].tolist() == [1.0, 1.0, 1.0]
    assert not np.allclose(student["train_loss"], ce["train_loss"])
    record = json.loads(run_json.read_text())["teacher"]
    assert record == {"file": str(teacher), "sha256": file_digest(teacher)}
    labels = _train(
        digits_pair40,
        tmp_path / "labels",
        "distill_early_teacher",
        teacher=teacher,
        distill={"teacher_label_weight": 1.0},
    )
    np.testing.assert_allclose(labels["train_loss"], ce["train_loss"], rtol=1e-4)
    elr = _train(digits_pair40, tmp_path / "elr", "elr")
    assert elr["distill_weight"].isna().all() and np.isfinite(elr["train_loss"]).all()
    assert not np.allclose(elr["train_loss"], ce["train_loss"])


def test_a_teacher_is_given_exactly_to_the_modes_that_distil_from_one(digits_pair40, tmp_path):
    with pytest.raises(ValueError, match="mode distill_early_teacher needs a teacher: the ce run's"):
        _train(digits_pair40, tmp_path, "distill_early_teacher")
    with pytest.raises(ValueError, match="mode elr takes no teacher"):
        _train(digits_pair40, tmp_path, "elr", teacher=tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError, match="teacher of mode distill_early_teacher not found"):
        _train(digits_pair40, tmp_path, "distill_early_teacher", teacher=tmp_path / "x.pt")
    empty = tmp_path / "empty.pt"
    torch.save({"state_dict": None, "what": "no validation split"}, empty)
    with pytest.raises(ValueError, match=r"teacher .*empty.pt holds no network \(no validation split\)"):
        _train(digits_pair40, tmp_path, "distill_early_teacher", teacher=empty)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}, "seed": 1, "model": MODEL}, other)
    with pytest.raises(ValueError, match="is seed 1 with model .*; this run is seed 0"):
        _train(digits_pair40, tmp_path, "distill_early_teacher", teacher=other)


def test_nan_loss_stops_with_run_and_epoch_and_leaves_nothing(digits_pair40, tmp_path):
    out, log = tmp_path / "out", tmp_path / "train.log"
    out.mkdir()
    try:
        with pytest.raises(FloatingPointError, match=r"run test/ce/seed0 at epoch \d+"):
            _train(digits_pair40, out, "ce", train={"lr": 1e30, "epochs": 5}, log_path=log)
    finally:
        # detach the file handler from the package logger
        setup_logging(None)
    # no output, and no progress to resume: only the record of the failure, which stops Snakemake's retry at once
    # (and the run's lock file, which is never deleted: selfdistill.run_guard)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "checkpoint.lock"]
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == ["attempts.log", "failure.txt"]
    assert "FloatingPointError: non-finite training loss" in (out / "checkpoint" / "failure.txt").read_text()
    text = log.read_text()
    assert "non-finite training loss in run test/ce/seed0 at epoch" in text
    # the failure reaches the rule log: the summary line, then the traceback
    assert "train_run failed: FloatingPointError: non-finite training loss" in text
    assert "traceback of the failure:\nTraceback (most recent call last):" in text
    # Snakemake's retry of the job stops at once with the same reason instead of training again
    try:
        with pytest.raises(RuntimeError, match=r"not retried: attempt 1 failed .* FloatingPointError: non-finite"):
            _train(digits_pair40, out, "ce", train={"lr": 1e30, "epochs": 5}, log_path=log, attempt_number=2)
    finally:
        setup_logging(None)
    assert "epoch 1/5" not in log.read_text().rpartition("----- new attempt")[2]


def test_unknown_mode_is_rejected(digits_pair40, tmp_path):
    with pytest.raises(ValueError, match="unknown mode 'dis'.*allowed: ce"):
        _train(digits_pair40, tmp_path, "dis")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_fails_fast():
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_crop_flip_outputs_are_crops_of_the_padded_input():
    """Each augmented image equals one of the (2p+1)² shifted crops of the zero-padded input, maybe mirrored."""
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(1, 256, (12, 3, 6, 5), dtype=torch.uint8, generator=gen)
    pad = 2
    out = crop_flip(batch, pad, torch.Generator().manual_seed(1))
    assert out.shape == batch.shape and out.dtype == torch.uint8
    seen_flip = set()
    for img, aug in zip(batch.numpy(), out.numpy(), strict=True):
        c, h, w = img.shape
        padded = np.zeros((c, h + 2 * pad, w + 2 * pad), dtype=np.uint8)
        padded[:, pad : pad + h, pad : pad + w] = img
        matches = []
        for dy, dx, flip in itertools.product(range(2 * pad + 1), range(2 * pad + 1), (False, True)):
            crop = padded[:, dy : dy + h, dx : dx + w]
            if flip:
                crop = crop[:, :, ::-1]
            if np.array_equal(crop, aug):
                matches.append(flip)
        assert matches, "augmented image is not a crop of the padded input"
        seen_flip.update(matches)
    # both branches happen in a batch of 12
    assert seen_flip == {False, True}


@pytest.mark.parametrize("pad", [0, 1, 4])
def test_crop_flip_matches_a_per_pixel_reference(pad):
    """Same draws (dy, dx, flip per sample, in that order), then crop of the zero-padded image and mirror, by loops."""
    batch = torch.randint(
        0,
        256,
        (9, 3, 7, 5),
        dtype=torch.uint8,
        generator=torch.Generator().manual_seed(3),
    )
    out = crop_flip(batch, pad, torch.Generator().manual_seed(11))
    gen = torch.Generator().manual_seed(11)
    n, c, h, w = batch.shape
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).tolist()
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).tolist()
    flip = (torch.rand(n, generator=gen) < 0.5).tolist()
    x = batch.numpy()
    expected = np.zeros_like(x)
    for i in range(n):
        for ch in range(c):
            for r in range(h):
                for col in range(w):
                    src_col = dx[i] + (w - 1 - col if flip[i] else col) - pad
                    src_row = dy[i] + r - pad
                    if 0 <= src_row < h and 0 <= src_col < w:
                        expected[i, ch, r, col] = x[i, ch, src_row, src_col]
    assert out.is_contiguous() and out.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy(), expected)


def test_crop_flip_of_an_empty_batch():
    out = crop_flip(torch.zeros((0, 3, 4, 4), dtype=torch.uint8), 2, torch.Generator())
    assert out.shape == (0, 3, 4, 4)


def test_normalise_matches_float64_formula():
    images = np.random.default_rng(0).integers(0, 17, (20, 4, 4, 2)).astype(np.uint8)
    mean, std = torch.tensor([0.3, 0.5]), torch.tensor([0.2, 0.25])
    dev_images = DeviceImages(images, torch.device("cpu"), 16.0, mean, std)
    batch = dev_images.data[:7]
    got = dev_images.normalise(batch)
    ref = (batch.numpy().astype(np.float64) / 16.0 - np.array([0.3, 0.5])[None, :, None, None]) / np.array([0.2, 0.25])[
        None, :, None, None
    ]
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6, atol=1e-6)
    # the input is left alone
    assert batch.dtype == torch.uint8


def test_crop_flip_without_padding_is_identity_or_mirror():
    batch = torch.arange(2 * 1 * 3 * 4, dtype=torch.uint8).reshape(2, 1, 3, 4)
    out = crop_flip(batch, 0, torch.Generator().manual_seed(0))
    for img, aug in zip(batch, out, strict=True):
        assert torch.equal(aug, img) or torch.equal(aug, img.flip(-1))


def test_per_epoch_cosine_schedule(digits_pair40, tmp_path):
    history = _train(digits_pair40, tmp_path, train={"schedule_unit": "epoch", "epochs": 4})
    # per-epoch cosine: the lr used in epoch e is lr0 · ½(1 + cos(π (e−1) / E))
    expected = [0.05 * 0.5 * (1 + math.cos(math.pi * (e - 1) / 4)) for e in (1, 2, 3, 4)]
    assert history["lr"].tolist() == pytest.approx(expected)


def _original_lr(e: int, epochs: int = 1800, peak: float = 0.04) -> float:
    """The original repository's lr in 0-based epoch ``e``: 0.2 x 0.2 x ½(1 + cos(π s / E)) with s = e + 1 (its
    LambdaLR multiplier on base lr 0.2, stepped once before each epoch), in float64."""
    s = np.float64(e + 1)
    return float(np.float64(peak) * 0.5 * (1.0 + np.cos(np.pi * s / np.float64(epochs))))


def test_epoch_ahead_schedule_is_the_originals_for_all_1800_epochs():
    """The scheduler the training builds, stepped as the training loop steps it (once per epoch, after it)."""
    weight = torch.nn.Parameter(torch.zeros(1))
    weight.grad = torch.zeros(1)
    optimiser = torch.optim.SGD([weight], lr=0.04, momentum=0.9, weight_decay=1e-4)
    cfg = train_settings({"epochs": 1800, "batch_size": 128, "lr": 0.04, "schedule_unit": "epoch_ahead"})
    scheduler = lr_schedule(optimiser, cfg, n_train=50_000)
    used = []
    for _ in range(1800):
        used.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        scheduler.step()
    reference = [_original_lr(e) for e in range(1800)]
    np.testing.assert_allclose(used, reference, rtol=1e-12, atol=1e-15)
    # the first epoch at ≈0.04
    assert used[0] == pytest.approx(0.04 * 0.5 * (1 + math.cos(math.pi / 1800)))
    # s = 900: half way
    assert used[899] == pytest.approx(0.02)
    # s = 1800: exactly 0
    assert used[-1] == 0.0
    # never the nominal peak itself
    assert used[0] < 0.04


def test_epoch_ahead_schedule_in_a_training_run(digits_pair40, tmp_path):
    history = _train(digits_pair40, tmp_path, train={"schedule_unit": "epoch_ahead", "epochs": 4, "lr": 0.04})
    expected = [_original_lr(e, epochs=4) for e in range(4)]
    assert history["lr"].tolist() == pytest.approx(expected, abs=1e-15)
    assert history["lr"].iloc[-1] == 0.0


def test_per_step_cosine_schedule(digits_pair40, tmp_path):
    history = _train(digits_pair40, tmp_path, train={"epochs": 2, "batch_size": 100})
    with h5py.File(digits_pair40) as data:
        steps = math.ceil(data["train/labels_noisy"].shape[0] / 100)
    # the history reports the lr of each epoch's last step t = e·steps − 1 of T = 2·steps
    expected = [0.05 * 0.5 * (1 + math.cos(math.pi * (e * steps - 1) / (2 * steps))) for e in (1, 2)]
    assert history["lr"].tolist() == pytest.approx(expected)


def test_training_without_validation_split(tmp_path):
    """val_fraction 0 is allowed: validation columns are NaN and training still completes."""

    data = tmp_path / "data.h5"
    build_corrupted_dataset(data, "digits", {"type": "pair", "rate": 0.4}, seed=0, val_fraction=0.0)
    (tmp_path / "run").mkdir()
    history = _train(data, tmp_path / "run", train={"epochs": 2})
    assert history["val_acc"].isna().all() and history["val_loss"].isna().all()
    assert history["test_acc"].notna().all()


def test_build_model_defaults_and_unknown_arch():
    # mlp default width 512: 64·512+512 + 512·512+512 + 512·10+10 parameters for 8×8×1 inputs
    mlp = build_model("mlp", (1, 8, 8), 10)
    assert count_parameters(mlp) == 64 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
    cnn = build_model("small_cnn", (1, 8, 8), 10)
    # small_cnn default width 32
    assert cnn.head[-1].in_features == 4 * 32
    with pytest.raises(ValueError, match="unknown architecture 'resnet'; allowed: mlp, small_cnn"):
        build_model("resnet", (1, 8, 8), 10)


def test_test_subset_stores_the_same_rows_for_every_seed(digits_pair40, tmp_path):
    for name in ("all", "sub0", "sub1"):
        (tmp_path / name).mkdir()
    _train(digits_pair40, tmp_path / "all", train={"epochs": 2})
    _train(digits_pair40, tmp_path / "sub0", train={"epochs": 2}, freq_test_subset=50)
    _train(
        digits_pair40,
        tmp_path / "sub1",
        seed=1,
        train={"epochs": 2},
        freq_test_subset=50,
    )
    with (
        h5py.File(tmp_path / "all" / "outputs.h5") as full,
        h5py.File(tmp_path / "sub0" / "outputs.h5") as sub0,
        h5py.File(tmp_path / "sub1" / "outputs.h5") as sub1,
        h5py.File(digits_pair40) as data,
    ):
        idx = sub0["test/indices"][()]
        assert idx.size == 50 and np.all(np.diff(idx) > 0)
        np.testing.assert_array_equal(idx, sub1["test/indices"][()])
        np.testing.assert_array_equal(full["test/indices"][()], np.arange(data["test/labels_clean"].shape[0]))
        np.testing.assert_array_equal(sub0["test/labels_clean"][()], data["test/labels_clean"][()][idx])
        # same seed: the stored subset is exactly those rows of the full run's outputs
        np.testing.assert_array_equal(sub0["test/probs"][()], full["test/probs"][()][:, idx])


@pytest.mark.parametrize("block", [7, 1 << 20])
def test_channel_stats_match_a_float64_loop_in_any_block_size(monkeypatch, block):
    """Blockwise two-pass statistics equal a per-channel float64 loop, whether one block or many."""
    from selfdistill import batches

    monkeypatch.setattr(batches, "_STATS_BLOCK", block)
    images = np.random.default_rng(4).integers(0, 256, (6, 5, 4, 3)).astype(np.uint8)
    mean, std = batches.channel_stats(images, 255.0)
    for c in range(3):
        values = [float(v) / 255.0 for v in images[..., c].ravel()]
        m = sum(values) / len(values)
        s = math.sqrt(sum((v - m) ** 2 for v in values) / len(values))
        assert mean[c].item() == pytest.approx(m, rel=1e-6)
        assert std[c].item() == pytest.approx(s, rel=1e-6)


def test_console_shows_start_and_end_of_a_short_run_and_the_log_every_epoch(digits_pair40, tmp_path):
    """A run of a few seconds: two console lines (start with the log to follow, end with the accuracies)."""
    console, log = io.StringIO(), tmp_path / "train.log"
    history = _train(digits_pair40, tmp_path, "ce", console=console, log_path=log)
    lines = console.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0] == f"[test/ce/seed0] training, 3 epochs on cpu; per-epoch log: tail -f {log}"
    best = int(history["val_acc"].idxmax())
    assert lines[1].startswith("[test/ce/seed0] done: 3 epochs in ")
    assert f"test {history['test_acc'].iloc[-1]:.3f} at the last epoch" in lines[1]
    assert f"{history['test_acc'].iloc[best]:.3f} early-stopped (best noisy val, epoch {best + 1})" in lines[1]
    assert all(f"epoch {e}/3" in log.read_text() for e in (1, 2, 3))
    assert "[test/ce/seed0]" not in log.read_text()


def test_console_says_done_only_after_the_outputs_are_written(digits_pair40, tmp_path, monkeypatch):
    """The checkpoint folder deleted under a running trainer: writing outputs.h5 fails, and no "done" precedes it."""

    def gone(self, epoch):
        raise FileNotFoundError(f"{self.epoch_path(epoch)}: the checkpoint folder was deleted")

    monkeypatch.setattr(CheckpointFolder, "load_epoch", gone)
    console = io.StringIO()
    with pytest.raises(FileNotFoundError):
        _train(digits_pair40, tmp_path, "ce", console=console)
    lines = console.getvalue().splitlines()
    assert lines and lines[0].startswith("[test/ce/seed0] training, 3 epochs")
    assert not any("done:" in line for line in lines), lines
    assert not (tmp_path / "outputs.h5").exists()


def test_console_that_is_gone_does_not_stop_the_run():
    """A progress line to a closed pipe (Snakemake died with its terminal): printing stops, the run goes on."""

    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    shown = ConsoleProgress(Closed(), "run", 2)
    shown.start(1, "cpu", None)
    shown.epoch_done(Progress(rows=[_row(1)]))
    shown.done(Progress(rows=[_row(1), _row(2)]))
    assert shown.stream is None


def _row(epoch):
    return {"epoch": epoch, "test_acc": 0.5, "val_acc": 0.4, "train_acc_noisy": 0.9}


def _console_lines(epochs, seconds_per_epoch, first_epoch=1, **limits):
    """The console lines of a run of ``epochs`` epochs that takes ``seconds_per_epoch`` each (a fake clock)."""
    now = [0.0]
    out = io.StringIO()
    shown = ConsoleProgress(out, "d/n/seed0/ce", epochs, clock=lambda: now[0], **limits)
    shown.start(first_epoch, "cpu", "x.log")
    progress = Progress(rows=[_row(e) for e in range(1, first_epoch)])
    for epoch in range(first_epoch, epochs + 1):
        now[0] += seconds_per_epoch
        progress.rows.append(_row(epoch))
        shown.epoch_done(progress)
    # the outputs are written
    shown.done(progress)
    return out.getvalue().splitlines()


def test_console_lines_every_tenth_of_the_epochs_but_not_too_often():
    # 100 epochs of a minute: each 10% takes 10 minutes, more than max_seconds (5 minutes): a line every 5 epochs
    slow = _console_lines(100, 60.0)
    assert [line.split()[2] for line in slow[1:-1]] == [f"{e}/100" for e in range(5, 100, 5)]
    assert slow[1] == (
        "[d/n/seed0/ce] epoch 5/100 (5%) test 0.500 val 0.400 train(noisy) 0.900, elapsed 5m00s, ETA 1h35m"
    )
    assert slow[-1].startswith("[d/n/seed0/ce] done: 100 epochs in 1h40m; test 0.500 at the last epoch")
    # 100 epochs of 5 s: every 10% (50 s) is over min_seconds, under max_seconds
    medium = _console_lines(100, 5.0)
    assert [line.split()[2] for line in medium[1:-1]] == [f"{e}/100" for e in range(10, 100, 10)]
    # a run of seconds: start and end only
    assert len(_console_lines(60, 0.3)) == 2


def test_console_after_a_resume_names_the_epoch_and_estimates_from_this_attempt():
    lines = _console_lines(20, 100.0, first_epoch=11)
    assert lines[0] == "[d/n/seed0/ce] training, resuming at epoch 11/20 on cpu; per-epoch log: tail -f x.log"
    # epoch 12: 200 s for 2 epochs, 8 to go
    assert lines[1].endswith("elapsed 3m20s, ETA 13m20s")
    assert lines[-1].startswith("[d/n/seed0/ce] done: 20 epochs in 16m40s")


def test_console_is_silent_without_a_stream():
    shown = ConsoleProgress(None, "run", 1)
    shown.start(1, "cpu", None)
    shown.epoch_done(Progress(rows=[_row(1)]))


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0s"), (42, "42s"), (185, "3m05s"), (7620, "2h07m")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_fixed_normalisation_constants_are_what_the_network_sees(digits_pair40, tmp_path):
    """train.normalize {mean, std}: the run normalises with the constants (not the split's statistics): the saved
    network applied to (pixels / pixel_max − mean) / std, computed here in float64, gives the stored test logits."""
    mean, std = 0.3, 0.25
    _train(digits_pair40, tmp_path, train={"epochs": 2, "normalize": {"mean": [mean], "std": [std]}})
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    net = build_model("mlp", (1, 8, 8), 10, MODEL["width"], MODEL["depth"])
    net.load_state_dict(saved["state_dict"])
    with h5py.File(digits_pair40) as data:
        images = data["test/images"][()].astype(np.float64)
        pixel_max = float(data.attrs["pixel_max"])
    x = (images / pixel_max - mean) / std
    with torch.no_grad():
        logits = net.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2)).float()).numpy()
    with h5py.File(tmp_path / "outputs.h5") as out:
        np.testing.assert_allclose(out["test/logits"][-1], logits[out["test/indices"][()]], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out.attrs["norm_mean"], [mean], rtol=1e-7)
        np.testing.assert_allclose(out.attrs["norm_std"], [std], rtol=1e-7)


def test_split_normalisation_is_stored_with_the_outputs(digits_pair40, tmp_path):
    _train(digits_pair40, tmp_path, train={"epochs": 1})
    with h5py.File(digits_pair40) as data, h5py.File(tmp_path / "outputs.h5") as out:
        pixels = data["train/images"][()].astype(np.float64) / float(data.attrs["pixel_max"])
        np.testing.assert_allclose(out.attrs["norm_mean"], [pixels.mean()], rtol=1e-6)
        np.testing.assert_allclose(out.attrs["norm_std"], [pixels.std()], rtol=1e-6)


def test_normalisation_constants_must_match_the_channels():
    from selfdistill.batches import normalisation

    images = np.zeros((4, 2, 2, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="1 means and 1 stds for images of 3 channels"):
        normalisation({"mean": [0.5], "std": [0.2]}, images, 255.0)
