"""A configured noise setting and its short name (the ``{noise}`` part of result paths): shared by the noise
models (jobs) and the planner. Only the standard library is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: CIFAR-10N's label file (https://github.com/UCSC-REAL/cifar-10-100n, data/CIFAR-10_human.pt).
DEFAULT_HUMAN_LABEL_FILE = "resources/data/CIFAR-10_human.pt"

NOISE_TYPES = ("none", "pair", "symmetric", "asymmetric", "human")
#: How many labels a drawn noise model flips: ``exact`` - exactly round(rate·n), spread over classes; ``bernoulli`` -
#: a seeded per-sample coin with probability ``rate`` (a binomial count: the original repository's, which was unseeded).
NOISE_COUNTS = ("exact", "bernoulli")
# Short names used in result paths, e.g. ``pair40`` for pair-flip at 40%.
SHORT_NAMES = {
    "none": "none",
    "pair": "pair",
    "symmetric": "sym",
    "asymmetric": "asym",
    "human": "human",
}


@dataclass(frozen=True)
class NoiseSpec:
    """One configured noise setting; ``name`` is the ``{noise}`` wildcard (``pair40``, ``sym20``, ``none``,
    ``human_worse`` for the CIFAR-10N key ``worse_label``; a ``bernoulli`` count appends ``b``, e.g. ``pair40b``, so
    the two counts never share a results folder).

    ``human`` settings read their labels from ``label_file`` under ``key``; ``rate`` does not apply to them (the
    realised rate is whatever the annotators produced, recorded with the data).
    """

    type: str
    rate: float = 0.0
    class_map: Mapping[int, int] | None = None
    label_file: str = DEFAULT_HUMAN_LABEL_FILE
    key: str = "worse_label"
    count: str = "exact"

    @property
    def name(self) -> str:
        if self.type == "none":
            return "none"
        if self.type == "human":
            return f"human_{self.key.replace('_label', '')}"
        return f"{SHORT_NAMES[self.type]}{100 * self.rate:g}{'b' if self.count == 'bernoulli' else ''}"

    @classmethod
    def from_config(cls, entry: Mapping) -> NoiseSpec:
        """Build from a config entry ``{type: pair, rate: 0.4}`` (``class_map`` keys may be strings)."""
        class_map = entry.get("class_map")
        if class_map is not None:
            class_map = {int(k): int(v) for k, v in class_map.items()}
        return cls(
            type=entry["type"],
            rate=float(entry.get("rate", 0.0)),
            class_map=class_map,
            label_file=str(entry.get("label_file", DEFAULT_HUMAN_LABEL_FILE)),
            key=str(entry.get("key", "worse_label")),
            count=str(entry.get("count", "exact")),
        )
