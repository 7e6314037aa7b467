rule figure:
    """One figure of one setting, as the figure table (selfdistill.figure_table) describes it; workflow/report/figure.rst
    prints the caption the table gives it."""
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
        plotter=figure_plotter,
        options=figure_options,
        caption=figure_caption,
    message:
        "figure {wildcards.figure} of {wildcards.setting}"
    script:
        "../scripts/figure.py"
