rule figure_accuracy:
    """Test and noisy-validation accuracy per mode, early-stopping epochs marked."""
    input:
        table="results/{dataset}/{noise}/histories.csv",
        code=code_of("figure.py"),
    output:
        report(
            "results/{dataset}/{noise}/figures/accuracy.png",
            caption="../report/accuracy.rst",
            category="Figures",
        ),
    log:
        "results/{dataset}/{noise}/logs/figure_accuracy.log",
    conda:
        "../../envs/selfdistill.yaml"
    params:
        kind="accuracy",
        options={"mode_order": MODES},
    script:
        "../scripts/figure.py"


rule figure_loss:
    """Training and test loss per mode."""
    input:
        table="results/{dataset}/{noise}/histories.csv",
        code=code_of("figure.py"),
    output:
        report(
            "results/{dataset}/{noise}/figures/loss.png",
            caption="../report/loss.rst",
            category="Figures",
        ),
    log:
        "results/{dataset}/{noise}/logs/figure_loss.log",
    conda:
        "../../envs/selfdistill.yaml"
    params:
        kind="loss",
        options={"mode_order": MODES},
    script:
        "../scripts/figure.py"


rule figure_memorization:
    """Memorised and corrected fractions of the noisy-labelled training samples per mode."""
    input:
        table="results/{dataset}/{noise}/histories.csv",
        code=code_of("figure.py"),
    output:
        report(
            "results/{dataset}/{noise}/figures/memorization.png",
            caption="../report/memorization.rst",
            category="Figures",
        ),
    log:
        "results/{dataset}/{noise}/logs/figure_memorization.log",
    conda:
        "../../envs/selfdistill.yaml"
    params:
        kind="memorization",
        options={"mode_order": MODES},
    script:
        "../scripts/figure.py"


rule figure_frequency_ratio:
    """Low-frequency ratio per mode for a few deltas, and self-distillation minus ce."""
    input:
        table="results/{dataset}/{noise}/frequency.csv",
        code=code_of("figure.py"),
    output:
        report(
            "results/{dataset}/{noise}/figures/frequency_ratio.png",
            caption="../report/frequency_ratio.rst",
            category="Figures",
        ),
    log:
        "results/{dataset}/{noise}/logs/figure_frequency_ratio.log",
    conda:
        "../../envs/selfdistill.yaml"
    params:
        kind="frequency_ratio",
        options={
            "mode_order": MODES,
            "deltas": config["frequency"]["plot_deltas"] or None,
        },
    script:
        "../scripts/figure.py"


rule figure_frequency_error:
    """Low- and high-frequency errors against the noisy targets, and the heat map of Xu et al."""
    input:
        table="results/{dataset}/{noise}/frequency.csv",
        code=code_of("figure.py"),
    output:
        report(
            "results/{dataset}/{noise}/figures/frequency_error.png",
            caption="../report/frequency_error.rst",
            category="Figures",
        ),
    log:
        "results/{dataset}/{noise}/logs/figure_frequency_error.log",
    conda:
        "../../envs/selfdistill.yaml"
    params:
        kind="frequency_error",
        options={"mode_order": MODES, "delta": config["frequency"]["plot_delta"]},
    script:
        "../scripts/figure.py"
