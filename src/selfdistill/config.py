"""Config validation messages and the config → pipeline mapping used by the Snakefile.

Snakemake's ``validate`` does the validation (and fills defaults); when it fails, :func:`explain_config_error`
re-runs the same JSON schema with jsonschema to turn the first error into one line that names the key and the
allowed values, instead of a multi-line schema dump.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import jsonschema
import yaml

from .noise import NoiseSpec


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
