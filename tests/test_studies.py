"""Every study in its own place: study names, command-line values typed by the schema, variants."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import snakemake

from selfdistill.planning import load_schema
from selfdistill.schema import SCHEMA_PATH
from selfdistill.studies import (
    Setting,
    override_slug,
    settings,
    study_name,
    typed_overrides,
    variant_config,
    variant_problems,
)

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(SCHEMA_PATH)
SHIPPED = [REPO / "config.yaml", *sorted((REPO / "config").glob("*.yaml"))]


def _write(tmp_path, name, content) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(content))
    return path


def test_each_shipped_study_config_names_its_own_study():
    names = {}
    for path in SHIPPED:
        content = yaml.safe_load(path.read_text())
        # a study config, not an override file
        if "dataset" in content:
            assert "study" in content, path.name
            names.setdefault(content["study"], []).append(path.name)
    assert all(len(files) == 1 for files in names.values()), names
    assert yaml.safe_load((REPO / "config.yaml").read_text())["study"] == "default"


def test_override_files_and_command_line_values_extend_the_name(tmp_path):
    study = _write(tmp_path, "study.yaml", {"study": "mine", "dataset": "digits"})
    longer = _write(tmp_path, "longer.yaml", {"train": {"epochs": 9}})
    named = _write(tmp_path, "named.yaml", {"study": "other", "train": {"epochs": 9}})
    assert study_name({"study": "mine"}, [study], {}) == "mine"
    assert study_name({"study": "mine"}, [study, longer], {}) == "mine+longer"
    # an override file that names the study names it exactly
    assert study_name({"study": "other"}, [study, longer, named], {}) == "other"
    assert study_name({"study": "mine"}, [study], {"modes": ["ce"]}) == "mine+modes=ce"
    assert study_name({"study": "mine"}, [study], {"study": "exact", "modes": ["ce"]}) == "exact"
    # a config file that names no study is named by its stem
    assert study_name({"study": "default"}, [longer], {}) == "longer"


def test_override_slug_is_readable_when_short_and_a_digest_when_long():
    assert override_slug({"train": {"lr": 0.02}, "seeds": [0, 1]}) == "seeds=0-1,train.lr=0.02"
    assert override_slug({"train": {"lr": "0.02"}}) == "train.lr=0.02"
    long = override_slug({"train": {"lr": 0.02, "weight_decay": 0.0005, "momentum": 0.5, "epochs": 7}})
    assert long.startswith("cli-") and len(long) == 12
    assert override_slug({"frequency": {"deltas": [0.1, 0.2]}}) != override_slug({"frequency": {"deltas": [0.1]}})


def test_command_line_strings_get_the_schema_types():
    # what Snakemake hands over for --config train='{lr: 0.02, nesterov: true}' seeds='[0, 1]' model='{width: null}'
    given = {
        "train": {"lr": "0.02", "nesterov": "true", "epochs": "5", "device": "cuda", "weight_decay": "5e-4"},
        "seeds": ["0", "1"],
        "model": {"width": "null", "arch": "mlp"},
        "modes": ["ce"],
        "study": "x1",
    }
    typed = typed_overrides(given, SCHEMA)
    assert typed["train"] == {"lr": 0.02, "nesterov": True, "epochs": 5, "device": "cuda", "weight_decay": 5e-4}
    assert type(typed["train"]["epochs"]) is int and type(typed["train"]["lr"]) is float
    assert typed["seeds"] == [0, 1] and typed["model"] == {"width": None, "arch": "mlp"}
    assert typed["modes"] == ["ce"] and typed["study"] == "x1"
    # a value that is not a number stays a string, for the schema to reject with its one line
    assert typed_overrides({"train": {"lr": "fast"}}, SCHEMA) == {"train": {"lr": "fast"}}


def test_variants_override_only_their_sections():
    config = {
        "study": "s",
        "train": {"lr": 0.01, "epochs": 60},
        "model": {"arch": "mlp", "width": 512},
        "variants": {"lr0.001": {"train": {"lr": 0.001}}, "width64": {"model": {"width": 64}}, "base": {}},
    }
    assert variant_config(config, "lr0.001")["train"] == {"lr": 0.001, "epochs": 60}
    assert variant_config(config, "width64")["model"] == {"arch": "mlp", "width": 64}
    assert variant_config(config, "base")["train"] == config["train"]
    assert "variants" not in variant_config(config, None)
    # the study's config is left alone
    assert config["train"]["lr"] == 0.01
    assert list(settings(["pair40", "none"], config)) == [
        "pair40/lr0.001",
        "pair40/width64",
        "pair40/base",
        "none/lr0.001",
        "none/width64",
        "none/base",
    ]
    assert settings(["pair40"], {}) == {"pair40": Setting("pair40")}


@pytest.mark.parametrize("name", ["seed0", "figures", "logs", "pair40"])
def test_variant_names_that_are_folders_already_are_refused(name):
    problems = variant_problems({"variants": {name: {}}}, ["pair40"])
    assert len(problems) == 1 and f"variants.{name}" in problems[0]


# ----------------------------------------------------------------------------------------------------------------
# Through Snakemake (dry runs)
# ----------------------------------------------------------------------------------------------------------------


def _plan(tmp_path, *args, configfiles):
    result = snakemake(tmp_path, "-n", *args, configfile=configfiles, cores=None, check=False, timeout=300)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.workflow
@pytest.mark.slow
def test_a_nested_command_line_value_plans_into_its_own_study(tmp_path):
    code, out = _plan(tmp_path, "--config", "train={lr: 0.02}", configfiles=[REPO / "config" / "smoke.yaml"])
    assert code == 0, out
    assert "results/smoke+train.lr=0.02/pair40/seed0/ce/history.csv" in out
    assert "results/smoke/" not in out


@pytest.mark.workflow
@pytest.mark.slow
def test_variants_run_the_whole_grid_each_and_a_bad_one_is_named(tmp_path):
    variants = {"variants": {"lr0.1": {"train": {"lr": 0.1}}, "narrow": {"model": {"width": 8}}}}
    code, out = _plan(tmp_path, configfiles=[REPO / "config" / "smoke.yaml", _write(tmp_path, "v.yaml", variants)])
    assert code == 0, out
    for variant in ("lr0.1", "narrow"):
        assert f"results/smoke+v/pair40/{variant}/summary.md" in out
    # the data is shared by the variants
    assert "results/smoke+v/pair40/seed0/data.h5" in out
    bad = {"variants": {"slow": {"train": {"lr": -1}}}}
    code, out = _plan(tmp_path, configfiles=[REPO / "config" / "smoke.yaml", _write(tmp_path, "bad.yaml", bad)])
    assert code != 0 and "variants.slow: invalid config: train.lr = -1 is out of range" in out, out


def test_execution_only_settings_add_nothing_to_the_name(tmp_path):
    """Where and how a study runs (device, threads, data_root, ...) is the same study, in the same folder."""
    study = _write(tmp_path, "study.yaml", {"study": "mine", "dataset": "digits"})
    gpu = _write(tmp_path, "gpu.yaml", {"train": {"device": "cuda", "threads": 8, "eval_batch_size": 4096}})
    mixed = _write(tmp_path, "mixed.yaml", {"train": {"device": "cuda", "lr": 0.5}})
    for overrides in (
        {"dataset_options": {"download": True}},
        {"dataset_options": {"data_root": "/data", "verify_md5": False}},
        {"train": {key: 1 for key in ("threads", "runtime", "epoch_seconds", "checkpoint_every")} | {"device": "cpu"}},
        {"train": {"eval_batch_size": 64, "compile": "default"}},
    ):
        assert study_name({"study": "mine"}, [study], overrides) == "mine", overrides
    # and with a result-changing value, only that one is named
    assert study_name({"study": "mine"}, [study], {"train": {"lr": 0.02, "threads": 4}}) == "mine+train.lr=0.02"
    assert study_name({"study": "mine"}, [study, gpu], {}) == "mine"
    assert study_name({"study": "mine"}, [study, mixed], {}) == "mine+mixed"
    # a long slug's digest does not depend on execution-only values either
    long = {"train": {"lr": 0.02, "weight_decay": 0.0005, "momentum": 0.5, "epochs": 7}}
    assert override_slug(long) == override_slug({"train": {**long["train"], "threads": 3}})


def test_execution_only_is_one_list_every_reader_shares():
    from selfdistill.execution import EXECUTION_ONLY, is_execution_only, result_settings
    from selfdistill.planning import train_params, with_defaults

    required = {"train.device", "train.threads", "train.runtime", "train.epoch_seconds", "train.checkpoint_every"}
    required |= {"train.eval_batch_size", "train.compile"}
    required |= {f"dataset_options.{key}" for key in ("data_root", "download", "verify_md5")}
    assert required <= set(EXECUTION_ONLY)
    # every listed key exists in the schema; any other key (a new one too) changes results
    for key in EXECUTION_ONLY:
        section, name = key.split(".")
        assert name in SCHEMA["properties"][section]["properties"], key
    assert not is_execution_only("train.lr") and not is_execution_only("train.some_new_key")
    assert is_execution_only("variants.lr0.001.train.threads")
    config = with_defaults({"variants": {"v": {"train": {"threads": 2, "lr": 0.1}}}}, SCHEMA)
    settings_ = result_settings(config)
    assert "study" not in settings_ and "threads" not in settings_["train"] and "data_root" not in str(settings_)
    assert settings_["variants"]["v"]["train"] == {"lr": 0.1}
    assert not set(train_params(config)) & {key.split(".")[1] for key in EXECUTION_ONLY}
