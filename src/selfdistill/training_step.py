"""One training step's forward pass, loss and backward pass, eager or compiled (``train.compile``).

``train.compile`` is one of :data:`COMPILE_MODES`:

- ``none``: eager PyTorch, exactly the numbers the engine has always computed;
- ``default``: ``torch.compile`` of the forward pass and the mode's loss; PyTorch compiles the backward pass of that
  graph too (AOTAutograd), so the whole step but the optimiser runs compiled;
- ``reduce-overhead``: the same, replayed as CUDA graphs on a GPU (one launch per graph instead of one per kernel,
  which is what small networks at batch 128 are limited by). On the CPU there are no CUDA graphs: it compiles as
  ``default``.

What makes the step compilable is that nothing inside the graph changes state or draws random numbers:

- the mode's loss is a pure function of the logits, the batch's labels and the rows of the mode's per-sample state
  gathered before the step (:meth:`selfdistill.modes.Mode.batch_state`, ``batch_loss``); what the mode records
  (a batch weight, the softmax outputs it stores per sample) is applied after it (``after_step``);
- Shake-Shake's per-sample α and β are drawn before the step, in the order and from the generator its blocks would
  draw them from (:func:`selfdistill.models.draw_shake_noise`), and passed in as one tensor: they differ between
  steps, are identical to the eager draws, and a checkpoint's generator state reproduces them on resume.

Each batch size gets its own graph (``dynamic=False``): an epoch's last, smaller batch compiles a second graph once
per run, and CUDA graphs stay static. Evaluation runs the eager network in eval mode.

Where compilation is not supported (no C++ compiler for the CPU backend, no Triton for a GPU, a Python that
``torch.compile`` does not support, or a graph that fails to compile) the step logs one line and runs eagerly.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from collections.abc import Callable
from typing import Any

import torch

from .device import RunDevice
from .models import draw_shake_noise, shake_blocks
from .modes import Mode

log = logging.getLogger(__name__)

#: ``train.compile`` values; ``none`` is eager
COMPILE_MODES = ("none", "default", "reduce-overhead")


def compile_unsupported(dev: RunDevice) -> str | None:
    """Why ``torch.compile`` cannot run on ``dev`` here, or ``None`` when it can."""
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python"
    if dev.is_cuda and importlib.util.find_spec("triton") is None:
        return "torch.compile on CUDA needs Triton, which is not installed"
    if not dev.is_cuda and not any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")):
        return "torch.compile on the CPU needs a C++ compiler, and none is on the PATH"
    return None


class TrainingStep:
    """Forward pass, loss and backward pass of one training batch on ``net`` for ``mode`` (the optimiser stays
    outside); compiled as ``compile_mode`` says, eager where that is not supported."""

    def __init__(self, net: torch.nn.Module, mode: Mode, dev: RunDevice, compile_mode: str = "none"):
        if compile_mode not in COMPILE_MODES:
            raise ValueError(f"train.compile must be one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}")
        self.net, self.mode, self.dev = net, mode, dev
        self.n_blocks = len(shake_blocks(net))
        self.compile_mode = self._supported(compile_mode)
        self._compiled: Callable | None = None
        if self.compile_mode != "none":
            # every step compiles the same code: graphs of an earlier step in this process (the self-check's many
            # runs) would count against torch.compile's recompile limit, beyond which it silently runs eagerly
            torch._dynamo.reset()
            mode_arg = "reduce-overhead" if self.compile_mode == "reduce-overhead" and dev.is_cuda else "default"
            self._compiled = torch.compile(self.forward_loss, mode=mode_arg, dynamic=False)
        #: batch sizes whose graph compiled (a new size compiles once, and may still fall back)
        self._compiled_sizes: set[int] = set()

    def _supported(self, compile_mode: str) -> str:
        """``compile_mode``, or ``none`` with one log line where it cannot run."""
        if compile_mode == "none":
            return compile_mode
        reason = compile_unsupported(self.dev)
        if reason is not None:
            log.warning("train.compile %s is not supported here (%s); training eagerly", compile_mode, reason)
            return "none"
        return compile_mode

    def forward_loss(
        self, x: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor | None, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, Any]:
        """The network's logits in the run's precision and the mode's loss and record: what is compiled."""
        with self.dev.autocast():
            logits = self.net(x) if noise is None else self.net(x, shake_noise=noise)
        return self.mode.batch_loss(logits, labels, *state)

    def __call__(self, x: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Forward, loss and backward of the batch ``x`` (rows ``idx`` of the training split, noisy ``labels``):
        the gradients are in the parameters' ``.grad`` (set afresh), the mode has recorded the batch; returns the
        detached loss."""
        noise = draw_shake_noise(self.n_blocks, x.shape[0], x.device)
        state = self.mode.batch_state(idx)
        loss, record = self._forward_loss(x, labels, noise, state)
        self.mode.after_step(idx, record)
        self.net.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach()

    def _forward_loss(self, x, labels, noise, state) -> tuple[torch.Tensor, Any]:
        """:meth:`forward_loss`, compiled when asked; a graph that fails to compile falls back to eager for good
        (one log line). Nothing ran when compilation fails, so the eager step computes the same batch afresh."""
        if self._compiled is None:
            return self.forward_loss(x, labels, noise, state)
        if self.compile_mode == "reduce-overhead" and self.dev.is_cuda:
            # a new training step: CUDA graph outputs of the previous one may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        size = x.shape[0]
        if size in self._compiled_sizes:
            return self._compiled(x, labels, noise, state)
        try:
            out = self._compiled(x, labels, noise, state)
        except Exception as err:  # noqa: BLE001 - any compiler failure: train eagerly, as for an unsupported setup
            log.warning("train.compile %s failed (%s); training eagerly", self.compile_mode, _first_line(err))
            self._compiled, self.compile_mode = None, "none"
            return self.forward_loss(x, labels, noise, state)
        self._compiled_sizes.add(size)
        return out


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
