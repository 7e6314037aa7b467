"""Rule study_summary: forward the Snakemake object to selfdistill.overview.write_study_summary."""

from selfdistill.overview import write_study_summary

sm = snakemake  # noqa: F821 (injected by Snakemake)
write_study_summary(
    list(sm.input.summaries),
    sm.params.settings,
    sm.output.csv,
    sm.output.md,
    out_png=sm.output.png,
    log_path=sm.log[0],
)
