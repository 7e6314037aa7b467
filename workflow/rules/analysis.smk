rule frequency:
    """Frequency analysis of one run's stored outputs (Gaussian low-pass filtering, docs/science.md, "Frequency analysis")."""
    input:
        data=run_data,
        outputs=f"{RESULTS}/{{setting}}/seed{{seed}}/{{mode}}/outputs.h5",
        code=code_of("frequency.py"),
    output:
        f"{RESULTS}/{{setting}}/seed{{seed}}/{{mode}}/frequency.csv",
    log:
        f"{RESULTS}/{{setting}}/logs/seed{{seed}}/frequency_{{mode}}.log",
    benchmark:
        f"{RESULTS}/{{setting}}/benchmarks/seed{{seed}}/frequency_{{mode}}.tsv"
    conda:
        "../../envs/selfdistill.yaml"
    resources:
        mem_mb=frequency_mem_mb(config),
    params:
        deltas=config["frequency"]["deltas"],
        delta_scale=config["frequency"]["delta_scale"],
        sources=config["frequency"]["sources"],
    script:
        "../scripts/frequency.py"


rule aggregate:
    """Tidy all runs' histories; per-mode test accuracy at last / early-stopped / oracle epochs."""
    input:
        histories=run_files("history.csv"),
        code=code_of("aggregate.py"),
    output:
        histories=f"{RESULTS}/{{setting}}/histories.csv",
        summary_csv=report(
            f"{RESULTS}/{{setting}}/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
        ),
        summary_md=f"{RESULTS}/{{setting}}/summary.md",
    log:
        f"{RESULTS}/{{setting}}/logs/aggregate.log",
    conda:
        "../../envs/selfdistill.yaml"
    params:
        runs=runs,
        mode_order=MODES,
        # what every history is checked against: one row per configured epoch, validation columns iff a split
        epochs=lambda wc: SETTING_CONFIG[wc.setting]["train"]["epochs"],
        val_fraction=config["val_fraction"],
    script:
        "../scripts/aggregate.py"


rule aggregate_frequency:
    """Tidy all runs' frequency tables into one CSV for the frequency figures."""
    input:
        tables=run_files("frequency.csv"),
        code=code_of("aggregate_frequency.py"),
    output:
        f"{RESULTS}/{{setting}}/frequency.csv",
    log:
        f"{RESULTS}/{{setting}}/logs/aggregate_frequency.log",
    conda:
        "../../envs/selfdistill.yaml"
    params:
        runs=runs,
    script:
        "../scripts/aggregate_frequency.py"
