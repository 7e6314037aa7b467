"""The gpu_timings.csv format: round trip, empty cells, unknown columns, and one-line errors for bad files."""

import dataclasses
import math
import re

import pytest

from selfdistill.gpu_timings import COLUMNS, DEFAULT_PATH, KEY_COLUMNS, TimingRow, read_timings, write_timings

ROWS = [
    TimingRow(
        "shake_shake_26_2x32d_original",
        128,
        "bf16",
        "none",
        "NVIDIA H200",
        gpu_mem_mb=143771.0,
        concurrent=1,
        peak_mem_mb=2450.5,
        train_img_s=4758.0,
        eval_img_s=15000.0,
        train_s=9.46,
        eval_s=2.1,
        epoch_s=11.56,
    ),
    TimingRow("shake_shake_26_2x32d_original", 128, "bf16", "none", "NVIDIA H200", 143771.0, 4, 2450.5, 20720.0),
    TimingRow("fast_cnn", 512, "float32", "reduce-overhead", "NVIDIA H100 80GB HBM3", concurrent=2, epoch_s=1.0 / 3),
]


def test_columns_are_the_row_fields():
    assert tuple(f.name for f in dataclasses.fields(TimingRow)) == COLUMNS
    assert set(KEY_COLUMNS) <= set(COLUMNS)
    assert DEFAULT_PATH.endswith("gpu_timings.csv")


def test_round_trip(tmp_path):
    path = tmp_path / "sub" / "gpu_timings.csv"
    write_timings(path, ROWS)
    assert read_timings(path) == ROWS
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS)
    # a value not measured is an empty cell, floats keep every digit
    assert lines[2].endswith(",4,2450.5,20720.0,,,,")
    assert read_timings(path)[2].epoch_s == 1.0 / 3


def test_nan_is_written_as_an_empty_cell(tmp_path):
    path = tmp_path / "t.csv"
    write_timings(path, [dataclasses.replace(ROWS[0], eval_img_s=math.nan)])
    assert read_timings(path)[0].eval_img_s is None


def test_unknown_columns_are_ignored_and_order_is_free(tmp_path):
    path = tmp_path / "t.csv"
    header = ["note", *reversed(COLUMNS)]
    row = {
        "arch": "mlp",
        "batch_size": "64",
        "precision": "tf32",
        "compile": "default",
        "device_name": "X",
        "concurrent": "8",
        "peak_mem_mb": "900",
    }
    path.write_text(",".join(header) + "\n" + ",".join(row.get(c, "") for c in header) + "\n")
    (got,) = read_timings(path)
    assert got == TimingRow("mlp", 64, "tf32", "default", "X", concurrent=8, peak_mem_mb=900.0)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("batch_size", "12.5", "column batch_size is '12.5', not a positive integer"),
        ("concurrent", "0", "column concurrent is '0', not a positive integer"),
        ("peak_mem_mb", "lots", "column peak_mem_mb is 'lots', not a number"),
        ("epoch_s", "-1", "column epoch_s is '-1', not a finite number ≥ 0"),
        ("epoch_s", "inf", "column epoch_s is 'inf', not a finite number ≥ 0"),
        ("arch", "", "column arch is empty"),
    ],
)
def test_bad_cells_name_file_row_and_column(tmp_path, column, value, message):
    path = tmp_path / "t.csv"
    write_timings(path, ROWS[:2])
    lines = path.read_text().splitlines()
    cells = lines[2].split(",")
    cells[COLUMNS.index(column)] = value
    path.write_text("\n".join([*lines[:2], ",".join(cells)]) + "\n")
    with pytest.raises(ValueError, match="^" + re.escape(f"{path}, row 3: {message}")):
        read_timings(path)


def test_a_file_without_a_column_is_not_a_timings_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("arch,batch_size\nmlp,1\n")
    with pytest.raises(ValueError, match=r"not a gpu_timings.csv: no column precision"):
        read_timings(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_timings(tmp_path / "none.csv")
