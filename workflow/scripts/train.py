"""Rule train: forward the Snakemake object to selfdistill.training.train_run (progress lines on stderr, which
Snakemake shows on the console)."""

import sys

from selfdistill.training import train_run

sm = snakemake  # noqa: F821 (injected by Snakemake)
train_run(
    sm.input.data,
    sm.output.history,
    sm.output.outputs,
    sm.output.model,
    mode=sm.wildcards.mode,
    seed=int(sm.wildcards.seed),
    model=sm.params.model,
    train=sm.params.train,
    distill=sm.params.distill,
    freq_subset=sm.params.freq_subset,
    freq_test_subset=sm.params.freq_test_subset,
    record_epochs=sm.params.record_epochs,
    out_early_stopped=sm.output.early_stopped,
    out_run=sm.output.run,
    checkpoint_dir=sm.params.checkpoint,
    device=sm.params.device,
    threads=sm.threads,
    run_name=sm.params.run_name,
    log_path=sm.log[0],
    attempt_number=sm.resources.attempt,
    console=sys.stderr,
)
