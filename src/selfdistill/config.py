"""What the Snakefile needs to plan the study: config error messages, noise names, targets, per-rule inputs.

Only the standard library, jsonschema and PyYAML (both Snakemake dependencies) are imported here, so the workflow
parses fast and in an environment that has Snakemake alone (``--sdm conda`` runs the jobs elsewhere).

Snakemake's ``validate`` does the validation (and fills defaults); when it fails, :func:`explain_config_error`
re-runs the same JSON schema with jsonschema to turn the first error into one line that names the key and the
allowed values, instead of a multi-line schema dump.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

NOISE_TYPES = ("none", "pair", "symmetric", "asymmetric")
# Short names used in result paths, e.g. ``pair40`` for pair-flip at 40%.
SHORT_NAMES = {"none": "none", "pair": "pair", "symmetric": "sym", "asymmetric": "asym"}

#: Every figure the pipeline builds per dataset/noise setting (file stem = name).
FIGURES = ("accuracy", "loss", "memorization", "frequency_ratio", "frequency_error")

#: The ``distill`` keys each mode reads; a job gets only its own, so changing e.g. ``seq_alpha`` reruns only
#: the ``self_distill_seq`` runs.
DISTILL_KEYS = {
    "ce": (),
    "self_distill": (),
    "self_distill_seq": ("seq_alpha", "seq_warmup", "seq_ramp"),
    "bootstrap_soft": ("bootstrap_soft_beta",),
    "bootstrap_hard": ("bootstrap_hard_beta",),
}

#: The library modules each rule runs (its script's import closure within selfdistill). They are inputs of the
#: rule, so editing the library reruns exactly the steps whose code changed.
RULE_MODULES = {
    "corrupt": ("__init__", "config", "data", "datasets", "io", "noise"),
    "train": (
        "__init__",
        "config",
        "data",
        "datasets",
        "io",
        "losses",
        "models",
        "noise",
        "training",
    ),
    "frequency": ("__init__", "frequency", "io"),
    "aggregate": ("__init__", "aggregate", "io"),
    "figures": ("__init__", "aggregate", "config", "figures", "io"),
}

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class NoiseSpec:
    """One configured noise setting; ``name`` is the ``{noise}`` wildcard (``pair40``, ``sym20``, ``none``)."""

    type: str
    rate: float = 0.0
    class_map: Mapping[int, int] | None = None

    @property
    def name(self) -> str:
        if self.type == "none":
            return "none"
        return f"{SHORT_NAMES[self.type]}{100 * self.rate:g}"

    @classmethod
    def from_config(cls, entry: Mapping) -> NoiseSpec:
        """Build from a config entry ``{type: pair, rate: 0.4}`` (``class_map`` keys may be strings)."""
        class_map = entry.get("class_map")
        if class_map is not None:
            class_map = {int(k): int(v) for k, v in class_map.items()}
        return cls(
            type=entry["type"], rate=float(entry.get("rate", 0.0)), class_map=class_map
        )


def distill_params(distill: Mapping, mode: str) -> dict:
    """The part of the config's ``distill`` section that ``mode`` uses."""
    return {key: distill[key] for key in DISTILL_KEYS[mode] if key in distill}


def library_files(rule: str) -> list[str]:
    """Paths of the library modules that ``rule`` runs (see :data:`RULE_MODULES`)."""
    return [str(PACKAGE_DIR / f"{module}.py") for module in RULE_MODULES[rule]]


def _dotted(path) -> str:
    out = ""
    for part in path:
        out += (
            f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        )
    return out or "config"


def _bounds(schema: Mapping) -> str:
    parts = []
    for key, sign in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
    ):
        if key in schema:
            parts.append(f"{sign} {schema[key]}")
    return " and ".join(parts)


def explain_config_error(config: Mapping, schema_path: str | os.PathLike) -> str | None:
    """One line describing the most relevant schema violation of ``config``, or ``None`` if it is valid."""
    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return None
    where = _dotted(error.absolute_path)
    sub = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(sub.get("properties", {}))
        patterns = [re.compile(p) for p in sub.get("patternProperties", {})]
        unknown = sorted(
            k
            for k in set(error.instance) - set(allowed)
            if not any(p.search(k) for p in patterns)
        )
        pattern = (
            " or keys matching " + ", ".join(sub.get("patternProperties", {}))
            if sub.get("patternProperties")
            else ""
        )
        return (
            f"invalid config: unknown key {', '.join(repr(u) for u in unknown)} in {where}; "
            f"allowed keys: {', '.join(allowed) or '(none)'}{pattern}"
        )
    if error.validator == "enum":
        return f"invalid config: {where} = {error.instance!r} is not allowed; allowed values: {', '.join(map(str, sub['enum']))}"
    if error.validator in (
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
    ):
        return f"invalid config: {where} = {error.instance!r} is out of range; it must be {_bounds(sub)}"
    if error.validator == "type":
        return f"invalid config: {where} = {error.instance!r} has the wrong type; expected {error.validator_value}"
    if error.validator == "required":
        return f"invalid config: {where} is missing a required key: {error.message}"
    return f"invalid config: {where}: {error.message}"


def noise_settings(config: Mapping) -> dict[str, dict]:
    """Map each noise setting's wildcard name (``pair40``) to its config entry; reject duplicate names."""
    out: dict[str, dict] = {}
    for i, entry in enumerate(config["noise"]):
        spec = NoiseSpec.from_config(entry)
        if spec.type != "none" and spec.rate == 0:
            raise ValueError(
                f"invalid config: noise[{i}] is {spec.type} with rate 0; use type: none for clean labels"
            )
        if spec.name in out:
            raise ValueError(
                f"invalid config: noise[{i}] duplicates the setting {spec.name!r}"
            )
        out[spec.name] = dict(entry)
    return out
