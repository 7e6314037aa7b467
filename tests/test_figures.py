"""Tests for selfdistill.figures: every figure renders a valid PNG atomically; the number helpers are right."""

from __future__ import annotations

from pathlib import Path

import matplotlib.figure
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from selfdistill import figures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODES = ("ce", "self_distill", "bootstrap_soft")
DELTAS = ((1.0, 0.1), (10.0, 0.5), (100.0, 2.0))  # (delta, delta_rel)


def make_histories(seeds=(0, 1), modes=MODES, n_epochs=6) -> pd.DataFrame:
    """Synthetic histories: ce rises then falls (memorises), the others keep rising."""
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for mode in modes:
            for epoch in range(1, n_epochs + 1):
                t = epoch / n_epochs
                peak = 0.8 - 0.6 * (t - 0.4) ** 2 if mode == "ce" else 0.5 + 0.3 * t
                mem = 0.1 + (0.8 * t if mode == "ce" else 0.2 * t)
                rows.append(
                    {
                        "dataset": "cifar10",
                        "noise": "pair40",
                        "seed": seed,
                        "mode": mode,
                        "epoch": epoch,
                        "lr": 0.1 * (1 - t),
                        "train_loss": 2.0 * (1 - t) + 0.05 + 0.02 * rng.random(),
                        "train_acc_noisy": 0.3 + 0.6 * t,
                        "train_acc_clean": 0.3 + 0.4 * t,
                        "memorized": mem,
                        "corrected": 0.9 - mem,
                        "val_loss": 1.5 + 0.1 * rng.random(),
                        "val_acc": 0.6 * peak + 0.02 * rng.random(),
                        "test_loss": 1.0 + (2 * t if mode == "ce" else -0.3 * t) + 0.05 * rng.random(),
                        "test_acc": peak + 0.02 * rng.random(),
                        "distill_weight": np.nan if mode == "ce" else 0.5 * t,
                        "epoch_seconds": 3.0,
                    }
                )
    return pd.DataFrame(rows)


def make_frequency(seeds=(0, 1), modes=MODES, n_epochs=6, with_rel=True) -> pd.DataFrame:
    """Synthetic frequency table with both splits, per-epoch probs/logits rows and label reference rows."""
    rows = []
    base = {"dataset": "cifar10", "noise": "pair40"}
    for seed in seeds:
        rng = np.random.default_rng(100 + seed)
        for mode in modes:
            for split in ("train_subset", "test"):
                for delta, rel in DELTAS:
                    rel = rel if with_rel else np.nan
                    for src, value in (("labels_clean", 0.6), ("labels_noisy", 0.4)):
                        rows.append(
                            dict(
                                base,
                                seed=seed,
                                mode=mode,
                                split=split,
                                source=src,
                                epoch=np.nan,
                            )
                            | {
                                "delta": delta,
                                "delta_rel": rel,
                                "ratio": value - 0.01 * np.log10(delta) + 0.01 * seed,
                            }
                            | {
                                "e_low_noisy": np.nan,
                                "e_high_noisy": np.nan,
                                "e_low_clean": np.nan,
                                "e_high_clean": np.nan,
                            }
                        )
                    for source in ("probs", "logits"):
                        for epoch in range(1, n_epochs + 1):
                            t = epoch / n_epochs
                            drop = 0.2 * t if mode == "ce" else 0.05 * t
                            noisy_nan = split == "test"
                            rows.append(
                                dict(
                                    base,
                                    seed=seed,
                                    mode=mode,
                                    split=split,
                                    source=source,
                                    epoch=epoch,
                                )
                                | {
                                    "delta": delta,
                                    "delta_rel": rel,
                                    "ratio": 0.7 - drop + 0.01 * rng.random(),
                                }
                                | {
                                    "e_low_noisy": np.nan if noisy_nan else 0.8 * (1 - t) + 0.05,
                                    "e_high_noisy": np.nan
                                    if noisy_nan
                                    else 1.0 - (0.7 * t if mode == "ce" else 0.2 * t),
                                    "e_low_clean": 0.7 * (1 - t) + 0.1,
                                    "e_high_clean": 0.9 - 0.1 * t,
                                }
                            )
    return pd.DataFrame(rows)


def assert_png(path) -> None:
    """A non-empty PNG that matplotlib can read back, no wider than 12 in at the figure dpi, no temp beside it."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert image.shape[1] <= 12 * figures.DPI
    assert [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.fixture
def csvs(tmp_path):
    """Write histories and frequency CSVs for a given variant; returns (histories_csv, frequency_csv)."""

    def write(name="full", **kw):
        folder = tmp_path / name
        folder.mkdir()
        hist_kw = {k: v for k, v in kw.items() if k in ("seeds", "modes", "n_epochs")}
        h = folder / "histories.csv"
        f = folder / "frequency.csv"
        make_histories(**hist_kw).to_csv(h, index=False)
        make_frequency(**kw).to_csv(f, index=False)
        return h, f

    return write


ALL_FIGURES = ("accuracy", "loss", "memorization", "frequency_ratio", "frequency_error")
# variant: (data options, figures to draw) -- kept small, every figure costs ~0.5 s
VARIANTS = {
    "full": ({}, ALL_FIGURES),
    "one_seed_three_epochs": (
        {"seeds": (3,), "n_epochs": 3},
        ("accuracy", "frequency_ratio", "frequency_error"),
    ),
    "no_ce": (
        {"modes": ("self_distill", "bootstrap_hard")},
        ("memorization", "frequency_ratio", "frequency_error"),
    ),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_figures_render(csvs, tmp_path, variant):
    options, names = VARIANTS[variant]
    hist, freq = csvs(variant, **options)
    for name in names:
        out = tmp_path / f"out_{variant}_{name}" / f"{name}.png"
        source = freq if name.startswith("frequency") else hist
        getattr(figures, f"plot_{name}")(source, out)
        assert_png(out)


def test_options_absolute_delta_and_logits(csvs, tmp_path):
    _hist, freq = csvs("abs", with_rel=False)
    out = tmp_path / "b" / "ratio.png"
    figures.plot_frequency_ratio(freq, out, deltas=[0.4, 3.0], source="logits")
    assert_png(out)
    out = tmp_path / "c" / "err.png"
    figures.plot_frequency_error(freq, out, delta=3.0, mode_order=["bootstrap_soft", "ce"], target="clean")
    assert_png(out)


def test_failed_save_leaves_nothing(csvs, tmp_path, monkeypatch):
    hist, _freq = csvs()
    out = tmp_path / "fail" / "acc.png"

    def broken_savefig(self, fname, **kw):
        Path(fname).write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        figures.plot_loss(hist, out)
    assert list(out.parent.iterdir()) == []


def test_early_stop_points_by_hand():
    rows = [
        # mode, seed, epoch, val_acc, test_acc
        ("ce", 0, 1, 0.5, 0.60),
        ("ce", 0, 2, 0.7, 0.70),
        ("ce", 0, 3, 0.7, 0.50),  # tie with epoch 2: earliest wins
        ("ce", 1, 1, 0.9, 0.62),
        ("ce", 1, 2, 0.6, 0.74),
        ("ce", 1, 3, 0.4, 0.52),
    ]
    hist = pd.DataFrame(rows, columns=["mode", "seed", "epoch", "val_acc", "test_acc"])
    hist = hist.assign(dataset="d", noise="n")
    points = figures.early_stop_points(hist, "test_acc").sort_values("seed")
    assert points["early_stop_epoch"].tolist() == [2, 1]
    # marker height = mean test accuracy over both seeds at that epoch
    assert points["test_acc"].tolist() == pytest.approx([0.72, 0.61])


def test_errors_leave_no_file(csvs, tmp_path):
    _hist, freq = csvs()
    out = tmp_path / "bad" / "x.png"
    with pytest.raises(ValueError, match="source='nope'"):
        figures.plot_frequency_ratio(freq, out, source="nope")
    mixed = pd.concat([make_histories(), make_histories().assign(noise="sym40")])
    mixed_csv = tmp_path / "mixed.csv"
    mixed.to_csv(mixed_csv, index=False)
    with pytest.raises(ValueError, match="one \\(dataset, noise\\) setting"):
        figures.plot_accuracy(mixed_csv, out)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_select_deltas_spread_and_nearest():
    avail = [100, 1, 2, 5, 10, 20, 50, 5]
    # ranks 0, 2, 4, 6 of 7 distinct values
    assert figures.select_deltas(avail) == [1.0, 5.0, 20.0, 100.0]
    assert figures.select_deltas([1, 10, 100]) == [1.0, 10.0, 100.0]
    assert figures.select_deltas(avail, max_n=2) == [1.0, 100.0]
    # 3 → 2 (closer than 5), 9 → 10, 1000 → 100, 11 → 10 again: dropped
    assert figures.select_deltas(avail, [3, 9, 1000, 11]) == [2.0, 10.0, 100.0]
    assert figures.select_deltas(avail, [1.5]) == [1.0]  # tie → smaller
    with pytest.raises(ValueError):
        figures.select_deltas([np.nan])


def test_middle_delta_and_delta_column():
    assert figures.middle_delta([100, 1, 10]) == 10.0
    assert figures.middle_delta([4, 3, 2, 1]) == 2.0
    full = make_frequency(seeds=(0,), modes=("ce",), n_epochs=1)
    assert figures.delta_column(full) == "delta_rel"
    assert figures.delta_column(full.assign(delta_rel=np.nan)) == "delta"
    assert figures.delta_column(full.drop(columns="delta_rel")) == "delta"


def test_ratio_difference_by_hand():
    rows = [
        # mode, seed, epoch, delta, ratio
        ("ce", 0, 1, 1.0, 0.50),
        ("ce", 1, 1, 1.0, 0.60),
        ("ce", 0, 2, 1.0, 0.40),
        ("self_distill", 0, 1, 1.0, 0.55),
        ("self_distill", 1, 1, 1.0, 0.70),
        ("self_distill", 0, 2, 1.0, 0.45),
        ("self_distill", 2, 1, 1.0, 0.99),  # seed 2 has no ce run: dropped
        ("bootstrap_hard", 0, 1, 1.0, 0.30),
    ]
    df = pd.DataFrame(rows, columns=["mode", "seed", "epoch", "delta", "ratio"])
    diff = figures.ratio_difference(df, "delta")
    got = {(r.mode, r.seed, r.epoch): r.diff for r in diff.itertuples()}
    expected = {
        ("self_distill", 0, 1): 0.05,
        ("self_distill", 1, 1): 0.10,
        ("self_distill", 0, 2): 0.05,
        ("bootstrap_hard", 0, 1): -0.20,
    }
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k] == pytest.approx(v)
    # mean over seeds at epoch 1 for self_distill: (0.05 + 0.10) / 2
    sd1 = diff[(diff["mode"] == "self_distill") & (diff["epoch"] == 1)]["diff"].mean()
    assert sd1 == pytest.approx(0.075)
    assert figures.ratio_difference(df[df["mode"] != "ce"], "delta").empty


def test_label_reference_counts_each_seed_once():
    freq = make_frequency(seeds=(0, 1), modes=MODES, n_epochs=2)
    ref = figures.label_reference(freq, "delta_rel")
    clean = ref[(ref["source"] == "labels_clean") & (ref["delta_rel"] == 0.5)]["ratio"].item()
    # seed s, delta 10: 0.6 - 0.01 * 1 + 0.01 * s, averaged over s = 0, 1
    assert clean == pytest.approx(0.6 - 0.01 + 0.005)
    assert len(ref) == 2 * len(DELTAS)


def test_modes_order_and_palette():
    assert figures.ordered_modes(["bootstrap_hard", "zz", "ce", "aa"]) == [
        "ce",
        "bootstrap_hard",
        "aa",
        "zz",
    ]
    assert figures.ordered_modes(["ce", "self_distill"], ["self_distill", "ce"]) == [
        "self_distill",
        "ce",
    ]
    full = figures.mode_palette(figures.MODE_ORDER)
    assert figures.mode_palette(["bootstrap_hard"])["bootstrap_hard"] == full["bootstrap_hard"]
    assert len(set(full.values())) == len(figures.MODE_ORDER)
    assert "new_mode" in figures.mode_palette(["new_mode"])


def test_figure_step_does_not_import_the_planner():
    """The figure jobs run without selfdistill.planning (the planner), so editing it reruns no figure."""
    import subprocess
    import sys

    code = "import sys, selfdistill.figures; sys.exit('selfdistill.planning' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_figures_without_validation_split(tmp_path):
    """val_fraction 0: no early-stopping epoch to mark; the history figures still draw (test curves only)."""
    hist = make_histories().assign(val_acc=np.nan, val_loss=np.nan)
    path = tmp_path / "hist.csv"
    hist.to_csv(path, index=False)
    points = figures.early_stop_points(pd.read_csv(path), "test_acc")
    assert points["early_stop_epoch"].isna().all()
    for name, plot in (("acc", figures.plot_accuracy), ("loss", figures.plot_loss), ("mem", figures.plot_memorization)):
        out = tmp_path / name / "figure.png"
        plot(path, out)
        assert_png(out)
