"""Published plain cross-entropy test accuracies on CIFAR-10 to set beside a study's numbers, each with its source,
the table it comes from, what it measures (which epoch, how many runs) and its recipe, and the rule that matches one
to a noise setting (same dataset and noise type, nearest rate).

Each paper trained its own network with its own recipe, so a published number is context, never a result to be
matched: the study summary shows it with its citation in the same cell. A number that could not be read in its
source is not listed (docs/science.md, "Published numbers").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """One published CE number: ``noise_type`` as in the config (``symmetric``, ``asymmetric``, ``pair``,
    ``human``), ``rate`` a fraction (None for human labels, matched by ``key`` instead); ``source`` the paper or
    page, ``table`` where in it, ``measure`` what the number is (which epoch, how many runs), ``recipe`` how it was
    trained."""

    dataset: str
    noise_type: str
    rate: float | None
    key: str | None
    accuracy: str
    source: str
    table: str
    measure: str
    recipe: str

    @property
    def citation(self) -> str:
        """Source, table, measure and recipe in one string, as the study summary shows them."""
        return f"{self.source}, {self.table}: {self.measure}; {self.recipe}"


_ELR = "ELR paper (Liu et al. 2020, arXiv 2007.00151)"
_ELR_MEASURE = "test accuracy, mean ± sd over 5 noise draws (the caption does not say which epoch)"
_ELR_RECIPE = "ResNet-34, cross-entropy"
_BADLABELS = "BadLabels README (github.com/zjfheart/BadLabels)"
_BADLABELS_MEASURE = "best-epoch / last-epoch test accuracy, no sd given"
_BADLABELS_RECIPE = "Standard Training (plain CE), PreAct ResNet-18, SGD lr 0.02, 300 epochs"
_CIFARN = "CIFAR-N paper (Wei et al. 2022, arXiv 2110.12088)"
_CIFARN_TABLE = "its CIFAR-10N table (unverified there: read as reprinted by later papers)"
_CIFARN_MEASURE = "best-epoch test accuracy, mean ± sd over 5 runs"
_CIFARN_RECIPE = "ResNet-34, cross-entropy"

#: the table (CIFAR-10 only; digits and CIFAR-100 have none). Each number was read in the text its citation names,
#: unless its ``table`` says otherwise (docs/science.md, "Published numbers"); tests/test_published.py pins them.
PUBLISHED = (
    Published("cifar10", "symmetric", 0.4, None, "81.88 ± 0.29", _ELR, "Table 1", _ELR_MEASURE, _ELR_RECIPE),
    Published("cifar10", "asymmetric", 0.4, None, "80.11 ± 1.44", _ELR, "Table 1", _ELR_MEASURE, _ELR_RECIPE),
    Published(
        "cifar10", "symmetric", 0.4, None, "79.90 / 64.79", _BADLABELS, "Table 1", _BADLABELS_MEASURE, _BADLABELS_RECIPE
    ),
    Published(
        "cifar10",
        "asymmetric",
        0.4,
        None,
        "85.22 / 77.04",
        _BADLABELS,
        "Table 1",
        _BADLABELS_MEASURE,
        _BADLABELS_RECIPE,
    ),
    Published(
        "cifar10",
        "pair",
        0.45,
        None,
        "49.50 ± 0.42",
        "Co-teaching paper (Han et al. 2018, arXiv 1804.06872)",
        "Table 5, row Standard",
        "mean test accuracy over the last 10 epochs, mean ± sd over 5 runs",
        "plain CE, its 9-layer CNN, Adam, 200 epochs, pairflip-45%",
    ),
    Published(
        "cifar10", "human", None, "aggre", "87.77 ± 0.38", _CIFARN, _CIFARN_TABLE, _CIFARN_MEASURE, _CIFARN_RECIPE
    ),
    Published(
        "cifar10", "human", None, "worse", "77.69 ± 1.55", _CIFARN, _CIFARN_TABLE, _CIFARN_MEASURE, _CIFARN_RECIPE
    ),
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
    """The study summary's cell: each matching number with its source, table, measure, recipe and, where it
    differs, its rate; empty when none matches."""
    try:
        _, rate, _ = parse_noise_name(noise)
    except ValueError:
        return ""
    parts = []
    for p in matching(dataset, noise):
        at = "" if p.rate is None or rate is None or math.isclose(p.rate, rate) else f", at {100 * p.rate:g}% noise"
        parts.append(f"{p.accuracy} ({p.citation}{at})")
    return "; ".join(parts)
