"""Rule aggregate: forward the Snakemake object to selfdistill.aggregate.aggregate_histories."""

from selfdistill.aggregate import aggregate_histories

sm = snakemake  # noqa: F821 (injected by Snakemake)
aggregate_histories(
    list(sm.input.histories),
    sm.params.runs,
    sm.output.histories,
    sm.output.summary_csv,
    sm.output.summary_md,
    mode_order=sm.params.mode_order,
    log_path=sm.log[0],
    epochs=sm.params.epochs,
    val_fraction=sm.params.val_fraction,
    out_summary_html=sm.output.summary_html,
    run_info_paths=list(sm.input.run_info),
)
