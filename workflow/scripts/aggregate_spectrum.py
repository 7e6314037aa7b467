"""Rule aggregate_spectrum: forward the Snakemake object to selfdistill.spectrum_stats.aggregate_spectrum."""

from selfdistill.spectrum_stats import aggregate_spectrum

sm = snakemake  # noqa: F821 (injected by Snakemake)
aggregate_spectrum(
    list(sm.input.spectrum),
    list(sm.input.energy),
    list(sm.input.kernel),
    sm.params.runs,
    sm.output.spectrum,
    sm.output.energy,
    sm.output.kernel,
    log_path=sm.log[0],
)
