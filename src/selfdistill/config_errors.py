"""The wording of config problems that Snakemake would report in many lines or without the file: the schema's most
relevant violation as one line naming the key and the allowed values (:func:`explain_config_error`), and a config
file that is not YAML, is empty, is not a mapping or repeats a key (:func:`config_file_problem`).

Only the standard library, jsonschema and PyYAML (both Snakemake dependencies) are imported here.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import jsonschema
import yaml


def _dotted(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
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


def load_schema(schema: str | os.PathLike | Mapping) -> dict:
    """The config schema as a mapping (read from its file unless it is one already); a file is parsed once per
    process and version of the file, and each call gets its own copy."""
    if isinstance(schema, Mapping):
        return dict(schema)
    path = os.fspath(schema)
    return copy.deepcopy(_parsed_yaml(path, os.stat(path).st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _parsed_yaml(path: str, mtime_ns: int) -> dict:
    """The YAML file ``path`` as it was at ``mtime_ns`` (planning reads the schema five times)."""
    with open(path) as fh:
        return yaml.safe_load(fh)


#: JSON schema draft 2020-12, except that an integer is an integer as YAML writes it: jsonschema (and so Snakemake's
#: ``validate``) takes ``10.0`` for one, and a training job would get a float epoch count or batch size.
_STRICT_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
)
StrictValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_STRICT_TYPES)
_EXPONENT = re.compile(r"([-+]?)(\d*)(?:\.(\d*))?[eE]([-+]?)(\d+)")


def _type_hint(value, expected) -> str:
    """How to write ``value`` so that YAML (PyYAML reads YAML 1.1) gives the ``expected`` schema type, e.g.
    ``" (YAML reads 1e-3 as text: write 1.0e-3)"``; ``""`` when there is no such spelling."""
    types = expected if isinstance(expected, list) else [expected]
    if isinstance(value, float) and "integer" in types and value.is_integer():
        return f" (write {int(value)})"
    if not isinstance(value, str):
        return ""
    try:
        unquoted = yaml.safe_load(value)
    except yaml.YAMLError:
        unquoted = None
    kind = {bool: "boolean", int: "integer", float: "number"}.get(type(unquoted))
    if kind in types or (kind == "integer" and "number" in types):
        return f" (in quotes YAML reads it as text: write {value} without quotes)"
    if not {"number", "integer"} & set(types):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    match = _EXPONENT.fullmatch(value.strip())
    if not math.isfinite(number):
        return ""
    if "number" in types and match:
        sign, whole, frac, exp_sign, exp = match.groups()
        spelled = f"{sign}{whole or '0'}.{frac or '0'}e{exp_sign or '+'}{exp}"
    elif number.is_integer():
        spelled = str(int(number))
    elif "number" in types:
        spelled = repr(number)
    else:
        return ""
    return f" (YAML reads {value} as text: write {spelled})"


def schema_error(config: Mapping, schema: Mapping) -> str | None:
    """The most relevant violation of ``schema`` (a mapping) by ``config`` in one line, or ``None``."""
    error = jsonschema.exceptions.best_match(StrictValidator(schema).iter_errors(config))
    if error is None:
        return None
    where = _dotted(error.absolute_path)
    sub = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(sub.get("properties", {}))
        patterns = [re.compile(p) for p in sub.get("patternProperties", {})]
        unknown = sorted(k for k in set(error.instance) - set(allowed) if not any(p.search(k) for p in patterns))
        pattern = (
            " or keys matching " + ", ".join(sub.get("patternProperties", {})) if sub.get("patternProperties") else ""
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
        expected = error.validator_value
        spelled = " or ".join(expected) if isinstance(expected, list) else expected
        hint = _type_hint(error.instance, expected)
        return f"invalid config: {where} = {error.instance!r} has the wrong type; expected {spelled}{hint}"
    if error.validator == "required":
        return f"invalid config: {where} is missing a required key: {error.message}"
    if error.validator == "uniqueItems":
        return f"invalid config: {where} = {error.instance!r} lists a value twice; give each one once"
    if error.validator == "minItems":
        return f"invalid config: {where} is empty; give at least {error.validator_value} entry"
    if error.validator == "pattern":
        about = f" ({sub['description'].rstrip('.')})" if sub.get("description") else ""
        return (
            f"invalid config: {where} = {error.instance!r} is not allowed; it must match {error.validator_value}{about}"
        )
    return f"invalid config: {where}: {' '.join(error.message.split())}"


def explain_config_error(config: Mapping, schema_path: str | os.PathLike) -> str | None:
    """One line describing the most relevant schema violation of ``config``, or ``None`` if it is valid.

    Stricter than the schema read by jsonschema in one way only: an integer key given a float (``epochs: 10.0``)
    is an error."""
    return schema_error(config, load_schema(schema_path))


def _duplicate_key(root: yaml.Node) -> tuple[str, int, int] | None:
    """(key, line, line of its first occurrence) of the first key given twice in one mapping of ``root``."""
    todo, seen = [root], set()
    while todo:
        node = todo.pop(0)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    ident = (key.tag, key.value)
                    if ident in first:
                        return key.value, key.start_mark.line + 1, first[ident]
                    first[ident] = key.start_mark.line + 1
                todo += [key, value]
        elif isinstance(node, yaml.SequenceNode):
            todo += node.value
    return None


#: PyYAML's token names in its syntax errors, in words.
_YAML_TOKENS = {
    "'?'": "a key",
    "'<block mapping start>'": "a new mapping",
    "'<block sequence start>'": "a new list",
    "'<block end>'": "the end of the indented block",
    "<block end>": "the end of the indented block",
    "'<stream end>'": "the end of the file",
    "'<document start>'": "a new document (---)",
    "end of stream": "end of the file",
}


def _yaml_words(text: str) -> str:
    for token, words in _YAML_TOKENS.items():
        text = text.replace(token, words)
    return " ".join(text.split())


def config_file_problem(path: str | os.PathLike) -> str | None:
    """One line naming ``path`` (and the line) when it cannot be read as a config: not YAML (or JSON), empty, not
    a mapping of keys at top level, or a key given twice in one mapping (YAML keeps the last one silently).
    ``None`` when it is fine or missing (Snakemake reports a missing file)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        return f"{path}: cannot read the config file ({err}); a config file is YAML text"
    try:
        if isinstance(json.loads(text), dict):
            # Snakemake reads JSON first
            return None
    except ValueError:
        pass
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" line {mark.line + 1}" if mark else ""
        context = f" ({err.context}" + (f" on line {err.context_mark.line + 1})" if err.context_mark else ")")
        tabs = "; YAML indents with spaces, not tabs" if "'\\t'" in str(err.problem) else ""
        # "expected a single document ..., but found ..."
        if str(err.problem).startswith("but ") and err.context:
            problem = _yaml_words(f"{err.context}, {err.problem}")
        else:
            problem = _yaml_words(f"{err.problem}{context if err.context else ''}")
        return f"{path}{where}: YAML syntax error: {problem}{tabs}; fix the file"
    except yaml.YAMLError as err:
        return f"{path}: YAML error: {' '.join(str(err).split())}; fix the file"
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == "tag:yaml.org,2002:null"):
        return (
            f"{path}: the config file is empty; write the study's settings as key: value lines (config.yaml shows "
            f"them all), or {{}} to take every default"
        )
    if not isinstance(root, yaml.MappingNode):
        what = "a list" if isinstance(root, yaml.SequenceNode) else f"the single value {root.value!r}"
        return (
            f"{path} line {root.start_mark.line + 1}: the config file holds {what}, not settings; it must map keys "
            f"to values at top level (dataset: digits, noise: ..., see config.yaml)"
        )
    duplicate = _duplicate_key(root)
    if duplicate:
        key, line, first = duplicate
        return (
            f"{path} line {line}: key {key!r} is given twice in one mapping (first on line {first}); YAML keeps only "
            f"the last one, so merge them"
        )
    return None
