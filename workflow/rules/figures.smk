rule figure:
    """One figure of one setting; workflow/report/figure.rst holds every figure's caption."""
    input:
        table=figure_table,
        code=code_of("figure.py"),
    output:
        report(
            f"{RESULTS}/{{setting}}/figures/{{figure}}.png",
            caption="../report/figure.rst",
            category="Figures",
            subcategory="{setting}",
        ),
    log:
        f"{RESULTS}/{{setting}}/logs/figure_{{figure}}.log",
    wildcard_constraints:
        figure="|".join(FIGURES),
    conda:
        "../../envs/selfdistill.yaml"
    params:
        kind=lambda wildcards: wildcards.figure,
        options=figure_options,
    message:
        "figure {wildcards.figure} of {wildcards.setting}"
    script:
        "../scripts/figure.py"
