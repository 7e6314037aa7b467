"""Which settings only say how or where to run: the one list, read by the planner, the jobs and the checkpoints.

A study's results depend on its result-changing settings only. The settings in :data:`EXECUTION_ONLY` decide
where a job runs (device, threads, how many runs share a GPU), how long it may run and how that is planned
(runtime, epoch_seconds, the GPU timings file), how
often it checkpoints, how it evaluates in batches and whether the network is compiled, and where the dataset's
files are and how they are fetched. Changing one of them

- adds nothing to the study's name (:func:`selfdistill.studies.study_name`),
- reruns no job: the jobs read these values from the config (:func:`job_values`), never from rule ``params``,
  which Snakemake compares to decide reruns,
- keeps a run's checkpoint (:meth:`selfdistill.training.RunSpec.identity` leaves them out),
- and is never a difference from the config a study folder was made with (:func:`result_settings`).

Every other key, including any key added to the schema later, changes results unless it is added here.

``train.eval_batch_size`` and ``train.compile`` can change the last bits of floating-point sums, as any change
of kernels does, not what is computed. ``train.device`` names where a run trains; the device *type* a run
actually used (CPU in float32, or a GPU that may compute in bf16) is part of its checkpoint's fingerprint, so a
checkpoint is never resumed on the other kind of device.

Only the standard library is imported: the planner and every job read this module.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

#: Dotted config keys that say how or where to run, not what the results are.
EXECUTION_ONLY = (
    "train.device",
    "train.threads",
    "train.runtime",
    "train.epoch_seconds",
    "train.checkpoint_every",
    "train.eval_batch_size",
    "train.compile",
    "dataset_options.data_root",
    "dataset_options.download",
    "dataset_options.verify_md5",
    "resources.runs_per_gpu",
    "resources.gpu_timings",
)
#: Config sections whose every key is execution-only: left out of a study's result settings as a whole, so adding
#: one changes no existing study's digest.
EXECUTION_SECTIONS = ("resources",)
#: Sections of a variant (``variants.<name>.<section>``) that repeat the study's sections.
_VARIANT_SECTIONS = ("train", "model", "distill")


def section_keys(section: str) -> tuple[str, ...]:
    """The execution-only keys of one section (``train`` → ``("device", "threads", ...)``)."""
    return tuple(key.split(".", 1)[1] for key in EXECUTION_ONLY if key.split(".", 1)[0] == section)


def is_execution_only(dotted: str) -> bool:
    """Whether a dotted config key (``train.threads``, ``variants.lr0.001.train.threads``) is execution-only."""
    if dotted in EXECUTION_ONLY:
        return True
    if not dotted.startswith("variants."):
        return False
    # variant names may contain dots: match the tail of the key against a variant section's keys
    return any(dotted.endswith(f".{key}") and key.split(".")[0] in _VARIANT_SECTIONS for key in EXECUTION_ONLY)


def result_settings(config: Mapping) -> dict:
    """A copy of ``config`` without the study's name and without every execution-only key (also inside
    variants): what the study's results depend on."""
    out = copy.deepcopy({key: value for key, value in config.items() if key not in ("study", *EXECUTION_SECTIONS)})
    for dotted in EXECUTION_ONLY:
        section, key = dotted.split(".", 1)
        if isinstance(out.get(section), dict):
            out[section].pop(key, None)
        for variant in (out.get("variants") or {}).values():
            if isinstance(variant, dict) and isinstance(variant.get(section), dict):
                variant[section].pop(key, None)
    return out


def without_execution(section: str, values: Mapping) -> dict:
    """``values`` of config section ``section`` without its execution-only keys (what a rule's params may hold)."""
    drop = section_keys(section)
    return {key: value for key, value in values.items() if key not in drop}


def job_values(config: Mapping, section: str, setting: str | None = None) -> dict:
    """The execution-only values of ``section`` that a job reads from its config (the Snakemake object's
    ``config``), with the overrides of the setting's variant (``setting``: ``pair40`` or ``pair40/lr0.001``)."""
    values = dict(config.get(section) or {})
    variant = (setting or "").partition("/")[2]
    if variant:
        values.update(((config.get("variants") or {}).get(variant) or {}).get(section) or {})
    return {key: values[key] for key in section_keys(section) if key in values}
