"""What a person sees: the console of a small study and its Snakemake report, rendered by a real headless browser.

A study of two noise settings (the smoke config, one seed) runs end to end; its console must name each training
run with its progress and point at the summaries, and `snakemake --report` must open on a landing page with the
study's question, its config and a rounded summary table, with the summaries grouped by noise setting. The report
is a JavaScript application, so it is checked in Chromium's DOM after its scripts ran
(tests/browser/ensure_chromium.sh installs Debian's chromium when missing). Skipped where no browser can be had,
and failing instead when SELFDISTILL_REQUIRE_BROWSER=1 (as in CI).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from test_workflow import REPO, SMOKE, snakemake

from selfdistill.planning import noise_settings

pytestmark = pytest.mark.workflow

ENSURE = REPO / "tests" / "browser" / "ensure_chromium.sh"
# ensure_chromium.sh's exit status when this machine cannot get a browser at all
CANNOT_HOST = 77
TITLE = "Self-distillation vs early stopping on noisy labels"
# after the report's own scripts have run, follow the landing page's link to the Summary category
FOLLOW_SUMMARY_LINK = """<script>window.addEventListener("load", () => setTimeout(() => {
  document.querySelector("a[href*=\\"showCategory('Summary')\\"]").click();
}, 100));</script>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    """The path of a headless-capable Chromium (installed with apt-get when missing)."""
    found = subprocess.run(["bash", str(ENSURE)], check=False, capture_output=True, text=True, timeout=900)
    reason = (found.stderr.strip().splitlines() or ["no message"])[-1]
    if found.returncode == CANNOT_HOST:
        if os.environ.get("SELFDISTILL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SELFDISTILL_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    if found.returncode != 0:
        pytest.fail(f"no usable chromium:\n{found.stdout}\n{found.stderr}")
    return found.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, dict, str]:
    """The smoke study with a second noise setting and one seed, run once: (workdir, config, console output)."""
    workdir = tmp_path_factory.mktemp("report")
    config = yaml.safe_load(SMOKE.read_text())
    config["noise"] = [{"type": "pair", "rate": 0.4}, {"type": "symmetric", "rate": 0.2}]
    config["seeds"] = [0]
    configfile = workdir / "study.yaml"
    configfile.write_text(yaml.safe_dump(config))
    run = snakemake(workdir, configfile=configfile)
    return workdir, config, run.stdout + run.stderr


def dom(chromium: str, page: Path, tmp_path: Path) -> str:
    """``page`` as Chromium's DOM after its scripts ran (file URL, headless, no network)."""
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0 and "<body" in result.stdout, result.stderr[-2000:]
    return result.stdout


def test_console_names_runs_and_points_at_the_summaries(study):
    workdir, config, console = study
    assert "Shell command: None" not in console
    # these jobs are one line each (their message), not a block listing every library file they depend on
    assert not re.search(
        r"^(local)?rule (corrupt|train|frequency|aggregate|aggregate_frequency|all):", console, re.MULTILINE
    )
    for noise in noise_settings(config):
        for mode in config["modes"]:
            run = f"{config['study']}/{noise}/seed0/{mode}"
            assert re.search(rf"^Job \d+: train {run} on cpu \(gpu=0, threads=1\)$", console, flags=re.MULTILINE)
            log = f"results/{config['study']}/{noise}/logs/seed0/train_{mode}.log"
            assert f"[{run}] training, 4 epochs on cpu; per-epoch log: tail -f {log}" in console
            assert re.search(rf"\[{run}\] done: 4 epochs in \d+s; test 0\.\d{{3}} at the last epoch", console)
    # the study's summary, over both noise settings
    summary = f"results/{config['study']}/summary.md"
    assert f"summary: {summary} (test accuracy %, mean ± sd over seeds)" in console
    # the table's first row
    assert (workdir / summary).read_text().splitlines()[2] in console
    assert "\nfigures and summaries in one page: snakemake --report report.html\n" in console


def test_report_opens_on_the_question_the_config_and_a_rounded_table(study, chromium, tmp_path):
    workdir, config, _ = study
    snakemake(workdir, "--report", "report.html", configfile=workdir / "study.yaml")
    landing = dom(chromium, workdir / "report.html", tmp_path)
    assert TITLE in landing and "The question." in landing
    assert "How to read this report" in landing and "The configuration of this study" in landing
    # the config rendered from `config`: model width 64, 4 epochs, both noise settings
    assert re.search(r"width <tt[^>]*>64</tt>", landing) and re.search(r"epochs <tt[^>]*>4</tt>", landing)
    assert "pair rate 0.4" in landing and "symmetric rate 0.2" in landing
    # one rounded table per noise setting, on the landing page itself
    tables = re.findall(r'<table class="selfdistill-summary">.*?</table>', landing, flags=re.DOTALL)
    assert len(tables) == 2
    for table, noise in zip(tables, sorted(noise_settings(config)), strict=True):
        assert f"digits / {noise}" in table
        rows = re.findall(r"<tr><td>(\w+)</td>(.*?)</tr>", table)
        assert [mode for mode, _ in rows] == config["modes"]
        for _, cells in rows:
            # one seed: no sd; every accuracy has two decimals and no cell holds a long fraction
            assert len(re.findall(r'<td class="num">\d{1,3}\.\d\d</td>', cells)) == 3, cells
            assert not re.search(r"\d\.\d{4,}", cells)
    # the landing page's Summary link leads to the summaries, grouped by noise setting
    page = (workdir / "report.html").read_text()
    at = page.rindex("</body>")
    (tmp_path / "report_summary.html").write_text(page[:at] + FOLLOW_SUMMARY_LINK + page[at:])
    summary_view = dom(chromium, tmp_path / "report_summary.html", tmp_path)
    # the menu (left of the content): breadcrumbs end at Summary, then one folder per noise setting
    menu = summary_view[summary_view.index("<nav") : summary_view.index('<div class="grow flex items-center')]
    assert '>Summary</a></li><li class="flex-0">' in menu
    assert re.findall(r"<span>([^<]+)</span></a></li>", menu) == sorted(noise_settings(config)), menu[-3000:]
