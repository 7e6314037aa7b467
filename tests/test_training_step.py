"""The training step (selfdistill.training_step): eager it is the plain loop, bit for bit; traced and compiled it
takes Shake-Shake's α/β as inputs, the last smaller batch and per-sample mode state; where compilation is not
supported or fails it trains eagerly after one log line; a compiled run resumes exactly after a signal."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import torch
from helpers import DISTILL

import selfdistill.training_step as ts
from selfdistill.device import configure
from selfdistill.io import TIMING_COLUMNS, setup_logging
from selfdistill.models import build_model, draw_shake_noise, shake_blocks
from selfdistill.modes import build_mode
from selfdistill.signals import Preempted
from selfdistill.training import train_run

SHAKE = "shake_shake_26_2x32d_original"
#: three batches of 16, 16 and 8 rows: the last one smaller
BATCHES = [torch.arange(0, 16), torch.arange(16, 32), torch.arange(32, 40)]
CPU = configure(torch.device("cpu"), 1, "float32")


def _setup(arch: str, mode_name: str):
    """A seeded tiny network, its mode and inputs (8×8, one channel, 10 classes, 40 samples)."""
    torch.manual_seed(0)
    net = build_model(arch, (1, 8, 8), 10, width=2 if "shake" in arch else 8)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, 1, 8, 8, generator=gen)
    y = torch.randint(0, 10, (40,), generator=gen)
    return net, build_mode(mode_name, y, 10, dict(DISTILL)), x, y


def _plain_loop(arch: str, mode_name: str):
    """The loop as the engine ran it before the step had its own module: the network draws α/β itself, mode.loss."""
    net, mode, x, y = _setup(arch, mode_name)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net.train()
    torch.manual_seed(7)
    for idx in BATCHES:
        loss = mode.loss(net(x[idx]), y[idx], idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net, mode


def _with_step(arch: str, mode_name: str, compile_mode: str = "none"):
    net, mode, x, y = _setup(arch, mode_name)
    step = ts.TrainingStep(net, mode, CPU, compile_mode)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net.train()
    torch.manual_seed(7)
    for idx in BATCHES:
        step(x[idx], y[idx], idx)
        opt.step()
    return net, mode, step


def _assert_same(a, b, exact: bool = True) -> None:
    (net_a, mode_a), (net_b, mode_b) = a[:2], b[:2]
    for (name, u), v in zip(net_a.state_dict().items(), net_b.state_dict().values(), strict=True):
        ok = torch.equal(u, v) if exact else torch.allclose(u.float(), v.float(), rtol=1e-4, atol=1e-5)
        assert ok, name
    for key, u in mode_a.state_dict().items():
        v = mode_b.state_dict()[key]
        if isinstance(u, torch.Tensor):
            assert torch.equal(u, v) if exact else torch.allclose(u, v, rtol=1e-4, atol=1e-5), key
        else:
            assert u == v, key


@pytest.mark.parametrize("mode_name", ["ce", "self_distill", "self_distill_seq", "interp_stored", "interp_agree"])
@pytest.mark.parametrize("arch", [SHAKE, "small_cnn"])
def test_eager_step_is_the_plain_loop_bit_for_bit(arch, mode_name):
    _assert_same(_plain_loop(arch, mode_name), _with_step(arch, mode_name))


def test_shake_noise_differs_between_steps_and_repeats_with_the_seed():
    net = build_model(SHAKE, (1, 8, 8), 10, width=2)
    n_blocks = len(shake_blocks(net))
    assert n_blocks == 12
    torch.manual_seed(3)
    first, second = (draw_shake_noise(n_blocks, 5, torch.device("cpu")) for _ in range(2))
    assert first.shape == (12, 2, 5, 1, 1, 1)
    assert not torch.equal(first, second)
    # α and β of one block differ, and so do two blocks' α
    assert not torch.equal(first[0, 0], first[0, 1]) and not torch.equal(first[0, 0], first[1, 0])
    torch.manual_seed(3)
    assert torch.equal(draw_shake_noise(n_blocks, 5, torch.device("cpu")), first)
    assert draw_shake_noise(0, 5, torch.device("cpu")) is None


@pytest.mark.parametrize(
    ("arch", "backend", "mode_name"),
    [
        ("small_cnn", "eager", "interp_stored"),
        pytest.param(SHAKE, "eager", "interp_stored", marks=pytest.mark.slow),
        pytest.param(SHAKE, "aot_eager", "interp_stored", marks=pytest.mark.slow),
        pytest.param(SHAKE, "aot_eager", "self_distill_seq", marks=pytest.mark.slow),
    ],
)
def test_traced_step_takes_noise_state_and_a_smaller_last_batch(monkeypatch, arch, backend, mode_name):
    """torch.compile's graph capture without the C++ code generation, which is slow on a CPU (dynamo; with
    ``aot_eager`` also AOTAutograd's backward graph; 20-35 s each for Shake-Shake): Shake-Shake with α/β as inputs,
    a mode with per-sample state, a second graph for the last batch."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, backend=backend, dynamic=False))
    monkeypatch.setattr(ts, "compile_unsupported", lambda dev: None)
    torch._dynamo.reset()
    traced = _with_step(arch, mode_name, "default")
    assert traced[2].compile_mode == "default"
    assert traced[2]._compiled_sizes == {16, 8}
    _assert_same(_with_step(arch, mode_name), traced, exact=False)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == ts.__name__ and r.levelno >= logging.WARNING]


def test_unsupported_compile_trains_eagerly_after_one_line(monkeypatch, caplog):
    monkeypatch.setattr(ts, "compile_unsupported", lambda dev: "simulated: no compiler")
    with caplog.at_level(logging.INFO, logger="selfdistill"):
        fallback = _with_step("small_cnn", "self_distill_seq", "reduce-overhead")
    assert _warnings(caplog) == [
        "train.compile reduce-overhead is not supported here (simulated: no compiler); training eagerly"
    ]
    assert fallback[2].compile_mode == "none"
    _assert_same(_with_step("small_cnn", "self_distill_seq"), fallback)


def test_a_graph_that_fails_to_compile_trains_eagerly_after_one_line(monkeypatch, caplog):
    def broken(fn, **kw):
        def call(*args):
            raise RuntimeError("simulated compiler failure\nsecond line")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(ts, "compile_unsupported", lambda dev: None)
    with caplog.at_level(logging.INFO, logger="selfdistill"):
        fallback = _with_step(SHAKE, "interp_stored", "default")
    assert _warnings(caplog) == [
        "train.compile default failed (RuntimeError: simulated compiler failure); training eagerly"
    ]
    _assert_same(_with_step(SHAKE, "interp_stored"), fallback)


def test_unknown_compile_mode_is_one_line():
    with pytest.raises(ValueError, match="train.compile must be one of none, default, reduce-overhead, got 'max'"):
        _with_step("small_cnn", "ce", "max")


def test_cpu_support_needs_a_cxx_compiler(monkeypatch):
    monkeypatch.setattr(ts.shutil, "which", lambda name: None)
    assert "C++ compiler" in ts.compile_unsupported(CPU)


def _run(data, out, compile_mode: str, **extra) -> pd.DataFrame:
    out.mkdir(parents=True, exist_ok=True)
    try:
        return train_run(
            data,
            out / "history.csv",
            out / "outputs.h5",
            out / "model.pt",
            mode="self_distill_seq",
            seed=0,
            model={"arch": "mlp", "width": 16, "depth": 1},
            # digits' training split does not divide by 100: every epoch ends with a smaller batch
            train={"epochs": 3, "batch_size": 100, "lr": 0.05, "compile": compile_mode},
            distill=DISTILL,
            freq_subset=50,
            device="cpu",
            **extra,
        )
    finally:
        setup_logging(None)


def test_history_times_training_and_evaluation(digits_pair40, tmp_path):
    history = _run(digits_pair40, tmp_path / "eager", "none")
    assert list(history.columns[-3:]) == list(TIMING_COLUMNS)
    assert (history["train_seconds"] > 0).all() and (history["eval_seconds"] > 0).all()
    assert (history["train_seconds"] + history["eval_seconds"] <= history["epoch_seconds"]).all()


@pytest.mark.slow
def test_compiled_run_resumes_exactly_after_a_signal(digits_pair40, tmp_path, monkeypatch):
    """compile=default with the CPU's real compiler (C++ code generation: minutes on a loaded CPU): SIGUSR1 in the
    middle of epoch 2, rerun: the same history, bit for bit, as the uninterrupted compiled run; within float
    rounding of the eager run."""
    if ts.compile_unsupported(CPU):
        pytest.skip(ts.compile_unsupported(CPU))
    timing = list(TIMING_COLUMNS)
    whole = _run(digits_pair40, tmp_path / "whole", "default").drop(columns=timing)
    monkeypatch.setenv("SELFDISTILL_FAULT", "mid_epoch:2:USR1")
    with pytest.raises(Preempted):
        _run(digits_pair40, tmp_path / "resumed", "default")
    monkeypatch.delenv("SELFDISTILL_FAULT")
    resumed = _run(digits_pair40, tmp_path / "resumed", "default").drop(columns=timing)
    pd.testing.assert_frame_equal(whole, resumed, check_exact=True)
    eager = _run(digits_pair40, tmp_path / "eager", "none").drop(columns=timing)
    pd.testing.assert_frame_equal(whole, eager, check_exact=False, rtol=1e-3)


@pytest.mark.parametrize("n", [0, 1, 23])
def test_evaluation_gives_the_logits_of_a_plain_batched_loop(n):
    """predict_logits (one preallocated device tensor, inference mode) equals the plain loop it replaced: each
    batch's logits in eval mode, concatenated; an empty split gives (0, C)."""
    import contextlib

    import numpy as np

    from selfdistill.batches import DeviceImages, channel_stats, make_batch, predict_logits

    pixels = np.random.default_rng(0).integers(0, 256, (max(n, 1), 8, 8, 1), dtype=np.uint8)[:n]
    mean, std = channel_stats(pixels, 255.0) if n else (torch.zeros(1), torch.ones(1))
    images = DeviceImages(pixels, torch.device("cpu"), 255.0, mean, std)
    torch.manual_seed(0)
    net = build_model(SHAKE, (1, 8, 8), 10, width=2)
    logits = predict_logits(net, images, 5, contextlib.nullcontext, 10)
    with torch.no_grad():
        plain = [net(make_batch(images, torch.arange(s, min(s + 5, n)))) for s in range(0, n, 5)]
    assert logits.shape == (n, 10) and not net.training
    assert torch.equal(logits, torch.cat(plain) if plain else torch.empty((0, 10)))
