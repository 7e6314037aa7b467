"""End to end on fake CIFAR-10 files: the shipped CIFAR configs, with only the data location and sizes changed.

The study configs are used as they are (network, optimiser, augmentation, modes, frequency settings); an override
file merged after them points ``data_root`` at generated files in the exact on-disk format and shrinks seeds,
epochs, widths and subsets so the pipeline runs on the CPU in about a minute.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from fake_cifar import write_fake_cifar10, write_fake_cifar10n
from helpers import FIGURES, REPO, planned_jobs
from helpers import snakemake as run_snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]
# the CIFAR networks train slower than the digits MLP: a longer limit than the smoke runs
snakemake = partial(run_snakemake, timeout=900)


def shrink(tmp_path: Path, data_root: Path, **extra) -> Path:
    """Override file: fake data, 1 seed, 2 epochs, small subsets, the network 8 channels wide instead of 32 (its
    layers and code unchanged; about 8 s less per epoch on the CPU), no soft-label warm-up (everything else from the
    study config)."""
    override = {
        "dataset_options": {"data_root": str(data_root), "verify_md5": False},
        "seeds": [0],
        "model": {"width": 8},
        # on the CPU on purpose (a CIFAR network that `auto` puts on the CPU stops at planning)
        "train": {"epochs": 2, "batch_size": 32, "eval_batch_size": 256, "threads": 1, "device": "cpu"},
        "frequency": {"train_subset": 60, "test_subset": 30},
        # 2 epochs: the soft labels must start moving after the first for self_distill_seq to differ from ce
        "distill": {"seq_warmup": 0},
        **extra,
    }
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(override))
    return path


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    train, test = write_fake_cifar10(root / "data", per_batch=30, n_test=40)
    return root / "data", train, test


def test_cifar10_seed_config_runs_end_to_end_on_fake_files(tmp_path, fake_data):
    data_root, train, _ = fake_data
    study = REPO / "config" / "cifar10_seed.yaml"
    override = shrink(tmp_path, data_root)
    snakemake(tmp_path, configfile=[study, override])

    # an override file that does not name the study adds its stem to the study's name
    setting = tmp_path / "results" / "cifar10_seed+override" / "pair40"
    for name in ("histories.csv", "summary.csv", "summary.md", "frequency.csv"):
        assert (setting / name).is_file(), name
    for fig in FIGURES:
        assert (setting / "figures" / f"{fig}.png").stat().st_size > 0, fig
    with h5py.File(setting / "seed0" / "data.h5") as h5:
        assert h5["train/images"].dtype == np.uint8
        assert h5["train/images"].shape[1:] == (32, 32, 3)
        assert h5.attrs["dataset"] == "cifar10"
        n_train = h5["train/labels_clean"].shape[0] + h5["val/labels_clean"].shape[0]
        assert n_train == train.size
        assert h5.attrs["noise_rate_realised"] == pytest.approx(round(0.4 * train.size) / train.size)
    modes = yaml.safe_load(study.read_text())["modes"]
    histories = pd.read_csv(setting / "histories.csv")
    assert sorted(histories["mode"].unique()) == sorted(modes)
    assert (histories.groupby("mode")["epoch"].max() == 2).all()
    for mode in modes:
        run = setting / "seed0" / mode
        saved = torch.load(run / "model.pt", weights_only=True)
        assert saved["model"]["arch"] == "shake_shake_26_2x32d_original"
        with h5py.File(run / "outputs.h5") as out:
            assert out["test/probs"].shape == (2, 30, 10)
            assert out["train_subset/probs"].shape == (2, 60, 10)
    assert "Nothing to be done" in snakemake(tmp_path, "-n", configfile=[study, override]).stdout


def test_cifar10n_config_runs_with_human_labels(tmp_path, fake_data):
    data_root, train, _ = fake_data
    arrays = write_fake_cifar10n(tmp_path / "CIFAR-10_human.pt", train)
    noise = [
        {"type": "human", "key": key, "label_file": str(tmp_path / "CIFAR-10_human.pt")}
        for key in ("worse_label", "aggre_label")
    ]
    override = shrink(tmp_path, data_root, noise=noise, modes=["ce"])
    targets = [f"results/cifar10n+override/{name}/summary.csv" for name in ("human_worse", "human_aggre")]
    snakemake(tmp_path, *targets, configfile=[REPO / "config" / "cifar10n.yaml", override])
    for name, key in (("human_worse", "worse_label"), ("human_aggre", "aggre_label")):
        setting = tmp_path / "results" / "cifar10n+override" / name
        assert (setting / "summary.csv").is_file()
        with h5py.File(setting / "seed0" / "data.h5") as h5:
            for split in ("train", "val"):
                idx = h5[f"{split}/index"][()]
                np.testing.assert_array_equal(h5[f"{split}/labels_noisy"][()], arrays[key][idx])
            assert h5.attrs["noise_rate_realised"] == pytest.approx(np.mean(arrays[key] != train))


def test_missing_dataset_stops_a_real_run_but_not_planning(tmp_path):
    study = REPO / "config" / "cifar10_seed.yaml"
    override = shrink(tmp_path, tmp_path / "empty")
    planned = snakemake(tmp_path, "-n", configfile=[study, override])
    assert "warning: cifar10 not found" in planned.stderr + planned.stdout
    failed = snakemake(tmp_path, configfile=[study, override], check=False)
    assert failed.returncode != 0
    assert f"cifar10 not found: expected {tmp_path / 'empty'}/cifar-10-batches-py/" in failed.stderr
    assert not (tmp_path / "results").exists()


def test_full_study_plans_without_data(tmp_path):
    """The seed study's full plan for GPU jobs, on a machine without CIFAR-10 (or a GPU: a login node)."""
    config = ["--config", "train={device: cuda}"]
    result = snakemake(tmp_path, "-n", "--quiet", "rules", *config, configfile=REPO / "config" / "cifar10_seed.yaml")
    counts = {
        line.split()[0]: int(line.split()[1])
        for line in result.stdout.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert counts["corrupt"] == 3 and counts["train"] == 9 and counts["frequency"] == 9
    assert counts["all"] == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_cifar_network_that_auto_puts_on_the_cpu_is_planned_on_the_gpu_with_its_gpu_hours(tmp_path):
    """device: auto on a machine without a GPU would make each Shake-Shake run days of CPU: the plan holds GPU jobs,
    as with device: cuda, and one note says so with the study's GPU-hours; device: cpu is taken at its word."""
    planned = snakemake(tmp_path, "-n", configfile=REPO / "config" / "cifar10_seed.yaml")
    output = planned.stdout + planned.stderr
    assert re.search(r"GPU plan: .* GPU-hours", output) and "note: no GPU visible here: " in output, output
    assert re.search(r"train \S+ on cuda \(gpu=1", output), output
    explicit = snakemake(
        tmp_path, "-n", "--config", "train={device: cpu}", configfile=REPO / "config" / "cifar10_seed.yaml"
    )
    assert "train" in planned_jobs(explicit.stdout)


#: The original repository's run (docs/science.md, "The original study"): what config/original.yaml must say.
ORIGINAL_RUN = {
    "dataset": "cifar10",
    "noise": [{"type": "pair", "rate": 0.4, "count": "bernoulli"}],
    "seeds": [0],
    "modes": ["ce", "self_distill"],
    "val_fraction": 0,
    "model.arch": "shake_shake_26_2x32d_original",
    "train.epochs": 1800,
    "train.batch_size": 128,
    "train.lr": 0.04,
    "train.schedule": "cosine",
    "train.schedule_unit": "epoch_ahead",
    "train.momentum": 0.9,
    "train.weight_decay": 1e-4,
    "train.nesterov": False,
    "train.augment": "crop_flip",
    "train.crop_padding": 4,
    "train.normalize": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]},
    "frequency.test_subset": None,
    "frequency.sources": ["logits"],
    "frequency.inputs": "normalised",
    "frequency.delta_scale": "absolute",
    "frequency.deltas": [1, 10, *range(100, 1001, 100)],
}


def _get(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


def test_original_config_says_the_originals_run():
    config = yaml.safe_load((REPO / "config" / "original.yaml").read_text())
    for key, value in ORIGINAL_RUN.items():
        assert _get(config, key) == value, key
    # 1800 epochs of 10,000 test outputs: a bounded set
    assert config["frequency"]["record_epochs"] != "all"


def test_original_config_plans_its_two_runs(tmp_path, fake_data):
    data_root, _, _ = fake_data
    override = tmp_path / "data.yaml"
    override.write_text(yaml.safe_dump({"dataset_options": {"data_root": str(data_root), "verify_md5": False}}))
    result = snakemake(tmp_path, "-n", "--quiet", "rules", configfile=[REPO / "config" / "original.yaml", override])
    counts = {
        line.split()[0]: int(line.split()[1])
        for line in result.stdout.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert counts["corrupt"] == 1 and counts["train"] == 2 and counts["frequency"] == 2


def test_original_config_runs_end_to_end_on_fake_files(tmp_path, fake_data):
    """config/original.yaml shrunk (fake data, width 4, 3 epochs, CPU): everything else is the original's."""
    data_root, train, test = fake_data
    epochs = 3
    override = tmp_path / "shrink.yaml"
    override.write_text(
        yaml.safe_dump(
            {
                "dataset_options": {"data_root": str(data_root), "verify_md5": False},
                "model": {"width": 4},
                "train": {"epochs": epochs, "eval_batch_size": 256, "threads": 1, "device": "cpu"},
                "frequency": {"train_subset": 60},
            }
        )
    )
    snakemake(tmp_path, configfile=[REPO / "config" / "original.yaml", override])

    setting = tmp_path / "results" / "original+shrink" / "pair40b"
    for fig in FIGURES:
        assert (setting / "figures" / f"{fig}.png").stat().st_size > 0, fig
    summary_md = (setting / "summary.md").read_text()
    rows = [line.split(" | ") for line in summary_md.splitlines() if line.startswith("| cifar10 | pair40b |")]
    # a mode's name, with its collapse flag when a (tiny, 2-epoch) run predicts one class
    assert [cells[2].split(" (")[0] for cells in rows] == ["ce", "self_distill"]
    assert all(cells[5] == "n/a (no validation split)" for cells in rows)
    # no paired comparison with an early-stopped epoch: the verdict says why instead of a number
    assert "no numbers: no validation split" in summary_md
    summary = pd.read_csv(setting / "summary.csv")
    assert summary["early_stop_mean"].isna().all() and summary["last_mean"].notna().all()

    with h5py.File(setting / "seed0" / "data.h5") as h5:
        assert h5.attrs["noise_count"] == "bernoulli" and h5.attrs["val_fraction"] == 0
        assert h5["val/labels_clean"].shape == (0,) and h5["train/labels_clean"].shape == (train.size,)
    for mode in ("ce", "self_distill"):
        run = setting / "seed0" / mode
        saved = torch.load(run / "model.pt", weights_only=True)
        assert saved["model"]["arch"] == ORIGINAL_RUN["model.arch"]
        for key, value in ORIGINAL_RUN.items():
            if key.startswith("train.") and key != "train.epochs":
                assert saved["train"][key.removeprefix("train.")] == value, key
        history = pd.read_csv(run / "history.csv")
        expected_lr = [0.04 * 0.5 * (1 + np.cos(np.pi * (e + 1) / epochs)) for e in range(epochs)]
        np.testing.assert_allclose(history["lr"], expected_lr, atol=1e-15)
        assert history["val_acc"].isna().all()
        with h5py.File(run / "outputs.h5") as out:
            # all test images
            assert out["test/logits"].shape == (epochs, test.size, 10)
            np.testing.assert_allclose(out.attrs["norm_mean"], ORIGINAL_RUN["train.normalize"]["mean"], rtol=1e-7)
            np.testing.assert_allclose(out.attrs["norm_std"], ORIGINAL_RUN["train.normalize"]["std"], rtol=1e-7)
        freq = pd.read_csv(run / "frequency.csv")
        assert set(freq["source"]) <= {"logits", "labels_clean", "labels_noisy"}
        assert sorted(freq["delta"].unique()) == ORIGINAL_RUN["frequency.deltas"]
