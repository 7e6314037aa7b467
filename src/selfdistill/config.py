"""What the Snakefile needs to plan the study: config error messages, noise names, targets, per-rule inputs.

Only the standard library, jsonschema and PyYAML (both Snakemake dependencies) are imported here, so the workflow
parses fast and in an environment that has Snakemake alone (``--sdm conda`` runs the jobs elsewhere).

Snakemake's ``validate`` does the validation (and fills defaults); when it fails, :func:`explain_config_error`
re-runs the same JSON schema with jsonschema to turn the first error into one line that names the key and the
allowed values, instead of a multi-line schema dump.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from .epochs import output_bytes_per_epoch, recorded_epochs

DATASETS = ("digits", "cifar10", "cifar100")
#: The ``dataset_options`` keys each dataset's loader takes (the config schema lists them all).
DATASET_OPTIONS = {
    "digits": ("test_fraction", "split_seed"),
    "cifar10": ("data_root", "download", "verify_md5"),
    "cifar100": ("data_root", "download", "verify_md5"),
}
DEFAULT_DATA_ROOT = "resources/data"
#: CIFAR-10N's label file (https://github.com/UCSC-REAL/cifar-10-100n, data/CIFAR-10_human.pt).
DEFAULT_HUMAN_LABEL_FILE = "resources/data/CIFAR-10_human.pt"
#: The folder torchvision reads below ``data_root``, its files, and the archive's size (for the error message).
CIFAR_FOLDERS = {
    "cifar10": (
        "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
        + ("test_batch", "batches.meta"),
        "163 MB",
    ),
    "cifar100": ("cifar-100-python", ("train", "test", "meta"), "161 MB"),
}

#: (images, classes) of each dataset, for planning job memory (digits: all 1,797 images, whatever the split).
DATASET_SHAPES = {
    "digits": (1797, 10),
    "cifar10": (60000, 10),
    "cifar100": (60000, 100),
}

NOISE_TYPES = ("none", "pair", "symmetric", "asymmetric", "human")
# Short names used in result paths, e.g. ``pair40`` for pair-flip at 40%.
SHORT_NAMES = {
    "none": "none",
    "pair": "pair",
    "symmetric": "sym",
    "asymmetric": "asym",
    "human": "human",
}

#: Every figure the pipeline builds per dataset/noise setting (file stem = name).
FIGURES = ("accuracy", "loss", "memorization", "frequency_ratio", "frequency_error")

#: The library modules each rule runs (its script's import closure within selfdistill). They are inputs of the
#: rule, so editing the library reruns exactly the steps whose code changed.
RULE_MODULES = {
    "corrupt": ("__init__", "config", "data", "datasets", "epochs", "io", "noise"),
    "train": (
        "__init__",
        "checkpoint",
        "config",
        "data",
        "datasets",
        "device",
        "epochs",
        "gpu_slots",
        "io",
        "losses",
        "models",
        "modes",
        "noise",
        "training",
    ),
    "frequency": ("__init__", "frequency", "io"),
    "aggregate": ("__init__", "aggregate", "io"),
    "figures": ("__init__", "aggregate", "config", "epochs", "figures", "io"),
    "benchmarks": (
        "__init__",
        "benchmarks",
        "checkpoint",
        "config",
        "data",
        "datasets",
        "device",
        "epochs",
        "frequency",
        "gpu_slots",
        "io",
        "losses",
        "models",
        "modes",
        "noise",
        "training",
    ),
}

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class NoiseSpec:
    """One configured noise setting; ``name`` is the ``{noise}`` wildcard (``pair40``, ``sym20``, ``none``,
    ``human_worse`` for the CIFAR-10N key ``worse_label``).

    ``human`` settings read their labels from ``label_file`` under ``key``; ``rate`` does not apply to them (the
    realised rate is whatever the annotators produced, recorded with the data).
    """

    type: str
    rate: float = 0.0
    class_map: Mapping[int, int] | None = None
    label_file: str = DEFAULT_HUMAN_LABEL_FILE
    key: str = "worse_label"

    @property
    def name(self) -> str:
        if self.type == "none":
            return "none"
        if self.type == "human":
            return f"human_{self.key.replace('_label', '')}"
        return f"{SHORT_NAMES[self.type]}{100 * self.rate:g}"

    @classmethod
    def from_config(cls, entry: Mapping) -> NoiseSpec:
        """Build from a config entry ``{type: pair, rate: 0.4}`` (``class_map`` keys may be strings)."""
        class_map = entry.get("class_map")
        if class_map is not None:
            class_map = {int(k): int(v) for k, v in class_map.items()}
        return cls(
            type=entry["type"],
            rate=float(entry.get("rate", 0.0)),
            class_map=class_map,
            label_file=str(entry.get("label_file", DEFAULT_HUMAN_LABEL_FILE)),
            key=str(entry.get("key", "worse_label")),
        )


def dataset_problem(name: str, options: Mapping) -> str | None:
    """One line saying why dataset ``name`` cannot be loaded with ``options`` (its ``dataset_options``), or
    ``None`` when it can (or torchvision will download it). Cheap: checks that the files exist under
    ``data_root``; their md5 sums are checked when loading.
    """
    if name not in CIFAR_FOLDERS or options.get("download", False):
        return None
    data_root = options.get("data_root", DEFAULT_DATA_ROOT)
    folder, files, size = CIFAR_FOLDERS[name]
    where = Path(data_root) / folder
    missing = [f for f in files if not (where / f).is_file()]
    if not missing:
        return None
    return (
        f"{name} not found: expected {where}/ ({', '.join(missing)} missing); set dataset_options.download: "
        f"true to let torchvision fetch it ({size}), or extract the dataset's python version into {data_root}/"
    )


def dataset_option_problem(dataset: str, options: Mapping) -> str | None:
    """One line naming ``dataset_options`` keys that do not apply to ``dataset``, or ``None``."""
    foreign = sorted(set(options) - set(DATASET_OPTIONS[dataset]))
    if not foreign:
        return None
    return (
        f"invalid config: dataset_options {', '.join(foreign)} do not apply to {dataset}; "
        f"it takes {', '.join(DATASET_OPTIONS[dataset])}"
    )


def train_mem_mb(dataset: str) -> int:
    """Memory (MB) a training job asks for: digits is tiny; CIFAR holds 150 MB of uint8 images on the host, the
    HDF5 read buffers and the CUDA runtime (~2 GB)."""
    return 4000 if dataset == "digits" else 12000


#: Rough seconds per epoch (training + evaluation) by dataset family, network and device, for planning job runtimes
#: only; digits runs take well under a second. ``train.epoch_seconds`` overrides them.
EPOCH_SECONDS = {
    ("cifar", "shake_shake_26_2x32d", "cuda"): 30,
    ("cifar", "preact_resnet18", "cuda"): 20,
    ("cifar", "fast_cnn", "cuda"): 5,
    ("cifar", "small_cnn", "cuda"): 5,
    ("cifar", "mlp", "cuda"): 3,
    ("cifar", "shake_shake_26_2x32d", "cpu"): 1200,
    ("cifar", "preact_resnet18", "cpu"): 2400,
    ("cifar", "fast_cnn", "cpu"): 600,
    ("cifar", "small_cnn", "cpu"): 120,
    ("cifar", "mlp", "cpu"): 30,
}
#: Settings of the ``train`` section that are not training hyper-parameters (they decide where and how long a job
#: runs, not what it computes), so the train job does not receive them and changing them reruns nothing.
JOB_ONLY_TRAIN_KEYS = ("device", "threads", "runtime", "epoch_seconds")


@dataclass(frozen=True)
class TrainTime:
    """The train rule's per-job ``runtime`` (minutes) and ``retries``, planned from the study."""

    estimate_min: float
    runtime_min: int
    retries: int


def train_time(config: Mapping, device: str) -> TrainTime:
    """Estimated minutes of one run (epochs × seconds per epoch, +50% and 5 minutes of margin); the runtime of one
    job (``train.runtime``, else the whole estimate); and the retries a run needs to finish when each job may run
    only ``runtime`` minutes and resumes from its checkpoint (plus one for a transient failure)."""
    train = config["train"]
    family = "digits" if config["dataset"] == "digits" else "cifar"
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    seconds = train.get("epoch_seconds") or EPOCH_SECONDS.get((family, config["model"]["arch"], device_type), 1.0)
    estimate = train["epochs"] * seconds * 1.5 / 60 + 5
    runtime = train.get("runtime") or math.ceil(estimate)
    return TrainTime(estimate, runtime, math.ceil(estimate / runtime))


def train_params(config: Mapping) -> dict:
    """The ``train`` settings a training job receives (all but :data:`JOB_ONLY_TRAIN_KEYS`)."""
    return {k: v for k, v in config["train"].items() if k not in JOB_ONLY_TRAIN_KEYS}


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


def library_files(rule: str) -> list[str]:
    """Paths of the library modules that ``rule`` runs (see :data:`RULE_MODULES`)."""
    return [str(PACKAGE_DIR / f"{module}.py") for module in RULE_MODULES[rule]]


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
        return f"invalid config: {where} = {error.instance!r} has the wrong type; expected {error.validator_value}"
    if error.validator == "required":
        return f"invalid config: {where} is missing a required key: {error.message}"
    return f"invalid config: {where}: {error.message}"


def noise_settings(config: Mapping) -> dict[str, dict]:
    """Map each noise setting's wildcard name (``pair40``) to its config entry; reject duplicate names."""
    out: dict[str, dict] = {}
    for i, entry in enumerate(config["noise"]):
        spec = NoiseSpec.from_config(entry)
        if spec.type not in ("none", "human") and spec.rate == 0:
            raise ValueError(f"invalid config: noise[{i}] is {spec.type} with rate 0; use type: none for clean labels")
        if spec.name in out:
            raise ValueError(f"invalid config: noise[{i}] duplicates the setting {spec.name!r}")
        if spec.type == "human" and spec.rate:
            raise ValueError(
                f"invalid config: noise[{i}] is human noise, whose rate comes from the label file; drop rate"
            )
        out[spec.name] = dict(entry)
    return out


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
