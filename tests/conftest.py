"""Shared fixtures: a small corrupted digits dataset and the repository root."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from selfdistill.data import build_corrupted_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def digits_pair40(tmp_path_factory) -> Path:
    """digits with 40% pair-flip noise, seed 0 (built once per test session)."""
    path = tmp_path_factory.mktemp("data") / "data.h5"
    build_corrupted_dataset(path, "digits", {"type": "pair", "rate": 0.4}, seed=0)
    return path


@pytest.fixture(autouse=True)
def package_logger_reset():
    """Every test starts with the package's logger as Python leaves it: a step run by an earlier test
    (setup_logging) sends its records to that step's log file and stops them propagating, which would hide them from
    a later test's ``caplog``. Restored after each test, so the order of the tests does not matter."""
    yield
    logger = logging.getLogger("selfdistill")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
