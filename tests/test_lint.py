"""Static checks that CI must keep clean: snakemake --lint, snakefmt, ruff."""

from __future__ import annotations

import subprocess

import pytest
from helpers import REPO, snakemake


@pytest.mark.slow
def test_snakemake_lint_is_clean():
    result = snakemake(REPO, "--lint", configfile=None, cores=None, snakefile=REPO / "Snakefile", cwd=REPO, timeout=300)
    assert "Lints for" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "cmd",
    [
        ["snakefmt", "--check", "."],
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
    ],
    ids=lambda cmd: " ".join(cmd),
)
def test_clean(cmd):
    result = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
