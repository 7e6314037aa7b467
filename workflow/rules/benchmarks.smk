"""Speed benchmarks (issue 3): not part of `all`; build them with `snakemake --cores 2 benchmarks`."""

from selfdistill.config import DEFAULT_DATA_ROOT

BENCHMARK_NAMES = ["input_pipeline", "train_step", "frequency"]
# whatever device is present: CUDA when this machine has one (the job then holds a `gpu` slot), else CPU
BENCHMARK_DEVICE = resolved_device("auto")


rule benchmarks:
    """All three side-by-side speed benchmarks (input pipeline, train step, frequency analysis)."""
    input:
        expand("results/benchmarks/{benchmark}.csv", benchmark=BENCHMARK_NAMES),


rule benchmark:
    """One speed benchmark, project vs baseline in the same process: a tidy CSV and a one-line summary (log)."""
    input:
        code=library_files("benchmarks"),
    output:
        "results/benchmarks/{benchmark}.csv",
    log:
        "results/benchmarks/logs/{benchmark}.log",
    wildcard_constraints:
        benchmark="|".join(BENCHMARK_NAMES),
    conda:
        "../../envs/selfdistill.yaml"
    threads: 2
    resources:
        gpu=lambda wc: (
            1
            if BENCHMARK_DEVICE.startswith("cuda") and wc.benchmark != "frequency"
            else 0
        ),
        mem_mb=8000,
    params:
        device=BENCHMARK_DEVICE,
        data_root=config.get("dataset_options", {}).get("data_root", DEFAULT_DATA_ROOT),
    script:
        "../scripts/benchmark.py"
