"""Rule frequency: forward the Snakemake object to selfdistill.frequency.analyse_run."""

from selfdistill.frequency import analyse_run

sm = snakemake  # noqa: F821 (injected by Snakemake)
analyse_run(
    sm.input.data,
    sm.input.outputs,
    sm.output[0],
    deltas=sm.params.deltas,
    delta_scale=sm.params.delta_scale,
    sources=sm.params.sources,
    inputs=sm.params.inputs,
    log_path=sm.log[0],
)
