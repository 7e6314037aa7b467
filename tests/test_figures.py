"""Tests for selfdistill.figures: every figure renders a valid PNG atomically; the number helpers are right."""

from __future__ import annotations

from pathlib import Path

import matplotlib.figure
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer

from selfdistill import figures
from selfdistill.figure_table import (
    FIGURE_TABLE,
    FREQUENCY,
    HISTORIES,
    MEMORISATION,
    SPECTRUM,
    SPECTRUM_CONVERGENCE,
    SPECTRUM_ENERGY,
    ReportCaption,
)
from selfdistill.spectrum_stats import convergence_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODES = ("ce", "self_distill", "bootstrap_soft")
# (delta, delta_rel)
DELTAS = ((1.0, 0.1), (10.0, 0.5), (100.0, 2.0))


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


def make_spectrum(seeds=(0, 1), modes=MODES, n_epochs=6, bands=4, **_) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Synthetic spectrum and energy tables: band b's error falls from 1 with time constant b epochs (low first)."""
    base = {"dataset": "cifar10", "noise": "pair40", "space": "input", "delta_config": 0.1, "delta": 5.0}
    rows, energy = [], []
    for seed in seeds:
        for mode in modes:
            for band in range(1, bands + 1):
                energy.append(
                    dict(base, seed=seed, mode=mode, band=band, eig_max=1.0 / band, eig_min=0.5 / band)
                    | {"clean_share": 0.6 / band, "noise_share": 0.1 * band}
                )
                for epoch in range(1, n_epochs + 1):
                    for target in ("noisy", "clean"):
                        err = np.exp(-(epoch - 1) / (band + 0.3 * seed)) + (0.3 if target == "clean" else 0.0)
                        rows.append(
                            dict(base, seed=seed, mode=mode, band=band, eig_max=1.0 / band, eig_min=0.5 / band)
                            | {"epoch": epoch, "target": target, "rel_error": err}
                        )
    return pd.DataFrame(rows), pd.DataFrame(energy)


def make_memorisation(seeds=(0, 1), modes=MODES, **_) -> pd.DataFrame:
    """Synthetic per-(run, quintile) memorisation table: ce memorises more, rising with agreement."""
    rows = []
    for seed in seeds:
        for mode in modes:
            for q in range(1, 6):
                level = 0.5 + 0.08 * q if mode == "ce" else 0.1 + 0.03 * q
                rows.append(
                    {
                        "dataset": "cifar10",
                        "noise": "pair40",
                        "seed": seed,
                        "mode": mode,
                        "delta_config": 0.05,
                        "quintile": q,
                        "n": 20,
                        "agreement_mean": 0.2 * q - 0.1,
                        "share_memorised": level + 0.02 * seed,
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
        spectrum, energy = make_spectrum(**kw)
        spectrum.to_csv(folder / SPECTRUM, index=False)
        energy.to_csv(folder / SPECTRUM_ENERGY, index=False)
        convergence_table(spectrum).to_csv(folder / SPECTRUM_CONVERGENCE, index=False)
        make_memorisation(**kw).to_csv(folder / MEMORISATION, index=False)
        return h, f

    return write


# every figure of a setting
ALL_FIGURES = tuple(entry.name for entry in FIGURE_TABLE)
ENTRIES = {entry.name: entry for entry in FIGURE_TABLE}
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
    hist, _ = csvs(variant, **options)
    for name in names:
        out = tmp_path / f"out_{variant}_{name}" / f"{name}.png"
        source = hist.parent / ENTRIES[name].table
        figures.plotter(ENTRIES[name].plotter)(source, out)
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
        # tie with epoch 2: earliest wins
        ("ce", 0, 3, 0.7, 0.50),
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
    # tie → smaller
    assert figures.select_deltas(avail, [1.5]) == [1.0]
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
        # seed 2 has no ce run: dropped
        ("self_distill", 2, 1, 1.0, 0.99),
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


# --------------------------------------------------------------------------------------------------------------
# what the newer figures draw, on small hand-built tables
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def drawn(monkeypatch):
    """Keep the figures a plotter saves (``_save`` still writes the PNG); returns the list they are appended to."""
    kept = []
    save = figures._save

    def keep(fig, out_png):
        kept.append(fig)
        save(fig, out_png)

    monkeypatch.setattr(figures, "_save", keep)
    return kept


def line(ax, label):
    """(x, y) of the one line labelled ``label`` in ``ax``."""
    (hit,) = [ln for ln in ax.lines if ln.get_label() == label]
    return hit.get_xdata().astype(float).tolist(), hit.get_ydata().astype(float).tolist()


def freq_rows(rows):
    """A frequency table from (seed, mode, split, source, epoch, delta_rel, ratio, e_high_clean) tuples."""
    cols = ["seed", "mode", "split", "source", "epoch", "delta_rel", "ratio", "e_high_clean"]
    df = pd.DataFrame(rows, columns=cols).assign(dataset="digits", noise="pair40")
    df["delta"] = 10 * df["delta_rel"]
    for col in ("e_low_noisy", "e_high_noisy", "e_low_clean"):
        df[col] = 0.5
    return df


def test_frequency_by_delta_draws_last_epoch_means_and_label_references(tmp_path, drawn):
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.1)):
        for mode, level in (("ce", 0.3), ("self_distill", 0.5)):
            for rel in (0.1, 1.0):
                for split in ("train_subset", "test"):
                    # epoch 1: not plotted
                    rows.append((seed, mode, split, "probs", 1, rel, 0.9, 0.5))
                    rows.append((seed, mode, split, "probs", 2, rel, level + shift + rel, 0.5))
                    rows.append((seed, mode, split, "labels_clean", np.nan, rel, 0.8 + seed * 0.02, np.nan))
                rows.append((seed, mode, "train_subset", "labels_noisy", np.nan, rel, 0.4, np.nan))
    path = tmp_path / "freq.csv"
    freq_rows(rows).to_csv(path, index=False)
    out = tmp_path / "out" / "by_delta.png"
    figures.plot_frequency_by_delta(path, out)
    assert_png(out)
    (fig,) = drawn
    # one source (probs) × two splits
    assert len(fig.axes) == 2
    train, test = fig.axes
    assert [ax.get_title() for ax in fig.axes] == [
        "training subset · softmax probabilities",
        "test split · softmax probabilities",
    ]
    assert train.get_xscale() == "log"
    # last epoch (2), mean over the two seeds: level + 0.05 + δ_rel
    assert line(train, "ce") == ([0.1, 1.0], pytest.approx([0.45, 1.35]))
    assert line(train, "self_distill") == ([0.1, 1.0], pytest.approx([0.65, 1.55]))
    # each seed once
    assert line(train, "labels_clean")[1] == pytest.approx([0.81, 0.81])
    assert line(train, "labels_noisy")[1] == pytest.approx([0.4, 0.4])
    # the test split has no noisy labels
    assert "labels_noisy" not in [ln.get_label() for ln in test.lines]
    assert all(ln.get_linestyle() == "--" for ln in train.lines if ln.get_label().startswith("labels_"))


def test_last_epoch_rows_per_run():
    rows = [
        (0, "ce", "train_subset", "probs", 3, 1.0, 0.1, 0.5),
        (0, "ce", "train_subset", "probs", 5, 1.0, 0.2, 0.5),
        # a run stopped at epoch 4 keeps its epoch 4
        (1, "ce", "train_subset", "probs", 4, 1.0, 0.3, 0.5),
        (0, "ce", "train_subset", "labels_clean", np.nan, 1.0, 0.9, np.nan),
    ]
    last = figures.last_epoch_rows(freq_rows(rows))
    assert sorted(zip(last["seed"], last["epoch"], last["ratio"], strict=True)) == [(0, 5, 0.2), (1, 4, 0.3)]


def test_frequency_clean_vs_noisy_draws_both_targets(tmp_path, drawn):
    freq = make_frequency(seeds=(0, 1), modes=("ce", "self_distill"), n_epochs=4)
    path = tmp_path / "freq.csv"
    freq.to_csv(path, index=False)
    out = tmp_path / "out" / "clean_vs_noisy.png"
    # nearest δ_rel: 0.5
    figures.plot_frequency_clean_vs_noisy(path, out, delta=0.4)
    assert_png(out)
    (fig,) = drawn
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "e_low against the NOISY labels",
        "e_low against the CLEAN labels",
        "e_high against the NOISY labels",
        "e_high against the CLEAN labels",
    ]
    assert "δ_rel = 0.5" in fig._suptitle.get_text()
    t = np.arange(1, 5) / 4
    by_title = dict(zip(titles, fig.axes, strict=True))
    x, y = line(by_title["e_high against the NOISY labels"], "ce")
    assert x == [1, 2, 3, 4] and y == pytest.approx(1.0 - 0.7 * t)
    assert line(by_title["e_high against the NOISY labels"], "self_distill")[1] == pytest.approx(1.0 - 0.2 * t)
    assert line(by_title["e_high against the CLEAN labels"], "ce")[1] == pytest.approx(0.9 - 0.1 * t)
    assert line(by_title["e_low against the CLEAN labels"], "self_distill")[1] == pytest.approx(0.7 * (1 - t) + 0.1)
    legend = [txt.get_text() for txt in by_title["e_high against the NOISY labels"].get_legend().get_texts()]
    assert legend == ["ce: 0.30", "self_distill: 0.80"]


def hand_histories(with_val=True) -> pd.DataFrame:
    """Two modes × two seeds × three epochs with known last / early-stopped / oracle test accuracies."""
    rows = [
        # mode, seed, epoch, val_acc, test_acc
        ("ce", 0, 1, 0.5, 0.60),
        # early stop (best val) and oracle
        ("ce", 0, 2, 0.7, 0.80),
        # last
        ("ce", 0, 3, 0.6, 0.50),
        # early stop
        ("ce", 1, 1, 0.8, 0.70),
        # oracle
        ("ce", 1, 2, 0.6, 0.90),
        ("ce", 1, 3, 0.5, 0.40),
        ("self_distill", 0, 1, 0.5, 0.70),
        ("self_distill", 0, 2, 0.6, 0.75),
        ("self_distill", 0, 3, 0.7, 0.80),
        ("self_distill", 1, 1, 0.5, 0.72),
        ("self_distill", 1, 2, 0.6, 0.78),
        ("self_distill", 1, 3, 0.7, 0.76),
    ]
    df = pd.DataFrame(rows, columns=["mode", "seed", "epoch", "val_acc", "test_acc"])
    df = df.assign(dataset="digits", noise="pair40")
    return df if with_val else df.drop(columns="val_acc")


def bars(fig) -> dict[str, list[float]]:
    """Bar heights per protocol (the bar container's label)."""
    (ax,) = fig.axes
    return {c.get_label(): list(c.datavalues) for c in ax.containers if isinstance(c, BarContainer)}


def test_accuracy_bars_heights_are_per_seed_means(tmp_path, drawn):
    path = tmp_path / "hist.csv"
    hand_histories().to_csv(path, index=False)
    out = tmp_path / "out" / "bars.png"
    figures.plot_accuracy_bars(path, out)
    assert_png(out)
    (fig,) = drawn
    got = bars(fig)
    assert list(got) == ["last epoch", "early-stopped (best noisy val)", "oracle (best test epoch)"]
    # ce, self_distill (in percent)
    assert got["last epoch"] == pytest.approx([45.0, 78.0])
    assert got["early-stopped (best noisy val)"] == pytest.approx([75.0, 78.0])
    assert got["oracle (best test epoch)"] == pytest.approx([85.0, 79.0])
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ce", "self_distill"]
    ce_line = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    # early-stopped ce
    assert ce_line and ce_line[0].get_ydata()[0] == pytest.approx(75.0)
    seeds = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections if len(c.get_offsets()) == 2])
    assert sorted(seeds) == pytest.approx(sorted([50, 40, 80, 76, 80, 70, 80, 76, 80, 90, 80, 78]))


def test_accuracy_bars_without_validation_split(tmp_path, drawn):
    path = tmp_path / "hist.csv"
    hand_histories(with_val=False).to_csv(path, index=False)
    out = tmp_path / "out" / "bars.png"
    figures.plot_accuracy_bars(path, out, mode_order=["self_distill", "ce"])
    assert_png(out)
    (fig,) = drawn
    got = bars(fig)
    assert list(got) == ["last epoch", "oracle (best test epoch)"]
    # mode_order kept
    assert got["last epoch"] == pytest.approx([78.0, 45.0])
    assert "no validation split" in fig._suptitle.get_text()
    (ax,) = fig.axes
    assert not [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    # an empty val_acc column (val_fraction 0 in the pipeline) is the same as none
    empty = tmp_path / "hist_empty.csv"
    hand_histories().assign(val_acc=np.nan).to_csv(empty, index=False)
    assert set(figures.accuracy_protocols(pd.read_csv(empty))["protocol"]) == {
        "last epoch",
        "oracle (best test epoch)",
    }


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


# --------------------------------------------------------------------------------------------------------------
# the figure table (selfdistill.figure_table) and the plotters agree
# --------------------------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def _default_config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_every_table_entry_has_its_plotter_with_its_options():
    """Each figure's plotter exists in selfdistill.figures, reads the table the entry names and takes its options."""
    import inspect

    config = _default_config()
    first_argument = {
        HISTORIES: "histories_csv",
        FREQUENCY: "frequency_csv",
        SPECTRUM: "spectrum_csv",
        SPECTRUM_ENERGY: "spectrum_energy_csv",
        SPECTRUM_CONVERGENCE: "spectrum_convergence_csv",
        MEMORISATION: "memorisation_csv",
    }
    for entry in FIGURE_TABLE:
        params = inspect.signature(figures.plotter(entry.plotter)).parameters
        assert list(params)[:2] == [first_argument[entry.table], "out_png"], entry.name
        assert set(entry.plot_options(config)) <= set(params), entry.name


def test_every_plotter_draws_a_figure_of_the_table():
    assert set(figures.PLOTTERS) == {entry.plotter for entry in FIGURE_TABLE}
    assert len(ALL_FIGURES) == len(set(ALL_FIGURES))
    with pytest.raises(ValueError, match="unknown plotter 'plot_nothing'"):
        figures.plotter("plot_nothing")


def test_figures_render_with_the_options_of_the_default_study(csvs, tmp_path):
    hist, _ = csvs()
    config = _default_config()
    for entry in FIGURE_TABLE:
        out = tmp_path / entry.name / f"{entry.name}.png"
        figures.plot(entry.plotter, hist.parent / entry.table, out, **entry.plot_options(config))
        assert_png(out)


def test_plot_options_keep_the_mode_order_first():
    """Their order is part of the figure rule's recorded parameters: reordering them would rerun every figure."""
    config = _default_config()
    options = {entry.name: entry.plot_options(config) for entry in FIGURE_TABLE}
    assert options["accuracy"] == {"mode_order": config["modes"]}
    assert list(options["frequency_ratio"]) == ["mode_order", "deltas", "source"]
    assert options["frequency_ratio"]["deltas"] == config["frequency"]["plot_deltas"]
    assert options["frequency_error"] == {"mode_order": config["modes"], "delta": 0.2, "source": "probs"}
    config["frequency"].update(sources=["logits"], plot_deltas=[])
    assert ENTRIES["frequency_ratio"].plot_options(config)["deltas"] is None
    assert ENTRIES["frequency_clean_vs_noisy"].plot_options(config)["source"] == "logits"


def test_captions_follow_the_config():
    config = _default_config()
    captions = {entry.name: entry.report_caption(config) for entry in FIGURE_TABLE}
    # not a string: Snakemake does not record it among the parameters, so a reworded caption reruns nothing
    assert all(isinstance(c, ReportCaption) and not isinstance(c, str) for c in captions.values())
    assert all(c.text and "{" not in c.text and not c.text.startswith(" ") for c in captions.values())
    assert "network's softmax outputs against" in captions["frequency_error"].text
    assert "no validation split" not in captions["accuracy_bars"].text
    config["frequency"]["sources"] = ["logits"]
    config["val_fraction"] = 0
    assert "network's logits against" in ENTRIES["frequency_error"].report_caption(config).text
    assert ENTRIES["accuracy_bars"].report_caption(config).text.endswith("no early-stopped reference line.")


def test_spectrum_figures_draw_the_means(tmp_path, drawn):
    """The noise spectrum's bars are the seeds' mean shares; the heat maps hold the seeds' mean errors per band and
    epoch; the convergence curves are the seeds' mean epochs per band."""
    spectrum, energy = make_spectrum(seeds=(0, 1), modes=("ce", "self_distill"), n_epochs=5, bands=3)
    paths = {name: tmp_path / f"{name}.csv" for name in ("spectrum", "energy", "convergence")}
    spectrum.to_csv(paths["spectrum"], index=False)
    energy.to_csv(paths["energy"], index=False)
    conv = convergence_table(spectrum)
    conv.to_csv(paths["convergence"], index=False)
    figures.plot_noise_spectrum(paths["energy"], tmp_path / "a" / "noise.png")
    figures.plot_spectrum_error(paths["spectrum"], tmp_path / "b" / "error.png")
    figures.plot_spectrum_convergence(paths["convergence"], tmp_path / "c" / "conv.png")
    noise_fig, error_fig, conv_fig = drawn
    heights = sorted(round(p.get_height(), 6) for p in noise_fig.axes[0].patches if p.get_height() > 0)
    want = sorted(round(v, 6) for v in [0.6, 0.3, 0.2, 0.1, 0.2, 0.3])
    assert heights == want
    # the first heat map (noisy targets, ce): rows bands, columns epochs
    mesh = error_fig.axes[0].collections[0].get_array().reshape(3, 5)
    mean = spectrum[(spectrum["mode"] == "ce") & (spectrum["target"] == "noisy")]
    mean = mean.groupby(["band", "epoch"])["rel_error"].mean().unstack().to_numpy()
    np.testing.assert_allclose(mesh, mean)
    ax = conv_fig.axes[0]
    rows = conv[(conv["mode"] == "ce") & (conv["target"] == "noisy") & (conv["q"] == 0.5)]
    label = next(ln.get_label() for ln in ax.lines if ln.get_label().startswith("ce"))
    _, ys = line(ax, label)
    assert ys == pytest.approx(rows.groupby("band")["epoch"].mean().tolist())


def test_memorisation_by_agreement_draws_seed_means_and_intervals(tmp_path, drawn):
    table = make_memorisation(seeds=(0, 1, 2), modes=("ce", "self_distill"))
    # one seed's empty quintile is left out of that quintile's mean and interval
    table.loc[
        (table["seed"] == 2) & (table["mode"] == "self_distill") & (table["quintile"] == 1), "share_memorised"
    ] = np.nan
    path = tmp_path / MEMORISATION
    table.to_csv(path, index=False)
    figures.plot_memorisation_by_agreement(path, tmp_path / "fig" / "m.png", mode_order=["self_distill", "ce"])
    assert_png(tmp_path / "fig" / "m.png")
    (fig,) = drawn
    ax = fig.axes[0]
    x, y = line(ax, "ce")
    assert x == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(y, [100 * (0.5 + 0.08 * q + 0.02) for q in range(1, 6)])
    _, y = line(ax, "self_distill")
    assert y[0] == pytest.approx(100 * (0.13 + 0.01))
    bands = figures.interval_by(
        table[table["mode"] == "ce"].assign(v=lambda d: 100 * d["share_memorised"]), "quintile", "v"
    )
    half = 4.302652729911275 * 2.0 / np.sqrt(3)
    np.testing.assert_allclose(bands["high"] - bands["mean"], half)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["self_distill", "ce"]
