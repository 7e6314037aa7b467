"""The train step (uses PLAN, RESULTS, RUN, code_of, run_data, teacher_weights and setting_config of common.smk)."""


rule train:
    """Train one run (dataset x noise x seed x mode): history, stored outputs, final and early-stopped weights, and
    run.json (device and precision).

    Progress lives in {mode}/checkpoint/ (not an output: Snakemake deletes outputs before rerunning a job), so a
    killed, preempted or timed-out job resumes where it stopped when it is rerun.
    """
    input:
        data=run_data,
        # distill_early_teacher: the same seed's early-stopped ce network (none for the other modes)
        teacher=teacher_weights,
        code=code_of("train.py"),
    output:
        history=f"{RUN}/history.csv",
        outputs=f"{RUN}/outputs.h5",
        model=f"{RUN}/model.pt",
        early_stopped=f"{RUN}/model_early_stopped.pt",
        # the device and the precision the run computed in (written last)
        run=f"{RUN}/run.json",
    log:
        f"{RESULTS}/{{setting}}/logs/seed{{seed}}/train_{{mode}}.log",
    benchmark:
        f"{RESULTS}/{{setting}}/benchmarks/seed{{seed}}/train_{{mode}}.tsv"
    # a preempted, timed-out or crashed attempt resumes from its checkpoint: enough attempts to finish a run that
    # is longer than one job's runtime, plus one for a transient failure. Only the planning Snakemake retries: inside
    # a cluster job a retry would start again just before the time limit ends the job.
    retries: PLAN.train_retries if workflow.is_main_process else 0
    conda:
        "../../envs/selfdistill.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=PLAN.train_gpu,
        # a retry after an out-of-memory kill gets twice the memory
        mem_mb=lambda wc, attempt: PLAN.train_mem_mb * min(attempt, 2),
        runtime=lambda wc: PLAN.train_time[wc.setting].runtime_min,
        # which attempt this is (the script object has no attempt of its own): a retry after an error that a retry
        # cannot fix stops at once
        attempt=lambda wc, attempt: attempt,
    params:
        model=setting_config("model"),
        train=lambda wc: PLAN.train_params(wc.setting),
        distill=lambda wc: PLAN.distill_params(wc.setting, wc.mode),
        freq_subset=config["frequency"]["train_subset"],
        freq_test_subset=config["frequency"]["test_subset"],
        record_epochs=config["frequency"]["record_epochs"],
        checkpoint=f"{RUN}/checkpoint",
        run_name=lambda wc: f"{PLAN.study}/{wc.setting}/seed{wc.seed}/{wc.mode}",
    # one line when the job starts (with where it runs: a plan shows which jobs hold a gpu slot); the run itself then
    # reports its progress (selfdistill.console.ConsoleProgress). The device and the other execution-only settings
    # are no params (params changes rerun a job): the script reads them from the config (selfdistill.execution).
    message:
        f"train {{params.run_name}} on {PLAN.train_device} (gpu={{resources.gpu}}, threads={{threads}})"
    script:
        "../scripts/train.py"
