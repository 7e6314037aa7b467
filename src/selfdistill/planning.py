"""What the Snakefile needs to plan the study: config error messages, noise names, targets, per-rule inputs.

Only the standard library, jsonschema and PyYAML (both Snakemake dependencies) are imported here, so the workflow
parses fast and in an environment that has Snakemake alone (``--sdm conda`` runs the jobs elsewhere).

Snakemake's ``validate`` does the validation (and fills defaults); when it fails, :func:`explain_config_error`
re-runs the same JSON schema with jsonschema to turn the first error into one line that names the key and the
allowed values, instead of a multi-line schema dump. :func:`check_config` then finds what the schema cannot see
(values that would be ignored, splits too small to train on, settings that contradict each other), one line each,
and :func:`config_notes` the values the pipeline legitimately adjusts. :func:`config_file_problem` names the file
and line of a config file that is not YAML, is empty, is not a mapping or repeats a key.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from .dataset_files import dataset_option_problem
from .epochs import output_bytes_per_epoch, recorded_epochs
from .execution import without_execution
from .figure_table import FIGURE_TABLE
from .imports import module_files
from .noise_spec import NoiseSpec

#: (images, classes) of each dataset, for planning job memory (digits: all 1,797 images, whatever the split).
DATASET_SHAPES = {
    "digits": (1797, 10),
    "cifar10": (60000, 10),
    "cifar100": (60000, 100),
}
#: Image channels of each dataset (the digits are 8×8 grey images: 1 channel, also for the MLP on flat pixels).
DATASET_CHANNELS = {"digits": 1, "cifar10": 3, "cifar100": 3}
#: (training images, test images) of the datasets with a fixed split; digits' split is drawn with
#: ``dataset_options.test_fraction`` (:func:`split_sizes`). The validation split is taken from the training images.
FIXED_SPLITS = {"cifar10": (50000, 10000), "cifar100": (50000, 10000)}
# datasets.load_digits's default
DIGITS_TEST_FRACTION = 0.2
#: Datasets with a built-in asymmetric class map (noise.DEFAULT_CLASS_MAPS); others need ``noise[].class_map``.
ASYMMETRIC_DEFAULT_MAP = ("digits", "cifar10")

#: Every figure the pipeline builds per dataset/noise setting (file stem = name), in the figure table's order.
FIGURES = tuple(entry.name for entry in FIGURE_TABLE)


def train_mem_mb(dataset: str) -> int:
    """Memory (MB) a training job asks for: digits is tiny; CIFAR holds 150 MB of uint8 images on the host, the
    HDF5 read buffers and the CUDA runtime (~2 GB)."""
    return 4000 if dataset == "digits" else 12000


#: Rough seconds per epoch (training + evaluation) by dataset family, network and device, for planning job runtimes
#: only; digits runs take well under a second. ``train.epoch_seconds`` overrides them.
EPOCH_SECONDS = {
    ("cifar", "shake_shake_26_2x32d", "cuda"): 30,
    ("cifar", "shake_shake_26_2x32d_original", "cuda"): 30,
    ("cifar", "preact_resnet18", "cuda"): 20,
    ("cifar", "fast_cnn", "cuda"): 5,
    ("cifar", "small_cnn", "cuda"): 5,
    ("cifar", "mlp", "cuda"): 3,
    ("cifar", "shake_shake_26_2x32d", "cpu"): 1200,
    ("cifar", "shake_shake_26_2x32d_original", "cpu"): 1200,
    ("cifar", "preact_resnet18", "cpu"): 2400,
    ("cifar", "fast_cnn", "cpu"): 600,
    ("cifar", "small_cnn", "cpu"): 120,
    ("cifar", "mlp", "cpu"): 30,
}


@dataclass(frozen=True)
class TrainTime:
    """The train rule's per-job ``runtime`` (minutes) and ``retries``, planned from the study."""

    estimate_min: float
    runtime_min: int
    retries: int


def epoch_seconds(config: Mapping, device: str) -> float:
    """Seconds of one epoch on ``device``: ``train.epoch_seconds``, else :data:`EPOCH_SECONDS` (1 s for digits)."""
    family = "digits" if config["dataset"] == "digits" else "cifar"
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    return config["train"].get("epoch_seconds") or EPOCH_SECONDS.get(
        (family, config["model"]["arch"], device_type), 1.0
    )


def train_time(config: Mapping, device: str) -> TrainTime:
    """Estimated minutes of one run (epochs × seconds per epoch, +50% and 5 minutes of margin); the runtime of one
    job (``train.runtime``, else the whole estimate); and the retries a run needs to finish when each job may run
    only ``runtime`` minutes and resumes from its checkpoint (plus one for a transient failure)."""
    train = config["train"]
    estimate = train["epochs"] * epoch_seconds(config, device) * 1.5 / 60 + 5
    runtime = train.get("runtime") or math.ceil(estimate)
    return TrainTime(estimate, runtime, math.ceil(estimate / runtime))


#: Longest a training run planned for the CPU by ``device: auto`` may take: a longer one is planned as a GPU job.
CPU_AUTO_LIMIT_MIN = 120


def auto_needs_gpu(config: Mapping, setting_configs: Sequence[Mapping], device: str) -> bool:
    """Whether ``train.device: auto``, resolved to the CPU here (no GPU visible), would train runs that take longer
    than :data:`CPU_AUTO_LIMIT_MIN` each (a CIFAR-size network on a login node): such a study is planned as GPU
    jobs, as ``train.device: cuda`` plans it (and :func:`no_gpu_note` says so)."""
    if config["train"]["device"] != "auto" or device != "cpu":
        return False
    return max(train_time(c, "cpu").estimate_min for c in setting_configs) > CPU_AUTO_LIMIT_MIN


def no_gpu_note(setting_configs: Sequence[Mapping], device: str, gpu_here: bool) -> str | None:
    """One line when the study's runs are planned for a GPU that this machine does not have: the runs, epochs and
    seconds per epoch on the planned GPU (:data:`EPOCH_SECONDS`, or ``train.epoch_seconds``), the GPU-hours they
    add up to, and where to run them; ``None`` when they train on the CPU or a GPU is visible."""
    if not device.startswith("cuda") or gpu_here:
        return None
    parts = [
        (len(c["seeds"]) * len(c["modes"]), c["train"]["epochs"], epoch_seconds(c, "cuda")) for c in setting_configs
    ]
    runs = sum(n for n, _, _ in parts)
    hours = sum(n * epochs * seconds for n, epochs, seconds in parts) / 3600
    shapes = {(epochs, seconds) for _, epochs, seconds in parts}
    if len(shapes) == 1:
        epochs, seconds = shapes.pop()
        detail = f"{runs} runs × {epochs} epochs × {seconds:g} s"
    else:
        detail = f"{runs} runs"
    return (
        f"note: no GPU visible here: {detail} ≈ {hours:.1f} GPU-hours on the planned GPUs; submit to a GPU machine or "
        f"cluster (a job started here stops at once; train.device: cpu trains on this CPU)"
    )


def train_params(config: Mapping) -> dict:
    """The result-changing ``train`` settings: the train rule's params (the execution-only ones,
    :data:`selfdistill.execution.EXECUTION_ONLY`, reach the job through its config, so changing them reruns
    nothing)."""
    return without_execution("train", config["train"])


def frequency_mem_mb(config: Mapping) -> int:
    """Memory (MB) a frequency job asks for, from the sizes it will hold: per split an n × n float64 distance
    matrix, one n × n kernel operator and its temporaries (3 n² × 8 bytes), and four n × m float64 blocks of the
    stacked outputs (m = stored epochs × classes × sources + label columns); n is the larger split analysed."""
    freq, dataset = config["frequency"], config["dataset"]
    n_images, n_classes = DATASET_SHAPES[dataset]
    n = max(freq["train_subset"], freq.get("test_subset") or n_images)
    n = min(n, n_images)
    n_test = min(freq.get("test_subset") or n_images, n_images)
    per_epoch = output_bytes_per_epoch(min(freq["train_subset"], n_images), n_test, n_classes)
    stored = len(recorded_epochs(config["train"]["epochs"], freq.get("record_epochs", "auto"), per_epoch))
    m = stored * n_classes * len(freq["sources"]) + 2 * n_classes
    return 1000 + math.ceil((3 * n * n + 4 * n * m) * 8 / 1e6)


def distill_keys(schema_path: str | os.PathLike) -> dict[str, tuple[str, ...]]:
    """The ``distill`` keys each mode reads, from the schema's ``x-mode`` annotations (modes without any map to ())."""
    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)
    keys: dict[str, tuple[str, ...]] = {mode: () for mode in schema["properties"]["modes"]["items"]["enum"]}
    for key, prop in schema["properties"]["distill"]["properties"].items():
        keys[prop["x-mode"]] += (key,)
    return keys


def distill_params(distill: Mapping, mode: str, keys: Mapping[str, tuple[str, ...]]) -> dict:
    """The part of the config's ``distill`` section that ``mode`` uses (``keys``: :func:`distill_keys`), so a job
    gets only its own parameters and changing e.g. ``seq_alpha`` reruns only the ``self_distill_seq`` runs."""
    return {key: distill[key] for key in keys[mode] if key in distill}


def library_files(script: str | os.PathLike) -> list[str]:
    """The library modules ``script`` runs (:func:`selfdistill.imports.module_files`), as paths relative to the
    working directory when they lie below it: a rule's inputs, so editing a module reruns the steps that run it."""
    here = Path.cwd().resolve()
    return [str(path.relative_to(here)) if path.is_relative_to(here) else str(path) for path in module_files(script)]


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
    """The config schema as a mapping (read from its file unless it is one already)."""
    return _load_schema(schema)


def _load_schema(schema: str | os.PathLike | Mapping) -> dict:
    if isinstance(schema, Mapping):
        return dict(schema)
    with open(schema) as fh:
        return yaml.safe_load(fh)


#: JSON schema draft 2020-12, except that an integer is an integer as YAML writes it: jsonschema (and so Snakemake's
#: ``validate``) takes ``10.0`` for one, and a training job would get a float epoch count or batch size.
_STRICT_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
)
_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_STRICT_TYPES)
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


def _schema_error(config: Mapping, schema: Mapping) -> str | None:
    error = jsonschema.exceptions.best_match(_Validator(schema).iter_errors(config))
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
    return _schema_error(config, _load_schema(schema_path))


def with_defaults(config: Mapping, schema: str | os.PathLike | Mapping) -> dict:
    """A copy of (schema-valid) ``config`` with the schema's defaults filled in, as Snakemake's ``validate`` leaves
    the workflow's config (also inside the noise entries)."""
    schema = _load_schema(schema)
    properties = _Validator.VALIDATORS["properties"]

    def fill(validator, props, instance, sub):
        if isinstance(instance, dict):
            for key, prop in props.items():
                if "default" in prop:
                    instance.setdefault(key, copy.deepcopy(prop["default"]))
        yield from properties(validator, props, instance, sub)

    out = copy.deepcopy(dict(config))
    for _ in jsonschema.validators.extend(_Validator, {"properties": fill})(schema).iter_errors(out):
        pass
    return out


# ------------------------------------------------------------------------------------------------------------------
# What the schema cannot see (the config has its defaults filled in)
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitSizes:
    """Images per split as the corrupt step makes them (the same for every seed): ``pool`` training images, of
    which ``val`` are held out for validation and ``train`` are trained on; ``test`` test images."""

    pool: int
    train: int
    val: int
    test: int
    classes: int


def split_sizes(config: Mapping) -> SplitSizes:
    """The split sizes of ``config``'s dataset, computed as datasets.load_digits (scikit-learn's stratified
    ``train_test_split``: ``ceil(test_fraction × 1797)`` test images) and data.build_corrupted_dataset
    (``round(val_fraction × pool)`` validation images) compute them."""
    dataset = config.get("dataset", "digits")
    n_images, classes = DATASET_SHAPES[dataset]
    if dataset in FIXED_SPLITS:
        pool, test = FIXED_SPLITS[dataset]
    else:
        fraction = config.get("dataset_options", {}).get("test_fraction", DIGITS_TEST_FRACTION)
        test = math.ceil(fraction * n_images)
        pool = n_images - test
    val = round(config.get("val_fraction", 0.1) * pool)
    return SplitSizes(pool, pool - val, val, test, classes)


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


def noise_problems(config: Mapping) -> list[str]:
    """One line per noise entry that would be ignored in part, fail in the corrupt step, or share another entry's
    results folder (``config`` may lack defaults)."""
    dataset = config.get("dataset", "digits")
    classes = DATASET_SHAPES[dataset][1]
    problems, names = [], {}
    for i, entry in enumerate(config["noise"]):
        kind, where = entry["type"], f"noise[{i}]"
        rate = entry.get("rate") or 0
        if kind == "none" and rate:
            problems.append(
                f"invalid config: {where}.rate = {rate} does not apply to type none (clean labels); drop it, or choose "
                f"a noise type (pair, symmetric, asymmetric)"
            )
        elif kind == "human" and rate:
            problems.append(
                f"invalid config: {where}.rate = {rate} does not apply to human noise, whose rate comes from the "
                f"label file; drop rate"
            )
        elif kind not in ("none", "human") and not rate:
            problems.append(
                f"invalid config: {where} is {kind} with rate 0; give {where}.rate, or use type: none for clean labels"
            )
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
            f"invalid config: {where}.{key} applies to human noise only, not to {kind}; drop it or set {where}.type: "
            f"human"
            for key in ("label_file", "key")
            if key in entry and kind != "human"
        ]
        class_map = entry.get("class_map")
        if kind == "asymmetric" and class_map is None and dataset not in ASYMMETRIC_DEFAULT_MAP:
            problems.append(
                f"invalid config: {where} is asymmetric noise on {dataset}, which has no default class map; give "
                f"{where}.class_map (source class: target class)"
            )
        elif kind == "asymmetric" and class_map is not None and not class_map:
            problems.append(
                f"invalid config: {where}.class_map is empty, so no label would flip; give source class: target class "
                f"pairs, or leave it out for {dataset}'s default map"
            )
        elif kind == "asymmetric" and class_map:
            for src, dst in class_map.items():
                if not (int(src) < classes and int(dst) < classes):
                    problems.append(
                        f"invalid config: {where}.class_map {src}: {dst} names a class {dataset} does not have (its "
                        f"classes are 0-{classes - 1})"
                    )
                    break
                if int(src) == int(dst):
                    problems.append(
                        f"invalid config: {where}.class_map {src}: {dst} maps a class to itself, which flips nothing; "
                        f"drop that entry"
                    )
                    break
        if kind == "human" and dataset not in FIXED_SPLITS:
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
    problems += _frequency_problems(config)
    return problems


def check_config(config: Mapping, schema: str | os.PathLike | Mapping) -> list[str]:
    """Why ``config`` (as merged from the config files; it is not modified) cannot be planned, one line each: the
    schema's most relevant violation alone, else every :func:`config_problems` of it with defaults filled in;
    ``[]`` when it can."""
    schema = _load_schema(schema)
    error = _schema_error(config, schema)
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


def _config_value(value) -> str:
    """A ``--config`` value as the command line gave it (a nested value in YAML flow style; Snakemake hands nested
    leaves over as the strings that were typed)."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {_config_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_config_value, value)) + "]"
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


def run_arguments(config_files: Sequence[str | os.PathLike] = (), overrides: Mapping | None = None) -> str:
    """The ``--configfile`` and ``--config`` arguments that name a run's study, quoted for a shell ("" for none)."""
    words, here = [], Path.cwd().resolve()
    if config_files:
        paths = [Path(path).resolve() for path in config_files]
        words += ["--configfile", *(str(p.relative_to(here) if p.is_relative_to(here) else p) for p in paths)]
    if overrides:
        words += ["--config", *(f"{key}={_config_value(value)}" for key, value in overrides.items())]
    return shlex.join(words)


def summary_pointer(
    summary_md_paths: Sequence[str | os.PathLike],
    config_files: Sequence[str | os.PathLike] = (),
    overrides: Mapping | None = None,
) -> list[str]:
    """What the console says after a successful run: each existing summary.md with its table (the Markdown table
    without the notes and verdicts under it), then how to build the report of the same study (with the run's
    ``config_files`` given by --configfile and ``overrides`` given by --config). Empty when no summary exists yet."""
    lines = []
    for path in map(Path, summary_md_paths):
        if not path.is_file():
            continue
        table = list(itertools.takewhile(str.strip, path.read_text().splitlines()))
        lines += [f"summary: {path} (test accuracy %, mean ± sd over seeds)", *table]
    if lines:
        arguments = run_arguments(config_files, overrides)
        lines.append(
            f"figures and summaries in one page: snakemake {arguments + ' ' if arguments else ''}--report report.html"
        )
    return lines
