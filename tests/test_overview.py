"""Tests of the study-level summary (selfdistill.overview) and of the published-number table
(selfdistill.published) on hand-built per-setting summaries."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from selfdistill import overview as ov
from selfdistill import published as pub

MODES = ("ce", "self_distill")


def setting_table(dataset, variant, noise, shift=0.0, early=0.70):
    """A per-setting summary with the columns of aggregate.summarise; accuracies shifted by ``shift``."""
    rows = []
    for i, mode in enumerate(MODES):
        rows.append(
            {
                "dataset": dataset, "noise": noise, "mode": mode, "n_seeds": 3,
                "last_mean": 0.60 + 0.1 * i + shift, "last_sd": 0.01, "early_stop_mean": early + shift,
                "early_stop_sd": 0.02, "early_stop_epoch_mean": 10.0, "oracle_mean": 0.80 + shift, "oracle_sd": 0.01,
                "oracle_epoch_mean": 12.0, "last_minus_ce_early_n_pairs": 3,
                "last_minus_ce_early_mean": 0.60 + 0.1 * i - early, "last_minus_ce_early_ci95_low": -0.2 + 0.1 * i,
                "last_minus_ce_early_ci95_high": -0.05 + 0.1 * i,
                "last_minus_ce_early_verdict": "difference found (lower)" if i == 0 else "no difference detected",
                "last_minus_ce_oracle_n_pairs": 3, "last_minus_ce_oracle_mean": -0.2 + 0.1 * i,
                "last_minus_ce_oracle_ci95_low": -0.25 + 0.1 * i, "last_minus_ce_oracle_ci95_high": -0.15 + 0.1 * i,
                "last_minus_ce_oracle_verdict": "difference found (lower)",
                "n_collapsed_last": 0, "n_collapsed_early_stop": i, "collapsed": "",
            }
        )  # fmt: skip
    return pd.DataFrame(rows).assign(variant=variant)


def study_tables(dataset="digits"):
    return [
        setting_table(dataset, variant, noise, shift)
        for variant in ("base", "wide")
        for noise, shift in (("pair40", 0.0), ("sym20", 0.1))
    ]


# ----------------------------------------------------------------------------------------------------------------
# Published numbers
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("noise", "expected"),
    [
        ("sym40", {"81.88 ± 0.29", "79.90 / 64.79"}),
        # nearest rate: 40%
        ("sym50", {"81.88 ± 0.29", "79.90 / 64.79"}),
        ("sym20", {"81.88 ± 0.29", "79.90 / 64.79"}),
        ("asym40", {"80.11 ± 1.44", "85.22 / 77.04"}),
        ("pair40", {"49.50 ± 0.42"}),
        ("human_worse", {"77.69 ± 1.55"}),
        ("human_aggre", {"87.77 ± 0.38"}),
        ("none", set()),
    ],
)
def test_published_numbers_match_dataset_type_and_nearest_rate(noise, expected):
    assert {p.accuracy for p in pub.matching("cifar10", noise)} == expected


def test_no_published_numbers_for_digits_or_cifar100():
    assert pub.matching("digits", "sym40") == [] and pub.matching("cifar100", "sym40") == []
    assert pub.published_cell("digits", "pair40") == ""


def test_published_cell_names_source_recipe_and_a_different_rate():
    cell = pub.published_cell("cifar10", "pair40")
    assert "49.50 ± 0.42" in cell and "Co-teaching" in cell and "Table 5" in cell and "at 45% noise" in cell
    same_rate = pub.published_cell("cifar10", "sym40")
    assert "ELR paper" in same_rate and "ResNet-34" in same_rate and "BadLabels" in same_rate
    assert "at 40% noise" not in same_rate


def test_parse_noise_name():
    assert pub.parse_noise_name("sym40") == ("symmetric", 0.4, None)
    assert pub.parse_noise_name("asym12.5") == ("asymmetric", 0.125, None)
    assert pub.parse_noise_name("human_worse") == ("human", None, "worse")
    with pytest.raises(ValueError):
        pub.parse_noise_name("weird")


# ----------------------------------------------------------------------------------------------------------------
# Study summary
# ----------------------------------------------------------------------------------------------------------------


def test_study_summary_keeps_every_setting_and_variant_in_order():
    study = ov.study_summary(study_tables())
    # digits: no published column
    assert study.columns.tolist() == [*ov.STUDY_COLUMNS, "collapsed"]
    assert list(zip(study["variant"], study["noise"], study["mode"], strict=True))[:3] == [
        ("base", "pair40", "ce"),
        ("base", "pair40", "self_distill"),
        ("base", "sym20", "ce"),
    ]
    assert len(study) == 8 and study.loc[2, "last_mean"] == pytest.approx(0.70)


def test_study_summary_needs_tagged_tables():
    untagged = setting_table("digits", "base", "pair40").drop(columns="variant")
    with pytest.raises(ValueError, match="variant"):
        ov.study_summary([untagged])
    mixed = pd.concat([setting_table("digits", "a", "pair40"), setting_table("digits", "b", "pair40")])
    with pytest.raises(ValueError, match="exactly one variant"):
        ov.study_summary([mixed])


def test_cifar_study_gets_published_numbers_on_the_ce_rows_of_the_markdown():
    study = ov.study_summary(study_tables("cifar10"))
    assert "published_ce" in study.columns
    assert all("Co-teaching" in cell for cell in study.loc[study["noise"] == "pair40", "published_ce"])
    md = ov.study_markdown(study)
    ce_line = next(line for line in md.splitlines() if "| base | pair40 | ce |" in line)
    sd_line = next(line for line in md.splitlines() if "| base | pair40 | self_distill |" in line)
    assert "Co-teaching" in ce_line and "Co-teaching" not in sd_line


def test_study_markdown_numbers_and_interval():
    md = ov.study_markdown(ov.study_summary(study_tables()))
    line = next(line for line in md.splitlines() if "| base | pair40 | ce |" in line)
    # last 60.00 ± 1.00, early 70.00 ± 2.00, oracle 80.00 ± 1.00, difference -10.00 [-20.00, -5.00]
    assert "| 60.00 ± 1.00 | 70.00 ± 2.00 | 80.00 ± 1.00 | -10.00 [-20.00, -5.00] | difference found (lower) |" in line
    assert "| -20.00 [-25.00, -15.00] | difference found (lower) | 0 |" in line
    sd_line = next(line for line in md.splitlines() if "| base | pair40 | self_distill |" in line)
    assert sd_line.endswith("| 1 of 3 (early-stopped) |")
    assert "95% t-interval over seeds" in md and "conservative" in md


def test_study_without_variants_has_no_variant_column():
    study = ov.study_summary([setting_table("digits", "", "pair40")])
    head, _, first = ov.study_markdown(study).splitlines()[:3]
    assert head.startswith("| noise | mode |") and first.startswith("| pair40 | ce |")


def test_study_without_validation_split_shows_no_numbers():
    tables = [t.assign(early_stop_mean=math.nan, last_minus_ce_early_mean=math.nan,
                       last_minus_ce_early_ci95_low=math.nan, last_minus_ce_early_ci95_high=math.nan,
                       last_minus_ce_early_verdict="no validation split") for t in study_tables()]  # fmt: skip
    md = ov.study_markdown(ov.study_summary(tables))
    assert "| — | no validation split |" in md


def test_write_study_summary_and_overview_figure(tmp_path):
    paths, settings = [], []
    for i, table in enumerate(study_tables()):
        path = tmp_path / f"summary{i}.csv"
        table.drop(columns="variant").to_csv(path, index=False)
        paths.append(path)
        settings.append({"variant": table["variant"].iloc[0], "noise": table["noise"].iloc[0]})
    out = tmp_path / "study"
    study = ov.write_study_summary(paths, settings, out / "summary.csv", out / "summary.md", out / "overview.png")
    assert sorted(p.name for p in out.iterdir()) == [".summary.csv.sha256", "overview.png", "summary.csv", "summary.md"]
    assert (out / "overview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pd.read_csv(out / "summary.csv").shape == study.shape


def test_overview_figure_without_early_stopping(tmp_path):
    study = ov.study_summary([t.assign(early_stop_mean=math.nan, last_sd=math.nan) for t in study_tables()])
    ov.overview_figure(study, tmp_path / "overview.png")
    assert (tmp_path / "overview.png").stat().st_size > 0


def test_one_seed_draws_no_error_bar(tmp_path, monkeypatch):
    """With one seed the sd is undefined: the overview draws the point alone, not a zero-length bar."""
    import matplotlib.axes

    bars = []
    original = matplotlib.axes.Axes.errorbar

    def spy(self, *args, **kwargs):
        bars.append(kwargs.get("yerr"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", spy)
    study = ov.study_summary([t.assign(n_seeds=1, last_sd=math.nan) for t in study_tables()])
    ov.overview_figure(study, tmp_path / "overview.png")
    assert bars and all(yerr is None for yerr in bars)
