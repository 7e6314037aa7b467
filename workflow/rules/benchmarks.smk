"""Speed benchmarks: not part of `all`.

`snakemake --cores 2 benchmarks` builds the three that run on any machine (synthetic images without CIFAR-10):
input pipeline, train step, frequency analysis. The fourth, one real CIFAR-10 epoch per network, needs the CIFAR-10
files in resources/data (cifar-10-batches-py/, or the config's dataset_options.data_root) and is built by name:
`snakemake --cores 2 results/benchmarks/cifar_epoch.csv` (it stops with a one-line message when the files are
missing). `--cores 2` runs the benchmarks one at a time, so that they do not disturb each other's timings.

The benchmarks' code lives in benchmarks/ at the repository root (not in the library); they read the study
settings (network, batch size, augmentation, SGD) from the CIFAR-10 study configs below. One benchmark from the
shell: `python -m benchmarks.frequency [--quick] [--out CSV]` from the repository root.
"""

import glob
import os

from selfdistill.device import planned_device
from selfdistill.planning import library_files
from selfdistill.resources import train_mem_mb

# the `benchmarks` target: these run without CIFAR-10
BENCHMARK_NAMES = ["input_pipeline", "train_step", "frequency"]
# built only when named (needs the real CIFAR-10 files)
CIFAR_BENCHMARK_NAMES = ["cifar_epoch"]
# the benchmarks' own code (the library modules they run are library_files("benchmarks"))
BENCHMARK_CODE = sorted(glob.glob(os.path.join(workflow.basedir, "benchmarks", "*.py")))
# the library modules they run, read from their imports
BENCHMARK_LIBRARY = sorted({path for script in BENCHMARK_CODE for path in library_files(script)})
# the study configs the benchmarks read their settings from (benchmarks/common.py, benchmarks/cifar_epoch.py)
BENCHMARK_CONFIGS = [
    os.path.join(workflow.basedir, "config", name) for name in ("cifar10_seed.yaml", "cifar10_sweep.yaml")
]
# whatever device is present: CUDA when this machine has one (the job then holds a `gpu` slot), else CPU
BENCHMARK_DEVICE = planned_device("auto", inherit=not workflow.is_main_process)


rule benchmarks:
    """The three side-by-side speed benchmarks that run on any machine (input pipeline, train step, frequency)."""
    input:
        expand("results/benchmarks/{benchmark}.csv", benchmark=BENCHMARK_NAMES),


rule benchmark:
    """One speed benchmark (project vs baseline in the same process, or one real CIFAR-10 epoch per network): a
    tidy CSV and a one-line summary (log; for cifar_epoch also each training run's progress).
    """
    input:
        code=BENCHMARK_CODE + BENCHMARK_LIBRARY,
        study=BENCHMARK_CONFIGS,
    output:
        "results/benchmarks/{benchmark}.csv",
    log:
        "results/benchmarks/logs/{benchmark}.log",
    wildcard_constraints:
        benchmark="|".join(BENCHMARK_NAMES + CIFAR_BENCHMARK_NAMES),
    conda:
        "../../envs/selfdistill.yaml"
    threads: 2
    resources:
        gpu=lambda wc: (1 if BENCHMARK_DEVICE.startswith("cuda") and wc.benchmark != "frequency" else 0),
        # cifar_epoch holds CIFAR-10 on the host like a training job
        mem_mb=lambda wc: (train_mem_mb("cifar10") if wc.benchmark in CIFAR_BENCHMARK_NAMES else 8000),
    params:
        device=BENCHMARK_DEVICE,
    script:
        "../scripts/benchmark.py"
