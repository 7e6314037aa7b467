"""Live SLURM: the smoke study through `--profile profiles/slurm` on a single-node cluster started on this machine.

tests/cluster/start_slurm.sh installs Debian's slurmctld, slurmd and munge and starts them (root only); the test
is skipped only where that is impossible, and fails instead when SELFDISTILL_REQUIRE_SLURM=1 (as in CI). The
daemons are stopped again by their pid files unless they were already running before the session.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import REPO, SETTING, SMOKE, expected_targets, snakemake, snakemake_command

CLUSTER = REPO / "tests" / "cluster"
STATE = Path(os.environ.get("SELFDISTILL_SLURM_DIR", "/tmp/selfdistill-slurm"))
# start_slurm.sh's exit status when this machine cannot run SLURM at all (not root, no apt-get, ...)
CANNOT_HOST = 77
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")

pytestmark = [pytest.mark.slurm, pytest.mark.workflow, pytest.mark.slow]


def script(name: str, timeout: int) -> subprocess.CompletedProcess:
    """Run tests/cluster/<name> on the state directory."""
    return subprocess.run(
        ["bash", str(CLUSTER / name), str(STATE)],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Path]:
    """A running single-node cluster; yields its state directory (slurm.conf, daemon logs)."""
    started = script("start_slurm.sh", timeout=900)
    reason = (started.stderr.strip().splitlines() or ["no message"])[-1]
    if started.returncode == CANNOT_HOST:
        if os.environ.get("SELFDISTILL_REQUIRE_SLURM") == "1":
            pytest.fail(f"SELFDISTILL_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    if started.returncode != 0:
        pytest.fail(f"SLURM did not come up:\n{started.stdout}\n{started.stderr}")
    ours = "already running" not in started.stdout
    yield STATE
    if ours:
        stopped = script("stop_slurm.sh", timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


#: the smoke study with one seed and two of its modes, under the smoke study's name: every rule goes through SLURM,
#: for the reference mode and a distilling one (another seed or mode would submit the same jobs again)
SLURM_STUDY = {"study": "smoke", "seeds": [0], "modes": ["ce", "self_distill"]}


def submit(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the one-seed, two-mode smoke study in `workdir` through the SLURM profile plus the test cluster's settings."""
    override = workdir / "slurm_study.yaml"
    override.write_text(yaml.safe_dump(SLURM_STUDY))
    return snakemake(
        workdir,
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--profile",
        str(CLUSTER / "profile"),
        *args,
        configfile=[SMOKE, override],
        cores=None,
        cwd=workdir,
        timeout=900,
    )


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory) -> tuple[Path, str]:
    """The one-seed, two-mode smoke study submitted to the cluster once; its work directory and Snakemake's output."""
    # its own build, not the session's smoke study: what is tested is that the jobs go through SLURM
    workdir = tmp_path_factory.mktemp("slurm")
    result = submit(workdir)
    return workdir, result.stdout + result.stderr


def test_every_target_exists(slurm_run):
    workdir, _ = slurm_run
    missing = [str(p) for p in expected_targets(SLURM_STUDY) if not (workdir / p).is_file()]
    assert not missing, missing
    logs = list((workdir / SETTING / "logs").rglob("train_*.log"))
    assert len(logs) == len(SLURM_STUDY["seeds"]) * len(SLURM_STUDY["modes"])
    assert all("epoch 4/4" in log.read_text() for log in logs)


def test_training_went_through_sbatch(slurm_run, slurm_cluster):
    """Every training run has its own SLURM job: submitted, logged by the plugin and completed by slurmctld."""
    workdir, output = slurm_run
    slurm_logs = (workdir / ".snakemake" / "slurm_logs").resolve()
    # {(rule_<rule>, <wildcards>): SLURM job id}, from the plugin's "submitted" lines
    jobs = {
        Path(log).resolve().parent.relative_to(slurm_logs).parts: job_id for job_id, log in SUBMITTED.findall(output)
    }
    setting = SETTING.parts[2]
    runs = {
        ("rule_train", f"{setting}_{seed}_{mode}") for seed in SLURM_STUDY["seeds"] for mode in SLURM_STUDY["modes"]
    }
    assert runs <= jobs.keys(), output
    controller = (slurm_cluster / "slurmctld.log").read_text()
    for run in sorted(runs):
        job_id = jobs[run]
        # the job's own output, kept by slurm-keep-successful-logs: the inner Snakemake ran the train job
        log = slurm_logs / Path(*run) / f"{job_id}.log"
        assert "--executor slurm-jobstep" in log.read_text(), log
        assert f"_slurm_rpc_submit_batch_job: JobId={job_id} " in controller, run
        assert f"_job_complete: JobId={job_id} WEXITSTATUS 0" in controller, run


def test_second_run_has_nothing_to_do(slurm_run):
    workdir, _ = slurm_run
    result = submit(workdir, "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_signalled_training_checkpoints_and_resumes_in_a_new_job(slurm_cluster, tmp_path):
    """A train job signalled as profiles/slurm's `--signal=TERM@120` does before its time limit checkpoints and fails;
    the rule's retries submit a new SLURM job, which resumes and finishes. `scancel --signal=TERM` (without --full)
    signals the same processes at a chosen moment: a real 1-minute limit warns anywhere 0-30 s into the job, too
    racy for CI. 300 epochs of about 0.05 s: the run is still training some 15 s after epoch 5, when it is
    signalled."""
    epochs, run = 300, SETTING / "seed0" / "ce"
    log = tmp_path / SETTING / "logs" / "seed0" / "train_ce.log"
    (tmp_path / "long.yaml").write_text(yaml.safe_dump({"study": "smoke", "train": {"epochs": epochs}}))
    profiles = ["--profile", str(REPO / "profiles" / "slurm"), "--profile", str(CLUSTER / "profile")]
    cmd = snakemake_command(
        tmp_path, str(run / "model.pt"), *profiles, configfile=[SMOKE, tmp_path / "long.yaml"], cores=None
    )
    with (tmp_path / "snakemake.out").open("w") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not (log.is_file() and f"epoch 5/{epochs} " in log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, "the train log never reached epoch 5"
            time.sleep(0.2)
        queue = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True, check=True).stdout
        job = next(
            ln.split()[0] for ln in queue.splitlines() if ln.endswith(f" rule_train_wildcards_{SETTING.parts[2]}_0_ce")
        )
        subprocess.run(["scancel", "--signal=TERM", job], check=True)
        assert proc.wait(timeout=600) == 0, (tmp_path / "snakemake.out").read_text()
    finally:
        if proc.poll() is None:
            proc.terminate()
    output = (tmp_path / "snakemake.out").read_text()
    # two SLURM jobs for the run: the signalled one and the one that resumed
    train_jobs = [job for job, path in SUBMITTED.findall(output) if "/rule_train/" in path]
    assert len(train_jobs) == 2, output
    earlier, _, last = log.read_text().rpartition("----- new attempt")
    assert "SIGTERM: checkpointed at epoch" in earlier, earlier
    assert "resumed from checkpoint at epoch" in last and f"epoch {epochs}/{epochs} " in last, last
    assert len((tmp_path / run / "history.csv").read_text().splitlines()) == epochs + 1
