"""A study's name, its variants and its settings: what keeps every study in its own results folder.

Planning only (the Snakefile imports this; no job does). A study is everything one config (plus its override files
and command-line values) asks for; its results live under ``results/{study}/``:

- ``{noise}/seed{seed}/data.h5``: the corrupted data, shared by the study's variants;
- ``{setting}/seed{seed}/{mode}/``: one training run, where a setting is ``{noise}`` or, in a study with variants,
  ``{noise}/{variant}``;
- ``summary.md``, ``summary.csv``: the study-level summary over every setting.

The study's name is the config's ``study`` key, extended so that two different configs never share a folder: each
override file given after the last file that names the study adds ``+{its file stem}``, and command-line values
(``--config``) add ``+{key=value,...}`` (a digest when that is long). Setting ``study`` on the command line names
the study exactly. Settings that only say how or where to run (:data:`selfdistill.execution.EXECUTION_ONLY`) add
nothing: a command-line value of one is left out of the name, and an override file that holds only such keys adds
no ``+{file stem}``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from .execution import is_execution_only, result_settings

#: What a study or variant name may contain (it becomes a folder name).
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=,-]*$")
#: Folder names a variant may not take: they already have a meaning inside a setting's folder.
RESERVED = re.compile(r"^(seed\d+|figures|logs|benchmarks|checkpoint)$")
#: Sections of the config a variant may override.
VARIANT_SECTIONS = ("train", "model", "distill")
_LONGEST_SLUG = 40


def _flatten(values: Mapping, prefix: str = "") -> list[tuple[str, object]]:
    items = []
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _spelled(value) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(map(_spelled, value))
    if isinstance(value, Mapping):
        return "-".join(f"{k}{_spelled(v)}" for k, v in value.items())
    return str(value).lower() if isinstance(value, bool) else str(value)


def _result_items(values: Mapping) -> list[tuple[str, object]]:
    """The dotted (key, value) items of ``values`` that change results (not execution-only)."""
    return sorted((key, value) for key, value in _flatten(values) if not is_execution_only(key))


def _without_execution(values: Mapping, prefix: str = "") -> dict:
    """``values`` without its execution-only leaves (and the mappings they leave empty)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            inner = _without_execution(value, f"{prefix}{key}.")
            if inner:
                out[key] = inner
        elif not is_execution_only(f"{prefix}{key}"):
            out[key] = value
    return out


def override_slug(overrides: Mapping) -> str:
    """A short, folder-safe name for command-line config values: ``modes=ce``, ``train.lr=0.02,seeds=0-1``; a
    digest ``cli-<8 hex>`` when that would be longer than 40 characters. Execution-only values are left out (``""``
    when nothing else is given)."""
    items = _result_items(overrides)
    slug = ",".join(f"{key}={_spelled(value)}" for key, value in items)
    slug = re.sub(r"[^A-Za-z0-9_.=,-]", "_", slug)
    if len(slug) <= _LONGEST_SLUG:
        return slug
    kept = _without_execution(overrides)
    return "cli-" + hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:8]


def study_name(config: Mapping, config_files: Sequence[str | Path], overrides: Mapping) -> str:
    """The study's folder name under ``results/`` (see the module doc).

    ``config`` is the merged config, ``config_files`` the config files in the order they were merged and
    ``overrides`` the command-line values (``--config``)."""
    if "study" in overrides:
        return str(overrides["study"])
    named, extra = False, []
    for index, path in enumerate(config_files):
        content = yaml.safe_load(Path(path).read_text()) or {}
        if isinstance(content, Mapping) and "study" in content:
            named, extra = True, []
        elif index and isinstance(content, Mapping) and not _result_items(content):
            # an override file of execution-only settings (where and how to run) is the same study
            continue
        else:
            extra.append(Path(path).stem)
    name = "+".join([str(config["study"])] * named + extra) or "default"
    slug = override_slug(overrides)
    return f"{name}+{slug}" if slug else name


def _deep_update(base: dict, update: Mapping) -> dict:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _typed(value, schema: Mapping):
    """``value`` (a command-line string, or a structure of them) converted to the types ``schema`` asks for."""
    if isinstance(value, Mapping):
        properties = schema.get("properties", {})
        return {key: _typed(item, properties.get(key, {})) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item, schema.get("items", {})) for item in value]
    if not isinstance(value, str):
        return value
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if "string" in types and "null" not in types and "number" not in types:
        return value
    parsed = yaml.safe_load(value) if value.strip() else None
    if isinstance(parsed, str):
        try:
            parsed = float(parsed)
        except ValueError:
            return value
    return _typed(parsed, schema) if isinstance(parsed, (list, Mapping)) else parsed


def typed_overrides(overrides: Mapping, schema: Mapping) -> dict:
    """Command-line values converted by the schema's types: Snakemake hands nested values such as
    ``--config train='{lr: 0.02}'`` over as strings (``'0.02'``); this makes them the numbers, booleans, nulls and
    lists the schema expects. Values the schema wants as strings stay strings."""
    return _typed(dict(overrides), schema)


def apply_overrides(config: dict, overrides: Mapping, schema: Mapping) -> dict:
    """``config`` (modified in place and returned) with the typed command-line values merged over it."""
    return _deep_update(config, typed_overrides(overrides, schema))


def variant_config(config: Mapping, variant: str | None) -> dict:
    """The config one variant runs: the study's config with the variant's overrides of ``train``, ``model`` and
    ``distill`` merged in (``None``: the study's own config)."""
    merged = copy.deepcopy({key: value for key, value in config.items() if key != "variants"})
    if variant is not None:
        _deep_update(merged, config["variants"][variant])
    return merged


@dataclass(frozen=True)
class Setting:
    """One folder of runs: a noise setting, and a variant in a study that has variants."""

    noise: str
    variant: str | None = None

    @property
    def path(self) -> str:
        """The ``{setting}`` part of result paths: ``pair40`` or ``pair40/lr0.001``."""
        return self.noise if self.variant is None else f"{self.noise}/{self.variant}"


def settings(noises: Sequence[str], config: Mapping) -> dict[str, Setting]:
    """Every setting of the study, by its path, noise settings outermost, variants in config order."""
    variants = list(config.get("variants") or {}) or [None]
    return {s.path: s for s in (Setting(noise, variant) for noise in noises for variant in variants)}


def variant_problems(config: Mapping, noises: Sequence[str]) -> list[str]:
    """Variant names that cannot be folders next to the runs (``seed0``, ``figures``, a noise setting's name)."""
    problems = []
    for name in config.get("variants") or {}:
        if RESERVED.match(name) or name in noises:
            problems.append(
                f"invalid config: variants.{name}: the name is taken by a folder of the results "
                f"(seed<N>, figures, logs, checkpoint or a noise setting); choose another"
            )
    return problems


# ------------------------------------------------------------------------------------------------------------------
# The config a study folder was made with
# ------------------------------------------------------------------------------------------------------------------

#: In ``results/{study}/``: the config as planned (defaults filled), and the digest of its result-changing settings.
SNAPSHOT_FILE = "config.yaml"
DIGEST_FILE = "study.json"
#: How many differing keys the planning error names before "and N more".
_SHOWN_DIFFERENCES = 4


def _plain(config: Mapping) -> dict:
    """``config`` as plain JSON types (Snakemake's config may hold mapping subclasses)."""
    return json.loads(json.dumps(config, default=str))


def settings_digest(config: Mapping) -> str:
    """The sha256 of the config's result-changing settings (:func:`selfdistill.execution.result_settings`)."""
    settings_json = json.dumps(_plain(result_settings(config)), sort_keys=True)
    return hashlib.sha256(settings_json.encode()).hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_snapshot(
    folder: str | os.PathLike, config: Mapping, study: str, log: str | os.PathLike | None = None
) -> None:
    """Write ``folder/config.yaml`` (the config as planned) and ``folder/study.json`` (the study's name, the digest
    and the result-changing settings), each atomically; one line saying so in ``log``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plain = _plain(config)
    header = (
        f"# The config the results in results/{study}/ are made with (defaults filled in). Planning compares every\n"
        f"# later config with it: a result-changing difference stops the plan (docs/studies.md).\n"
    )
    _write_atomically(folder / SNAPSHOT_FILE, header + yaml.safe_dump(plain, sort_keys=False))
    record = {"study": study, "digest": settings_digest(plain), "settings": result_settings(plain)}
    _write_atomically(folder / DIGEST_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    if log is not None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text(f"study {study}: wrote {folder / SNAPSHOT_FILE} and {folder / DIGEST_FILE}\n")


def _shown(value) -> str:
    return "(not set)" if value is _MISSING else json.dumps(value, default=str)


_MISSING = object()


def snapshot_problem(
    folder: str | os.PathLike, config: Mapping, study: str, fill: Callable[[Mapping], Mapping] = dict
) -> str | None:
    """One line when ``folder`` holds a snapshot of a config whose result-changing settings differ from
    ``config``'s: the differing keys (old → new) and the ways out; ``None`` when they agree or there is no snapshot.

    ``fill`` fills the schema's defaults into the snapshot, so that a key the schema gained since the snapshot was
    written counts as its default."""
    path = Path(folder) / SNAPSHOT_FILE
    if not path.is_file():
        return None
    try:
        old = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        old = None
    if not isinstance(old, Mapping):
        return (
            f"{path} is not a readable config snapshot; delete results/{study}/ on purpose to start the study again, "
            f"or choose another study: name"
        )
    before = dict(_flatten(result_settings(fill(old))))
    after = dict(_flatten(result_settings(_plain(config))))
    differing = [
        key for key in sorted(set(before) | set(after)) if before.get(key, _MISSING) != after.get(key, _MISSING)
    ]
    if not differing:
        return None
    shown = [f"{key} {_shown(before.get(key, _MISSING))} → {_shown(after.get(key, _MISSING))}" for key in differing]
    more = len(shown) - _SHOWN_DIFFERENCES
    listed = "; ".join(shown[:_SHOWN_DIFFERENCES]) + (f"; and {more} more" if more > 0 else "")
    return (
        f"results/{study}/ was made with another config ({listed}; see {path}): give this config another study: name "
        f"(or --config study=NAME) to keep both, or delete results/{study}/ on purpose to rebuild it"
    )
