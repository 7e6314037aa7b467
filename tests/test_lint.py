"""Static checks that CI must keep clean: snakemake --lint, snakefmt, ruff."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "cmd",
    [
        ["snakemake", "--lint"],
        ["snakefmt", "--check", "."],
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
    ],
    ids=lambda cmd: " ".join(cmd),
)
def test_clean(cmd):
    result = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    if cmd[0] == "snakemake":
        assert "Lints for" not in result.stdout + result.stderr
