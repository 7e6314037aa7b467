"""Tests of selfdistill.planning: one-line schema error messages and the noise-setting names.

The configs under test are the repository's own (config.yaml, config/smoke.yaml), each mutated in one place.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from selfdistill import datasets, models, noise
from selfdistill.dataset_files import DATASET_OPTIONS, dataset_option_problem, dataset_problem
from selfdistill.modes import REGISTRY
from selfdistill.planning import (
    explain_config_error,
    human_label_problem,
    noise_settings,
)
from selfdistill.schema import SCHEMA_PATH

REPO = Path(__file__).resolve().parents[1]
SCHEMA = SCHEMA_PATH


def load(rel):
    with open(REPO / rel) as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def schema():
    with open(SCHEMA) as fh:
        return yaml.safe_load(fh)


@pytest.fixture
def config():
    return load("config.yaml")


def explain(cfg):
    msg = explain_config_error(cfg, SCHEMA)
    if msg is not None:
        assert isinstance(msg, str)
        assert "\n" not in msg and "\r" not in msg, msg
        assert msg.startswith("invalid config:")
    return msg


# ----------------------------------------------------------------------------------------------------------------
# Valid configs
# ----------------------------------------------------------------------------------------------------------------


SHIPPED = sorted(str(p.relative_to(REPO)) for p in (REPO / "config").glob("*.yaml"))


@pytest.mark.parametrize("rel", ["config.yaml", *SHIPPED])
def test_shipped_configs_are_valid(rel):
    assert explain(load(rel)) is None


#: (config files as a user passes them, after config.yaml) -> (architecture, parameters for 10 classes)
STUDY_NETWORKS = {
    ("config/cifar10_seed.yaml",): ("shake_shake_26_2x32d_original", 2_922_714),
    ("config/cifar10_seed.yaml", "config/epochs_1800.yaml"): (
        "shake_shake_26_2x32d_original",
        2_922_714,
    ),
    ("config/original.yaml",): ("shake_shake_26_2x32d_original", 2_922_714),
    ("config/cifar10_sweep.yaml",): ("preact_resnet18", 11_172_170),
    ("config/cifar10n.yaml",): ("preact_resnet18", 11_172_170),
}


@pytest.mark.parametrize("files", sorted(STUDY_NETWORKS))
def test_study_configs_merged_over_the_default_build_their_network(files):
    """Snakemake merges --configfile files over config.yaml; nothing of the digits study may leak into them."""
    from snakemake.utils import update_config

    merged = load("config.yaml")
    for rel in files:
        update_config(merged, load(rel))
    assert explain(merged) is None
    arch, n_params = STUDY_NETWORKS[files]
    model = merged["model"]
    net = models.build_model(model["arch"], (3, 32, 32), 10, model.get("width"), model.get("depth", 2))
    assert model["arch"] == arch and models.count_parameters(net) == n_params


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        ("config/mnist1d.yaml", {"": ("mnist1d_cnn", 5_210)}),
        ("config/mnist1d_clean.yaml", {"cnn": ("mnist1d_cnn", 5_210), "mlp": ("mnist1d_mlp", 15_210)}),
    ],
)
def test_mnist1d_configs_merged_over_the_default_build_the_benchmarks_networks(rel, expected):
    """MNIST-1D signals are 1×40 images of one channel; config.yaml's digits MLP width must not leak into them."""
    from snakemake.utils import update_config

    merged = load("config.yaml")
    update_config(merged, load(rel))
    assert explain(merged) is None
    assert merged["dataset"] == "mnist1d" and merged["train"]["optimizer"] == "adam"
    variants = merged.get("variants") or {"": {}}
    built = {}
    for name, override in variants.items():
        model = {**merged["model"], **override.get("model", {})}
        net = models.build_model(model["arch"], (1, 1, 40), 10, model.get("width"), model.get("depth", 2))
        built[name] = (model["arch"], models.count_parameters(net))
    assert built == expected


def test_empty_config_is_valid():
    """Every key has a default, so an empty mapping is valid too."""
    assert explain({}) is None


def test_all_noise_types_valid(config):
    config["noise"] = [
        {"type": "pair", "rate": 0.4},
        {"type": "symmetric", "rate": 0.2},
        {"type": "asymmetric", "rate": 0.4, "class_map": {"3": 5, "5": 3}},
        {"type": "none"},
    ]
    assert explain(config) is None


# ----------------------------------------------------------------------------------------------------------------
# Unknown keys
# ----------------------------------------------------------------------------------------------------------------


def test_unknown_top_level_key(config, schema):
    config["epochs"] = 10
    msg = explain(config)
    assert msg is not None
    assert "'epochs'" in msg
    allowed = sorted(schema["properties"])
    assert "allowed keys: " + ", ".join(allowed) in msg


def test_unknown_nested_key(config, schema):
    config["train"]["lrr"] = 0.1
    msg = explain(config)
    assert msg is not None
    assert "'lrr'" in msg and "train" in msg
    allowed = sorted(schema["properties"]["train"]["properties"])
    assert "allowed keys: " + ", ".join(allowed) in msg
    assert "lr" in allowed


def test_unknown_key_in_noise_entry(config):
    config["noise"][0]["rte"] = 0.4
    msg = explain(config)
    assert "'rte'" in msg and "noise[0]" in msg
    assert "class_map, count, key, label_file, rate, type" in msg


def test_unknown_class_map_key_names_only_the_bad_key(config):
    config["noise"][0] = {
        "type": "asymmetric",
        "rate": 0.4,
        "class_map": {"3": 5, "bird": 0},
    }
    msg = explain(config)
    assert "'bird'" in msg and "noise[0].class_map" in msg
    assert "'3'" not in msg


# ----------------------------------------------------------------------------------------------------------------
# Types and ranges
# ----------------------------------------------------------------------------------------------------------------


def test_wrong_type(config):
    config["train"]["epochs"] = "ten"
    msg = explain(config)
    assert "train.epochs" in msg and "'ten'" in msg and "integer" in msg


def test_wrong_type_section(config):
    config["train"] = "fast"
    msg = explain(config)
    assert "train" in msg and "'fast'" in msg and "object" in msg


@pytest.mark.parametrize("rate,bound", [(1.0, "< 1"), (1.5, "< 1"), (-0.1, ">= 0")])
def test_noise_rate_out_of_range(config, rate, bound):
    config["noise"][0]["rate"] = rate
    msg = explain(config)
    assert "noise[0].rate" in msg
    assert repr(rate) in msg
    assert bound in msg


def test_second_noise_entry_named_by_index(config):
    config["noise"].append({"type": "symmetric", "rate": 2.0})
    msg = explain(config)
    assert "noise[1].rate" in msg and "2.0" in msg


def test_val_fraction_out_of_range(config):
    config["val_fraction"] = 1.0
    msg = explain(config)
    assert "val_fraction" in msg and "< 1" in msg


def test_missing_noise_type(config):
    config["noise"][0] = {"rate": 0.4}
    msg = explain(config)
    assert "noise[0]" in msg and "type" in msg


# ----------------------------------------------------------------------------------------------------------------
# Enums
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate,where,bad,allowed",
    [
        (
            lambda c: c.update(modes=["ce", "distill"]),
            "modes[1]",
            "distill",
            list(REGISTRY),
        ),
        (
            lambda c: c["noise"][0].update(type="gauss"),
            "noise[0].type",
            "gauss",
            list(noise.NOISE_TYPES),
        ),
        (
            lambda c: c.update(dataset="imagenet"),
            "dataset",
            "imagenet",
            list(datasets.DATASETS),
        ),
        (
            lambda c: c["model"].update(arch="resnet18"),
            "model.arch",
            "resnet18",
            list(models.ARCHITECTURES),
        ),
    ],
    ids=["mode", "noise_type", "dataset", "arch"],
)
def test_enum_errors(config, mutate, where, bad, allowed):
    mutate(config)
    msg = explain(config)
    assert msg is not None
    assert where in msg
    assert repr(bad) in msg
    assert "allowed values: " + ", ".join(allowed) in msg


def test_schema_enums_match_the_library(schema):
    """The schema's enums must list exactly what the library implements."""
    props = schema["properties"]
    assert props["modes"]["items"]["enum"] == list(REGISTRY)
    assert props["noise"]["items"]["properties"]["type"]["enum"] == list(noise.NOISE_TYPES)
    assert props["dataset"]["enum"] == list(datasets.DATASETS)
    assert props["model"]["properties"]["arch"]["enum"] == list(models.ARCHITECTURES)
    options = props["dataset_options"]["properties"]
    assert sorted(options) == sorted({key for keys in DATASET_OPTIONS.values() for key in keys})


@pytest.mark.parametrize(
    ("key", "text", "spelled"),
    [("lr", "1e-3", "1.0e-3"), ("weight_decay", "5e-4", "5.0e-4"), ("lr", "2E+1", "2.0e+1"), ("epochs", "1e2", "100")],
)
def test_number_yaml_reads_as_text_gets_a_spelling_it_reads_as_a_number(config, key, text, spelled):
    config["train"][key] = text
    msg = explain(config)
    assert msg.endswith(f"(YAML reads {text} as text: write {spelled})"), msg
    assert f"train.{key} = {text!r} has the wrong type" in msg
    assert yaml.safe_load(spelled) == float(text) and not isinstance(yaml.safe_load(spelled), str)


def test_float_for_an_integer_is_refused(config):
    """jsonschema takes 10.0 for an integer; the training job would get a float epoch count."""
    config["train"]["epochs"] = 10.0
    assert explain(config) == "invalid config: train.epochs = 10.0 has the wrong type; expected integer (write 10)"
    config["train"]["epochs"] = 10
    assert explain(config) is None


def test_other_errors_are_one_line(config):
    for mutate in [
        lambda c: c["train"].update(device="gpu"),
        lambda c: c.update(seeds=[0, 0]),
        lambda c: c.update(noise=[]),
        lambda c: c["noise"][0].update(class_map={"3": "x"}),
    ]:
        cfg = copy.deepcopy(config)
        mutate(cfg)
        assert explain(cfg) is not None


# ----------------------------------------------------------------------------------------------------------------
# noise_settings
# ----------------------------------------------------------------------------------------------------------------


def test_noise_settings_names(config):
    config["noise"] = [
        {"type": "pair", "rate": 0.4},
        {"type": "symmetric", "rate": 0.2},
        {"type": "asymmetric", "rate": 0.4},
        {"type": "none"},
        {"type": "pair", "rate": 0.125},
    ]
    out = noise_settings(config)
    assert list(out) == ["pair40", "sym20", "asym40", "none", "pair12.5"]
    assert out["sym20"] == {"type": "symmetric", "rate": 0.2}
    assert out["none"] == {"type": "none"}


def test_noise_settings_shipped_configs():
    assert list(noise_settings(load("config.yaml"))) == ["pair40"]
    assert list(noise_settings(load("config/smoke.yaml"))) == ["pair40"]


def test_noise_settings_returns_copies(config):
    out = noise_settings(config)
    out["pair40"]["rate"] = 0.9
    assert config["noise"][0]["rate"] == 0.4


@pytest.mark.parametrize(
    "entries,culprit",
    [
        ([{"type": "pair", "rate": 0.4}, {"type": "pair", "rate": 0.4}], "noise[1]"),
        (
            # different maps, same wildcard name: they would share one results folder
            [
                {"type": "asymmetric", "rate": 0.4},
                {"type": "asymmetric", "rate": 0.4, "class_map": {"3": 5}},
            ],
            "noise[1]",
        ),
        (
            [{"type": "none"}, {"type": "symmetric", "rate": 0.2}, {"type": "none"}],
            "noise[2]",
        ),
    ],
)
def test_noise_settings_rejects_duplicates(config, entries, culprit):
    config["noise"] = entries
    with pytest.raises(ValueError, match=r"duplicate") as info:
        noise_settings(config)
    assert culprit in str(info.value)


@pytest.mark.parametrize("entry", [{"type": "pair", "rate": 0.0}, {"type": "symmetric"}])
def test_noise_settings_rejects_zero_rate(config, entry):
    config["noise"] = [{"type": "none"}, entry]
    with pytest.raises(ValueError, match=r"noise\[1\].*rate 0") as info:
        noise_settings(config)
    assert entry["type"] in str(info.value) and "none" in str(info.value)


def test_human_noise_names_and_rate(config):
    # human noise needs annotators' labels: CIFAR-10N
    config["dataset"] = "cifar10"
    config["noise"] = [
        {"type": "human", "key": "worse_label"},
        {"type": "human", "key": "aggre_label"},
        {"type": "human", "key": "random_label1"},
        # default key: worse_label, a duplicate of the first
        {"type": "human"},
    ]
    with pytest.raises(ValueError, match=r"noise\[3\] duplicates the setting 'human_worse'"):
        noise_settings(config)
    config["noise"] = config["noise"][:3]
    assert list(noise_settings(config)) == [
        "human_worse",
        "human_aggre",
        "human_random1",
    ]
    config["noise"] = [{"type": "human", "rate": 0.4}]
    with pytest.raises(ValueError, match=r"noise\[0\]\.rate = 0.4 does not apply to human noise.*drop rate"):
        noise_settings(config)


def test_dataset_options_that_do_not_apply_are_named():
    assert dataset_option_problem("digits", {"test_fraction": 0.3}) is None
    msg = dataset_option_problem("cifar10", {"test_fraction": 0.3, "download": True})
    assert msg == (
        "invalid config: dataset_options test_fraction do not apply to cifar10; "
        "it takes data_root, download, verify_md5"
    )
    assert "data_root" in dataset_option_problem("digits", {"data_root": "x"})


def test_dataset_problem_says_where_and_how(tmp_path):
    assert dataset_problem("digits", {}) is None
    assert dataset_problem("cifar10", {"data_root": str(tmp_path), "download": True}) is None
    msg = dataset_problem("cifar10", {"data_root": str(tmp_path)})
    assert f"expected {tmp_path}/cifar-10-batches-py/" in msg
    assert "dataset_options.download: true" in msg and "\n" not in msg
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "meta"):
        (folder / name).write_bytes(b"x")
    msg = dataset_problem("cifar100", {"data_root": str(tmp_path)})
    assert "(test missing)" in msg


def test_human_label_problem_names_the_file(tmp_path):
    missing = tmp_path / "CIFAR-10_human.pt"
    noises = {"human_worse": {"type": "human", "label_file": str(missing)}}
    msg = human_label_problem(noises)
    assert str(missing) in msg and "cifar-10-100n" in msg and "human_worse" in msg
    missing.write_bytes(b"")
    assert human_label_problem(noises) is None
    assert human_label_problem({"pair40": {"type": "pair", "rate": 0.4}}) is None
