"""Published plain cross-entropy test accuracies on CIFAR-10 to set beside a study's numbers, each with its source
and recipe, and the rule that matches one to a noise setting (same dataset and noise type, nearest rate).

Each paper trained its own network with its own recipe, so a published number is context, never a result to be
matched: the study summary shows it with its source and recipe in the same cell.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """One published CE number: ``noise_type`` as in the config (``symmetric``, ``asymmetric``, ``pair``,
    ``human``), ``rate`` a fraction (None for human labels, matched by ``key`` instead)."""

    dataset: str
    noise_type: str
    rate: float | None
    key: str | None
    accuracy: str
    source: str
    recipe: str


_ELR = "ELR paper (Liu et al. 2020), Table 1"
_ELR_RECIPE = "ResNet-34, CE, mean ± sd over 5 noise draws"
_BADLABELS = "BadLabels benchmark README"
_BADLABELS_RECIPE = "CE at its published settings, best / last epoch"

#: the table (CIFAR-10 only; digits and CIFAR-100 have none)
PUBLISHED = (
    Published("cifar10", "symmetric", 0.4, None, "81.88 ± 0.29", _ELR, _ELR_RECIPE),
    Published("cifar10", "asymmetric", 0.4, None, "80.11 ± 1.44", _ELR, _ELR_RECIPE),
    Published(
        "cifar10", "symmetric", 0.5, None, "79.4", "DivideMix paper (Li et al. 2020)", "PreAct ResNet-18, CE, best"
    ),
    Published(
        "cifar10", "asymmetric", 0.4, None, "83.2", "DivideMix paper (Li et al. 2020)", "PreAct ResNet-18, CE, best"
    ),
    Published("cifar10", "symmetric", 0.4, None, "79.90 / 64.79", _BADLABELS, _BADLABELS_RECIPE),
    Published("cifar10", "asymmetric", 0.4, None, "85.22 / 77.04", _BADLABELS, _BADLABELS_RECIPE),
    Published("cifar10", "pair", 0.45, None, "≈ 72", "Co-teaching paper (Han et al. 2018)", "CE, pairflip-45%"),
    Published("cifar10", "human", None, "aggre", "87.77", "CIFAR-N paper (Wei et al. 2022)", "ResNet-34, CE, best"),
    Published("cifar10", "human", None, "worse", "77.69", "CIFAR-N paper (Wei et al. 2022)", "ResNet-34, CE, best"),
)

_SHORT_TYPES = {"sym": "symmetric", "asym": "asymmetric", "pair": "pair"}


def parse_noise_name(name: str) -> tuple[str, float | None, str | None]:
    """(noise type, rate, human key) of a ``{noise}`` setting name: ``sym40`` -> (symmetric, 0.4, None),
    ``human_worse`` -> (human, None, worse), ``none`` -> (none, 0.0, None); anything else raises ValueError."""
    if name == "none":
        return "none", 0.0, None
    if name.startswith("human_"):
        return "human", None, name[len("human_") :]
    match = re.fullmatch(r"(sym|asym|pair)(\d+(?:\.\d+)?)", name)
    if match is None:
        raise ValueError(f"cannot read a noise type and rate from the setting name {name!r}")
    return _SHORT_TYPES[match.group(1)], float(match.group(2)) / 100, None


def matching(dataset: str, noise: str, table: tuple[Published, ...] = PUBLISHED) -> list[Published]:
    """The published numbers for ``dataset`` and the noise setting ``noise``: same noise type (and key for human
    labels), all at the rate nearest to the setting's; none for another dataset or an unreadable name."""
    try:
        noise_type, rate, key = parse_noise_name(noise)
    except ValueError:
        return []
    same = [p for p in table if p.dataset == dataset and p.noise_type == noise_type]
    if noise_type == "human":
        return [p for p in same if p.key == key]
    if not same or rate is None:
        return []
    nearest = min(abs(p.rate - rate) for p in same)
    return [p for p in same if math.isclose(abs(p.rate - rate), nearest, abs_tol=1e-9)]


def published_cell(dataset: str, noise: str) -> str:
    """The study summary's cell: each matching number with its source, recipe and, where it differs, its rate;
    empty when none matches."""
    try:
        _, rate, _ = parse_noise_name(noise)
    except ValueError:
        return ""
    parts = []
    for p in matching(dataset, noise):
        at = "" if p.rate is None or rate is None or math.isclose(p.rate, rate) else f", at {100 * p.rate:g}% noise"
        parts.append(f"{p.accuracy} ({p.source}; {p.recipe}{at})")
    return "; ".join(parts)
