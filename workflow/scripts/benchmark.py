"""Rule benchmark: forward the Snakemake object to benchmarks.common.run_benchmark.

The benchmarks are not part of the library: they live in benchmarks/ at the repository root, two folders up from
this script (Snakemake sets ``__file__`` to the script's own path, in cluster jobs too), which goes on the path.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# after the path above
from benchmarks.common import run_benchmark
from selfdistill.dataset_files import DEFAULT_DATA_ROOT
from selfdistill.execution import job_values

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_benchmark(
    sm.wildcards.benchmark,
    sm.output[0],
    device=sm.params.device,
    threads=sm.threads,
    # execution-only: read from the config, not params (selfdistill.execution)
    data_root=job_values(sm.config, "dataset_options").get("data_root", DEFAULT_DATA_ROOT),
    log_path=sm.log[0],
)
