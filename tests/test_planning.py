"""Planning helpers used by the Snakefile: per-rule library inputs, per-mode distill params, defaults, devices."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from selfdistill import planning as cfg
from selfdistill.dataset_files import DATASETS
from selfdistill.device import PLANNED_DEVICE_ENV, planned_device
from selfdistill.execution import section_keys
from selfdistill.modes import REGISTRY
from selfdistill.schema import SCHEMA_PATH, schema
from selfdistill.training import TrainSettings, train_settings

REPO = Path(__file__).resolve().parents[1]
# benchmark.py runs code in benchmarks/, whose rule inputs tests/test_benchmarks.py checks
SCRIPTS = sorted(p for p in (REPO / "workflow" / "scripts").glob("*.py") if p.name != "benchmark.py")
JOB_FREE = {"planning", "studies", "config_checks", "config_errors", "resources", "figure_table"}


def _modules_loaded_by(script: Path) -> set[str]:
    """The selfdistill modules Python really loads when ``script`` runs up to its first use of the ``snakemake``
    object (the scripts import first): an independent check of the static import walk."""
    code = (
        "import sys\n"
        f"try:\n    exec(compile(open({str(script)!r}).read(), 'script', 'exec'), {{'snakemake': None}})\n"
        "except (AttributeError, TypeError):\n    pass\n"
        "print(' '.join(m.split('.')[1] if '.' in m else '__init__' for m in sys.modules if m.split('.')[0] == "
        "'selfdistill'))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_rule_inputs_cover_the_code_each_script_runs(script):
    listed = {Path(p).stem for p in cfg.library_files(script)}
    loaded = _modules_loaded_by(script)
    assert loaded <= listed, loaded - listed
    # no job runs the planning module, so editing it reruns nothing
    assert not listed & JOB_FREE


def test_library_files_follow_imports_inside_functions(tmp_path):
    script = tmp_path / "step.py"
    script.write_text("def main():\n    from selfdistill.frequency import analyse_run\n")
    assert [Path(p).name for p in cfg.library_files(script)] == ["__init__.py", "frequency.py", "io.py", "outputs.py"]
    script.write_text("import os\n")
    assert cfg.library_files(script) == []
    # an import deep in nested blocks: class, method, try/except, with, if, for/else, match
    script.write_text(
        "class Step:\n    def run(self, x):\n        try:\n            pass\n        except ImportError:\n"
        "            with open(x):\n                if x:\n                    for _ in x:\n                        pass\n"
        "                    else:\n                        match x:\n                            case 1:\n"
        "                                import selfdistill.stats\n"
    )
    assert [Path(p).name for p in cfg.library_files(script)] == ["__init__.py", "stats.py"]


SCHEMA = SCHEMA_PATH


def test_distill_params_keep_only_the_modes_keys():
    keys = cfg.distill_keys(SCHEMA)
    distill = {
        "bootstrap_soft_beta": 0.9,
        "bootstrap_hard_beta": 0.7,
        "seq_alpha": 0.4,
        "seq_warmup": 2,
        "seq_ramp": 3,
        "interp_agree_scale": 0.5,
    }
    assert cfg.distill_params(distill, "ce", keys) == {}
    assert cfg.distill_params(distill, "self_distill", keys) == {}
    assert cfg.distill_params(distill, "self_distill_seq", keys) == {"seq_alpha": 0.4, "seq_warmup": 2, "seq_ramp": 3}
    assert cfg.distill_params(distill, "bootstrap_soft", keys) == {"bootstrap_soft_beta": 0.9}
    assert cfg.distill_params(distill, "bootstrap_hard", keys) == {"bootstrap_hard_beta": 0.7}
    assert cfg.distill_params(distill, "interp_agree", keys) == {"interp_agree_scale": 0.5}


def test_schema_distill_keys_are_the_mode_classes_parameters():
    """The schema's x-mode annotations and each mode class's keyword-only parameters agree (every distill key is
    some mode's parameter and every parameter a distill key of its mode); the parameters have no defaults of their
    own, only the schema's."""
    keys = cfg.distill_keys(SCHEMA)
    props = schema()["properties"]["distill"]["properties"]
    assert set(keys) == set(REGISTRY)
    assert sorted(key for mode_keys in keys.values() for key in mode_keys) == sorted(props)
    for name, cls in REGISTRY.items():
        params = cls.parameters()
        assert set(keys[name]) == set(params), name
        assert params == {key: props[key]["default"] for key in params}, name
        signature = inspect.signature(cls.__init__).parameters.values()
        assert all(p.default is p.empty for p in signature if p.kind is p.KEYWORD_ONLY), name


def test_train_settings_fields_are_the_schemas_train_keys():
    """Every field of TrainSettings is a schema ``train`` key with a default and has none of its own (the schema is
    the one source of defaults); the schema's other train keys are exactly the execution-only ones that the loop
    gets as arguments or never needs. So a notebook user gets the pipeline's defaults."""
    props = schema()["properties"]["train"]["properties"]
    settings = dataclasses.fields(TrainSettings)
    names = {f.name for f in settings}
    assert names <= set(props)
    assert set(props) - names == set(section_keys("train")) - names
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING for f in settings)
    assert all("default" in props[name] for name in names)
    assert train_settings({}) == TrainSettings(**{name: props[name]["default"] for name in names})
    assert train_settings({"lr": 0.5, "threads": 4, "device": "cpu"}) == dataclasses.replace(train_settings({}), lr=0.5)
    with pytest.raises(TypeError, match="no_such_key"):
        train_settings({"no_such_key": 1})


def test_planned_device(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv(PLANNED_DEVICE_ENV, raising=False)
    assert planned_device("auto") == "cpu"
    assert planned_device("cpu") == "cpu"
    assert planned_device("cuda:1") == "cuda:1"


def test_planned_device_is_inherited_by_job_processes(monkeypatch):
    """A cluster job re-parsing the workflow keeps the planner's decision instead of probing its own node."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv(PLANNED_DEVICE_ENV, "cuda")
    assert planned_device("auto", inherit=True) == "cuda"
    # the planner probes and records its own answer
    assert planned_device("auto") == "cpu"
    assert planned_device("auto", inherit=True) == "cpu"


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        # digits: ~1 s per epoch, the whole run in one job, one retry for a transient failure
        ({"epochs": 60}, (7, 1)),
        # 1800 epochs of Shake-Shake on a GPU (30 s/epoch estimate): 1355 min; in 4-hour jobs that is 6 jobs
        ({"epochs": 1800, "runtime": 240}, (240, 6)),
        ({"epochs": 100, "epoch_seconds": 60, "runtime": 30}, (30, 6)),
    ],
)
def test_train_time_sizes_runtime_and_retries(train, expected):
    dataset, arch = ("cifar10", "shake_shake_26_2x32d") if train["epochs"] == 1800 else ("digits", "mlp")
    config = {"dataset": dataset, "model": {"arch": arch}, "train": train}
    planned = cfg.train_time(config, "cuda")
    assert (planned.runtime_min, planned.retries) == expected
    # the retries are enough jobs to cover the whole estimate, plus one
    assert planned.runtime_min * planned.retries >= planned.estimate_min


def test_the_planner_plans_the_figures_of_the_figure_table():
    from selfdistill.figure_table import FIGURE_TABLE
    from selfdistill.figures import PLOTTERS

    assert cfg.FIGURES == tuple(entry.name for entry in FIGURE_TABLE)
    assert all(entry.plotter in PLOTTERS for entry in FIGURE_TABLE)


def test_the_figure_table_is_light():
    """The Snakefile imports the figure table to plan: no plotting or numeric library comes with it."""
    import subprocess
    import sys

    code = (
        "import sys, selfdistill.figure_table; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'seaborn', 'torch', 'numpy', 'pandas'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_with_defaults_fills_in_what_snakemake_validate_fills_in():
    """check_config sees the config as the workflow does after Snakemake's ``validate``."""
    from snakemake.utils import validate

    for config in ({}, yaml.safe_load((REPO / "config.yaml").read_text()), {"noise": [{"type": "none"}]}):
        filled = cfg.with_defaults(config, SCHEMA)
        validate(config, str(SCHEMA))
        assert filled == config
        assert filled is not config and filled["train"] is not config["train"]
    assert cfg.with_defaults({}, SCHEMA)["noise"] == [{"type": "pair", "rate": 0.4}]


def test_planning_tables_match_the_library():
    from selfdistill.noise import DEFAULT_CLASS_MAPS

    assert sorted(cfg.ASYMMETRIC_DEFAULT_MAP) == sorted(DEFAULT_CLASS_MAPS)
    for dataset, (train, test) in cfg.FIXED_SPLITS.items():
        assert train + test == cfg.DATASET_SHAPES[dataset][0]
    assert set(cfg.FIXED_SPLITS) | {"digits"} == set(DATASETS)


def test_planning_imports_neither_torch_nor_numpy():
    """The Snakefile plans in an environment that may have Snakemake alone (jobs run with --sdm conda)."""
    import subprocess
    import sys

    code = "import sys, selfdistill.planning; print(sorted({'torch', 'numpy', 'sklearn', 'h5py'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_execution_only_settings_keep_a_checkpoint():
    """The checkpoint fingerprint (RunSpec.identity) ignores execution-only settings: a resumed run keeps its
    progress when only eval_batch_size, compile or checkpoint_every changed; a hyper-parameter still counts."""
    from types import SimpleNamespace

    from selfdistill.training import RunSpec, train_settings

    def identity(**train):
        spec = RunSpec("ce", 0, {"arch": "mlp"}, train_settings(train), {}, 100, None, "all")
        return spec.identity(SimpleNamespace(type="cpu", precision="float32"))

    base = identity(lr=0.1)
    assert (
        identity(lr=0.1, eval_batch_size=7, compile="reduce-overhead", checkpoint_every=5, threads=3, device="cpu")
        == base
    )
    assert identity(lr=0.2) != base
    with pytest.raises(TypeError):
        train_settings({"no_such_key": 1})


def test_the_report_hint_names_the_runs_study(tmp_path, monkeypatch):
    """The end-of-run hint repeats the run's --configfile and --config, so the report is of the same study."""
    monkeypatch.chdir(tmp_path)
    md = tmp_path / "summary.md"
    md.write_text("| a |\n|---|\n")
    mine = tmp_path / "config" / "mine.yaml"
    overrides = {"study": "x", "train": {"lr": "0.02"}, "seeds": [0, 1]}
    hint = cfg.summary_pointer([md], [mine], overrides)[-1]
    assert hint == (
        "figures and summaries in one page: snakemake --configfile config/mine.yaml "
        "--config study=x 'train={lr: 0.02}' 'seeds=[0, 1]' --report report.html"
    )
    assert cfg.summary_pointer([md])[-1] == "figures and summaries in one page: snakemake --report report.html"


def test_a_gpu_study_planned_without_a_gpu_says_the_same_for_cuda_and_auto():
    """config/original.yaml (cuda) and config/cifar10_seed.yaml (auto) both plan GPU jobs on a machine without a
    GPU, with one note of where to run them (the GPU plan line gives their GPU time: tests/test_gpu_plan.py)."""
    schema = cfg.load_schema(SCHEMA)
    original = cfg.with_defaults(yaml.safe_load((REPO / "config" / "original.yaml").read_text()), schema)
    seed = cfg.with_defaults(yaml.safe_load((REPO / "config" / "cifar10_seed.yaml").read_text()), schema)
    assert not cfg.auto_needs_gpu(original, [original], "cuda")
    assert cfg.auto_needs_gpu(seed, [seed], "cpu")
    note = cfg.no_gpu_note("cuda", gpu_here=False)
    assert note.startswith("note: no GPU visible here: the GPU plan is for GPUs elsewhere; submit to a GPU machine")
    assert cfg.no_gpu_note("cuda", gpu_here=True) is None
    assert cfg.no_gpu_note("cpu", gpu_here=False) is None
    # a small network on digits stays on the CPU
    digits = cfg.with_defaults({}, schema)
    assert not cfg.auto_needs_gpu(digits, [digits], "cpu")


def test_plan_study_plans_the_shipped_config_and_stops_on_a_bad_one(tmp_path, monkeypatch):
    """plan_study fills the schema's defaults into the config it is given (as Snakemake's validate does) and stops
    with the same one line as check_config."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    plan = cfg.plan_study(config, config_files=[], overrides={}, schema_path=SCHEMA, is_main_process=True)
    assert config == cfg.with_defaults(yaml.safe_load((REPO / "config.yaml").read_text()), SCHEMA)
    assert (plan.study, plan.results, list(plan.settings), plan.train_device) == (
        "default",
        "results/default",
        ["pair40"],
        "cpu",
    )
    assert len(plan.runs("pair40")) == len(config["seeds"]) * len(config["modes"])
    assert plan.train_params("pair40") == cfg.train_params(config)
    bad = {**yaml.safe_load((REPO / "config.yaml").read_text()), "val_fraction": 0.9999}
    with pytest.raises(cfg.PlanError) as err:
        cfg.plan_study(
            bad, config_files=[], overrides={"train": {"epochs": "3"}}, schema_path=SCHEMA, is_main_process=False
        )
    assert str(err.value) == cfg.check_config(bad, SCHEMA)[0]
