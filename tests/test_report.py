"""What a person sees: the console of a small study and its Snakemake report, rendered by a real headless browser.

A study of two noise settings (the smoke config, one seed) runs end to end; its console must name each training
run with its progress and point at the summaries, and `snakemake --report` must open on a landing page with the
study's question, its config and a rounded summary table, with the summaries grouped by noise setting. The report
is a JavaScript application, so it is checked in Chromium's DOM after its scripts ran
(tests/browser/ensure_chromium.sh installs Debian's chromium when missing). Skipped where no browser can be had,
and failing instead when SELFDISTILL_REQUIRE_BROWSER=1 (as in CI).
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import HEADLESS_CHROMIUM, REPO, SMOKE, snakemake

from selfdistill.planning import noise_settings

# starts Snakemake and a browser
pytestmark = [pytest.mark.workflow, pytest.mark.slow]

ENSURE = REPO / "tests" / "browser" / "ensure_chromium.sh"
# ensure_chromium.sh's exit status when this machine cannot get a browser at all
CANNOT_HOST = 77
TITLE = "Self-distillation vs early stopping on noisy labels"
# after the report's own scripts have run, follow the landing page's link to the Summary category
FOLLOW_SUMMARY_LINK = """<script>window.addEventListener("load", () => setTimeout(() => {
  document.querySelector("a[href*=\\"showCategory('Summary')\\"]").click();
}, 100));</script>"""
# after the report's own scripts have run and the workflow graph is drawn, the boxes (left, top, right, bottom in
# CSS pixels of the viewport) of what the landing page shows first, and whether the cells of the summary table's
# header and first row are the topmost element at their centre (not covered by the graph or the menu), written
# into the page as JSON for --dump-dom to carry out
MEASURE_LANDING = """<script>window.addEventListener("load", () => {
  let tries = 0;
  const measure = () => {
    const graph = document.querySelector("#rulegraph canvas, #rulegraph svg");
    if (!graph && tries++ < 100) return setTimeout(measure, 100);
    const box = (el) => {
      if (!el) return null;
      const r = el.getBoundingClientRect();
      return [r.left, r.top, r.right, r.bottom];
    };
    const text = document.querySelector(".prose");
    const table = text.querySelector("table.selfdistill-summary");
    const wrapper = table && table.parentElement;
    const scrolls = wrapper && ["auto", "scroll"].includes(getComputedStyle(wrapper).overflowX);
    const clip = scrolls ? box(wrapper) : [0, 0, innerWidth, innerHeight];
    const cells = table ? [...table.rows].slice(0, 2).flatMap((row) => [...row.cells]) : [];
    const cell = (td) => {
      const [l, t, r, b] = box(td);
      const x = (l + r) / 2, y = (t + b) / 2;
      const at = document.elementFromPoint(x, y);
      return {text: td.textContent.trim().slice(0, 40), in_clip: x >= clip[0] && x <= clip[2],
              seen: !!at && td.contains(at)};
    };
    const layout = {
      viewport: [innerWidth, innerHeight], menu: box(document.querySelector("nav")), text: box(text),
      title: box(text.querySelector("h1")), question: box(text.querySelector("p")), table: box(table),
      caption: box(table && table.caption), header: box(table && table.rows[0]), first_row: box(table && table.rows[1]),
      table_scroll_box: scrolls ? box(wrapper) : null, graph: box(graph), cells: cells.map(cell),
    };
    const out = document.createElement("pre");
    out.id = "selfdistill-layout";
    out.textContent = JSON.stringify(layout);
    document.body.appendChild(out);
  };
  setTimeout(measure, 100);
});</script>"""
# a laptop's and a desktop's browser window; the page's viewport is what the browser's own bars leave of it
WINDOWS = [(1366, 768), (1920, 1080)]


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
    # its own build, not the session's smoke study: two noise settings (the report groups its summaries by setting)
    # and the console of the whole run, which the session's build does not keep
    workdir = tmp_path_factory.mktemp("report")
    config = yaml.safe_load(SMOKE.read_text())
    config["noise"] = [{"type": "pair", "rate": 0.4}, {"type": "symmetric", "rate": 0.2}]
    config["seeds"] = [0]
    configfile = workdir / "study.yaml"
    configfile.write_text(yaml.safe_dump(config))
    run = snakemake(workdir, configfile=configfile)
    return workdir, config, run.stdout + run.stderr


@pytest.fixture(scope="module")
def report(study) -> Path:
    """The study's ``snakemake --report`` page."""
    workdir, _, _ = study
    snakemake(workdir, "--report", "report.html", configfile=workdir / "study.yaml")
    return workdir / "report.html"


def with_script(page: Path, script: str, out: Path) -> Path:
    """A copy of ``page`` at ``out`` that runs ``script`` after the page's own scripts."""
    text = page.read_text()
    at = text.rindex("</body>")
    out.write_text(text[:at] + script + text[at:])
    return out


def dom(chromium: str, page: Path, tmp_path: Path, window: tuple[int, int] = (1366, 768)) -> str:
    """``page`` as Chromium's DOM after its scripts ran in a ``window`` (width, height) (file URL, headless, no
    network, a fresh profile)."""
    profile = tmp_path / f"chromium-profile-{window[0]}x{window[1]}"
    result = subprocess.run(
        [
            chromium,
            *HEADLESS_CHROMIUM,
            f"--user-data-dir={profile}",
            f"--window-size={window[0]},{window[1]}",
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
    # the report hint repeats the run's --configfile, so it reports this study, not the default one
    assert re.search(
        r"\nfigures and summaries in one page: snakemake --configfile \S+ --report report\.html\n", console
    )


def test_report_opens_on_the_question_the_config_and_a_rounded_table(study, report, chromium, tmp_path):
    _, config, _ = study
    landing = dom(chromium, report, tmp_path)
    assert TITLE in landing and "The question." in landing
    assert "How to read this report" in landing and "The configuration of this study" in landing
    # the config the results were made with (the study folder's snapshot): model width 64, 4 epochs, both noise
    # settings
    assert re.search(r"\bwidth: 64\b", landing) and re.search(r"\bepochs: 4\b", landing)
    assert re.search(r"rate: 0\.4\s+type: pair", landing) and re.search(r"rate: 0\.2\s+type: symmetric", landing)
    # one rounded table per noise setting, on the landing page itself
    tables = re.findall(r'<table class="selfdistill-summary">.*?</table>', landing, flags=re.DOTALL)
    assert len(tables) == 2
    for table, noise in zip(tables, sorted(noise_settings(config)), strict=True):
        assert f"digits / {noise}" in table
        # a collapsed mode carries its flag after its name: "self_distill (1 of 1 seeds collapsed at ...)"
        rows = re.findall(r"<tr><td>(\w+)[^<]*</td>(.*?)</tr>", table)
        assert [mode for mode, _ in rows] == config["modes"]
        for _, cells in rows:
            # one seed: no sd; every accuracy has two decimals and no cell holds a long fraction
            assert len(re.findall(r'<td class="num">\d{1,3}\.\d\d</td>', cells)) == 3, cells
            assert not re.search(r"\d\.\d{4,}", cells)
    # the landing page's Summary link leads to the summaries, grouped by noise setting
    summary_view = dom(chromium, with_script(report, FOLLOW_SUMMARY_LINK, tmp_path / "report_summary.html"), tmp_path)
    # the menu (left of the content): breadcrumbs end at Summary, then one folder per noise setting
    menu = summary_view[summary_view.index("<nav") : summary_view.index('<div class="grow flex items-center')]
    assert '>Summary</a></li><li class="flex-0">' in menu
    assert re.findall(r"<span>([^<]+)</span></a></li>", menu) == sorted(noise_settings(config)), menu[-3000:]


def inside(inner: list[float], outer: list[float], slack: float = 1.0) -> bool:
    """Whether box ``inner`` lies within box ``outer`` (boxes as left, top, right, bottom)."""
    return (
        inner[0] >= outer[0] - slack
        and inner[1] >= outer[1] - slack
        and inner[2] <= outer[2] + slack
        and inner[3] <= outer[3] + slack
    )


def overlap(a: list[float], b: list[float]) -> bool:
    """Whether boxes ``a`` and ``b`` share more than a pixel's width."""
    return min(a[2], b[2]) - max(a[0], b[0]) > 1 and min(a[3], b[3]) - max(a[1], b[1]) > 1


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: f"{w[0]}x{w[1]}")
def test_report_opens_with_title_question_and_table_in_view(report, chromium, tmp_path, window):
    """Laid out, not just present: as the report opens, its title, question and first summary table are inside the
    viewport, beside the menu, uncovered by the workflow graph, and the table is not cut at its right edge."""
    page = with_script(report, MEASURE_LANDING, tmp_path / "report_measured.html")
    found = re.search(r'<pre id="selfdistill-layout">(.*?)</pre>', dom(chromium, page, tmp_path, window), re.DOTALL)
    assert found, "the measuring script did not run"
    layout = json.loads(html.unescape(found.group(1)))
    width, height = layout["viewport"]
    assert width == window[0] and 0 < height <= window[1], layout["viewport"]
    assert layout["graph"] and layout["table"], "no workflow graph or no summary table on the landing page"
    # the view starts at the top of the page, right of the menu: the title and the question fully in view
    view = [layout["menu"][2], 0, width, height]
    for name in ("title", "question"):
        assert inside(layout[name], view), (name, layout[name], view)
    # the headline table's caption, header and first row in view
    for name in ("caption", "header", "first_row"):
        assert inside(layout[name], view), (name, layout[name], view)
    # the table (or the box it scrolls in, when the column is narrower than the table) within the text column
    table_box = layout["table_scroll_box"] or layout["table"]
    assert inside(table_box, layout["text"]), (table_box, layout["text"])
    if layout["table_scroll_box"] is None:
        assert inside(layout["table"], view), (layout["table"], view)
    # the workflow graph beside or below the text, over none of it
    assert not overlap(layout["graph"], layout["text"]), (layout["graph"], layout["text"])
    # every header and first-row cell that is not scrolled out of the table's box shows, uncovered; none scrolled
    # out unless the table has a box of its own to scroll in
    for cell in layout["cells"]:
        assert cell["seen"] if cell["in_clip"] else layout["table_scroll_box"], cell
