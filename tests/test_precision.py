"""train.precision: its resolution per device, float32 Shake-Shake coefficients, the float32 head, and the records
(outputs.h5, model.pt, run.json) that say which precision a run computed in. CPU only: the CUDA branch is tested with
an injected answer to "does this GPU compute bf16 natively?"."""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pytest
import torch
import yaml

from selfdistill import device as devices
from selfdistill import models, training
from selfdistill.device import PRECISIONS, RunDevice, apply_precision, configure, resolve_precision
from selfdistill.models import ARCHITECTURES, Float32Linear, build_model, float32_head
from selfdistill.schema import schema
from selfdistill.training import device_network, train_run

CIFAR = (3, 32, 32)
SHAKE_ARCHS = ("shake_shake_26_2x32d", "shake_shake_26_2x32d_original")
#: small widths so that every architecture runs in well under a second on a CPU
SMALL_WIDTH = {
    "mlp": 16,
    "small_cnn": 4,
    "preact_resnet18": 4,
    "fast_cnn": 4,
    "mnist1d_mlp": 8,
    "mnist1d_cnn": 4,
    **dict.fromkeys(SHAKE_ARCHS, 4),
}


# ----------------------------------------------------------------------------------------------------- resolution


@pytest.mark.parametrize("setting", PRECISIONS)
def test_the_cpu_computes_in_float32_whatever_the_setting(setting):
    # the CPU never asks whether bf16 is native
    assert resolve_precision(setting, "cpu", bf16_native=lambda: pytest.fail("asked")) == "float32"


@pytest.mark.parametrize(
    ("setting", "native", "expected"),
    [
        ("auto", True, "bf16"),
        ("auto", False, "float32"),
        ("bf16", True, "bf16"),
        ("bf16", False, "float32"),
        ("tf32", True, "tf32"),
        ("tf32", False, "tf32"),
        ("float32", True, "float32"),
        ("float32", False, "float32"),
    ],
)
def test_cuda_resolution_table(setting, native, expected):
    assert resolve_precision(setting, "cuda", bf16_native=lambda: native) == expected


def test_resolution_logs_one_line_when_the_setting_is_not_honoured(caplog):
    with caplog.at_level(logging.INFO, logger="selfdistill.device"):
        for setting in ("auto", "float32"):
            resolve_precision(setting, "cpu")
        assert caplog.records == []
        resolve_precision("bf16", "cpu")
        resolve_precision("tf32", "cpu")
        resolve_precision("bf16", "cuda", bf16_native=lambda: False)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "bf16" in messages[0] and "float32" in messages[0]
    assert "tf32" in messages[1]
    assert "no native bf16" in messages[2]


def test_unknown_precision_is_an_error():
    with pytest.raises(ValueError, match="train.precision"):
        resolve_precision("fp16", "cuda", bf16_native=lambda: True)


@pytest.mark.parametrize("setting", PRECISIONS)
def test_configure_on_the_cpu_is_float32_without_autocast(setting):
    threads = torch.get_num_threads()
    flags = _tf32_flags()
    try:
        dev = configure(torch.device("cpu"), threads, setting)
    finally:
        torch.set_num_threads(threads)
    assert dev.precision == "float32" and not dev.bf16
    with dev.autocast():
        assert not torch.is_autocast_enabled("cpu")
    # the CPU path leaves the process's float32 math alone
    assert _tf32_flags() == flags


def _tf32_flags() -> tuple:
    return (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )


@pytest.fixture
def restore_tf32_flags():
    flags = _tf32_flags()
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, matmul = flags
    torch.set_float32_matmul_precision(matmul)


@pytest.mark.usefixtures("restore_tf32_flags")
def test_float32_switches_tf32_off_and_tf32_on():
    # PyTorch's defaults let cuDNN use TF32: float32 must switch it off explicitly
    apply_precision("tf32")
    assert _tf32_flags() == (True, True, "high")
    apply_precision("float32")
    assert _tf32_flags() == (False, False, "highest")
    # bf16: PyTorch's defaults for what autocast leaves in float32 (today's behaviour)
    apply_precision("bf16")
    assert _tf32_flags() == (False, True, "highest")
    with pytest.raises(ValueError):
        apply_precision("auto")


def test_configure_on_cuda_resolves_and_applies(monkeypatch, restore_tf32_flags):
    """The CUDA branch of configure, with the GPU calls faked: it sets the device, autotuning and the precision."""
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: calls.append(dev))
    monkeypatch.setattr(devices, "_cuda_bf16_native", lambda: True)
    benchmark = torch.backends.cudnn.benchmark
    try:
        assert configure(torch.device("cuda:0"), 1, "auto").precision == "bf16"
        dev = configure(torch.device("cuda:0"), 1, "float32")
        assert torch.backends.cudnn.benchmark is True
    finally:
        torch.backends.cudnn.benchmark = benchmark
    assert dev.precision == "float32" and calls == [torch.device("cuda:0")] * 2
    assert _tf32_flags() == (False, False, "highest")


# ---------------------------------------------------------------------------------------------- shake-shake α, β


@pytest.mark.parametrize("arch", SHAKE_ARCHS)
def test_shake_coefficients_are_float32_under_bf16_autocast(arch, monkeypatch):
    draws = []
    original = models.uniform_per_sample

    def spy(like):
        drawn = original(like)
        draws.append((like.dtype, drawn.dtype))
        return drawn

    monkeypatch.setattr(models, "uniform_per_sample", spy)
    torch.manual_seed(0)
    net = build_model(arch, CIFAR, 10, width=4).train()
    x = torch.randn(3, *CIFAR)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    out.float().sum().backward()
    # α and β for each of the 12 blocks, each drawn from bf16 branches as float32 numbers
    assert len(draws) == 2 * 12
    assert all(branch == torch.bfloat16 for branch, _ in draws)
    assert all(drawn == torch.float32 for _, drawn in draws)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch", SHAKE_ARCHS)
def test_shake_float32_training_step_is_bit_identical_to_drawing_in_the_branch_dtype(arch, monkeypatch):
    """In float32 the coefficients are the same draws from the same generator as when they followed the branch's
    dtype: CPU results do not change."""

    def step() -> tuple[torch.Tensor, list[torch.Tensor]]:
        torch.manual_seed(0)
        net = build_model(arch, CIFAR, 10, width=4).train()
        out = net(torch.randn(4, *CIFAR))
        out.square().sum().backward()
        return out.detach(), [p.grad for p in net.parameters()]

    now = step()
    monkeypatch.setattr(
        models,
        "uniform_per_sample",
        lambda like: torch.rand(like.shape[0], 1, 1, 1, device=like.device, dtype=like.dtype),
    )
    before = step()
    assert torch.equal(now[0], before[0])
    assert all(torch.equal(a, b) for a, b in zip(now[1], before[1], strict=True))


# --------------------------------------------------------------------------------------------------- float32 head


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_float32_head_is_bit_identical_in_float32_and_keeps_the_state_dict(arch):
    torch.manual_seed(0)
    net = build_model(arch, CIFAR, 10, width=SMALL_WIDTH[arch]).eval()
    torch.manual_seed(0)
    wrapped = float32_head(build_model(arch, CIFAR, 10, width=SMALL_WIDTH[arch])).eval()
    assert sum(isinstance(m, Float32Linear) for m in wrapped.modules()) == 1
    assert list(net.state_dict()) == list(wrapped.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), wrapped.state_dict().values(), strict=True))
    x = torch.randn(2, *CIFAR)
    with torch.no_grad():
        assert torch.equal(net(x), wrapped(x))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_float32_head_gives_float32_logits_under_bf16_autocast(arch):
    torch.manual_seed(0)
    net = float32_head(build_model(arch, CIFAR, 10, width=SMALL_WIDTH[arch])).train()
    x = torch.randn(2, *CIFAR)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(x)
        assert logits.dtype == torch.float32
        # not merely float32 tensors holding bf16 numbers
        assert not torch.equal(logits, logits.bfloat16().float())
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_device_network_adds_the_float32_head_only_in_bf16():
    cpu = torch.device("cpu")
    for precision, expected in (("float32", 0), ("tf32", 0), ("bf16", 1)):
        net = device_network(build_model("mlp", (1, 8, 8), 10, width=8), RunDevice(cpu, precision))
        assert sum(isinstance(m, Float32Linear) for m in net.modules()) == expected, precision


# ------------------------------------------------------------------------------------------------------ records


def _train(data, out, precision="auto"):
    out.mkdir()
    return train_run(
        data,
        out / "history.csv",
        out / "outputs.h5",
        out / "model.pt",
        mode="ce",
        seed=0,
        model={"arch": "mlp", "width": 32, "depth": 1},
        train={"epochs": 2, "batch_size": 64, "lr": 0.05, "precision": precision},
        freq_subset=50,
        out_early_stopped=out / "model_early_stopped.pt",
        out_run=out / "run.json",
        device="cpu",
        run_name=f"test/{precision}",
    )


def test_a_run_records_its_precision(digits_pair40, tmp_path):
    _train(digits_pair40, tmp_path / "run", precision="bf16")
    out = tmp_path / "run"
    record = json.loads((out / "run.json").read_text())
    assert record["run"] == "test/bf16" and record["mode"] == "ce" and record["seed"] == 0
    assert record["device"] == "cpu" and record["device_name"] == RunDevice(torch.device("cpu")).name()
    # the CPU ignores the bf16 setting: the record says what the run really computed in
    assert record["precision"] == "float32" and record["precision_setting"] == "bf16"
    assert record["compile"] == "none"
    with h5py.File(out / "outputs.h5") as h5:
        assert h5.attrs["precision"] == "float32"
    for name in ("model.pt", "model_early_stopped.pt"):
        saved = torch.load(out / name, weights_only=True)
        assert saved["precision"] == "float32" and saved["device"] == "cpu", name
    assert not list(out.glob("*.tmp*")) and not (out / "checkpoint").exists()


def test_a_bf16_run_stores_float32_logits(digits_pair40, tmp_path, monkeypatch):
    """A bf16 run (forced on the CPU, where autocast works too): its stored logits are float32 numbers from the
    float32 head, and every record says bf16."""
    monkeypatch.setattr(devices, "resolve_precision", lambda setting, device_type: "bf16")
    _train(digits_pair40, tmp_path / "run", precision="bf16")
    out = tmp_path / "run"
    assert json.loads((out / "run.json").read_text())["precision"] == "bf16"
    assert torch.load(out / "model.pt", weights_only=True)["precision"] == "bf16"
    with h5py.File(out / "outputs.h5") as h5:
        assert h5.attrs["precision"] == "bf16"
        logits = h5["test/logits"][()]
    assert logits.dtype == np.float32
    as_bf16 = torch.from_numpy(logits).bfloat16().float().numpy()
    assert (logits != as_bf16).mean() > 0.5
    # without the float32 head the same run's logits are bf16 numbers
    monkeypatch.setattr(training, "float32_head", lambda net: net)
    _train(digits_pair40, tmp_path / "without_head", precision="bf16")
    with h5py.File(tmp_path / "without_head" / "outputs.h5") as h5:
        logits = h5["test/logits"][()]
    assert np.array_equal(logits, torch.from_numpy(logits).bfloat16().float().numpy())


# ------------------------------------------------------------------------------------------------------- config


def test_schema_precision_default_and_values():
    """The library's settings left without a precision take the schema's default, auto; the schema offers exactly
    the precisions the device module knows."""
    prop = schema()["properties"]["train"]["properties"]["precision"]
    assert prop["default"] == training.train_settings({}).precision == "auto"
    assert prop["enum"] == list(PRECISIONS)


def test_the_original_study_trains_in_float32(repo):
    text = (repo / "config/original.yaml").read_text()
    assert yaml.safe_load(text)["train"]["precision"] == "float32"
    assert "GTX 980" in text
    for other in ("config.yaml", *(p.relative_to(repo) for p in (repo / "config").glob("*.yaml"))):
        if str(other) != "config/original.yaml":
            assert "precision" not in (yaml.safe_load((repo / other).read_text()).get("train") or {}), other
