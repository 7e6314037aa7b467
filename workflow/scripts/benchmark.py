"""Rule benchmark: forward the Snakemake object to selfdistill.benchmarks.run_benchmark."""

from selfdistill.benchmarks import run_benchmark

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_benchmark(
    sm.wildcards.benchmark,
    sm.output[0],
    device=sm.params.device,
    threads=sm.threads,
    data_root=sm.params.data_root,
    log_path=sm.log[0],
)
