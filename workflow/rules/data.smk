"""The corrupt step (uses PLAN, RESULTS, code_of and human_label_file of common.smk)."""


rule corrupt:
    """Load the dataset, flip labels with the configured noise model, carve the noisy validation split."""
    input:
        labels=human_label_file,
        code=code_of("corrupt.py"),
    output:
        f"{RESULTS}/{{noise}}/seed{{seed}}/data.h5",
    log:
        f"{RESULTS}/{{noise}}/logs/seed{{seed}}/corrupt.log",
    conda:
        "../../envs/selfdistill.yaml"
    resources:
        mem_mb=2000,
    params:
        dataset=PLAN.dataset,
        noise=lambda wc: PLAN.noises[wc.noise],
        val_fraction=config["val_fraction"],
        # the result-changing options; data_root, download and verify_md5 the job reads from the config
        dataset_options=PLAN.dataset_options,
    message:
        "corrupt the labels of {params.dataset} with noise {wildcards.noise}, seed {wildcards.seed}"
    script:
        "../scripts/corrupt.py"
