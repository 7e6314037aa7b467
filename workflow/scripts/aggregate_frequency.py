"""Rule aggregate_frequency: forward the Snakemake object to selfdistill.aggregate.aggregate_frequency."""

from selfdistill.aggregate import aggregate_frequency

sm = snakemake  # noqa: F821 (injected by Snakemake)
aggregate_frequency(list(sm.input.tables), sm.params.runs, sm.output[0], log_path=sm.log[0])
