"""Training step: determinism, output layout, NaN handling, on-device augmentation."""

from __future__ import annotations

import itertools
import math

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from selfdistill.data import build_corrupted_dataset
from selfdistill.losses import seq_alpha
from selfdistill.training import (
    HISTORY_COLUMNS,
    crop_flip,
    resolve_device,
    select_subset,
    train_run,
)

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
        distill=overrides.pop(
            "distill", {"seq_alpha": 0.5, "seq_warmup": 1, "seq_ramp": 1}
        ),
        freq_subset=overrides.pop("freq_subset", 100),
        device="cpu",
        run_name=f"test/{mode}/seed{seed}",
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
    timing = ["epoch_seconds"]
    pd.testing.assert_frame_equal(
        first.drop(columns=timing), second.drop(columns=timing)
    )
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
    history = _train(digits_pair40, tmp_path, "self_distill_seq")
    assert history["epoch"].tolist() == [1, 2, 3]
    expected_alpha = [seq_alpha(e, 0.5, 1, 1) for e in (1, 2, 3)]
    assert history["distill_weight"].tolist() == pytest.approx(expected_alpha)
    for col in (
        "train_acc_noisy",
        "train_acc_clean",
        "memorized",
        "corrected",
        "val_acc",
        "test_acc",
    ):
        assert history[col].between(0, 1).all(), col
    # a noisy-labelled sample cannot be predicted as both its noisy and its clean label
    assert (history["memorized"] + history["corrected"] <= 1 + 1e-12).all()
    with h5py.File(digits_pair40) as data, h5py.File(tmp_path / "outputs.h5") as out:
        assert out["epochs"][()].tolist() == [1, 2, 3]
        idx = out["train_subset/indices"][()]
        assert (
            idx.tolist()
            == select_subset(data["train/labels_noisy"].shape[0], 100, 0).tolist()
        )
        np.testing.assert_array_equal(
            out["train_subset/labels_noisy"][()], data["train/labels_noisy"][()][idx]
        )
        np.testing.assert_array_equal(
            out["train_subset/labels_clean"][()], data["train/labels_clean"][()][idx]
        )
        np.testing.assert_array_equal(
            out["test/labels_clean"][()], data["test/labels_clean"][()]
        )
        logits, probs = out["test/logits"][()], out["test/probs"][()]
        assert probs.shape == (3, data["test/labels_clean"].shape[0], 10)
        assert probs.dtype == np.float32
        z = logits.astype(np.float64)
        reference = np.exp(z - z.max(axis=2, keepdims=True))
        reference /= reference.sum(axis=2, keepdims=True)
        np.testing.assert_allclose(probs, reference, rtol=1e-5, atol=1e-7)
        # the last epoch's stored test outputs reproduce the history's test accuracy
        accuracy = (probs[-1].argmax(axis=1) == out["test/labels_clean"][()]).mean()
        assert accuracy == pytest.approx(history["test_acc"].iloc[-1])
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert saved["mode"] == "self_distill_seq" and saved["epochs"] == 3


def test_nan_loss_stops_with_run_and_epoch_and_leaves_nothing(digits_pair40, tmp_path):
    with pytest.raises(FloatingPointError, match=r"run test/ce/seed0 at epoch \d+"):
        _train(digits_pair40, tmp_path, "ce", train={"lr": 1e30, "epochs": 5})
    assert sorted(p.name for p in tmp_path.iterdir()) == []


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
        for dy, dx, flip in itertools.product(
            range(2 * pad + 1), range(2 * pad + 1), (False, True)
        ):
            crop = padded[:, dy : dy + h, dx : dx + w]
            if flip:
                crop = crop[:, :, ::-1]
            if np.array_equal(crop, aug):
                matches.append(flip)
        assert matches, "augmented image is not a crop of the padded input"
        seen_flip.update(matches)
    assert seen_flip == {False, True}  # both branches happen in a batch of 12


def test_crop_flip_without_padding_is_identity_or_mirror():
    batch = torch.arange(2 * 1 * 3 * 4, dtype=torch.uint8).reshape(2, 1, 3, 4)
    out = crop_flip(batch, 0, torch.Generator().manual_seed(0))
    for img, aug in zip(batch, out, strict=True):
        assert torch.equal(aug, img) or torch.equal(aug, img.flip(-1))


def test_cosine_schedule_reaches_zero(digits_pair40, tmp_path):
    history = _train(
        digits_pair40, tmp_path, train={"schedule_unit": "epoch", "epochs": 4}
    )
    # per-epoch cosine: the lr used in epoch e is lr0 · ½(1 + cos(π (e−1) / E))
    expected = [
        0.05 * 0.5 * (1 + math.cos(math.pi * (e - 1) / 4)) for e in (1, 2, 3, 4)
    ]
    assert history["lr"].tolist() == pytest.approx(expected)


def test_training_without_validation_split(tmp_path):
    """val_fraction 0 is allowed: validation columns are NaN and training still completes."""

    data = tmp_path / "data.h5"
    build_corrupted_dataset(
        data, "digits", {"type": "pair", "rate": 0.4}, seed=0, val_fraction=0.0
    )
    (tmp_path / "run").mkdir()
    history = _train(data, tmp_path / "run", train={"epochs": 2})
    assert history["val_acc"].isna().all() and history["val_loss"].isna().all()
    assert history["test_acc"].notna().all()
