"""Rule frequency_summary: forward the Snakemake object to selfdistill.frequency_stats.summarise_frequency."""

from selfdistill.frequency_stats import summarise_frequency

sm = snakemake  # noqa: F821 (injected by Snakemake)
summarise_frequency(
    sm.input.table,
    sm.output.csv,
    sm.output.md,
    out_html=sm.output.html,
    num_classes=sm.params.num_classes,
    log_path=sm.log[0],
)
