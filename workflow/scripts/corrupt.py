"""Rule corrupt: forward the Snakemake object to selfdistill.data.build_corrupted_dataset (the execution-only
dataset options, data_root, download and verify_md5, come from the config, not from params: selfdistill.execution)."""

from selfdistill.data import build_corrupted_dataset
from selfdistill.execution import job_values

sm = snakemake  # noqa: F821 (injected by Snakemake)
build_corrupted_dataset(
    sm.output[0],
    dataset=sm.params.dataset,
    noise=sm.params.noise,
    seed=int(sm.wildcards.seed),
    val_fraction=sm.params.val_fraction,
    dataset_options={**sm.params.dataset_options, **job_values(sm.config, "dataset_options")},
    log_path=sm.log[0],
)
