"""The GPU plan (selfdistill.gpu_plan): runs per GPU from memory, the study's GPU-hours and wall time, on a hand-made
gpu_timings.csv and fake GPUs; the planner's line, the jobs' k and the gpu resource (selfdistill.planning)."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path

import pytest
import yaml

from selfdistill import gpu_plan, planning
from selfdistill.gpu_plan import Gpu, auto_runs_per_gpu, packing_speedup, plan_gpus
from selfdistill.gpu_slots import RUNS_PER_GPU_ENV
from selfdistill.gpu_timings import read_timings
from selfdistill.schema import SCHEMA_PATH

REPO = Path(__file__).resolve().parents[1]
SCHEMA = SCHEMA_PATH
H200 = Gpu("NVIDIA H200", 150_000.0)
#: a hand-made timings file: Shake-Shake (the original's layout) at batch 128 in float32, alone and packed by 2 and 4,
#: on an H200 (one row without the GPU's memory); the same network in bf16 on another GPU; a row of batch 256
CSV = """arch,batch_size,precision,compile,device_name,gpu_mem_mb,concurrent,peak_mem_mb,train_img_s,eval_img_s,train_s,eval_s,epoch_s
shake_shake_26_2x32d_original,128,float32,none,NVIDIA H200,150000,1,2500,5000,20000,9,1,10
shake_shake_26_2x32d_original,128,float32,none,NVIDIA H200,,2,2600,12000,,,,
shake_shake_26_2x32d_original,128,float32,none,NVIDIA H200,150000,4,2600,20000,,,,
shake_shake_26_2x32d_original,128,bf16,none,NVIDIA A100,80000,1,1500,8000,,,,6
shake_shake_26_2x32d_original,256,float32,none,NVIDIA H200,150000,1,4000,6000,,,,8
"""


def config(path: str = "config/original.yaml", **train) -> dict:
    loaded = planning.with_defaults(yaml.safe_load((REPO / path).read_text()), SCHEMA)
    loaded["train"].update(train)
    return loaded


@pytest.fixture
def rows(tmp_path):
    path = tmp_path / "gpu_timings.csv"
    path.write_text(CSV)
    return read_timings(path)


@pytest.mark.parametrize(
    ("peak", "memory", "k"),
    [(2500, 150_000, 8), (3048, 8_000, 2), (3000, 10_000, 3), (3000, 9_999, 2), (3048, 3_000, 1), (100, None, 1)],
)
def test_auto_runs_per_gpu_never_oversubscribes_memory(peak, memory, k):
    assert auto_runs_per_gpu(peak, memory) == k
    if memory:
        assert k == 1 or k * peak <= 0.9 * memory
        assert k <= 8


def test_auto_takes_the_measured_peak_memory_else_the_built_in_one(rows):
    small = Gpu("NVIDIA H200", 10_000.0)
    assert gpu_plan.planned_runs_per_gpu(config(), [config()], rows, [small])[0] == math.floor(9_000 / 2600)
    fixed, per_image = gpu_plan.PEAK_MEM_MB["shake_shake_26_2x32d_original"]
    assert gpu_plan.planned_runs_per_gpu(config(), [config()], [], [small])[0] == math.floor(
        9_000 / (fixed + per_image * 128)
    )
    # the largest run of the study decides; no GPU visible: 1; a number is taken as given
    wide = config(batch_size=256)
    assert gpu_plan.planned_runs_per_gpu(config(), [config(), wide], rows, [small])[0] == math.floor(9_000 / 4000)
    assert gpu_plan.planned_runs_per_gpu(config(), [config()], rows, []) == (1, "auto: no GPU visible here")
    explicit = {**config(), "resources": {"runs_per_gpu": 3, "gpu_timings": None}}
    assert gpu_plan.planned_runs_per_gpu(explicit, [explicit], rows, [small]) == (3, "resources.runs_per_gpu")
    assert gpu_plan.planned_runs_per_gpu(explicit, [explicit], rows, []) == (3, "resources.runs_per_gpu")
    # an explicit k that does not fit is taken, and the plan says so
    explicit["resources"]["runs_per_gpu"] = 5
    assert gpu_plan.planned_runs_per_gpu(explicit, [explicit], rows, [small]) == (
        5,
        "resources.runs_per_gpu; more than the 3 that fit in 0.9 of the GPU's memory",
    )


def test_rows_match_network_batch_precision_compile_and_gpu(rows):
    assert {r.concurrent for r in gpu_plan.matching_rows(config(), rows, "NVIDIA H200")} == {1, 2, 4}
    assert gpu_plan.matching_rows(config(), rows, "NVIDIA H100") == []
    assert gpu_plan.matching_rows(config(compile=True), rows, "NVIDIA H200") == []
    # precision auto: bf16 rows first (here only the A100's), with no GPU here any GPU the file names
    (bf16,) = gpu_plan.matching_rows(config(precision="auto"), rows, None)
    assert bf16.device_name == "NVIDIA A100"
    # only the whole epoch measured: taken as it is
    assert gpu_plan.run_epoch_seconds(config(precision="auto"), [bf16]) == (6.0, "measured on NVIDIA A100")
    assert gpu_plan.matching_rows(config(precision="auto"), rows, "NVIDIA H200")[0].precision == "float32"


def test_packing_speedup_from_the_measured_rows(rows):
    h200 = gpu_plan.matching_rows(config(), rows, "NVIDIA H200")
    assert packing_speedup(h200, 1) == (1.0, 1)
    assert packing_speedup(h200, 2) == (12000 / 5000, 2)
    # k = 3 was not measured: the largest measured below it (2), a lower bound
    assert packing_speedup(h200, 3) == (12000 / 5000, 2)
    assert packing_speedup(h200, 8) == (20000 / 5000, 4)
    assert packing_speedup([], 4) == (1.0, None)
    # rows with epoch seconds only: 4 runs at 20 s an epoch each against one at 10 s is 2× the speed of one
    alone, packed = (dataclasses.replace(h200[0], train_img_s=None), dataclasses.replace(h200[2], train_img_s=None))
    assert packing_speedup([alone, dataclasses.replace(packed, epoch_s=20.0)], 4) == (4 * 10 / 20, 4)
    # slower together than alone is never planned
    assert packing_speedup([alone, dataclasses.replace(packed, epoch_s=80.0)], 4) == (1.0, 4)


def test_original_study_on_one_h200_from_the_csv(rows):
    """2 runs × 1800 epochs; measured alone 9 s of training (45,000 images) + 1 s of evaluation (60,000), which the
    original's splits (50,000 training images, no validation, 10,000 test) make 10 + 1 s; k = 8 by memory, but 2
    runs: 2 share the GPU at 2.4× one run's speed, so each takes 1800 × 11 × 2 / 2.4 s and both run at once."""
    plan = plan_gpus(config(), [config()], [H200], rows, "timings.csv")
    assert (plan.runs_per_gpu, plan.gpus) == (8, 1)
    epoch = 9 * 50_000 / 45_000 + 1 * (50_000 + 0 + 10_000) / 60_000
    assert epoch == pytest.approx(11)
    each = 1800 * epoch * 2 / 2.4
    assert plan.wall_hours == pytest.approx(each / 3600)
    assert plan.gpu_hours == pytest.approx(2 * each / 2 / 3600)
    line = plan.line
    assert line.startswith("GPU plan: 2 runs × 1800 epochs × 11 s an epoch (measured on NVIDIA H200, timings.csv); ")
    assert "8 runs per GPU (auto: 0.9 × 150,000 MB / 2,600 MB a run (measured), at most 8)" in line
    assert "2 at once, ×2.40 as fast together (measured with 2)" in line
    assert line.endswith(f"{plan.gpu_hours:.1f} GPU-hours, wall ≈ {plan.wall_hours:.1f} h on 1 GPU")
    assert "\n" not in line


def test_without_a_csv_the_built_in_estimates_and_no_speedup(tmp_path):
    """9 runs × 200 epochs × EPOCH_SECONDS; 4 per GPU on 2 GPUs but no packing measured: each run takes 4× as long,
    8 slots get the 9 runs longest first, so one slot runs two."""
    seed = config("config/cifar10_seed.yaml", device="cuda")
    seed["resources"]["runs_per_gpu"] = 4
    seconds = planning.EPOCH_SECONDS[("cifar", seed["model"]["arch"], "cuda")]
    plan = plan_gpus(seed, [seed], [H200, H200], [], tmp_path / "none.csv")
    each = 200 * seconds * 4
    assert plan.gpu_hours == pytest.approx(9 * each / 4 / 3600)
    assert plan.wall_hours == pytest.approx(2 * each / 3600)
    assert f"(built-in estimate; {tmp_path / 'none.csv'} not measured: python -m selfdistill.gpu_check)" in plan.line
    assert "4 at once, no packing speed-up assumed (not measured)" in plan.line
    assert plan.line.endswith("h on 2 GPUs")
    # --resources gpu=2: two jobs at once on 2 GPUs, one per GPU: 5 rounds of one run alone
    limited = plan_gpus(seed, [seed], [H200, H200], [], tmp_path / "none.csv", gpu_jobs=2)
    assert limited.wall_hours == pytest.approx(5 * 200 * seconds / 3600)
    assert "one at a time on a GPU" in limited.line
    # train.epoch_seconds, the user's number, wins; no GPU visible: one GPU elsewhere
    mine = {**seed, "train": {**seed["train"], "epoch_seconds": 2.5}}
    elsewhere = plan_gpus(mine, [mine], [], [], "t.csv")
    assert "× 2.5 s an epoch (train.epoch_seconds)" in elsewhere.line
    assert elsewhere.line.endswith("on 1 GPU (none visible here)")


def test_longest_first_over_slots():
    assert gpu_plan._longest_slot([5, 5, 5], 2) == 10
    assert gpu_plan._longest_slot([7, 3, 3, 3], 2) == 9
    assert gpu_plan._longest_slot([1], 8) == 1


def test_visible_gpus_from_a_fake_nvidia_smi(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200, 143771'\necho 'NVIDIA H200, 143771'\necho 'Tesla T4, 15360'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    found = gpu_plan.visible_gpus()
    assert [g.name for g in found] == ["NVIDIA H200", "NVIDIA H200", "Tesla T4"]
    assert found[0].memory_mb == pytest.approx(143771 * 1.048576)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    assert [g.name for g in gpu_plan.visible_gpus()] == ["Tesla T4"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-abc,GPU-def")
    assert len(gpu_plan.visible_gpus()) == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_plan.visible_gpus() == []


def test_plan_study_hands_k_to_the_jobs_and_counts_gpu_jobs(tmp_path, monkeypatch, rows):
    """The planning process resolves auto, records it for the jobs and says the GPU plan in one line; a CPU study
    has no GPU plan; a bad timings file stops the plan in one line."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(RUNS_PER_GPU_ENV, raising=False)
    monkeypatch.setattr(planning, "visible_gpus", lambda: [Gpu("NVIDIA H200", 10_000.0)])
    monkeypatch.setattr(planning, "load_timings", lambda config: (rows, Path("t.csv")))
    study = yaml.safe_load((REPO / "config" / "original.yaml").read_text())
    plan = planning.plan_study(study, config_files=[], overrides={}, schema_path=SCHEMA, is_main_process=True)
    assert plan.runs_per_gpu == 3 and os.environ[RUNS_PER_GPU_ENV] == "3"
    assert plan.gpu_jobs == 3 and plan.gpu_plan.line.startswith("GPU plan: 2 runs × 1800 epochs × 11 s")
    # a job process re-planning inherits k
    again = yaml.safe_load((REPO / "config" / "original.yaml").read_text())
    job = planning.plan_study(again, config_files=[], overrides={}, schema_path=SCHEMA, is_main_process=False)
    assert (job.runs_per_gpu, job.gpu_plan) == (3, None)
    digits = planning.plan_study(
        {}, config_files=[], overrides={"train": {"device": "cpu"}}, schema_path=SCHEMA, is_main_process=True
    )
    assert (digits.gpu_plan, digits.gpu_jobs) == (None, 0)
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(RUNS_PER_GPU_ENV, raising=False)
    bad = tmp_path / "bad.csv"
    bad.write_text("arch\nmlp\n")
    study = yaml.safe_load((REPO / "config" / "original.yaml").read_text())
    study["resources"] = {"gpu_timings": str(bad)}
    with pytest.raises(planning.PlanError, match=f"^{bad}: not a gpu_timings.csv: no column batch_size"):
        planning.plan_study(study, config_files=[], overrides={}, schema_path=SCHEMA, is_main_process=True)


def test_runs_per_gpu_is_execution_only():
    """Changing resources.* renames no study, reruns nothing and leaves a study's digest as it was."""
    from selfdistill.execution import is_execution_only, result_settings
    from selfdistill.studies import settings_digest

    base = planning.with_defaults({}, SCHEMA)
    packed = {**base, "resources": {"runs_per_gpu": 4, "gpu_timings": "elsewhere.csv"}}
    assert is_execution_only("resources.runs_per_gpu") and is_execution_only("resources.gpu_timings")
    assert "resources" not in result_settings(packed)
    without = {key: value for key, value in base.items() if key != "resources"}
    assert settings_digest(packed) == settings_digest(base) == settings_digest(without)


@pytest.mark.parametrize(
    ("resources", "error"),
    [
        ({"runs_per_gpu": 0}, "resources.runs_per_gpu = 0 is out of range; it must be >= 1 and <= 64"),
        ({"runs_per_gpu": "many"}, "resources.runs_per_gpu = 'many' is not allowed; allowed values: auto"),
        ({"runs_per_gpu": 2.5}, "resources.runs_per_gpu: 2.5 is not valid under any of the given schemas"),
        ({"gpu_timings": ""}, "resources.gpu_timings: '' should be non-empty"),
        ({"gpus": 2}, "unknown key 'gpus' in resources; allowed keys: gpu_timings, runs_per_gpu"),
        ({"runs_per_gpu": 4, "gpu_timings": "mine.csv"}, None),
        ({"runs_per_gpu": None}, None),
        ({"runs_per_gpu": "auto"}, None),
    ],
)
def test_schema_checks_resources_in_one_line(resources, error):
    from selfdistill.config_errors import schema_error

    schema = planning.load_schema(SCHEMA)
    message = schema_error({"resources": resources}, schema)
    assert message == (None if error is None else f"invalid config: {error}")
    assert planning.with_defaults({}, schema)["resources"] == {"runs_per_gpu": "auto", "gpu_timings": None}


def test_command_line_values_of_resources_are_typed_by_the_schema():
    """--config resources='{runs_per_gpu: 4}' arrives as the string '4': it becomes the number 4; auto stays text."""
    from selfdistill.studies import typed_overrides

    schema = planning.load_schema(SCHEMA)
    assert typed_overrides({"resources": {"runs_per_gpu": "4"}}, schema) == {"resources": {"runs_per_gpu": 4}}
    assert typed_overrides({"resources": {"runs_per_gpu": "auto"}}, schema) == {"resources": {"runs_per_gpu": "auto"}}
    assert typed_overrides({"resources": {"runs_per_gpu": "null"}}, schema) == {"resources": {"runs_per_gpu": None}}


FAKE_SMI = "#!/bin/sh\ncase \"$1\" in\n  -L) echo 'GPU 0: NVIDIA H200 (UUID: GPU-1)';;\n  *) echo 'NVIDIA H200, 143771';;\nesac\n"


def provided_gpus(output: str) -> int | None:
    """The gpu count Snakemake says it provides (Snakemake 9 prints ``gpu=Resource("gpu", 3)``, older ``gpu=3``)."""
    found = re.search(r'Provided resources: .*gpu=(?:Resource\("gpu", )?(\d+)', output)
    return int(found.group(1)) if found else None


@pytest.mark.slow
@pytest.mark.workflow
def test_snakemake_registers_gpus_times_k_unless_given(tmp_path):
    """On a machine with one (fake) GPU, a CUDA study gets the gpu resource 1 × k (k = 3 here), printed by Snakemake
    as provided; --resources gpu=2 is kept as given. Runs only the study's config step (no training)."""
    from helpers import snakemake

    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{smi.parent}{os.pathsep}{os.environ['PATH']}"}
    env = {k: v for k, v in env.items() if k not in ("CUDA_VISIBLE_DEVICES", RUNS_PER_GPU_ENV)}
    work = tmp_path / "work"
    target = "results/original/config.yaml"
    k = ["--config", "resources={runs_per_gpu: 3}"]
    run = snakemake(work, target, *k, configfile=REPO / "config" / "original.yaml", env=env, cores=1)
    output = run.stdout + run.stderr
    assert "GPU plan: 2 runs × 1800 epochs" in output and "3 runs per GPU (resources.runs_per_gpu)" in output
    assert provided_gpus(output) == 3, output
    (work / target).unlink()
    given = snakemake(work, target, "--resources", "gpu=2", *k, configfile=REPO / "config" / "original.yaml", env=env)
    assert provided_gpus(given.stdout + given.stderr) == 2
    assert "2 at once" in given.stdout + given.stderr


def test_the_documented_plan_line_is_the_planners(tmp_path, monkeypatch):
    """docs/clusters-and-gpus.md shows config/original.yaml's GPU plan on a machine without a GPU or timings."""
    monkeypatch.chdir(tmp_path)
    line = plan_gpus(config(), [config()], [], [], gpu_plan.DEFAULT_PATH).line
    assert f"\n{line}\n" in (REPO / "docs" / "clusters-and-gpus.md").read_text()
