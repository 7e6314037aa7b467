"""Checks of the documentation: a short README, links that resolve, no pointer to notes outside the repository, and
the docs/science.md sections that docstrings cite by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
MARKDOWN = [README, *DOCS]

#: Section names of docs/science.md that code docstrings point to as ``docs/science.md, "<name>"``.
SCIENCE_SECTIONS = (
    "The original study",
    "Noise models",
    "Training objectives",
    "Evaluation protocol",
    "Frequency analysis",
    "Published numbers",
)

#: Names of material outside the repository that no file may mention (built here so that this file does not).
FORBIDDEN = ("STUDY" + ".md", ".." + "/shared")
#: Folders that are not the repository's content: git's store, the study's outputs, tool state and caches.
SKIP_DIRS = {".git", "results", ".snakemake", "__pycache__", ".pytest_cache", ".ruff_cache"}
#: Larger files are data (datasets, weights), not text that could point anywhere.
MAX_SCAN_BYTES = 10_000_000

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""<(?:a|img)\s[^>]*?(?:href|src)=["']([^"']+)["']""")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
HTML_ID = re.compile(r"""<a\s[^>]*?(?:id|name)=["']([^"']+)["']""")


def _prose(text: str) -> str:
    """Markdown text without fenced code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = INLINE_CODE.sub(lambda m: m.group(0)[1:-1], heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a link may point to in a markdown file: heading slugs (with GitHub's -1, -2 for repeats), ids."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for heading in HEADING.findall(text):
        slug = base = _slug(heading)
        n = 0
        while slug in found:
            n += 1
            slug = f"{base}-{n}"
        found.add(slug)
    found.update(HTML_ID.findall(text))
    return found


def links(path: Path) -> list[str]:
    text = _prose(path.read_text(encoding="utf-8"))
    return LINK.findall(text) + HTML_LINK.findall(text)


def test_readme_is_short():
    size = README.stat().st_size
    assert size < 12_000, f"README.md is {size} bytes; keep it under 12,000 and move reference material to docs/"


def test_there_are_docs_pages():
    names = {p.name for p in DOCS}
    assert {"science.md", "outputs.md", "clusters-and-gpus.md", "benchmarks.md"} <= names


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    broken = []
    for target in links(path):
        # http:, https:, mailto:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif not dest.is_relative_to(REPO):
            broken.append(f"{target}: outside the repository")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading or id '{anchor}' in {dest.relative_to(REPO)}")
    assert not broken, f"{path.relative_to(REPO)}: " + "; ".join(broken)


def test_readme_links_every_docs_page():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README)}
    missing = [p.name for p in DOCS if p.resolve() not in linked and p.name != "summary_digits_pair40.md"]
    assert not missing, f"README.md does not link {missing}"


def _repository_files():
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts):
            continue
        if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_SCAN_BYTES:
            yield path


def test_nothing_points_outside_the_repository():
    hits = []
    for path in _repository_files():
        data = path.read_bytes()
        hits += [f"{path.relative_to(REPO)}: {name}" for name in FORBIDDEN if name.encode() in data]
    assert not hits, "mentions of material outside the repository: " + "; ".join(hits)


def test_science_has_the_cited_sections_and_references():
    headings = HEADING.findall(FENCE.sub("", (REPO / "docs" / "science.md").read_text(encoding="utf-8")))
    for name in (*SCIENCE_SECTIONS, "References"):
        assert any(name in h for h in headings), f'docs/science.md has no section "{name}"'


def test_docstrings_cite_existing_science_sections():
    cited = set()
    for path in [*(REPO / "src").rglob("*.py"), *(REPO / "workflow").rglob("*"), *(REPO / "config").glob("*.yaml")]:
        if path.is_file():
            cited.update(re.findall(r'docs/science\.md, "([^"]+)"', path.read_text(encoding="utf-8", errors="replace")))
    headings = HEADING.findall((REPO / "docs" / "science.md").read_text(encoding="utf-8"))
    missing = sorted(name for name in cited if not any(name in h for h in headings))
    assert not missing, f"cited as docs/science.md sections but not there: {missing}"


#: the committed example outputs of the default study that the README quotes
COMMITTED_SUMMARIES = ("summary_digits_pair40.md", "frequency_summary_digits_pair40.md")
#: a quoted result: 'mean ± sd' or 'difference [low, high]', as the summaries write them
QUOTED = re.compile(r"[+-]?\d+\.\d+ ± \d+\.\d+|[+-]?\d+\.?\d* \[[+-]?\d+\.?\d*, [+-]?\d+\.?\d*\]")


def _section(text: str, heading: str) -> str:
    """The text of the Markdown section ``heading`` (up to the next heading of any level)."""
    start = text.index(heading)
    rest = text[start + len(heading) :]
    following = re.search(r"^#{1,6} ", rest, re.MULTILINE)
    return rest[: following.start()] if following else rest


def test_readme_quotes_the_committed_default_summary():
    """Every mean ± sd and every interval the README's default-run section states is in a committed summary, so the
    two cannot drift apart (regenerate them with the default study when a number changes)."""
    section = _section(README.read_text(encoding="utf-8"), "## What the default run shows")
    committed = "".join((REPO / "docs" / name).read_text(encoding="utf-8") for name in COMMITTED_SUMMARIES)
    quoted = QUOTED.findall(section)
    assert len(quoted) >= 12, quoted
    missing = [q for q in quoted if q not in committed]
    assert not missing, f"README.md quotes numbers no committed summary holds: {missing}"
    # the verdict words beside the headline comparisons are the summary's
    for number, words in (
        ("-2.96 [-12.75, +6.83]", "no difference detected"),
        ("+14.35 [+10.31, +18.40]", "difference found (higher)"),
    ):
        line = next(x for x in committed.splitlines() if number.split(" [")[0] + " points" in x and number[-8:] in x)
        assert words in line and number in section


#: the committed outputs of the mechanism studies (config/mechanism.yaml, config/mnist1d.yaml) that the README's answer
#: quotes
RESULTS = REPO / "docs" / "results"


def test_readme_answer_quotes_the_committed_mechanism_outputs():
    """Every interval the README's answer states is in a committed output of the two mechanism studies, with the
    verdict words the summaries give it."""
    section = _section(README.read_text(encoding="utf-8"), "## Why: the mechanism, tested")
    committed = "".join(p.read_text(encoding="utf-8") for p in sorted(RESULTS.rglob("*.md")))
    quoted = QUOTED.findall(section)
    assert len(quoted) >= 10, quoted
    missing = [q for q in quoted if q not in committed]
    assert not missing, f"README.md quotes numbers no committed output under docs/results holds: {missing}"
