"""The GPU self-check runs on the CPU too (tiny sizes): one table, every check present, resume exact on the CPU."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from selfdistill.gpu_check import gpu_check, gpu_timings
from selfdistill.gpu_timings import read_timings


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


@pytest.mark.slow
def test_gpu_check_command_prints_the_table(tmp_path):
    """Starts processes: the command itself, and two concurrent runs for the packing timings."""
    timings = tmp_path / "gpu_timings.csv"
    result = subprocess.run(
        [sys.executable, "-m", "selfdistill.gpu_check", "--device", "cpu", "--tiny", "--archs", "fast_cnn"]
        + ["--timings", str(timings)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "| check | network | value | unit | note |"
    assert any(line.startswith("| resume | fast_cnn | 0 |") for line in lines)
    assert any(line.startswith("| network / config | precision | compile | runs at once |") for line in lines)
    assert [(r.arch, r.concurrent) for r in read_timings(timings)] == [("fast_cnn", 1), ("fast_cnn", 2)]
    # every shipped CIFAR config gets its projected wall time (measured networks only get hours)
    assert any(line.startswith("| config/original.yaml (2 runs, 3600 run-epochs,") for line in lines)


@pytest.mark.slow
def test_timings_of_packed_runs_and_the_projection(tmp_path):
    """--tiny's timings on the CPU (two concurrent processes): a row per packing in gpu_timings.csv's format, the
    epoch split into training and evaluation, and a projection of each shipped CIFAR config from the rows."""
    out = tmp_path / "gpu_timings.csv"
    rows, projected = gpu_timings("cpu", tiny=True, archs=["small_cnn"], out=out)
    assert read_timings(out) == rows
    assert [(r.arch, r.precision, r.compile, r.concurrent) for r in rows] == [
        ("small_cnn", "float32", "none", 1),
        ("small_cnn", "float32", "none", 2),
    ]
    for r in rows:
        assert r.train_img_s > 0 and r.eval_img_s > 0 and r.peak_mem_mb is None
        assert r.epoch_s == r.train_s + r.eval_s
    configs = {p["config"]: p for p in projected}
    assert "config/original.yaml" in configs and "config/smoke.yaml" not in configs
    assert configs["config/original.yaml"]["run_epochs"] == 2 * 1800


def test_projection_takes_the_fastest_packing_that_fits_in_memory():
    """config/original.yaml: 2 runs × 1800 epochs of the original Shake-Shake in float32, eager."""
    from pathlib import Path

    from selfdistill.gpu_measure import projections
    from selfdistill.gpu_timings import TimingRow

    def row(k, epoch_s, peak):
        return TimingRow(
            "shake_shake_26_2x32d_original", 128, "float32", "none", "GPU", 80_000.0, k, peak, epoch_s=epoch_s
        )

    # 2 at once: 12 s an epoch each, so 6 s of wall time per epoch; 8 at once would be faster but does not fit
    rows = [row(1, 10.0, 3000.0), row(2, 12.0, 3000.0), row(8, 16.0, 20_000.0)]
    repo = Path(__file__).resolve().parents[1]
    original = {p["config"]: p for p in projections(rows, repo, "cuda")}["config/original.yaml"]
    assert (original["runs"], original["run_epochs"], original["concurrent"]) == (2, 3600, 2)
    assert original["wall_hours"] == 3600 * 12.0 / 2 / 3600
