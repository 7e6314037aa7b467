rule corrupt:
    """Load the dataset, flip labels with the configured noise model, carve the noisy validation split."""
    input:
        labels=human_label_file,
        code=library_files("corrupt"),
    output:
        "results/{dataset}/{noise}/seed{seed}/data.h5",
    log:
        "results/{dataset}/{noise}/logs/seed{seed}/corrupt.log",
    conda:
        "../../envs/selfdistill.yaml"
    resources:
        mem_mb=2000,
    params:
        noise=lambda wc: NOISES[wc.noise],
        val_fraction=config["val_fraction"],
        dataset_options=config["dataset_options"],
    message:
        "corrupt the labels of {wildcards.dataset} with noise {wildcards.noise}, seed {wildcards.seed}"
    script:
        "../scripts/corrupt.py"
