"""Planning helpers used by the Snakefile: per-rule library inputs, per-mode distill params, defaults, devices."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from selfdistill import config as cfg
from selfdistill.hardware import planned_device
from selfdistill.training import DistillSettings, TrainSettings

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "selfdistill"
SCRIPT_RULE = {
    "corrupt.py": "corrupt",
    "train.py": "train",
    "frequency.py": "frequency",
    "aggregate.py": "aggregate",
    "aggregate_frequency.py": "aggregate",
    "figure.py": "figures",
    "benchmark.py": "benchmarks",
}


def _selfdistill_imports(path: Path) -> set[str]:
    """Modules of selfdistill that ``path`` imports directly (``from .x``, ``from selfdistill.x``, ``from .``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1 and not module:
                found.add("__init__")
            elif node.level == 1:
                found.add(module.split(".")[0])
            elif module.startswith("selfdistill"):
                parts = module.split(".")
                found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


def _closure(start: set[str]) -> set[str]:
    todo, seen = list(start), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += _selfdistill_imports(PACKAGE / f"{module}.py")
    return seen | {"__init__"}  # importing any submodule runs the package's __init__


@pytest.mark.parametrize(("script", "rule"), sorted(SCRIPT_RULE.items()))
def test_rule_inputs_cover_the_code_each_script_runs(script, rule):
    needed = _closure(_selfdistill_imports(REPO / "workflow" / "scripts" / script))
    assert needed <= set(cfg.RULE_MODULES[rule]), needed - set(cfg.RULE_MODULES[rule])
    assert all(Path(p).is_file() for p in cfg.library_files(rule))


def test_every_script_is_mapped_to_a_rule():
    assert {p.name for p in (REPO / "workflow" / "scripts").glob("*.py")} == set(SCRIPT_RULE)


def test_distill_params_keep_only_the_modes_keys():
    distill = {
        "bootstrap_soft_beta": 0.9,
        "bootstrap_hard_beta": 0.7,
        "seq_alpha": 0.4,
        "seq_warmup": 2,
        "seq_ramp": 3,
    }
    assert cfg.distill_params(distill, "ce") == {}
    assert cfg.distill_params(distill, "self_distill") == {}
    assert cfg.distill_params(distill, "self_distill_seq") == {
        "seq_alpha": 0.4,
        "seq_warmup": 2,
        "seq_ramp": 3,
    }
    assert cfg.distill_params(distill, "bootstrap_soft") == {"bootstrap_soft_beta": 0.9}
    assert cfg.distill_params(distill, "bootstrap_hard") == {"bootstrap_hard_beta": 0.7}
    # every key the training code understands belongs to some mode
    assert {k for keys in cfg.DISTILL_KEYS.values() for k in keys} == {
        f.name for f in dataclasses.fields(DistillSettings)
    }


@pytest.mark.parametrize(("section", "settings"), [("train", TrainSettings), ("distill", DistillSettings)])
def test_library_defaults_equal_schema_defaults(section, settings):
    """A notebook user calling the library directly gets the same defaults as a pipeline user."""
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    props = schema["properties"][section]["properties"]
    for field in dataclasses.fields(settings):
        assert props[field.name]["default"] == field.default, field.name


def test_planned_device(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert planned_device("auto") == "cpu"
    assert planned_device("cpu") == "cpu"
    assert planned_device("cuda:1") == "cuda:1"


def test_figures_have_plotters():
    from selfdistill.figures import PLOTTERS

    assert tuple(PLOTTERS) == cfg.FIGURES
    assert all(fn.__name__ == f"plot_{name}" for name, fn in PLOTTERS.items())
