"""Rule train: forward the Snakemake object to selfdistill.training.train_run (progress lines on stderr, which
Snakemake shows on the console). The execution-only settings (device, eval_batch_size, compile, checkpoint_every)
come from the config, not from params, so that changing them reruns nothing (selfdistill.execution)."""

import sys

from selfdistill.device import planned_device
from selfdistill.execution import job_values
from selfdistill.gpu_slots import planned_runs_per_gpu
from selfdistill.training import train_run

sm = snakemake  # noqa: F821 (injected by Snakemake)
execution = job_values(sm.config, "train", sm.wildcards.setting)
train_run(
    sm.input.data,
    sm.output.history,
    sm.output.outputs,
    sm.output.model,
    mode=sm.wildcards.mode,
    seed=int(sm.wildcards.seed),
    model=sm.params.model,
    train={**sm.params.train, **execution},
    distill=sm.params.distill,
    freq_subset=sm.params.freq_subset,
    freq_test_subset=sm.params.freq_test_subset,
    record_epochs=sm.params.record_epochs,
    out_early_stopped=sm.output.early_stopped,
    out_run=sm.output.run,
    checkpoint_dir=sm.params.checkpoint,
    # `auto` as the planner resolved it (a cluster job inherits the planner's answer)
    device=planned_device(sm.config["train"]["device"], inherit=True),
    threads=sm.threads,
    run_name=sm.params.run_name,
    log_path=sm.log[0],
    attempt_number=sm.resources.attempt,
    console=sys.stderr,
    # the teacher's weights of a mode that distils from one (an empty input for the others)
    teacher=sm.input.get("teacher") or None,
    # resources.runs_per_gpu as the planner resolved it (inherited like the device)
    runs_per_gpu=planned_runs_per_gpu(sm.config.get("resources", {}).get("runs_per_gpu")),
)
