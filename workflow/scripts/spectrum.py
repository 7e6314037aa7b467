"""Rule spectrum: forward the Snakemake object to selfdistill.spectrum.analyse_spectrum."""

from selfdistill.spectrum import analyse_spectrum

sm = snakemake  # noqa: F821 (injected by Snakemake)
analyse_spectrum(
    sm.input.data,
    sm.input.outputs,
    sm.output.spectrum,
    sm.output.energy,
    sm.output.kernel,
    deltas=sm.params.deltas,
    spectrum_delta=sm.params.spectrum_delta,
    bands=sm.params.bands,
    delta_scale=sm.params.delta_scale,
    inputs=sm.params.inputs,
    space=sm.params.space,
    model_path=sm.input.model[0] if sm.input.model else None,
    log_path=sm.log[0],
)
