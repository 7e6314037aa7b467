rule figure:
    """One figure of one setting; workflow/report/figure.rst holds every figure's caption."""
    input:
        table=figure_table,
        code=code_of("figure.py"),
    output:
        report(
            "results/{dataset}/{noise}/figures/{figure}.png",
            caption="../report/figure.rst",
            category="Figures",
            subcategory="{noise}",
        ),
    log:
        "results/{dataset}/{noise}/logs/figure_{figure}.log",
    wildcard_constraints:
        figure="|".join(FIGURES),
    conda:
        "../../envs/selfdistill.yaml"
    params:
        kind=lambda wildcards: wildcards.figure,
        options=figure_options,
    script:
        "../scripts/figure.py"
