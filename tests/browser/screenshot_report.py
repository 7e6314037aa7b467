"""Screenshot of a Snakemake report's landing page as a browser window of a given size shows it (docs/figures/).

    python tests/browser/screenshot_report.py report.html docs/figures/report_landing.png [--size 1366x768]

Headless Chromium's window keeps room for browser bars it does not draw, so its page viewport is shorter than the
window while its screenshot has the window's height, with the page's full-height boxes ending short of the bottom.
This asks for a window taller by that difference and keeps the top ``size`` of the picture: the page as a viewport
of exactly ``size`` shows it. The browser comes from tests/browser/ensure_chromium.sh.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
# the tests' own Chromium flags (tests/helpers.py), and time for the page's scripts
sys.path.insert(0, str(HERE.parent))
from helpers import HEADLESS_CHROMIUM

FLAGS = [*HEADLESS_CHROMIUM, "--virtual-time-budget=10000"]
VIEWPORT_HEIGHT = '<script>addEventListener("load", () => document.title = "viewport " + innerHeight);</script>'


def chromium(browser: str, window: tuple[int, int], *args: str) -> str:
    """Run ``browser`` headless in a ``window`` (width, height) with a fresh profile; its stdout."""
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}", *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=180,
        )
    return run.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", default="1366x768", help="the viewport, WIDTHxHEIGHT (default 1366x768)")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    browser = subprocess.run(["bash", str(HERE / "ensure_chromium.sh")], check=True, capture_output=True, text=True)
    browser = browser.stdout.strip().splitlines()[-1]
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        page = args.report.read_text()
        at = page.rindex("</body>")
        probe.write_text(page[:at] + VIEWPORT_HEIGHT + page[at:])
        found = re.search(
            r"<title>viewport (\d+)</title>", chromium(browser, (width, height), "--dump-dom", probe.as_uri())
        )
        if not found:
            raise SystemExit("screenshot_report.py: could not measure the viewport")
        bars = height - int(found.group(1))
        shot = Path(tmp) / "shot.png"
        chromium(browser, (width, height + bars), f"--screenshot={shot}", args.report.resolve().as_uri())
        Image.open(shot).crop((0, 0, width, height)).save(args.out, optimize=True)
    print(f"{args.out}: {args.report} in a {width}x{height} viewport")


if __name__ == "__main__":
    main()
