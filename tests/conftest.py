"""Shared fixtures: a small corrupted digits dataset and the repository root."""

from __future__ import annotations

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
