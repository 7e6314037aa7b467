"""MNIST-1D: the loader on a tiny set made by the package's own generator (shape, dtype, [0, 1] map, determinism, the
global random state left alone), its HDF5 round trip, and the two networks of the benchmark against float64 loops."""

from __future__ import annotations

import random
import sys

import mnist1d.data
import numpy as np
import pandas as pd
import pytest
import torch

from selfdistill.data import build_corrupted_dataset, read_corrupted
from selfdistill.dataset_files import DATASET_SHAPES, FIXED_SPLITS
from selfdistill.datasets import DatasetNotFoundError, load_dataset
from selfdistill.frequency import analyse_run
from selfdistill.io import TIMING_COLUMNS
from selfdistill.models import build_model, count_parameters
from selfdistill.training import train_run

TINY = 60


@pytest.fixture
def tiny_generator(monkeypatch):
    """The package's default arguments with 60 signals instead of 5,000 (48 train / 12 test): same generator."""
    defaults = mnist1d.data.get_dataset_args

    def tiny(as_dict=False):
        args = defaults(as_dict=True)
        args["num_samples"] = TINY
        return args if as_dict else mnist1d.utils.ObjectView(args)

    monkeypatch.setattr(mnist1d.data, "get_dataset_args", tiny)


def test_default_arguments_give_the_published_split():
    """4,000 train / 1,000 test signals of length 40, as dataset_files states (without generating the 5,000)."""
    args = mnist1d.data.get_dataset_args()
    train = int(args.num_samples * args.train_split)
    assert (train, args.num_samples - train) == FIXED_SPLITS["mnist1d"]
    assert (args.num_samples, len(mnist1d.data.get_templates()["y"])) == DATASET_SHAPES["mnist1d"]
    assert args.final_seq_length == 40 and args.seed == 42 and not args.shuffle_seq


def test_loader_shapes_dtype_and_the_map_onto_unit_range(tiny_generator):
    raw = load_dataset("mnist1d")
    assert raw.train_images.shape == (48, 1, 40, 1) and raw.test_images.shape == (12, 1, 40, 1)
    assert raw.train_images.dtype == np.float32 and raw.train_labels.dtype == np.int64
    assert raw.pixel_max == 1.0 and raw.num_classes == 10
    # float64 reference: the package's own arrays, mapped by (x − min) / (max − min) over all signals, one by one
    ref = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
    both = np.concatenate([ref["x"], ref["x_test"]])
    lo, hi = float(both.min()), float(both.max())
    for images, xs in ((raw.train_images, ref["x"]), (raw.test_images, ref["x_test"])):
        for i in range(xs.shape[0]):
            for t in range(40):
                assert abs(float(images[i, 0, t, 0]) - (float(xs[i, t]) - lo) / (hi - lo)) < 1e-6
    np.testing.assert_array_equal(raw.train_labels, ref["y"])
    np.testing.assert_array_equal(raw.test_labels, ref["y_test"])
    assert raw.train_images.min() == 0.0 or raw.test_images.min() == 0.0


def test_loader_is_deterministic_and_leaves_the_global_random_state_alone(tiny_generator):
    np.random.seed(7)
    random.seed(7)
    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    first, second = load_dataset("mnist1d"), load_dataset("mnist1d")
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert getattr(first, field).tobytes() == getattr(second, field).tobytes(), field
    np.testing.assert_array_equal(np.random.get_state()[1], np_before)
    assert random.getstate() == py_before


def test_loader_takes_no_options():
    with pytest.raises(ValueError, match="dataset_options data_root do not apply to mnist1d; it takes none"):
        load_dataset("mnist1d", data_root="x")


def test_corrupted_file_keeps_the_float32_signals(tiny_generator, tmp_path):
    out = tmp_path / "data.h5"
    build_corrupted_dataset(out, "mnist1d", {"type": "pair", "rate": 0.4}, seed=0, val_fraction=0.25)
    splits, attrs = read_corrupted(out)
    raw = load_dataset("mnist1d")
    assert attrs["num_classes"] == 10 and attrs["pixel_max"] == 1.0
    assert splits["train"].images.dtype == np.float32
    for name, source in (("train", raw.train_images), ("val", raw.train_images), ("test", raw.test_images)):
        np.testing.assert_array_equal(splits[name].images, source[splits[name].index])
    # pair noise: y -> y + 1 mod 10 on the flipped rows
    train = splits["train"]
    flipped = train.is_noisy
    assert flipped.any()
    np.testing.assert_array_equal(train.labels_noisy[flipped], (train.labels_clean[flipped] + 1) % 10)


# ---------------------------------------------------------------------------------------------------- networks


def _relu(v):
    return max(v, 0.0)


def _conv1d_loop(x, w, b, stride, padding):
    """Slow float64 Conv1d: x (C_in, L) lists, w (C_out, C_in, K), b (C_out,)."""
    c_in, length = len(x), len(x[0])
    c_out, _, k = w.shape
    out_len = (length + 2 * padding - k) // stride + 1
    out = [[0.0] * out_len for _ in range(c_out)]
    for o in range(c_out):
        for j in range(out_len):
            s = float(b[o])
            for c in range(c_in):
                for q in range(k):
                    pos = j * stride + q - padding
                    if 0 <= pos < length:
                        s += float(w[o, c, q]) * x[c][pos]
            out[o][j] = s
    return out


def _params64(net):
    return {k: v.detach().double().numpy() for k, v in net.state_dict().items()}


@pytest.mark.parametrize(("arch", "expected"), [("mnist1d_mlp", 15_210), ("mnist1d_cnn", 5_210)])
def test_parameter_counts_are_the_benchmarks(arch, expected):
    """greydanus/mnist1d's classification notebook prints 15210 (MLPBase) and 5210 (ConvBase) parameters."""
    assert count_parameters(build_model(arch, (1, 1, 40), 10)) == expected


@pytest.mark.parametrize("arch", ["mnist1d_mlp", "mnist1d_cnn"])
def test_forward_shapes(arch):
    net = build_model(arch, (1, 1, 40), 10).eval()
    with torch.no_grad():
        assert net(torch.randn(5, 1, 1, 40)).shape == (5, 10)


def test_cnn_matches_float64_loops():
    torch.manual_seed(0)
    net = build_model("mnist1d_cnn", (1, 1, 40), 10, width=3).double().eval()
    p = _params64(net)
    x = torch.randn(2, 1, 1, 40, dtype=torch.float64)
    got = net(x).detach().numpy()
    for n in range(2):
        h = [list(x[n, 0, 0].numpy())]
        for name, k in (("conv1", 5), ("conv2", 3), ("conv3", 3)):
            h = _conv1d_loop(h, p[f"{name}.weight"], p[f"{name}.bias"], stride=2, padding=1)
            h = [[_relu(v) for v in row] for row in h]
        assert [len(h), len(h[0])] == [3, 5]
        flat = [v for row in h for v in row]
        ref = p["linear.bias"] + p["linear.weight"] @ np.array(flat)
        np.testing.assert_allclose(got[n], ref, rtol=1e-10, atol=1e-12)


def test_mlp_matches_float64_loops():
    torch.manual_seed(0)
    net = build_model("mnist1d_mlp", (1, 1, 40), 10, width=6).double().eval()
    p = _params64(net)
    x = torch.randn(3, 1, 1, 40, dtype=torch.float64)
    got = net(x).detach().numpy()

    def dense(w, b, v):
        return [float(b[o]) + sum(float(w[o, i]) * v[i] for i in range(len(v))) for o in range(w.shape[0])]

    for n in range(3):
        v = list(x[n].reshape(-1).numpy())
        h = [_relu(a) for a in dense(p["linear1.weight"], p["linear1.bias"], v)]
        h = [a + _relu(c) for a, c in zip(h, dense(p["linear2.weight"], p["linear2.bias"], h), strict=True)]
        np.testing.assert_allclose(got[n], dense(p["linear3.weight"], p["linear3.bias"], h), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------- training, frequency


def _train(data, out_dir, optimizer):
    out_dir.mkdir()
    return train_run(
        data,
        out_dir / "history.csv",
        out_dir / "outputs.h5",
        out_dir / "model.pt",
        mode="ce",
        seed=0,
        model={"arch": "mnist1d_cnn", "width": 4},
        train={"epochs": 2, "batch_size": 8, "lr": 0.01, "optimizer": optimizer, "schedule": "constant"},
        freq_subset=20,
        device="cpu",
        run_name=f"test/mnist1d/{optimizer}",
    )


def test_float32_signals_train_with_adam_reproducibly_and_feed_the_frequency_analysis(tiny_generator, tmp_path):
    data = tmp_path / "data.h5"
    build_corrupted_dataset(data, "mnist1d", {"type": "pair", "rate": 0.4}, seed=0, val_fraction=0.25)
    timing = list(TIMING_COLUMNS)
    first = _train(data, tmp_path / "adam_a", "adam").drop(columns=timing)
    pd.testing.assert_frame_equal(first, _train(data, tmp_path / "adam_b", "adam").drop(columns=timing))
    # Adam and SGD take different steps from the same initialisation and batches
    sgd = _train(data, tmp_path / "sgd", "sgd").drop(columns=timing)
    assert not np.allclose(first["train_loss"], sgd["train_loss"])
    table = analyse_run(data, tmp_path / "adam_a" / "outputs.h5", tmp_path / "f.csv", [0.05, 0.1], "median")
    assert set(table["split"]) == {"train_subset", "test"}
    assert np.isfinite(table["ratio"]).all()


def test_missing_package_is_one_line_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(DatasetNotFoundError, match=r"^mnist1d needs the mnist1d package.*pip install"):
        load_dataset("mnist1d")


def test_small_cnn_on_a_signal_is_one_line_naming_the_networks_that_fit():
    with pytest.raises(ValueError, match=r"small_cnn needs inputs of at least 2×2 pixels .* got 1×40; .*mnist1d_cnn"):
        build_model("small_cnn", (1, 1, 40), 10)
