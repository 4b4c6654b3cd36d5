"""Every link of README.md and docs/ leads somewhere: the file exists, and the heading an
anchor names is in it (as GitHub makes anchors of headings)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from builders import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`[^`\n]*`")  # a pattern in a code span may look like a link


def anchors(page: Path) -> set[str]:
    """GitHub's anchors: a heading lowercased, punctuation but - and _ dropped, spaces to -."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.MULTILINE)
    return {re.sub(r"[^a-z0-9_ -]", "", h.lower()).replace(" ", "-") for h in headings}


def broken(page: Path) -> list[str]:
    found = []
    for target in LINK.findall(CODE.sub("", FENCE.sub("", page.read_text()))):
        if re.match(r"^[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            found.append(f"{target}: no {file.relative_to(ROOT)}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            found.append(f"{target}: no heading for #{anchor}")
    return found


def test_the_anchor_rule():
    assert anchors(ROOT / "docs" / "scaling.md") >= {"1-where-the-demand-is-read", "hpa-and-keda-modes"}


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_link_resolves(page: Path):
    assert not broken(page)
