"""Rule memorisation_summary: forward the Snakemake object to selfdistill.memorisation_stats.summarise_memorisation."""

from selfdistill.memorisation_stats import summarise_memorisation

sm = snakemake  # noqa: F821 (injected by Snakemake)
summarise_memorisation(
    list(sm.input.tables),
    sm.params.runs,
    sm.output.quintiles,
    sm.output.runs,
    sm.output.csv,
    sm.output.md,
    log_path=sm.log[0],
)
