rule train:
    """Train one run (dataset x noise x seed x mode); history, per-epoch outputs and final weights."""
    input:
        data="results/{dataset}/{noise}/seed{seed}/data.h5",
        code=library_files("train"),
    output:
        history="results/{dataset}/{noise}/seed{seed}/{mode}/history.csv",
        outputs="results/{dataset}/{noise}/seed{seed}/{mode}/outputs.h5",
        model="results/{dataset}/{noise}/seed{seed}/{mode}/model.pt",
    log:
        "results/{dataset}/{noise}/logs/seed{seed}/train_{mode}.log",
    benchmark:
        "results/{dataset}/{noise}/benchmarks/seed{seed}/train_{mode}.tsv"
    # one more attempt for a failed run (a preempted or crashed node, a transient CUDA error); a deterministic
    # error such as a NaN loss fails again, quickly
    retries: 1
    conda:
        "../../envs/selfdistill.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=TRAIN_GPU,
        mem_mb=train_mem_mb(DATASET),
    params:
        model=config["model"],
        train={k: v for k, v in config["train"].items() if k not in ("device", "threads")},
        distill=lambda wc: distill_params(config["distill"], wc.mode),
        freq_subset=config["frequency"]["train_subset"],
        freq_test_subset=config["frequency"]["test_subset"],
        device=TRAIN_DEVICE,
    script:
        "../scripts/train.py"
