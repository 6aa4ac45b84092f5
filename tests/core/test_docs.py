"""The documentation site (docs/, mkdocs.yml) builds with every link and anchor resolved, the README's links
into it land, and its reason-code tables are the code's own.

Print a generated section to paste between its markers: ``python tests/core/test_docs.py decision-reasons``
(or ``audit-reasons``).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
#: Generated sections: marker name -> (page, module, the dict of reason codes it is made from).
GENERATED = {
    "decision-reasons": ("safe-writes.md", "tasks.rules", "REASONS"),
    "audit-reasons": ("safe-writes.md", "tasks.audit", "AUDIT_REASONS"),
}
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _module(name: str) -> ModuleType:
    """``triage.<name>`` once the packages live under one import name, else the top-level ``<name>``."""
    try:
        return importlib.import_module(f"triage.{name}")
    except ModuleNotFoundError as exc:
        if exc.name is None or not f"triage.{name}".startswith(exc.name):
            raise
        return importlib.import_module(name)


def generated(name: str) -> str:
    """The Markdown table of a generated section, from the code."""
    _, module, attribute = GENERATED[name]
    reasons: dict[str, str] = getattr(_module(module), attribute)
    rows = [f"| `{code}` | {meaning} |" for code, meaning in reasons.items()]
    return "\n".join(["| reason_code | meaning |", "|---|---|", *rows])


def documented(text: str, name: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    return text[text.index(start) + len(start) : text.index(end)].strip()


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_reason_code_tables_are_the_codes_own(name):
    page = GENERATED[name][0]
    text = (DOCS / page).read_text(encoding="utf-8")
    assert documented(text, name) == generated(name), (
        f"docs/{page}'s {name} table is stale: replace the lines between its markers with the output of "
        f"`python tests/core/test_docs.py {name}`"
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built as CI builds it: ``mkdocs build --strict`` (a broken link or anchor fails)."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (the dev extras pin mkdocs-material)")
    pytest.importorskip("material", reason="mkdocs-material is not installed (in the dev extras)")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f", "mkdocs.yml", "-d", str(out)],
        cwd=ROOT,  # the README sections the pages include are found from here
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}{result.stderr}"
    return out


def test_the_docs_site_builds_strict_with_every_page_in_its_nav(site):
    pages = sorted(p.stem for p in DOCS.glob("*.md"))
    built = [p for p in pages if (site / ("" if p == "index" else p) / "index.html").is_file()]
    assert built == pages
    # The sections the index and the development page include from README.md are there.
    assert "Freshdesk ──extract──▶" in (site / "index.html").read_text(encoding="utf-8")
    assert "triage.simulator" in (site / "development" / "index.html").read_text(encoding="utf-8")


def _slug(heading: str) -> str:
    """A heading's anchor as a code host and mkdocs' toc make it (for the plain headings used here)."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"\s+", "-", text)


def test_the_readmes_links_land_on_a_page_and_an_anchor(site):
    text = README.read_text(encoding="utf-8")
    own = {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("## ")}
    bad = []
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        if not path:
            ok = anchor in own
        elif path.startswith("docs/") and path.endswith(".md") and (ROOT / path).is_file():
            stem = Path(path).stem
            html = site / ("" if stem == "index" else stem) / "index.html"
            ok = not anchor or f'id="{anchor}"' in html.read_text(encoding="utf-8")
        else:
            ok = (ROOT / path).exists()
        if not ok:
            bad.append(target)
    assert not bad, f"README.md links to missing pages or anchors: {bad}"


if __name__ == "__main__":
    print(generated(sys.argv[1]))
