"""Benchmarks at tiny sizes: the code paths, the CSVs, and the correctness of every baseline (no timing checks)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from selfdistill import benchmarks as bm
from selfdistill.frequency import (
    FrequencyFilter,
    frequency_table,
    lowpass_kernel,
    median_sq_dist,
    pairwise_sq_dists,
)
from selfdistill.training import DeviceImages, channel_stats

REPO = Path(__file__).resolve().parents[1]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def empty_root(tmp_path) -> Path:
    """A data root without CIFAR-10 files: the benchmarks fall back to synthetic images."""
    root = tmp_path / "data"
    root.mkdir()
    return root


def _check_csv(path: Path, benchmark: str, variants: set[str]) -> pd.DataFrame:
    df = pd.read_csv(path)
    assert list(df.columns) == list(bm.COLUMNS)
    assert set(df["benchmark"]) == {benchmark}
    assert set(df["variant"]) == variants
    assert (df["seconds"] > 0).all() and (df["throughput"] > 0).all()
    assert df["device_name"].notna().all() and df["device"].notna().all()
    return df


# ----------------------------------------------------------------------------------------------------------------
# Input pipeline
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_device_path_gives_the_training_loops_batches(device, monkeypatch):
    """The benchmark makes its batches with training.make_batch, in the training loop's order and draws."""
    images, _ = bm.synthetic_images(300, seed=2)
    mean, std = channel_stats(images, 255.0)
    dev_images = DeviceImages(images, torch.device(device), 255.0, mean, std)
    seen = []
    real = bm.make_batch

    def spy(images, idx, padding, generator):
        seen.append((idx.clone(), padding))
        return real(images, idx, padding, generator)

    monkeypatch.setattr(bm, "make_batch", spy)
    last = bm._device_batches(dev_images, 300, 64, 4, seed=1)()
    order = torch.randperm(300, generator=torch.Generator().manual_seed(1)).to(device)
    assert [len(i) for i, _ in seen] == [64, 64, 64, 64, 44]
    assert torch.equal(torch.cat([i for i, _ in seen]), order)
    assert {p for _, p in seen} == {4}
    gen = torch.Generator(device=device).manual_seed(2)
    for idx, _ in seen:
        expected = real(dev_images, idx, 4, gen)
    assert torch.equal(last, expected)


def test_pil_baseline_matches_the_device_path_normalisation():
    """Each PIL-pipeline image is one of the 9 x 9 x 2 crops/flips of its source, normalised as on the device."""
    images, labels = bm.synthetic_images(6, seed=3)
    mean, std = channel_stats(images, 255.0)
    dev_images = DeviceImages(images, torch.device("cpu"), 255.0, mean, std)
    dataset = bm.original_dataset(images, labels, mean.tolist(), std.tolist(), 4)
    torch.manual_seed(0)
    padded = torch.nn.functional.pad(dev_images.data, (4, 4, 4, 4))
    for i in range(len(images)):
        x, y = dataset[i]
        assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and y == labels[i]
        crops = torch.stack(
            [
                padded[i, :, dy : dy + 32, dx : dx + 32]
                for dy in range(9)
                for dx in range(9)
            ]
        )
        candidates = dev_images.normalise(torch.cat([crops, crops.flip(3)]))
        err = (candidates - x).abs().amax(dim=(1, 2, 3)).min()
        assert err < 1e-5
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True)
    xb, _ = next(iter(loader))
    device_batch = bm._device_batches(dev_images, 4, 4, 4, seed=0)()
    assert xb.shape == device_batch.shape == (4, 3, 32, 32)
    assert xb.dtype == device_batch.dtype == torch.float32


def test_synthetic_images_shape_and_classes():
    images, labels = bm.synthetic_images(50, seed=1)
    assert images.shape == (50, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and set(labels) <= set(range(10))
    got, got_labels, data = bm.load_images("no/such/root", 20, train=True, seed=1)
    assert data == "synthetic"
    assert got.shape == (20, 32, 32, 3) and got_labels.shape == (20,)


class FakeCIFAR10(bm.PilImages):
    """Stands in for torchvision's CIFAR10 (same constructor, ``data``, ``targets`` and item format)."""

    def __init__(self, root, train=True, download=False, transform=None):
        assert Path(root, "cifar-10-batches-py").is_dir() and not download
        images, labels = bm.synthetic_images(300 if train else 100, seed=9)
        super().__init__(images, labels.tolist(), transform)


def test_cifar10_files_are_used_when_present(tmp_path, monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    root = tmp_path / "data"
    (root / "cifar-10-batches-py").mkdir(parents=True)
    images, labels, data = bm.load_images(root, 50, train=False)
    assert data == "cifar10" and images.shape == (50, 32, 32, 3)
    assert np.array_equal(labels, FakeCIFAR10(root, train=False).targets[:50])
    df = bm.input_pipeline_benchmark(
        None, n_images=128, batch_size=64, workers=0, device="cpu", data_root=root
    )
    assert (df["data"] == "cifar10").all()


def test_input_pipeline_quick(tmp_path, empty_root):
    out = tmp_path / "input_pipeline.csv"
    df = bm.input_pipeline_benchmark(
        out, n_images=200, batch_size=64, device="cpu", data_root=empty_root
    )
    read = _check_csv(out, "input_pipeline", {"torchvision_dataloader", "device"})
    assert (
        len(read) == len(df) == 3
    )  # the baseline, and the device path at 1 and 2 threads
    assert (read["data"] == "synthetic").all() and (read["n_images"] == 200).all()
    assert (read["batch_size"] == 64).all()
    threads = read.groupby("variant")["threads"].apply(sorted).to_dict()
    assert threads == {
        "torchvision_dataloader": [2],
        "device": [1, 2],
    }
    base = read.set_index("variant").loc["torchvision_dataloader"]
    assert base["ratio"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------------------------
# Train step
# ----------------------------------------------------------------------------------------------------------------


def test_train_step_quick(tmp_path):
    out = tmp_path / "train_step.csv"
    archs = ["small_cnn", bm.REFERENCE_ARCH]
    bm.train_step_benchmark(
        out, archs=archs, batch_sizes=(2, 4), warmup=0, steps=1, device="cpu", threads=1
    )
    df = _check_csv(out, "train_step", set(archs))
    assert len(df) == 4 and set(df["batch_size"]) == {2, 4}
    assert (df["n_images"] == df["batch_size"]).all()
    ref = df[df["variant"] == bm.REFERENCE_ARCH]
    np.testing.assert_allclose(ref["ratio"], 1.0)
    np.testing.assert_allclose(df[df["batch_size"] == 2]["ratio_batch"], 1.0)


def test_train_step_without_the_reference_has_nan_ratio(tmp_path):
    df = bm.train_step_benchmark(
        None, archs=["small_cnn"], batch_sizes=(2,), warmup=0, steps=1, device="cpu"
    )
    assert math.isnan(df["ratio"].iloc[0]) and df["ratio_batch"].iloc[0] == 1.0


# ----------------------------------------------------------------------------------------------------------------
# Frequency analysis
# ----------------------------------------------------------------------------------------------------------------


def loop_ratio(x, f, delta):
    """ratio by explicit Python loops in float64 (distances, kernel rows, filter, norms)."""
    n = len(x)
    d2 = [
        [sum((a - b) ** 2 for a, b in zip(x[i], x[j])) for j in range(n)]
        for i in range(n)
    ]
    low_sq = high_sq = 0.0
    for i in range(n):
        w = [math.exp(-d2[i][j] / (2 * delta)) for j in range(n)]
        tot = sum(w)
        for c in range(f.shape[1]):
            low = sum(w[j] * f[j, c] for j in range(n)) / tot
            low_sq += low * low
            high_sq += (f[i, c] - low) ** 2
    return low_sq / (low_sq + high_sq)


def test_original_frequency_ratio_matches_a_loop_reference():
    rng = np.random.default_rng(7)
    x = rng.random((30, 9))
    outputs = rng.normal(size=(3, 30, 4)) * 2
    deltas = [0.05, 0.3, 2.0]
    got = bm.original_frequency_ratio(x, outputs, deltas)
    assert got.shape == (3, 3)
    ref = [[loop_ratio(x, outputs[e], d) for d in deltas] for e in range(3)]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_project_and_original_agree_on_tiny_data():
    images, labels = bm.synthetic_images(40, seed=5)
    x = images.reshape(40, -1) / 255.0
    outputs = bm.synthetic_logits(labels, epochs=5, seed=2)
    deltas = np.geomspace(0.02, 1.0, 4) * median_sq_dist(pairwise_sq_dists(x))
    base = bm.original_frequency_ratio(x, outputs, deltas)
    for precision, tol in (("float64", 1e-12), ("float32", 1e-6)):
        table = frequency_table(x, outputs, deltas, precision=precision)
        got = table["ratio"].to_numpy().reshape(5, 4)
        np.testing.assert_allclose(got, base, rtol=0, atol=tol, err_msg=precision)


@pytest.mark.parametrize("shift", [0.0, 1.5])
@pytest.mark.parametrize("delta", [1e-3, 0.05, 0.4, 50.0])
def test_highpass_operator_is_identity_minus_kernel(shift, delta):
    """diag(w) A = I - K (the factorisation the float32 products use), also for d2 with a non-zero diagonal."""
    rng = np.random.default_rng(11)
    d2 = pairwise_sq_dists(rng.random((25, 6))) + shift * rng.random((25, 1))
    flt = FrequencyFilter(d2=d2)
    a, w = flt.highpass_operator(delta)
    np.testing.assert_allclose(
        w[:, None] * a, np.eye(25) - lowpass_kernel(d2, delta), rtol=0, atol=1e-14
    )
    np.testing.assert_allclose(a.sum(axis=1), 0.0, atol=1e-12)
    a32, w32 = flt.highpass_operator(delta, np.float32)
    assert a32.dtype == np.float32 and np.array_equal(w32, w)


def test_float32_products_keep_relative_precision_at_small_delta():
    """e_high at a delta where K is the identity to ~1e-40: float32 products still match float64 to ~1e-6."""
    rng = np.random.default_rng(4)
    x = rng.random((40, 5))
    h = rng.dirichlet(np.ones(3), size=(2, 40))
    y = rng.integers(0, 3, 40)
    deltas = [2e-3, 0.05, 5.0]
    t32 = frequency_table(x, h, deltas, y_clean=y, precision="float32")
    t64 = frequency_table(x, h, deltas, y_clean=y, precision="float64")
    for col in ("ratio", "e_low_clean", "e_high_clean"):
        np.testing.assert_allclose(t32[col], t64[col], rtol=2e-6, err_msg=col)
    with pytest.raises(ValueError, match="precision"):
        frequency_table(x, h, deltas, precision="float16")


def test_frequency_quick(tmp_path, empty_root):
    out = tmp_path / "frequency.csv"
    bm.frequency_benchmark(
        out, n=60, epochs=3, n_deltas=2, repeats=1, threads=1, data_root=empty_root
    )
    df = _check_csv(out, "frequency", {"project_float32", "original_per_epoch"})
    assert (df["n_epochs"] == 3).all() and (df["n_deltas"] == 2).all()
    assert (df["n_images"] == 60).all() and (df["data"] == "synthetic").all()
    assert (df["max_abs_diff"] <= 1e-6).all()
    assert df.set_index("variant").loc["original_per_epoch", "ratio"] == 1.0


def test_synthetic_logits_drift():
    labels = np.arange(20) % 10
    z = bm.synthetic_logits(labels, epochs=6, seed=0)
    assert z.shape == (6, 20, 10) and z.dtype == np.float32
    assert not np.allclose(z[0], z[-1])


# ----------------------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------------------


def test_run_benchmark_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown benchmark"):
        bm.run_benchmark("nope")


def test_command_line_quick(tmp_path, empty_root):
    out = tmp_path / "f.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    args = ["frequency", "--quick", "--out", str(out), "--data-root", str(empty_root)]
    result = subprocess.run(
        [sys.executable, "-m", "selfdistill.benchmarks", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "frequency analysis on cpu" in result.stdout and " = " in result.stdout
    _check_csv(out, "frequency", {"project_float32", "original_per_epoch"})


@pytest.mark.workflow
def test_snakemake_plans_benchmarks_outside_the_default_target(tmp_path):
    def dry_run(*targets):
        cmd = ["snakemake", "-n", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path)]
        cmd += ["--configfile", str(REPO / "config.yaml"), "--cores", "2", *targets]
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    planned = dry_run("benchmarks")
    assert planned.count("rule benchmark:") == len(bm.BENCHMARKS)
    for name in bm.BENCHMARKS:
        assert f"results/benchmarks/{name}.csv" in planned
    assert "rule benchmark:" not in dry_run()
