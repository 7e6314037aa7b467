"""Networks, built by name from the config's ``model`` section.

``mlp`` is the embedded default: wide enough (default 512 units × 2 hidden layers) to memorise 40% wrong
labels on the digits within the default epoch budget, which is exactly what the study needs to observe.
``small_cnn`` is a three-conv alternative for image inputs of any size.
"""

from __future__ import annotations

import torch
from torch import nn

ARCHITECTURES = ("mlp", "small_cnn")
#: Width used when the config leaves ``model.width`` empty: hidden units (mlp) or first-stage channels (small_cnn).
DEFAULT_WIDTH = {"mlp": 512, "small_cnn": 32}


class MLP(nn.Module):
    """Flatten → [Linear → ReLU] × depth → Linear."""

    def __init__(
        self, in_features: int, num_classes: int, width: int = 512, depth: int = 2
    ):
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
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


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
        raise ValueError(
            f"unknown architecture {arch!r}; allowed: {', '.join(ARCHITECTURES)}"
        )
    width = DEFAULT_WIDTH[arch] if width is None else width
    if arch == "mlp":
        return MLP(channels * height * width_px, num_classes, width=width, depth=depth)
    return SmallCNN(channels, num_classes, width=width)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
