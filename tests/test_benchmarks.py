"""Benchmarks (benchmarks/ at the repository root) at tiny sizes: the code paths, the CSVs, the correctness of every
baseline (no timing checks), and that their settings come from the study configs."""

from __future__ import annotations

import ast
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from fake_cifar import write_fake_cifar10
from helpers import snakemake

from benchmarks import cifar_epoch, common, input_pipeline, train_step
from benchmarks import frequency as freq_bm
from selfdistill.batches import DeviceImages, channel_stats
from selfdistill.dataset_files import dataset_problem
from selfdistill.datasets import DatasetNotFoundError
from selfdistill.frequency import frequency_table, median_sq_dist, pairwise_sq_dists
from selfdistill.models import build_model, count_parameters
from selfdistill.planning import library_files

REPO = Path(__file__).resolve().parents[1]
ORIGINAL = yaml.safe_load((REPO / "config" / "cifar10_seed.yaml").read_text())
SWEEP = yaml.safe_load((REPO / "config" / "cifar10_sweep.yaml").read_text())
REFERENCE_ARCH = ORIGINAL["model"]["arch"]
LIBRARY = REPO / "src" / "selfdistill"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def empty_root(tmp_path) -> Path:
    """A data root without CIFAR-10 files: the benchmarks fall back to synthetic images."""
    root = tmp_path / "data"
    root.mkdir()
    return root


def _check_csv(path: Path, benchmark: str, variants: set[str]) -> pd.DataFrame:
    df = pd.read_csv(path)
    assert list(df.columns) == list(common.COLUMNS)
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
    """The benchmark makes its batches with batches.make_batch, in the training loop's order and draws."""
    images, _ = common.synthetic_images(300, seed=2)
    mean, std = channel_stats(images, 255.0)
    dev_images = DeviceImages(images, torch.device(device), 255.0, mean, std)
    seen = []
    real = input_pipeline.make_batch

    def spy(images, idx, padding, generator):
        seen.append((idx.clone(), padding))
        return real(images, idx, padding, generator)

    monkeypatch.setattr(input_pipeline, "make_batch", spy)
    last = input_pipeline._device_batches(dev_images, 300, 64, 4, seed=1)()
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
    images, labels = common.synthetic_images(6, seed=3)
    mean, std = channel_stats(images, 255.0)
    dev_images = DeviceImages(images, torch.device("cpu"), 255.0, mean, std)
    dataset = input_pipeline.original_dataset(images, labels, mean.tolist(), std.tolist(), 4)
    torch.manual_seed(0)
    padded = torch.nn.functional.pad(dev_images.data, (4, 4, 4, 4))
    for i in range(len(images)):
        x, y = dataset[i]
        assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and y == labels[i]
        crops = torch.stack([padded[i, :, dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)])
        candidates = dev_images.normalise(torch.cat([crops, crops.flip(3)]))
        err = (candidates - x).abs().amax(dim=(1, 2, 3)).min()
        assert err < 1e-5
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True)
    xb, _ = next(iter(loader))
    device_batch = input_pipeline._device_batches(dev_images, 4, 4, 4, seed=0)()
    assert xb.shape == device_batch.shape == (4, 3, 32, 32)
    assert xb.dtype == device_batch.dtype == torch.float32


def test_synthetic_images_shape_and_classes():
    images, labels = common.synthetic_images(50, seed=1)
    assert images.shape == (50, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and set(labels) <= set(range(10))
    got, got_labels, data = common.load_images("no/such/root", 20, train=True, seed=1)
    assert data == "synthetic"
    assert got.shape == (20, 32, 32, 3) and got_labels.shape == (20,)


class FakeCIFAR10(input_pipeline.PilImages):
    """Stands in for torchvision's CIFAR10 (same constructor, ``data``, ``targets`` and item format)."""

    def __init__(self, root, train=True, download=False, transform=None):
        assert Path(root, "cifar-10-batches-py").is_dir() and not download
        images, labels = common.synthetic_images(300 if train else 100, seed=9)
        super().__init__(images, labels.tolist(), transform)


def test_cifar10_files_are_used_when_present(tmp_path, monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    root = tmp_path / "data"
    (root / "cifar-10-batches-py").mkdir(parents=True)
    images, labels, data = common.load_images(root, 50, train=False)
    assert data == "cifar10" and images.shape == (50, 32, 32, 3)
    assert np.array_equal(labels, FakeCIFAR10(root, train=False).targets[:50])
    df = input_pipeline.input_pipeline_benchmark(
        None, n_images=128, batch_size=64, workers=0, device="cpu", data_root=root
    )
    assert (df["data"] == "cifar10").all()


def test_input_pipeline_quick(tmp_path, empty_root):
    out = tmp_path / "input_pipeline.csv"
    df = input_pipeline.input_pipeline_benchmark(out, n_images=200, batch_size=64, device="cpu", data_root=empty_root)
    read = _check_csv(out, "input_pipeline", {"torchvision_dataloader", "device"})
    # the baseline, and the device path at 1 and 2 threads
    assert len(read) == len(df) == 3
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
    archs = ["small_cnn", REFERENCE_ARCH]
    train_step.train_step_benchmark(out, archs=archs, batch_sizes=(2, 4), warmup=0, steps=1, device="cpu", threads=1)
    df = _check_csv(out, "train_step", set(archs))
    assert len(df) == 4 and set(df["batch_size"]) == {2, 4}
    assert (df["n_images"] == df["batch_size"]).all()
    ref = df[df["variant"] == REFERENCE_ARCH]
    np.testing.assert_allclose(ref["ratio"], 1.0)
    np.testing.assert_allclose(df[df["batch_size"] == 2]["ratio_batch"], 1.0)


def test_train_step_without_the_reference_has_nan_ratio(tmp_path):
    df = train_step.train_step_benchmark(None, archs=["small_cnn"], batch_sizes=(2,), warmup=0, steps=1, device="cpu")
    assert math.isnan(df["ratio"].iloc[0]) and df["ratio_batch"].iloc[0] == 1.0


# ----------------------------------------------------------------------------------------------------------------
# Frequency analysis
# ----------------------------------------------------------------------------------------------------------------


def loop_ratio(x, f, delta):
    """ratio by explicit Python loops in float64 (distances, kernel rows, filter, norms)."""
    n = len(x)
    d2 = [[sum((a - b) ** 2 for a, b in zip(x[i], x[j])) for j in range(n)] for i in range(n)]
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
    got = freq_bm.original_frequency_ratio(x, outputs, deltas)
    assert got.shape == (3, 3)
    ref = [[loop_ratio(x, outputs[e], d) for d in deltas] for e in range(3)]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_project_and_original_agree_on_tiny_data():
    images, labels = common.synthetic_images(40, seed=5)
    x = images.reshape(40, -1) / 255.0
    outputs = freq_bm.synthetic_logits(labels, epochs=5, seed=2)
    deltas = np.geomspace(0.02, 1.0, 4) * median_sq_dist(pairwise_sq_dists(x))
    base = freq_bm.original_frequency_ratio(x, outputs, deltas)
    for precision, tol in (("float64", 1e-12), ("float32", 1e-6)):
        table = frequency_table(x, outputs, deltas, precision=precision)
        got = table["ratio"].to_numpy().reshape(5, 4)
        np.testing.assert_allclose(got, base, rtol=0, atol=tol, err_msg=precision)


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
    freq_bm.frequency_benchmark(out, n=60, epochs=3, n_deltas=2, repeats=1, threads=1, data_root=empty_root)
    df = _check_csv(out, "frequency", {"project_float32", "original_per_epoch"})
    assert (df["n_epochs"] == 3).all() and (df["n_deltas"] == 2).all()
    assert (df["n_images"] == 60).all() and (df["data"] == "synthetic").all()
    assert (df["max_abs_diff"] <= 1e-6).all()
    assert df.set_index("variant").loc["original_per_epoch", "ratio"] == 1.0


def test_synthetic_logits_drift():
    labels = np.arange(20) % 10
    z = freq_bm.synthetic_logits(labels, epochs=6, seed=0)
    assert z.shape == (6, 20, 10) and z.dtype == np.float32
    assert not np.allclose(z[0], z[-1])


# ----------------------------------------------------------------------------------------------------------------
# One real CIFAR-10 epoch
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_cifar_root(tmp_path_factory) -> Path:
    """CIFAR-10 in the exact on-disk format: 5 x 20 training images (90 train / 10 val), 20 test images."""
    root = tmp_path_factory.mktemp("cifar") / "data"
    write_fake_cifar10(root, per_batch=20, n_test=20)
    return root


@pytest.fixture
def package_logging():
    """Restore the package logger after a test whose ``main()`` pointed it at a file or a captured stream."""
    logger = logging.getLogger("selfdistill")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        if handler not in saved[0]:
            handler.close()
    for handler in saved[0]:
        logger.addHandler(handler)
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_cifar_epoch_on_fake_cifar_files(tmp_path, fake_cifar_root, monkeypatch):
    """All three networks, one epoch each through train_run, on CIFAR-10 files read by torchvision's loader."""
    calls = []
    real = cifar_epoch.train_run

    def spy(data_path, *args, **kwargs):
        calls.append(kwargs)
        return real(data_path, *args, **kwargs)

    monkeypatch.setattr(cifar_epoch, "train_run", spy)
    out = tmp_path / "cifar_epoch.csv"
    common.run_benchmark(
        "cifar_epoch",
        out,
        device="cpu",
        threads=1,
        data_root=fake_cifar_root,
        verify_md5=False,
        max_train_images=40,
    )
    archs = [ORIGINAL["model"]["arch"], SWEEP["model"]["arch"], "fast_cnn"]
    df = _check_csv(out, "cifar_epoch", set(archs))
    assert list(df["variant"]) == archs
    assert (df["data"] == "cifar10_unverified").all() and (df["device"] == "cpu").all()
    assert (df["n_images"] == 40).all() and (df["batch_size"] == ORIGINAL["train"]["batch_size"]).all()
    assert (df["n_epochs"] == 1).all() and (df["throughput_unit"] == "images/s").all()
    np.testing.assert_allclose(df["throughput"], 40 / df["seconds"])
    assert df["test_acc"].between(0, 1).all()
    for arch, n in zip(df["variant"], df["parameters"]):
        assert n == count_parameters(build_model(arch, (3, 32, 32), 10))
    ref = df.set_index("variant")["ratio"]
    assert ref[REFERENCE_ARCH] == pytest.approx(1.0)
    assert df["ratio_batch"].isna().all() and df["max_abs_diff"].isna().all()
    # each network trained with its study config's train settings and stored-output subsets, on the benchmark's
    # device; fast_cnn (in no config) with the sweep's
    assert [c["model"]["arch"] for c in calls] == archs
    for call, study in zip(calls, (ORIGINAL, SWEEP, SWEEP)):
        assert call["train"] == {**common.study_train(study), "epochs": 1}
        assert call["freq_subset"] == study["frequency"]["train_subset"]
        assert call["freq_test_subset"] == study["frequency"]["test_subset"]
        assert call["device"] == "cpu" and call["mode"] == "ce"


def test_cifar_epoch_command_line_on_fake_files(tmp_path, fake_cifar_root, capsys, package_logging):
    """The whole training split (90 images), one network, through the command line's options."""
    out = tmp_path / "e.csv"
    cifar_epoch.main(
        [
            "--out",
            str(out),
            "--data-root",
            str(fake_cifar_root),
            "--device",
            "cpu",
            "--threads",
            "1",
            "--archs",
            "fast_cnn",
            "--epochs",
            "2",
            "--no-verify-md5",
            "--log",
            str(tmp_path / "e.log"),
        ]
    )
    df = _check_csv(out, "cifar_epoch", {"fast_cnn"})
    assert df["n_images"].tolist() == [90] and df["n_epochs"].tolist() == [2]
    assert math.isnan(df["ratio"].iloc[0])
    assert "CIFAR-10 on cpu" in capsys.readouterr().out
    log_text = (tmp_path / "e.log").read_text()
    # the training run's progress is in the benchmark's log
    assert "epoch 2/2" in log_text


def test_cifar_epoch_needs_the_real_files(tmp_path, empty_root, fake_cifar_root, capsys, package_logging):
    message = dataset_problem("cifar10", {"data_root": str(empty_root)})
    assert message and "\n" not in message
    with pytest.raises(DatasetNotFoundError) as err:
        cifar_epoch.cifar_epoch_benchmark(tmp_path / "x.csv", data_root=empty_root)
    assert str(err.value) == message
    assert not (tmp_path / "x.csv").exists()
    # the fake files are not the real ones
    with pytest.raises(DatasetNotFoundError, match="md5"):
        cifar_epoch.cifar_epoch_benchmark(None, data_root=fake_cifar_root, device="cpu")
    with pytest.raises(SystemExit) as exit_info:
        cifar_epoch.main(
            [
                "--data-root",
                str(empty_root),
                "--out",
                str(tmp_path / "y.csv"),
            ]
        )
    assert exit_info.value.code == 1
    assert message in capsys.readouterr().err
    # the cifar_epoch options belong to it alone
    with pytest.raises(SystemExit):
        freq_bm.main(["--archs", "fast_cnn"])


# ----------------------------------------------------------------------------------------------------------------
# Study settings: read from config/*.yaml, not restated
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def edited_configs(tmp_path) -> Path:
    """Copies of the two CIFAR-10 study configs with other settings than the real ones."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    original = yaml.safe_load((REPO / "config" / "cifar10_seed.yaml").read_text())
    original["model"]["arch"] = "small_cnn"
    original["train"].update(batch_size=6, crop_padding=2, lr=0.3, momentum=0.5, weight_decay=3e-3, nesterov=True)
    original["frequency"].update(test_subset=30, deltas=[0.1, 0.4])
    sweep = yaml.safe_load((REPO / "config" / "cifar10_sweep.yaml").read_text())
    sweep["train"].update(lr=0.07, eval_batch_size=256)
    (config_dir / "cifar10_seed.yaml").write_text(yaml.safe_dump(original))
    (config_dir / "cifar10_sweep.yaml").write_text(yaml.safe_dump(sweep))
    return config_dir


def test_cifar_epoch_reads_its_settings_from_the_study_configs(edited_configs):
    original = yaml.safe_load((edited_configs / "cifar10_seed.yaml").read_text())
    sweep = yaml.safe_load((edited_configs / "cifar10_sweep.yaml").read_text())
    assert cifar_epoch.cifar_epoch_archs(edited_configs) == ["small_cnn", sweep["model"]["arch"], "fast_cnn"]
    assert cifar_epoch.cifar_epoch_settings("small_cnn", 3, edited_configs) == {
        **common.study_train(original),
        "epochs": 3,
    }
    for arch in (sweep["model"]["arch"], "fast_cnn"):
        settings = cifar_epoch.cifar_epoch_settings(arch, 2, edited_configs)
        assert settings == {**common.study_train(sweep), "epochs": 2}
        assert settings["lr"] == 0.07 and settings["eval_batch_size"] == 256
    # and the real configs by default
    assert cifar_epoch.cifar_epoch_archs()[0] == REFERENCE_ARCH
    assert cifar_epoch.cifar_epoch_settings(REFERENCE_ARCH) == {**common.study_train(ORIGINAL), "epochs": 1}
    assert cifar_epoch.cifar_epoch_settings("fast_cnn") == {**common.study_train(SWEEP), "epochs": 1}


def test_input_pipeline_reads_batch_size_and_padding_from_the_study_config(edited_configs, empty_root, monkeypatch):
    paddings = set()
    real = input_pipeline.make_batch

    def spy(images, idx, padding, generator):
        paddings.add(padding)
        return real(images, idx, padding, generator)

    monkeypatch.setattr(input_pipeline, "make_batch", spy)
    df = input_pipeline.input_pipeline_benchmark(
        None,
        n_images=24,
        workers=0,
        repeats=1,
        device="cpu",
        data_root=empty_root,
        config=edited_configs / "cifar10_seed.yaml",
    )
    assert (df["batch_size"] == 6).all() and paddings == {2}


def test_train_step_reads_network_batch_and_sgd_from_the_study_config(edited_configs, monkeypatch):
    optimisers = []
    real = torch.optim.SGD

    def spy(params, **kwargs):
        optimisers.append(kwargs)
        return real(params, **kwargs)

    monkeypatch.setattr(torch.optim, "SGD", spy)
    df = train_step.train_step_benchmark(
        None, archs=["small_cnn"], warmup=0, steps=1, device="cpu", config=edited_configs / "cifar10_seed.yaml"
    )
    # the study's batch size and four times it
    assert sorted(df["batch_size"]) == [6, 24]
    # small_cnn is this study's network: the reference
    np.testing.assert_allclose(df["ratio"], 1.0)
    assert optimisers == [{"lr": 0.3, "momentum": 0.5, "weight_decay": 3e-3, "nesterov": True}]


def test_frequency_reads_its_sizes_from_the_study_config(edited_configs, empty_root, monkeypatch):
    seen = []
    real = freq_bm.frequency_table

    def spy(x, outputs, deltas, **kwargs):
        seen.append((len(x), np.asarray(deltas)))
        return real(x, outputs, deltas, **kwargs)

    monkeypatch.setattr(freq_bm, "frequency_table", spy)
    config = edited_configs / "cifar10_seed.yaml"
    df = freq_bm.frequency_benchmark(None, epochs=2, n_deltas=3, repeats=1, data_root=empty_root, config=config)
    assert (df["n_images"] == 30).all()
    n, deltas = seen[0]
    assert n == 30
    # the study's delta range
    np.testing.assert_allclose(deltas[-1] / deltas[0], 0.4 / 0.1)


# ----------------------------------------------------------------------------------------------------------------
# Outside the library
# ----------------------------------------------------------------------------------------------------------------


def test_the_library_does_not_import_the_benchmarks():
    assert not (LIBRARY / "benchmarks.py").exists()
    for path in LIBRARY.glob("*.py"):
        imported = {
            node.module or ""
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.level == 0
        }
        imported |= {
            alias.name
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        assert not any(m == "benchmarks" or m.startswith("benchmarks.") for m in imported), path


def test_benchmark_rule_inputs_cover_the_code_and_configs_the_benchmarks_read():
    """The rule's library inputs (read from the benchmarks' imports) hold every module Python really loads when
    the benchmarks are imported; the rule lists the configs they read."""
    code = (
        "import sys; import benchmarks.common, benchmarks.input_pipeline, benchmarks.train_step, "
        "benchmarks.frequency, benchmarks.cifar_epoch; "
        "print(' '.join(m.split('.')[-1] if '.' in m else '__init__' for m in sys.modules if m.split('.')[0] == "
        "'selfdistill'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True).stdout
    listed = {Path(p).stem for script in (REPO / "benchmarks").glob("*.py") for p in library_files(script)}
    assert set(out.split()) <= listed, set(out.split()) - listed
    rule = (REPO / "workflow" / "rules" / "benchmarks.smk").read_text()
    for name in {common.ORIGINAL_CONFIG.name, *cifar_epoch.STUDY_CONFIGS}:
        assert f'"{name}"' in rule, name


# ----------------------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------------------


def test_run_benchmark_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown benchmark"):
        common.run_benchmark("nope")


def test_command_line_quick(tmp_path, empty_root):
    out = tmp_path / "f.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    args = ["--quick", "--out", str(out), "--data-root", str(empty_root)]
    # as documented: from the repository root
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.frequency", *args],
        cwd=REPO,
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
@pytest.mark.slow
def test_snakemake_plans_benchmarks_outside_the_default_target(tmp_path):
    def dry_run(*targets):
        return snakemake(tmp_path, "-n", *targets, configfile=REPO / "config.yaml", timeout=300).stdout

    planned = dry_run("benchmarks")
    assert planned.count("rule benchmark:") == len(common.DEFAULT_BENCHMARKS)
    for name in common.DEFAULT_BENCHMARKS:
        assert f"results/benchmarks/{name}.csv" in planned
    # the CIFAR-10 epoch needs the real files: only built when named
    assert "results/benchmarks/cifar_epoch.csv" not in planned
    planned = dry_run("results/benchmarks/cifar_epoch.csv")
    assert planned.count("rule benchmark:") == 1
    assert "rule benchmark:" not in dry_run()
