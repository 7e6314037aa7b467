"""What a config must satisfy beyond its schema, one line per problem: values that would be ignored, splits too
small to train on, settings that contradict each other (:func:`check_config`); the values the pipeline adjusts
(:func:`config_notes`); the noise settings and the ``distill`` keys each mode reads.

The config is checked with its schema's defaults filled in (:func:`with_defaults`, as Snakemake's ``validate``
fills them). Only the standard library, jsonschema and PyYAML are imported here.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from pathlib import Path

import jsonschema

from .config_errors import StrictValidator, load_schema, schema_error
from .dataset_files import CIFAR_FOLDERS, DATASET_CHANNELS, DATASET_SHAPES, dataset_option_problem
from .mode_names import TEACHER_OF
from .noise_spec import NoiseSpec
from .splits import split_sizes

#: Datasets with a built-in asymmetric class map (noise.DEFAULT_CLASS_MAPS); others need ``noise[].class_map``.
ASYMMETRIC_DEFAULT_MAP = ("digits", "cifar10")


def distill_keys(schema_path: str | os.PathLike) -> dict[str, tuple[str, ...]]:
    """The ``distill`` keys each mode reads, from the schema's ``x-mode`` annotations (modes without any map to ())."""
    schema = load_schema(schema_path)
    keys: dict[str, tuple[str, ...]] = {mode: () for mode in schema["properties"]["modes"]["items"]["enum"]}
    for key, prop in schema["properties"]["distill"]["properties"].items():
        keys[prop["x-mode"]] += (key,)
    return keys


def distill_params(distill: Mapping, mode: str, keys: Mapping[str, tuple[str, ...]]) -> dict:
    """The part of the config's ``distill`` section that ``mode`` uses (``keys``: :func:`distill_keys`), so a job
    gets only its own parameters and changing e.g. ``seq_alpha`` reruns only the ``self_distill_seq`` runs."""
    return {key: distill[key] for key in keys[mode] if key in distill}


def with_defaults(config: Mapping, schema: str | os.PathLike | Mapping) -> dict:
    """A copy of (schema-valid) ``config`` with the schema's defaults filled in, as Snakemake's ``validate`` leaves
    the workflow's config (also inside the noise entries)."""
    schema = load_schema(schema)
    properties = StrictValidator.VALIDATORS["properties"]

    def fill(validator, props, instance, sub):
        if isinstance(instance, dict):
            for key, prop in props.items():
                if "default" in prop:
                    instance.setdefault(key, copy.deepcopy(prop["default"]))
        yield from properties(validator, props, instance, sub)

    out = copy.deepcopy(dict(config))
    for _ in jsonschema.validators.extend(StrictValidator, {"properties": fill})(schema).iter_errors(out):
        pass
    return out


def _up(x: float) -> str:
    """``x`` rounded up to two significant digits, as YAML reads it back as a number."""
    digits = 1 - math.floor(math.log10(x))
    return f"{math.ceil(x * 10**digits) / 10**digits:.{max(digits, 1)}f}".rstrip("0").rstrip(".")


def _down(x: float) -> str:
    """``x`` (in [0, 1)) rounded down to three decimals."""
    return f"{math.floor(x * 1000) / 1000:g}"


def _largest_test_fraction(config: Mapping, need: int) -> str | None:
    """The largest digits ``test_fraction`` (three decimals) that leaves ``need`` images to train on."""
    for k in range(999, 0, -1):
        sizes = split_sizes({**config, "dataset_options": {**config["dataset_options"], "test_fraction": k / 1000}})
        if sizes.train >= need and sizes.test >= sizes.classes:
            return f"{k / 1000:g}"
    return None


def _split_problems(config: Mapping) -> list[str]:
    dataset, sizes = config["dataset"], split_sizes(config)
    n_images, classes = DATASET_SHAPES[dataset]
    least = 2 * classes
    batch = config["train"]["batch_size"]
    # the suggested bounds leave a whole batch too
    need = max(least, batch)
    fraction, test_fraction = config["val_fraction"], config["dataset_options"].get("test_fraction")
    problems = []
    if sizes.test < classes:
        problems.append(
            f"invalid config: dataset_options.test_fraction = {test_fraction} gives {dataset} a test split of "
            f"{sizes.test} images, fewer than its {classes} classes (the split is stratified); raise it to at least "
            f"{_up(classes / n_images)}"
        )
    if sizes.pool < least:
        bound = _largest_test_fraction(config, need)
        problems.append(
            f"invalid config: dataset_options.test_fraction = {test_fraction} leaves {sizes.pool} of the {n_images} "
            f"{dataset} images for training and validation, fewer than {least} (2 x {classes} classes); lower it"
            + (f" to at most {bound}" if bound else " and train.batch_size")
        )
    elif sizes.train < least:
        bound = _down((sizes.pool - need) / sizes.pool) if sizes.pool >= need else None
        problems.append(
            f"invalid config: val_fraction = {fraction} leaves {sizes.train} of the {sizes.pool} {dataset} training "
            f"images to train on ({sizes.val} go to validation), fewer than {least} (2 x {classes} classes); lower "
            + (f"val_fraction to at most {bound}" if bound else "val_fraction and train.batch_size")
        )
    elif fraction > 0 and sizes.val == 0:
        problems.append(
            f"invalid config: val_fraction = {fraction} holds out no image ({fraction} x {sizes.pool} training images "
            f"rounds to 0), so early stopping would have no validation split; set it to 0 to train without one, or "
            f"to at least {_up(1 / sizes.pool)}"
        )
    if batch > sizes.train:
        problems.append(
            f"invalid config: train.batch_size = {batch} is larger than the training split ({sizes.train} {dataset} "
            f"images after val_fraction {fraction}); lower it to at most {sizes.train}"
        )
    return problems


def _rate_problems(entry: Mapping, where: str) -> list[str]:
    kind, rate = entry["type"], entry.get("rate") or 0
    if kind == "none" and rate:
        return [
            (
                f"invalid config: {where}.rate = {rate} does not apply to type none (clean labels); drop it, or choose "
                f"a noise type (pair, symmetric, asymmetric)"
            )
        ]
    if kind == "human" and rate:
        return [
            (
                f"invalid config: {where}.rate = {rate} does not apply to human noise, whose rate comes from the "
                f"label file; drop rate"
            )
        ]
    if kind not in ("none", "human") and not rate:
        return [f"invalid config: {where} is {kind} with rate 0; give {where}.rate, or use type: none for clean labels"]
    return []


def _foreign_key_problems(entry: Mapping, where: str) -> list[str]:
    kind, problems = entry["type"], []
    if "count" in entry and kind in ("none", "human"):
        problems.append(
            f"invalid config: {where}.count applies to drawn noise (pair, symmetric, asymmetric), not to {kind}; "
            f"drop it"
        )
    if "class_map" in entry and kind != "asymmetric":
        problems.append(
            f"invalid config: {where}.class_map applies to asymmetric noise only, not to {kind}; drop it or set "
            f"{where}.type: asymmetric"
        )
    problems += [
        f"invalid config: {where}.{key} applies to human noise only, not to {kind}; drop it or set {where}.type: human"
        for key in ("label_file", "key")
        if key in entry and kind != "human"
    ]
    return problems


def _class_map_problems(entry: Mapping, where: str, dataset: str) -> list[str]:
    if entry["type"] != "asymmetric":
        return []
    class_map, classes = entry.get("class_map"), DATASET_SHAPES[dataset][1]
    if class_map is None and dataset not in ASYMMETRIC_DEFAULT_MAP:
        return [
            (
                f"invalid config: {where} is asymmetric noise on {dataset}, which has no default class map; give "
                f"{where}.class_map (source class: target class)"
            )
        ]
    if class_map is not None and not class_map:
        return [
            (
                f"invalid config: {where}.class_map is empty, so no label would flip; give source class: target class "
                f"pairs, or leave it out for {dataset}'s default map"
            )
        ]
    for src, dst in (class_map or {}).items():
        if not (int(src) < classes and int(dst) < classes):
            return [
                (
                    f"invalid config: {where}.class_map {src}: {dst} names a class {dataset} does not have (its "
                    f"classes are 0-{classes - 1})"
                )
            ]
        if int(src) == int(dst):
            return [
                (
                    f"invalid config: {where}.class_map {src}: {dst} maps a class to itself, which flips nothing; "
                    f"drop that entry"
                )
            ]
    return []


def noise_problems(config: Mapping) -> list[str]:
    """One line per noise entry that would be ignored in part, fail in the corrupt step, or share another entry's
    results folder (``config`` may lack defaults)."""
    dataset = config.get("dataset", "digits")
    problems, names = [], {}
    for i, entry in enumerate(config["noise"]):
        kind, where = entry["type"], f"noise[{i}]"
        problems += _rate_problems(entry, where)
        problems += _foreign_key_problems(entry, where)
        problems += _class_map_problems(entry, where, dataset)
        if kind == "human" and dataset not in CIFAR_FOLDERS:
            problems.append(
                f"invalid config: {where} is human noise, which needs annotators' labels of the training images "
                f"(CIFAR-10N, for cifar10); {dataset} has none: use pair, symmetric or asymmetric noise"
            )
        name = NoiseSpec.from_config(entry).name
        if name in names:
            problems.append(
                f"invalid config: {where} duplicates the setting {name!r} of noise[{names[name]}] (both would write "
                f"results/{{study}}/{name}); remove one"
            )
        names.setdefault(name, i)
    return problems


def _frequency_problems(config: Mapping) -> list[str]:
    freq = config["frequency"]
    deltas = freq["deltas"]
    allowed = ", ".join(f"{d:g}" for d in deltas)

    def known(value: float) -> bool:
        return any(math.isclose(value, d, rel_tol=1e-9) for d in deltas)

    problems = []
    if freq.get("plot_delta") is not None and not known(freq["plot_delta"]):
        problems.append(
            f"invalid config: frequency.plot_delta = {freq['plot_delta']} is not one of frequency.deltas "
            f"({allowed}); pick one of them, or add it to frequency.deltas"
        )
    problems += [
        f"invalid config: frequency.plot_deltas[{j}] = {value} is not one of frequency.deltas ({allowed}); pick "
        f"from them, or add it to frequency.deltas"
        for j, value in enumerate(freq.get("plot_deltas") or [])
        if not known(value)
    ]
    problems += _spectrum_problems(config)
    return problems


def _spectrum_problems(config: Mapping) -> list[str]:
    """frequency.bands within the training subset; frequency.space features needs the reference mode and a validation
    split (its early-stopped network gives the features)."""
    from .mode_names import REFERENCE_MODE

    freq, problems = config["frequency"], []
    if freq.get("bands", 1) > freq["train_subset"]:
        problems.append(
            f"invalid config: frequency.bands = {freq['bands']} is more than frequency.train_subset = "
            f"{freq['train_subset']} (each band needs at least one eigenvector); lower it"
        )
    if freq.get("space") == "features":
        if REFERENCE_MODE not in config["modes"]:
            problems.append(
                f"invalid config: frequency.space = features builds the kernel on the early-stopped {REFERENCE_MODE} "
                f"model of each seed, but modes has no {REFERENCE_MODE}; add it, or use frequency.space: input"
            )
        if config.get("val_fraction") == 0:
            problems.append(
                "invalid config: frequency.space = features needs an early-stopped model, but val_fraction is 0 (no "
                "early stopping); set val_fraction > 0, or use frequency.space: input"
            )
    return problems


def _normalize_problems(config: Mapping) -> list[str]:
    norm, dataset = config["train"].get("normalize", "split"), config["dataset"]
    if not isinstance(norm, Mapping):
        return []
    channels = DATASET_CHANNELS[dataset]
    return [
        f"invalid config: train.normalize.{key} has {len(norm[key])} values, but {dataset} images have {channels} "
        f"channel{'s' if channels > 1 else ''}; give one per channel"
        for key in ("mean", "std")
        if len(norm[key]) != channels
    ][:1]


def _distill_problems(config: Mapping) -> list[str]:
    if "self_distill_seq" not in config["modes"]:
        return []
    warmup, epochs = config["distill"]["seq_warmup"], config["train"]["epochs"]
    if warmup < epochs - 1:
        return []
    # the soft labels move after each epoch past the warm-up (losses.seq_alpha) and are trained on from the next one
    lower = f"lower it to at most {epochs - 2}, " if epochs >= 2 else ""
    message = (
        f"invalid config: distill.seq_warmup = {warmup} with train.epochs = {epochs}: self_distill_seq's soft labels "
        f"would first move after the last epoch, so it would train exactly like ce; {lower}raise train.epochs to "
        f"at least {warmup + 2}, or drop self_distill_seq from modes"
    )
    return [message]


def _teacher_problems(config: Mapping) -> list[str]:
    """A mode that distils from another run's early-stopped network (``TEACHER_OF``) needs that run and a
    validation split to stop it on."""
    problems = []
    for mode in config["modes"]:
        teacher = TEACHER_OF.get(mode)
        if teacher is None:
            continue
        if teacher not in config["modes"]:
            problems.append(
                f"invalid config: modes has {mode} but not {teacher}, whose early-stopped network is its teacher; "
                f"add {teacher} to modes"
            )
        elif config["val_fraction"] == 0:
            problems.append(
                f"invalid config: val_fraction = 0 leaves no validation split, so {teacher} has no early-stopped "
                f"network for {mode} to distil from; set val_fraction above 0 or drop {mode} from modes"
            )
    return problems


def config_problems(config: Mapping) -> list[str]:
    """Every problem of a schema-valid ``config`` with its defaults filled in that the schema cannot express, one
    line each, in the order of the config's sections: settings that would be ignored (a noise ``rate``,
    ``class_map``, ``label_file`` or ``key`` its type does not read, a ``seq_warmup`` that outlasts training),
    splits too small to train on, plotted deltas that are not computed, noise settings the corrupt step would
    reject or that share a results folder."""
    problems = []
    option = dataset_option_problem(config["dataset"], config["dataset_options"])
    if option:
        problems.append(option)
    problems += noise_problems(config)
    problems += _split_problems(config)
    problems += _normalize_problems(config)
    problems += _distill_problems(config)
    problems += _teacher_problems(config)
    problems += _frequency_problems(config)
    return problems


def check_config(config: Mapping, schema: str | os.PathLike | Mapping) -> list[str]:
    """Why ``config`` (as merged from the config files; it is not modified) cannot be planned, one line each: the
    schema's most relevant violation alone, else every :func:`config_problems` of it with defaults filled in;
    ``[]`` when it can."""
    schema = load_schema(schema)
    error = schema_error(config, schema)
    if error:
        return [error]
    return config_problems(with_defaults(config, schema))


def config_notes(config: Mapping) -> list[str]:
    """One line per value the pipeline adjusts (a frequency subset larger than its split: all of the split is
    used), for the plan's log; ``config`` is schema-valid with its defaults filled in."""
    freq, sizes, dataset = config["frequency"], split_sizes(config), config["dataset"]
    notes = []
    if freq["train_subset"] > sizes.train:
        notes.append(
            f"note: frequency.train_subset = {freq['train_subset']} is more than the {sizes.train} {dataset} training "
            f"images (after val_fraction {config['val_fraction']}); the frequency analysis uses all {sizes.train}"
        )
    if (freq.get("test_subset") or 0) > sizes.test:
        notes.append(
            f"note: frequency.test_subset = {freq['test_subset']} is more than the {sizes.test} {dataset} test "
            f"images; the frequency analysis uses all {sizes.test}"
        )
    return notes


def noise_settings(config: Mapping) -> dict[str, dict]:
    """Map each noise setting's wildcard name (``pair40``) to its config entry; a :func:`noise_problems` entry
    (e.g. two entries with one name) raises ValueError."""
    problems = noise_problems(config)
    if problems:
        raise ValueError(problems[0])
    return {NoiseSpec.from_config(entry).name: dict(entry) for entry in config["noise"]}


def human_label_problem(noises: Mapping[str, Mapping]) -> str | None:
    """One line naming a missing human-noise label file and where to get it, or ``None``."""
    for name, entry in noises.items():
        spec = NoiseSpec.from_config(entry)
        if spec.type == "human" and not Path(spec.label_file).is_file():
            return (
                f"noise setting {name}: label file {spec.label_file} not found; download CIFAR-10_human.pt from "
                f"https://github.com/UCSC-REAL/cifar-10-100n (folder data/) and put it there, or set "
                f"noise[].label_file"
            )
    return None
