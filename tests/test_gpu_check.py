"""The GPU self-check runs on the CPU too (tiny sizes): one table, every check present, resume exact on the CPU."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd

from selfdistill.gpu_check import gpu_check


def test_gpu_check_table_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.csv"
    table = gpu_check("cpu", tiny=True, archs=["fast_cnn"], out=out)
    on_disk = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert on_disk["check"].tolist() == table["check"].tolist()
    pd.testing.assert_series_equal(on_disk["value"], table["value"])
    by_check = table.set_index("check")
    assert list(table["check"]) == [
        "device",
        "train_step",
        "forward_cpu_vs_device",
        "resume",
        "checkpoint",
        "input_pipeline",
        "frequency",
    ]
    # the same device twice gives the same logits, and a resumed CPU run equals the uninterrupted one exactly
    assert by_check.loc["forward_cpu_vs_device", "value"] == 0.0
    assert by_check.loc["resume", "value"] == 0.0
    for check in ("train_step", "input_pipeline", "checkpoint", "frequency"):
        assert by_check.loc[check, "value"] > 0, check


def test_gpu_check_command_prints_the_table():
    result = subprocess.run(
        [sys.executable, "-m", "selfdistill.gpu_check", "--device", "cpu", "--tiny", "--archs", "fast_cnn"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "| check | network | value | unit | note |"
    assert any(line.startswith("| resume | fast_cnn | 0 |") for line in lines)
