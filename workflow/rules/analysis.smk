rule frequency:
    """Frequency analysis of one run's stored outputs (Gaussian low-pass filtering, docs/science.md, "Frequency analysis")."""
    input:
        data="results/{dataset}/{noise}/seed{seed}/data.h5",
        outputs="results/{dataset}/{noise}/seed{seed}/{mode}/outputs.h5",
        code=code_of("frequency.py"),
    output:
        "results/{dataset}/{noise}/seed{seed}/{mode}/frequency.csv",
    log:
        "results/{dataset}/{noise}/logs/seed{seed}/frequency_{mode}.log",
    benchmark:
        "results/{dataset}/{noise}/benchmarks/seed{seed}/frequency_{mode}.tsv"
    conda:
        "../../envs/selfdistill.yaml"
    resources:
        mem_mb=frequency_mem_mb(config),
    params:
        deltas=config["frequency"]["deltas"],
        delta_scale=config["frequency"]["delta_scale"],
        sources=config["frequency"]["sources"],
        inputs=config["frequency"]["inputs"],
    script:
        "../scripts/frequency.py"


rule aggregate:
    """Tidy all runs' histories; per-mode test accuracy at last / early-stopped / oracle epochs."""
    input:
        histories=run_files("history.csv"),
        code=code_of("aggregate.py"),
    output:
        histories="results/{dataset}/{noise}/histories.csv",
        summary_csv=report(
            "results/{dataset}/{noise}/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
        ),
        summary_md="results/{dataset}/{noise}/summary.md",
    log:
        "results/{dataset}/{noise}/logs/aggregate.log",
    conda:
        "../../envs/selfdistill.yaml"
    params:
        runs=runs,
        mode_order=MODES,
        # what every history is checked against: one row per configured epoch, validation columns iff a split
        epochs=config["train"]["epochs"],
        val_fraction=config["val_fraction"],
    script:
        "../scripts/aggregate.py"


rule aggregate_frequency:
    """Tidy all runs' frequency tables into one CSV for the frequency figures."""
    input:
        tables=run_files("frequency.csv"),
        code=code_of("aggregate_frequency.py"),
    output:
        "results/{dataset}/{noise}/frequency.csv",
    log:
        "results/{dataset}/{noise}/logs/aggregate_frequency.log",
    conda:
        "../../envs/selfdistill.yaml"
    params:
        runs=runs,
    script:
        "../scripts/aggregate_frequency.py"
