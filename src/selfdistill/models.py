"""Networks, built by name from the config's ``model`` section.

- ``mlp`` is the embedded default: wide enough (default 512 units × 2 hidden layers) to memorise 40% wrong labels
  on the digits within the default epoch budget, which is exactly what the study needs to observe.
- ``small_cnn`` is a three-conv alternative for image inputs of any size.
- ``shake_shake_26_2x32d`` is Shake-Shake-26 2x32d in Gastaldi's published layout (Gastaldi 2017, arXiv 1705.07485;
  docs/science.md, "The original study"): a 3×3 stem conv to 16 channels + BN, three stages of 4 shake blocks with 32, 64 and 128 channels, two residual branches
  per block mixed with a per-sample random α in the forward pass and an independent per-sample β in the backward
  pass while training (0.5/0.5 at evaluation), the paper's "skip" shortcut where the shape changes (including the
  16→32 change at the first block). 2,923,162 parameters (the paper's 2.9M; the hysts/pytorch_shake_shake layout
  with a 32-channel stem and no stage-1 projection would give 2,932,266).
- ``shake_shake_26_2x32d_original`` is the same network as the original repository's own ``model.py`` wrote it
  (docs/science.md, "The original study"): stem conv3×3 → 16 + BN + ReLU; the same blocks and branches; the skip
  where channels change is only avg-pool(1, stride) → conv1×1 on x and on x shifted by one pixel, concatenated, with
  no ReLU before it and no BN after it; no ReLU between the last block and the 8×8 average pool; the linear layer
  keeps PyTorch's default init (its bias is not zeroed). 2,922,714 parameters (448 fewer: the skips' BNs).
- ``preact_resnet18`` is the pre-activation ResNet-18 of He et al. 2016 ("Identity mappings in deep residual
  networks") for 32×32 inputs, the noisy-label literature's default (DivideMix, ELR+): 3×3 stem conv to 64 channels,
  stages of [2, 2, 2, 2] pre-activation blocks with 64/128/256/512 channels, final BN-ReLU, global average pool,
  linear. 11,172,170 parameters for 10 classes. (DivideMix's file puts a BN-ReLU after the stem instead of the
  final one before the pool, which gives 11,171,146.)
- ``fast_cnn`` is a fast sweep network after airbench94 (Keller Jordan's 94%-in-3.3-s CIFAR-10 trainer): a 2×2
  stem conv (no padding, 24 channels for RGB), GELU, three conv groups [conv → maxpool 2 → BN → GELU → conv → BN →
  GELU] of 64/256/256 channels, global max pool, bias-free linear head scaled by 1/9. 1,971,640 trainable
  parameters for 10 classes (airbench94: 1.97M). Differences from airbench94, because a network is built here without
  data: the stem is an ordinary trainable conv (airbench initialises it from the training set's patch whitening and
  freezes its weights), and the network runs in whatever precision the training engine chooses.

- ``mnist1d_mlp`` and ``mnist1d_cnn`` are the MLP and the 1-D CNN of the MNIST-1D benchmark (Greydanus 2020), in the
  layout of its repository's ``notebooks/models.py`` (``MLPBase``, ``ConvBase``; docs/science.md, "MNIST-1D"). The MLP:
  linear → ReLU, a residual hidden layer h + ReLU(linear(h)), linear head; 100 hidden units, 15,210 parameters for 40
  inputs. The CNN reads the input as one sequence (channels × H·W): three ReLU convs (kernel 5 stride 2 padding 1,
  then kernel 3 stride 2 padding 1 twice) of 25 channels, flattened into a linear head; 5,210 parameters for 40
  samples (the flattened length follows the input's).

``width`` overrides the base width (``DEFAULT_WIDTH``); ``depth`` only applies to ``mlp``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ARCHITECTURES = (
    "mlp",
    "small_cnn",
    "shake_shake_26_2x32d",
    "shake_shake_26_2x32d_original",
    "preact_resnet18",
    "fast_cnn",
    "mnist1d_mlp",
    "mnist1d_cnn",
)
#: The MNIST-1D benchmark's networks, built for 1-D signals (they take any input, read as one sequence).
SIGNAL_ARCHITECTURES = ("mnist1d_mlp", "mnist1d_cnn")
#: Width used when the config leaves ``model.width`` empty: hidden units (mlp), first-stage channels (small_cnn,
#: shake_shake_26_2x32d: stages w, 2w, 4w; preact_resnet18: stages w, 2w, 4w, 8w) or first conv group channels
#: (fast_cnn: groups w, 4w, 4w).
DEFAULT_WIDTH = {
    "mlp": 512,
    "small_cnn": 32,
    "shake_shake_26_2x32d": 32,
    "shake_shake_26_2x32d_original": 32,
    "preact_resnet18": 64,
    "fast_cnn": 64,
    "mnist1d_mlp": 100,
    "mnist1d_cnn": 25,
}

#: fast_cnn's BatchNorm settings, airbench94's: running statistics updated with PyTorch momentum 0.4 (airbench's
#: "0.6" in the other convention), tuned for its ~500-step runs so that the running statistics track the fast-moving
#: weights; eps 1e-12 so that normalisation is exact (the BN scale is frozen at 1 and only the bias trains).
FAST_CNN_BN_MOMENTUM = 0.4
FAST_CNN_BN_EPS = 1e-12
#: fast_cnn's fixed output scale (airbench94's ``scaling_factor``): keeps initial logits small.
FAST_CNN_OUTPUT_SCALE = 1 / 9


class MLP(nn.Module):
    """Flatten → [Linear → ReLU] × depth → Linear."""

    def __init__(self, in_features: int, num_classes: int, width: int = 512, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        dim = in_features
        for _ in range(depth):
            layers += [nn.Linear(dim, width), nn.ReLU(inplace=True)]
            dim = width
        layers.append(nn.Linear(dim, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Three 3×3 conv-BN-ReLU blocks (width, 2·width, 4·width), global average pool, linear head."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            )

        self.features = nn.Sequential(
            block(in_channels, width),
            block(width, 2 * width),
            nn.MaxPool2d(2),
            block(2 * width, 4 * width),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _init_resnet(module: nn.Module, zero_linear_bias: bool = True) -> None:
    """He-normal (fan-out) convs, BN weight 1 / bias 0, zero linear bias: the original Torch ResNet init
    (``zero_linear_bias=False`` keeps PyTorch's default linear init, as the original repository did)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None and zero_linear_bias:
            nn.init.zeros_(m.bias)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


# ---------------------------------------------------------------------------------------------------- shake-shake


def uniform_per_sample(like: torch.Tensor) -> torch.Tensor:
    """One U(0, 1) draw per sample, shaped (N, 1, 1, 1), in float32 on ``like``'s device (no host sync).

    Always float32, also when the branches are bf16 under autocast: α and β are then exact float32 numbers, not
    rounded to bf16's 8 bits (the original study drew them in float32)."""
    return torch.rand(like.shape[0], 1, 1, 1, device=like.device, dtype=torch.float32)


class ShakeMix(torch.autograd.Function):
    """Forward α·a + (1−α)·b; backward β·g to a and (1−β)·g to b (α, β of shape (N, 1, 1, 1), no gradient).

    The mix is computed with the float32 α and β and returned in the branches' dtype (a no-op in float32)."""

    @staticmethod
    def forward(ctx, a, b, alpha, beta):
        ctx.save_for_backward(beta)
        return (alpha * a + (1 - alpha) * b).to(a.dtype)

    @staticmethod
    def backward(ctx, grad):
        (beta,) = ctx.saved_tensors
        return (beta * grad).to(grad.dtype), ((1 - beta) * grad).to(grad.dtype), None, None


def shake_shake(a: torch.Tensor, b: torch.Tensor, training: bool, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Mix two branch outputs: per-sample α forward / independent β backward (drawn in that order) when training,
    the fixed 0.5/0.5 average otherwise. ``noise`` = (α, β) stacked, shape (2, N, 1, 1, 1), when drawn beforehand
    (:func:`draw_shake_noise`); they are drawn here otherwise."""
    if not training:
        return 0.5 * (a + b)
    if noise is None:
        alpha = uniform_per_sample(a)
        beta = uniform_per_sample(a)
    else:
        alpha, beta = noise[0], noise[1]
    return ShakeMix.apply(a, b, alpha, beta)


def shake_blocks(net: nn.Module) -> list[nn.Module]:
    """``net``'s Shake-Shake blocks in the order its forward pass runs them (none for other networks)."""
    return [m for m in net.modules() if isinstance(m, ShakeBlock)]


def draw_shake_noise(n_blocks: int, batch: int, device: torch.device) -> torch.Tensor | None:
    """The per-sample α and β of every Shake-Shake block for one training batch, drawn outside the network as its
    forward pass would draw them (α then β per block, in block order, from the same global generator), stacked as
    (n_blocks, 2, N, 1, 1, 1); ``None`` for a network without blocks. Drawn here, they are an input of a compiled
    step, not random numbers inside its graph, and a checkpoint's generator state reproduces them on resume."""
    if not n_blocks:
        return None
    draws = [torch.rand(batch, 1, 1, 1, device=device, dtype=torch.float32) for _ in range(2 * n_blocks)]
    return torch.stack(draws).view(n_blocks, 2, batch, 1, 1, 1)


def run_shake_stages(stages: nn.Sequential, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    """``stages`` (Sequentials of :class:`ShakeBlock`) on ``x``, block ``i`` mixing with ``noise[i]`` when given."""
    if noise is None:
        return stages(x)
    i = 0
    for stage in stages:
        for block in stage:
            x = block(x, noise[i])
            i += 1
    return x


class OriginalShakeSkip(nn.Module):
    """The original repository's shortcut where shapes change: avg-pool(1, stride) → conv1×1 to c_out/2 channels on
    x, and the same on x shifted by one pixel (crop the first row/column, zero-pad the last), concatenated. Unlike
    :class:`ShakeSkip` there is no ReLU before it and no BN after it."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        if cout % 2:
            raise ValueError(f"shake-shake skip needs an even output width, got {cout}")
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, cout // 2, 1, bias=False)
        self.conv2 = nn.Conv2d(cin, cout // 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.conv1(F.avg_pool2d(x, 1, self.stride))
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        y2 = self.conv2(F.avg_pool2d(shifted, 1, self.stride))
        return torch.cat([y1, y2], dim=1)


class ShakeSkip(OriginalShakeSkip):
    """The Shake-Shake shortcut where shapes change (Gastaldi's layout): ReLU, then :class:`OriginalShakeSkip`'s two
    1×1 convs to c_out/2 channels each (strided pixels, pixels shifted by one), concatenated and batch-normalised."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(cin, cout, stride)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(super().forward(F.relu(x)))


class ShakeBlock(nn.Module):
    """Two [ReLU → conv3×3(stride) → BN → ReLU → conv3×3 → BN] branches mixed by ``shake_shake``, plus a shortcut
    (identity when the shape is kept, ``ShakeSkip`` otherwise)."""

    def __init__(self, cin: int, cout: int, stride: int, skip: type[nn.Module] | None = None):
        super().__init__()
        self.branch1 = self._branch(cin, cout, stride)
        self.branch2 = self._branch(cin, cout, stride)
        same = cin == cout and stride == 1
        self.shortcut = nn.Identity() if same else (skip or ShakeSkip)(cin, cout, stride)

    @staticmethod
    def _branch(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            # the block input is also the shortcut's input
            nn.ReLU(inplace=False),
            _conv3x3(cin, cout, stride),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            _conv3x3(cout, cout),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        mixed = shake_shake(self.branch1(x), self.branch2(x), self.training, noise)
        return self.shortcut(x) + mixed


# Shake-Shake-26: depth 26 = 6 · 4 + 2
SHAKE_BLOCKS_PER_STAGE = 4


def _shake_stages(cin: int, width: int, skip: type[nn.Module] | None = None) -> tuple[nn.Sequential, int]:
    """The three stages of 4 :class:`ShakeBlock` (width, 2·width, 4·width; strides 1, 2, 2) after a ``cin``-channel
    stem, and their output channels."""
    stages = []
    for cout, stride in ((width, 1), (2 * width, 2), (4 * width, 2)):
        blocks = []
        for i in range(SHAKE_BLOCKS_PER_STAGE):
            blocks.append(ShakeBlock(cin, cout, stride if i == 0 else 1, skip=skip))
            cin = cout
        stages.append(nn.Sequential(*blocks))
    return nn.Sequential(*stages), cin


class ShakeShakeResNet(nn.Module):
    """Shake-Shake-26 2×(width)d: stem conv3×3 → 16 + BN, stages of 4 blocks (width, 2·width, 4·width; strides 1, 2,
    2), ReLU, global average pool, linear."""

    STEM = 16

    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        super().__init__()
        self.stem = nn.Sequential(_conv3x3(in_channels, self.STEM), nn.BatchNorm2d(self.STEM))
        self.stages, cin = _shake_stages(self.STEM, width)
        self.head = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(cin, num_classes),
        )
        _init_resnet(self)

    def forward(self, x: torch.Tensor, shake_noise: torch.Tensor | None = None) -> torch.Tensor:
        """Logits; ``shake_noise`` is :func:`draw_shake_noise`'s α and β (drawn inside the blocks when ``None``)."""
        return self.head(run_shake_stages(self.stages, self.stem(x), shake_noise))


class OriginalShakeShakeResNet(nn.Module):
    """Shake-Shake-26 2×(width)d as the original repository's ``model.py`` wrote it: stem conv3×3 → 16 + BN + ReLU,
    stages of 4 :class:`ShakeBlock` (width, 2·width, 4·width; strides 1, 2, 2) with :class:`OriginalShakeSkip`
    shortcuts, then straight (no ReLU) to global average pooling (8×8 on CIFAR) and a linear layer with PyTorch's
    default init. Convs Kaiming-normal (fan_out), BN weight 1 / bias 0."""

    STEM = 16

    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        super().__init__()
        self.stem = nn.Sequential(_conv3x3(in_channels, self.STEM), nn.BatchNorm2d(self.STEM), nn.ReLU(inplace=True))
        self.stages, cin = _shake_stages(self.STEM, width, skip=OriginalShakeSkip)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))
        _init_resnet(self, zero_linear_bias=False)

    def forward(self, x: torch.Tensor, shake_noise: torch.Tensor | None = None) -> torch.Tensor:
        """Logits; ``shake_noise`` is :func:`draw_shake_noise`'s α and β (drawn inside the blocks when ``None``)."""
        return self.head(run_shake_stages(self.stages, self.stem(x), shake_noise))


# ----------------------------------------------------------------------------------------------- preact resnet-18


class PreActBlock(nn.Module):
    """x → BN → ReLU → conv3×3(stride) → BN → ReLU → conv3×3, plus x (or a 1×1 strided projection of the
    pre-activated x where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """Stem conv3×3 → width, stages of [2, 2, 2, 2] ``PreActBlock`` (width · 1/2/4/8; strides 1, 2, 2, 2), BN, ReLU,
    global average pool, linear."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64):
        super().__init__()
        self.stem = _conv3x3(in_channels, width)
        stages, cin = [], width
        for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            cout = mult * width
            stages.append(nn.Sequential(PreActBlock(cin, cout, stride), PreActBlock(cout, cout)))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(cin, num_classes),
        )
        _init_resnet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


# ------------------------------------------------------------------------------------------------------ fast cnn


class ScaleFreeBN(nn.BatchNorm2d):
    """airbench's BatchNorm: learnable bias only (scale frozen at 1), momentum/eps from ``FAST_CNN_BN_*``."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=FAST_CNN_BN_EPS, momentum=FAST_CNN_BN_MOMENTUM)
        self.weight.requires_grad_(False)


class DiracConv(nn.Conv2d):
    """3×3 'same' conv without bias whose first ``in_channels`` filters start as the identity (airbench's implicit
    residual), the rest with PyTorch's default init."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 3, padding=1, bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            nn.init.dirac_(self.weight[: min(self.in_channels, self.out_channels)])


class ConvGroup(nn.Sequential):
    """conv → maxpool 2 → BN → GELU → conv → BN → GELU (pooling before BN halves the normalisation cost)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            DiracConv(cin, cout),
            nn.MaxPool2d(2),
            ScaleFreeBN(cout),
            nn.GELU(),
            DiracConv(cout, cout),
            ScaleFreeBN(cout),
            nn.GELU(),
        )


class FastCNN(nn.Module):
    """2×2 stem conv (2·C·4 channels, no padding) → GELU → ConvGroup × 3 (width, 4·width, 4·width) → global max pool →
    bias-free linear × ``FAST_CNN_OUTPUT_SCALE``."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64):
        super().__init__()
        # airbench: twice the 2×2 patch dimension (±whitening filters)
        stem = 2 * in_channels * 2 * 2
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 2, padding=0, bias=True), nn.GELU())
        self.groups = nn.Sequential(
            ConvGroup(stem, width),
            ConvGroup(width, 4 * width),
            ConvGroup(4 * width, 4 * width),
        )
        self.pool = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.linear = nn.Linear(4 * width, num_classes, bias=False)

    @staticmethod
    def min_size_ok(height: int, width: int) -> bool:
        """Whether an H×W input keeps at least one pixel through the 2×2 stem and the three max-pools."""
        return min(height, width) - 1 >= 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pool(self.groups(self.stem(x)))) * FAST_CNN_OUTPUT_SCALE


# ------------------------------------------------------------------------------------------------------- mnist-1d


class ResidualMLP(nn.Module):
    """Flatten → Linear → ReLU → h + ReLU(Linear(h)) → Linear: MNIST-1D's ``MLPBase``."""

    def __init__(self, in_features: int, num_classes: int, width: int = 100):
        super().__init__()
        self.linear1 = nn.Linear(in_features, width)
        self.linear2 = nn.Linear(width, width)
        self.linear3 = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.linear1(x.flatten(1)))
        h = h + F.relu(self.linear2(h))
        return self.linear3(h)


def _conv1d_length(length: int, kernel: int, stride: int = 2, padding: int = 1) -> int:
    return (length + 2 * padding - kernel) // stride + 1


class SignalCNN(nn.Module):
    """Three ReLU Conv1d (kernel 5, 3, 3; stride 2; padding 1) of ``width`` channels, flattened, linear head: MNIST-1D's
    ``ConvBase``. An (N, C, H, W) input is read as C channels of one sequence of H·W samples."""

    def __init__(self, in_channels: int, length: int, num_classes: int, width: int = 25):
        super().__init__()
        out = _conv1d_length(_conv1d_length(_conv1d_length(length, 5), 3), 3)
        if out < 1:
            raise ValueError(f"mnist1d_cnn needs sequences of at least 4 samples, got {length}")
        self.conv1 = nn.Conv1d(in_channels, width, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(width, width, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(width, width, 3, stride=2, padding=1)
        self.linear = nn.Linear(width * out, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], x.shape[1], -1)
        h = F.relu(self.conv1(h))
        h = F.relu(self.conv2(h))
        h = F.relu(self.conv3(h))
        return self.linear(h.flatten(1))


# ------------------------------------------------------------------------------------------- float32 head


class Float32Linear(nn.Linear):
    """An ``nn.Linear`` that computes in float32 outside autocast: under bf16 autocast its output (a network's
    logits) is not rounded to bf16. Same parameters and state_dict keys as ``nn.Linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x.float(), self.weight, self.bias)


def float32_head(net: nn.Module) -> nn.Module:
    """Make ``net``'s last ``nn.Linear`` (its head, in every architecture here) a :class:`Float32Linear`, in place:
    the logits of a bf16 run are computed and stored in float32. Its parameters, their values and the state_dict
    keys stay as they are (the module's class changes, nothing is rebuilt and no random number is drawn)."""
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(net).__name__} has no nn.Linear head")
    linears[-1].__class__ = Float32Linear
    return net


def build_model(
    arch: str,
    in_shape: tuple[int, int, int],
    num_classes: int,
    width: int | None = None,
    depth: int = 2,
) -> nn.Module:
    """Build ``arch`` for inputs of shape (C, H, W); ``width=None`` takes the architecture's default."""
    channels, height, width_px = in_shape
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; allowed: {', '.join(ARCHITECTURES)}")
    width = DEFAULT_WIDTH[arch] if width is None else width
    if arch == "mlp":
        return MLP(channels * height * width_px, num_classes, width=width, depth=depth)
    if arch == "small_cnn":
        if min(height, width_px) < 2:
            raise ValueError(
                f"small_cnn needs inputs of at least 2×2 pixels (it max-pools 2×2), got {height}×{width_px}; "
                f"for 1-D signals use mnist1d_cnn or mnist1d_mlp"
            )
        return SmallCNN(channels, num_classes, width=width)
    if arch == "shake_shake_26_2x32d":
        return ShakeShakeResNet(channels, num_classes, width=width)
    if arch == "shake_shake_26_2x32d_original":
        return OriginalShakeShakeResNet(channels, num_classes, width=width)
    if arch == "preact_resnet18":
        return PreActResNet18(channels, num_classes, width=width)
    if arch == "mnist1d_mlp":
        return ResidualMLP(channels * height * width_px, num_classes, width=width)
    if arch == "mnist1d_cnn":
        return SignalCNN(channels, height * width_px, num_classes, width=width)
    if not FastCNN.min_size_ok(height, width_px):
        raise ValueError(f"fast_cnn needs inputs of at least 9×9 pixels, got {height}×{width_px}")
    return FastCNN(channels, num_classes, width=width)


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The network's last ``nn.Linear`` (in module order): its classifier in every architecture here, whose input is
    the penultimate-layer representation."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer, so no penultimate features")
    return linears[-1]


@torch.inference_mode()
def penultimate_features(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Eval-mode penultimate-layer activations of ``x`` (N, C, H, W): the input of :func:`classifier_layer`, caught
    by a forward pre-hook, so that one mechanism serves every architecture. float32, (N, features), in order."""
    model.eval()
    caught: list[torch.Tensor] = []
    hook = classifier_layer(model).register_forward_pre_hook(lambda _m, args: caught.append(args[0].float()))
    try:
        for start in range(0, x.shape[0], batch_size):
            model(x[start : start + batch_size])
    finally:
        hook.remove()
    return torch.cat(caught).reshape(x.shape[0], -1) if caught else torch.empty((0, 0))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
