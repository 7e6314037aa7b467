"""Shared fixtures: a small corrupted digits dataset, the repository root and the smoke study, built once.

The suite runs in two processes (pytest-xdist, ``-n 2 --dist loadfile`` in pyproject.toml: each test module in one
of them, so a module's own fixtures are built once). The smoke study is built once for both (:func:`smoke_study`),
and each process has its own GPU lock directory, so that two modules' fake GPUs never share slots."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, copy_repository, copy_study, snakemake

from selfdistill.data import build_corrupted_dataset
from selfdistill.gpu_slots import LOCK_DIR_ENV

#: the library logger as the session found it: level, handlers, propagation
LIBRARY_LOGGER = logging.getLogger("selfdistill")
PRISTINE = LIBRARY_LOGGER.level, list(LIBRARY_LOGGER.handlers), LIBRARY_LOGGER.propagate


def pytest_report_header() -> str | None:
    """Warn when every Snakemake start will wait: with SLURM's client commands installed (e.g. by an earlier
    tests/test_slurm.py) and no controller answering, the SLURM executor plugin's import runs ``scontrol show config``
    and waits about 9 s for it, in every Snakemake start of the suite until test_slurm.py starts the cluster."""
    if shutil.which("sinfo") is None or shutil.which("scontrol") is None:
        return None
    try:
        subprocess.run(["scontrol", "ping"], capture_output=True, timeout=2, check=True)
    except (subprocess.TimeoutExpired, subprocess.CalledProcessError):
        return (
            "warning: SLURM's commands are installed but no controller answers: each Snakemake start waits ~9 s in "
            "the SLURM plugin; start the test cluster first (bash tests/cluster/start_slurm.sh)"
        )
    return None


@pytest.fixture(autouse=True)
def library_logger() -> Iterator[None]:
    """Give the library's logger back as the session found it after each test: a training run in this process (in a
    test or in a module fixture; selfdistill.io's setup_logging) stops it propagating to the root logger, where the
    caplog of every later test listens."""
    yield
    for handler in LIBRARY_LOGGER.handlers:
        if handler not in PRISTINE[1]:
            handler.close()
    LIBRARY_LOGGER.setLevel(PRISTINE[0])
    LIBRARY_LOGGER.handlers[:] = PRISTINE[1]
    LIBRARY_LOGGER.propagate = PRISTINE[2]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def digits_pair40(tmp_path_factory) -> Path:
    """digits with 40% pair-flip noise, seed 0 (built once per test session)."""
    path = tmp_path_factory.mktemp("data") / "data.h5"
    build_corrupted_dataset(path, "digits", {"type": "pair", "rate": 0.4}, seed=0)
    return path


def session_root(tmp_path_factory) -> Path:
    """The folder all processes of this test session share: pytest's base temporary folder, or with pytest-xdist
    the one above each worker's."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def gpu_lock_dir(tmp_path_factory) -> Iterator[None]:
    """This process's own GPU lock directory (SELFDISTILL_GPU_LOCK_DIR, inherited by the Snakemake runs it starts)
    unless one is set: the per-user default would let two test processes' fake GPUs take each other's slots."""
    if LOCK_DIR_ENV in os.environ:
        yield
        return
    os.environ[LOCK_DIR_ENV] = str(tmp_path_factory.mktemp("gpu-locks"))
    yield
    os.environ.pop(LOCK_DIR_ENV, None)


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory) -> Path:
    """A copy of the repository (its own Snakefile, library and configs) with the smoke study (config/smoke.yaml)
    built in it by Snakemake, once per test session: the first test process that needs it builds it, holding a lock
    that the other waits on.

    Shared by every test that needs the finished smoke study: read it, or dry-run Snakemake on it, but change
    nothing in it (not even a file's time); a test that does takes :func:`smoke_copy`."""
    root = session_root(tmp_path_factory)
    study, built = root / "smoke_study" / "repo", root / "smoke_study.built"
    with open(root / "smoke_study.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not built.is_file():
            shutil.rmtree(study.parent, ignore_errors=True)
            copy_repository(study)
            snakemake(study)
            built.touch()
    return study


@pytest.fixture
def smoke_copy(smoke_study, tmp_path) -> Path:
    """This test's own copy of :func:`smoke_study` (results/ and .snakemake/ with their times): free to change."""
    return copy_study(smoke_study, tmp_path / "repo")
