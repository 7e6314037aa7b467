"""Rule memorisation: forward the Snakemake object to selfdistill.memorisation.analyse_memorisation."""

from selfdistill.memorisation import analyse_memorisation

sm = snakemake  # noqa: F821 (injected by Snakemake)
analyse_memorisation(
    sm.input.data,
    sm.input.outputs,
    sm.input.frequency,
    sm.output[0],
    delta=sm.params.delta,
    delta_scale=sm.params.delta_scale,
    inputs=sm.params.inputs,
    num_classes=sm.params.num_classes,
    space=sm.params.space,
    model_path=sm.input.model[0] if sm.input.model else None,
    log_path=sm.log[0],
)
