"""Figure rules: forward the Snakemake object to selfdistill.figures.plot."""

from selfdistill.figures import plot

sm = snakemake  # noqa: F821 (injected by Snakemake)
plot(
    sm.params.plotter,
    sm.input.table,
    sm.output[0],
    log_path=sm.log[0],
    **sm.params.options,
)
