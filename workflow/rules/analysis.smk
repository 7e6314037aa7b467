"""Frequency analysis, spectrum, summaries and the study config (uses PLAN, RESULTS, MODES, code_of, runs, run_data,
spectrum_model and run_files of common.smk)."""

from selfdistill.studies import write_snapshot


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
        mem_mb=PLAN.frequency_mem_mb,
    params:
        deltas=config["frequency"]["deltas"],
        delta_scale=config["frequency"]["delta_scale"],
        sources=config["frequency"]["sources"],
        inputs=config["frequency"]["inputs"],
    message:
        "frequency analysis of {wildcards.setting}/seed{wildcards.seed}/{wildcards.mode}"
    script:
        "../scripts/frequency.py"


rule spectrum:
    """The frequency spectrum of one run's stored softmax outputs on the training subset: per band and epoch the
    relative error against the noisy and the clean labels, the labels' and the noise's energy per band, and the
    kernel's distance from the identity per delta (docs/science.md, "Frequency spectrum and convergence order")."""
    input:
        data=run_data,
        outputs=f"{RESULTS}/{{setting}}/seed{{seed}}/{{mode}}/outputs.h5",
        model=spectrum_model,
        code=code_of("spectrum.py"),
    output:
        spectrum=f"{RESULTS}/{{setting}}/seed{{seed}}/{{mode}}/spectrum.csv",
        energy=f"{RESULTS}/{{setting}}/seed{{seed}}/{{mode}}/spectrum_energy.csv",
        kernel=f"{RESULTS}/{{setting}}/seed{{seed}}/{{mode}}/kernel.csv",
    log:
        f"{RESULTS}/{{setting}}/logs/seed{{seed}}/spectrum_{{mode}}.log",
    benchmark:
        f"{RESULTS}/{{setting}}/benchmarks/seed{{seed}}/spectrum_{{mode}}.tsv"
    conda:
        "../../envs/selfdistill.yaml"
    resources:
        mem_mb=PLAN.frequency_mem_mb,
    params:
        deltas=config["frequency"]["deltas"],
        spectrum_delta=config["frequency"]["spectrum_delta"],
        bands=config["frequency"]["bands"],
        delta_scale=config["frequency"]["delta_scale"],
        inputs=config["frequency"]["inputs"],
        space=config["frequency"]["space"],
    message:
        "frequency spectrum of {wildcards.setting}/seed{wildcards.seed}/{wildcards.mode}"
    script:
        "../scripts/spectrum.py"


rule aggregate_spectrum:
    """Tidy all runs' spectrum, energy and kernel tables into one CSV each."""
    input:
        spectrum=run_files("spectrum.csv"),
        energy=run_files("spectrum_energy.csv"),
        kernel=run_files("kernel.csv"),
        code=code_of("aggregate_spectrum.py"),
    output:
        spectrum=f"{RESULTS}/{{setting}}/spectrum.csv",
        energy=f"{RESULTS}/{{setting}}/spectrum_energy.csv",
        kernel=f"{RESULTS}/{{setting}}/kernel.csv",
    log:
        f"{RESULTS}/{{setting}}/logs/aggregate_spectrum.log",
    conda:
        "../../envs/selfdistill.yaml"
    params:
        runs=runs,
    message:
        "spectrum tables of {wildcards.setting}: {output.spectrum}"
    script:
        "../scripts/aggregate_spectrum.py"


rule spectrum_summary:
    """Per run the convergence epoch of each band (50% and 90% of its drop) and Spearman's rho of band against
    epoch; per mode the mean rho over seeds with its 95% t-interval and whether low frequencies converge first."""
    input:
        spectrum=f"{RESULTS}/{{setting}}/spectrum.csv",
        energy=f"{RESULTS}/{{setting}}/spectrum_energy.csv",
        kernel=f"{RESULTS}/{{setting}}/kernel.csv",
        code=code_of("spectrum_summary.py"),
    output:
        csv=report(
            f"{RESULTS}/{{setting}}/spectrum_summary.csv",
            caption="../report/spectrum_summary.rst",
            category="Summary",
            subcategory="{setting}",
        ),
        md=f"{RESULTS}/{{setting}}/spectrum_summary.md",
        convergence=f"{RESULTS}/{{setting}}/spectrum_convergence.csv",
    log:
        f"{RESULTS}/{{setting}}/logs/spectrum_summary.log",
    conda:
        "../../envs/selfdistill.yaml"
    message:
        "spectrum summary of {wildcards.setting}: {output.md}"
    script:
        "../scripts/spectrum_summary.py"


rule aggregate:
    """Tidy all runs' histories; per-mode test accuracy at last / early-stopped / oracle epochs."""
    input:
        histories=run_files("history.csv"),
        # the precision each run trained in
        run_info=run_files("run.json"),
        code=code_of("aggregate.py"),
    output:
        histories=f"{RESULTS}/{{setting}}/histories.csv",
        summary_csv=report(
            f"{RESULTS}/{{setting}}/summary.csv",
            caption="../report/summary_csv.rst",
            category="Summary",
            subcategory="{setting}",
        ),
        summary_md=f"{RESULTS}/{{setting}}/summary.md",
        # the same numbers rounded, as the report shows them (on its landing page too)
        summary_html=report(
            f"{RESULTS}/{{setting}}/summary.html",
            caption="../report/summary.rst",
            category="Summary",
            subcategory="{setting}",
        ),
    log:
        f"{RESULTS}/{{setting}}/logs/aggregate.log",
    conda:
        "../../envs/selfdistill.yaml"
    params:
        runs=runs,
        mode_order=MODES,
        # what every history is checked against: one row per configured epoch, validation columns iff a split
        epochs=lambda wc: PLAN.setting_config[wc.setting]["train"]["epochs"],
        val_fraction=config["val_fraction"],
    message:
        "summary of {wildcards.setting}: {output.summary_md}"
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
    message:
        "frequency table of {wildcards.setting}: {output}"
    script:
        "../scripts/aggregate_frequency.py"


rule frequency_summary:
    """Per delta, each mode minus ce at the last epoch (low-frequency ratio, e_high against noisy and clean labels),
    paired by seed, with 95% t-intervals; degenerate deltas are dropped with the reason logged."""
    input:
        table=f"{RESULTS}/{{setting}}/frequency.csv",
        code=code_of("frequency_summary.py"),
    output:
        csv=report(
            f"{RESULTS}/{{setting}}/frequency_summary.csv",
            caption="../report/frequency_summary.rst",
            category="Summary",
            subcategory="{setting}",
        ),
        md=f"{RESULTS}/{{setting}}/frequency_summary.md",
        # a short table for the report; every cell's numbers stay in the CSV
        html=report(
            f"{RESULTS}/{{setting}}/frequency_summary.html",
            caption="../report/frequency_summary.rst",
            category="Summary",
            subcategory="{setting}",
        ),
    log:
        f"{RESULTS}/{{setting}}/logs/frequency_summary.log",
    conda:
        "../../envs/selfdistill.yaml"
    params:
        num_classes=PLAN.num_classes,
    message:
        "frequency summary of {wildcards.setting}: {output.md}"
    script:
        "../scripts/frequency_summary.py"


rule study_config:
    """The config the study's results are made with (defaults filled in) and the digest of its result-changing
    settings (selfdistill.studies.write_snapshot). Planning compares every later config with it; a job runs only on
    a real run (never for -n, --lint or --list), first, and only when the folder has no snapshot yet."""
    output:
        config=report(f"{RESULTS}/config.yaml", caption="../report/study_config.rst", category="Study"),
        digest=f"{RESULTS}/study.json",
    log:
        f"{RESULTS}/logs/study_config.log",
    priority: 100
    message:
        f"the config of study {PLAN.study}: {{output.config}}"
    run:
        write_snapshot(RESULTS, config, PLAN.study, log=log[0])


rule study_summary:
    """The study's summary over every noise setting and variant, and its overview figure."""
    input:
        summaries=[f"{RESULTS}/{path}/summary.csv" for path in PLAN.settings],
        code=code_of("study_summary.py"),
    output:
        csv=report(f"{RESULTS}/summary.csv", caption="../report/study_summary.rst", category="Study"),
        md=f"{RESULTS}/summary.md",
        png=report(f"{RESULTS}/overview.png", caption="../report/overview.rst", category="Study"),
    log:
        f"{RESULTS}/logs/study_summary.log",
    conda:
        "../../envs/selfdistill.yaml"
    params:
        settings=[{"variant": setting.variant or "", "noise": setting.noise} for setting in PLAN.settings.values()],
    message:
        "study summary: {output.md}"
    script:
        "../scripts/study_summary.py"


# Memorisation of noisy labels by local label agreement (issue 18 §2):
# docs/science.md, "Memorisation of noisy labels, sample by sample".


rule memorisation:
    """Per training sample of one run's analysed subset: local label agreement and memorisation epoch. The
    agreement width defaults to the smallest non-degenerate delta of the setting's frequency table."""
    input:
        data=run_data,
        outputs=f"{RESULTS}/{{setting}}/seed{{seed}}/{{mode}}/outputs.h5",
        frequency=f"{RESULTS}/{{setting}}/frequency.csv",
        # with frequency.space features: the reference model whose features the kernel is built on
        model=spectrum_model,
        code=code_of("memorisation.py"),
    output:
        f"{RESULTS}/{{setting}}/seed{{seed}}/{{mode}}/memorisation.csv",
    log:
        f"{RESULTS}/{{setting}}/logs/seed{{seed}}/memorisation_{{mode}}.log",
    benchmark:
        f"{RESULTS}/{{setting}}/benchmarks/seed{{seed}}/memorisation_{{mode}}.tsv"
    conda:
        "../../envs/selfdistill.yaml"
    resources:
        mem_mb=PLAN.frequency_mem_mb,
    params:
        delta=config["frequency"]["agreement_delta"],
        delta_scale=config["frequency"]["delta_scale"],
        inputs=config["frequency"]["inputs"],
        num_classes=PLAN.num_classes,
        space=config["frequency"]["space"],
    message:
        "memorisation analysis of {wildcards.setting}/seed{wildcards.seed}/{wildcards.mode}"
    script:
        "../scripts/memorisation.py"


rule memorisation_summary:
    """Per setting: share memorised per agreement quintile (the figure's table), per-run measures, and over seeds
    per mode ρ(agreement, memorisation epoch), q5 − q1 and each mode − the reference mode's share memorised."""
    input:
        tables=run_files("memorisation.csv"),
        code=code_of("memorisation_summary.py"),
    output:
        quintiles=f"{RESULTS}/{{setting}}/memorisation.csv",
        runs=f"{RESULTS}/{{setting}}/memorisation_runs.csv",
        csv=report(
            f"{RESULTS}/{{setting}}/memorisation_summary.csv",
            caption="../report/memorisation_summary.rst",
            category="Summary",
            subcategory="{setting}",
        ),
        md=f"{RESULTS}/{{setting}}/memorisation_summary.md",
    log:
        f"{RESULTS}/{{setting}}/logs/memorisation_summary.log",
    conda:
        "../../envs/selfdistill.yaml"
    params:
        runs=runs,
    message:
        "memorisation summary of {wildcards.setting}: {output.md}"
    script:
        "../scripts/memorisation_summary.py"
