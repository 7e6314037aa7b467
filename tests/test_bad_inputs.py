"""Malformed inputs fail with one line that names the file, says what is wrong and what to do.

Every case starts from real files: a tiny training run on the digits fixture (``train_run`` on the CPU, which writes
history.csv and outputs.h5 with the producer attributes ``data_sha256`` / ``arrays_sha256``), its frequency table and
its data.h5; each test damages a copy in one way and checks the step's message.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from selfdistill import aggregate as ag
from selfdistill import data as sd_data
from selfdistill import frequency as fq
from selfdistill import outputs as stored_outputs
from selfdistill.data import read_corrupted
from selfdistill.io import InputFileError, arrays_digest
from selfdistill.noise import load_label_file
from selfdistill.training import train_run

EPOCHS = 3
RUN = {"dataset": "digits", "noise": "pair40", "seed": 0, "mode": "ce"}
DELTAS = [0.2, 1.0]


@pytest.fixture(scope="module")
def tiny_run(digits_pair40, tmp_path_factory) -> dict[str, Path]:
    """A finished 3-epoch run on the digits fixture and its frequency table (built once; tests damage copies)."""
    folder = tmp_path_factory.mktemp("tiny_run")
    train_run(
        digits_pair40,
        folder / "history.csv",
        folder / "outputs.h5",
        folder / "model.pt",
        mode="ce",
        seed=0,
        model={"arch": "mlp", "width": 16, "depth": 1},
        train={"epochs": EPOCHS, "batch_size": 128, "lr": 0.05},
        freq_subset=60,
        freq_test_subset=50,
        device="cpu",
        run_name="bad_inputs/ce/seed0",
    )
    fq.analyse_run(digits_pair40, folder / "outputs.h5", folder / "frequency.csv", DELTAS, delta_scale="median")
    return {
        "data": digits_pair40,
        "history": folder / "history.csv",
        "outputs": folder / "outputs.h5",
        "frequency": folder / "frequency.csv",
    }


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> dict[str, Path]:
    """Copies of the run's files that a test may damage."""
    out = {}
    for key, path in tiny_run.items():
        out[key] = tmp_path / path.name
        shutil.copyfile(path, out[key])
    return out


def one_line(excinfo, path, *phrases: str) -> str:
    """The error's message: one line naming ``path`` and containing every phrase."""
    message = str(excinfo.value)
    assert "\n" not in message, message
    assert str(path) in message, message
    for phrase in phrases:
        assert phrase in message, (phrase, message)
    return message


def truncate(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def reseal(outputs: Path) -> None:
    """Rewrite arrays_sha256 for the arrays outputs.h5 holds now (as if the training step had written them), so that
    the checks behind the checksum are what a test meets."""
    with h5py.File(outputs, "a") as h5:
        h5.attrs["arrays_sha256"] = arrays_digest(h5[key][()] for key in stored_outputs.OUTPUT_ARRAYS)


# ----------------------------------------------------------------------------------------------------------------
# The fixture itself passes every check (so that each case below fails for its own damage only)
# ----------------------------------------------------------------------------------------------------------------


def test_the_untouched_run_passes_every_check(run_copy, tmp_path):
    ag.aggregate_histories(
        [run_copy["history"]],
        [RUN],
        tmp_path / "out" / "histories.csv",
        tmp_path / "out" / "summary.csv",
        tmp_path / "out" / "summary.md",
        epochs=EPOCHS,
        val_fraction=0.1,
    )
    ag.aggregate_frequency([run_copy["frequency"]], [RUN], tmp_path / "out" / "frequency.csv")
    fq.analyse_run(run_copy["data"], run_copy["outputs"], tmp_path / "f.csv", DELTAS, delta_scale="median")
    read_corrupted(run_copy["data"])


# ----------------------------------------------------------------------------------------------------------------
# aggregate: history.csv
# ----------------------------------------------------------------------------------------------------------------


def aggregate(history: Path, tmp_path: Path, val_fraction: float = 0.1):
    out = tmp_path / "out"
    return ag.aggregate_histories(
        [history],
        [RUN],
        out / "histories.csv",
        out / "summary.csv",
        out / "summary.md",
        epochs=EPOCHS,
        val_fraction=val_fraction,
    )


def edit_history(path: Path, edit) -> None:
    frame = pd.read_csv(path)
    frame = edit(frame)
    frame.to_csv(path, index=False)


@pytest.mark.parametrize(
    ("edit", "phrases"),
    [
        (lambda h: h.drop(columns="val_acc"), ["column val_acc is missing"]),
        (lambda h: h.drop(columns=["test_acc", "lr"]), ["columns lr, test_acc are missing"]),
        (lambda h: h.iloc[:2], ["has 2 of the 3 epochs", "epoch 3 is missing"]),
        (lambda h: h.iloc[[0, 2]], ["has 2 of the 3 epochs", "epoch 2 is missing"]),
        (lambda h: pd.concat([h, h.iloc[[1]]]), ["epoch 2 has 2 rows"]),
        (lambda h: h.assign(epoch=h["epoch"] + 1), ["has epoch 4 but the run is configured for 3 epochs"]),
        (lambda h: h.assign(test_acc=[0.5, np.nan, 0.6]), ["column test_acc is empty or not finite in 1 of 3 rows"]),
        (lambda h: h.assign(test_acc=np.nan), ["column test_acc is empty or not finite in 3 of 3 rows"]),
        (lambda h: h.assign(train_loss=[1.0, np.inf, 0.5]), ["column train_loss is empty or not finite"]),
        (
            lambda h: h.assign(val_acc=np.nan),
            ["column val_acc is empty or not finite in 3 of 3 rows", "validation split (val_fraction 0.1)"],
        ),
        (lambda h: h.assign(val_acc=[0.5, np.nan, 0.5]), ["column val_acc is empty or not finite in 1 of 3 rows"]),
        (lambda h: h.assign(test_acc=["0.5", "high", "0.6"]), ["column test_acc has 'high' on line 3, not a number"]),
        (lambda h: h.assign(epoch=[1, 2.5, 3]), ["column epoch has 2.5, not an epoch number"]),
        (lambda h: h.iloc[:0], ["has a header but no rows"]),
    ],
    ids=[
        "no val_acc",
        "no test_acc and lr",
        "truncated to 2 of 3 epochs",
        "epoch missing in the middle",
        "repeated epoch",
        "epochs shifted",
        "one test_acc empty",
        "test_acc all empty",
        "train_loss infinite",
        "val_acc empty with a validation split",
        "val_acc partly empty",
        "non-numeric test_acc",
        "fractional epoch",
        "header only",
    ],
)
def test_malformed_history_names_file_and_column(run_copy, tmp_path, edit, phrases):
    edit_history(run_copy["history"], edit)
    with pytest.raises(ag.InputFileError) as excinfo:
        aggregate(run_copy["history"], tmp_path)
    one_line(excinfo, run_copy["history"], *phrases, "delete it and rerun snakemake (rule train")
    assert not (tmp_path / "out").exists()


def test_history_without_validation_split(run_copy, tmp_path):
    """val_fraction 0: val_acc must be empty; a history with values is from another configuration."""
    with pytest.raises(ag.InputFileError) as excinfo:
        aggregate(run_copy["history"], tmp_path, val_fraction=0)
    one_line(excinfo, run_copy["history"], "column val_loss has values", "no validation split")
    edit_history(run_copy["history"], lambda h: h.assign(val_acc=np.nan, val_loss=np.nan))
    summary = aggregate(run_copy["history"], tmp_path, val_fraction=0)
    assert summary["early_stop_mean"].isna().all() and summary["last_mean"].notna().all()


@pytest.mark.parametrize(
    ("damage", "phrase"),
    [
        (lambda p: p.write_bytes(b""), "cannot be read as a CSV table"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(3000)), "delete it and rerun snakemake"),
        (lambda p: p.unlink(), "file not found"),
    ],
    ids=["empty", "random bytes", "missing"],
)
def test_unreadable_history(run_copy, tmp_path, damage, phrase):
    damage(run_copy["history"])
    with pytest.raises(ag.InputFileError) as excinfo:
        aggregate(run_copy["history"], tmp_path)
    one_line(excinfo, run_copy["history"], phrase)


# ----------------------------------------------------------------------------------------------------------------
# aggregate_frequency: frequency.csv
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "phrases"),
    [
        (lambda p: pd.read_csv(p).drop(columns="ratio").to_csv(p, index=False), ["column ratio is missing"]),
        (lambda p: pd.read_csv(p).assign(ratio=np.nan).to_csv(p, index=False), ["column ratio is empty"]),
        (
            lambda p: pd.read_csv(p).iloc[:-1].to_csv(p, index=False),
            ["test/labels_clean has 1 row, expected one for each of the split's 2 deltas"],
        ),
        (lambda p: pd.read_csv(p).query("split == 'train_subset'").to_csv(p, index=False), ["no rows for split test"]),
        (lambda p: pd.read_csv(p).assign(split="val").to_csv(p, index=False), ["column split has 'val'"]),
        (lambda p: pd.read_csv(p).assign(epoch=np.nan).to_csv(p, index=False), ["column epoch is empty"]),
        (lambda p: p.write_bytes(b""), ["cannot be read as a CSV table"]),
    ],
    ids=["no ratio", "ratio empty", "last row cut", "test split missing", "unknown split", "no epochs", "empty"],
)
def test_malformed_frequency_table(run_copy, tmp_path, damage, phrases):
    damage(run_copy["frequency"])
    with pytest.raises(ag.InputFileError) as excinfo:
        ag.aggregate_frequency([run_copy["frequency"]], [RUN], tmp_path / "out.csv")
    one_line(excinfo, run_copy["frequency"], *phrases, "delete it and rerun snakemake")
    assert not (tmp_path / "out.csv").exists()


def test_frequency_table_cut_mid_row(run_copy, tmp_path):
    """A file cut inside a row: the last row's missing cells fail a check (here the ratio or the row count)."""
    text = run_copy["frequency"].read_text()
    run_copy["frequency"].write_text(text[: len(text) - 40])
    with pytest.raises(ag.InputFileError) as excinfo:
        ag.aggregate_frequency([run_copy["frequency"]], [RUN], tmp_path / "out.csv")
    one_line(excinfo, run_copy["frequency"], "rule frequency rebuilds it")


# ----------------------------------------------------------------------------------------------------------------
# frequency step: outputs.h5 and data.h5
# ----------------------------------------------------------------------------------------------------------------


def analyse(files: dict[str, Path], tmp_path: Path):
    return fq.analyse_run(files["data"], files["outputs"], tmp_path / "f.csv", DELTAS, delta_scale="median")


def check_analyse_fails(files, tmp_path, blamed: str, *phrases: str) -> str:
    with pytest.raises(InputFileError) as excinfo:
        analyse(files, tmp_path)
    assert not (tmp_path / "f.csv").exists()
    return one_line(excinfo, files[blamed], *phrases)


@pytest.mark.parametrize("fraction", [0.5, 0.95, 0.0])
def test_truncated_outputs(run_copy, tmp_path, fraction):
    truncate(run_copy["outputs"], fraction)
    check_analyse_fails(run_copy, tmp_path, "outputs", "cannot be read as HDF5", "delete it and rerun", "rule train")


def test_random_bytes_as_outputs(run_copy, tmp_path):
    run_copy["outputs"].write_bytes(np.random.default_rng(1).bytes(5000))
    check_analyse_fails(run_copy, tmp_path, "outputs", "cannot be read as HDF5", "rule train")


@pytest.mark.parametrize("fraction", [0.5, 0.99])
def test_truncated_data_in_the_frequency_step(run_copy, tmp_path, fraction):
    truncate(run_copy["data"], fraction)
    check_analyse_fails(run_copy, tmp_path, "data", "cannot be read as HDF5", "rule corrupt rebuilds it")


def test_outputs_without_producer_attributes(run_copy, tmp_path):
    """A file from before the training step wrote its checksums cannot be verified: rerun training."""
    with h5py.File(run_copy["outputs"], "a") as h5:
        for key in stored_outputs.OUTPUT_ATTRS:
            del h5.attrs[key]
    check_analyse_fails(run_copy, tmp_path, "outputs", "has no attribute data_sha256", "rule train rebuilds it")


def test_outputs_from_another_data_file(run_copy, tmp_path):
    with h5py.File(run_copy["data"], "a") as h5:
        # any change to data.h5 after training
        h5.attrs["seed"] = 99
    message = check_analyse_fails(run_copy, tmp_path, "outputs", "was not produced from", "data_sha256 differs")
    assert str(run_copy["data"]) in message and f"delete {run_copy['outputs']}" in message


def random_rows(outputs: Path, key: str, rows: list[int]) -> None:
    """Plausible garbage: random values in [0, 1] in ``rows`` of the first stored epoch."""
    with h5py.File(outputs, "a") as h5:
        values = h5[key][()]
        values[0, rows] = np.random.default_rng(2).random((len(rows), values.shape[2]))
        h5[key][...] = values


def test_changed_probabilities_fail_the_checksum(run_copy, tmp_path):
    random_rows(run_copy["outputs"], "train_subset/probs", [3, 10, 20])
    check_analyse_fails(run_copy, tmp_path, "outputs", "arrays_sha256 differs", "rule train rebuilds it")


def test_probabilities_that_do_not_sum_to_one(run_copy, tmp_path):
    """Behind the checksum (as if the producer had written them): rows that are no softmax output are refused."""
    random_rows(run_copy["outputs"], "train_subset/probs", [3, 10, 20])
    reseal(run_copy["outputs"])
    check_analyse_fails(
        run_copy, tmp_path, "outputs", "/train_subset/probs has 3 of 180 rows that do not sum to 1", "row 3"
    )


@pytest.mark.parametrize(
    ("key", "value", "phrase"),
    [
        ("test/probs", -0.25, "/test/probs holds negative probabilities"),
        ("test/logits", np.nan, "/test/logits holds NaN"),
        ("train_subset/logits", np.inf, "/train_subset/logits holds NaN, infinite"),
    ],
)
def test_bad_output_values(run_copy, tmp_path, key, value, phrase):
    with h5py.File(run_copy["outputs"], "a") as h5:
        values = h5[key][()]
        values[1, 4, 0] = value
        h5[key][...] = values
    reseal(run_copy["outputs"])
    check_analyse_fails(run_copy, tmp_path, "outputs", phrase)


def rewrite(outputs: Path, key: str, values) -> None:
    with h5py.File(outputs, "a") as h5:
        del h5[key]
        h5[key] = values


def test_outputs_truncated_to_fewer_epochs(run_copy, tmp_path):
    """A file holding 2 of the run's 3 epochs (consistent in itself, checksum included) is incomplete."""
    with h5py.File(run_copy["outputs"], "a") as h5:
        arrays = {key: h5[key][:2] for key in stored_outputs.OUTPUT_ARRAYS}
    for key, values in arrays.items():
        rewrite(run_copy["outputs"], key, values)
    rewrite(run_copy["outputs"], "epochs", np.array([1, 2]))
    reseal(run_copy["outputs"])
    check_analyse_fails(run_copy, tmp_path, "outputs", "/epochs ends at epoch 2 but the run trained 3 epochs")


@pytest.mark.parametrize(
    ("epochs", "phrase"),
    [
        ([1, 3, 3], "/epochs [1, 3, 3] is not strictly increasing"),
        ([0, 1, 3], "/epochs runs from 0 to 3, outside the run's epochs 1..3"),
        ([1, 2, 4], "/epochs runs from 1 to 4, outside the run's epochs 1..3"),
    ],
)
def test_bad_stored_epochs(run_copy, tmp_path, epochs, phrase):
    rewrite(run_copy["outputs"], "epochs", np.array(epochs))
    check_analyse_fails(run_copy, tmp_path, "outputs", phrase)


def test_outputs_with_a_shape_that_disagrees(run_copy, tmp_path):
    with h5py.File(run_copy["outputs"], "a") as h5:
        logits = h5["test/logits"][:, :-1]
    rewrite(run_copy["outputs"], "test/logits", logits)
    reseal(run_copy["outputs"])
    check_analyse_fails(run_copy, tmp_path, "outputs", "/test/logits has shape (3, 49, 10), expected (3 stored epochs")


def test_indices_outside_the_split(run_copy, tmp_path):
    with h5py.File(run_copy["outputs"], "a") as h5:
        h5["train_subset/indices"][0] = 10**6
    message = check_analyse_fails(run_copy, tmp_path, "outputs", "/train_subset/indices has row 1000000, outside")
    assert str(run_copy["data"]) in message


def test_labels_that_disagree_with_data(run_copy, tmp_path):
    with h5py.File(run_copy["outputs"], "a") as h5:
        h5["test/labels_clean"][0] = (h5["test/labels_clean"][0] + 1) % 10
    check_analyse_fails(run_copy, tmp_path, "outputs", "/test/labels_clean disagree with", "(1 of 50 differ)")


# ----------------------------------------------------------------------------------------------------------------
# data.h5 read by the training step (data.read_corrupted)
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.99])
def test_truncated_data_file(run_copy, fraction):
    truncate(run_copy["data"], fraction)
    with pytest.raises(sd_data.InputFileError) as excinfo:
        read_corrupted(run_copy["data"])
    one_line(excinfo, run_copy["data"], "cannot be read as HDF5", "delete it and rerun snakemake (rule corrupt")


def test_data_file_missing_a_dataset(run_copy):
    with h5py.File(run_copy["data"], "a") as h5:
        del h5["val/labels_noisy"]
    with pytest.raises(sd_data.InputFileError) as excinfo:
        read_corrupted(run_copy["data"])
    one_line(excinfo, run_copy["data"], "/val/labels_noisy is missing", "rule corrupt rebuilds it")


def test_data_file_with_labels_outside_the_classes(run_copy):
    with h5py.File(run_copy["data"], "a") as h5:
        h5["train/labels_noisy"][5] = 10
        h5["train/is_noisy"][5] = True
    with pytest.raises(sd_data.InputFileError) as excinfo:
        read_corrupted(run_copy["data"])
    one_line(excinfo, run_copy["data"], "/train/labels_noisy holds values outside the classes 0..9")


def test_training_on_a_truncated_data_file_names_it(run_copy, tmp_path):
    truncate(run_copy["data"])
    with pytest.raises(sd_data.InputFileError) as excinfo:
        train_run(
            run_copy["data"],
            tmp_path / "h.csv",
            tmp_path / "o.h5",
            tmp_path / "m.pt",
            mode="ce",
            seed=0,
            model={"arch": "mlp", "width": 8, "depth": 1},
            train={"epochs": 1},
            device="cpu",
        )
    one_line(excinfo, run_copy["data"], "cannot be read as HDF5")


# ----------------------------------------------------------------------------------------------------------------
# Label files (CIFAR-10N human labels)
# ----------------------------------------------------------------------------------------------------------------

UNSAFE_ADVICE = ("allow_pickle", "weights_only", "safe_globals", "pickle.load")


def check_label_error(path: Path, *phrases: str) -> None:
    with pytest.raises(sd_data.InputFileError) as excinfo:
        load_label_file(path)
    message = one_line(excinfo, path, *phrases)
    assert not any(word in message for word in UNSAFE_ADVICE), message


def test_random_bytes_are_not_a_pytorch_file(tmp_path):
    path = tmp_path / "CIFAR-10_human.pt"
    path.write_bytes(np.random.default_rng(3).bytes(4000))
    check_label_error(path, "is not a PyTorch file", "CIFAR-10_human.pt")


def test_random_bytes_are_not_an_npz(tmp_path):
    path = tmp_path / "labels.npz"
    path.write_bytes(np.random.default_rng(4).bytes(4000))
    check_label_error(path, "is not an .npz of integer arrays")


def test_truncated_label_files(tmp_path):
    labels = {"clean_label": np.arange(200) % 10, "worse_label": (np.arange(200) + 1) % 10}
    torch.save({k: torch.from_numpy(v) for k, v in labels.items()}, tmp_path / "h.pt")
    np.savez(tmp_path / "h.npz", **labels)
    for name in ("h.pt", "h.npz"):
        truncate(tmp_path / name)
    check_label_error(tmp_path / "h.pt", "is not a PyTorch file")
    check_label_error(tmp_path / "h.npz", "is not an .npz of integer arrays")


def test_npz_with_python_objects(tmp_path):
    np.savez(tmp_path / "objects.npz", clean_label=np.array([{"label": 1}], dtype=object))
    check_label_error(
        tmp_path / "objects.npz", "is not an .npz of integer arrays", "'clean_label' holds Python objects"
    )


def test_a_pickled_payload_in_a_label_file_never_runs(tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    torch.save({"clean_label": Payload()}, tmp_path / "evil.pt")
    check_label_error(tmp_path / "evil.pt", "cannot be loaded without executing pickled code", "GLOBAL")
    assert not marker.exists()


def test_every_step_raises_the_same_kind_of_error():
    """One meaning, declared once per rule's code closure (data for corrupt/train, frequency, aggregate)."""
    for cls in (sd_data.InputFileError, InputFileError, ag.InputFileError):
        assert cls.__name__ == "InputFileError" and issubclass(cls, ValueError)
