"""Every malformed config is refused at planning time, in one line that names the key (or the file and line).

The table below mutates the shipped config.yaml in one place per case and calls the planning check directly
(selfdistill.planning.check_config: the schema's first violation, else what the schema cannot see), so it runs in
about a second. A few end-to-end cases run ``snakemake -n`` in a temporary directory to show what the user sees.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from helpers import snakemake

from selfdistill.planning import (
    check_config,
    config_file_problem,
    config_notes,
    split_sizes,
    with_defaults,
)
from selfdistill.schema import SCHEMA_PATH

REPO = Path(__file__).resolve().parents[1]
SCHEMA = SCHEMA_PATH
SMOKE = REPO / "config" / "smoke.yaml"


def load(rel: str) -> dict:
    return yaml.safe_load((REPO / rel).read_text())


BASE = load("config.yaml")


def put(path: str, value):
    """Mutation: set the dotted ``path`` (``train.lr``, ``noise.0.rate``) to ``value``."""

    def mutate(config):
        *parents, last = path.split(".")
        node = config
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def both(*mutations):
    def mutate(config):
        for mutation in mutations:
            mutation(config)

    return mutate


def noise(*entries):
    return put("noise", list(entries))


PAIR = {"type": "pair", "rate": 0.4}

#: (case id, mutation of config.yaml, fragments the one-line message must contain: the key and what is wrong)
BAD = [
    # ---- unknown keys
    ("unknown-top-level", put("epochs", 10), ["unknown key 'epochs' in config", "allowed keys: dataset,"]),
    ("unknown-train-key", put("train.lrr", 0.1), ["unknown key 'lrr' in train", "lr, momentum"]),
    ("unknown-noise-key", put("noise.0.rte", 0.4), ["unknown key 'rte' in noise[0]", "rate, type"]),
    ("unknown-distill-key", put("distill.seq_alpa", 0.2), ["unknown key 'seq_alpa' in distill", "seq_alpha"]),
    ("unknown-frequency-key", put("frequency.delta", [0.1]), ["unknown key 'delta' in frequency", "deltas"]),
    (
        "unknown-class-map-key",
        noise({"type": "asymmetric", "rate": 0.4, "class_map": {"3": 5, "bird": 0}}),
        ["unknown key 'bird' in noise[0].class_map"],
    ),
    ("unknown-dataset-option", put("dataset_options.root", "x"), ["unknown key 'root' in dataset_options"]),
    # ---- wrong types
    ("type-epochs-text", put("train.epochs", "ten"), ["train.epochs = 'ten' has the wrong type; expected integer"]),
    ("type-section", put("train", "fast"), ["train = 'fast' has the wrong type; expected object"]),
    (
        "type-lr-1e-3",
        put("train.lr", "1e-3"),
        ["train.lr = '1e-3' has the wrong type; expected number (YAML reads 1e-3 as text: write 1.0e-3)"],
    ),
    ("type-weight-decay-5e-4", put("train.weight_decay", "5e-4"), ["train.weight_decay = '5e-4'", "write 5.0e-4"]),
    ("type-epochs-1e3", put("train.epochs", "1e3"), ["train.epochs = '1e3'", "expected integer", "write 1000"]),
    ("type-epochs-float", put("train.epochs", 10.0), ["train.epochs = 10.0 has the wrong type", "(write 10)"]),
    ("type-seed-float", put("seeds", [0, 1.0]), ["seeds[1] = 1.0 has the wrong type; expected integer"]),
    ("type-batch-quoted", put("train.batch_size", "64"), ["train.batch_size = '64'", "write 64 without quotes"]),
    ("type-bool-quoted", put("train.nesterov", "true"), ["train.nesterov = 'true'", "expected boolean"]),
    ("type-width-text", put("model.width", "wide"), ["model.width = 'wide'", "expected integer or null"]),
    ("type-seeds-text", put("seeds", "0"), ["seeds = '0' has the wrong type; expected array"]),
    ("type-noise-mapping", put("noise", PAIR), ["noise = ", "expected array"]),
    ("type-class-map-value", put("noise.0.class_map", {"3": "x"}), ["noise[0].class_map.3 = 'x'", "integer"]),
    # ---- out of range
    ("range-rate-1", put("noise.0.rate", 1.0), ["noise[0].rate = 1.0 is out of range; it must be >= 0 and < 1"]),
    ("range-rate-negative", put("noise.0.rate", -0.1), ["noise[0].rate = -0.1 is out of range", ">= 0"]),
    ("range-val-fraction", put("val_fraction", 1.0), ["val_fraction = 1.0 is out of range", "< 1"]),
    ("range-epochs-0", put("train.epochs", 0), ["train.epochs = 0 is out of range; it must be >= 1"]),
    ("range-batch-1", put("train.batch_size", 1), ["train.batch_size = 1 is out of range; it must be >= 2"]),
    ("range-lr-0", put("train.lr", 0), ["train.lr = 0 is out of range; it must be > 0"]),
    ("range-momentum", put("train.momentum", 1.5), ["train.momentum = 1.5 is out of range", "<= 1"]),
    ("range-test-fraction", put("dataset_options.test_fraction", 1.0), ["dataset_options.test_fraction = 1.0"]),
    ("range-train-subset", put("frequency.train_subset", 1), ["frequency.train_subset = 1 is out of range"]),
    ("range-seq-alpha", put("distill.seq_alpha", 2), ["distill.seq_alpha = 2 is out of range"]),
    ("range-record-every", put("frequency.record_epochs", {"every": 0}), ["frequency.record_epochs.every = 0"]),
    # ---- enums and other schema rules
    ("enum-mode", put("modes", ["ce", "distill"]), ["modes[1] = 'distill' is not allowed", "self_distill_seq"]),
    ("enum-noise-type", put("noise.0.type", "gauss"), ["noise[0].type = 'gauss' is not allowed", "symmetric"]),
    ("enum-dataset", put("dataset", "imagenet"), ["dataset = 'imagenet' is not allowed", "digits, mnist1d, cifar10"]),
    ("enum-arch", put("model.arch", "resnet18"), ["model.arch = 'resnet18' is not allowed", "preact_resnet18"]),
    ("enum-schedule", put("train.schedule", "step"), ["train.schedule = 'step' is not allowed", "cosine"]),
    ("enum-source", put("frequency.sources", ["probs", "softmax"]), ["frequency.sources[1] = 'softmax'"]),
    ("enum-record-epochs", put("frequency.record_epochs", "some"), ["frequency.record_epochs = 'some'", "auto"]),
    ("missing-noise-type", noise({"rate": 0.4}), ["noise[0] is missing a required key", "'type'"]),
    ("duplicate-seed", put("seeds", [0, 0]), ["seeds = [0, 0] lists a value twice"]),
    ("no-noise", put("noise", []), ["noise is empty; give at least 1"]),
    ("device-pattern", put("train.device", "gpu"), ["train.device = 'gpu' is not allowed", "cuda:N"]),
    # ---- settings that contradict each other or the dataset
    ("option-for-other-dataset", put("dataset_options.data_root", "x"), ["dataset_options data_root", "digits"]),
    (
        "digits-option-on-cifar",
        both(put("dataset", "cifar10"), put("dataset_options", {"test_fraction": 0.3})),
        ["dataset_options test_fraction do not apply to cifar10"],
    ),
    ("noisy-type-rate-0", noise({"type": "pair", "rate": 0.0}), ["noise[0] is pair with rate 0", "type: none"]),
    ("duplicate-setting", noise(PAIR, {"type": "none"}, PAIR), ["noise[2] duplicates the setting 'pair40'"]),
    (
        "human-with-rate",
        both(put("dataset", "cifar10"), noise({"type": "human", "rate": 0.4})),
        ["noise[0].rate = 0.4 does not apply to human noise"],
    ),
    ("none-with-rate", noise({"type": "none", "rate": 0.4}), ["noise[0].rate = 0.4 does not apply to type none"]),
    (
        "second-entry-none-with-rate",
        noise(PAIR, {"type": "none", "rate": 0.2}),
        ["noise[1].rate = 0.2 does not apply to type none"],
    ),
    (
        "class-map-on-pair",
        noise({**PAIR, "class_map": {"3": 5}}),
        ["noise[0].class_map applies to asymmetric noise only, not to pair"],
    ),
    (
        "class-map-on-symmetric",
        noise({"type": "symmetric", "rate": 0.2, "class_map": {"3": 5}}),
        ["noise[0].class_map applies to asymmetric noise only, not to symmetric"],
    ),
    (
        "label-file-on-pair",
        noise({**PAIR, "label_file": "x.pt"}),
        ["noise[0].label_file applies to human noise only, not to pair"],
    ),
    ("key-on-none", noise({"type": "none", "key": "aggre_label"}), ["noise[0].key applies to human noise only"]),
    (
        "class-map-unknown-class",
        noise({"type": "asymmetric", "rate": 0.4, "class_map": {"3": 10}}),
        ["noise[0].class_map 3: 10 names a class digits does not have", "0-9"],
    ),
    (
        "class-map-to-itself",
        noise({"type": "asymmetric", "rate": 0.4, "class_map": {"3": 3}}),
        ["noise[0].class_map 3: 3 maps a class to itself"],
    ),
    (
        "class-map-empty",
        noise({"type": "asymmetric", "rate": 0.4, "class_map": {}}),
        ["noise[0].class_map is empty"],
    ),
    (
        "asymmetric-cifar100-no-map",
        both(put("dataset", "cifar100"), noise({"type": "asymmetric", "rate": 0.4})),
        ["noise[0] is asymmetric noise on cifar100, which has no default class map", "noise[0].class_map"],
    ),
    ("human-on-digits", noise({"type": "human"}), ["noise[0] is human noise", "digits has none"]),
    # ---- splits too small to train on
    (
        "val-fraction-0.99",
        put("val_fraction", 0.99),
        ["val_fraction = 0.99 leaves 14 of the 1437 digits training images", "fewer than 20", "at most 0.977"],
    ),
    (
        "val-fraction-rounds-to-0",
        put("val_fraction", 0.0001),
        ["val_fraction = 0.0001 holds out no image", "set it to 0", "at least 0.0007"],
    ),
    (
        "cifar100-val-fraction",
        both(put("dataset", "cifar100"), put("val_fraction", 0.997)),
        ["val_fraction = 0.997 leaves 150 of the 50000 cifar100 training images", "fewer than 200"],
    ),
    (
        "test-fraction-0.995",
        put("dataset_options.test_fraction", 0.995),
        ["dataset_options.test_fraction = 0.995 leaves 8 of the 1797 digits images", "at most 0.979"],
    ),
    (
        "test-fraction-0.001",
        put("dataset_options.test_fraction", 0.001),
        ["dataset_options.test_fraction = 0.001 gives digits a test split of 2 images", "10 classes"],
    ),
    (
        "batch-larger-than-split",
        put("train.batch_size", 2000),
        ["train.batch_size = 2000 is larger than the training split (1293 digits images", "at most 1293"],
    ),
    (
        "batch-larger-after-val",
        both(put("val_fraction", 0.97), put("train.batch_size", 64)),
        ["train.batch_size = 64 is larger than the training split (43 digits images after val_fraction 0.97)"],
    ),
    (
        "cifar10-batch",
        both(put("dataset", "cifar10"), put("train.batch_size", 60000)),
        ["train.batch_size = 60000 is larger than the training split (45000 cifar10 images"],
    ),
    # ---- values that would be ignored
    (
        "plot-delta-not-computed",
        put("frequency.plot_delta", 0.3),
        ["frequency.plot_delta = 0.3 is not one of frequency.deltas (0.05, 0.07, 0.1, 0.2, 0.5)"],
    ),
    (
        "plot-deltas-not-computed",
        put("frequency.plot_deltas", [0.05, 0.3]),
        ["frequency.plot_deltas[1] = 0.3 is not one of frequency.deltas"],
    ),
    (
        "deltas-drop-plotted",
        put("frequency.deltas", [0.1, 1.0]),
        ["frequency.plot_delta = 0.2 is not one of frequency.deltas (0.1, 1)"],
    ),
    (
        "seq-warmup-equals-epochs",
        put("distill.seq_warmup", 60),
        ["distill.seq_warmup = 60 with train.epochs = 60", "soft labels", "drop self_distill_seq from modes"],
    ),
    (
        "seq-warmup-last-epoch",
        put("distill.seq_warmup", 59),
        ["distill.seq_warmup = 59 with train.epochs = 60", "at most 58"],
    ),
    ("one-epoch-seq", put("train.epochs", 1), ["distill.seq_warmup = 5 with train.epochs = 1", "at least 7"]),
    (
        "teacher-mode-without-its-teacher",
        put("modes", ["self_distill", "distill_early_teacher"]),
        ["modes has distill_early_teacher but not ce", "add ce to modes"],
    ),
    (
        "teacher-mode-without-validation",
        both(put("modes", ["ce", "distill_early_teacher"]), put("val_fraction", 0)),
        ["val_fraction = 0 leaves no validation split", "drop distill_early_teacher from modes"],
    ),
    ("elr-beta-one", put("distill.elr_beta", 1), ["distill.elr_beta"]),
    ("teacher-temperature-zero", put("distill.teacher_temperature", 0), ["distill.teacher_temperature"]),
    (
        "normalize-three-channels-on-digits",
        put("train.normalize", {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]}),
        ["train.normalize.mean has 3 values, but digits images have 1 channel"],
    ),
    (
        "normalize-one-channel-on-cifar",
        both(put("dataset", "cifar10"), put("train.normalize", {"mean": [0.5], "std": [0.2]})),
        ["train.normalize.mean has 1 values, but cifar10 images have 3 channels"],
    ),
    ("normalize-unknown-word", put("train.normalize", "dataset"), ["train.normalize = 'dataset'", "split"]),
    (
        "normalize-zero-std",
        put("train.normalize", {"mean": [0.5], "std": [0.0]}),
        ["train.normalize.std[0] = 0.0 is out of range"],
    ),
    ("normalize-no-std", put("train.normalize", {"mean": [0.5]}), ["train.normalize", "'std'"]),
    ("schedule-unit-unknown", put("train.schedule_unit", "epochs"), ["train.schedule_unit", "epoch_ahead"]),
    ("frequency-inputs-unknown", put("frequency.inputs", "normalized"), ["frequency.inputs", "normalised"]),
    ("noise-count-unknown", put("noise.0.count", "binomial"), ["noise[0].count = 'binomial'", "bernoulli"]),
    ("noise-count-on-none", noise({"type": "none", "count": "bernoulli"}), ["noise[0].count applies to drawn noise"]),
    (
        "noise-exact-and-bernoulli-are-two-settings-but-twice-bernoulli-is-one",
        lambda c: c.update(noise=[{**PAIR, "count": "bernoulli"}, {**PAIR, "count": "bernoulli"}]),
        ["noise[1] duplicates the setting 'pair40b'"],
    ),
]


@pytest.mark.parametrize(("mutate", "fragments"), [pytest.param(m, f, id=i) for i, m, f in BAD])
def test_bad_config_is_refused_in_one_line(mutate, fragments):
    config = copy.deepcopy(BASE)
    mutate(config)
    problems = check_config(config, SCHEMA)
    assert problems, "accepted"
    for problem in problems:
        assert problem.startswith("invalid config: ") and "\n" not in problem and "\r" not in problem, problem
    for fragment in fragments:
        assert fragment in problems[0]
    assert config == _mutated(mutate), "check_config modified its argument"


def _mutated(mutate):
    config = copy.deepcopy(BASE)
    mutate(config)
    return config


def test_the_table_is_large_and_its_ids_unique():
    assert len(BAD) >= 50 and len({i for i, _, _ in BAD}) == len(BAD)


#: Neighbours of the cases above that are fine: the checks stop exactly at the boundary.
GOOD = [
    ("seq-warmup-two-below-epochs", put("distill.seq_warmup", 58)),
    ("long-warmup-without-seq-mode", both(put("distill.seq_warmup", 60), put("modes", ["ce", "self_distill"]))),
    ("batch-equal-to-split", put("train.batch_size", 1293)),
    ("val-fraction-0", put("val_fraction", 0)),
    ("val-fraction-at-suggested-bound", put("val_fraction", 0.977)),
    ("val-fraction-smallest-suggested", put("val_fraction", 0.0007)),
    ("test-fraction-at-suggested-bound", put("dataset_options.test_fraction", 0.979)),
    ("test-fraction-smallest-suggested", put("dataset_options.test_fraction", 0.0056)),
    ("plot-delta-float-noise", put("frequency.plot_delta", 0.1 + 0.1)),
    ("asymmetric-with-map", noise({"type": "asymmetric", "rate": 0.4, "class_map": {"3": 5, "5": 3}})),
    (
        "asymmetric-cifar100-with-map",
        both(put("dataset", "cifar100"), noise({**PAIR, "type": "asymmetric", "class_map": {"0": 1}})),
    ),
    ("human-on-cifar10", both(put("dataset", "cifar10"), noise({"type": "human", "key": "aggre_label"}))),
    ("none-with-rate-0", noise({"type": "none", "rate": 0.0})),
    ("lr-written-for-yaml", put("train.lr", yaml.safe_load("1.0e-3"))),
    ("normalize-constants-on-digits", put("train.normalize", {"mean": [0.5], "std": [0.25]})),
    ("schedule-epoch-ahead", put("train.schedule_unit", "epoch_ahead")),
    ("noise-exact-beside-bernoulli", lambda c: c.update(noise=[PAIR, {**PAIR, "count": "bernoulli"}])),
    ("frequency-normalised-inputs", put("frequency.inputs", "normalised")),
    ("big-subsets-are-notes", both(put("frequency.train_subset", 100000), put("frequency.test_subset", 100000))),
    ("teacher-mode-with-its-teacher", put("modes", ["ce", "distill_early_teacher", "elr"])),
    ("teacher-parameters-without-the-mode", both(put("val_fraction", 0), put("distill.teacher_label_weight", 0.5))),
]


@pytest.mark.parametrize("mutate", [pytest.param(m, id=i) for i, m in GOOD])
def test_neighbouring_good_config_is_accepted(mutate):
    assert check_config(_mutated(mutate), SCHEMA) == []


SHIPPED = ["config.yaml", *sorted(str(p.relative_to(REPO)) for p in (REPO / "config").glob("*.yaml"))]


@pytest.mark.parametrize(
    "files", [(rel,) for rel in SHIPPED] + [("config/cifar10_seed.yaml", "config/epochs_1800.yaml")]
)
def test_shipped_configs_pass_every_check(files):
    """As the workflow reads them: a study config alone (it does not inherit config.yaml), an override file after
    the study it changes (`--configfile config.yaml mine.yaml`), merged in the given order."""
    from snakemake.utils import update_config

    for rel in files:
        assert config_file_problem(REPO / rel) is None
    config = {} if "study" in load(files[0]) else copy.deepcopy(BASE)
    for rel in files:
        update_config(config, load(rel))
    assert check_config(config, SCHEMA) == []
    assert config_notes(with_defaults(config, SCHEMA)) == []


# ---- values the pipeline adjusts: one note each, no error


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            put("frequency.train_subset", 100000),
            [
                (
                    "note: frequency.train_subset = 100000 is more than the 1293 digits training images (after "
                    "val_fraction 0.1); the frequency analysis uses all 1293"
                )
            ],
        ),
        (
            put("frequency.test_subset", 5000),
            [
                "note: frequency.test_subset = 5000 is more than the 360 digits test images; the frequency analysis uses all 360"
            ],
        ),
        (both(put("dataset", "cifar10"), put("frequency.test_subset", 20000)), ["10000 cifar10 test images"]),
        (put("frequency.train_subset", 1293), []),
        (put("frequency.test_subset", 360), []),
    ],
    ids=["train-subset", "test-subset", "cifar-test-subset", "train-subset-equal", "test-subset-equal"],
)
def test_oversized_subsets_are_noted(mutate, expected):
    config = _mutated(mutate)
    assert check_config(config, SCHEMA) == []
    notes = config_notes(with_defaults(config, SCHEMA))
    assert len(notes) == len(expected)
    for note, fragment in zip(notes, expected):
        assert fragment in note and "\n" not in note


def test_split_sizes_are_those_the_corrupt_step_writes(tmp_path):
    """The planned sizes are the real ones (scikit-learn's split of digits, then the validation split)."""
    import h5py

    from selfdistill.data import build_corrupted_dataset

    for test_fraction, val_fraction in ((0.2, 0.1), (0.37, 0.25)):
        out = tmp_path / f"{test_fraction}.h5"
        options = {"test_fraction": test_fraction}
        build_corrupted_dataset(out, "digits", PAIR, seed=3, val_fraction=val_fraction, dataset_options=options)
        sizes = split_sizes({"dataset": "digits", "dataset_options": options, "val_fraction": val_fraction})
        with h5py.File(out) as h5:
            found = {split: h5[f"{split}/labels_clean"].shape[0] for split in ("train", "val", "test")}
        assert found == {"train": sizes.train, "val": sizes.val, "test": sizes.test}


@pytest.mark.parametrize("text", ["1e-3", "5E-4", "-2e+2", "1.5e3", "1e3"])
def test_suggested_number_spelling_is_read_by_yaml_as_that_number(text):
    config = _mutated(put("train.lr", text))
    message = check_config(config, SCHEMA)[0]
    spelled = message.rsplit("write ", 1)[1].rstrip(")")
    assert isinstance(yaml.safe_load(spelled), float) and yaml.safe_load(spelled) == float(text), message


# ---- the config files themselves


FILES = [
    ("syntax", "dataset: digits\nnoise:\n  - type: pair\n    rate: 0.4\n  bad: [\n", " line 5: YAML syntax error: "),
    ("unclosed-list", "seeds: [0, 1\nmodes: [ce]\n", " line 2: YAML syntax error: expected ',' or ']'"),
    ("tab", "train:\n\tlr: 0.1\n", " line 2: YAML syntax error: found character '\\t'"),
    ("bad-indent", "train:\n  lr: 0.1\n epochs: 2\n", " line 3: YAML syntax error: expected the end of the indented"),
    ("two-documents", "seeds: [0]\n---\nseeds: [1]\n", " line 2: YAML syntax error: expected a single document"),
    ("empty", "", ": the config file is empty"),
    ("comments-only", "# nothing yet\n", ": the config file is empty"),
    ("top-level-list", "# a list\n- dataset: digits\n", " line 2: the config file holds a list, not settings"),
    ("top-level-value", "digits\n", " line 1: the config file holds the single value 'digits'"),
    ("duplicate-key", "train:\n  lr: 0.1\ntrain:\n  epochs: 5\n", " line 3: key 'train' is given twice"),
    ("nested-duplicate", "train: {lr: 0.1, lr: 0.2}\n", " line 1: key 'lr' is given twice in one mapping"),
]


@pytest.mark.parametrize(("text", "fragment"), [pytest.param(t, f, id=i) for i, t, f in FILES])
def test_broken_config_file_is_named_with_its_line(tmp_path, text, fragment):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    message = config_file_problem(path)
    assert message is not None and message.startswith(f"{path}{fragment}"), message
    assert "\n" not in message and message.endswith(("; fix the file", "default", "config.yaml)", "merge them"))


@pytest.mark.parametrize(
    "text",
    ['{"dataset": "digits", "seeds": [0]}', "a: &x {p: 1}\nb: *x\nc:\n  <<: *x\n  q: 2\n", "x: 1\n'1': 2\n1: 3\n"],
    ids=["json", "anchors-and-merge-keys", "same-text-other-type"],
)
def test_valid_config_files_pass(tmp_path, text):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    assert config_file_problem(path) is None
    assert config_file_problem(tmp_path / "missing.yaml") is None


# ---- end to end: what `snakemake -n` prints


def plan(workdir: Path, *configfiles: Path) -> tuple[int, str]:
    result = snakemake(workdir, "-n", configfile=list(configfiles) or None, cores=1, check=False, timeout=300)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.workflow
@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("seeds: [0, 1]\nmodes: [ce\n", "line 3: YAML syntax error: "),
        ("", ": the config file is empty"),
        ("- dataset: digits\n", "line 1: the config file holds a list, not settings"),
    ],
    ids=["syntax-error", "empty", "top-level-list"],
)
def test_broken_config_yaml_stops_the_plan_in_one_line(tmp_path, text, fragment):
    """The workflow's own config.yaml (the ``configfile:`` directive, read from the working directory)."""
    (tmp_path / "config.yaml").write_text(text)
    code, output = plan(tmp_path)
    assert code != 0
    lines = [line for line in output.splitlines() if line.startswith(str(tmp_path / "config.yaml"))]
    assert len(lines) == 1 and fragment in lines[0], output
    assert not (tmp_path / "results").exists() and "Job stats" not in output


@pytest.mark.workflow
@pytest.mark.slow
def test_semantic_problem_stops_the_plan_in_one_line(tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text("frequency:\n  plot_delta: 0.3\n")
    workdir = tmp_path / "work"
    code, output = plan(workdir, SMOKE, override)
    assert code != 0
    lines = [line for line in output.splitlines() if line.startswith("invalid config")]
    expected = (
        "invalid config: frequency.plot_delta = 0.3 is not one of frequency.deltas (0.05, 0.2, 1); pick one of "
        "them, or add it to frequency.deltas"
    )
    assert lines == [expected], output
    assert not (workdir / "results").exists() and "Job stats" not in output


@pytest.mark.workflow
@pytest.mark.slow
def test_duplicate_key_in_a_configfile_and_subset_note(tmp_path):
    """--configfile files are read by Snakemake before the Snakefile runs; a key given twice is caught after."""
    override = tmp_path / "override.yaml"
    override.write_text("frequency:\n  train_subset: 100000\nfrequency:\n  test_subset: 5000\n")
    code, output = plan(tmp_path / "work", SMOKE, override)
    assert code != 0
    assert f"{override} line 3: key 'frequency' is given twice in one mapping (first on line 1)" in output, output
    override.write_text("frequency:\n  train_subset: 100000\n  test_subset: 5000\n")
    code, output = plan(tmp_path / "work", SMOKE, override)
    assert code == 0, output
    notes = [line for line in output.splitlines() if line.startswith("note: frequency.")]
    assert len(notes) == 2 and "uses all 1293" in notes[0] and "uses all 360" in notes[1], output
