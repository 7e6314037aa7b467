"""Rule spectrum_summary: forward the Snakemake object to selfdistill.spectrum_stats.summarise_spectrum."""

from selfdistill.spectrum_stats import summarise_spectrum

sm = snakemake  # noqa: F821 (injected by Snakemake)
summarise_spectrum(
    sm.input.spectrum,
    sm.input.energy,
    sm.input.kernel,
    sm.output.csv,
    sm.output.md,
    sm.output.convergence,
    log_path=sm.log[0],
)
