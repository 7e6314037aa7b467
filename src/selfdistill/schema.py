"""The config schema: the one place that states every config key, its type and its default.

It ships inside the package (``selfdistill/config.schema.yaml``, package data), so the workflow, the library and
its tests read the same file whether the package is used from the repository or installed with ``pip install .``.
The workflow fills a config's left-out keys from it (:func:`selfdistill.config_checks.with_defaults`); the library
fills the values a caller leaves out from :func:`section_defaults` (:func:`selfdistill.training.train_settings`,
:func:`selfdistill.modes.build_mode`), so a notebook user and a pipeline user get the same defaults.

Only the standard library and PyYAML are imported here.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

#: The schema file (package data next to this module).
SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


@functools.cache
def _loaded() -> dict:
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def schema() -> dict:
    """The config schema as a mapping (read once; each call returns its own copy, free to change)."""
    return copy.deepcopy(_loaded())


def section_defaults(section: str) -> dict[str, Any]:
    """The schema's default of every key of the config section ``section`` that states one (``train`` →
    ``{"epochs": 60, "batch_size": 32, ...}``)."""
    properties = _loaded()["properties"][section]["properties"]
    return {key: copy.deepcopy(prop["default"]) for key, prop in properties.items() if "default" in prop}
